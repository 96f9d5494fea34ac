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

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::ops::Range;
use std::path::Path;

use chacha20poly1305::aead::generic_array::GenericArray;
use chacha20poly1305::aead::stream::{NewStream, StreamBE32, StreamPrimitive};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

/// Plaintext bytes per sealed chunk.
pub const CHUNK: usize = 64 * 1024;
const TAG: usize = 16;
const PREFIX: usize = 19;
const SPOOL_MAGIC: &[u8; 8] = b"GRMSPL01";
const SEALED_MAGIC: &[u8; 8] = b"GRMSEA01";
/// Length of a sealed object's header: magic, nonce prefix, chunk size.
pub const SEALED_HEADER: usize = 8 + PREFIX + 4;
const SPOOL_HEADER: usize = 8 + PREFIX;
const WRAP_NONCE: usize = 24;

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
        let mut k = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut k);
        MasterKey(k)
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
pub struct DataKey([u8; 32]);

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
        let mut k = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut k);
        DataKey(k)
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

fn random_prefix() -> [u8; PREFIX] {
    let mut p = [0u8; PREFIX];
    rand::rngs::OsRng.fill_bytes(&mut p);
    p
}

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

/// What sealing produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// SHA-256 of the stored (encrypted) bytes, lowercase hex.
    pub sha256: String,
    /// Stored (encrypted) size in bytes.
    pub stored_bytes: u64,
    /// Plaintext size in bytes.
    pub plaintext_bytes: u64,
}

/// Writes a sealed object: fixed-size chunks, the last flagged.
pub struct SealWriter<W: Write> {
    out: W,
    stream: Stream,
    aad: Vec<u8>,
    position: u32,
    buf: Vec<u8>,
    hash: Sha256,
    stored: u64,
    plain: u64,
}

impl<W: Write> SealWriter<W> {
    /// Start an object on `out`, writing the header.
    pub fn new(mut out: W, key: &DataKey, context: &[u8]) -> Result<SealWriter<W>, CryptoError> {
        let prefix = random_prefix();
        let mut header = SEALED_MAGIC.to_vec();
        header.extend_from_slice(&prefix);
        header.extend_from_slice(&(CHUNK as u32).to_le_bytes());
        out.write_all(&header)?;
        let mut hash = Sha256::new();
        hash.update(&header);
        Ok(SealWriter {
            out,
            stream: stream(&key.0, &prefix),
            aad: chunk_aad(context, &header),
            position: 0,
            buf: Vec::with_capacity(CHUNK),
            hash,
            stored: header.len() as u64,
            plain: 0,
        })
    }

    /// Add plaintext.
    pub fn write(&mut self, mut data: &[u8]) -> Result<(), CryptoError> {
        while !data.is_empty() {
            // A full chunk is written only once more data follows, so the last chunk
            // (flagged last) is never empty unless the whole object is.
            if self.buf.len() == CHUNK {
                self.emit(false)?;
            }
            let take = (CHUNK - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        Ok(())
    }

    fn emit(&mut self, last: bool) -> Result<(), CryptoError> {
        let ct = self
            .stream
            .encrypt(
                self.position,
                last,
                Payload {
                    msg: &self.buf,
                    aad: &self.aad,
                },
            )
            .map_err(|_| CryptoError::Authentication)?;
        self.out.write_all(&ct)?;
        self.hash.update(&ct);
        self.stored += ct.len() as u64;
        self.plain += self.buf.len() as u64;
        self.buf.clear();
        self.position += 1;
        Ok(())
    }

    /// Write the last chunk and return the object's facts and the writer.
    pub fn finish(mut self) -> Result<(Sealed, W), CryptoError> {
        self.emit(true)?;
        self.out.flush()?;
        let sealed = Sealed {
            sha256: hex::encode(self.hash.finalize_reset()),
            stored_bytes: self.stored,
            plaintext_bytes: self.plain,
        };
        Ok((sealed, self.out))
    }
}

fn chunk_aad(context: &[u8], header: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(header.len() + context.len() + 4);
    aad.extend_from_slice(header);
    aad.extend_from_slice(&(context.len() as u32).to_le_bytes());
    aad.extend_from_slice(context);
    aad
}

/// Opens chunks of a sealed object for random access. Built from the object's header
/// and its stored size; knows which stored bytes hold which plaintext bytes.
pub struct SealedReader {
    stream: Stream,
    aad: Vec<u8>,
    chunk: u64,
    chunks: u64,
    plaintext_len: u64,
}

impl fmt::Debug for SealedReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedReader")
            .field("chunks", &self.chunks)
            .field("plaintext_len", &self.plaintext_len)
            .finish()
    }
}

impl SealedReader {
    /// `header` is the first [`SEALED_HEADER`] bytes of the object, `stored_len` its
    /// full stored size.
    pub fn open(
        header: &[u8],
        stored_len: u64,
        key: &DataKey,
        context: &[u8],
    ) -> Result<SealedReader, CryptoError> {
        if header.len() < SEALED_HEADER || &header[..8] != SEALED_MAGIC {
            return Err(CryptoError::Format("sealed object"));
        }
        let header = &header[..SEALED_HEADER];
        let mut prefix = [0u8; PREFIX];
        prefix.copy_from_slice(&header[8..8 + PREFIX]);
        let chunk = u32::from_le_bytes(header[8 + PREFIX..].try_into().expect("4 bytes")) as u64;
        if chunk == 0 || stored_len < SEALED_HEADER as u64 + TAG as u64 {
            return Err(CryptoError::Format("sealed object"));
        }
        let body = stored_len - SEALED_HEADER as u64;
        let per = chunk + TAG as u64;
        let chunks = body.div_ceil(per);
        let last_len = body - (chunks - 1) * per;
        if last_len < TAG as u64 {
            return Err(CryptoError::Format("sealed object"));
        }
        let plaintext_len = (chunks - 1) * chunk + (last_len - TAG as u64);
        Ok(SealedReader {
            stream: stream(&key.0, &prefix),
            aad: chunk_aad(context, header),
            chunk,
            chunks,
            plaintext_len,
        })
    }

    /// Plaintext size.
    pub fn plaintext_len(&self) -> u64 {
        self.plaintext_len
    }

    /// Chunks covering plaintext `range` (end exclusive), as chunk indices.
    pub fn chunks_for(&self, range: &Range<u64>) -> Range<u64> {
        if range.start >= range.end {
            return 0..0;
        }
        range.start / self.chunk..(range.end - 1) / self.chunk + 1
    }

    /// Stored byte range of chunks `chunks`.
    pub fn stored_range(&self, chunks: &Range<u64>) -> Range<u64> {
        let per = self.chunk + TAG as u64;
        let start = SEALED_HEADER as u64 + chunks.start * per;
        let end = (SEALED_HEADER as u64 + chunks.end * per)
            .min(SEALED_HEADER as u64 + self.plaintext_len + self.chunks * TAG as u64);
        start..end
    }

    /// Plaintext offset where chunk `index` starts.
    pub fn chunk_start(&self, index: u64) -> u64 {
        index * self.chunk
    }

    /// Decrypt the stored bytes of chunks `chunks` (as returned by
    /// [`stored_range`](Self::stored_range)) into their plaintext.
    pub fn open_chunks(&self, chunks: &Range<u64>, stored: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let per = (self.chunk + TAG as u64) as usize;
        let mut out = Vec::with_capacity(stored.len());
        for (i, ct) in (chunks.start..chunks.end).zip(stored.chunks(per)) {
            let position = u32::try_from(i).map_err(|_| CryptoError::Format("sealed object"))?;
            let last = i + 1 == self.chunks;
            let plain = self
                .stream
                .decrypt(
                    position,
                    last,
                    Payload {
                        msg: ct,
                        aad: &self.aad,
                    },
                )
                .map_err(|_| CryptoError::Authentication)?;
            out.extend_from_slice(&plain);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 % 251) as u8).collect()
    }

    fn seal(data: &[u8], key: &DataKey, ctx: &[u8]) -> (Vec<u8>, Sealed) {
        let mut w = SealWriter::new(Vec::new(), key, ctx).unwrap();
        for part in data.chunks(7_777) {
            w.write(part).unwrap();
        }
        let (s, out) = w.finish().unwrap();
        (out, s)
    }

    fn read_range(obj: &[u8], key: &DataKey, ctx: &[u8], r: Range<u64>) -> Vec<u8> {
        let reader = SealedReader::open(&obj[..SEALED_HEADER], obj.len() as u64, key, ctx).unwrap();
        let chunks = reader.chunks_for(&r);
        let stored = reader.stored_range(&chunks);
        let plain = reader
            .open_chunks(&chunks, &obj[stored.start as usize..stored.end as usize])
            .unwrap();
        let off = (r.start - reader.chunk_start(chunks.start)) as usize;
        plain[off..off + (r.end - r.start) as usize].to_vec()
    }

    #[test]
    fn sealed_objects_round_trip_at_every_boundary_and_hide_the_plaintext() {
        let key = DataKey::generate();
        for n in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 17] {
            let data = sample(n);
            let (obj, sealed) = seal(&data, &key, b"rec");
            assert_eq!(sealed.plaintext_bytes, n as u64);
            assert_eq!(sealed.stored_bytes, obj.len() as u64);
            assert_eq!(sealed.sha256, hex::encode(Sha256::digest(&obj)));
            let reader =
                SealedReader::open(&obj[..SEALED_HEADER], obj.len() as u64, &key, b"rec").unwrap();
            assert_eq!(reader.plaintext_len(), n as u64, "size {n}");
            assert_eq!(
                read_range(&obj, &key, b"rec", 0..n as u64),
                data,
                "size {n}"
            );
            if n > 40 {
                assert!(
                    !obj.windows(32).any(|w| w == &data[8..40]),
                    "plaintext visible"
                );
            }
        }
    }

    #[test]
    fn any_range_decrypts_to_the_same_bytes() {
        let key = DataKey::generate();
        let data = sample(3 * CHUNK + 1000);
        let (obj, _) = seal(&data, &key, b"rec");
        for (a, b) in [
            (0, 1),
            (5, 10),
            (CHUNK - 2, CHUNK + 2),
            (CHUNK, 2 * CHUNK),
            (2 * CHUNK + 3, 3 * CHUNK + 1000),
            (3 * CHUNK + 999, 3 * CHUNK + 1000),
        ] {
            assert_eq!(
                read_range(&obj, &key, b"rec", a as u64..b as u64),
                &data[a..b],
                "{a}..{b}"
            );
        }
    }

    #[test]
    fn wrong_key_context_tampering_and_truncation_are_refused() {
        let key = DataKey::generate();
        let data = sample(2 * CHUNK + 5);
        let (obj, _) = seal(&data, &key, b"rec-1");
        let open = |obj: &[u8], key: &DataKey, ctx: &[u8]| -> Result<Vec<u8>, CryptoError> {
            let r = SealedReader::open(&obj[..SEALED_HEADER], obj.len() as u64, key, ctx)?;
            let all = r.chunks_for(&(0..r.plaintext_len()));
            let s = r.stored_range(&all);
            r.open_chunks(&all, &obj[s.start as usize..s.end as usize])
        };
        assert!(open(&obj, &key, b"rec-1").is_ok());
        assert!(matches!(
            open(&obj, &DataKey::generate(), b"rec-1"),
            Err(CryptoError::Authentication)
        ));
        assert!(matches!(
            open(&obj, &key, b"rec-2"),
            Err(CryptoError::Authentication)
        ));
        let mut flipped = obj.clone();
        flipped[SEALED_HEADER + 100] ^= 1;
        assert!(matches!(
            open(&flipped, &key, b"rec-1"),
            Err(CryptoError::Authentication)
        ));
        // Cut exactly at a chunk boundary: the new last chunk lacks the last flag.
        let cut = &obj[..SEALED_HEADER + 2 * (CHUNK + TAG)];
        assert!(open(cut, &key, b"rec-1").is_err());
    }

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
