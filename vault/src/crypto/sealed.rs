//! Sealed objects: what storage keeps, fixed-size chunks so that any plaintext range
//! maps to a stored range (see the [format](super)).
//!
//! Owns: writing an object (with the SHA-256 of its stored bytes) and opening any
//! chunks of one for reading.
//!
//! Must not: fetch or store bytes (the caller reads ranges from an object store).

use std::fmt;
use std::io::Write;
use std::ops::Range;

use chacha20poly1305::aead::stream::StreamPrimitive;
use chacha20poly1305::aead::Payload;
use sha2::{Digest, Sha256};

use super::{random_prefix, stream, CryptoError, DataKey, Stream, PREFIX, TAG};

const SEALED_MAGIC: &[u8; 8] = b"GRMSEA01";
/// Plaintext bytes per sealed chunk.
pub const CHUNK: usize = 64 * 1024;
/// Length of a sealed object's header: magic, nonce prefix, chunk size.
pub const SEALED_HEADER: usize = 8 + PREFIX + 4;

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
}
