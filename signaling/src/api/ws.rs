//! `GET /api/v1/meetings/{id}/events`: the meeting's WebSocket event stream.
//!
//! Browsers cannot set headers on a WebSocket, so the token may also come as the
//! `access_token` query parameter (never logged: the request log carries only the
//! route template). The first message is a `snapshot` with the current state, so a
//! client shows the right recording/livestream indicator from the start.

use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::request::Parts;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use futures_util::{SinkExt, StreamExt};
use gremium_protocol::OutputState;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc::error::TrySendError;
use uuid::Uuid;

use super::meetings::{may_view_meeting, MeetingView};
use super::participants::ParticipantView;
use super::recordings::RecordingView;
use crate::auth::{bearer, check_standing, Principal, Reach};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiPath;
use crate::sockets::{CapError, Holder, SocketLimits, SocketTicket};
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
///
/// Capped per token and per meeting (429 / 503 with the reason). A participant's socket
/// is closed (1008, with the reason) when they are removed or the meeting ends; a
/// client that does not read is closed once its bounded queue is full.
#[utoipa::path(get, path = "/api/v1/meetings/{id}/events", params(("id" = Uuid, Path)),
    responses((status = 101, description = "WebSocket of meeting events; first a snapshot"), (status = 401), (status = 403), (status = 404),
        (status = 429, description = "too many open sockets for this token"), (status = 503, description = "too many open sockets for this meeting")),
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
    let holder = match &who {
        Principal::Participant { participant_id, .. } => Holder::Participant(*participant_id),
        Principal::Staff { subject, .. } => Holder::Staff(subject.clone()),
    };
    let ws = state.settings().websockets;
    let limits = SocketLimits {
        per_holder: ws.max_per_token,
        per_meeting: ws.max_per_meeting,
    };
    // The place is taken before the database is asked whether the token still stands:
    // a removal that lands after this check reaches the socket through the ticket.
    let ticket = state
        .sockets()
        .open(id, holder, limits)
        .map_err(|e| match e {
            CapError::Holder(_) => ApiError::TooManyRequests(e.to_string()),
            CapError::Meeting(_) => ApiError::Unavailable(e.to_string()),
        })?;
    check_standing(&state, &who, Reach::Meeting).await?;
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
    // Clients send nothing but pings and close frames: small read limits, so a client
    // cannot make us buffer large messages; writes are flushed per message.
    let upgrade = upgrade
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_message_size(16 * 1024)
        .max_frame_size(16 * 1024);
    let queue = ws.queue_messages.max(1);
    Ok(upgrade.on_upgrade(move |socket| pump(socket, state, id, first, rx, ticket, queue)))
}

/// Why a socket ended (the gauge and the debug log say it).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ending {
    /// The client closed it or the connection failed.
    Client,
    /// The token was revoked; the reason goes into the close frame.
    Revoked(String),
    /// The client did not read: its queue of this many events was full.
    SlowReader(usize),
    /// The meeting's channel closed (process shutting down).
    ChannelClosed,
    /// Nothing came back (not even a pong) for a whole keep-alive interval.
    Silent,
}

/// How often an event socket is pinged; one interval without any frame from the
/// client (a pong answers the ping) ends it.
const KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(30);

async fn pump(
    socket: WebSocket,
    state: AppState,
    id: Uuid,
    first: String,
    mut rx: tokio::sync::broadcast::Receiver<std::sync::Arc<str>>,
    mut ticket: SocketTicket,
    queue: usize,
) {
    metrics::gauge!("gremium_ws_subscribers").increment(1.0);
    let (mut sink, mut incoming) = socket.split();
    // The writer alone awaits the client; the pump only queues, so a client that does
    // not read fills its bounded queue and is dropped instead of buffering without end.
    let (out, mut queued) = tokio::sync::mpsc::channel::<Message>(queue);
    let mut writer = tokio::spawn(async move {
        while let Some(m) = queued.recv().await {
            let close = matches!(m, Message::Close(_));
            if sink.send(m).await.is_err() || close {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let ending = 'pump: {
        // A removal that landed between the database check and the upgrade: not even
        // the snapshot (names and consent) goes out.
        if let Some(reason) = ticket.closed.borrow_and_update().clone() {
            break 'pump Ending::Revoked(reason);
        }
        if out.try_send(Message::Text(first.into())).is_err() {
            break 'pump Ending::SlowReader(queue);
        }
        // A client whose network vanished without a FIN would otherwise hold its
        // per-token, per-meeting and connection places for ever in a quiet meeting:
        // it is pinged, and dropped when nothing came back for a whole interval.
        let mut keepalive =
            tokio::time::interval_at(tokio::time::Instant::now() + KEEPALIVE, KEEPALIVE);
        let mut heard = true;
        loop {
            let text: Option<String> = tokio::select! {
                biased;
                _ = ticket.closed.changed() => {
                    let reason = ticket.closed.borrow().clone().unwrap_or_default();
                    break 'pump Ending::Revoked(reason);
                }
                msg = rx.recv() => match msg {
                    Ok(text) => Some(text.as_ref().into()),
                    Err(RecvError::Lagged(_)) => {
                        // The pump fell behind the channel: resynchronise with a snapshot.
                        match snapshot(&state, id).await {
                            Ok(s) => Some(s),
                            Err(_) => break 'pump Ending::ChannelClosed,
                        }
                    }
                    Err(RecvError::Closed) => break 'pump Ending::ChannelClosed,
                },
                m = incoming.next() => match m {
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break 'pump Ending::Client,
                    Some(Ok(_)) => {
                        heard = true; // pongs, and pings (answered by axum)
                        None
                    }
                },
                _ = keepalive.tick() => {
                    if !heard {
                        break 'pump Ending::Silent;
                    }
                    heard = false;
                    match out.try_send(Message::Ping(Vec::new().into())) {
                        Ok(()) => {}
                        Err(TrySendError::Full(_)) => break 'pump Ending::SlowReader(queue),
                        Err(TrySendError::Closed(_)) => break 'pump Ending::Client,
                    }
                    None
                },
                _ = &mut writer => break 'pump Ending::Client,
            };
            if let Some(text) = text {
                match out.try_send(Message::Text(text.into())) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => break 'pump Ending::SlowReader(queue),
                    Err(TrySendError::Closed(_)) => break 'pump Ending::Client,
                }
            }
        }
    };
    tracing::debug!(ending = ?ending, "meeting event socket ends");
    match &ending {
        Ending::Revoked(reason) => {
            // Say why, then give the writer a moment to flush it.
            let frame = CloseFrame {
                code: close_code::POLICY,
                reason: reason.as_str().into(),
            };
            if out.try_send(Message::Close(Some(frame))).is_ok() {
                drop(out);
                let _ = tokio::time::timeout(CLOSE_FLUSH, &mut writer).await;
            }
        }
        Ending::SlowReader(n) => {
            metrics::counter!("gremium_ws_slow_readers_dropped_total").increment(1);
            tracing::info!(
                queued = n,
                "dropped a meeting event socket whose client does not read"
            );
        }
        Ending::Client | Ending::ChannelClosed | Ending::Silent => {}
    }
    // Whatever is left (a writer stuck on a client that does not read) goes now: the
    // connection, its buffers and its place in the caps are given back.
    writer.abort();
    drop(ticket);
    metrics::gauge!("gremium_ws_subscribers").decrement(1.0);
}

/// How long a revoked socket's close frame may take to go out.
const CLOSE_FLUSH: std::time::Duration = std::time::Duration::from_millis(500);
