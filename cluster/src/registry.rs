//! The node registry as a control replica sees it: a live copy of the KV bucket,
//! kept by a watch, so that placing a meeting or forwarding a command reads memory.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::StreamExt;
use gremium_protocol::NodeInfo;

use crate::nats::{Nats, NODE_TTL};
use crate::node::unix_ms;

/// Registry entries by node id, as last written (expired ones are filtered on read).
#[derive(Clone, Default)]
pub struct Registry {
    entries: Arc<RwLock<HashMap<String, NodeInfo>>>,
}

impl Registry {
    /// Start following the bucket (and keep following across NATS outages).
    pub fn follow(nats: Nats) -> Registry {
        let registry = Registry::default();
        let r = registry.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = r.watch(&nats).await {
                    tracing::warn!(error = %e, "node registry watch ended; restarting");
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        registry
    }

    async fn watch(&self, nats: &Nats) -> Result<(), String> {
        let mut watch = nats
            .nodes
            .watch_with_history(">")
            .await
            .map_err(|e| e.to_string())?;
        while let Some(entry) = watch.next().await {
            let entry = entry.map_err(|e| e.to_string())?;
            let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
            match entry.operation {
                async_nats::jetstream::kv::Operation::Put => {
                    match serde_json::from_slice::<NodeInfo>(&entry.value) {
                        Ok(info) => {
                            entries.insert(entry.key, info);
                        }
                        Err(e) => {
                            tracing::warn!(key = %entry.key, error = %e, "unreadable registry entry")
                        }
                    }
                }
                // A node that left (drained and stopped) is silent since ever.
                _ => {
                    if let Some(info) = entries.get_mut(&entry.key) {
                        info.heartbeat_at_ms = i64::MIN / 2;
                    }
                }
            }
        }
        Ok(())
    }

    /// Nodes whose last heartbeat is younger than the registry's TTL, by node id.
    pub fn live(&self) -> Vec<NodeInfo> {
        self.live_at(unix_ms())
    }

    fn live_at(&self, now_ms: i64) -> Vec<NodeInfo> {
        let ttl = NODE_TTL.as_millis() as i64;
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        let mut live: Vec<NodeInfo> = entries
            .values()
            .filter(|n| now_ms.saturating_sub(n.heartbeat_at_ms) < ttl)
            .cloned()
            .collect();
        live.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        live
    }

    /// The live entry of one node.
    pub fn node(&self, node_id: &str) -> Option<NodeInfo> {
        let ttl = NODE_TTL.as_millis() as i64;
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        entries
            .get(node_id)
            .filter(|n| unix_ms().saturating_sub(n.heartbeat_at_ms) < ttl)
            .cloned()
    }

    /// How long a node has not written its entry; `None` for a node this replica
    /// has not seen (e.g. right after it started).
    pub fn silent_for(&self, node_id: &str) -> Option<Duration> {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        let at = entries.get(node_id)?.heartbeat_at_ms;
        let ms = unix_ms().saturating_sub(at).max(0);
        Some(Duration::from_millis(ms as u64))
    }
}
