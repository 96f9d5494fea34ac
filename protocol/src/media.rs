//! Commands the control plane sends to the media plane, and events it gets back.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One RTMP(S) push destination. The stream key is a secret: never log it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RtmpTarget {
    /// Server URL, e.g. `rtmp://live.example.org/app`.
    pub url: String,
    /// Stream key appended to the URL when publishing.
    pub key: String,
}

impl std::fmt::Debug for RtmpTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtmpTarget")
            .field("url", &crate::redact::redact_rtmp_url(&self.url))
            .field("key", &"<redacted>")
            .finish()
    }
}

/// A participant's consent, per purpose. The default is no consent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Consent {
    /// Appear in recordings.
    pub recording: bool,
    /// Appear in the public livestream.
    pub streaming: bool,
}

/// The audience of a program output; decides which consent applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    /// Recordings (consent `recording`).
    Recording,
    /// The public livestream (consent `streaming`).
    Streaming,
}

impl Consent {
    /// Consent for an audience's purpose.
    pub fn for_audience(&self, audience: Audience) -> bool {
        match audience {
            Audience::Recording => self.recording,
            Audience::Streaming => self.streaming,
        }
    }
}

/// Layout kinds of the program.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LayoutKind {
    /// Everyone in an even grid.
    #[default]
    Grid,
    /// The active (or pinned) speaker large, the others in a strip.
    Speaker,
    /// A screen share large, the others in a filmstrip.
    ScreenShare,
    /// Only podium members (public sessions); the audience is neither seen nor heard.
    Podium,
}

/// The moderator's layout choice for a meeting's programs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LayoutSpec {
    /// Layout kind.
    pub kind: LayoutKind,
    /// Participant shown large in the speaker layout, whoever speaks.
    #[serde(default)]
    pub pinned: Option<Uuid>,
    /// Podium members (podium layout).
    #[serde(default)]
    pub podium: Vec<Uuid>,
}

/// What the media plane needs to know about a meeting when its session starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeetingContext {
    /// The livestream shows the program (false: the non-public slate).
    pub public: bool,
    /// Layout of the programs.
    pub layout: LayoutSpec,
}

impl Default for MeetingContext {
    fn default() -> Self {
        MeetingContext {
            public: true,
            layout: LayoutSpec::default(),
        }
    }
}

/// A command for the media plane. Serializable so it can cross a node boundary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MediaCommand {
    /// Open or close a participant's consent gates. Must return only after a closing
    /// gate is closed in the running pipeline.
    SetConsent {
        /// Meeting the participant belongs to.
        meeting_id: Uuid,
        /// Participant whose gates change.
        participant_id: Uuid,
        /// Consent to appear in recordings.
        recording: bool,
        /// Consent to appear in the public livestream.
        streaming: bool,
    },
    /// Start recording the meeting's recording-audience program.
    StartRecording {
        /// Meeting to record.
        meeting_id: Uuid,
        /// Control-plane id of the recording.
        recording_id: Uuid,
        /// The recording's data key: everything written is encrypted with it.
        data_key: SecretHex,
    },
    /// Finish a recording a stopped process left unfinished on the spool disk (sent
    /// by the control plane at start for each recording it still has as running or
    /// stopping): post-processed and reported finished or failed like any other.
    RecoverRecording {
        /// Meeting the recording belongs to.
        meeting_id: Uuid,
        /// Recording to recover.
        recording_id: Uuid,
        /// The recording's data key (the spool is encrypted with it).
        data_key: SecretHex,
    },
    /// Stop a recording (EOS with watchdog).
    StopRecording {
        /// Meeting being recorded.
        meeting_id: Uuid,
        /// Recording to stop.
        recording_id: Uuid,
    },
    /// Remove what the media plane still holds of a recording that is deleted: its
    /// encrypted spool (a failed recording's stays there until then). A recording
    /// that is still running is left alone.
    DiscardRecording {
        /// Meeting the recording belongs to.
        meeting_id: Uuid,
        /// Recording being deleted.
        recording_id: Uuid,
    },
    /// Start live outputs (HLS and/or RTMP) of the livestream-audience program.
    StartStream {
        /// Meeting to stream.
        meeting_id: Uuid,
        /// Control-plane id of the stream.
        stream_id: Uuid,
        /// Publish HLS for citizens.
        hls: bool,
        /// RTMP push destinations.
        rtmp: Vec<RtmpTarget>,
        /// The meeting's public flag and layout, for a program built before anyone
        /// published.
        #[serde(default)]
        context: Option<MeetingContext>,
    },
    /// Stop a stream.
    StopStream {
        /// Meeting being streamed.
        meeting_id: Uuid,
        /// Stream to stop.
        stream_id: Uuid,
    },
    /// Switch the livestream between the program and the non-public slate.
    SetPublic {
        /// Meeting to switch.
        meeting_id: Uuid,
        /// `false` shows the slate with silence.
        public: bool,
    },
    /// Tear down the meeting's media session.
    EndMeeting {
        /// Meeting that ended.
        meeting_id: Uuid,
    },
    /// A participant publishes (WHIP): answer their SDP offer.
    Publish {
        /// Meeting published into.
        meeting_id: Uuid,
        /// Publishing participant.
        participant_id: Uuid,
        /// SDP offer (never logged: it carries addresses).
        offer_sdp: String,
        /// Name shown on the participant's tile.
        #[serde(default)]
        display_name: String,
        /// The participant's consent as stored. A later `SetConsent` the media plane
        /// already saw wins over this (it may have raced with the publish).
        #[serde(default)]
        consent: Consent,
        /// The meeting's public flag and layout, for a session that starts now.
        #[serde(default)]
        context: MeetingContext,
        /// The video is a screen share (featured by the screen-share layout).
        #[serde(default)]
        screen_share: bool,
    },
    /// Change the layout of the meeting's programs.
    SetLayout {
        /// Meeting.
        meeting_id: Uuid,
        /// New layout.
        layout: LayoutSpec,
    },
    /// An ICE fragment from a publisher (WHIP PATCH): trickled remote candidates, or,
    /// when `ufrag` differs from the current one, an ICE restart (RFC 9725 §4.4.2),
    /// answered with [`CommandOutcome::IceRestarted`]. Media keeps flowing on the same
    /// session through a restart.
    AddIceCandidates {
        /// Meeting.
        meeting_id: Uuid,
        /// Session returned by `Publish`.
        session_id: Uuid,
        /// ICE username fragment the candidates belong to (a new one is an ICE restart).
        ufrag: Option<String>,
        /// ICE password that comes with `ufrag` (required for a restart; never logged).
        #[serde(default)]
        pwd: Option<String>,
        /// `(m-line index, "candidate:…")` pairs (never logged: they hold addresses).
        candidates: Vec<(u32, String)>,
    },
    /// End a participant's publishing session (WHIP DELETE).
    Unpublish {
        /// Meeting.
        meeting_id: Uuid,
        /// Session returned by `Publish`.
        session_id: Uuid,
    },
}

impl MediaCommand {
    /// Meeting the command is about (used for placement on a media node).
    pub fn meeting_id(&self) -> Uuid {
        match self {
            MediaCommand::SetConsent { meeting_id, .. }
            | MediaCommand::StartRecording { meeting_id, .. }
            | MediaCommand::StopRecording { meeting_id, .. }
            | MediaCommand::RecoverRecording { meeting_id, .. }
            | MediaCommand::DiscardRecording { meeting_id, .. }
            | MediaCommand::StartStream { meeting_id, .. }
            | MediaCommand::StopStream { meeting_id, .. }
            | MediaCommand::SetPublic { meeting_id, .. }
            | MediaCommand::Publish { meeting_id, .. }
            | MediaCommand::SetLayout { meeting_id, .. }
            | MediaCommand::Unpublish { meeting_id, .. }
            | MediaCommand::AddIceCandidates { meeting_id, .. }
            | MediaCommand::EndMeeting { meeting_id } => *meeting_id,
        }
    }
}

/// How the media plane answered a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CommandOutcome {
    /// Applied in the running pipeline. `media_time_ns` is the program running time at
    /// which it took effect, or `None` when no pipeline is running for the meeting.
    Applied {
        /// Program running time in nanoseconds, if a pipeline runs.
        media_time_ns: Option<u64>,
    },
    /// Accepted; progress arrives later as [`MediaEvent`]s.
    Accepted,
    /// ICE was restarted on a publishing session: the media plane's new credentials
    /// and candidates go back to the publisher.
    IceRestarted {
        /// New ICE username fragment of the media plane.
        ufrag: String,
        /// New ICE password of the media plane (never logged).
        pwd: String,
        /// The media plane's candidates, `"candidate:…"`.
        candidates: Vec<String>,
    },
    /// A publishing session was set up; the SDP answer goes back to the publisher.
    Published {
        /// Id of the publishing session (the WHIP resource).
        session_id: Uuid,
        /// SDP answer with the media plane's candidates.
        answer_sdp: String,
    },
}

impl CommandOutcome {
    /// The media time at which the command took effect, if it says.
    pub fn media_time_ns(&self) -> Option<u64> {
        match self {
            CommandOutcome::Applied { media_time_ns } => *media_time_ns,
            CommandOutcome::Accepted
            | CommandOutcome::Published { .. }
            | CommandOutcome::IceRestarted { .. } => None,
        }
    }
}

/// Key material in hex. Its `Debug` shows nothing, so it never reaches a log.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretHex(pub String);

impl std::fmt::Debug for SecretHex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretHex(…)")
    }
}

/// A finalized recording as stored: sealed objects and what probing found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedMedia {
    /// Object key of the sealed media.
    pub media_key: String,
    /// SHA-256 of the stored media object (hex).
    pub media_sha256: String,
    /// Stored (encrypted) bytes.
    pub stored_bytes: u64,
    /// Plaintext bytes.
    pub plaintext_bytes: u64,
    /// Object key of the sealed poster image.
    pub poster_key: Option<String>,
    /// SHA-256 of the stored poster object.
    pub poster_sha256: Option<String>,
    /// Media duration found by probing, milliseconds.
    pub duration_ms: Option<u64>,
    /// Probe result as JSON text (container, streams).
    pub probe: String,
    /// True when the recording was recovered after a crash (its tail may be cut).
    pub recovered: bool,
    /// Who appears when (empty after a crash: the timeline lived in memory).
    #[serde(default)]
    pub appearances: Vec<Appearance>,
}

/// A participant's appearances in a recording.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Appearance {
    /// Participant id (random, so pseudonymous).
    pub participant_id: Uuid,
    /// Display name at the time.
    pub display_name: String,
    /// Media-time ranges `[from, to)` in milliseconds.
    pub ranges_ms: Vec<[u64; 2]>,
}

/// Something the media plane reports on its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MediaEvent {
    /// Media is being written for the recording.
    RecordingStarted {
        /// Meeting.
        meeting_id: Uuid,
        /// Recording.
        recording_id: Uuid,
    },
    /// The recording was finalized.
    RecordingFinished {
        /// Meeting.
        meeting_id: Uuid,
        /// Recording.
        recording_id: Uuid,
        /// What was stored, when the media plane stores recordings.
        #[serde(default)]
        media: Option<RecordedMedia>,
    },
    /// Writing the recording failed while it ran (its spool disk filled up, an I/O
    /// error): the media plane keeps what was written and stops the recording
    /// itself; `RecordingFinished` (or `RecordingFailed`) follows. Also sent when the
    /// write fails in the final flush of a stop already under way: the recording
    /// stays `stopping`, and the reason is kept as its interruption all the same.
    RecordingInterrupted {
        /// Meeting.
        meeting_id: Uuid,
        /// Recording.
        recording_id: Uuid,
        /// Human-readable reason (no secrets, no addresses).
        reason: String,
    },
    /// The recording failed.
    RecordingFailed {
        /// Meeting.
        meeting_id: Uuid,
        /// Recording.
        recording_id: Uuid,
        /// Human-readable reason (no secrets, no addresses).
        reason: String,
    },
    /// The stream is live.
    StreamStarted {
        /// Meeting.
        meeting_id: Uuid,
        /// Stream.
        stream_id: Uuid,
    },
    /// The stream ended.
    StreamFinished {
        /// Meeting.
        meeting_id: Uuid,
        /// Stream.
        stream_id: Uuid,
    },
    /// The stream failed.
    StreamFailed {
        /// Meeting.
        meeting_id: Uuid,
        /// Stream.
        stream_id: Uuid,
        /// Human-readable reason (no secrets, no addresses).
        reason: String,
    },
    /// A participant's media started arriving.
    ParticipantMediaStarted {
        /// Meeting.
        meeting_id: Uuid,
        /// Participant.
        participant_id: Uuid,
    },
    /// A participant's media stopped (left, ICE failure, timeout).
    ParticipantMediaStopped {
        /// Meeting.
        meeting_id: Uuid,
        /// Participant.
        participant_id: Uuid,
    },
    /// The active speaker changed (from audio levels, with hysteresis).
    ActiveSpeakerChanged {
        /// Meeting.
        meeting_id: Uuid,
        /// New active speaker.
        participant_id: Uuid,
    },
    /// A participant's camera went off (no video for a while) or came back.
    CameraChanged {
        /// Meeting.
        meeting_id: Uuid,
        /// Participant.
        participant_id: Uuid,
        /// Camera on.
        on: bool,
    },
    /// An RTMP destination of a stream changed state.
    StreamDestinationChanged {
        /// Meeting.
        meeting_id: Uuid,
        /// Stream.
        stream_id: Uuid,
        /// Position of the destination in the stream's `rtmp` list.
        destination: usize,
        /// `connecting`, `live`, `retrying` or `stopped`.
        status: String,
        /// Failed attempts in a row, while retrying.
        attempt: Option<u32>,
        /// The last error, without the stream key.
        error: Option<String>,
    },
    /// The stream's HLS files stopped being written (`error`: a full disk), or are
    /// written again (`None`). The stream and its RTMP pushes go on meanwhile.
    StreamHlsChanged {
        /// Meeting.
        meeting_id: Uuid,
        /// Stream.
        stream_id: Uuid,
        /// Why HLS is stalled; `None` once it advances again.
        error: Option<String>,
    },
    /// Post-processing of a stopped recording advanced (validation has read this
    /// much media). Informational; several per recording.
    RecordingProgress {
        /// Meeting.
        meeting_id: Uuid,
        /// Recording.
        recording_id: Uuid,
        /// Media time processed, milliseconds.
        processed_ms: u64,
    },
}

impl MediaEvent {
    /// Meeting the event is about.
    pub fn meeting_id(&self) -> Uuid {
        match self {
            MediaEvent::RecordingStarted { meeting_id, .. }
            | MediaEvent::RecordingFinished { meeting_id, .. }
            | MediaEvent::RecordingInterrupted { meeting_id, .. }
            | MediaEvent::RecordingFailed { meeting_id, .. }
            | MediaEvent::StreamStarted { meeting_id, .. }
            | MediaEvent::StreamFinished { meeting_id, .. }
            | MediaEvent::StreamFailed { meeting_id, .. }
            | MediaEvent::ParticipantMediaStarted { meeting_id, .. }
            | MediaEvent::ParticipantMediaStopped { meeting_id, .. }
            | MediaEvent::ActiveSpeakerChanged { meeting_id, .. }
            | MediaEvent::CameraChanged { meeting_id, .. }
            | MediaEvent::StreamDestinationChanged { meeting_id, .. }
            | MediaEvent::StreamHlsChanged { meeting_id, .. }
            | MediaEvent::RecordingProgress { meeting_id, .. } => *meeting_id,
        }
    }
}

/// Errors a media plane reports for a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum MediaPlaneError {
    /// No media plane can take the command (none configured, or node unreachable).
    #[error("media plane unavailable: {0}")]
    Unavailable(String),
    /// The command names something the media plane does not know.
    #[error("unknown to the media plane: {0}")]
    NotFound(String),
    /// The media plane tried and failed.
    #[error("media plane failure: {0}")]
    Failed(String),
    /// A limit was reached (e.g. publishers per meeting).
    #[error("{0}")]
    Full(String),
    /// The request itself is unacceptable (e.g. malformed SDP, unsupported codecs).
    #[error("{0}")]
    Rejected(String),
    /// No media node has room for the meeting (the cluster is full): try again later.
    #[error("{message}")]
    NoCapacity {
        /// What is full, for the operator and the caller.
        message: String,
        /// Seconds after which a retry may find room (`Retry-After`).
        retry_after_secs: u32,
    },
}

/// Where a media plane delivers its [`MediaEvent`]s.
pub type EventSink = Arc<dyn Fn(MediaEvent) + Send + Sync>;

/// The control plane's handle on a media plane (in-process or remote).
#[async_trait::async_trait]
pub trait MediaPlane: Send + Sync + 'static {
    /// Execute one command. Consent commands return only once they took effect.
    async fn execute(&self, command: MediaCommand) -> Result<CommandOutcome, MediaPlaneError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_tagged_json() {
        let id = Uuid::nil();
        let cmd = MediaCommand::SetConsent {
            meeting_id: id,
            participant_id: id,
            recording: true,
            streaming: false,
        };
        let json = serde_json::to_value(&cmd).unwrap();
        assert_eq!(json["type"], "set_consent");
        let back: MediaCommand = serde_json::from_value(json).unwrap();
        assert_eq!(back, cmd);
        assert_eq!(back.meeting_id(), id);
    }

    #[test]
    fn stream_key_is_redacted_in_debug() {
        let t = RtmpTarget {
            url: "rtmp://x/app".into(),
            key: "sekrit".into(),
        };
        assert!(!format!("{t:?}").contains("sekrit"));
    }
}
