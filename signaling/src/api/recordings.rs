//! Recordings: start, list, stop, and how the API shows one ([`RecordingView`], also
//! used by the archive and the event socket). The lifecycle steps they share with
//! streams live in [`super::output_lifecycle`]; reading, downloading and deleting
//! finished recordings is the archive's (`super::archive`).

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use gremium_protocol::{MediaCommand, OutputState, SecretHex};
use gremium_storage::outputs::Started;
use gremium_storage::{NewRecording, OutputKind, Recording};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::meetings::{load_meeting, open_meeting};
use super::output_lifecycle::{already_running, find_recording, launch, ledger, stop_output};
use crate::auth::{Principal, Role};
use crate::error::ApiResult;
use crate::events::EventKind;
use crate::extract::ApiPath;
use crate::{to_datetime, AppState};

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/meetings/{id}/recordings",
            post(start_recording).get(list_recordings),
        )
        .route("/recordings/{rid}/stop", post(stop_recording))
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
    let r = find_recording(&state, rid).await?;
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
    let r = find_recording(&state, rid).await?;
    let changed = stop_output(
        &state,
        OutputKind::Recording,
        rid,
        r.meeting_id,
        &who.actor(),
    )
    .await?;
    let r = find_recording(&state, rid).await?;
    let status = if changed {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(RecordingView::from(&r))))
}
