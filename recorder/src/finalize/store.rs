//! Handing sealed objects to the object store.
//!
//! Owns: the object keys of a recording's media and poster, and uploading with
//! retries while the store is unavailable.
//!
//! Must not: seal, delete local files or decide when to give up on an available
//! store that refuses (that fails the recording at once).

use std::path::Path;

use gremium_vault::{ObjectError, ObjectStore};
use uuid::Uuid;

/// Object key of a recording's media.
pub fn media_object_key(recording_id: Uuid) -> String {
    format!("recordings/{recording_id}/media.mp4.sealed")
}

/// Object key of a recording's poster.
pub fn poster_object_key(recording_id: Uuid) -> String {
    format!("recordings/{recording_id}/poster.jpg.sealed")
}

/// Store `path` under `key`, retrying an unavailable store with backoff (1 s doubling
/// to 30 s) until it succeeds: the sealed file waits in the spool directory, so an
/// object-store outage delays a recording but loses nothing. Other errors fail at once.
pub async fn put_with_retry(
    store: &dyn ObjectStore,
    key: &str,
    path: &Path,
) -> Result<(), ObjectError> {
    let mut wait = std::time::Duration::from_secs(1);
    loop {
        match store.put_file(key, path).await {
            Err(ObjectError::Unavailable(e)) => {
                tracing::warn!(key, error = %e, retry_in_s = wait.as_secs(), "upload failed; will retry");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(std::time::Duration::from_secs(30));
            }
            other => return other,
        }
    }
}
