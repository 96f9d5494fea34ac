//! The typed contract between Gremium's control plane and its media plane.
//!
//! Owns: the serializable command/event protocol ([`MediaCommand`], [`MediaEvent`]),
//! the [`MediaPlane`] trait the control plane drives, and the pure output lifecycle
//! ([`OutputState`]) shared by recordings and streams.
//!
//! Must not: do IO, know about HTTP, SQL or GStreamer. Every type here must stay
//! serializable so that the same protocol can cross a process or node boundary.

pub mod cluster;
pub mod lifecycle;
pub mod media;
pub mod redact;

pub use cluster::{
    ClusterStatus, CommandReply, CommandRequest, EventEnvelope, NodeAdminReply, NodeAdminRequest,
    NodeInfo, NodeStatus,
};
pub use lifecycle::{InvalidTransition, OutputState, OutputTrigger};
pub use media::{
    Appearance, Audience, CommandOutcome, Consent, EventSink, LayoutKind, LayoutSpec, MediaCommand,
    MediaEvent, MediaPlane, MediaPlaneError, MeetingContext, RecordedMedia, RtmpTarget, SecretHex,
};
pub use redact::{redact_rtmp_url, rtmp_url_secrets};
