//! WHIP (RFC 9725) ingest: `POST /whip/{meeting_id}` with a participant's join token
//! and an SDP offer; the answer comes back with `201 Created`, the session resource in
//! `Location` and an `ETag`. `DELETE` on the resource leaves. The answer carries all
//! of the media plane's candidates (no trickle), so `PATCH` answers 405 as RFC 9725
//! asks of servers without trickle ICE. SDP is never logged (it holds addresses).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::Router;
use gremium_protocol::{CommandOutcome, MediaCommand};
use gremium_storage::MeetingState;
use tower_http::cors::{Any, CorsLayer};
use uuid::Uuid;

use crate::auth::{Principal, Role};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiPath;
use crate::AppState;

pub(crate) fn router() -> Router<AppState> {
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::POST, Method::PATCH, Method::DELETE, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_MATCH,
        ])
        .expose_headers([header::LOCATION, header::ETAG, header::LINK]);
    Router::new()
        .route("/whip/{meeting_id}", post(publish))
        .route(
            "/whip/{meeting_id}/{session_id}",
            delete(leave).patch(trickle),
        )
        .layer(cors)
}

fn is_sdp(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/sdp"))
}

/// Publish into a meeting (participant join token of that meeting).
#[utoipa::path(post, path = "/whip/{meeting_id}", params(("meeting_id" = Uuid, Path)),
    request_body(content = String, content_type = "application/sdp", description = "SDP offer"),
    responses((status = 201, description = "SDP answer; Location names the session", content_type = "application/sdp"),
        (status = 400), (status = 401), (status = 403), (status = 404), (status = 409), (status = 413), (status = 415), (status = 503)),
    security(("bearer" = [])), tag = "whip")]
pub async fn publish(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(meeting_id): ApiPath<Uuid>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<Response> {
    let participant_id = who.participant_in(meeting_id).ok_or_else(|| {
        ApiError::Forbidden("publishing needs a join token for this meeting".into())
    })?;
    if !is_sdp(&headers) {
        return Err(ApiError::UnsupportedMediaType(
            "expected content-type application/sdp".into(),
        ));
    }
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(state.settings().max_body_bytes)
        } else {
            ApiError::BadRequest("unreadable body".into())
        }
    })?;
    let offer = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::BadRequest("SDP must be UTF-8".into()))?;
    let meeting = state
        .db()
        .get_meeting(meeting_id)
        .await?
        .ok_or(ApiError::NotFound("meeting"))?;
    if meeting.state == MeetingState::Ended {
        return Err(ApiError::Conflict("meeting has ended".into()));
    }
    let participant = state
        .db()
        .get_participant(meeting_id, participant_id)
        .await?
        .ok_or(ApiError::NotFound("participant"))?;
    if participant.left_at.is_some() {
        return Err(ApiError::Conflict(
            "participant has left the meeting".into(),
        ));
    }
    let outcome = state
        .media()
        .execute(MediaCommand::Publish {
            meeting_id,
            participant_id,
            offer_sdp: offer,
        })
        .await?;
    let CommandOutcome::Published {
        session_id,
        answer_sdp,
    } = outcome
    else {
        return Err(ApiError::Internal(
            "media plane did not answer the offer".into(),
        ));
    };
    state.whip_sessions_insert(session_id, meeting_id, participant_id);
    let location = format!("/whip/{meeting_id}/{session_id}");
    let mut response = (StatusCode::CREATED, answer_sdp).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/sdp"),
    );
    h.insert(
        header::LOCATION,
        HeaderValue::from_str(&location).map_err(|e| ApiError::Internal(e.to_string()))?,
    );
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&format!("\"{session_id}\""))
            .map_err(|e| ApiError::Internal(e.to_string()))?,
    );
    Ok(response)
}

/// Stop publishing (the publishing participant, or a moderator).
#[utoipa::path(delete, path = "/whip/{meeting_id}/{session_id}", params(("meeting_id" = Uuid, Path), ("session_id" = Uuid, Path)),
    responses((status = 200), (status = 401), (status = 403), (status = 404)),
    security(("bearer" = [])), tag = "whip")]
pub async fn leave(
    State(state): State<AppState>,
    who: Principal,
    ApiPath((meeting_id, session_id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<StatusCode> {
    let (m, participant_id) = state
        .whip_session(session_id)
        .ok_or(ApiError::NotFound("publishing session"))?;
    if m != meeting_id {
        return Err(ApiError::NotFound("publishing session"));
    }
    if who.participant_in(meeting_id) != Some(participant_id) {
        who.require(&[Role::Moderator])?;
    }
    state.whip_sessions_remove(session_id);
    match state
        .media()
        .execute(MediaCommand::Unpublish {
            meeting_id,
            session_id,
        })
        .await
    {
        Ok(_) | Err(gremium_protocol::MediaPlaneError::NotFound(_)) => Ok(StatusCode::OK),
        Err(e) => Err(e.into()),
    }
}

/// Trickle ICE and ICE restarts are not supported: answers carry every candidate.
pub async fn trickle() -> Response {
    let mut r = ApiError::MethodNotAllowed(
        "trickle ICE is not supported; the answer carries all candidates".into(),
    )
    .into_response();
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("DELETE"));
    r
}
