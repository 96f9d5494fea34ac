//! Gremium's media plane on GStreamer: the media node. It implements the control
//! plane's [`MediaPlane`] protocol; each meeting's media is owned by one actor.
//!
//! Owns: meeting media sessions (a pipeline per active meeting, created when a
//! command needs one and torn down when nothing publishes, consumes or runs), WHIP
//! publishing sessions, programs per output audience, recordings and livestreams,
//! and media events back to the control plane.
//!
//! Must not: know HTTP or SQL (it links no database crate), or hold a lock others
//! wait on across a GStreamer call. It is driven only through [`MediaCommand`]s, so
//! it can run in the control plane's process (the embedded default) or on a media
//! node elsewhere.
//!
//! The layers, each using only those above it:
//! - [`policy`]: the consent policy as a pure core (who may be seen and heard in
//!   which audience, whether the livestream may share the recording's encode, the
//!   indicator, the publisher watch). No GStreamer; time is passed in.
//! - [`settings`], `timeline` (who appeared when), `encoders` (program encodes and
//!   the livestream feeds that switch between them).
//! - `meeting`: the actor — one thread per meeting with its own mailbox, applying
//!   commands to the pipeline as the policy decides (`publish`, `programs`,
//!   `outputs`).
//! - `spools`: recordings' spool files once their meeting has finished writing
//!   them (post-processing, recovery after a crash, removal).
//! - `plane`: [`GstMediaPlane`], the front door that routes each command to its
//!   meeting's mailbox.
//!
//! Each publisher's decoded audio and video end in a tee; every program (one per
//! output audience, created when a consumer attaches) takes a branch from it through
//! its consent gates. Consumers (recorder, streamer, tests) attach to a program with
//! [`GstMediaPlane::attach_consumer`]. With `StreamingSettings::share_encoder` (the
//! default) recordings and livestreams take their main video and their audio
//! already encoded from the program's H.264 and AAC encoders, and the livestream
//! takes the recording's encodes while both audiences see the same program.

pub(crate) mod encoders;
mod meeting;
mod plane;
pub mod policy;
pub mod settings;
mod spools;
mod timeline;

pub use plane::GstMediaPlane;
pub use settings::{MediaPlaneSettings, RecordingEncode, StreamingSettings};

use gremium_pipelines::PipelineError;
use gremium_protocol::MediaPlaneError;

/// A pipeline error as the protocol reports it: a bad offer is the caller's fault.
fn failed(e: PipelineError) -> MediaPlaneError {
    match e {
        PipelineError::Sdp(m) | PipelineError::Unsupported(m) => MediaPlaneError::Rejected(m),
        other => MediaPlaneError::Failed(other.to_string()),
    }
}
