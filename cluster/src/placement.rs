//! Choosing a media node for a meeting (pure).
//! TEMPORARY stand-in until the placement helper's version lands.

use gremium_protocol::NodeStatus;

/// Why no node fits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoRoom {
    /// No live node.
    #[error("the cluster is full: no live media node")]
    NoNodes,
    /// All full.
    #[error("the cluster is full: no media node has room for {0} units")]
    Full(u32),
}

/// The live, non-draining node in the zone with the most spare units.
pub fn choose_node<'a>(
    nodes: &'a [NodeStatus],
    zone: Option<&str>,
    cost: u32,
    now_ms: i64,
    ttl_ms: i64,
) -> Result<&'a NodeStatus, NoRoom> {
    let fresh: Vec<&NodeStatus> = nodes
        .iter()
        .filter(|n| now_ms - n.info.heartbeat_at_ms < ttl_ms && !n.info.draining)
        .filter(|n| zone.is_none_or(|z| n.info.zone.as_deref() == Some(z)))
        .collect();
    if fresh.is_empty() {
        return Err(NoRoom::NoNodes);
    }
    fresh
        .into_iter()
        .map(|n| {
            let used = n.info.load_units.max(n.placed_units);
            (n.info.capacity.saturating_sub(used), n)
        })
        .filter(|(spare, _)| *spare >= cost)
        .max_by(|(a, x), (b, y)| a.cmp(b).then(y.info.node_id.cmp(&x.info.node_id)))
        .map(|(_, n)| n)
        .ok_or(NoRoom::Full(cost))
}
