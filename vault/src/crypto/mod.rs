//! Envelope encryption of recordings at rest.
//!
//! Every recording gets its own random 256-bit *data key*. The data key is stored only
//! wrapped (XChaCha20-Poly1305) by the *master key* from the configuration, bound to
//! the recording's id. Deleting the wrapped data key (crypto-shredding) makes every
//! copy of the recording unreadable: local spool, archive directory, S3 bucket,
//! backups of any of them.
//!
//! Two file formats, both built on the STREAM construction of RustCrypto's `aead`
//! (`StreamBE32` over XChaCha20-Poly1305: a random 19-byte nonce prefix per file, a
//! 32-bit chunk counter and a last-chunk flag in the nonce), no home-made primitives:
//!
//! * **Spool** (written while recording): a header, then records of
//!   `u32 LE plaintext length ‖ ciphertext`, one per buffer the muxer hands over, so
//!   a killed process loses at most the buffer being written. Read sequentially; a
//!   torn record at the end (crash) ends the stream.
//! * **Sealed object** (what storage keeps): a header, then fixed-size chunks
//!   ([`CHUNK`] bytes of plaintext each, the last one shorter and flagged last), so
//!   any plaintext byte range maps to a ciphertext byte range and archive reads can
//!   serve HTTP Range requests by decrypting only the chunks they touch. The last-chunk
//!   flag makes a truncated object fail to open.
//!
//! The recording id (or any caller-chosen context) is authenticated with every record
//! and chunk, so objects cannot be swapped between recordings.

mod keys;
mod sealed;
mod spool;

use std::io;

use chacha20poly1305::aead::generic_array::GenericArray;
use chacha20poly1305::aead::stream::{NewStream, StreamBE32};
use chacha20poly1305::aead::KeyInit;
use chacha20poly1305::XChaCha20Poly1305;
use rand::RngCore;

pub use keys::{DataKey, MasterKey};
pub use sealed::{SealWriter, Sealed, SealedReader, CHUNK, SEALED_HEADER};
pub use spool::{read_spool, SpoolSummary, SpoolWriter};

/// Authentication tag per record or chunk.
const TAG: usize = 16;
/// Random nonce prefix per file; the STREAM construction adds counter and last flag.
const PREFIX: usize = 19;

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The key is malformed (wrong length or encoding).
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// Authentication failed: wrong key, wrong context, or the bytes were changed.
    #[error("authentication failed: wrong key or tampered data")]
    Authentication,
    /// Not a file of the expected format.
    #[error("not a Gremium {0} file")]
    Format(&'static str),
    /// Reading or writing failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

type Stream = StreamBE32<XChaCha20Poly1305>;

fn stream(key: &[u8; 32], prefix: &[u8; PREFIX]) -> Stream {
    let aead = XChaCha20Poly1305::new(GenericArray::from_slice(key));
    Stream::from_aead(aead, GenericArray::from_slice(prefix))
}

fn random_prefix() -> [u8; PREFIX] {
    let mut p = [0u8; PREFIX];
    rand::rngs::OsRng.fill_bytes(&mut p);
    p
}
