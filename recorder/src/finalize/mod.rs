//! Post-processing of a finished (or crash-orphaned) recording spool.
//!
//! 1. **Seal and validate** ([`seal_and_probe`]), in one pass over the spool: its
//!    records are re-chunked into the sealed object format (fixed-size chunks, so
//!    archive reads can serve byte ranges), still encrypted with the recording's data
//!    key, the SHA-256 of the stored bytes computed on the way; the same decrypted
//!    pieces go to ffmpeg (through ffmpeg-sidecar) on a pipe, with stream copy into
//!    the null muxer: every packet is parsed, the streams are listed and the last
//!    progress time is the duration. A file ffmpeg cannot read fails the recording
//!    (half-written sealed copies are removed; the spool stays until the recording is
//!    deleted).
//! 2. **Poster** ([`poster`]): ffmpeg decodes one frame (at 1 s, or the first) into a
//!    480 px wide JPEG, which is sealed like the media.
//! 3. **Store** ([`put_with_retry`]): both objects go to the object store, retried
//!    with backoff while the store is unavailable; the spool is removed only after.
//!
//! Before step 1 it waits until the spool's disk has room for the sealed copy (a
//! recording interrupted by a full disk is finalized once space is freed). While it
//! waits, nothing has been written from the spool yet, so the recording may still be
//! discarded through its [`DiscardGate`]; once sealing begins it may not. The
//! appearances are cut to the media's duration.
//!
//! Plaintext exists only in memory and in the pipes to ffmpeg.
//!
//! This module owns the order of the steps and the outcome ([`finalize`],
//! [`FinalizeError`]); each step is a module of its own: the files next to the spool
//! (`spool`), sealed copies (`seal`), running ffmpeg (`ffmpeg`), validation
//! (`probe`), the poster (`poster`), uploads (`store`) and waiting for room (`gate`).
//! It must not know meetings or talk to the control plane: the media plane reports
//! the outcome.

mod ffmpeg;
mod gate;
mod poster;
mod probe;
mod seal;
mod spool;
mod store;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gremium_protocol::{Appearance, RecordedMedia};
use gremium_vault::context::{media_context, poster_context};
use gremium_vault::crypto::DataKey;
use gremium_vault::ObjectStore;
use uuid::Uuid;

pub use gate::DiscardGate;
pub use poster::poster;
pub use probe::{seal_and_probe, Probe, ProbedStream};
pub use spool::{read_completion, remove_spool, spool_path, write_completion, Completion};
pub use store::{media_object_key, poster_object_key, put_with_retry};

use crate::{RecorderError, StoredObject};
use gate::wait_for_room;
use seal::SealFile;
use spool::{completion_path, sealed_media_path, sealed_poster_path};

/// How a spool came to be finalized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Stopped normally.
    Stopped(Completion),
    /// Left behind by a process that died while recording (found at the next start).
    Recovered,
}

/// Why [`finalize`] did not store a recording. Its `Display` is what the chair reads
/// (after the media plane's prefix).
#[derive(Debug, thiserror::Error)]
pub enum FinalizeError {
    /// Discarded through its [`DiscardGate`] while waiting for room; the spool was
    /// not touched.
    #[error("discarded before it was finalized")]
    Discarded,
    /// Sealing, validating or storing failed.
    #[error(transparent)]
    Failed(#[from] RecorderError),
}

/// Progress callback of [`finalize`]: media time validated so far.
pub type Progress = Arc<dyn Fn(Duration) + Send + Sync>;

/// Seal, validate, make the poster and store a recording's spool (blocking work on
/// the blocking pool). The spool is removed once both objects are stored. `progress`
/// hears how far validation has read (at most twice a second); `gate` can discard
/// the recording while this waits for room on the spool disk.
pub async fn finalize(
    spool: PathBuf,
    key: DataKey,
    recording_id: Uuid,
    store: Arc<dyn ObjectStore>,
    origin: Origin,
    progress: Progress,
    gate: &DiscardGate,
) -> Result<RecordedMedia, FinalizeError> {
    let recovered = origin == Origin::Recovered;
    let completion = match &origin {
        Origin::Stopped(c) => c.clone(),
        Origin::Recovered => Completion::default(),
    };
    if !wait_for_room(&spool, recording_id, gate).await {
        return Err(FinalizeError::Discarded);
    }
    stored(
        spool,
        key,
        recording_id,
        store,
        recovered,
        completion,
        progress,
    )
    .await
    .map_err(FinalizeError::Failed)
}

/// [`finalize`] once there is room.
async fn stored(
    spool: PathBuf,
    key: DataKey,
    recording_id: Uuid,
    store: Arc<dyn ObjectStore>,
    recovered: bool,
    completion: Completion,
    progress: Progress,
) -> Result<RecordedMedia, RecorderError> {
    let work = {
        let (spool, key, completion) = (spool.clone(), key.clone(), completion.clone());
        tokio::task::spawn_blocking(move || -> Result<_, RecorderError> {
            let context = media_context(recording_id);
            let sealed_media = sealed_media_path(&spool);
            let (media, mut probe) = seal_and_probe(&spool, &key, &context, &sealed_media, |t| {
                tracing::debug!(%recording_id, media_s = t, "validating recording");
                progress(Duration::from_secs_f64(t.max(0.0)));
            })?;
            probe.recovered = recovered;
            probe.first_fragment_ms = completion.first_fragment_ms;
            let poster = match poster(&spool, &key, &context) {
                Ok(jpeg) => {
                    let path = sealed_poster_path(&spool);
                    let mut file = SealFile::create(&path, &key, &poster_context(recording_id))?;
                    file.write(&jpeg)?;
                    Some((path, file.finish()?))
                }
                Err(e) => {
                    tracing::warn!(%recording_id, error = %e, "no poster");
                    None
                }
            };
            Ok((sealed_media, media, probe, poster))
        })
    };
    let done = work.await.unwrap_or_else(|e| Err(RecorderError::Task(e)));
    let (media_path, media, probe, poster) = match done {
        Ok(done) => done,
        Err(e) => {
            // Half-written sealed copies are of no use; the spool stays.
            for path in [sealed_media_path(&spool), sealed_poster_path(&spool)] {
                let _ = tokio::fs::remove_file(path).await;
            }
            return Err(e);
        }
    };
    let media_key = media_object_key(recording_id);
    put_with_retry(store.as_ref(), &media_key, &media_path)
        .await
        .map_err(|source| RecorderError::Store {
            object: StoredObject::Media,
            source,
        })?;
    let mut poster_key = None;
    let mut poster_sha256 = None;
    if let Some((path, sealed)) = &poster {
        let key = poster_object_key(recording_id);
        put_with_retry(store.as_ref(), &key, path)
            .await
            .map_err(|source| RecorderError::Store {
                object: StoredObject::Poster,
                source,
            })?;
        poster_key = Some(key);
        poster_sha256 = Some(sealed.sha256.clone());
        let _ = tokio::fs::remove_file(path).await;
    }
    let _ = tokio::fs::remove_file(&media_path).await;
    let _ = tokio::fs::remove_file(&spool).await;
    let _ = tokio::fs::remove_file(completion_path(&spool)).await;
    let duration_ms = (probe.duration_s * 1000.0).round() as u64;
    Ok(RecordedMedia {
        media_key,
        media_sha256: media.sha256,
        stored_bytes: media.stored_bytes,
        plaintext_bytes: media.plaintext_bytes,
        poster_key,
        poster_sha256,
        duration_ms: Some(duration_ms),
        probe: serde_json::to_string(&probe).unwrap_or_default(),
        recovered,
        appearances: clip_appearances(completion.appearances, duration_ms),
    })
}

/// Appearances end where the media does: an interrupted recording's timeline runs
/// to the stop, its media only to the last fragment written.
fn clip_appearances(appearances: Vec<Appearance>, duration_ms: u64) -> Vec<Appearance> {
    appearances
        .into_iter()
        .map(|mut a| {
            a.ranges_ms = a
                .ranges_ms
                .into_iter()
                .filter(|[from, _]| *from < duration_ms)
                .map(|[from, to]| [from, to.min(duration_ms)])
                .collect();
            a
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn appearances_end_with_the_media() {
        let a = gremium_protocol::Appearance {
            participant_id: uuid::Uuid::nil(),
            display_name: "A".into(),
            ranges_ms: vec![[0, 1000], [2000, 9000], [9500, 12000]],
        };
        let clipped = super::clip_appearances(vec![a], 9200);
        assert_eq!(clipped[0].ranges_ms, vec![[0, 1000], [2000, 9000]]);
        let clipped = super::clip_appearances(clipped, 5000);
        assert_eq!(clipped[0].ranges_ms, vec![[0, 1000], [2000, 5000]]);
    }
}
