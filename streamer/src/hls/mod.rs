//! HLS packaging of a program with an ABR ladder.
//!
//! Owns: the [`HlsBin`] consumer (ghost sink pads `video`, raw I420 at the program
//! canvas, and `audio`, raw S16LE 48 kHz stereo), which encodes one H.264 rendition
//! per rung of the ladder from a single `tee` of the raw video, one AAC encode shared
//! by all of them, and writes through one `hlssink2` per rendition. The top
//! rendition's H.264 and the AAC may instead arrive encoded (`video_h264`,
//! `audio_aac`: [`HlsSettings::encoded_top`], [`HlsSettings::encoded_audio`]):
//!
//! ```text
//! DIR/index.m3u8                master playlist (written by Rust when the bin is built)
//! DIR/{rendition}/index.m3u8    live media playlist of each video rendition
//! DIR/{rendition}/{prefix}%05d.ts  MPEG-TS segments (H.264 High + AAC-LC)
//! DIR/audio/index.m3u8          audio-only rendition (AAC-LC 128 kbit/s)
//! ```
//!
//! Every segment starts with a keyframe (`key-int-max` = fps × segment length, and
//! `hlssink2` asks the encoder for one at each cut). Inside the bin, the elements of a
//! rendition are named `{rendition}-queue`, `{rendition}-scale`, `{rendition}-enc`,
//! `{rendition}-parse` and `hls-{rendition}` (`hls-audio` for the audio-only one).
//!
//! An optional broadcast delay holds the raw program back (queues `video-delay` and
//! `audio-queue`, their output shifted by the delay so muxers and sinks see it on
//! time) before anything is encoded; [`HlsBin::cut`] then blanks — slate colour and
//! silence — everything still held back, so a moderator's cut takes effect on every
//! output at once. Raw 720p30 video costs about 40 MB per second of delay.
//!
//! Without files (`HlsSettings::files` false: a stream with only RTMP destinations)
//! the bin is encoders only: the top rendition and the AAC, no sinks, nothing written.
//!
//! RTMP push destinations share the top rendition's H.264 (a `tee` named
//! `rtmp-video-tee` between its `{rendition}-parse` and `hls-{rendition}`) and the AAC
//! (`audio-tee`): see [`HlsBin::add_rtmp`] and [`crate::rtmp`].
//!
//! Must not: serve the files (the HTTP side reads `DIR`), know meetings.

//!
//! Modules: `settings` (the ladder and the checked settings), `playlist` (playlists
//! as plain values), `bin` (the [`HlsBin`]), `sinks` (the `hlssink2`s and the master
//! playlist file), `delay` (broadcast delay and cut), `drain` (the bin that tells
//! which sinks drained).

mod bin;
mod delay;
mod drain;
mod playlist;
mod settings;
mod sinks;
mod start;

use std::path::Path;

use gremium_pipelines::PipelineError;

pub use bin::HlsBin;
pub use playlist::{
    avc1_high, h264_high_level, playlist_is_valid, render_master, MediaPlaylist, Segment, Variant,
    AAC_LC,
};
pub use settings::{HlsSettings, Rendition};

use crate::StreamerError;

/// Bitrate of the single AAC encode, shared by every rendition.
pub const AUDIO_KBPS: u32 = gremium_pipelines::encode::AAC_KBPS;
/// Name (and directory) of the audio-only rendition.
pub const AUDIO_RENDITION: &str = "audio";
/// File name of every playlist (master and media).
pub const PLAYLIST: &str = "index.m3u8";
/// Default segment name prefix (`seg00000.ts`, …).
pub const SEGMENT_PREFIX: &str = "seg";

fn err(e: impl std::fmt::Display) -> PipelineError {
    PipelineError::Link(e.to_string())
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StreamerError + '_ {
    move |source| StreamerError::Io {
        path: path.to_path_buf(),
        source,
    }
}
