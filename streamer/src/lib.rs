//! Live outputs of the livestream-audience program.
//!
//! Owns: HLS packaging for citizens ([`hls::HlsBin`]: an ABR ladder of H.264
//! renditions plus audio-only, a master playlist, live media playlists with a window
//! and optional DVR, old segments deleted, finish = EOS with a watchdog); RTMP(S) push
//! destinations sharing the HLS encodes, each isolated and reconnecting with backoff
//! ([`rtmp`], added with [`hls::HlsBin::add_rtmp`]); later the public/non-public
//! switch to the slate.
//!
//! Must not: talk SQL or HTTP, know meetings. The media plane attaches an
//! [`hls::HlsBin`] to the streaming program as a consumer and finishes it; serving
//! the directory is the HTTP side's job.
//!
//! Status: the HLS bin works, is tested on real pipelines (segments, playlists,
//! ffprobe/ffmpeg) and is wired: `StartStream {hls: true}` attaches it to the
//! streaming program (see `tests/streaming.rs`). RTMP push works and is tested against
//! a real nginx-rtmp (`tests/rtmp.rs`) but is not wired into the media plane yet; the
//! slate switch is not started.

pub mod hls;
pub mod rtmp;

use std::path::PathBuf;

use gremium_pipelines::PipelineError;

/// Errors of the live outputs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamerError {
    /// The settings cannot make a playable output; nothing was built.
    #[error("invalid stream settings: {0}")]
    InvalidSettings(String),
    /// An element is missing or would not link.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// A directory or playlist could not be written.
    #[error("writing {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// EOS did not reach these outputs before the watchdog expired.
    #[error("stream output frozen: {unfinished:?} did not finish in time")]
    Frozen {
        /// Names of the sinks that had not drained.
        unfinished: Vec<String>,
    },
    /// An output element failed while running (e.g. a segment could not be written).
    #[error("stream output failed: {0}")]
    Output(String),
}
