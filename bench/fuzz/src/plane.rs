//! A media plane that answers every command at once without media, like the test
//! fake, but keeps nothing (a million inputs would otherwise pile up its command
//! log) and answers WHIP offers with a session, so the session routes are reachable.
//! Where the real media plane checks input first (the offer's SDP, ICE restart
//! credentials), it runs the same pure checks, so fuzzed input reaches them through
//! the router too.

use gremium_pipelines::{ice_restart::validate_credentials, webrtc::parse_sdp, PipelineError};

use gremium_protocol::{CommandOutcome, EventSink, MediaCommand, MediaPlane, MediaPlaneError};
use gremium_signaling::media::fake::output_event;

/// See the module docs.
pub struct InstantPlane(pub EventSink);

#[async_trait::async_trait]
impl MediaPlane for InstantPlane {
    async fn execute(&self, command: MediaCommand) -> Result<CommandOutcome, MediaPlaneError> {
        let applied = Ok(CommandOutcome::Applied {
            media_time_ns: Some(1_000_000_000),
        });
        match command {
            MediaCommand::StartRecording { .. }
            | MediaCommand::StopRecording { .. }
            | MediaCommand::StartStream { .. }
            | MediaCommand::StopStream { .. } => {
                if let Some(event) = output_event(&command) {
                    (self.0)(event);
                }
                Ok(CommandOutcome::Accepted)
            }
            MediaCommand::Publish { offer_sdp, .. } => {
                parse_sdp(&offer_sdp).map_err(rejected)?;
                Ok(CommandOutcome::Published {
                    session_id: uuid::Uuid::new_v4(),
                    answer_sdp: "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n".into(),
                })
            }
            MediaCommand::AddIceCandidates {
                ufrag: Some(ufrag),
                pwd,
                ..
            } => {
                validate_credentials(&ufrag, pwd.as_deref().unwrap_or("")).map_err(rejected)?;
                Ok(CommandOutcome::IceRestarted {
                    ufrag: "Fz9x".into(),
                    pwd: "FuzzPasswordOfTwentyTwo".into(),
                    candidates: vec!["candidate:1 1 udp 2122260223 127.0.0.1 40000 typ host".into()],
                })
            }
            MediaCommand::DiscardRecording { .. } => Ok(CommandOutcome::Accepted),
            _ => applied,
        }
    }
}

/// As the real media plane maps SDP errors.
fn rejected(e: PipelineError) -> MediaPlaneError {
    match e {
        PipelineError::Sdp(m) | PipelineError::Unsupported(m) => MediaPlaneError::Rejected(m),
        other => MediaPlaneError::Failed(other.to_string()),
    }
}
