//! Media events and WebSocket events between the planes, on the control side.
//!
//! - [`run_applier`]: the durable consumer all control replicas share. One event at a
//!   time is in flight across the whole cluster (`max_ack_pending = 1`), so a
//!   meeting's transitions are applied in the order its node reported them, each once
//!   (the applier is told the event id and keeps a record of applied ids).
//! - [`run_observer`]: every replica sees every media event (core subscription), for
//!   the in-memory caches it serves pages from.
//! - [`WsRelay`] / [`run_ws_relay`]: a WebSocket event published on one replica is
//!   delivered by every replica to its own sockets.
//! - [`superseded`]: what a node says about media it no longer owns (its meeting was
//!   moved away while it was frozen or cut off) is dropped by both.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{consumer, AckKind};
use futures_util::StreamExt;
use gremium_protocol::{EventEnvelope, MediaEvent};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::nats::Nats;
use crate::subjects;

/// How long a replica may take to apply one event before it is handed to another.
const ACK_WAIT: Duration = Duration::from_secs(30);
/// Deliveries of one event before it is given up (logged): one event that can never
/// be applied must not hold up every meeting's events for good.
const MAX_DELIVERIES: i64 = 10;

/// Apply every media event once, across all replicas, until the process ends.
/// `apply` returns `Err` for an event to be retried (e.g. the database is away).
pub async fn run_applier<F, Fut>(nats: Nats, apply: F)
where
    F: Fn(EventEnvelope) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    loop {
        if let Err(e) = consume(&nats, &apply).await {
            tracing::warn!(error = %e, "media event consumer stopped; restarting");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn consume<F, Fut>(nats: &Nats, apply: &F) -> Result<(), String>
where
    F: Fn(EventEnvelope) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let stream = nats
        .jetstream
        .get_stream(nats.names.event_stream())
        .await
        .map_err(|e| e.to_string())?;
    let name = nats.names.event_consumer();
    let consumer: consumer::PullConsumer = stream
        .get_or_create_consumer(
            &name,
            consumer::pull::Config {
                durable_name: Some(name.clone()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: ACK_WAIT,
                max_ack_pending: 1,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| e.to_string())?;
        let last_try = message
            .info()
            .map(|i| i.delivered >= MAX_DELIVERIES)
            .unwrap_or(false);
        let applied = match serde_json::from_slice::<EventEnvelope>(&message.payload) {
            Ok(envelope) => apply(envelope).await,
            // E.g. a newer node's event during a rolling upgrade: another replica
            // (already upgraded) may read it.
            Err(e) => Err(format!("unreadable media event: {e}")),
        };
        match applied {
            Ok(()) => {
                if let Err(e) = message.double_ack().await {
                    tracing::warn!(error = %e, "applied media event not acknowledged; it is skipped when redelivered");
                }
            }
            Err(e) if last_try => {
                tracing::error!(error = %e, subject = %message.subject, "media event given up after {MAX_DELIVERIES} deliveries");
                let _ = message.ack_with(AckKind::Term).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "media event not applied; retried");
                let _ = message
                    .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                    .await;
            }
        }
    }
    Ok(())
}

/// Hand every media event to `observe` (every replica, no acknowledgement).
pub async fn run_observer<F, Fut>(nats: Nats, observe: F)
where
    F: Fn(EventEnvelope) -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        match nats.client.subscribe(nats.names.events_all()).await {
            Ok(mut sub) => {
                while let Some(message) = sub.next().await {
                    match serde_json::from_slice::<EventEnvelope>(&message.payload) {
                        Ok(envelope) => observe(envelope).await,
                        Err(e) => tracing::warn!(error = %e, "unreadable media event"),
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "media event subscription failed"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Whether an event describes media its node no longer owns: the meeting is placed on
/// another node now (`placed_on`), and the event is informational — who publishes,
/// the speaker, a camera, progress, a destination's or HLS's state. Such events come
/// from a node that was frozen or cut off, thawed, and is ending its copy of the
/// meeting (self-fencing); applied, a participant publishing on the new node would
/// show as stopped. Output transitions still count: a recording the old node
/// finishes is still that recording's end. Unplaced meetings (ended, or never
/// placed) take every event.
pub fn superseded(envelope: &EventEnvelope, placed_on: Option<&str>) -> bool {
    informational(&envelope.event) && placed_on.is_some_and(|node| node != envelope.node_id)
}

/// Events that describe live media rather than move an output's lifecycle.
pub fn informational(event: &MediaEvent) -> bool {
    use MediaEvent::*;
    match event {
        ParticipantMediaStarted { .. }
        | ParticipantMediaStopped { .. }
        | ActiveSpeakerChanged { .. }
        | CameraChanged { .. }
        | RecordingProgress { .. }
        | StreamDestinationChanged { .. }
        | StreamHlsChanged { .. } => true,
        RecordingStarted { .. }
        | RecordingFinished { .. }
        | RecordingInterrupted { .. }
        | RecordingFailed { .. }
        | StreamStarted { .. }
        | StreamFinished { .. }
        | StreamFailed { .. } => false,
    }
}

/// Header naming the replica a relayed event comes from (it delivered it itself).
const ORIGIN: &str = "Gremium-Origin";

/// Publishes a replica's WebSocket events to the other replicas, in order. The
/// replica delivers its own events to its sockets itself, so they reach them while
/// NATS is away too.
#[derive(Clone)]
pub struct WsRelay {
    tx: mpsc::UnboundedSender<(Uuid, Arc<str>)>,
    origin: String,
}

impl WsRelay {
    /// Start the publishing task.
    pub fn start(nats: Nats) -> WsRelay {
        let (tx, mut rx) = mpsc::unbounded_channel::<(Uuid, Arc<str>)>();
        let origin = Uuid::new_v4().to_string();
        let from = origin.clone();
        tokio::spawn(async move {
            while let Some((meeting, text)) = rx.recv().await {
                let body = bytes::Bytes::copy_from_slice(text.as_bytes());
                let mut headers = async_nats::HeaderMap::new();
                headers.insert(ORIGIN, from.as_str());
                let sent = nats
                    .client
                    .publish_with_headers(nats.names.ws(meeting), headers, body)
                    .await;
                if let Err(e) = sent {
                    tracing::warn!(error = %e, "event not relayed to the other replicas");
                }
            }
        });
        WsRelay { tx, origin }
    }

    /// This relay's origin id: [`run_ws_relay`] skips what it published.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Queue one serialized event of a meeting.
    pub fn publish(&self, meeting_id: Uuid, text: Arc<str>) {
        let _ = self.tx.send((meeting_id, text));
    }
}

/// Deliver the other replicas' WebSocket events to this replica's sockets (not
/// those published with `own_origin`: delivered already).
pub async fn run_ws_relay<F>(nats: Nats, own_origin: String, deliver: F)
where
    F: Fn(Uuid, Arc<str>),
{
    loop {
        match nats.client.subscribe(nats.names.ws_all()).await {
            Ok(mut sub) => {
                while let Some(message) = sub.next().await {
                    let Some(meeting) = subjects::meeting_of(&message.subject) else {
                        continue;
                    };
                    let origin = message
                        .headers
                        .as_ref()
                        .and_then(|h| h.get(ORIGIN))
                        .map(|v| v.as_str());
                    if origin == Some(own_origin.as_str()) {
                        continue;
                    }
                    match std::str::from_utf8(&message.payload) {
                        Ok(text) => deliver(meeting, Arc::from(text)),
                        Err(_) => tracing::warn!("relayed event is not UTF-8"),
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "event relay subscription failed"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod superseded_tests {
    use super::*;

    fn envelope(node: &str, event: MediaEvent) -> EventEnvelope {
        EventEnvelope {
            event_id: Uuid::new_v4(),
            node_id: node.into(),
            epoch: 1,
            at_ms: 0,
            event,
        }
    }

    #[test]
    fn only_informational_events_of_a_node_that_lost_the_meeting_are_dropped() {
        let (meeting_id, participant_id) = (Uuid::new_v4(), Uuid::new_v4());
        let stopped = MediaEvent::ParticipantMediaStopped {
            meeting_id,
            participant_id,
        };
        let failed = MediaEvent::RecordingFailed {
            meeting_id,
            recording_id: Uuid::new_v4(),
            reason: "x".into(),
        };
        assert!(superseded(&envelope("a", stopped.clone()), Some("b")));
        assert!(!superseded(&envelope("b", stopped.clone()), Some("b")));
        assert!(!superseded(&envelope("a", stopped), None));
        assert!(!superseded(&envelope("a", failed), Some("b")));
    }
}
