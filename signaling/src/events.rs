//! Meeting events: what every client needs to show (who is here, consent, whether a
//! recording or livestream runs), fanned out to the meeting's WebSocket subscribers.
//!
//! The hub is per process. With several control-plane replicas an [`EventFanout`] is
//! set: the hub then hands every event to it (the cluster transport), which brings it
//! back to every replica, this one included, through [`EventHub::deliver_local`]. So
//! a socket on any replica sees each event once, whichever replica published it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use chrono::{DateTime, Utc};
use gremium_protocol::OutputState;
use serde::Serialize;
use tokio::sync::broadcast;
use uuid::Uuid;

/// One event on a meeting's channel.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MeetingEvent {
    /// Meeting the event belongs to.
    pub meeting_id: Uuid,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened. Serialized with a `type` tag, e.g. `{"type":"consent_changed",…}`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// A participant was added to the meeting.
    ParticipantJoined {
        /// Participant.
        participant_id: Uuid,
        /// Display name.
        display_name: String,
    },
    /// A participant left.
    ParticipantLeft {
        /// Participant.
        participant_id: Uuid,
    },
    /// A participant's media started arriving.
    ParticipantMediaStarted {
        /// Participant.
        participant_id: Uuid,
    },
    /// A participant's media stopped.
    ParticipantMediaStopped {
        /// Participant.
        participant_id: Uuid,
    },
    /// A participant changed their consent.
    ConsentChanged {
        /// Participant.
        participant_id: Uuid,
        /// Consent to appear in recordings.
        recording: bool,
        /// Consent to appear in the livestream.
        streaming: bool,
        /// Program running time (ns) at which the gates changed, if media runs.
        media_time_ns: Option<u64>,
    },
    /// A recording changed state: the recording indicator.
    RecordingStateChanged {
        /// Recording.
        recording_id: Uuid,
        /// New state.
        state: OutputState,
        /// Failure reason, when failed.
        reason: Option<String>,
    },
    /// A stream changed state: the livestream indicator.
    StreamStateChanged {
        /// Stream.
        stream_id: Uuid,
        /// New state.
        state: OutputState,
        /// Failure reason, when failed.
        reason: Option<String>,
    },
    /// The meeting switched between public and non-public.
    PublicChanged {
        /// True when the livestream shows the program.
        public: bool,
        /// Reason given by the moderator.
        reason: Option<String>,
    },
    /// A moderator marked the start of an agenda item.
    ChapterMarked {
        /// Chapter.
        chapter_id: Uuid,
        /// Agenda item title.
        title: String,
        /// When it was marked.
        marked_at: chrono::DateTime<chrono::Utc>,
    },
    /// The moderator changed the layout of the programs.
    LayoutChanged {
        /// New layout.
        layout: gremium_protocol::LayoutSpec,
    },
    /// The active speaker changed (drives the speaker layout).
    ActiveSpeakerChanged {
        /// Participant now speaking.
        participant_id: Uuid,
    },
    /// A participant's camera went off (placeholder tile) or came back.
    CameraChanged {
        /// Participant.
        participant_id: Uuid,
        /// Camera on.
        on: bool,
    },
    /// An RTMP destination of a stream changed state (the key is never included).
    StreamDestinationChanged {
        /// Stream.
        stream_id: Uuid,
        /// Position in the stream's `rtmp` list.
        destination: usize,
        /// `connecting`, `live`, `retrying` or `stopped`.
        status: String,
        /// Failed attempts in a row, while retrying.
        attempt: Option<u32>,
        /// The last error (redacted).
        error: Option<String>,
    },
    /// A stream's HLS files stopped being written (a full disk) or are written again;
    /// its RTMP pushes go on meanwhile.
    StreamHlsChanged {
        /// Stream.
        stream_id: Uuid,
        /// Why HLS is stalled; `null` once it advances again.
        error: Option<String>,
    },
    /// Post-processing of a stopped recording advanced.
    RecordingProgress {
        /// Recording.
        recording_id: Uuid,
        /// Media time validated so far, milliseconds.
        processed_ms: u64,
    },
    /// The meeting ended.
    MeetingEnded,
}

/// Carries a meeting's serialized events to every control replica (the cluster
/// transport). It must deliver to this replica too: with a fan-out set, the hub
/// delivers nothing locally by itself.
pub trait EventFanout: Send + Sync + 'static {
    /// Send `text` (one serialized [`MeetingEvent`]) to every replica's hub, to be
    /// passed to [`EventHub::deliver_local`] there. Must not block.
    fn publish(&self, meeting_id: Uuid, text: Arc<str>);
}

/// Fan-out of pre-serialized events to each meeting's subscribers.
#[derive(Default)]
pub struct EventHub {
    channels: Mutex<HashMap<Uuid, broadcast::Sender<Arc<str>>>>,
    fanout: OnceLock<Arc<dyn EventFanout>>,
}

impl std::fmt::Debug for EventHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventHub")
            .field("meetings", &self.meetings_with_subscribers())
            .field("fanout", &self.fanout.get().is_some())
            .finish()
    }
}

const CHANNEL_CAPACITY: usize = 256;

impl EventHub {
    /// Route every later [`EventHub::publish`] through `fanout` (set once, before
    /// serving). Returns `false`, and changes nothing, when one was set already.
    pub fn set_fanout(&self, fanout: Arc<dyn EventFanout>) -> bool {
        self.fanout.set(fanout).is_ok()
    }

    /// Subscribe to a meeting's events.
    pub fn subscribe(&self, meeting_id: Uuid) -> broadcast::Receiver<Arc<str>> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        channels
            .entry(meeting_id)
            .or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0)
            .subscribe()
    }

    /// Publish an event: without a fan-out to this process's current subscribers of
    /// the meeting (if any); with one, to the fan-out only (it comes back through
    /// [`EventHub::deliver_local`] on every replica).
    pub fn publish(&self, event: &MeetingEvent) {
        match self.fanout.get() {
            Some(fanout) => {
                if let Some(text) = serialize(event) {
                    fanout.publish(event.meeting_id, text);
                }
            }
            None => self.send_local(event.meeting_id, || serialize(event)),
        }
    }

    /// Deliver an already serialized event (from the fan-out) to this process's
    /// subscribers of the meeting, if any.
    pub fn deliver_local(&self, meeting_id: Uuid, text: Arc<str>) {
        self.send_local(meeting_id, || Some(text));
    }

    /// Send to the meeting's local channel; serializes only when someone listens.
    fn send_local(&self, meeting_id: Uuid, text: impl FnOnce() -> Option<Arc<str>>) {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = channels.get(&meeting_id) {
            if tx.receiver_count() == 0 {
                channels.remove(&meeting_id);
                return;
            }
            if let Some(text) = text() {
                let _ = tx.send(text);
            }
        }
    }

    /// Number of meetings with at least one subscriber channel.
    pub fn meetings_with_subscribers(&self) -> usize {
        self.channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }
}

fn serialize(event: &MeetingEvent) -> Option<Arc<str>> {
    match serde_json::to_string(event) {
        Ok(text) => Some(Arc::from(text)),
        Err(e) => {
            tracing::error!(error = %e, "event not serializable");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_get_events_of_their_meeting_only() {
        let hub = EventHub::default();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let mut rx = hub.subscribe(a);
        let at = Utc::now();
        hub.publish(&MeetingEvent {
            meeting_id: b,
            at,
            kind: EventKind::MeetingEnded,
        });
        hub.publish(&MeetingEvent {
            meeting_id: a,
            at,
            kind: EventKind::PublicChanged {
                public: false,
                reason: Some("TOP 7".into()),
            },
        });
        let got: serde_json::Value = serde_json::from_str(&rx.recv().await.unwrap()).unwrap();
        assert_eq!(got["type"], "public_changed");
        assert_eq!(got["meeting_id"], a.to_string());
        assert_eq!(got["public"], false);
        assert!(rx.try_recv().is_err(), "nothing from meeting b");
        drop(rx);
        hub.publish(&MeetingEvent {
            meeting_id: a,
            at,
            kind: EventKind::MeetingEnded,
        });
        assert_eq!(
            hub.meetings_with_subscribers(),
            0,
            "idle channels are dropped"
        );
    }

    /// A fan-out that records what it got, as the cluster transport would before
    /// sending it to every replica.
    #[derive(Default)]
    struct Recorded(Mutex<Vec<(Uuid, Arc<str>)>>);

    impl EventFanout for Recorded {
        fn publish(&self, meeting_id: Uuid, text: Arc<str>) {
            self.0.lock().unwrap().push((meeting_id, text));
        }
    }

    #[tokio::test]
    async fn with_a_fanout_events_reach_sockets_only_through_it() {
        let fanout = Arc::new(Recorded::default());
        let hub = EventHub::default();
        assert!(hub.set_fanout(fanout.clone()));
        assert!(!hub.set_fanout(Arc::new(Recorded::default())), "set once");
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let mut rx = hub.subscribe(a);
        hub.publish(&MeetingEvent {
            meeting_id: a,
            at: Utc::now(),
            kind: EventKind::MeetingEnded,
        });
        assert!(rx.try_recv().is_err(), "not delivered locally by itself");
        // Also events of meetings nobody here listens to: another replica may.
        hub.publish(&MeetingEvent {
            meeting_id: b,
            at: Utc::now(),
            kind: EventKind::MeetingEnded,
        });
        let sent = fanout.0.lock().unwrap().clone();
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0].0, a);
        assert_eq!(sent[1].0, b);
        let got: serde_json::Value = serde_json::from_str(&sent[0].1).unwrap();
        assert_eq!(got["type"], "meeting_ended");
        assert_eq!(got["meeting_id"], a.to_string());

        // What the transport brings back is delivered as is, to that meeting only.
        let first = sent[0].1.clone();
        for (meeting, text) in sent {
            hub.deliver_local(meeting, text);
        }
        assert_eq!(rx.recv().await.unwrap(), first);
        assert!(rx.try_recv().is_err(), "nothing from meeting b");
        assert_eq!(hub.meetings_with_subscribers(), 1, "b got no channel");
        drop(rx);
        hub.deliver_local(a, Arc::from("{}"));
        assert_eq!(
            hub.meetings_with_subscribers(),
            0,
            "idle channels are dropped"
        );
    }
}
