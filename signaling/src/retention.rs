//! The retention job: deletes recordings whose retention has passed (objects and data
//! keys), each with a `recording_deleted` ledger entry. Meetings on legal hold are
//! skipped. The time is passed in, so tests need not wait for days.

use std::time::Duration;

use uuid::Uuid;

use crate::api::archive::delete_recording_now;
use crate::AppState;

/// Delete every recording expired at `now_ms`; returns the deleted ids. A recording
/// that fails to delete is logged and retried on the next sweep.
pub async fn sweep(state: &AppState, now_ms: i64) -> Vec<Uuid> {
    let expired = match state.db().expired_recordings(now_ms).await {
        Ok(ids) => ids,
        Err(e) => {
            tracing::warn!(error = %e, "retention sweep: listing failed");
            return Vec::new();
        }
    };
    let mut deleted = Vec::new();
    for rid in expired {
        match delete_recording_now(state, rid, "system:retention", "retention").await {
            Ok(true) => deleted.push(rid),
            Ok(false) => {}
            Err(e) => tracing::warn!(recording_id = %rid, error = %e, "retention: not deleted"),
        }
    }
    if !deleted.is_empty() {
        tracing::info!(count = deleted.len(), "retention: recordings deleted");
    }
    deleted
}

/// Sweep every `every` with the state's clock, forever.
pub async fn run(state: AppState, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        sweep(&state, state.now_ms()).await;
    }
}
