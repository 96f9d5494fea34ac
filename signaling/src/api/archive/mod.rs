//! The archive: finding past recordings, reading them (decrypted on the fly, with HTTP
//! Range), retention settings and deletion (the last two in `keeping`). Every read is appended to the meeting's
//! ledger as an `archive_access` entry.
//!
//! Who may read: admins and archivists everything; viewers and moderators the
//! recordings made entirely while their meeting was public, whatever its flag is now
//! ([`crate::disclosure`]; moderators also see every recording's state). Deleting is
//! for admins and archivists, and for nobody while the meeting is under legal hold;
//! lifting a hold is its own, ledgered step (`POST …/legal-hold/lift`).

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use gremium_storage::vault::{manifest_context, media_context, poster_context};
use gremium_storage::{ArchiveQuery, Recording, VaultError};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::output_lifecycle::{find_recording, ledger};
use super::recordings::RecordingView;
use crate::auth::{Principal, Role};
use crate::disclosure::{may_read_recording, ArchiveReader};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiPath, ApiQuery};
use crate::AppState;

mod keeping;

pub(crate) use keeping::delete_recording_now;
pub use keeping::{
    __path_delete_recording, __path_lift_legal_hold, __path_set_retention, delete_recording,
    lift_legal_hold, set_retention, LiftLegalHold, SetRetention,
};

/// Plaintext bytes read from the store per step of a response body.
const WINDOW: u64 = 1024 * 1024;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/archive", get(list_archive))
        .route(
            "/recordings/{rid}",
            get(get_recording).delete(delete_recording),
        )
        .route("/recordings/{rid}/media", get(get_media))
        .route("/recordings/{rid}/poster", get(get_poster))
        .route("/recordings/{rid}/manifest", get(get_manifest))
        .route("/meetings/{id}/retention", put(set_retention))
        .route("/meetings/{id}/legal-hold/lift", post(lift_legal_hold))
}

/// How the archive rule sees `who`.
fn reader(who: &Principal) -> ArchiveReader {
    if who.has_any(&[Role::Archivist]) {
        ArchiveReader::Staff
    } else if who.has_any(&[Role::Viewer, Role::Moderator]) {
        ArchiveReader::Public
    } else {
        ArchiveReader::Nobody
    }
}

/// May `who` read recording `r` (media, poster, manifest; viewers its metadata)?
fn may_read(who: &Principal, r: &Recording) -> ApiResult<()> {
    let reader = reader(who);
    if may_read_recording(reader, r.non_public_parts) {
        Ok(())
    } else if reader == ArchiveReader::Public {
        Err(ApiError::Forbidden(
            "this recording has non-public parts: for archivists and admins only".into(),
        ))
    } else {
        Err(ApiError::Forbidden(
            "recordings are for archive readers".into(),
        ))
    }
}

/// Append an access-log entry; a read is refused when it cannot be logged.
async fn log_access(
    state: &AppState,
    who: &Principal,
    r: &Recording,
    what: &str,
    range: Option<(u64, u64)>,
) -> ApiResult<()> {
    let mut data = serde_json::json!({ "what": what });
    if let Some((a, b)) = range {
        data["range"] = serde_json::json!([a, b]);
    }
    state
        .db()
        .append_ledger(&ledger(
            r.meeting_id,
            state.now_ms(),
            "archive_access",
            &who.actor(),
            r.id,
            data,
        ))
        .await?;
    Ok(())
}

fn vault_error(e: VaultError) -> ApiError {
    match e {
        VaultError::Shredded => ApiError::Gone("the recording was deleted".into()),
        other => ApiError::Internal(other.to_string()),
    }
}

/// Archive listing filters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ArchiveParams {
    /// Recordings started at or after (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Recordings started before (RFC 3339).
    pub to: Option<DateTime<Utc>>,
    /// Text in the meeting title (case-insensitive).
    pub q: Option<String>,
    /// Only public (`true`) or non-public (`false`) meetings.
    pub public: Option<bool>,
    /// Page size, 1–200 (default 50).
    pub limit: Option<i64>,
    /// Items to skip (default 0).
    pub offset: Option<i64>,
}

/// One archive entry.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ArchiveItemView {
    /// The recording.
    pub recording: RecordingView,
    /// Title of its meeting.
    pub meeting_title: String,
    /// Whether the meeting is public now.
    pub meeting_public: bool,
    /// Some part of the recording was made while the meeting was non-public: for
    /// archivists and admins only (viewers never see such an entry).
    pub non_public_parts: bool,
}

/// A page of the archive.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ArchivePage {
    /// Newest first.
    pub items: Vec<ArchiveItemView>,
    /// Offset of the next page, when there may be one.
    pub next_offset: Option<i64>,
}

/// The archive: recordings of past and running meetings, newest first. Viewers and
/// moderators see only recordings made entirely while their meeting was public
/// (`public` is then ignored, `public=false` is 403).
#[utoipa::path(get, path = "/api/v1/archive", params(ArchiveParams),
    responses((status = 200, body = ArchivePage), (status = 400), (status = 401), (status = 403)),
    security(("bearer" = [])), tag = "archive")]
pub async fn list_archive(
    state: axum::extract::State<AppState>,
    who: Principal,
    ApiQuery(p): ApiQuery<ArchiveParams>,
) -> ApiResult<Json<ArchivePage>> {
    who.require(&[Role::Archivist, Role::Viewer, Role::Moderator])?;
    let limit = p.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::BadRequest("limit: 1 to 200".into()));
    }
    let offset = p.offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::BadRequest("offset: not negative".into()));
    }
    let (public, without_non_public_parts) = if who.has_any(&[Role::Archivist]) {
        (p.public, false)
    } else if p.public == Some(false) {
        return Err(ApiError::Forbidden(
            "non-public recordings are for archivists only".into(),
        ));
    } else {
        // What the recording contains decides, not the meeting's flag now.
        (None, true)
    };
    let items = state
        .db()
        .list_archive(&ArchiveQuery {
            from: p.from.map(|t| t.timestamp_millis()),
            to: p.to.map(|t| t.timestamp_millis()),
            text: p.q.filter(|q| !q.trim().is_empty()),
            public,
            without_non_public_parts,
            limit,
            offset,
        })
        .await?;
    let next_offset = (items.len() as i64 == limit).then_some(offset + limit);
    Ok(Json(ArchivePage {
        items: items
            .iter()
            .map(|i| ArchiveItemView {
                recording: RecordingView::from(&i.recording),
                meeting_title: i.meeting_title.clone(),
                meeting_public: i.meeting_public,
                non_public_parts: i.recording.non_public_parts,
            })
            .collect(),
        next_offset,
    }))
}

/// One recording: state, stored media, validation result. Moderators see every
/// recording's state (running a meeting needs it; it holds no content); viewers only
/// recordings without non-public parts. Reading is logged.
#[utoipa::path(get, path = "/api/v1/recordings/{rid}", params(("rid" = Uuid, Path)),
    responses((status = 200, body = RecordingView), (status = 401), (status = 403), (status = 404)),
    security(("bearer" = [])), tag = "recordings")]
pub async fn get_recording(
    state: axum::extract::State<AppState>,
    who: Principal,
    ApiPath(rid): ApiPath<Uuid>,
) -> ApiResult<Json<RecordingView>> {
    let r = find_recording(&state, rid).await?;
    if !who.has_any(&[Role::Moderator]) {
        may_read(&who, &r)?;
    }
    log_access(&state, &who, &r, "metadata", None).await?;
    Ok(Json(RecordingView::from(&r)))
}

/// Parse a single `bytes=` range against `len`. `Ok(None)`: serve everything
/// (no header, several ranges, or syntax we ignore as RFC 9110 allows).
fn parse_range(headers: &HeaderMap, len: u64) -> ApiResult<Option<(u64, u64)>> {
    let Some(value) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        let Ok(n) = b.parse::<u64>() else {
            return Ok(None);
        };
        if n == 0 {
            return Err(ApiError::RangeNotSatisfiable(len));
        }
        (len.saturating_sub(n), len)
    } else {
        let Ok(start) = a.parse::<u64>() else {
            return Ok(None);
        };
        let end = if b.is_empty() {
            len
        } else {
            match b.parse::<u64>() {
                Ok(last) if last >= start => last.saturating_add(1).min(len),
                _ => return Ok(None),
            }
        };
        (start, end)
    };
    if range.0 >= len {
        return Err(ApiError::RangeNotSatisfiable(len));
    }
    Ok(Some(range))
}

/// Serve a sealed object, decrypting window by window.
async fn serve_sealed(
    state: &AppState,
    who: &Principal,
    r: &Recording,
    what: &'static str,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    may_read(who, r)?;
    if r.deleted_at.is_some() {
        return Err(ApiError::Gone("the recording was deleted".into()));
    }
    let stored = r
        .stored
        .as_ref()
        .ok_or_else(|| ApiError::Conflict("the recording is not finalized yet".into()))?;
    let (object_key, context, content_type) = match what {
        "media" => (stored.media_key.clone(), media_context(r.id), "video/mp4"),
        "manifest" => (
            r.manifest
                .as_ref()
                .map(|m| m.key.clone())
                .ok_or(ApiError::NotFound("manifest"))?,
            manifest_context(r.id),
            "application/json",
        ),
        _ => (
            stored
                .poster_key
                .clone()
                .ok_or(ApiError::NotFound("poster"))?,
            poster_context(r.id),
            "image/jpeg",
        ),
    };
    let key = state
        .vault()
        .data_key(state.db(), r.id)
        .await
        .map_err(vault_error)?;
    let object = state
        .vault()
        .open(&key, &context, &object_key)
        .await
        .map_err(vault_error)?;
    let len = object.len();
    let range = parse_range(headers, len)?;
    log_access(state, who, r, what, range).await?;
    let (start, end) = range.unwrap_or((0, len));
    // Read the first window before answering, so a broken object is a 500, not a
    // cut-off 200.
    let first = object
        .read(start..(start + WINDOW).min(end))
        .await
        .map_err(vault_error)?;
    let after_first = start + first.len() as u64;
    let rest =
        futures_util::stream::unfold((object, after_first), move |(object, at)| async move {
            if at >= end {
                return None;
            }
            let next = (at + WINDOW).min(end);
            match object.read(at..next).await {
                Ok(bytes) => Some((Ok::<_, std::io::Error>(bytes), (object, next))),
                Err(e) => {
                    tracing::warn!(error = %e, "archive read failed mid-response");
                    Some((Err(std::io::Error::other(e.to_string())), (object, end)))
                }
            }
        });
    let body = futures_util::StreamExt::chain(
        futures_util::stream::once(async move { Ok::<_, std::io::Error>(first) }),
        rest,
    );
    let mut response = Response::new(Body::from_stream(body));
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    if range.is_some() {
        let v = format!("bytes {start}-{}/{len}", end - 1);
        h.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&v).map_err(|e| ApiError::Internal(e.to_string()))?,
        );
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
    }
    Ok(response)
}

/// The recording's media (`video/mp4`, fragmented MP4), decrypted on the fly.
/// Supports single `Range` requests (206, 416).
#[utoipa::path(get, path = "/api/v1/recordings/{rid}/media", params(("rid" = Uuid, Path)),
    responses((status = 200, content_type = "video/mp4"), (status = 206), (status = 401), (status = 403), (status = 404), (status = 409), (status = 410), (status = 416)),
    security(("bearer" = [])), tag = "archive")]
pub async fn get_media(
    state: axum::extract::State<AppState>,
    who: Principal,
    ApiPath(rid): ApiPath<Uuid>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let r = find_recording(&state, rid).await?;
    serve_sealed(&state, &who, &r, "media", &headers).await
}

/// The recording's poster (`image/jpeg`).
#[utoipa::path(get, path = "/api/v1/recordings/{rid}/poster", params(("rid" = Uuid, Path)),
    responses((status = 200, content_type = "image/jpeg"), (status = 401), (status = 403), (status = 404), (status = 409), (status = 410)),
    security(("bearer" = [])), tag = "archive")]
pub async fn get_poster(
    state: axum::extract::State<AppState>,
    who: Principal,
    ApiPath(rid): ApiPath<Uuid>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let r = find_recording(&state, rid).await?;
    serve_sealed(&state, &who, &r, "poster", &headers).await
}

/// The recording's manifest (`application/json`): meeting, times, streams, who
/// appears when, ledger heads, object hashes.
#[utoipa::path(get, path = "/api/v1/recordings/{rid}/manifest", params(("rid" = Uuid, Path)),
    responses((status = 200, content_type = "application/json"), (status = 401), (status = 403), (status = 404), (status = 409), (status = 410)),
    security(("bearer" = [])), tag = "archive")]
pub async fn get_manifest(
    state: axum::extract::State<AppState>,
    who: Principal,
    ApiPath(rid): ApiPath<Uuid>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let r = find_recording(&state, rid).await?;
    serve_sealed(&state, &who, &r, "manifest", &headers).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(v: &str, len: u64) -> ApiResult<Option<(u64, u64)>> {
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, HeaderValue::from_str(v).unwrap());
        parse_range(&h, len)
    }

    #[test]
    fn ranges_parse_like_rfc_9110() {
        assert_eq!(range("bytes=0-99", 1000).unwrap(), Some((0, 100)));
        assert_eq!(range("bytes=990-2000", 1000).unwrap(), Some((990, 1000)));
        assert_eq!(range("bytes=500-", 1000).unwrap(), Some((500, 1000)));
        assert_eq!(range("bytes=-100", 1000).unwrap(), Some((900, 1000)));
        assert_eq!(range("bytes=-5000", 1000).unwrap(), Some((0, 1000)));
        assert_eq!(range("bytes=0-1,5-6", 1000).unwrap(), None);
        assert_eq!(range("items=0-1", 1000).unwrap(), None);
        assert_eq!(range("bytes=9-3", 1000).unwrap(), None);
        assert!(matches!(
            range("bytes=1000-", 1000),
            Err(ApiError::RangeNotSatisfiable(1000))
        ));
        assert!(matches!(
            range("bytes=-0", 1000),
            Err(ApiError::RangeNotSatisfiable(_))
        ));
    }
}
