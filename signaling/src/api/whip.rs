//! WHIP (RFC 9725) ingest: `POST /whip/{meeting_id}` with a participant's join token
//! and an SDP offer; the answer comes back with `201 Created`, the session resource in
//! `Location` and an `ETag`. `DELETE` on the resource leaves. The answer carries all
//! of the media plane's candidates; `PATCH` adds candidates the publisher trickles
//! (`204`), or, with a new `a=ice-ufrag` and `a=ice-pwd`, restarts ICE (RFC 9725
//! §4.4.2): `200` with the media plane's new credentials and candidates as an
//! `application/trickle-ice-sdpfrag` and a new `ETag` for the new ICE session. Media
//! keeps flowing on the same session. SDP is never logged (it holds addresses).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::Router;
use gremium_protocol::{CommandOutcome, Consent, MediaCommand, MeetingContext};
use gremium_storage::{MeetingState, WhipSession};
use tower_http::cors::{Any, CorsLayer};
use uuid::Uuid;

use crate::auth::{Principal, Role};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiPath, ApiQuery};
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
        .route("/publish/{meeting_id}", axum::routing::get(publish_page))
        .route("/whip/{meeting_id}", post(publish))
        .route(
            "/whip/{meeting_id}/{session_id}",
            delete(leave).patch(trickle),
        )
        .layer(cors)
}

/// A minimal page that publishes camera and microphone over WHIP
/// (`/publish/{meeting_id}?token=JOIN_TOKEN`). The page itself is public; publishing
/// needs the join token.
async fn publish_page(ApiPath(_meeting_id): ApiPath<Uuid>) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        include_str!("../../assets/publish.html"),
    )
}

/// Does the request declare `content_type` (parameters ignored)?
fn has_content_type(headers: &HeaderMap, content_type: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(content_type))
}

/// The body as UTF-8 text; too large → 413, unreadable or not UTF-8 → 400.
fn body_text(
    state: &AppState,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<String> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(state.settings().max_body_bytes)
        } else {
            ApiError::BadRequest("unreadable body".into())
        }
    })?;
    String::from_utf8(body.to_vec()).map_err(|_| ApiError::BadRequest("body must be UTF-8".into()))
}

/// Query of `POST /whip/{meeting_id}`.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub struct WhipQuery {
    /// `camera` (default) or `screen`: a screen share is featured by the screen-share
    /// layout.
    pub content: Option<String>,
}

/// Publish into a meeting (participant join token of that meeting).
#[utoipa::path(post, path = "/whip/{meeting_id}", params(("meeting_id" = Uuid, Path), WhipQuery),
    request_body(content = String, content_type = "application/sdp", description = "SDP offer"),
    responses((status = 201, description = "SDP answer; Location names the session", content_type = "application/sdp"),
        (status = 400), (status = 401), (status = 403), (status = 404), (status = 409), (status = 413), (status = 415), (status = 503)),
    security(("bearer" = [])), tag = "whip")]
pub async fn publish(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(meeting_id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<WhipQuery>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<Response> {
    let participant_id = who.participant_in(meeting_id).ok_or_else(|| {
        ApiError::Forbidden("publishing needs a join token for this meeting".into())
    })?;
    let screen_share = match query.content.as_deref() {
        None | Some("camera") => false,
        Some("screen") => true,
        Some(other) => {
            return Err(ApiError::Unprocessable(format!(
                "content: {other:?} is not one of \"camera\", \"screen\""
            )))
        }
    };
    if !has_content_type(&headers, "application/sdp") {
        return Err(ApiError::UnsupportedMediaType(
            "expected content-type application/sdp".into(),
        ));
    }
    let offer = body_text(&state, body)?;
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
            display_name: participant.display_name.clone(),
            consent: Consent {
                recording: participant.consent_recording,
                streaming: participant.consent_streaming,
            },
            context: MeetingContext {
                public: meeting.is_public,
                layout: crate::api::meetings::parse_layout(&meeting.layout),
            },
            screen_share,
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
    state
        .register_whip_session(session_id, meeting_id, participant_id)
        .await?;
    let location = format!("/whip/{meeting_id}/{session_id}");
    let mut response = ice_answer(
        StatusCode::CREATED,
        "application/sdp",
        answer_sdp,
        &etag(session_id, 0),
    )?;
    response.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(&location).map_err(|e| ApiError::Internal(e.to_string()))?,
    );
    Ok(response)
}

/// An answer that carries ICE credentials (the SDP answer to an offer, or the
/// fragment answering an ICE restart), tagged with the ICE session's ETag.
fn ice_answer(
    status: StatusCode,
    content_type: &'static str,
    body: String,
    etag: &str,
) -> ApiResult<Response> {
    let mut response = (status, body).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::ETAG,
        HeaderValue::from_str(etag).map_err(|e| ApiError::Internal(e.to_string()))?,
    );
    Ok(response)
}

/// The ETag of a WHIP session's ICE session after `restarts` ICE restarts.
pub(crate) fn etag(session_id: Uuid, restarts: u32) -> String {
    match restarts {
        0 => format!("\"{session_id}\""),
        n => format!("\"{session_id}.{n}\""),
    }
}

/// Whether `who` may act on publishing session `session_id` of `meeting_id`: the
/// session must exist in that meeting (404 otherwise, also for another meeting's
/// session), and the caller be its publisher or a moderator. The session as stored
/// (by whichever control replica took its POST).
async fn may_control_session(
    state: &AppState,
    who: &Principal,
    meeting_id: Uuid,
    session_id: Uuid,
) -> ApiResult<WhipSession> {
    let session = state
        .db()
        .whip_session(session_id)
        .await?
        .filter(|s| s.meeting_id == meeting_id)
        .ok_or(ApiError::NotFound("publishing session"))?;
    if who.participant_in(meeting_id) != Some(session.participant_id) {
        who.require(&[Role::Moderator])?;
    }
    Ok(session)
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
    may_control_session(&state, &who, meeting_id, session_id).await?;
    state.db().remove_whip_session(session_id).await?;
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

/// What a `application/trickle-ice-sdpfrag` body (RFC 8840) carries.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SdpFrag {
    /// `a=ice-ufrag` (a changed one asks for an ICE restart).
    pub ufrag: Option<String>,
    /// `a=ice-pwd`.
    pub pwd: Option<String>,
    /// `(m-line index, "candidate:…")`, indices counted by `m=` lines in the fragment.
    pub candidates: Vec<(u32, String)>,
    /// `a=end-of-candidates` was present.
    pub end_of_candidates: bool,
}

/// Parse a trickle-ICE SDP fragment; anything but ICE attributes, `m=` and `a=mid`
/// lines is refused.
pub fn parse_sdpfrag(text: &str) -> Result<SdpFrag, String> {
    let mut frag = SdpFrag::default();
    let mut mline: Option<u32> = None;
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with("m=") {
            mline = Some(mline.map_or(0, |m| m + 1));
        } else if let Some(u) = line.strip_prefix("a=ice-ufrag:") {
            frag.ufrag = Some(u.to_string());
        } else if let Some(p) = line.strip_prefix("a=ice-pwd:") {
            frag.pwd = Some(p.to_string());
        } else if let Some(c) = line.strip_prefix("a=candidate:") {
            if c.split_whitespace().count() < 8 {
                return Err("malformed candidate line".into());
            }
            frag.candidates
                .push((mline.unwrap_or(0), format!("candidate:{c}")));
        } else if line == "a=end-of-candidates" {
            frag.end_of_candidates = true;
        } else if line.starts_with("a=mid:")
            || line.starts_with("a=group:")
            || line.starts_with("a=ice-options:")
        {
            // Accepted and not needed: candidates are indexed by m-line order.
        } else {
            return Err("unexpected line in trickle-ice-sdpfrag".into());
        }
    }
    if frag.ufrag.is_none() && frag.candidates.is_empty() && !frag.end_of_candidates {
        return Err("empty trickle-ice-sdpfrag".into());
    }
    Ok(frag)
}

/// Trickle ICE or ICE restart (the publisher or a moderator). `If-Match`, when given,
/// must be `*` or the current ICE session's ETag (412 otherwise). Remote candidates
/// of the current ICE session are added (204). A new `a=ice-ufrag` (with its
/// `a=ice-pwd`) restarts ICE: 200 with the media plane's new `a=ice-ufrag`,
/// `a=ice-pwd` and candidates, and a new `ETag`.
#[utoipa::path(patch, path = "/whip/{meeting_id}/{session_id}", params(("meeting_id" = Uuid, Path), ("session_id" = Uuid, Path)),
    request_body(content = String, content_type = "application/trickle-ice-sdpfrag"),
    responses((status = 200, description = "ICE restarted: the media plane's new ICE credentials and candidates", content_type = "application/trickle-ice-sdpfrag"),
        (status = 204, description = "candidates added"),
        (status = 400), (status = 401), (status = 403), (status = 404), (status = 412), (status = 415)),
    security(("bearer" = [])), tag = "whip")]
pub async fn trickle(
    State(state): State<AppState>,
    who: Principal,
    ApiPath((meeting_id, session_id)): ApiPath<(Uuid, Uuid)>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<Response> {
    let session = may_control_session(&state, &who, meeting_id, session_id).await?;
    if !has_content_type(&headers, "application/trickle-ice-sdpfrag") {
        return Err(ApiError::UnsupportedMediaType(
            "expected content-type application/trickle-ice-sdpfrag".into(),
        ));
    }
    let text = body_text(&state, body)?;
    let frag = parse_sdpfrag(&text).map_err(ApiError::BadRequest)?;
    // A ufrag may restart ICE: from the If-Match check until the new ETag is counted
    // no other PATCH of this session through this replica may restart (RFC 9725: a
    // restart with a stale ETag gets 412); the count itself is a compare-and-swap in
    // the database, so a restart racing through another replica is refused too.
    let _restart = match frag.ufrag {
        Some(_) => Some(state.whip_restart_lock(session_id).lock().await),
        None => None,
    };
    // Read again under the lock: a restart just counted changed the ETag.
    let session = match frag.ufrag {
        Some(_) => state
            .db()
            .whip_session(session_id)
            .await?
            .ok_or(ApiError::NotFound("publishing session"))?,
        None => session,
    };
    if let Some(tag) = headers.get(header::IF_MATCH) {
        let tag = tag.to_str().unwrap_or("").trim();
        if tag != "*" && tag != etag(session_id, session.ice_restarts) {
            return Err(ApiError::PreconditionFailed(
                "If-Match does not match the ICE session's ETag".into(),
            ));
        }
    }
    let command = MediaCommand::AddIceCandidates {
        meeting_id,
        session_id,
        ufrag: frag.ufrag,
        pwd: frag.pwd,
        candidates: frag.candidates,
    };
    match state.media().execute(command).await {
        Ok(CommandOutcome::IceRestarted {
            ufrag,
            pwd,
            candidates,
        }) => {
            let restarts = state
                .db()
                .count_whip_ice_restart(session_id, session.ice_restarts)
                .await?
                .ok_or_else(|| {
                    ApiError::PreconditionFailed(
                        "another ICE restart of this session was counted first".into(),
                    )
                })?;
            let etag = etag(session_id, restarts);
            ice_answer(
                StatusCode::OK,
                "application/trickle-ice-sdpfrag",
                render_sdpfrag(&ufrag, &pwd, &candidates),
                &etag,
            )
        }
        Ok(_) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(gremium_protocol::MediaPlaneError::NotFound(_)) => {
            Err(ApiError::NotFound("publishing session"))
        }
        Err(e) => Err(e.into()),
    }
}

/// An `application/trickle-ice-sdpfrag` with ICE credentials and candidates (all for
/// the bundled transport, so at session level).
pub fn render_sdpfrag(ufrag: &str, pwd: &str, candidates: &[String]) -> String {
    let mut out = format!("a=ice-ufrag:{ufrag}\r\na=ice-pwd:{pwd}\r\n");
    for c in candidates {
        out.push_str(&format!("a={c}\r\n"));
    }
    out.push_str("a=end-of-candidates\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdpfrags_are_parsed_by_mline() {
        let text = "a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\nm=audio 9 RTP/AVP 0\r\na=mid:0\r\n\
                    a=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0\r\n\
                    m=video 9 RTP/AVP 0\r\na=mid:1\r\na=candidate:3 1 udp 1 192.0.2.1 1 typ host\r\na=end-of-candidates\r\n";
        let f = parse_sdpfrag(text).unwrap();
        assert_eq!(f.ufrag.as_deref(), Some("EsAw"));
        assert_eq!(f.pwd.as_deref(), Some("P2uYro0UCOQ4zxjKXaWCBui1"));
        assert_eq!(f.candidates.len(), 2);
        assert_eq!(
            f.candidates[0],
            (
                0,
                "candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0"
                    .into()
            )
        );
        assert_eq!(f.candidates[1].0, 1);
        assert!(f.end_of_candidates);
        let rendered = render_sdpfrag(
            "EsAw",
            "P2uYro0UCOQ4zxjKXaWCBui1",
            &[f.candidates[0].1.clone()],
        );
        let back = parse_sdpfrag(&rendered).unwrap();
        assert_eq!(back.ufrag.as_deref(), Some("EsAw"));
        assert_eq!(back.pwd.as_deref(), Some("P2uYro0UCOQ4zxjKXaWCBui1"));
        assert_eq!(back.candidates, vec![f.candidates[0].clone()]);
        assert!(back.end_of_candidates);
        for bad in ["", "v=0\r\n", "a=candidate:1 2 3\r\n", "hello"] {
            assert!(parse_sdpfrag(bad).is_err(), "{bad:?}");
        }
    }
}
