//! The vault: master key plus object store, the one place that turns a recording id
//! into readable bytes. Everything above it (the archive API, retention) asks the
//! vault; nothing else unwraps data keys.
//!
//! The contexts that bind keys and objects to a recording are the vault crate's
//! ([`gremium_vault::context`]), re-exported here at their old paths.

use std::ops::Range;
use std::sync::Arc;

use uuid::Uuid;

use gremium_vault::context::key_context;
use gremium_vault::crypto::{CryptoError, DataKey, MasterKey, SealedReader, SEALED_HEADER};
use gremium_vault::objects::{ObjectError, ObjectStore};

use crate::{Db, StorageError};
pub use gremium_vault::context::{manifest_context, media_context, poster_context};

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The data key is gone (the recording was deleted) or never existed.
    #[error("the recording's data key is gone")]
    Shredded,
    /// Object store failure.
    #[error(transparent)]
    Object(#[from] ObjectError),
    /// Decryption failure (tampering, wrong key).
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// Database failure.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// An opened sealed object: decrypts any plaintext range.
#[derive(Debug)]
pub struct OpenObject {
    store: Arc<dyn ObjectStore>,
    object_key: String,
    reader: SealedReader,
}

impl OpenObject {
    /// Plaintext size.
    pub fn len(&self) -> u64 {
        self.reader.plaintext_len()
    }

    /// True for an empty object.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Plaintext bytes `range` (end exclusive, within [`len`](Self::len)).
    pub async fn read(&self, range: Range<u64>) -> Result<Vec<u8>, VaultError> {
        let end = range.end.min(self.len());
        if range.start >= end {
            return Ok(Vec::new());
        }
        let chunks = self.reader.chunks_for(&(range.start..end));
        let stored = self.reader.stored_range(&chunks);
        let bytes = self.store.get_range(&self.object_key, stored).await?;
        let plain = self.reader.open_chunks(&chunks, &bytes)?;
        let off = (range.start - self.reader.chunk_start(chunks.start)) as usize;
        Ok(plain[off..off + (end - range.start) as usize].to_vec())
    }
}

/// Master key and object store.
#[derive(Debug, Clone)]
pub struct Vault {
    master: MasterKey,
    store: Arc<dyn ObjectStore>,
}

impl Vault {
    /// A vault over `store` with `master`.
    pub fn new(master: MasterKey, store: Arc<dyn ObjectStore>) -> Vault {
        Vault { master, store }
    }

    /// The object store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// A fresh data key for a recording and its wrapped form (hex) to store.
    pub fn new_data_key(&self, recording_id: Uuid) -> (DataKey, String) {
        let key = DataKey::generate();
        let wrapped = hex::encode(self.master.wrap(&key, &key_context(recording_id)));
        (key, wrapped)
    }

    /// Unwrap a stored wrapped key.
    pub fn unwrap_key(&self, recording_id: Uuid, wrapped_hex: &str) -> Result<DataKey, VaultError> {
        let wrapped = hex::decode(wrapped_hex).map_err(|_| CryptoError::Format("wrapped key"))?;
        Ok(self
            .master
            .unwrap_key(&wrapped, &key_context(recording_id))?)
    }

    /// A recording's data key from the database; [`VaultError::Shredded`] once deleted.
    pub async fn data_key(&self, db: &Db, recording_id: Uuid) -> Result<DataKey, VaultError> {
        let wrapped = db
            .recording_key(recording_id)
            .await?
            .ok_or(VaultError::Shredded)?;
        self.unwrap_key(recording_id, &wrapped)
    }

    /// Open a sealed object for reading.
    pub async fn open(
        &self,
        key: &DataKey,
        context: &[u8],
        object_key: &str,
    ) -> Result<OpenObject, VaultError> {
        let size = self
            .store
            .size(object_key)
            .await?
            .ok_or(ObjectError::NotFound)?;
        let header = self
            .store
            .get_range(object_key, 0..(SEALED_HEADER as u64).min(size))
            .await?;
        let reader = SealedReader::open(&header, size, key, context)?;
        Ok(OpenObject {
            store: self.store.clone(),
            object_key: object_key.to_string(),
            reader,
        })
    }
}
