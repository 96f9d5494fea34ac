//! Keeping the archive: deleting a recording (crypto-shredding, for the API and the
//! retention job), a meeting's retention and legal hold, and lifting a hold. Each is
//! ledgered. Owns the writes only; must not serve recorded content (the parent
//! module reads and logs access).

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use gremium_protocol::{MediaCommand, MediaPlaneError, OutputState};
use gremium_storage::LedgerRecord;
use serde::Deserialize;
use uuid::Uuid;

use crate::api::meetings::load_meeting;
use crate::api::output_lifecycle::{find_recording, ledger};
use crate::auth::{Principal, Role};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath};
use crate::AppState;

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
    let r = find_recording(state, rid).await?;
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
