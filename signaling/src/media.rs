//! The control plane's side of the media-plane protocol: a media plane for when none
//! is configured, and what the control plane does with media events: observing them
//! (in-memory caches, on every replica) and applying them (database, ledger, manifest,
//! the meeting's event channel; once per event, by one replica).

use std::sync::Arc;

use gremium_protocol::{
    CommandOutcome, EventSink, MediaCommand, MediaEvent, MediaPlane, MediaPlaneError,
    OutputTrigger, RecordedMedia,
};
use gremium_storage::{LedgerRecord, OutputKind, StorageError, StoredMedia, Transition};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::events::EventKind;
use crate::AppState;

/// Media plane used when the process runs none: consent changes apply trivially
/// (nothing is being captured), outputs are refused with 503.
#[derive(Debug, Default)]
pub struct NoMediaPlane;

#[async_trait::async_trait]
impl MediaPlane for NoMediaPlane {
    async fn execute(&self, command: MediaCommand) -> Result<CommandOutcome, MediaPlaneError> {
        match command {
            MediaCommand::SetConsent { .. }
            | MediaCommand::SetPublic { .. }
            | MediaCommand::SetLayout { .. }
            | MediaCommand::EndMeeting { .. }
            | MediaCommand::StopRecording { .. }
            | MediaCommand::DiscardRecording { .. }
            | MediaCommand::StopStream { .. } => Ok(CommandOutcome::Applied {
                media_time_ns: None,
            }),
            MediaCommand::StartRecording { .. }
            | MediaCommand::RecoverRecording { .. }
            | MediaCommand::StartStream { .. }
            | MediaCommand::Publish { .. }
            | MediaCommand::AddIceCandidates { .. }
            | MediaCommand::Unpublish { .. } => Err(MediaPlaneError::Unavailable(
                "this control plane runs without a media plane".into(),
            )),
        }
    }
}

/// A channel-backed [`EventSink`] and the receiver the applier task consumes.
pub fn event_channel() -> (EventSink, mpsc::UnboundedReceiver<MediaEvent>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let sink: EventSink = Arc::new(move |event| {
        let _ = tx.send(event);
    });
    (sink, rx)
}

/// Apply media events until the sender side is dropped: the single-process loop,
/// where this process both observes and applies every event.
pub async fn apply_media_events(state: AppState, mut rx: mpsc::UnboundedReceiver<MediaEvent>) {
    while let Some(event) = rx.recv().await {
        observe_media_event(&state, &event);
        if let Err(e) = apply_media_event(&state, None, event).await {
            tracing::warn!(error = %e, "media event not applied");
        }
    }
}

/// Update the in-memory caches every control replica keeps from the media plane's
/// events: who publishes, RTMP destination states, stalled HLS, a stream's forgotten
/// destinations. No database, no WebSocket event: in a cluster each replica observes
/// every event, and one of them applies it ([`apply_media_event`]).
pub fn observe_media_event(state: &AppState, event: &MediaEvent) {
    use MediaEvent::*;
    match event {
        // A finished or failed stream's destinations all show `stopped`.
        StreamFinished { stream_id, .. } | StreamFailed { stream_id, .. } => {
            state.forget_destinations(*stream_id)
        }
        ParticipantMediaStarted {
            meeting_id,
            participant_id,
        } => state.set_publishing(*meeting_id, *participant_id, true),
        ParticipantMediaStopped {
            meeting_id,
            participant_id,
        } => state.set_publishing(*meeting_id, *participant_id, false),
        StreamDestinationChanged {
            stream_id,
            destination,
            status,
            attempt,
            error,
            ..
        } => state.set_destination_status(
            *stream_id,
            *destination,
            crate::DestinationStatus {
                status: status.clone(),
                attempt: *attempt,
                error: error.clone(),
            },
        ),
        StreamHlsChanged {
            stream_id, error, ..
        } => state.set_hls_error(*stream_id, error.clone()),
        RecordingStarted { .. }
        | RecordingFinished { .. }
        | RecordingInterrupted { .. }
        | RecordingFailed { .. }
        | StreamStarted { .. }
        | ActiveSpeakerChanged { .. }
        | CameraChanged { .. }
        | RecordingProgress { .. } => {}
    }
}

/// Apply a media event once for the whole control plane: output transitions with
/// their ledger entries, a finished recording's media and manifest, and the meeting's
/// WebSocket event. The caches are [`observe_media_event`]'s job.
///
/// With an `event_id` (events that crossed the cluster transport), an event already
/// marked applied is skipped (`Ok(false)`), and it is marked after it was applied.
/// Between the two a crash (or a redelivery racing a slow replica) applies it again;
/// that is harmless:
/// - lifecycles are forward-only and a transition repeated finds its state reached
///   (no change: no ledger entry, no event) or the output ended (refused, ignored);
///   an interruption is noted once;
/// - a finish whose media is already stored, with a manifest, under the same media
///   hash keeps both as they are (a rewritten manifest would pin a later ledger head);
/// - a repeated informational event (media started, speaker, progress) is sent to the
///   sockets again, which show the same state. A repeat that arrives after a later
///   event of the same kind can show the older state until the next one.
///
/// Errors are database errors; the event is then not marked, so a redelivery retries
/// it.
pub async fn apply_media_event(
    state: &AppState,
    event_id: Option<Uuid>,
    event: MediaEvent,
) -> Result<bool, StorageError> {
    if let Some(id) = event_id {
        if state.db().media_event_applied(id).await? {
            return Ok(false);
        }
    }
    apply_one(state, event).await?;
    if let Some(id) = event_id {
        state
            .db()
            .mark_media_event_applied(id, state.now_ms())
            .await?;
    }
    Ok(true)
}

/// Record what a finalized recording stored. When the recording was deleted while it
/// was being finalized, the objects are removed again (its key is gone already).
async fn store_media(
    state: &AppState,
    recording_id: Uuid,
    m: RecordedMedia,
) -> Result<(), StorageError> {
    let stored = StoredMedia {
        media_key: m.media_key,
        media_sha256: m.media_sha256,
        stored_bytes: m.stored_bytes as i64,
        plaintext_bytes: m.plaintext_bytes as i64,
        poster_key: m.poster_key,
        poster_sha256: m.poster_sha256,
        duration_ms: m.duration_ms.map(|d| d as i64),
        probe: Some(m.probe),
    };
    match state.db().set_recording_stored(recording_id, &stored).await {
        Err(StorageError::NotFound) => {
            for key in [Some(&stored.media_key), stored.poster_key.as_ref()]
                .into_iter()
                .flatten()
            {
                let _ = state.vault().store().delete(key).await;
            }
            Ok(())
        }
        other => other,
    }
}

/// Is this finish's media stored already, with its manifest (the same finish applied
/// before)? Then neither is written again.
async fn already_stored(
    state: &AppState,
    recording_id: Uuid,
    m: &RecordedMedia,
) -> Result<bool, StorageError> {
    Ok(state
        .db()
        .get_recording(recording_id)
        .await?
        .is_some_and(|r| {
            r.manifest.is_some()
                && r.stored
                    .is_some_and(|s| s.media_key == m.media_key && s.media_sha256 == m.media_sha256)
        }))
}

fn event_name(event: &MediaEvent) -> &'static str {
    match event {
        MediaEvent::RecordingStarted { .. } => "recording_started",
        MediaEvent::RecordingFinished { .. } => "recording_finished",
        MediaEvent::RecordingInterrupted { .. } => "recording_interrupted",
        MediaEvent::RecordingFailed { .. } => "recording_failed",
        MediaEvent::StreamStarted { .. } => "stream_started",
        MediaEvent::StreamFinished { .. } => "stream_finished",
        MediaEvent::StreamFailed { .. } => "stream_failed",
        MediaEvent::ParticipantMediaStarted { .. } => "participant_media_started",
        MediaEvent::ParticipantMediaStopped { .. } => "participant_media_stopped",
        MediaEvent::ActiveSpeakerChanged { .. } => "active_speaker_changed",
        MediaEvent::CameraChanged { .. } => "camera_changed",
        MediaEvent::RecordingProgress { .. } => "recording_progress",
        MediaEvent::StreamDestinationChanged { .. } => "stream_destination_changed",
        MediaEvent::StreamHlsChanged { .. } => "stream_hls_changed",
    }
}

async fn apply_one(state: &AppState, event: MediaEvent) -> Result<(), StorageError> {
    use MediaEvent::*;
    metrics::counter!("gremium_media_events_total", "type" => event_name(&event)).increment(1);
    let (kind, id, trigger, reason) = match event {
        RecordingStarted { recording_id, .. } => (
            OutputKind::Recording,
            recording_id,
            OutputTrigger::MediaStarted,
            None,
        ),
        RecordingFinished {
            recording_id,
            media,
            ..
        } => {
            let media = match media {
                Some(m) if already_stored(state, recording_id, &m).await? => None,
                other => other,
            };
            if let Some(m) = media {
                store_media(state, recording_id, m.clone()).await?;
                if let Err(e) = crate::manifest::write_manifest(state, recording_id, &m).await {
                    tracing::warn!(%recording_id, error = %e, "manifest not written");
                }
            }
            (
                OutputKind::Recording,
                recording_id,
                OutputTrigger::MediaStopped,
                None,
            )
        }
        // The media plane stops it itself: a stop with the reason, which is kept as
        // the recording's `interruption` and sent with the state change.
        RecordingInterrupted {
            recording_id,
            reason,
            ..
        } => (
            OutputKind::Recording,
            recording_id,
            OutputTrigger::StopRequested,
            Some(reason),
        ),
        RecordingFailed {
            recording_id,
            reason,
            ..
        } => (
            OutputKind::Recording,
            recording_id,
            OutputTrigger::MediaFailed,
            Some(reason),
        ),
        StreamStarted { stream_id, .. } => (
            OutputKind::Stream,
            stream_id,
            OutputTrigger::MediaStarted,
            None,
        ),
        StreamFinished { stream_id, .. } => (
            OutputKind::Stream,
            stream_id,
            OutputTrigger::MediaStopped,
            None,
        ),
        StreamFailed {
            stream_id, reason, ..
        } => (
            OutputKind::Stream,
            stream_id,
            OutputTrigger::MediaFailed,
            Some(reason),
        ),
        ParticipantMediaStarted {
            meeting_id,
            participant_id,
        } => {
            state.publish(
                meeting_id,
                EventKind::ParticipantMediaStarted { participant_id },
            );
            return Ok(());
        }
        ParticipantMediaStopped {
            meeting_id,
            participant_id,
        } => {
            state.publish(
                meeting_id,
                EventKind::ParticipantMediaStopped { participant_id },
            );
            return Ok(());
        }
        ActiveSpeakerChanged {
            meeting_id,
            participant_id,
        } => {
            state.publish(
                meeting_id,
                EventKind::ActiveSpeakerChanged { participant_id },
            );
            return Ok(());
        }
        CameraChanged {
            meeting_id,
            participant_id,
            on,
        } => {
            state.publish(meeting_id, EventKind::CameraChanged { participant_id, on });
            return Ok(());
        }
        StreamDestinationChanged {
            meeting_id,
            stream_id,
            destination,
            status,
            attempt,
            error,
        } => {
            state.publish(
                meeting_id,
                EventKind::StreamDestinationChanged {
                    stream_id,
                    destination,
                    status,
                    attempt,
                    error,
                },
            );
            return Ok(());
        }
        StreamHlsChanged {
            meeting_id,
            stream_id,
            error,
        } => {
            state.publish(meeting_id, EventKind::StreamHlsChanged { stream_id, error });
            return Ok(());
        }
        RecordingProgress {
            meeting_id,
            recording_id,
            processed_ms,
        } => {
            state.publish(
                meeting_id,
                EventKind::RecordingProgress {
                    recording_id,
                    processed_ms,
                },
            );
            return Ok(());
        }
    };
    match transition(state, kind, id, trigger, "media-plane", reason.as_deref()).await {
        // A late event for an output that already ended is harmless.
        Err(StorageError::InvalidTransition(_)) => Ok(()),
        other => other.map(|_| ()),
    }
}

/// Apply a lifecycle trigger: state change, ledger entry and event, all or nothing.
pub(crate) async fn transition(
    state: &AppState,
    kind: OutputKind,
    id: Uuid,
    trigger: OutputTrigger,
    actor: &str,
    reason: Option<&str>,
) -> Result<Transition, StorageError> {
    let now = state.now_ms();
    let t = state
        .db()
        .transition_output(kind, id, trigger, now, reason, |t| {
            // An interruption noted while already stopping has no state to name.
            let what = if t.interrupted {
                "interrupted"
            } else {
                t.to.as_str()
            };
            Some(LedgerRecord {
                chain_id: t.meeting_id.to_string(),
                at: now,
                kind: format!("{}_{what}", kind.as_str()),
                actor: actor.to_string(),
                subject: id.to_string(),
                data: serde_json::json!({ "from": t.from.as_str(), "reason": reason }),
            })
        })
        .await?;
    // Also sent for an interruption noted without a state change: clients show
    // why a recording lost its end.
    if t.recorded() {
        let reason = reason.map(str::to_string);
        let event = match kind {
            OutputKind::Recording => EventKind::RecordingStateChanged {
                recording_id: id,
                state: t.to,
                reason,
            },
            OutputKind::Stream => EventKind::StreamStateChanged {
                stream_id: id,
                state: t.to,
                reason,
            },
        };
        state.publish(t.meeting_id, event);
    }
    Ok(t)
}

/// An in-process fake media plane for tests: acknowledges every command and reports
/// outputs as started/finished through the event sink, like a healthy pipeline would.
/// It records the commands it received, and a consent command returns a synthetic
/// media time so tests can check it reaches the ledger.
#[cfg(feature = "test-support")]
pub mod fake {
    use std::sync::Mutex;

    use super::*;

    /// See the module docs.
    pub struct FakeMediaPlane {
        sink: EventSink,
        commands: Mutex<Vec<MediaCommand>>,
        /// When set, start commands fail with this reason (as a broken pipeline would).
        pub fail_starts: Mutex<Option<String>>,
        /// When set, a stopped recording is not reported finished (it stays
        /// `stopping` until the test emits the outcome).
        pub hold_stops: std::sync::atomic::AtomicBool,
    }

    impl FakeMediaPlane {
        /// A fake that reports through `sink`.
        pub fn new(sink: EventSink) -> Arc<FakeMediaPlane> {
            Arc::new(FakeMediaPlane {
                sink,
                commands: Mutex::new(Vec::new()),
                fail_starts: Mutex::new(None),
                hold_stops: Default::default(),
            })
        }

        /// Commands received so far.
        pub fn commands(&self) -> Vec<MediaCommand> {
            self.commands
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
        }

        /// Inject an event as the media plane would.
        pub fn emit(&self, event: MediaEvent) {
            (self.sink)(event)
        }
    }

    /// What a healthy pipeline reports at once for an output command: a start is
    /// started, a stop finished (without media). Shared by the test doubles (this
    /// fake, the fuzzer's plane) so they announce outputs alike.
    pub fn output_event(command: &MediaCommand) -> Option<MediaEvent> {
        match *command {
            MediaCommand::StartRecording {
                meeting_id,
                recording_id,
                ..
            } => Some(MediaEvent::RecordingStarted {
                meeting_id,
                recording_id,
            }),
            MediaCommand::StopRecording {
                meeting_id,
                recording_id,
            } => Some(MediaEvent::RecordingFinished {
                meeting_id,
                recording_id,
                media: None,
            }),
            MediaCommand::StartStream {
                meeting_id,
                stream_id,
                ..
            } => Some(MediaEvent::StreamStarted {
                meeting_id,
                stream_id,
            }),
            MediaCommand::StopStream {
                meeting_id,
                stream_id,
            } => Some(MediaEvent::StreamFinished {
                meeting_id,
                stream_id,
            }),
            _ => None,
        }
    }

    #[async_trait::async_trait]
    impl MediaPlane for FakeMediaPlane {
        async fn execute(&self, command: MediaCommand) -> Result<CommandOutcome, MediaPlaneError> {
            self.commands
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(command.clone());
            let fail = self
                .fail_starts
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            match command {
                MediaCommand::SetConsent { .. } => Ok(CommandOutcome::Applied {
                    media_time_ns: Some(1_000_000_000),
                }),
                MediaCommand::StartRecording { .. }
                | MediaCommand::StartStream { .. }
                | MediaCommand::StopRecording { .. }
                | MediaCommand::StopStream { .. } => {
                    let starts = matches!(
                        command,
                        MediaCommand::StartRecording { .. } | MediaCommand::StartStream { .. }
                    );
                    if let (true, Some(reason)) = (starts, fail) {
                        return Err(MediaPlaneError::Failed(reason));
                    }
                    let held = matches!(command, MediaCommand::StopRecording { .. })
                        && self.hold_stops.load(std::sync::atomic::Ordering::SeqCst);
                    if let (Some(event), false) = (output_event(&command), held) {
                        (self.sink)(event);
                    }
                    Ok(CommandOutcome::Accepted)
                }
                MediaCommand::DiscardRecording { .. } | MediaCommand::RecoverRecording { .. } => {
                    Ok(CommandOutcome::Accepted)
                }
                MediaCommand::SetPublic { .. }
                | MediaCommand::SetLayout { .. }
                | MediaCommand::EndMeeting { .. } => Ok(CommandOutcome::Applied {
                    media_time_ns: Some(2_000_000_000),
                }),
                MediaCommand::Publish { .. }
                | MediaCommand::AddIceCandidates { .. }
                | MediaCommand::Unpublish { .. } => Err(MediaPlaneError::Unavailable(
                    "the fake media plane does not ingest".into(),
                )),
            }
        }
    }
}
