//! What every output kind (recording, stream) shares: handing a stored output to the
//! media plane and moving it along its forward-only [`OutputState`] lifecycle, the
//! stop request, the 409 body for a second start, and the ledger record shape.
//!
//! Must not import the other API modules: ending a meeting (`meetings`) stops its
//! outputs through here while `recordings` and `streams` read meetings, and this
//! module sitting below both is what keeps that free of an import circle.
//!
//! [`OutputState`]: gremium_protocol::OutputState

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use gremium_protocol::{MediaCommand, MediaPlaneError, OutputTrigger};
use gremium_storage::{LedgerRecord, OutputKind, Recording, Stream};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::media::transition;
use crate::AppState;

/// A ledger entry on the meeting's hash chain, about `subject` (an output, or a
/// recording read from the archive).
pub(crate) fn ledger(
    meeting_id: Uuid,
    at: i64,
    kind: &str,
    actor: &str,
    subject: Uuid,
    data: serde_json::Value,
) -> LedgerRecord {
    LedgerRecord {
        chain_id: meeting_id.to_string(),
        at,
        kind: kind.into(),
        actor: actor.into(),
        subject: subject.to_string(),
        data,
    }
}

/// The recording `rid`, or 404.
pub(crate) async fn find_recording(state: &AppState, rid: Uuid) -> ApiResult<Recording> {
    state
        .db()
        .get_recording(rid)
        .await?
        .ok_or(ApiError::NotFound("recording"))
}

/// The stream `sid`, or 404.
pub(crate) async fn find_stream(state: &AppState, sid: Uuid) -> ApiResult<Stream> {
    state
        .db()
        .get_stream(sid)
        .await?
        .ok_or(ApiError::NotFound("stream"))
}

/// 409 for a start that found (or lost the race to) a running output of the meeting:
/// the body names the running one, so a client can follow or stop it.
pub(crate) fn already_running(kind: OutputKind, running: Uuid) -> Response {
    let path = match kind {
        OutputKind::Recording => "recordings",
        OutputKind::Stream => "streams",
    };
    let body = serde_json::json!({
        "error": {
            "code": "conflict",
            "message": format!("a {} of this meeting is already running: {running}", kind.as_str()),
            "existing_id": running,
            "existing_url": format!("/api/v1/{path}/{running}"),
        }
    });
    (StatusCode::CONFLICT, Json(body)).into_response()
}

/// Hand a freshly stored output to the media plane and move it along its lifecycle.
pub(crate) async fn launch(
    state: &AppState,
    kind: OutputKind,
    id: Uuid,
    command: MediaCommand,
    actor: &str,
) -> ApiResult<()> {
    execute_or_fail(state, kind, id, command, actor).await??;
    transition(state, kind, id, OutputTrigger::MediaAccepted, actor, None).await?;
    Ok(())
}

/// Send `command` about an output to the media plane. If the plane refuses it, the
/// output fails with the refusal as its reason; the refusal is handed back (a start
/// reports it, a stop has nothing more to do with it).
async fn execute_or_fail(
    state: &AppState,
    kind: OutputKind,
    id: Uuid,
    command: MediaCommand,
    actor: &str,
) -> ApiResult<Result<(), MediaPlaneError>> {
    match state.media().execute(command).await {
        Ok(_) => Ok(Ok(())),
        Err(e) => {
            let reason = e.to_string();
            transition(
                state,
                kind,
                id,
                OutputTrigger::MediaFailed,
                actor,
                Some(&reason),
            )
            .await?;
            Ok(Err(e))
        }
    }
}

/// Request stop of an output: lifecycle first (so a second stop is harmless), then
/// the media plane. Used by the stop endpoints and by ending a meeting.
pub(crate) async fn stop_output(
    state: &AppState,
    kind: OutputKind,
    id: Uuid,
    meeting_id: Uuid,
    actor: &str,
) -> ApiResult<bool> {
    let t = transition(state, kind, id, OutputTrigger::StopRequested, actor, None).await?;
    if t.changed() {
        let command = match kind {
            OutputKind::Recording => MediaCommand::StopRecording {
                meeting_id,
                recording_id: id,
            },
            OutputKind::Stream => MediaCommand::StopStream {
                meeting_id,
                stream_id: id,
            },
        };
        // A refused stop has already failed the output; the stop itself succeeded.
        let _refused = execute_or_fail(state, kind, id, command, actor).await?;
    }
    Ok(t.changed())
}
