//! Streams (live outputs): start HLS and/or RTMP push, list, read, stop, and how the
//! API shows one with its destinations redacted. RTMP URLs and keys are sealed before
//! they are stored; nothing here ever returns or logs a key. The lifecycle steps they
//! share with recordings live in [`super::output_lifecycle`]; the HLS files themselves
//! are served by `super::live`.

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use gremium_protocol::{redact_rtmp_url, MediaCommand, MeetingContext, OutputState, RtmpTarget};
use gremium_storage::outputs::{seal_destinations, Started};
use gremium_storage::{NewStream, OutputKind, Stream};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::meetings::{load_meeting, open_meeting, parse_layout};
use super::output_lifecycle::{already_running, find_stream, launch, ledger, stop_output};
use crate::auth::{Principal, Role};
use crate::error::{ApiError, ApiResult};
use crate::events::EventKind;
use crate::extract::{ApiJson, ApiPath};
use crate::{to_datetime, AppState};

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/meetings/{id}/streams",
            post(start_stream).get(list_streams),
        )
        .route("/streams/{sid}", get(get_stream))
        .route("/streams/{sid}/stop", post(stop_stream))
}

/// An RTMP destination as requested.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RtmpDestination {
    /// `rtmp://` or `rtmps://` URL of the ingest application.
    pub url: String,
    /// Stream key. Stored for pushing; never returned or logged.
    pub key: String,
}

/// An RTMP destination as stored for showing: the redacted URL only (the URL and
/// key themselves are sealed, see `gremium_storage::outputs::SealedDestinations`).
#[derive(Debug, Deserialize, Serialize)]
struct ShownDestination {
    url: String,
}

/// An RTMP destination as shown: neither the key nor anything of the URL that may
/// carry one (user info, path after the application, query) is ever returned.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RtmpDestinationView {
    /// Scheme, host, port and application of the ingest URL only, e.g.
    /// `rtmp://live.example.org/live/…`.
    pub url: String,
    /// Always `"***"`.
    pub key: String,
    /// `pending` (not started yet), `connecting`, `live`, `retrying` or `stopped`.
    pub status: String,
    /// Failed attempts in a row, while retrying.
    pub attempt: Option<u32>,
    /// The last error (redacted: never the key).
    pub error: Option<String>,
}

/// A stream as the API shows it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StreamView {
    /// Stream id.
    pub id: Uuid,
    /// Meeting.
    pub meeting_id: Uuid,
    /// Lifecycle state.
    pub state: OutputState,
    /// HLS for citizens.
    pub hls: bool,
    /// Public HLS playlist, when `hls`.
    pub hls_url: Option<String>,
    /// Why the HLS files are not being written (e.g. the live disk is full) while
    /// the stream runs; the RTMP pushes go on meanwhile. HLS does not pick up again
    /// by itself: stop and start the stream once there is room.
    pub hls_error: Option<String>,
    /// RTMP push destinations (keys masked).
    pub rtmp: Vec<RtmpDestinationView>,
    /// Failure reason.
    pub failure: Option<String>,
    /// Requested at.
    pub created_at: DateTime<Utc>,
    /// Last state change.
    pub updated_at: DateTime<Utc>,
}

fn stream_view(state: &AppState, s: &Stream) -> StreamView {
    let rtmp: Vec<ShownDestination> = serde_json::from_str(&s.destinations).unwrap_or_default();
    let statuses = state.destination_statuses(s.id);
    StreamView {
        id: s.id,
        meeting_id: s.meeting_id,
        state: s.state,
        hls: s.hls,
        hls_url: s.hls.then(|| format!("/live/{}/index.m3u8", s.meeting_id)),
        hls_error: state.hls_error(s.id).filter(|_| !s.state.is_terminal()),
        rtmp: rtmp
            .into_iter()
            .enumerate()
            .map(|(i, d)| {
                let known = statuses.get(&i);
                let status = match (s.state.is_terminal(), known) {
                    (true, _) => "stopped".to_string(),
                    (false, Some(k)) => k.status.clone(),
                    (false, None) => "pending".to_string(),
                };
                RtmpDestinationView {
                    // Stored redacted; redacting again keeps any older row safe too.
                    url: redact_rtmp_url(&d.url),
                    key: "***".into(),
                    status,
                    attempt: known.and_then(|k| k.attempt),
                    error: known.and_then(|k| k.error.clone()),
                }
            })
            .collect(),
        failure: s.failure.clone(),
        created_at: to_datetime(s.created_at),
        updated_at: to_datetime(s.updated_at),
    }
}

/// Body of `POST /meetings/{id}/streams`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartStream {
    /// Publish HLS for citizens at `/live/{meeting_id}/index.m3u8`.
    #[serde(default)]
    pub hls: bool,
    /// RTMP(S) destinations, at most 8.
    #[serde(default)]
    pub rtmp: Vec<RtmpDestination>,
}

fn validate_destination(d: &RtmpDestination) -> ApiResult<()> {
    let url = d.url.trim();
    if !(url.starts_with("rtmp://") || url.starts_with("rtmps://"))
        || url.len() > 2048
        || url.contains(char::is_whitespace)
    {
        return Err(ApiError::Unprocessable(
            "rtmp.url: must be an rtmp:// or rtmps:// URL".into(),
        ));
    }
    if gremium_protocol::redact::redact_rtmp_url(url) == "…" {
        return Err(ApiError::Unprocessable(
            "rtmp.url: not a well-formed URL (a host name or address with an optional \
             numeric port; `?`, `#`, `/` and `@` in the user info must be percent-encoded)"
                .into(),
        ));
    }
    if d.key.is_empty() || d.key.len() > 512 || d.key.contains(char::is_whitespace) {
        return Err(ApiError::Unprocessable(
            "rtmp.key: must be 1 to 512 non-blank characters".into(),
        ));
    }
    Ok(())
}

/// Start live outputs (moderator): HLS and/or RTMP push. One stream at a time per
/// meeting (409 with the running one's `existing_id`, as for recordings). RTMP URLs
/// and keys are stored sealed and only ever shown, logged and ledgered as
/// `scheme://host[:port]/app/…`.
#[utoipa::path(post, path = "/api/v1/meetings/{id}/streams", params(("id" = Uuid, Path)), request_body = StartStream,
    responses((status = 201, body = StreamView), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422), (status = 503)),
    security(("bearer" = [])), tag = "streams")]
pub async fn start_stream(
    state: axum::extract::State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<StartStream>,
) -> ApiResult<impl IntoResponse> {
    who.require(&[Role::Moderator])?;
    if !body.hls && body.rtmp.is_empty() {
        return Err(ApiError::Unprocessable(
            "enable hls or give at least one rtmp destination".into(),
        ));
    }
    if body.rtmp.len() > 8 {
        return Err(ApiError::Unprocessable(
            "rtmp: at most 8 destinations".into(),
        ));
    }
    body.rtmp.iter().try_for_each(validate_destination)?;
    let meeting = open_meeting(&state, id).await?;
    if let Some(running) = state.db().running_output(OutputKind::Stream, id).await? {
        return Ok(already_running(OutputKind::Stream, running));
    }
    let sid = Uuid::new_v4();
    let now = state.now_ms();
    let actor = who.actor();
    let urls: Vec<String> = body.rtmp.iter().map(|d| redact_rtmp_url(&d.url)).collect();
    let shown: Vec<ShownDestination> = urls
        .iter()
        .map(|url| ShownDestination { url: url.clone() })
        .collect();
    let destinations =
        serde_json::to_string(&shown).map_err(|e| ApiError::Internal(e.to_string()))?;
    let sealed = if body.rtmp.is_empty() {
        None
    } else {
        let secret =
            serde_json::to_vec(&body.rtmp).map_err(|e| ApiError::Internal(e.to_string()))?;
        Some(
            seal_destinations(state.vault(), sid, &secret)
                .map_err(|e| ApiError::Internal(e.to_string()))?,
        )
    };
    let started = state
        .db()
        .try_insert_stream(
            &NewStream {
                id: sid,
                meeting_id: id,
                hls: body.hls,
                destinations,
                requested_by: actor.clone(),
                created_at: now,
            },
            sealed.as_ref(),
            &ledger(
                id,
                now,
                "stream_requested",
                &actor,
                sid,
                serde_json::json!({ "hls": body.hls, "rtmp_urls": urls }),
            ),
        )
        .await?;
    let s = match started {
        Started::Created(s) => s,
        Started::AlreadyRunning(running) => {
            return Ok(already_running(OutputKind::Stream, running))
        }
    };
    state.publish(
        id,
        EventKind::StreamStateChanged {
            stream_id: sid,
            state: s.state,
            reason: None,
        },
    );
    let rtmp = body
        .rtmp
        .iter()
        .map(|d| RtmpTarget {
            url: d.url.trim().into(),
            key: d.key.clone(),
        })
        .collect();
    if body.hls {
        // A new presentation restarts the segment numbers in the same directory.
        state.live().forget_meeting(id, &state.settings().live_dir);
    }
    launch(
        &state,
        OutputKind::Stream,
        sid,
        MediaCommand::StartStream {
            meeting_id: id,
            stream_id: sid,
            hls: body.hls,
            rtmp,
            context: Some(MeetingContext {
                public: meeting.is_public,
                layout: parse_layout(&meeting.layout),
            }),
        },
        &actor,
    )
    .await?;
    let s = find_stream(&state, sid).await?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/api/v1/streams/{sid}"))],
        Json(stream_view(&state, &s)),
    )
        .into_response())
}

/// Streams of a meeting (moderator).
#[utoipa::path(get, path = "/api/v1/meetings/{id}/streams", params(("id" = Uuid, Path)),
    responses((status = 200, body = [StreamView]), (status = 401), (status = 403), (status = 404)),
    security(("bearer" = [])), tag = "streams")]
pub async fn list_streams(
    state: axum::extract::State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<Vec<StreamView>>> {
    who.require(&[Role::Moderator])?;
    load_meeting(&state, id).await?;
    Ok(Json(
        state
            .db()
            .list_streams(id)
            .await?
            .iter()
            .map(|s| stream_view(&state, s))
            .collect(),
    ))
}

/// One stream (moderator).
#[utoipa::path(get, path = "/api/v1/streams/{sid}", params(("sid" = Uuid, Path)),
    responses((status = 200, body = StreamView), (status = 401), (status = 403), (status = 404)),
    security(("bearer" = [])), tag = "streams")]
pub async fn get_stream(
    state: axum::extract::State<AppState>,
    who: Principal,
    ApiPath(sid): ApiPath<Uuid>,
) -> ApiResult<Json<StreamView>> {
    who.require(&[Role::Moderator])?;
    let s = find_stream(&state, sid).await?;
    Ok(Json(stream_view(&state, &s)))
}

/// Stop a stream (moderator); same semantics as stopping a recording.
#[utoipa::path(post, path = "/api/v1/streams/{sid}/stop", params(("sid" = Uuid, Path)),
    responses((status = 202, body = StreamView), (status = 200, body = StreamView), (status = 401), (status = 403), (status = 404), (status = 409)),
    security(("bearer" = [])), tag = "streams")]
pub async fn stop_stream(
    state: axum::extract::State<AppState>,
    who: Principal,
    ApiPath(sid): ApiPath<Uuid>,
) -> ApiResult<impl IntoResponse> {
    who.require(&[Role::Moderator])?;
    let s = find_stream(&state, sid).await?;
    let changed = stop_output(&state, OutputKind::Stream, sid, s.meeting_id, &who.actor()).await?;
    let s = find_stream(&state, sid).await?;
    let status = if changed {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(stream_view(&state, &s))))
}
