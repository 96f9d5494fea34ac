//! The spool: what a recording writes while it runs, one sealed record per muxer
//! buffer (see the [format](super)).
//!
//! Owns: writing records (a failed write closes the writer at its last whole record)
//! and reading them back in order, a torn record at the end tolerated.
//!
//! Must not: know what the records hold (fragmented MP4 to the recorder, bytes here).

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::Path;

use chacha20poly1305::aead::stream::StreamPrimitive;
use chacha20poly1305::aead::Payload;

use super::{random_prefix, stream, CryptoError, DataKey, Stream, PREFIX, TAG};

const SPOOL_MAGIC: &[u8; 8] = b"GRMSPL01";
const SPOOL_HEADER: usize = 8 + PREFIX;

/// Writes a spool file: each [`append`](SpoolWriter::append) is one sealed record,
/// handed to the kernel before it returns.
///
/// A failed write (a full disk, an I/O error) closes the writer: the file is cut back
/// to its last whole record, so it stays a valid spool of everything written before,
/// and every later append is refused. Going on after the failure would either reuse
/// the failed record's nonce (its ciphertext may be partly on the disk) or leave a
/// gap the sequential reader cannot cross.
pub struct SpoolWriter {
    file: File,
    stream: Stream,
    aad: Vec<u8>,
    position: u32,
    bytes: u64,
    /// File length up to the end of the last whole record.
    len: u64,
    /// Why the writer closed, once a write failed.
    closed: Option<String>,
}

impl SpoolWriter {
    /// Create (truncate) `path` and write the header.
    pub fn create(path: &Path, key: &DataKey, context: &[u8]) -> Result<SpoolWriter, CryptoError> {
        let prefix = random_prefix();
        let mut file = File::create(path)?;
        let mut header = SPOOL_MAGIC.to_vec();
        header.extend_from_slice(&prefix);
        file.write_all(&header)?;
        Ok(SpoolWriter {
            file,
            stream: stream(&key.0, &prefix),
            aad: context.to_vec(),
            position: 0,
            bytes: 0,
            len: header.len() as u64,
            closed: None,
        })
    }

    /// Seal `data` as the next record and write it. After a failed write the writer
    /// is closed (see [`SpoolWriter`]) and this returns an error without writing.
    pub fn append(&mut self, data: &[u8]) -> Result<(), CryptoError> {
        if let Some(why) = &self.closed {
            return Err(CryptoError::Io(io::Error::other(format!(
                "the spool was closed after a failed write: {why}"
            ))));
        }
        if data.is_empty() {
            return Ok(());
        }
        let len = u32::try_from(data.len())
            .map_err(|_| CryptoError::Io(io::Error::other("record larger than 4 GiB")))?;
        let ct = self
            .stream
            .encrypt(
                self.position,
                false,
                Payload {
                    msg: data,
                    aad: &self.aad,
                },
            )
            .map_err(|_| CryptoError::Authentication)?;
        let mut record = Vec::with_capacity(4 + ct.len());
        record.extend_from_slice(&len.to_le_bytes());
        record.extend_from_slice(&ct);
        // One write per record: a process killed now leaves whole records behind.
        if let Err(e) = self.file.write_all(&record) {
            // Cut the partial record off (a shrinking truncate needs no free space).
            // If even that fails, the reader still stops at the torn record, as after
            // a crash: later records would be lost, and there are none.
            let _ = self.file.set_len(self.len);
            self.closed = Some(e.to_string());
            return Err(e.into());
        }
        self.len += record.len() as u64;
        self.position = self
            .position
            .checked_add(1)
            .ok_or_else(|| CryptoError::Io(io::Error::other("spool record counter overflow")))?;
        self.bytes += data.len() as u64;
        Ok(())
    }

    /// Plaintext bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Why the writer closed, if a write failed.
    pub fn closed(&self) -> Option<&str> {
        self.closed.as_deref()
    }

    /// Flush file data to stable storage.
    pub fn sync(&self) -> Result<(), CryptoError> {
        self.file.sync_data()?;
        Ok(())
    }
}

/// What reading a spool found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolSummary {
    /// Whole records read.
    pub records: u64,
    /// Plaintext bytes read.
    pub bytes: u64,
    /// True when trailing bytes did not form a whole record (the writer was killed
    /// mid-write); they were ignored.
    pub torn_tail: bool,
}

/// Read a spool from the start, handing each record's plaintext to `sink`.
/// A record that fails authentication is an error (wrong key, tampering); an
/// incomplete record at the very end is reported as `torn_tail` and ignored.
pub fn read_spool(
    path: &Path,
    key: &DataKey,
    context: &[u8],
    mut sink: impl FnMut(&[u8]) -> io::Result<()>,
) -> Result<SpoolSummary, CryptoError> {
    let mut r = BufReader::with_capacity(256 * 1024, File::open(path)?);
    let mut header = [0u8; SPOOL_HEADER];
    r.read_exact(&mut header)
        .map_err(|_| CryptoError::Format("spool"))?;
    if &header[..8] != SPOOL_MAGIC {
        return Err(CryptoError::Format("spool"));
    }
    let mut prefix = [0u8; PREFIX];
    prefix.copy_from_slice(&header[8..]);
    let stream = stream(&key.0, &prefix);
    let mut summary = SpoolSummary {
        records: 0,
        bytes: 0,
        torn_tail: false,
    };
    loop {
        let mut len = [0u8; 4];
        match read_full(&mut r, &mut len)? {
            0 => return Ok(summary),
            4 => {}
            _ => {
                summary.torn_tail = true;
                return Ok(summary);
            }
        }
        let len = u32::from_le_bytes(len) as usize;
        let mut ct = vec![0u8; len + TAG];
        if read_full(&mut r, &mut ct)? < ct.len() {
            summary.torn_tail = true;
            return Ok(summary);
        }
        let position = u32::try_from(summary.records).map_err(|_| CryptoError::Format("spool"))?;
        let plain = stream
            .decrypt(
                position,
                false,
                Payload {
                    msg: &ct,
                    aad: context,
                },
            )
            .map_err(|_| CryptoError::Authentication)?;
        sink(&plain)?;
        summary.records += 1;
        summary.bytes += plain.len() as u64;
    }
}

/// Read until `buf` is full or the input ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spools_survive_a_torn_tail_and_refuse_the_wrong_key() {
        let dir = std::env::temp_dir().join(format!("gremium-spool-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("r.spool");
        let key = DataKey::generate();
        let mut w = SpoolWriter::create(&path, &key, b"rec").unwrap();
        for i in 0..10u8 {
            w.append(&vec![i; 1000 + i as usize]).unwrap();
        }
        drop(w);
        let raw = std::fs::read(&path).unwrap();
        assert!(
            !raw.windows(64).any(|w| w.iter().all(|b| *b == 3)),
            "plaintext visible"
        );
        // A writer killed mid-record: cut into the last record.
        std::fs::write(&path, &raw[..raw.len() - 10]).unwrap();
        let mut seen = Vec::new();
        let summary = read_spool(&path, &key, b"rec", |p| {
            seen.push(p.to_vec());
            Ok(())
        })
        .unwrap();
        assert_eq!(summary.records, 9);
        assert!(summary.torn_tail);
        assert_eq!(seen[4], vec![4u8; 1004]);
        assert!(matches!(
            read_spool(&path, &DataKey::generate(), b"rec", |_| Ok(())),
            Err(CryptoError::Authentication)
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_full_disk_closes_the_spool_with_every_whole_record_readable() {
        let disk = crate::testing::SmallDisk::mount(256 * 1024);
        let filler = disk.fill_leaving(50_000);
        let path = disk.path().join("r.spool");
        let key = DataKey::generate();
        let mut w = SpoolWriter::create(&path, &key, b"rec").unwrap();
        let mut n = 0u8;
        let failure = loop {
            match w.append(&vec![n; 7_000]) {
                Ok(()) => n += 1,
                Err(e) => break e,
            }
            assert!(n < 20, "the disk never filled");
        };
        assert!(failure.to_string().contains("No space left"), "{failure}");
        assert!(w.closed().is_some());
        assert!(n >= 3, "only {n} records fit");
        // The partial record is cut off: the file ends with the last whole one.
        let whole = SPOOL_HEADER as u64 + n as u64 * (4 + 7_000 + TAG as u64);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), whole);
        // Closed for good, even with room again: no nonce is used twice.
        std::fs::remove_file(filler).unwrap();
        assert!(w.append(b"later").is_err());
        drop(w);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), whole);
        let mut seen = Vec::new();
        let summary = read_spool(&path, &key, b"rec", |p| {
            seen.push(p[0]);
            Ok(())
        })
        .unwrap();
        assert_eq!(summary.records, n as u64);
        assert!(!summary.torn_tail);
        assert_eq!(seen, (0..n).collect::<Vec<_>>());
    }
}
