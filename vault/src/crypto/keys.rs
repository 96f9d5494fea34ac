//! A recording's data key and the master key that wraps it.
//!
//! Owns: generating, parsing and printing keys (as hex), wrapping a data key under the
//! master key bound to a context, and wiping both from memory when dropped.
//!
//! Must not: store keys anywhere (the control plane keeps wrapped keys in its
//! database) or print a key through `Debug`.

use std::fmt;

use chacha20poly1305::aead::generic_array::GenericArray;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use zeroize::Zeroize;

use super::{CryptoError, TAG};

const WRAP_NONCE: usize = 24;

/// 32 bytes from the operating system's generator: the material of either key.
fn random_key_bytes() -> [u8; 32] {
    let mut k = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut k);
    k
}

/// The master key: wraps data keys. 32 bytes, written as 64 hex digits.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(…)")
    }
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl MasterKey {
    /// A fresh random key.
    pub fn generate() -> MasterKey {
        MasterKey(random_key_bytes())
    }

    /// Parse 64 hex digits (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<MasterKey, CryptoError> {
        let bytes = hex::decode(text.trim())
            .map_err(|_| CryptoError::InvalidKey("expected 64 hex digits".into()))?;
        let k: [u8; 32] = bytes
            .try_into()
            .map_err(|_| CryptoError::InvalidKey("expected 32 bytes (64 hex digits)".into()))?;
        Ok(MasterKey(k))
    }

    /// The key as 64 hex digits (for writing a generated key file).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Wrap a data key, bound to `context` (the recording id): nonce ‖ ciphertext.
    pub fn wrap(&self, key: &DataKey, context: &[u8]) -> Vec<u8> {
        let aead = XChaCha20Poly1305::new(GenericArray::from_slice(&self.0));
        let mut nonce = [0u8; WRAP_NONCE];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ct = aead
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &key.0,
                    aad: context,
                },
            )
            .expect("XChaCha20-Poly1305 encryption of 32 bytes cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        out
    }

    /// Unwrap a data key wrapped for `context`.
    pub fn unwrap_key(&self, wrapped: &[u8], context: &[u8]) -> Result<DataKey, CryptoError> {
        if wrapped.len() != WRAP_NONCE + 32 + TAG {
            return Err(CryptoError::Format("wrapped key"));
        }
        let aead = XChaCha20Poly1305::new(GenericArray::from_slice(&self.0));
        let (nonce, ct) = wrapped.split_at(WRAP_NONCE);
        let mut plain = aead
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: context,
                },
            )
            .map_err(|_| CryptoError::Authentication)?;
        let mut k = [0u8; 32];
        k.copy_from_slice(&plain);
        plain.zeroize();
        Ok(DataKey(k))
    }
}

/// A recording's data key.
#[derive(Clone, PartialEq, Eq)]
// The other crypto modules key their ciphers with the bytes.
pub struct DataKey(pub(super) [u8; 32]);

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(…)")
    }
}

impl Drop for DataKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl DataKey {
    /// A fresh random key.
    pub fn generate() -> DataKey {
        DataKey(random_key_bytes())
    }

    /// Parse 64 hex digits (how the key travels inside a media command).
    pub fn from_hex(text: &str) -> Result<DataKey, CryptoError> {
        MasterKey::from_hex(text).map(|m| DataKey(m.0))
    }

    /// The key as 64 hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_keys_unwrap_only_with_the_master_key_and_context() {
        let master = MasterKey::generate();
        let key = DataKey::generate();
        let wrapped = master.wrap(&key, b"rec-1");
        assert_eq!(master.unwrap_key(&wrapped, b"rec-1").unwrap(), key);
        assert!(master.unwrap_key(&wrapped, b"rec-2").is_err());
        assert!(MasterKey::generate()
            .unwrap_key(&wrapped, b"rec-1")
            .is_err());
        let again = MasterKey::from_hex(&master.to_hex()).unwrap();
        assert_eq!(again.unwrap_key(&wrapped, b"rec-1").unwrap(), key);
        assert!(MasterKey::from_hex("abcd").is_err());
        assert_eq!(format!("{key:?}"), "DataKey(…)");
    }
}
