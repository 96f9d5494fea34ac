//! Operator requests to one media node: drain on or off (`gremium cluster drain`).
//!
//! The node serves them on its own admin subject (request/reply), apart from the media
//! commands, so an operator's tool needs no database and no control replica. A draining
//! node says so in its registry entry at once; placement skips it, and its running
//! meetings end where they are.
//!
//! Owns: the admin subject's service and client. Must not touch a meeting.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use gremium_protocol::{NodeAdminReply, NodeAdminRequest};
use tokio::sync::watch;

use crate::nats::Nats;
use crate::node::MeetingCount;
use crate::ClusterError;

/// Serve the node's admin subject until the subscription ends.
pub(crate) async fn serve(
    nats: Nats,
    node_id: String,
    mut requests: async_nats::Subscriber,
    draining: Arc<watch::Sender<bool>>,
    exiting: Arc<AtomicBool>,
    meetings: MeetingCount,
) {
    while let Some(msg) = requests.next().await {
        let Some(reply_to) = msg.reply.clone() else {
            continue;
        };
        let reply = match serde_json::from_slice::<NodeAdminRequest>(&msg.payload) {
            Ok(request) if !request.drain && exiting.load(Ordering::SeqCst) => NodeAdminReply::Err(
                "the node is shutting down: it takes no new meetings and exits once its \
                     meetings have ended"
                    .into(),
            ),
            Ok(request) => {
                draining.send_replace(request.drain);
                tracing::info!(node_id = %node_id, draining = request.drain, "operator request");
                NodeAdminReply::Ok {
                    node_id: node_id.clone(),
                    draining: request.drain,
                    meetings: meetings() as u32,
                }
            }
            Err(e) => NodeAdminReply::Err(format!("malformed admin request: {e}")),
        };
        let body = serde_json::to_vec(&reply).unwrap_or_default();
        if let Err(e) = nats.client.publish(reply_to, body.into()).await {
            tracing::warn!(error = %e, "admin reply not sent");
        }
    }
}

/// Ask node `node_id` to drain (or to take meetings again); its answer, or why there
/// is none (no such node answering within `timeout`).
pub async fn request_drain(
    nats: &Nats,
    node_id: &str,
    drain: bool,
    timeout: Duration,
) -> Result<NodeAdminReply, ClusterError> {
    let body = serde_json::to_vec(&NodeAdminRequest { drain })
        .map_err(|e| ClusterError::Nats(e.to_string()))?;
    let subject = nats.names.node_admin(node_id);
    let answer = tokio::time::timeout(timeout, nats.client.request(subject, body.into()))
        .await
        .map_err(|_| {
            ClusterError::Nats(format!(
                "node {node_id:?} did not answer within {timeout:?}"
            ))
        })?
        .map_err(|e| match e.kind() {
            async_nats::RequestErrorKind::NoResponders => {
                ClusterError::Nats(format!("no media node {node_id:?} is running"))
            }
            _ => ClusterError::Nats(format!("asking node {node_id:?}: {e}")),
        })?;
    serde_json::from_slice(&answer.payload)
        .map_err(|e| ClusterError::Nats(format!("node {node_id:?} answered malformed: {e}")))
}
