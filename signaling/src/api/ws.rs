//! `GET /api/v1/meetings/{id}/events`: the meeting's WebSocket event stream.
//!
//! Browsers cannot set headers on a WebSocket, so the token may also come as the
//! `access_token` query parameter (never logged: the request log carries only the
//! route template). The first message is a `snapshot` with the current state, so a
//! client shows the right recording/livestream indicator from the start.

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::request::Parts;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use gremium_protocol::OutputState;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use super::meetings::{may_view_meeting, MeetingView};
use super::outputs::RecordingView;
use super::participants::ParticipantView;
use crate::auth::bearer;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiPath;
use crate::AppState;

pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/meetings/{id}/events", get(events))
}

#[derive(Deserialize)]
struct TokenQuery {
    access_token: Option<String>,
}

/// First message on the socket.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Snapshot {
    /// Always `snapshot`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The meeting.
    pub meeting: MeetingView,
    /// Its participants.
    pub participants: Vec<ParticipantView>,
    /// Its recordings that are not finished.
    pub recordings: Vec<RecordingView>,
    /// True while a recording is starting, active or stopping: show the indicator.
    pub recording: bool,
    /// True while a livestream is starting, active or stopping.
    pub streaming: bool,
}

fn token_from(parts: &Parts) -> Option<String> {
    if let Some(t) = bearer(parts) {
        return Some(t.to_string());
    }
    axum::extract::Query::<TokenQuery>::try_from_uri(&parts.uri)
        .ok()?
        .0
        .access_token
}

fn live(s: OutputState) -> bool {
    matches!(
        s,
        OutputState::Starting | OutputState::Active | OutputState::Stopping
    )
}

async fn snapshot(state: &AppState, id: Uuid) -> ApiResult<String> {
    let meeting = super::meetings::load_meeting(state, id).await?;
    let participants = state.db().list_participants(id).await?;
    let recordings = state.db().list_recordings(id).await?;
    let streams = state.db().list_streams(id).await?;
    let snap = Snapshot {
        kind: "snapshot",
        meeting: MeetingView::from(&meeting),
        participants: participants
            .iter()
            .filter(|p| p.left_at.is_none())
            .map(|p| super::participants::view_now(state, p))
            .collect(),
        recording: recordings.iter().any(|r| live(r.state)),
        streaming: streams.iter().any(|s| live(s.state)),
        recordings: recordings
            .iter()
            .filter(|r| !r.state.is_terminal())
            .map(RecordingView::from)
            .collect(),
    };
    serde_json::to_string(&snap).map_err(|e| ApiError::Internal(e.to_string()))
}

/// Meeting events over WebSocket (moderator, archivist, or a participant of the meeting).
#[utoipa::path(get, path = "/api/v1/meetings/{id}/events", params(("id" = Uuid, Path)),
    responses((status = 101, description = "WebSocket of meeting events; first a snapshot"), (status = 401), (status = 403), (status = 404)),
    security(("bearer" = [])), tag = "events")]
pub async fn events(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
    request: axum::extract::Request,
) -> ApiResult<Response> {
    let (mut parts, _body) = request.into_parts();
    let token =
        token_from(&parts).ok_or_else(|| ApiError::Unauthorized("bearer token required".into()))?;
    let who = state.auth().verify(&token).await?;
    may_view_meeting(&who, id)?;
    // Subscribe before the snapshot so nothing falls between them.
    let rx = state.hub().subscribe(id);
    let first = snapshot(&state, id).await?;
    let upgrade =
        <WebSocketUpgrade as axum::extract::FromRequestParts<AppState>>::from_request_parts(
            &mut parts, &state,
        )
        .await
        .map_err(|e| {
            ApiError::BadRequest(format!("websocket upgrade required: {}", e.body_text()))
        })?;
    Ok(upgrade.on_upgrade(move |socket| pump(socket, state, id, first, rx)))
}

async fn pump(
    mut socket: WebSocket,
    state: AppState,
    id: Uuid,
    first: String,
    mut rx: tokio::sync::broadcast::Receiver<std::sync::Arc<str>>,
) {
    metrics::gauge!("gremium_ws_subscribers").increment(1.0);
    if socket.send(Message::Text(first.into())).await.is_ok() {
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    Ok(text) => {
                        if socket.send(Message::Text(text.as_ref().into())).await.is_err() {
                            break;
                        }
                    }
                    Err(RecvError::Lagged(_)) => {
                        // Too slow a reader: resynchronise with a fresh snapshot.
                        let Ok(s) = snapshot(&state, id).await else { break };
                        if socket.send(Message::Text(s.into())).await.is_err() {
                            break;
                        }
                    }
                    Err(RecvError::Closed) => break,
                },
                incoming = socket.recv() => match incoming {
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {} // clients do not send anything meaningful; pings are answered by axum
                },
            }
        }
    }
    metrics::gauge!("gremium_ws_subscribers").decrement(1.0);
}
