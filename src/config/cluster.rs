//! `[cluster]`: NATS, node id, capacity and zone of a process in a cluster.

use anyhow::bail;

use super::schema::ClusterConfig;

/// Validated `[cluster]` settings. `nats_url` is checked when a role needs it.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    pub nats_url: Option<String>,
    pub name: String,
    pub node_id: String,
    pub capacity: u32,
    pub zone: Option<String>,
    pub advertise: Option<String>,
    pub command_timeout: std::time::Duration,
}

pub fn cluster_settings(c: &ClusterConfig) -> anyhow::Result<ClusterSettings> {
    let nats_url = match c.nats_url.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(url) if url.starts_with("nats://") || url.starts_with("tls://") => {
            Some(url.to_string())
        }
        Some(url) if !url.contains("://") => Some(format!("nats://{url}")),
        Some(other) => bail!(
            "cluster.nats_url: {:?} is not a nats:// or tls:// URL",
            gremium_cluster::nats::redact_userinfo(other)
        ),
    };
    let name = c.name.clone().unwrap_or_else(|| "gremium".into());
    if name.is_empty()
        || name.len() > 32
        || !name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
    {
        bail!("cluster.name: {name:?} must be 1-32 letters, digits, '-' or '_' (it prefixes NATS subjects)");
    }
    let node_id = match &c.node_id {
        Some(id) => id.clone(),
        None => default_node_id(),
    };
    if node_id.is_empty()
        || node_id.len() > 64
        || !node_id
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
    {
        bail!("cluster.node_id: {node_id:?} must be 1-64 letters, digits, '-' or '_' (it is part of NATS subjects)");
    }
    let cores = std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1);
    let capacity = c
        .capacity
        .unwrap_or_else(|| gremium_cluster::cost::default_capacity(cores));
    if capacity == 0 {
        bail!("cluster.capacity: must be at least 1");
    }
    let zone = c.zone.clone().filter(|z| !z.trim().is_empty());
    let command_timeout = std::time::Duration::from_secs(c.command_timeout_secs.unwrap_or(15));
    if command_timeout.is_zero() || command_timeout.as_secs() > 300 {
        bail!("cluster.command_timeout_secs: must be between 1 and 300");
    }
    Ok(ClusterSettings {
        nats_url,
        name,
        node_id,
        capacity,
        zone,
        advertise: c.advertise.clone(),
        command_timeout,
    })
}

/// Hostname (letters, digits, '-' kept) and a random suffix.
fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "node".into());
    let host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(40)
        .collect();
    let host = if host.is_empty() { "node".into() } else { host };
    format!("{host}-{:06x}", rand::random::<u32>() & 0xff_ffff)
}
