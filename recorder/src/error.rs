//! Why post-processing a recording failed.
//!
//! Owns: [`RecorderError`] (with the step and the file it concerns) and the small
//! enums that name them. Its `Display` is what the chair reads: the media plane puts
//! it into `RecordingFailed.reason` after a prefix such as "post-processing failed: ",
//! so every message names the step in words and carries its cause.
//!
//! Must not: carry secrets (keys, credentials) or media bytes into a message.

use std::fmt;
use std::path::PathBuf;
use std::process::ExitStatus;

use gremium_vault::{CryptoError, ObjectError};

/// Which run of ffmpeg a failure is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FfmpegStep {
    /// Validating the media: stream copy into the null muxer while sealing it.
    Validate,
    /// Decoding one frame for the poster.
    Poster,
}

impl fmt::Display for FfmpegStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FfmpegStep::Validate => "validating the media",
            FfmpegStep::Poster => "making the poster",
        })
    }
}

/// Which of a recording's objects a store failure is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoredObject {
    /// The sealed media (fragmented MP4).
    Media,
    /// The sealed poster (JPEG).
    Poster,
}

impl fmt::Display for StoredObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StoredObject::Media => "media",
            StoredObject::Poster => "poster",
        })
    }
}

/// Why sealing, validating, making the poster or storing a recording failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecorderError {
    /// ffmpeg could not be started (not installed, not executable).
    #[error("{step}: ffmpeg could not be started: {source}")]
    FfmpegStart {
        /// The run that failed.
        step: FfmpegStep,
        /// What spawning reported.
        source: std::io::Error,
    },
    /// ffmpeg was started without the stdin pipe the spool is fed through.
    #[error("{step}: ffmpeg has no input pipe")]
    FfmpegPipe {
        /// The run that failed.
        step: FfmpegStep,
    },
    /// ffmpeg's output could not be read.
    #[error("{step}: reading ffmpeg's output: {source}")]
    FfmpegOutput {
        /// The run that failed.
        step: FfmpegStep,
        /// What ffmpeg-sidecar reported.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Waiting for ffmpeg to exit failed.
    #[error("{step}: waiting for ffmpeg: {source}")]
    FfmpegWait {
        /// The run that failed.
        step: FfmpegStep,
        /// What waiting reported.
        source: std::io::Error,
    },
    /// ffmpeg exited with an error status: it could not read the media.
    #[error("{step}: ffmpeg exited with {status}{}", said(.errors))]
    FfmpegExit {
        /// The run that failed.
        step: FfmpegStep,
        /// Its exit status.
        status: ExitStatus,
        /// The errors it logged, in order.
        errors: Vec<String>,
    },
    /// ffmpeg read the media but found no stream in it.
    #[error("validating the media: ffmpeg found no streams{}", said(.errors))]
    NoStreams {
        /// The errors ffmpeg logged, in order.
        errors: Vec<String>,
    },
    /// The spool could not be read or decrypted (I/O, wrong key, tampering).
    #[error("reading the spool {}: {source}", .path.display())]
    ReadSpool {
        /// The spool file.
        path: PathBuf,
        /// What reading reported.
        source: CryptoError,
    },
    /// Writing a sealed copy next to the spool failed (a full disk, an I/O error).
    #[error("sealing into {}: {source}", .path.display())]
    Seal {
        /// The sealed file being written.
        path: PathBuf,
        /// What writing reported.
        source: CryptoError,
    },
    /// The media has no video frame to make a poster of.
    #[error("making the poster: no video frame")]
    NoPosterFrame,
    /// The thread feeding the spool to ffmpeg panicked.
    #[error("the spool reader panicked")]
    SpoolReaderPanicked,
    /// The blocking post-processing task panicked or was cancelled.
    #[error("post-processing stopped: {0}")]
    Task(#[source] tokio::task::JoinError),
    /// The object store refused an object or failed for another reason than being
    /// unavailable (that is retried until it succeeds).
    #[error("storing the {object}: {source}")]
    Store {
        /// Which object.
        object: StoredObject,
        /// What the store reported.
        source: ObjectError,
    },
}

/// What ffmpeg logged, as a suffix to a message; nothing when it logged nothing.
fn said(errors: &[String]) -> String {
    if errors.is_empty() {
        String::new()
    } else {
        format!(" ({})", errors.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The chair reads these after "post-processing failed: ": each names the step
    /// and the cause, and nothing is said twice.
    #[test]
    fn messages_name_the_step_and_the_cause() {
        let e = RecorderError::NoStreams {
            errors: vec!["pipe:0: Invalid data found when processing input".into()],
        };
        assert_eq!(
            e.to_string(),
            "validating the media: ffmpeg found no streams \
             (pipe:0: Invalid data found when processing input)"
        );
        let e = RecorderError::Store {
            object: StoredObject::Poster,
            source: ObjectError::InvalidKey("a/b.part".into()),
        };
        assert_eq!(
            e.to_string(),
            "storing the poster: invalid object key \"a/b.part\""
        );
        let e = RecorderError::Seal {
            path: PathBuf::from("/spool/r.media.sealed"),
            source: CryptoError::Io(std::io::Error::other("No space left on device")),
        };
        assert_eq!(
            e.to_string(),
            "sealing into /spool/r.media.sealed: No space left on device"
        );
        assert_eq!(
            RecorderError::NoStreams { errors: vec![] }.to_string(),
            "validating the media: ffmpeg found no streams"
        );
    }
}
