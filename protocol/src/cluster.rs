//! What the nodes of a cluster say about themselves, and the wire forms of the
//! media protocol when it crosses NATS (see `docs/cluster.md`).
//!
//! Plain serde types: the same values travel in the node registry (a JetStream KV
//! bucket), in command requests and replies, and in `GET /api/v1/cluster`.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::media::{CommandOutcome, MediaCommand, MediaEvent, MediaPlaneError};

/// A media node's registry entry, refreshed by its heartbeat once a second.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeInfo {
    /// Node id (`[cluster] node_id`; default hostname + random suffix).
    pub node_id: String,
    /// Gremium version the node runs.
    pub version: String,
    /// Zone label, for placement in a requested zone.
    #[serde(default)]
    pub zone: Option<String>,
    /// Cost units the node can carry (from the capacity benchmark).
    pub capacity: u32,
    /// Cost units in use by the meetings the node runs.
    pub load_units: u32,
    /// Measured CPU use of the node's process, percent of one core.
    pub cpu_percent: f32,
    /// Meetings with media on the node.
    pub meetings: u32,
    /// The address its WebRTC candidates use.
    pub address: String,
    /// Draining: takes no new meetings (its running meetings end where they are).
    pub draining: bool,
    /// Unix milliseconds of the heartbeat that wrote this entry.
    pub heartbeat_at_ms: i64,
}

/// One node as `gremium cluster status` and `GET /api/v1/cluster` show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeStatus {
    /// The registry entry.
    #[serde(flatten)]
    pub info: NodeInfo,
    /// Meetings placed on the node (from the placement table).
    pub placed_meetings: u32,
    /// Cost units reserved by those placements.
    pub placed_units: u32,
}

/// The cluster as the control plane sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClusterStatus {
    /// `single` (one process, in-process media plane) or `cluster`.
    pub mode: String,
    /// Live media nodes (entries that have not expired), by node id.
    pub nodes: Vec<NodeStatus>,
}

/// A media command as sent to the node that owns the meeting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandRequest {
    /// Placement epoch the sender believes in; a node that has seen a newer epoch for
    /// the meeting refuses the command (the sender acts on a stale placement).
    pub epoch: u64,
    /// The command.
    pub command: MediaCommand,
}

/// A node's reply to a [`CommandRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandReply {
    /// What the in-process media plane would have returned.
    Ok(CommandOutcome),
    /// The error it would have returned.
    Err(MediaPlaneError),
}

impl From<Result<CommandOutcome, MediaPlaneError>> for CommandReply {
    fn from(r: Result<CommandOutcome, MediaPlaneError>) -> Self {
        match r {
            Ok(o) => CommandReply::Ok(o),
            Err(e) => CommandReply::Err(e),
        }
    }
}

impl From<CommandReply> for Result<CommandOutcome, MediaPlaneError> {
    fn from(r: CommandReply) -> Self {
        match r {
            CommandReply::Ok(o) => Ok(o),
            CommandReply::Err(e) => Err(e),
        }
    }
}

/// A media event as published by a node: with an id, so that it is applied to the
/// database exactly once however often it is delivered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventEnvelope {
    /// Unique per event (also the JetStream `Nats-Msg-Id`).
    pub event_id: Uuid,
    /// Node that reported it.
    pub node_id: String,
    /// The node's placement epoch for the meeting when it reported it.
    pub epoch: u64,
    /// Unix milliseconds when the node reported it.
    pub at_ms: i64,
    /// The event.
    pub event: MediaEvent,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_round_trip_as_json() {
        let ok = CommandReply::Ok(CommandOutcome::Applied {
            media_time_ns: Some(7),
        });
        let text = serde_json::to_string(&ok).unwrap();
        assert_eq!(serde_json::from_str::<CommandReply>(&text).unwrap(), ok);
        let err = CommandReply::Err(MediaPlaneError::NoCapacity {
            message: "full".into(),
            retry_after_secs: 5,
        });
        let text = serde_json::to_string(&err).unwrap();
        assert_eq!(serde_json::from_str::<CommandReply>(&text).unwrap(), err);
    }
}

/// An operator's request to one media node (`gremium cluster drain`), on the node's
/// admin subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAdminRequest {
    /// `true`: take no new meetings; `false`: take them again.
    pub drain: bool,
}

/// A node's answer to a [`NodeAdminRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeAdminReply {
    /// Done: the node's state now.
    Ok {
        /// The node.
        node_id: String,
        /// Whether it takes no new meetings.
        draining: bool,
        /// Meetings it still runs.
        meetings: u32,
    },
    /// The request could not be read.
    Err(String),
}
