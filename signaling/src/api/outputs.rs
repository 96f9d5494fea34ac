//! Recordings and streams: start, stop, read. Their lifecycle is the forward-only
//! [`OutputState`]; each state change is ledgered and announced on the meeting channel.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use gremium_protocol::{
    redact_rtmp_url, MediaCommand, MeetingContext, OutputState, OutputTrigger, RtmpTarget,
    SecretHex,
};
use gremium_storage::outputs::{seal_destinations, Started};
use gremium_storage::{
    LedgerRecord, Meeting, MeetingState, NewRecording, NewStream, OutputKind, Recording, Stream,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::meetings::load_meeting;
use crate::auth::{Principal, Role};
use crate::error::{ApiError, ApiResult};
use crate::events::EventKind;
use crate::extract::{ApiJson, ApiPath};
use crate::media::transition;
use crate::{to_datetime, AppState};

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/meetings/{id}/recordings",
            post(start_recording).get(list_recordings),
        )
        .route("/recordings/{rid}/stop", post(stop_recording))
        .route(
            "/meetings/{id}/streams",
            post(start_stream).get(list_streams),
        )
        .route("/streams/{sid}", get(get_stream))
        .route("/streams/{sid}/stop", post(stop_stream))
}

/// A recording as the API shows it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RecordingView {
    /// Recording id.
    pub id: Uuid,
    /// Meeting.
    pub meeting_id: Uuid,
    /// Lifecycle state.
    pub state: OutputState,
    /// Failure reason.
    pub failure: Option<String>,
    /// Why the recording ended before anyone stopped it, when it did: writing it
    /// failed (e.g. its spool disk filled up). What was written before is kept and
    /// finalized as usual.
    pub interruption: Option<String>,
    /// Requested at.
    pub created_at: DateTime<Utc>,
    /// Last state change.
    pub updated_at: DateTime<Utc>,
    /// The stored media, once the recording is finalized (absent after deletion).
    pub media: Option<RecordedMediaView>,
    /// When the recording was deleted (retention or request).
    pub deleted_at: Option<DateTime<Utc>>,
    /// Why it was deleted.
    pub deletion_reason: Option<String>,
}

/// A finalized recording's stored media.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RecordedMediaView {
    /// Where to fetch the media (`video/mp4`, Range supported).
    pub url: String,
    /// Where to fetch the poster (`image/jpeg`), when there is one.
    pub poster_url: Option<String>,
    /// Where to fetch the manifest (`application/json`), once written.
    pub manifest_url: Option<String>,
    /// Media size in bytes (as served, decrypted).
    pub bytes: i64,
    /// SHA-256 of the stored (encrypted) object.
    pub stored_sha256: String,
    /// Duration in seconds, from validation with ffmpeg.
    pub duration_s: Option<f64>,
    /// Validation result: container, streams (codec, size, sample rate), duration.
    #[schema(value_type = Object)]
    pub probe: Option<serde_json::Value>,
}

impl From<&Recording> for RecordingView {
    fn from(r: &Recording) -> Self {
        let media = r
            .stored
            .as_ref()
            .filter(|_| r.deleted_at.is_none())
            .map(|m| RecordedMediaView {
                url: format!("/api/v1/recordings/{}/media", r.id),
                poster_url: m
                    .poster_key
                    .as_ref()
                    .map(|_| format!("/api/v1/recordings/{}/poster", r.id)),
                manifest_url: r
                    .manifest
                    .as_ref()
                    .map(|_| format!("/api/v1/recordings/{}/manifest", r.id)),
                bytes: m.plaintext_bytes,
                stored_sha256: m.media_sha256.clone(),
                duration_s: m.duration_ms.map(|d| d as f64 / 1000.0),
                probe: m
                    .probe
                    .as_deref()
                    .and_then(|p| serde_json::from_str(p).ok()),
            });
        RecordingView {
            id: r.id,
            meeting_id: r.meeting_id,
            state: r.state,
            failure: r.failure.clone(),
            interruption: r.interruption.clone(),
            created_at: to_datetime(r.created_at),
            updated_at: to_datetime(r.updated_at),
            media,
            deleted_at: r.deleted_at.map(to_datetime),
            deletion_reason: r.deletion_reason.clone(),
        }
    }
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

async fn open_meeting(state: &AppState, id: Uuid) -> ApiResult<Meeting> {
    let meeting = load_meeting(state, id).await?;
    if meeting.state == MeetingState::Ended {
        return Err(ApiError::Conflict("meeting has ended".into()));
    }
    Ok(meeting)
}

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

/// 409 for a start that found (or lost the race to) a running output of the meeting:
/// the body names the running one, so a client can follow or stop it.
fn already_running(kind: OutputKind, running: Uuid) -> Response {
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
async fn launch(
    state: &AppState,
    kind: OutputKind,
    id: Uuid,
    command: MediaCommand,
    actor: &str,
) -> ApiResult<()> {
    match state.media().execute(command).await {
        Ok(_) => {
            transition(state, kind, id, OutputTrigger::MediaAccepted, actor, None).await?;
            Ok(())
        }
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
            Err(e.into())
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
        if let Err(e) = state.media().execute(command).await {
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
        }
    }
    Ok(t.changed())
}

/// Start recording the meeting (moderator). One recording at a time per meeting: while
/// one is requested, starting, active or stopping, a start is 409 and the error body
/// carries its id (`existing_id`).
#[utoipa::path(post, path = "/api/v1/meetings/{id}/recordings", params(("id" = Uuid, Path)),
    responses((status = 201, body = RecordingView), (status = 401), (status = 403), (status = 404), (status = 409), (status = 503)),
    security(("bearer" = [])), tag = "recordings")]
pub async fn start_recording(
    state: axum::extract::State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<impl IntoResponse> {
    who.require(&[Role::Moderator])?;
    open_meeting(&state, id).await?;
    if let Some(running) = state.db().running_output(OutputKind::Recording, id).await? {
        return Ok(already_running(OutputKind::Recording, running));
    }
    let rid = Uuid::new_v4();
    let now = state.now_ms();
    let actor = who.actor();
    let (data_key, wrapped_key) = state.vault().new_data_key(rid);
    let started = state
        .db()
        .try_insert_recording(
            &NewRecording {
                id: rid,
                meeting_id: id,
                requested_by: actor.clone(),
                created_at: now,
                wrapped_key,
            },
            &ledger(
                id,
                now,
                "recording_requested",
                &actor,
                rid,
                serde_json::json!({}),
            ),
        )
        .await?;
    let r = match started {
        Started::Created(r) => r,
        Started::AlreadyRunning(running) => {
            return Ok(already_running(OutputKind::Recording, running))
        }
    };
    state.publish(
        id,
        EventKind::RecordingStateChanged {
            recording_id: rid,
            state: r.state,
            reason: None,
        },
    );
    launch(
        &state,
        OutputKind::Recording,
        rid,
        MediaCommand::StartRecording {
            meeting_id: id,
            recording_id: rid,
            data_key: SecretHex(data_key.to_hex()),
        },
        &actor,
    )
    .await?;
    let r = state
        .db()
        .get_recording(rid)
        .await?
        .ok_or(ApiError::NotFound("recording"))?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/api/v1/recordings/{rid}"))],
        Json(RecordingView::from(&r)),
    )
        .into_response())
}

/// Recordings of a meeting (moderator, archivist, admin): those who run the meeting
/// and those who may read its whole archive anyway. Not viewers, participants or
/// anonymous callers.
#[utoipa::path(get, path = "/api/v1/meetings/{id}/recordings", params(("id" = Uuid, Path)),
    responses((status = 200, body = [RecordingView]), (status = 401), (status = 403), (status = 404)),
    security(("bearer" = [])), tag = "recordings")]
pub async fn list_recordings(
    state: axum::extract::State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<Vec<RecordingView>>> {
    who.require(&[Role::Moderator, Role::Archivist])?;
    load_meeting(&state, id).await?;
    Ok(Json(
        state
            .db()
            .list_recordings(id)
            .await?
            .iter()
            .map(RecordingView::from)
            .collect(),
    ))
}

/// Stop a recording (moderator). Stopping while stopping is harmless (200); stopping a
/// finished or failed recording is 409.
#[utoipa::path(post, path = "/api/v1/recordings/{rid}/stop", params(("rid" = Uuid, Path)),
    responses((status = 202, body = RecordingView), (status = 200, body = RecordingView), (status = 401), (status = 403), (status = 404), (status = 409)),
    security(("bearer" = [])), tag = "recordings")]
pub async fn stop_recording(
    state: axum::extract::State<AppState>,
    who: Principal,
    ApiPath(rid): ApiPath<Uuid>,
) -> ApiResult<impl IntoResponse> {
    who.require(&[Role::Moderator])?;
    let r = state
        .db()
        .get_recording(rid)
        .await?
        .ok_or(ApiError::NotFound("recording"))?;
    let changed = stop_output(
        &state,
        OutputKind::Recording,
        rid,
        r.meeting_id,
        &who.actor(),
    )
    .await?;
    let r = state
        .db()
        .get_recording(rid)
        .await?
        .ok_or(ApiError::NotFound("recording"))?;
    let status = if changed {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(RecordingView::from(&r))))
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
                layout: crate::api::meetings::parse_layout(&meeting.layout),
            }),
        },
        &actor,
    )
    .await?;
    let s = state
        .db()
        .get_stream(sid)
        .await?
        .ok_or(ApiError::NotFound("stream"))?;
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
    let s = state
        .db()
        .get_stream(sid)
        .await?
        .ok_or(ApiError::NotFound("stream"))?;
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
    let s = state
        .db()
        .get_stream(sid)
        .await?
        .ok_or(ApiError::NotFound("stream"))?;
    let changed = stop_output(&state, OutputKind::Stream, sid, s.meeting_id, &who.actor()).await?;
    let s = state
        .db()
        .get_stream(sid)
        .await?
        .ok_or(ApiError::NotFound("stream"))?;
    let status = if changed {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(stream_view(&state, &s))))
}
