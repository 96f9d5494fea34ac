//! The poster: one frame of the recording as a small JPEG, for the archive's list.
//!
//! Owns: choosing the frame (at 1 s, or the first) and its size (480 px wide).
//!
//! Must not: seal or store the poster (that is [`crate::finalize`]'s job), or fail
//! the recording: a recording without a poster is still a recording.

use std::path::Path;

use ffmpeg_sidecar::event::FfmpegEvent;
use gremium_vault::crypto::DataKey;

use super::ffmpeg::run_ffmpeg;
use crate::{FfmpegStep, RecorderError};

/// A JPEG poster (480 px wide) from the frame at 1 s, or the first frame.
pub fn poster(spool: &Path, key: &DataKey, context: &[u8]) -> Result<Vec<u8>, RecorderError> {
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
        run_ffmpeg(FfmpegStep::Poster, spool, key, context, &args, |event| {
            if let FfmpegEvent::OutputChunk(chunk) = event {
                jpeg.extend_from_slice(&chunk);
            }
        })?;
        if jpeg.starts_with(&[0xFF, 0xD8]) {
            return Ok(jpeg);
        }
    }
    Err(RecorderError::NoPosterFrame)
}
