//! Names on NATS: subjects, the event stream, the registry bucket.

use uuid::Uuid;

/// JetStream stream holding media events (`gremium.events.{meeting}`).
pub const EVENT_STREAM: &str = "GREMIUM_MEDIA_EVENTS";
/// Durable consumer shared by all control replicas: each event is applied once.
pub const EVENT_CONSUMER: &str = "gremium-control";
/// Every media event subject.
pub const EVENTS_ALL: &str = "gremium.events.>";
/// KV bucket of the node registry.
pub const NODE_BUCKET: &str = "gremium_nodes";
/// Every WebSocket fan-out subject.
pub const WS_ALL: &str = "gremium.ws.>";

/// Commands for one media node (request/reply).
pub fn node_commands(node_id: &str) -> String {
    format!("gremium.node.{node_id}.cmd")
}

/// Media events of one meeting.
pub fn events(meeting_id: Uuid) -> String {
    format!("gremium.events.{meeting_id}")
}

/// Serialized WebSocket events of one meeting, for every control replica.
pub fn ws(meeting_id: Uuid) -> String {
    format!("gremium.ws.{meeting_id}")
}

/// The meeting a `gremium.ws.{meeting}` or `gremium.events.{meeting}` subject names.
pub fn meeting_of(subject: &str) -> Option<Uuid> {
    subject.rsplit('.').next()?.parse().ok()
}
