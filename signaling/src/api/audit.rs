//! Audit: verify the hash-chained ledger; read a meeting's ledger entries.

use axum::routing::get;
use axum::{Json, Router};
use gremium_storage::{LedgerEntry, VerifyReport};
use serde::Deserialize;
use uuid::Uuid;

use super::meetings::load_meeting;
use crate::auth::{Principal, Role};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiPath, ApiQuery};
use crate::AppState;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/audit/verify", get(verify))
        .route("/meetings/{id}/ledger", get(meeting_ledger))
}

/// Query of `GET /meetings/{id}/ledger`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LedgerQuery {
    /// Return entries with a sequence number greater than this (default 0).
    pub after: Option<i64>,
    /// Page size, 1–1000 (default 200).
    pub limit: Option<i64>,
}

/// Recompute every ledger chain (admin, archivist). 200 with `intact: false` and the
/// first broken entry when the ledger was tampered with.
#[utoipa::path(get, path = "/api/v1/audit/verify",
    responses((status = 200, description = "verification report", content_type = "application/json"), (status = 401), (status = 403)),
    security(("bearer" = [])), tag = "audit")]
pub async fn verify(
    state: axum::extract::State<AppState>,
    who: Principal,
) -> ApiResult<Json<VerifyReport>> {
    who.require(&[Role::Archivist])?;
    Ok(Json(state.db().verify_ledger().await?))
}

/// Ledger entries of one meeting, oldest first (moderator, archivist).
#[utoipa::path(get, path = "/api/v1/meetings/{id}/ledger", params(("id" = Uuid, Path), LedgerQuery),
    responses((status = 200, description = "ledger entries", content_type = "application/json"), (status = 401), (status = 403), (status = 404)),
    security(("bearer" = [])), tag = "audit")]
pub async fn meeting_ledger(
    state: axum::extract::State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<LedgerQuery>,
) -> ApiResult<Json<Vec<LedgerEntry>>> {
    who.require(&[Role::Moderator, Role::Archivist])?;
    load_meeting(&state, id).await?;
    let limit = q.limit.unwrap_or(200);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::BadRequest("limit: must be 1 to 1000".into()));
    }
    Ok(Json(
        state
            .db()
            .ledger_entries(&id.to_string(), q.after.unwrap_or(0).max(0), limit)
            .await?,
    ))
}
