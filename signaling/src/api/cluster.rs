//! `GET /api/v1/cluster`: the media nodes as the control plane sees them (admin
//! only). The view itself is the binary's: it knows the node registry and the
//! placements; this module owns the trait it implements and the route.

use axum::routing::get;
use axum::{Json, Router};
use gremium_protocol::ClusterStatus;

use crate::auth::{Principal, Role};
use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// Where the cluster's state comes from (the node registry and the placement table),
/// set by the binary with [`AppState::set_cluster_view`]. Without one the process
/// runs alone: `{"mode":"single","nodes":[]}`.
#[async_trait::async_trait]
pub trait ClusterView: Send + Sync {
    /// The cluster now; `Err` says why it cannot be read (e.g. the registry is
    /// unreachable), answered as 503.
    async fn status(&self) -> Result<ClusterStatus, String>;
}

pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/cluster", get(cluster_status))
}

/// The media nodes: registry entries (capacity, load, draining, heartbeat) with the
/// meetings and cost units placed on each (admin). `mode` is `single` for one process
/// with its own media plane.
#[utoipa::path(get, path = "/api/v1/cluster",
    responses((status = 200, body = ClusterStatus), (status = 401), (status = 403),
        (status = 503, description = "the cluster's state cannot be read", body = crate::error::ErrorBody)),
    security(("bearer" = [])), tag = "cluster")]
pub async fn cluster_status(
    state: axum::extract::State<AppState>,
    who: Principal,
) -> ApiResult<Json<ClusterStatus>> {
    who.require(&[Role::Admin])?;
    match state.cluster_view() {
        None => Ok(Json(ClusterStatus {
            mode: "single".into(),
            nodes: Vec::new(),
        })),
        Some(view) => view.status().await.map(Json).map_err(|reason| {
            ApiError::Unavailable(format!("cluster state unavailable: {reason}"))
        }),
    }
}
