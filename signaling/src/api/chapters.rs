//! Agenda chapters: a moderator marks "this agenda item starts now"
//! (`POST /meetings/{id}/chapters`). Each mark is stored with a ledger entry,
//! announced on the meeting channel, shown as an `EXT-X-DATERANGE` in the live
//! playlists (see [`crate::api::live`]) and listed in the manifest of every recording
//! it falls into. Must not: touch media; chapters are metadata only.

use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use gremium_storage::{Chapter, LedgerRecord};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::meetings::{load_meeting, may_view_meeting};
use crate::auth::{Principal, Role};
use crate::error::{ApiError, ApiResult};
use crate::events::EventKind;
use crate::extract::{ApiJson, ApiPath};
use crate::{to_datetime, AppState};

/// Longest chapter title, in characters.
pub const MAX_TITLE_CHARS: usize = 200;

pub(crate) fn router() -> Router<AppState> {
    Router::new().route(
        "/meetings/{id}/chapters",
        post(mark_chapter).get(list_chapters),
    )
}

/// An agenda chapter as the API shows it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChapterView {
    /// Chapter id.
    pub id: Uuid,
    /// Meeting.
    pub meeting_id: Uuid,
    /// Agenda item title.
    pub title: String,
    /// When it was marked.
    pub marked_at: DateTime<Utc>,
}

impl From<&Chapter> for ChapterView {
    fn from(c: &Chapter) -> Self {
        ChapterView {
            id: c.id,
            meeting_id: c.meeting_id,
            title: c.title.clone(),
            marked_at: to_datetime(c.at),
        }
    }
}

/// Body of `POST /meetings/{id}/chapters`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarkChapter {
    /// Agenda item title (1–200 characters, no control characters).
    pub title: String,
}

/// Mark the start of an agenda item now (moderator).
#[utoipa::path(post, path = "/api/v1/meetings/{id}/chapters", params(("id" = Uuid, Path)),
    request_body = MarkChapter,
    responses((status = 201, body = ChapterView), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422)),
    security(("bearer" = [])), tag = "meetings")]
pub async fn mark_chapter(
    state: axum::extract::State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<MarkChapter>,
) -> ApiResult<(StatusCode, Json<ChapterView>)> {
    who.require(&[Role::Moderator])?;
    let title = crate::text::single_line("title", &body.title, MAX_TITLE_CHARS)?;
    load_meeting(&state, id).await?;
    let chapter = Chapter {
        id: Uuid::new_v4(),
        meeting_id: id,
        title: title.to_string(),
        at: state.now_ms(),
        created_by: who.actor(),
    };
    let record = LedgerRecord {
        chain_id: id.to_string(),
        at: chapter.at,
        kind: "chapter_marked".into(),
        actor: who.actor(),
        subject: chapter.id.to_string(),
        data: serde_json::json!({ "title": chapter.title }),
    };
    if !state.db().add_chapter(&chapter, &record).await? {
        return Err(ApiError::Conflict("meeting has ended".into()));
    }
    state.live().chapters_changed(id);
    state.publish(
        id,
        EventKind::ChapterMarked {
            chapter_id: chapter.id,
            title: chapter.title.clone(),
            marked_at: to_datetime(chapter.at),
        },
    );
    Ok((StatusCode::CREATED, Json(ChapterView::from(&chapter))))
}

/// A meeting's chapters in order (moderator, archivist, or a participant of it).
#[utoipa::path(get, path = "/api/v1/meetings/{id}/chapters", params(("id" = Uuid, Path)),
    responses((status = 200, body = Vec<ChapterView>), (status = 401), (status = 403), (status = 404)),
    security(("bearer" = [])), tag = "meetings")]
pub async fn list_chapters(
    state: axum::extract::State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<Vec<ChapterView>>> {
    may_view_meeting(&who, id)?;
    load_meeting(&state, id).await?;
    let chapters = state.db().list_chapters(id).await?;
    Ok(Json(chapters.iter().map(ChapterView::from).collect()))
}
