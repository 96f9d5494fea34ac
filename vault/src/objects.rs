//! Object storage for recordings: a small trait with a local-disk implementation (the
//! embedded default). Objects are opaque bytes here — what is stored is already
//! encrypted (see [`crate::crypto`]).
//!
//! Keys are relative, `/`-separated paths such as `recordings/{id}/media.mp4.sealed`.

use std::fmt;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};

use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// What an object store can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// No object under that key.
    #[error("no such object")]
    NotFound,
    /// The key is not a relative path of plain segments.
    #[error("invalid object key {0:?}")]
    InvalidKey(String),
    /// The requested range lies outside the object.
    #[error("range {0:?} outside an object of {1} bytes")]
    Range(Range<u64>, u64),
    /// The store could not be reached or failed; worth retrying.
    #[error("object store unavailable: {0}")]
    Unavailable(String),
}

/// Where finalized recordings are kept.
#[async_trait::async_trait]
pub trait ObjectStore: Send + Sync + fmt::Debug {
    /// Store the file at `path` under `key`, replacing what was there. Returns once
    /// the object is durable.
    async fn put_file(&self, key: &str, path: &Path) -> Result<(), ObjectError>;
    /// Bytes `range` (end exclusive) of an object.
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Vec<u8>, ObjectError>;
    /// An object's size, `None` when there is none.
    async fn size(&self, key: &str) -> Result<Option<u64>, ObjectError>;
    /// Delete an object; deleting a missing one is fine.
    async fn delete(&self, key: &str) -> Result<(), ObjectError>;
}

/// Objects as files below a root directory.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

fn io(e: std::io::Error) -> ObjectError {
    if e.kind() == std::io::ErrorKind::NotFound {
        ObjectError::NotFound
    } else {
        ObjectError::Unavailable(e.to_string())
    }
}

/// `key` as a relative path of plain segments, none ending in `.part` (the suffix
/// [`LocalStore`] writes through), so that a key means the same in every store.
pub(crate) fn check_key(key: &str) -> Result<&Path, ObjectError> {
    let rel = Path::new(key);
    let plain = !key.is_empty()
        && rel
            .components()
            .all(|c| matches!(c, Component::Normal(s) if !s.to_string_lossy().ends_with(".part")));
    if plain {
        Ok(rel)
    } else {
        Err(ObjectError::InvalidKey(key.into()))
    }
}

impl LocalStore {
    /// A store rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> LocalStore {
        LocalStore { root: root.into() }
    }

    /// The file holding `key`.
    pub fn path_of(&self, key: &str) -> Result<PathBuf, ObjectError> {
        Ok(self.root.join(check_key(key)?))
    }
}

#[async_trait::async_trait]
impl ObjectStore for LocalStore {
    async fn put_file(&self, key: &str, path: &Path) -> Result<(), ObjectError> {
        let target = self.path_of(key)?;
        if let Some(dir) = target.parent() {
            tokio::fs::create_dir_all(dir).await.map_err(io)?;
        }
        let part = target.with_extension("part");
        tokio::fs::copy(path, &part).await.map_err(io)?;
        let file = tokio::fs::File::open(&part).await.map_err(io)?;
        file.sync_all().await.map_err(io)?;
        tokio::fs::rename(&part, &target).await.map_err(io)?;
        Ok(())
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Vec<u8>, ObjectError> {
        let mut file = tokio::fs::File::open(self.path_of(key)?)
            .await
            .map_err(io)?;
        let len = file.metadata().await.map_err(io)?.len();
        if range.start > range.end || range.end > len {
            return Err(ObjectError::Range(range, len));
        }
        file.seek(std::io::SeekFrom::Start(range.start))
            .await
            .map_err(io)?;
        let mut buf = vec![0u8; (range.end - range.start) as usize];
        file.read_exact(&mut buf).await.map_err(io)?;
        Ok(buf)
    }

    async fn size(&self, key: &str) -> Result<Option<u64>, ObjectError> {
        match tokio::fs::metadata(self.path_of(key)?).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), ObjectError> {
        match tokio::fs::remove_file(self.path_of(key)?).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_store_puts_reads_ranges_and_deletes() {
        let dir = std::env::temp_dir().join(format!("gremium-store-{}", uuid::Uuid::new_v4()));
        let store = LocalStore::new(dir.join("objects"));
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("src");
        std::fs::write(&src, b"0123456789").unwrap();
        store.put_file("recordings/a/media", &src).await.unwrap();
        assert_eq!(store.size("recordings/a/media").await.unwrap(), Some(10));
        assert_eq!(
            store.get_range("recordings/a/media", 2..5).await.unwrap(),
            b"234"
        );
        assert!(matches!(
            store.get_range("recordings/a/media", 5..11).await,
            Err(ObjectError::Range(..))
        ));
        assert!(matches!(
            store.get_range("nope", 0..1).await,
            Err(ObjectError::NotFound)
        ));
        for bad in ["../x", "/etc/passwd", "", "a/../../b", "a/b.part"] {
            assert!(
                matches!(store.size(bad).await, Err(ObjectError::InvalidKey(_))),
                "{bad}"
            );
        }
        store.delete("recordings/a/media").await.unwrap();
        store.delete("recordings/a/media").await.unwrap();
        assert_eq!(store.size("recordings/a/media").await.unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
