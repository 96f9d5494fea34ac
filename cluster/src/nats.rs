//! Connecting to NATS and preparing what the cluster keeps there (the event stream,
//! the registry bucket). Idempotent: every process may call it at start.

use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};

use crate::subjects::Names;
use crate::ClusterError;

/// How long a registry entry lives without a heartbeat.
pub const NODE_TTL: Duration = Duration::from_secs(3);
/// How long after its last heartbeat a media node has ended its meetings itself
/// (self-fencing at `NODE_TTL`, plus a heartbeat, a bounded write and a margin): from
/// then on the control plane treats its meetings as running nowhere.
pub const FENCED_AFTER: Duration = Duration::from_secs(6);
/// How often a media node refreshes its entry.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long media events stay in the stream (for a control replica that was down).
const EVENT_RETENTION: Duration = Duration::from_secs(24 * 3600);
/// Window in which JetStream drops a republished event id.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// A connection to NATS with JetStream, the event stream and the registry bucket.
#[derive(Clone)]
pub struct Nats {
    /// Core NATS (request/reply, fan-out).
    pub client: async_nats::Client,
    /// JetStream context.
    pub jetstream: jetstream::Context,
    /// The node registry.
    pub nodes: kv::Store,
    /// The cluster's names on NATS.
    pub names: Names,
}

impl Nats {
    /// Connect to `url` (`[cluster] nats_url`) and make sure the event stream and the
    /// registry bucket exist. The first connection must succeed (a clear error names
    /// the setting); later outages are ridden out by the client's reconnects.
    pub async fn connect(
        url_with_secret: &str,
        client_name: &str,
        names: Names,
    ) -> Result<Nats, ClusterError> {
        // Shown in errors without the credentials a URL may carry.
        let url = &redact_userinfo(url_with_secret);
        let options = async_nats::ConnectOptions::new()
            .name(client_name)
            .connection_timeout(Duration::from_secs(5))
            // Replies are bounded per command by the caller.
            .request_timeout(None)
            .max_reconnects(None)
            .event_callback(|event| async move {
                match event {
                    async_nats::Event::Disconnected => tracing::warn!("NATS connection lost"),
                    async_nats::Event::Connected => tracing::info!("NATS connected"),
                    other => tracing::debug!(event = %other, "NATS"),
                }
            });
        let client = options.connect(url_with_secret).await.map_err(|e| {
            ClusterError::Connect(format!("cluster.nats_url {url:?}: cannot connect: {e}"))
        })?;
        let jetstream = jetstream::new(client.clone());
        let event_stream = names.event_stream();
        let bucket = names.node_bucket();
        jetstream
            .get_or_create_stream(stream::Config {
                name: event_stream.clone(),
                subjects: vec![names.events_all()],
                max_age: EVENT_RETENTION,
                duplicate_window: DUPLICATE_WINDOW,
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| {
                ClusterError::Connect(format!(
                    "cluster.nats_url {url:?}: event stream {event_stream} (is JetStream enabled?): {e}"
                ))
            })?;
        // The bucket's stream is made here as `create_key_value` would make it:
        // async-nats 0.42 reads an account-info field NATS 2.9 (Debian 12's) does
        // not send before creating a bucket, and fails.
        jetstream
            .get_or_create_stream(stream::Config {
                name: format!("KV_{bucket}"),
                subjects: vec![format!("$KV.{bucket}.>")],
                max_messages_per_subject: 1,
                max_age: NODE_TTL,
                storage: stream::StorageType::Memory,
                allow_rollup: true,
                deny_delete: true,
                allow_direct: true,
                discard: stream::DiscardPolicy::New,
                duplicate_window: NODE_TTL,
                ..Default::default()
            })
            .await
            .map_err(|e| {
                ClusterError::Connect(format!(
                    "cluster.nats_url {url:?}: node registry bucket {bucket}: {e}"
                ))
            })?;
        let nodes = jetstream.get_key_value(&bucket).await.map_err(|e| {
            ClusterError::Connect(format!(
                "cluster.nats_url {url:?}: node registry bucket {bucket}: {e}"
            ))
        })?;
        Ok(Nats {
            client,
            jetstream,
            nodes,
            names,
        })
    }
}

/// `nats://user:pass@host:4222` as `nats://***@host:4222`.
pub fn redact_userinfo(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn credentials_in_the_url_are_not_shown() {
        assert_eq!(
            super::redact_userinfo("nats://gremium:s3cret@nats.example:4222"),
            "nats://***@nats.example:4222"
        );
        assert_eq!(
            super::redact_userinfo("nats://127.0.0.1:4222"),
            "nats://127.0.0.1:4222"
        );
    }
}
