//! A stream's RTMP destinations at rest: sealing them with a data key of their own
//! and opening them again (a node taking over a running stream). Owns only the
//! sealed format's use here; it must not touch the `streams` table, which the
//! repository in the parent module writes.

use uuid::Uuid;

use crate::crypto::{CryptoError, SealWriter, SealedReader, SEALED_HEADER};
use crate::vault::{Vault, VaultError};

/// A stream's RTMP destinations (URLs and keys, as JSON) sealed with a data key of
/// their own, whose wrapped form is stored beside them. Both are dropped when the
/// stream ends, so a finished stream's keys are unreadable even from a backup taken
/// afterwards.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedDestinations {
    /// The data key wrapped by the master key (hex).
    pub wrapped_key: String,
    /// The sealed JSON (hex).
    pub sealed: String,
}

impl std::fmt::Debug for SealedDestinations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealedDestinations(…)")
    }
}

/// Context bound into a stream's sealed destinations.
fn destinations_context(stream_id: Uuid) -> Vec<u8> {
    format!("gremium/stream/{stream_id}/destinations").into_bytes()
}

/// Seal a stream's destinations (`plaintext`, the JSON the API received) with a
/// fresh data key wrapped by the vault's master key.
pub fn seal_destinations(
    vault: &Vault,
    stream_id: Uuid,
    plaintext: &[u8],
) -> std::result::Result<SealedDestinations, CryptoError> {
    let (key, wrapped_key) = vault.new_data_key(stream_id);
    let mut writer = SealWriter::new(Vec::new(), &key, &destinations_context(stream_id))?;
    writer.write(plaintext)?;
    let (_, sealed) = writer.finish()?;
    Ok(SealedDestinations {
        wrapped_key,
        sealed: hex::encode(sealed),
    })
}

/// Open what [`seal_destinations`] sealed (a node taking over a running stream
/// needs the URLs and keys again).
pub fn open_destinations(
    vault: &Vault,
    stream_id: Uuid,
    s: &SealedDestinations,
) -> std::result::Result<Vec<u8>, VaultError> {
    let key = vault.unwrap_key(stream_id, &s.wrapped_key)?;
    let stored = hex::decode(&s.sealed).map_err(|_| CryptoError::Format("sealed object"))?;
    let context = destinations_context(stream_id);
    let reader = SealedReader::open(&stored, stored.len() as u64, &key, &context)?;
    let chunks = reader.chunks_for(&(0..reader.plaintext_len()));
    let body = stored.get(SEALED_HEADER..).unwrap_or_default();
    Ok(reader.open_chunks(&chunks, body)?)
}
