//! Gremium as a cluster: media nodes and control replicas on NATS (JetStream),
//! PostgreSQL and an object store (see `docs/cluster.md`).
//!
//! Owns: the subjects and streams on NATS, the pure placement and cost model
//! ([`placement`], [`cost`]), the media node's side (registry heartbeat, serving
//! the media protocol for the meetings placed on it) and the control replica's side
//! (a [`gremium_protocol::MediaPlane`] that places meetings and forwards commands,
//! the durable consumer of media events, the WebSocket fan-out between replicas).
//!
//! Must not: run GStreamer itself (a media node is handed its media plane), know
//! about HTTP, or invent a cluster protocol of its own: what crosses the wire is the
//! serde media protocol of `gremium-protocol`.

pub mod admin;
pub mod control;
pub mod cost;
pub mod events;
pub mod nats;
pub mod node;
pub mod placement;
pub mod registry;
pub mod subjects;

pub use control::{ClusterMediaPlane, ControlSettings};
pub use nats::Nats;
pub use node::{MediaNode, NodeSettings};
pub use registry::Registry;

/// Errors of the cluster transport.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// NATS could not be reached or prepared at start (the message names the setting).
    #[error("{0}")]
    Connect(String),
    /// A NATS operation failed.
    #[error("NATS: {0}")]
    Nats(String),
}
