//! Validation: ffmpeg reads the whole media (stream copy into the null muxer) while
//! the same decrypted pieces are sealed, in one pass over the spool.
//!
//! Owns: what validation found ([`Probe`]: container, streams, duration) and reading
//! ffmpeg's progress times.
//!
//! Must not: store anything, or decide what a failed validation means for the
//! recording ([`crate::finalize`] fails it).

use std::path::Path;

use ffmpeg_sidecar::event::{FfmpegEvent, LogLevel, StreamTypeSpecificData};
use gremium_vault::crypto::{DataKey, Sealed};
use serde::Serialize;

use super::ffmpeg::run_ffmpeg_sealing;
use super::seal::SealFile;
use crate::{FfmpegStep, RecorderError};

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

/// Validate the media while sealing it into `sealed` (one pass over the spool):
/// ffmpeg stream-copies it into the null muxer. `progress` gets the media time
/// reached, in seconds, as ffmpeg reports it.
pub fn seal_and_probe(
    spool: &Path,
    key: &DataKey,
    context: &[u8],
    sealed: &Path,
    mut progress: impl FnMut(f64),
) -> Result<(Sealed, Probe), RecorderError> {
    let writer = SealFile::create(sealed, key, context)?;
    let mut streams = Vec::new();
    let mut duration: Option<f64> = None;
    let mut errors = Vec::new();
    let sealed = run_ffmpeg_sealing(
        FfmpegStep::Validate,
        spool,
        key,
        context,
        &["-map", "0", "-c", "copy", "-f", "null", "-"],
        writer,
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
    )?;
    if streams.is_empty() {
        return Err(RecorderError::NoStreams { errors });
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

#[cfg(test)]
mod tests {
    use super::parse_time;

    #[test]
    fn progress_times_parse() {
        assert_eq!(parse_time("00:00:04.96"), Some(4.96));
        assert_eq!(parse_time("01:02:03.50"), Some(3723.5));
        assert_eq!(parse_time("N/A"), None);
    }
}
