//! Meetings: create, list (keyset pagination), get, end, public/non-public switch,
//! layout; and loading one for the other API modules ([`load_meeting`],
//! [`open_meeting`]). Must not import the output modules (`recordings`, `streams`),
//! which read meetings through here: ending a meeting stops its outputs through
//! [`super::output_lifecycle`] instead.

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use base64::Engine;
use chrono::{DateTime, Utc};
use gremium_protocol::{LayoutKind, LayoutSpec, MediaCommand};
use gremium_storage::{LedgerRecord, Meeting, MeetingState, NewMeeting, OutputKind, StorageError};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::output_lifecycle::stop_output;
use crate::auth::{Principal, Role};
use crate::error::{ApiError, ApiResult};
use crate::events::EventKind;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::{to_datetime, AppState};

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/meetings", post(create_meeting).get(list_meetings))
        .route("/meetings/{id}", get(get_meeting))
        .route("/meetings/{id}/end", post(end_meeting))
        .route("/meetings/{id}/public", put(set_public))
        .route("/meetings/{id}/layout", put(set_layout))
}

/// A meeting as the API shows it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MeetingView {
    /// Meeting id.
    pub id: Uuid,
    /// Title.
    pub title: String,
    /// True while the livestream shows the program; false while it shows the slate.
    pub public: bool,
    /// `open` or `ended`.
    pub state: String,
    /// Days recordings are kept.
    pub retention_days: i64,
    /// Deletion suspended by legal hold.
    pub legal_hold: bool,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// End time, once ended.
    pub ended_at: Option<DateTime<Utc>>,
    /// Layout of the programs.
    pub layout: LayoutSpec,
}

impl From<&Meeting> for MeetingView {
    fn from(m: &Meeting) -> Self {
        MeetingView {
            id: m.id,
            title: m.title.clone(),
            public: m.is_public,
            state: m.state.as_str().into(),
            retention_days: m.retention_days,
            legal_hold: m.legal_hold,
            created_at: to_datetime(m.created_at),
            ended_at: m.ended_at.map(to_datetime),
            layout: parse_layout(&m.layout),
        }
    }
}

/// Body of `POST /meetings`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateMeeting {
    /// Title, 1–200 characters.
    pub title: String,
    /// Start public (livestream shows the program). Default false.
    #[serde(default)]
    pub public: bool,
    /// Retention in days; default from config.
    pub retention_days: Option<u32>,
}

/// Body of `PUT /meetings/{id}/public`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPublic {
    /// True: livestream shows the program. False: slate and silence.
    pub public: bool,
    /// Why (e.g. the agenda item); at most 500 characters. Recorded in the ledger.
    pub reason: Option<String>,
}

/// Body of `PUT /meetings/{id}/layout`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetLayout {
    /// `grid`, `speaker`, `screen_share` or `podium`.
    pub kind: LayoutKind,
    /// Participant shown large in the speaker layout, whoever speaks.
    #[serde(default)]
    pub pinned: Option<Uuid>,
    /// Podium members (podium layout; at most 100). Everyone else is audience: neither
    /// seen nor heard in the programs.
    #[serde(default)]
    pub podium: Vec<Uuid>,
}

/// The stored layout JSON; a damaged value falls back to the grid.
pub(crate) fn parse_layout(json: &str) -> LayoutSpec {
    serde_json::from_str(json).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "stored layout unreadable; using the grid");
        LayoutSpec::default()
    })
}

/// Query of `GET /meetings`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Page size, 1–200 (default 50).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// One page of meetings, newest first.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MeetingPage {
    /// Meetings on this page.
    pub items: Vec<MeetingView>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

fn encode_cursor(m: &Meeting) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{}.{}", m.created_at, m.id))
}

fn decode_cursor(c: &str) -> Result<(i64, Uuid), ApiError> {
    let bad = || ApiError::BadRequest("invalid cursor".into());
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c)
        .map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (at, id) = text.split_once('.').ok_or_else(bad)?;
    Ok((
        at.parse().map_err(|_| bad())?,
        Uuid::parse_str(id).map_err(|_| bad())?,
    ))
}

pub(crate) async fn load_meeting(state: &AppState, id: Uuid) -> ApiResult<Meeting> {
    state
        .db()
        .get_meeting(id)
        .await?
        .ok_or(ApiError::NotFound("meeting"))
}

/// The meeting, if it has not ended (409 once it has): what changing a running
/// meeting or starting an output on it needs.
pub(crate) async fn open_meeting(state: &AppState, id: Uuid) -> ApiResult<Meeting> {
    let meeting = load_meeting(state, id).await?;
    if meeting.state == MeetingState::Ended {
        return Err(ApiError::Conflict("meeting has ended".into()));
    }
    Ok(meeting)
}

/// Staff who run meetings, or a participant of this meeting.
pub(crate) fn may_view_meeting(who: &Principal, id: Uuid) -> ApiResult<()> {
    if who.participant_in(id).is_some() || who.has_any(&[Role::Moderator, Role::Archivist]) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "not a participant or moderator of this meeting".into(),
        ))
    }
}

/// Create a meeting (moderator).
#[utoipa::path(post, path = "/api/v1/meetings", request_body = CreateMeeting,
    responses((status = 201, body = MeetingView), (status = 401), (status = 403), (status = 422)),
    security(("bearer" = [])), tag = "meetings")]
pub async fn create_meeting(
    state: axum::extract::State<AppState>,
    who: Principal,
    ApiJson(body): ApiJson<CreateMeeting>,
) -> ApiResult<impl IntoResponse> {
    who.require(&[Role::Moderator])?;
    let title = crate::text::single_line("title", &body.title, 200)?;
    let retention = body
        .retention_days
        .unwrap_or(state.settings().default_retention_days);
    if retention > state.settings().max_retention_days {
        return Err(ApiError::Unprocessable(format!(
            "retention_days: at most {}",
            state.settings().max_retention_days
        )));
    }
    let now = state.now_ms();
    let id = Uuid::new_v4();
    let actor = who.actor();
    let meeting = state
        .db()
        .insert_meeting(
            &NewMeeting {
                id,
                title: title.to_string(),
                is_public: body.public,
                retention_days: retention.into(),
                created_by: actor.clone(),
                created_at: now,
            },
            &LedgerRecord {
                chain_id: id.to_string(),
                at: now,
                kind: "meeting_created".into(),
                actor,
                subject: id.to_string(),
                data: serde_json::json!({ "public": body.public, "retention_days": retention }),
            },
        )
        .await?;
    let location = format!("/api/v1/meetings/{id}");
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(MeetingView::from(&meeting)),
    ))
}

/// List meetings, newest first (moderator, archivist).
#[utoipa::path(get, path = "/api/v1/meetings", params(ListQuery),
    responses((status = 200, body = MeetingPage), (status = 400), (status = 401), (status = 403)),
    security(("bearer" = [])), tag = "meetings")]
pub async fn list_meetings(
    state: axum::extract::State<AppState>,
    who: Principal,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<MeetingPage>> {
    who.require(&[Role::Moderator, Role::Archivist])?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::BadRequest("limit: must be 1 to 200".into()));
    }
    let before = q.cursor.as_deref().map(decode_cursor).transpose()?;
    let meetings = state
        .db()
        .list_meetings(before, i64::from(limit) + 1)
        .await?;
    let more = meetings.len() > limit as usize;
    let page: Vec<&Meeting> = meetings.iter().take(limit as usize).collect();
    let next_cursor = if more {
        page.last().map(|m| encode_cursor(m))
    } else {
        None
    };
    Ok(Json(MeetingPage {
        items: page.into_iter().map(MeetingView::from).collect(),
        next_cursor,
    }))
}

/// One meeting (moderator, archivist, or a participant of it).
#[utoipa::path(get, path = "/api/v1/meetings/{id}", params(("id" = Uuid, Path)),
    responses((status = 200, body = MeetingView), (status = 400), (status = 401), (status = 403), (status = 404)),
    security(("bearer" = [])), tag = "meetings")]
pub async fn get_meeting(
    state: axum::extract::State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<MeetingView>> {
    may_view_meeting(&who, id)?;
    Ok(Json(MeetingView::from(&load_meeting(&state, id).await?)))
}

/// End a meeting (moderator): stops its recordings and streams, tears down its media.
#[utoipa::path(post, path = "/api/v1/meetings/{id}/end", params(("id" = Uuid, Path)),
    responses((status = 200, body = MeetingView), (status = 401), (status = 403), (status = 404), (status = 409)),
    security(("bearer" = [])), tag = "meetings")]
pub async fn end_meeting(
    state: axum::extract::State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<MeetingView>> {
    who.require(&[Role::Moderator])?;
    let actor = who.actor();
    let now = state.now_ms();
    let ended = state
        .db()
        .end_meeting(
            id,
            now,
            &LedgerRecord {
                chain_id: id.to_string(),
                at: now,
                kind: "meeting_ended".into(),
                actor: actor.clone(),
                subject: id.to_string(),
                data: serde_json::json!({}),
            },
        )
        .await
        .map_err(|e| match e {
            StorageError::NotFound => ApiError::NotFound("meeting"),
            other => other.into(),
        })?
        .ok_or_else(|| ApiError::Conflict("meeting already ended".into()))?;
    // Stop what still runs; each stop is ledgered by the lifecycle. The meeting has
    // ended already, so a failure here is logged, not returned: an output that races
    // to its own end is fine, and the media plane's EndMeeting tears down the rest.
    let mut running: Vec<(OutputKind, Uuid)> = Vec::new();
    for r in state.db().list_recordings(id).await? {
        if !r.state.is_terminal() {
            running.push((OutputKind::Recording, r.id));
        }
    }
    for s in state.db().list_streams(id).await? {
        if !s.state.is_terminal() {
            running.push((OutputKind::Stream, s.id));
        }
    }
    for (kind, oid) in running {
        if let Err(e) = stop_output(&state, kind, oid, id, &actor).await {
            tracing::warn!(error = %e, kind = kind.as_str(), "stopping an output of an ended meeting");
        }
    }
    if let Err(e) = state
        .media()
        .execute(MediaCommand::EndMeeting { meeting_id: id })
        .await
    {
        tracing::warn!(error = %e, "media plane did not end the meeting");
    }
    debug_assert_eq!(ended.state, MeetingState::Ended);
    state.publish(id, EventKind::MeetingEnded);
    // Join tokens now reach only their own consent: close participants' sockets.
    state.revoke_meeting_participants(id).await;
    Ok(Json(MeetingView::from(&ended)))
}

/// Switch the livestream between program and slate (moderator).
#[utoipa::path(put, path = "/api/v1/meetings/{id}/public", params(("id" = Uuid, Path)), request_body = SetPublic,
    responses((status = 200, body = MeetingView), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422)),
    security(("bearer" = [])), tag = "meetings")]
pub async fn set_public(
    state: axum::extract::State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<SetPublic>,
) -> ApiResult<Json<MeetingView>> {
    who.require(&[Role::Moderator])?;
    let reason = crate::text::optional_line("reason", body.reason.as_deref(), 500)?;
    let meeting = open_meeting(&state, id).await?;
    if meeting.is_public == body.public {
        return Ok(Json(MeetingView::from(&meeting)));
    }
    if !body.public {
        // Before the media switch, so no recording ends up with non-public material
        // but without the mark (issue 18, item 2).
        state.db().mark_running_recordings_non_public(id).await?;
    }
    // Switch the media first: going non-public must have taken effect before we answer.
    let outcome = state
        .media()
        .execute(MediaCommand::SetPublic {
            meeting_id: id,
            public: body.public,
        })
        .await?;
    let media_time_ns = outcome.media_time_ns();
    let now = state.now_ms();
    let updated = state
        .db()
        .set_meeting_public(
            id,
            body.public,
            &LedgerRecord {
                chain_id: id.to_string(),
                at: now,
                kind: "public_changed".into(),
                actor: who.actor(),
                subject: id.to_string(),
                data: serde_json::json!({ "public": body.public, "reason": reason, "media_time_ns": media_time_ns }),
            },
        )
        .await?;
    let meeting = match updated {
        Some(m) => {
            state.publish(
                id,
                EventKind::PublicChanged {
                    public: body.public,
                    reason: reason.map(str::to_string),
                },
            );
            m
        }
        None => load_meeting(&state, id).await?, // a concurrent switch got there first
    };
    Ok(Json(MeetingView::from(&meeting)))
}

/// Change the layout of the meeting's programs (moderator). Applies live and is
/// announced on the meeting's WebSocket as `layout_changed`.
#[utoipa::path(put, path = "/api/v1/meetings/{id}/layout", params(("id" = Uuid, Path)), request_body = SetLayout,
    responses((status = 200, body = MeetingView), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422)),
    security(("bearer" = [])), tag = "meetings")]
pub async fn set_layout(
    state: axum::extract::State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<SetLayout>,
) -> ApiResult<Json<MeetingView>> {
    who.require(&[Role::Moderator])?;
    if body.podium.len() > 100 {
        return Err(ApiError::Unprocessable(
            "podium: at most 100 members".into(),
        ));
    }
    open_meeting(&state, id).await?;
    let mut podium: Vec<Uuid> = Vec::with_capacity(body.podium.len());
    for p in body.pinned.iter().chain(body.podium.iter()) {
        let known = state
            .db()
            .get_participant(id, *p)
            .await?
            .is_some_and(|p| p.left_at.is_none());
        if !known {
            return Err(ApiError::Unprocessable(format!(
                "{p} is not a participant of this meeting"
            )));
        }
    }
    for p in body.podium {
        if !podium.contains(&p) {
            podium.push(p);
        }
    }
    let layout = LayoutSpec {
        kind: body.kind,
        pinned: body.pinned,
        podium,
    };
    let json = serde_json::to_string(&layout).map_err(|e| ApiError::Internal(e.to_string()))?;
    // Media first, as for the public switch: a media failure changes nothing stored.
    // A session that starts between the two steps still gets the new layout (the
    // media plane keeps the last commanded layout over what a publish carries).
    state
        .media()
        .execute(MediaCommand::SetLayout {
            meeting_id: id,
            layout: layout.clone(),
        })
        .await?;
    let updated = state
        .db()
        .set_meeting_layout(id, &json)
        .await?
        .ok_or_else(|| ApiError::Conflict("meeting has ended".into()))?;
    state.publish(id, EventKind::LayoutChanged { layout });
    Ok(Json(MeetingView::from(&updated)))
}
