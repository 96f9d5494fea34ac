//! The meeting actor's mailbox: what it is asked (by the plane, with a reply) and
//! told (by its own pipeline and the tasks it supervises), and how a mail is
//! refused when the actor cannot serve it.
//!
//! Owns: the message types. Must not: act on them (the actor in `mod.rs` does).

use std::collections::HashMap;
use std::time::Instant;

use gremium_compositor::{Kind, Placement};
use gremium_pipelines::PipelineError;
use gremium_protocol::{
    Audience, CommandOutcome, Consent, LayoutSpec, MediaPlaneError, MeetingContext, RtmpTarget,
};
use gremium_vault::DataKey;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::Joiner;

/// Where an answer goes.
pub(crate) type Reply<T> = oneshot::Sender<T>;

/// What a supervised operation says when it ends (answers, events).
pub(crate) type Finally = Box<dyn FnOnce() + Send>;

/// A command's answer: what the protocol returns.
pub(crate) type Outcome = Result<CommandOutcome, MediaPlaneError>;

/// What a meeting's actor is asked to do, by the plane (commands, with a reply) or by
/// its own pipeline and the tasks it supervises (no reply).
pub(crate) enum Mail {
    /// A WHIP offer (validated by the plane) to answer.
    Publish {
        participant_id: Uuid,
        offer: String,
        pins: gremium_pipelines::dtls_fingerprint::PinnedFingerprints,
        joiner: Joiner,
        posted: Instant,
        reply: Reply<Outcome>,
    },
    /// Trickled candidates, or an ICE restart.
    Candidates {
        session_id: Uuid,
        ufrag: Option<String>,
        pwd: Option<String>,
        candidates: Vec<(u32, String)>,
        reply: Reply<Outcome>,
    },
    /// A publisher leaves (false: no such session).
    Unpublish {
        session_id: Uuid,
        reply: Reply<bool>,
    },
    /// Consent commanded; answered once the gates are moved, with the running time.
    SetConsent {
        participant_id: Uuid,
        consent: Consent,
        reply: Reply<Option<u64>>,
    },
    /// Layout commanded.
    SetLayout {
        layout: LayoutSpec,
        reply: Reply<Option<u64>>,
    },
    /// Public flag commanded.
    SetPublic {
        public: bool,
        reply: Reply<Result<Option<u64>, MediaPlaneError>>,
    },
    /// Start recording with this data key.
    StartRecording {
        recording_id: Uuid,
        key: DataKey,
        reply: Reply<Outcome>,
    },
    /// Stop a recording; answered once its file is finished (post-processing then
    /// runs on its own). `None`: nobody waits (an interrupted recording).
    StopRecording {
        recording_id: Uuid,
        reply: Option<Reply<()>>,
    },
    /// Start a livestream.
    StartStream {
        stream_id: Uuid,
        hls: bool,
        rtmp: Vec<RtmpTarget>,
        context: Option<MeetingContext>,
        reply: Reply<Outcome>,
    },
    /// Stop a livestream; answered once its playlists are ended.
    StopStream { stream_id: Uuid, reply: Reply<()> },
    /// End the meeting: finish every output, then tear everything down and forget it.
    EndMeeting { reply: Reply<()> },
    /// Attach a consumer bin (tests, diagnostics) to an audience's program.
    AttachConsumer {
        audience: Audience,
        bin: gst::Bin,
        reply: Reply<Result<Uuid, MediaPlaneError>>,
    },
    /// Detach a consumer attached with `AttachConsumer`.
    DetachConsumer {
        consumer_id: Uuid,
        reply: Reply<bool>,
    },
    /// The tiles an audience's program shows now.
    Placements {
        audience: Audience,
        reply: Reply<Option<Vec<Placement>>>,
    },
    /// Frames encoded by each audience's encoder of a kind, and whether it is idle.
    Encoders {
        kind: Kind,
        reply: Reply<HashMap<Audience, (u64, bool)>>,
    },
    /// Ask a participant's publisher for a keyframe.
    Keyframe {
        participant_id: Uuid,
        reply: Reply<bool>,
    },
    /// Decoded media of a publisher appeared (from a streaming thread).
    MediaReady { session_id: Uuid, kind: Kind },
    /// A publisher's ICE failed or closed, or its DTLS certificate did not match.
    Dead { session_id: Uuid },
    /// A publisher's offer was answered (or not).
    Negotiated {
        session_id: Uuid,
        result: Result<String, PipelineError>,
    },
    /// A stream stopping has let media reach its outputs: cut it off now.
    StreamDrained { stream_id: Uuid },
    /// A supervised operation ended (the meeting may be idle now), with what it
    /// still has to say (answers, events), said once the meeting knows whether it
    /// retires.
    Done(Option<Finally>),
}

impl Mail {
    /// A short name of the mail's kind (a metric label).
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Mail::Publish { .. } => "publish",
            Mail::Candidates { .. } => "candidates",
            Mail::Unpublish { .. } => "unpublish",
            Mail::SetConsent { .. } => "set_consent",
            Mail::SetLayout { .. } => "set_layout",
            Mail::SetPublic { .. } => "set_public",
            Mail::StartRecording { .. } => "start_recording",
            Mail::StopRecording { .. } => "stop_recording",
            Mail::StartStream { .. } => "start_stream",
            Mail::StopStream { .. } => "stop_stream",
            Mail::EndMeeting { .. } => "end_meeting",
            Mail::AttachConsumer { .. } => "attach_consumer",
            Mail::DetachConsumer { .. } => "detach_consumer",
            Mail::Placements { .. } => "placements",
            Mail::Encoders { .. } => "encoders",
            Mail::Keyframe { .. } => "keyframe",
            Mail::MediaReady { .. } => "media_ready",
            Mail::Dead { .. } => "dead",
            Mail::Negotiated { .. } => "negotiated",
            Mail::StreamDrained { .. } => "stream_drained",
            Mail::Done(_) => "done",
        }
    }

    /// Answer the mail with `error` (the actor cannot serve it).
    pub(crate) fn refuse(self, error: MediaPlaneError) {
        match self {
            Mail::Publish { reply, .. }
            | Mail::Candidates { reply, .. }
            | Mail::StartRecording { reply, .. }
            | Mail::StartStream { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            Mail::SetPublic { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            Mail::AttachConsumer { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            Mail::Unpublish { reply, .. }
            | Mail::DetachConsumer { reply, .. }
            | Mail::Keyframe { reply, .. } => {
                let _ = reply.send(false);
            }
            Mail::SetConsent { reply, .. } | Mail::SetLayout { reply, .. } => {
                let _ = reply.send(None);
            }
            Mail::StopRecording { reply, .. } => {
                if let Some(reply) = reply {
                    let _ = reply.send(());
                }
            }
            Mail::StopStream { reply, .. } | Mail::EndMeeting { reply } => {
                let _ = reply.send(());
            }
            Mail::Placements { reply, .. } => {
                let _ = reply.send(None);
            }
            Mail::Encoders { reply, .. } => {
                let _ = reply.send(HashMap::new());
            }
            Mail::MediaReady { .. }
            | Mail::Dead { .. }
            | Mail::Negotiated { .. }
            | Mail::StreamDrained { .. } => {}
            Mail::Done(finally) => {
                if let Some(finally) = finally {
                    finally();
                }
            }
        }
    }
}

/// The sending side of a meeting's mailbox.
pub(crate) type Mailbox = mpsc::UnboundedSender<Mail>;
