//! Sealed copies written next to the spool: the media (re-chunked from the spool's
//! records) and the poster, in the sealed object format storage keeps.
//!
//! Owns: creating a sealed file, writing plaintext into it and finishing it (last
//! chunk, flush, `fsync`), each failure reported with the file it concerns.
//!
//! Must not: read the spool or talk to the object store; plaintext only passes
//! through memory here.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use gremium_vault::crypto::{DataKey, SealWriter, Sealed};

use crate::RecorderError;

/// A sealed file being written.
pub(super) struct SealFile {
    path: PathBuf,
    writer: SealWriter<BufWriter<File>>,
}

impl SealFile {
    /// Create (truncate) `path` and write the header.
    pub(super) fn create(
        path: &Path,
        key: &DataKey,
        context: &[u8],
    ) -> Result<SealFile, RecorderError> {
        let fail = |source| RecorderError::Seal {
            path: path.to_path_buf(),
            source,
        };
        let file = File::create(path).map_err(|e| fail(e.into()))?;
        let writer = SealWriter::new(BufWriter::new(file), key, context).map_err(fail)?;
        Ok(SealFile {
            path: path.to_path_buf(),
            writer,
        })
    }

    /// Add plaintext.
    pub(super) fn write(&mut self, plain: &[u8]) -> Result<(), RecorderError> {
        self.writer
            .write(plain)
            .map_err(|source| RecorderError::Seal {
                path: self.path.clone(),
                source,
            })
    }

    /// Write the last chunk and make the file durable: the spool may be removed
    /// once this copy is stored, so it must not sit in a page cache only.
    pub(super) fn finish(self) -> Result<Sealed, RecorderError> {
        let SealFile { path, writer } = self;
        let fail = |source| RecorderError::Seal {
            path: path.clone(),
            source,
        };
        let (sealed, out) = writer.finish().map_err(fail)?;
        out.into_inner()
            .map_err(|e| fail(e.into_error().into()))?
            .sync_all()
            .map_err(|e| fail(e.into()))?;
        Ok(sealed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gremium_vault::crypto::{SealedReader, SEALED_HEADER};

    #[test]
    fn a_sealed_file_opens_with_its_key_and_context_only() {
        let dir = std::env::temp_dir().join(format!("gremium-seal-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("r.poster.sealed");
        let key = DataKey::generate();
        let mut f = SealFile::create(&path, &key, b"poster").unwrap();
        f.write(b"\xFF\xD8 a jpeg").unwrap();
        let sealed = f.finish().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(sealed.stored_bytes, bytes.len() as u64);
        assert_eq!(sealed.plaintext_bytes, 9);
        let open = |ctx: &[u8]| {
            SealedReader::open(&bytes[..SEALED_HEADER], bytes.len() as u64, &key, ctx).and_then(
                |r| {
                    let all = r.chunks_for(&(0..r.plaintext_len()));
                    let s = r.stored_range(&all);
                    r.open_chunks(&all, &bytes[s.start as usize..s.end as usize])
                },
            )
        };
        assert_eq!(open(b"poster").unwrap(), b"\xFF\xD8 a jpeg");
        assert!(open(b"media").is_err());

        // A directory that does not exist: the error names the file.
        let missing = dir.join("no/such/dir/x.sealed");
        let err = SealFile::create(&missing, &key, b"poster").err().unwrap();
        assert!(err.to_string().contains("no/such/dir/x.sealed"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
