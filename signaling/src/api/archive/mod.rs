//! The archive: finding past recordings, reading them (decrypted on the fly, with HTTP
//! Range), retention settings and deletion. Every read is appended to the meeting's
//! ledger as an `archive_access` entry.
//!
//! Who may read: admins and archivists everything; viewers and moderators the
//! recordings made entirely while their meeting was public, whatever its flag is now
//! ([`crate::disclosure`]; moderators also see every recording's state). Deleting is
//! for admins and archivists, and for nobody while the meeting is under legal hold;
//! lifting a hold is its own, ledgered step (`POST …/legal-hold/lift`).

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use gremium_protocol::{MediaCommand, MediaPlaneError, OutputState};
use gremium_storage::vault::{manifest_context, media_context, poster_context};
use gremium_storage::{ArchiveQuery, LedgerRecord, Recording, VaultError};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::meetings::load_meeting;
use super::outputs::{ledger, RecordingView};
use crate::auth::{Principal, Role};
use crate::disclosure::{may_read_recording, ArchiveReader};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::AppState;

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

async fn find_recording(state: &AppState, rid: Uuid) -> ApiResult<Recording> {
    state
        .db()
        .get_recording(rid)
        .await?
        .ok_or(ApiError::NotFound("recording"))
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

/// Delete a recording and the objects it was stored in: the data key first
/// (crypto-shredding: every copy is unreadable from then on), then the objects and
/// any spool the media plane still holds.
/// Shared by `DELETE /recordings/{rid}` and the retention job.
pub(crate) async fn delete_recording_now(
    state: &AppState,
    rid: Uuid,
    actor: &str,
    reason: &str,
) -> ApiResult<bool> {
    let r = state
        .db()
        .get_recording(rid)
        .await?
        .ok_or(ApiError::NotFound("recording"))?;
    let now = state.now_ms();
    let shredded = state
        .db()
        .shred_recording(
            rid,
            now,
            reason,
            &LedgerRecord {
                chain_id: r.meeting_id.to_string(),
                at: now,
                kind: "recording_deleted".into(),
                actor: actor.into(),
                subject: rid.to_string(),
                data: serde_json::json!({
                    "reason": reason,
                    "key_destroyed": true,
                    "objects": r.stored.as_ref().map(|s| {
                        let mut o = vec![serde_json::json!({
                            "key": s.media_key, "sha256": s.media_sha256 })];
                        if let (Some(k), Some(h)) = (&s.poster_key, &s.poster_sha256) {
                            o.push(serde_json::json!({ "key": k, "sha256": h }));
                        }
                        o
                    }).unwrap_or_default(),
                }),
            },
        )
        .await?;
    if shredded.held {
        return Err(legal_hold_conflict());
    }
    for key in &shredded.object_keys {
        // The key is gone, so a leftover object is unreadable; still, try to remove it.
        if let Err(e) = state.vault().store().delete(key).await {
            tracing::warn!(recording_id = %rid, error = %e, "object not deleted");
        }
    }
    // A failed recording's encrypted spool is still in the media plane's spool
    // directory: unreadable now, removed too.
    let discard = MediaCommand::DiscardRecording {
        meeting_id: r.meeting_id,
        recording_id: rid,
    };
    if let Err(e) = state.media().execute(discard).await {
        tracing::warn!(recording_id = %rid, error = %e, "spool not removed");
    }
    Ok(!shredded.already)
}

/// While a meeting is under legal hold, nothing of it is deleted, by anyone.
fn legal_hold_conflict() -> ApiError {
    ApiError::Conflict(
        "the meeting is under legal hold: nothing of it can be deleted until the hold is \
         lifted"
            .into(),
    )
}

/// Delete a recording now (admin, archivist); 409 for everyone while its meeting is
/// under legal hold. Repeating it is harmless (204). A
/// running recording must be stopped first (409). A stopped one still `stopping`
/// can be deleted while it waits for room on the spool disk to be finalized (the
/// media plane discards it: it ends `failed`, and the space is freed); while its
/// file is being finished or sealed, 409.
#[utoipa::path(delete, path = "/api/v1/recordings/{rid}", params(("rid" = Uuid, Path)),
    responses((status = 204), (status = 401), (status = 403), (status = 404), (status = 409)),
    security(("bearer" = [])), tag = "archive")]
pub async fn delete_recording(
    state: axum::extract::State<AppState>,
    who: Principal,
    ApiPath(rid): ApiPath<Uuid>,
) -> ApiResult<StatusCode> {
    who.require(&[Role::Archivist])?;
    let r = find_recording(&state, rid).await?;
    // Before anything is discarded; the deletion checks again as it commits.
    if load_meeting(&state, r.meeting_id).await?.legal_hold {
        return Err(legal_hold_conflict());
    }
    match r.state {
        s if s.is_terminal() => {}
        OutputState::Stopping => {
            let discard = MediaCommand::DiscardRecording {
                meeting_id: r.meeting_id,
                recording_id: rid,
            };
            match state.media().execute(discard).await {
                Ok(_) => {}
                Err(MediaPlaneError::Rejected(m)) => return Err(ApiError::Conflict(m)),
                Err(e) => return Err(e.into()),
            }
        }
        _ => {
            return Err(ApiError::Conflict(
                "the recording is running: stop it first".into(),
            ))
        }
    }
    delete_recording_now(&state, rid, &who.actor(), "request").await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Body of `PUT /meetings/{id}/retention`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetRetention {
    /// Days a finished recording is kept (at most the configured maximum).
    pub retention_days: Option<u32>,
    /// While set, nothing of the meeting is deleted by retention.
    pub legal_hold: Option<bool>,
}

/// Retention and legal hold of a meeting (admin, archivist). Sets a hold, never lifts
/// one: `legal_hold: false` on a held meeting is 409 (lifting is
/// `POST /meetings/{id}/legal-hold/lift`).
#[utoipa::path(put, path = "/api/v1/meetings/{id}/retention", params(("id" = Uuid, Path)),
    request_body = SetRetention,
    responses((status = 200, body = crate::api::meetings::MeetingView), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422)),
    security(("bearer" = [])), tag = "archive")]
pub async fn set_retention(
    state: axum::extract::State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<SetRetention>,
) -> ApiResult<impl IntoResponse> {
    who.require(&[Role::Archivist])?;
    let m = load_meeting(&state, id).await?;
    let days = body
        .retention_days
        .map(i64::from)
        .unwrap_or(m.retention_days);
    if days > i64::from(state.settings().max_retention_days) {
        return Err(ApiError::Unprocessable(format!(
            "retention_days: at most {}",
            state.settings().max_retention_days
        )));
    }
    if m.legal_hold && body.legal_hold == Some(false) {
        return Err(ApiError::Conflict(format!(
            "lifting a legal hold is its own step: POST /api/v1/meetings/{id}/legal-hold/lift"
        )));
    }
    let hold = m.legal_hold || body.legal_hold == Some(true);
    let kind = if hold && !m.legal_hold {
        "legal_hold_set"
    } else {
        "retention_changed"
    };
    state
        .db()
        .set_meeting_retention(
            id,
            days,
            // Only what was asked: a hold lifted meanwhile is not set again unasked
            // (the database keeps a hold it has).
            body.legal_hold == Some(true),
            &ledger(
                id,
                state.now_ms(),
                kind,
                &who.actor(),
                id,
                serde_json::json!({ "retention_days": days, "legal_hold": hold }),
            ),
        )
        .await?;
    let m = load_meeting(&state, id).await?;
    Ok(Json(crate::api::meetings::MeetingView::from(&m)))
}

/// Body of `POST /meetings/{id}/legal-hold/lift`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LiftLegalHold {
    /// Why the hold ends (e.g. the proceedings closed); at most 500 characters, no
    /// control characters. Recorded in the ledger.
    pub reason: Option<String>,
}

/// Lift a meeting's legal hold (admin, archivist): its own step, ledgered as
/// `legal_hold_lifted` with the reason. Retention applies again from the next sweep.
/// Lifting a meeting without a hold changes and records nothing (200).
#[utoipa::path(post, path = "/api/v1/meetings/{id}/legal-hold/lift", params(("id" = Uuid, Path)),
    request_body = LiftLegalHold,
    responses((status = 200, body = crate::api::meetings::MeetingView), (status = 401), (status = 403), (status = 404), (status = 422)),
    security(("bearer" = [])), tag = "archive")]
pub async fn lift_legal_hold(
    state: axum::extract::State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<LiftLegalHold>,
) -> ApiResult<Json<crate::api::meetings::MeetingView>> {
    who.require(&[Role::Archivist])?;
    let reason = crate::text::optional_line("reason", body.reason.as_deref(), 500)?;
    state
        .db()
        .lift_legal_hold(
            id,
            &ledger(
                id,
                state.now_ms(),
                "legal_hold_lifted",
                &who.actor(),
                id,
                serde_json::json!({ "reason": reason }),
            ),
        )
        .await
        .map_err(|e| match e {
            gremium_storage::StorageError::NotFound => ApiError::NotFound("meeting"),
            other => other.into(),
        })?;
    let m = load_meeting(&state, id).await?;
    Ok(Json(crate::api::meetings::MeetingView::from(&m)))
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
