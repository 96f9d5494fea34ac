//! Post-processing of a finished (or crash-orphaned) recording spool.
//!
//! 1. **Seal and validate**, in one pass over the spool: its records are re-chunked
//!    into the sealed object format (fixed-size chunks, so archive reads can serve
//!    byte ranges), still encrypted with the recording's data key, the SHA-256 of
//!    the stored bytes computed on the way; the same decrypted pieces go to ffmpeg
//!    (through ffmpeg-sidecar) on a pipe, with stream copy into the null muxer: every
//!    packet is parsed, the streams are listed and the last progress time is the
//!    duration. A file ffmpeg cannot read fails the recording (half-written sealed
//!    copies are removed; the spool stays until the recording is deleted).
//! 3. **Poster**: ffmpeg decodes one frame (at 1 s, or the first) into a 480 px wide
//!    JPEG, which is sealed like the media.
//! 4. **Store**: both objects go to the object store, retried with backoff while the
//!    store is unavailable; the spool is removed only after.
//!
//! Before step 1 it waits until the spool's disk has room for the sealed copy (a
//! recording interrupted by a full disk is finalized once space is freed). While it
//! waits, nothing has been written from the spool yet, so the recording may still be
//! discarded through its [`DiscardGate`]; once sealing begins it may not. The
//! appearances are cut to the media's duration.
//!
//! Plaintext exists only in memory and in the pipes to ffmpeg.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ffmpeg_sidecar::command::FfmpegCommand;
use ffmpeg_sidecar::event::{FfmpegEvent, LogLevel, StreamTypeSpecificData};
use gremium_protocol::{Appearance, RecordedMedia};
use gremium_storage::crypto::{read_spool, DataKey, SealWriter, Sealed};
use gremium_storage::vault::{media_context, poster_context};
use gremium_storage::{ObjectError, ObjectStore};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Object key of a recording's media.
pub fn media_object_key(recording_id: Uuid) -> String {
    format!("recordings/{recording_id}/media.mp4.sealed")
}

/// Object key of a recording's poster.
pub fn poster_object_key(recording_id: Uuid) -> String {
    format!("recordings/{recording_id}/poster.jpg.sealed")
}

/// The spool file of a recording in `dir`.
pub fn spool_path(dir: &Path, recording_id: Uuid) -> PathBuf {
    dir.join(format!("{recording_id}.spool"))
}

/// One stream as ffmpeg saw it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProbedStream {
    /// `video` or `audio` (or `other`).
    pub kind: &'static str,
    /// Codec name, e.g. `h264`, `aac`.
    pub codec: String,
    /// Video width.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Video height.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// Audio sample rate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<u32>,
}

/// What validation found.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Probe {
    /// Container (always `mp4` here).
    pub container: &'static str,
    /// Duration in seconds (last packet time ffmpeg reported).
    pub duration_s: f64,
    /// Streams in input order.
    pub streams: Vec<ProbedStream>,
    /// True when the recording was recovered from a spool a crash left behind (its
    /// last fragment may be missing).
    pub recovered: bool,
    /// Milliseconds from the start command to the first fragment (starting with a
    /// keyframe) in the spool; unknown after a crash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_fragment_ms: Option<u64>,
}

/// Parse ffmpeg's `HH:MM:SS.xx` progress time.
fn parse_time(t: &str) -> Option<f64> {
    let mut parts = t.trim().split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

/// Run ffmpeg with the decrypted spool on stdin; hand each event to `on_event`.
/// With `seal`, each decrypted piece is also sealed into it (on the feeder thread),
/// the whole spool is read even if ffmpeg stops reading early, and the sealed
/// result is returned; without, reading stops with ffmpeg.
fn run_ffmpeg(
    spool: &Path,
    key: &DataKey,
    context: &[u8],
    args: &[&str],
    seal: Option<SealWriter<BufWriter<std::fs::File>>>,
    mut on_event: impl FnMut(FfmpegEvent),
) -> Result<Option<Result<Sealed, String>>, String> {
    let mut child = FfmpegCommand::new()
        .hide_banner()
        .input("pipe:0")
        .args(args)
        .spawn()
        .map_err(|e| format!("ffmpeg could not be started: {e}"))?;
    let mut stdin = Some(child.take_stdin().ok_or("ffmpeg without stdin")?);
    let (spool, key, context) = (spool.to_path_buf(), key.clone(), context.to_vec());
    let feeder = std::thread::spawn(move || {
        let mut seal = seal;
        let read = read_spool(&spool, &key, &context, |p| {
            if let Some(w) = &mut seal {
                w.write(p).map_err(std::io::Error::other)?;
            }
            // ffmpeg may stop reading early (poster, a broken file): from then on
            // only the seal gets the rest, if there is one.
            if let Some(pipe) = &mut stdin {
                if let Err(e) = pipe.write_all(p) {
                    if seal.is_none() {
                        return Err(e);
                    }
                    stdin = None;
                }
            }
            Ok(())
        });
        drop(stdin); // EOF for ffmpeg
        seal.map(|w| {
            read.map_err(|e| format!("reading the spool: {e}"))?;
            let (sealed, out) = w.finish().map_err(|e| e.to_string())?;
            out.into_inner()
                .map_err(|e| e.to_string())?
                .sync_all()
                .map_err(|e| e.to_string())?;
            Ok(sealed)
        })
    });
    let events = child.iter().map_err(|e| format!("ffmpeg output: {e}"))?;
    for event in events {
        on_event(event);
    }
    let status = child.wait().map_err(|e| format!("ffmpeg: {e}"))?;
    let sealed = feeder
        .join()
        .map_err(|_| "the spool reader panicked".to_string())?;
    if !status.success() {
        return Err(format!("ffmpeg exited with {status}"));
    }
    Ok(sealed)
}

/// Validate the media while sealing it into `sealed` (one pass over the spool):
/// ffmpeg stream-copies it into the null muxer. `progress` gets the media time
/// reached, in seconds, as ffmpeg reports it.
pub fn seal_and_probe(
    spool: &Path,
    key: &DataKey,
    context: &[u8],
    sealed: &Path,
    mut progress: impl FnMut(f64),
) -> Result<(Sealed, Probe), String> {
    let file = std::fs::File::create(sealed).map_err(|e| format!("{}: {e}", sealed.display()))?;
    let writer = SealWriter::new(BufWriter::new(file), key, context).map_err(|e| e.to_string())?;
    let mut streams = Vec::new();
    let mut duration: Option<f64> = None;
    let mut errors = Vec::new();
    let sealed = run_ffmpeg(
        spool,
        key,
        context,
        &["-map", "0", "-c", "copy", "-f", "null", "-"],
        Some(writer),
        |event| match event {
            FfmpegEvent::ParsedInputStream(s) => {
                let (kind, width, height, sample_rate) = match &s.type_specific_data {
                    StreamTypeSpecificData::Video(v) => {
                        ("video", Some(v.width), Some(v.height), None)
                    }
                    StreamTypeSpecificData::Audio(a) => ("audio", None, None, Some(a.sample_rate)),
                    _ => ("other", None, None, None),
                };
                streams.push(ProbedStream {
                    kind,
                    codec: s.format,
                    width,
                    height,
                    sample_rate,
                });
            }
            FfmpegEvent::Progress(p) => {
                if let Some(t) = parse_time(&p.time) {
                    progress(t);
                    duration = Some(t);
                }
            }
            FfmpegEvent::Log(LogLevel::Error | LogLevel::Fatal, msg) => errors.push(msg),
            _ => {}
        },
    )
    .map_err(|e| format!("{e}: {}", errors.join("; ")))?
    .ok_or("nothing sealed")??;
    if streams.is_empty() {
        return Err(format!("ffmpeg found no streams: {}", errors.join("; ")));
    }
    Ok((
        sealed,
        Probe {
            container: "mp4",
            duration_s: duration.unwrap_or(0.0),
            streams,
            recovered: false,
            first_fragment_ms: None,
        },
    ))
}

/// A JPEG poster (480 px wide) from the frame at 1 s, or the first frame.
pub fn poster(spool: &Path, key: &DataKey, context: &[u8]) -> Result<Vec<u8>, String> {
    for seek in [&["-ss", "1"][..], &[][..]] {
        let mut jpeg = Vec::new();
        let mut args: Vec<&str> = seek.to_vec();
        args.extend([
            "-map",
            "0:v:0",
            "-frames:v",
            "1",
            "-vf",
            "scale=480:-2",
            "-c:v",
            "mjpeg",
            "-f",
            "image2pipe",
            "pipe:1",
        ]);
        // ffmpeg stops reading after the frame, and so does the feeder.
        run_ffmpeg(spool, key, context, &args, None, |event| {
            if let FfmpegEvent::OutputChunk(chunk) = event {
                jpeg.extend_from_slice(&chunk);
            }
        })?;
        if jpeg.starts_with(&[0xFF, 0xD8]) {
            return Ok(jpeg);
        }
    }
    Err("no video frame for a poster".into())
}

fn seal_to(
    path: &Path,
    key: &DataKey,
    context: &[u8],
    feed: impl FnOnce(&mut dyn FnMut(&[u8]) -> std::io::Result<()>) -> Result<(), String>,
) -> Result<Sealed, String> {
    let file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut writer =
        SealWriter::new(BufWriter::new(file), key, context).map_err(|e| e.to_string())?;
    let mut failure = None;
    feed(&mut |p: &[u8]| {
        writer.write(p).map_err(|e| {
            failure = Some(e.to_string());
            std::io::Error::other("seal")
        })
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    let (sealed, out) = writer.finish().map_err(|e| e.to_string())?;
    out.into_inner()
        .map_err(|e| e.to_string())?
        .sync_all()
        .map_err(|e| e.to_string())?;
    Ok(sealed)
}

/// What the media plane knew when a recording stopped normally: written next to the
/// spool (`{id}.done`, JSON) before post-processing starts, so a restart in the middle
/// of post-processing or of a long upload resumes it as a normal stop, not as a crash.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completion {
    /// Start → first fragment (starting with a keyframe) in the spool, milliseconds.
    pub first_fragment_ms: Option<u64>,
    /// Who appeared when.
    pub appearances: Vec<Appearance>,
}

fn completion_path(spool: &Path) -> PathBuf {
    spool.with_extension("done")
}

/// Remove a spool, its completion mark and what an interrupted post-processing left
/// next to it (sealed media and poster not yet stored), if there are any.
pub fn remove_spool(spool: &Path) -> std::io::Result<()> {
    for path in [
        spool.to_path_buf(),
        completion_path(spool),
        spool.with_extension("done.part"),
        spool.with_extension("media.sealed"),
        spool.with_extension("poster.sealed"),
    ] {
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// Mark a spool as completely written.
pub fn write_completion(spool: &Path, c: &Completion) -> std::io::Result<()> {
    let path = completion_path(spool);
    let tmp = path.with_extension("done.part");
    let written = std::fs::write(&tmp, serde_json::to_vec(c).map_err(std::io::Error::other)?)
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        // A full disk leaves a partial file; without the mark the spool is recovered
        // as after a crash.
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// The completion mark of a spool, if it was completely written.
pub fn read_completion(spool: &Path) -> Option<Completion> {
    let bytes = std::fs::read(completion_path(spool)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// How a spool came to be finalized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Stopped normally.
    Stopped(Completion),
    /// Left behind by a process that died while recording (found at the next start).
    Recovered,
}

/// Store `path` under `key`, retrying an unavailable store with backoff (1 s doubling
/// to 30 s) until it succeeds: the sealed file waits in the spool directory, so an
/// object-store outage delays a recording but loses nothing. Other errors fail at once.
pub async fn put_with_retry(
    store: &dyn ObjectStore,
    key: &str,
    path: &Path,
) -> Result<(), ObjectError> {
    let mut wait = std::time::Duration::from_secs(1);
    loop {
        match store.put_file(key, path).await {
            Err(ObjectError::Unavailable(e)) => {
                tracing::warn!(key, error = %e, retry_in_s = wait.as_secs(), "upload failed; will retry");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(std::time::Duration::from_secs(30));
            }
            other => return other,
        }
    }
}

/// Whether a stopped recording may still be discarded instead of finalized: yes while
/// [`finalize`] waits for room on the spool disk (nothing has been read from the
/// spool or written from it yet), no once sealing has begun.
#[derive(Debug, Default)]
pub struct DiscardGate {
    phase: Mutex<Phase>,
    wake: tokio::sync::Notify,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Phase {
    #[default]
    Waiting,
    Discarded,
    Finalizing,
}

impl DiscardGate {
    /// Discard the recording if its finalization has not begun: `true` if it is (or
    /// already was) discarded — [`finalize`] then leaves the spool alone and returns
    /// [`FinalizeError::Discarded`] — `false` if sealing has begun.
    pub fn discard(&self) -> bool {
        let mut phase = self.phase.lock().unwrap_or_else(|p| p.into_inner());
        match *phase {
            Phase::Waiting | Phase::Discarded => {
                *phase = Phase::Discarded;
                self.wake.notify_one();
                true
            }
            Phase::Finalizing => false,
        }
    }

    /// Move on to sealing, unless discarded first.
    fn begin(&self) -> bool {
        let mut phase = self.phase.lock().unwrap_or_else(|p| p.into_inner());
        if *phase == Phase::Waiting {
            *phase = Phase::Finalizing;
        }
        *phase == Phase::Finalizing
    }

    fn discarded(&self) -> bool {
        *self.phase.lock().unwrap_or_else(|p| p.into_inner()) == Phase::Discarded
    }
}

/// Why [`finalize`] did not store a recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinalizeError {
    /// Discarded through its [`DiscardGate`] while waiting for room; the spool was
    /// not touched.
    Discarded,
    /// Sealing, validating or storing failed.
    Failed(String),
}

impl std::fmt::Display for FinalizeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FinalizeError::Discarded => f.write_str("discarded before it was finalized"),
            FinalizeError::Failed(reason) => f.write_str(reason),
        }
    }
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
) -> Result<RecordedMedia, String> {
    let work = {
        let (spool, key, completion) = (spool.clone(), key.clone(), completion.clone());
        tokio::task::spawn_blocking(move || -> Result<_, String> {
            let context = media_context(recording_id);
            let sealed_media = spool.with_extension("media.sealed");
            let (media, mut probe) = seal_and_probe(&spool, &key, &context, &sealed_media, |t| {
                tracing::debug!(%recording_id, media_s = t, "validating recording");
                progress(Duration::from_secs_f64(t.max(0.0)));
            })?;
            probe.recovered = recovered;
            probe.first_fragment_ms = completion.first_fragment_ms;
            let poster = match poster(&spool, &key, &context) {
                Ok(jpeg) => {
                    let path = spool.with_extension("poster.sealed");
                    let sealed = seal_to(&path, &key, &poster_context(recording_id), |sink| {
                        sink(&jpeg).map_err(|e| e.to_string())
                    })?;
                    Some((path, sealed))
                }
                Err(e) => {
                    tracing::warn!(%recording_id, error = %e, "no poster");
                    None
                }
            };
            Ok((sealed_media, media, probe, poster))
        })
    };
    let done = work
        .await
        .unwrap_or_else(|e| Err(format!("post-processing panicked: {e}")));
    let (media_path, media, probe, poster) = match done {
        Ok(done) => done,
        Err(e) => {
            // Half-written sealed copies are of no use; the spool stays.
            for ext in ["media.sealed", "poster.sealed"] {
                let _ = tokio::fs::remove_file(spool.with_extension(ext)).await;
            }
            return Err(e);
        }
    };
    let media_key = media_object_key(recording_id);
    put_with_retry(store.as_ref(), &media_key, &media_path)
        .await
        .map_err(|e| format!("storing the media: {e}"))?;
    let mut poster_key = None;
    let mut poster_sha256 = None;
    if let Some((path, sealed)) = &poster {
        let key = poster_object_key(recording_id);
        put_with_retry(store.as_ref(), &key, path)
            .await
            .map_err(|e| format!("storing the poster: {e}"))?;
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

/// Sealing writes a copy of the spool next to it. Wait (1 s doubling to 60 s) until
/// the spool's disk has room for it: a recording interrupted because that disk filled
/// up is finalized once space is freed, instead of failing for good. Nothing is lost
/// meanwhile: the spool stays. If the free space cannot be read, go ahead. `false`
/// if `gate` discarded the recording first (at once, not at the next look).
async fn wait_for_room(spool: &Path, recording_id: Uuid, gate: &DiscardGate) -> bool {
    let dir = spool.parent().unwrap_or(Path::new("."));
    let mut wait = Duration::from_secs(1);
    loop {
        if gate.discarded() {
            return false;
        }
        let needed = match std::fs::metadata(spool) {
            // The sealed copy is a little larger than the spool; the poster is small.
            Ok(m) => m.len() + m.len() / 50 + 1024 * 1024,
            Err(_) => return gate.begin(),
        };
        match fs4::available_space(dir) {
            Ok(free) if free < needed => {
                tracing::warn!(%recording_id, free, needed, retry_in_s = wait.as_secs(),
                    "no room on the spool disk to finalize the recording; waiting");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = gate.wake.notified() => {}
                }
                wait = (wait * 2).min(Duration::from_secs(60));
            }
            _ => return gate.begin(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_time, wait_for_room, DiscardGate};
    use std::time::{Duration, Instant};

    /// A spool "larger" than its disk (sparse): finalizing waits for room, and a
    /// discard ends the wait at once, not at the next look.
    #[tokio::test]
    async fn a_recording_waiting_for_room_can_be_discarded_but_not_once_sealing_began() {
        let dir = std::env::temp_dir().join(format!("gremium-gate-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let spool = dir.join("r.spool");
        let free = fs4::available_space(&dir).unwrap();
        std::fs::File::create(&spool)
            .unwrap()
            .set_len(free + (1 << 30))
            .unwrap();
        let gate = std::sync::Arc::new(DiscardGate::default());
        let waiting = {
            let (spool, gate) = (spool.clone(), gate.clone());
            tokio::spawn(async move { wait_for_room(&spool, uuid::Uuid::nil(), &gate).await })
        };
        // Past the first look (it would look again after 1 s, then 2 s).
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert!(!waiting.is_finished(), "it did not wait for room");
        let asked = Instant::now();
        assert!(gate.discard());
        assert!(!waiting.await.unwrap(), "went on after a discard");
        assert!(
            asked.elapsed() < Duration::from_millis(500),
            "{:?}",
            asked.elapsed()
        );
        assert!(gate.discard(), "discarding twice is harmless");
        assert!(!gate.begin());

        // With room, it goes on to sealing, and a discard comes too late.
        std::fs::File::create(&spool)
            .unwrap()
            .set_len(1024)
            .unwrap();
        let gate = DiscardGate::default();
        assert!(wait_for_room(&spool, uuid::Uuid::nil(), &gate).await);
        assert!(!gate.discard());
        let _ = std::fs::remove_dir_all(&dir);
    }

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

    #[test]
    fn progress_times_parse() {
        assert_eq!(parse_time("00:00:04.96"), Some(4.96));
        assert_eq!(parse_time("01:02:03.50"), Some(3723.5));
        assert_eq!(parse_time("N/A"), None);
    }
}
