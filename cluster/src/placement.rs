//! Choosing a media node for a meeting (pure).
//!
//! Owns the rule: among the registry's entries that are fresh (heartbeat within the
//! TTL), not draining and in the asked zone, the node with the most spare cost units
//! that has room for the meeting; ties go to the smallest node id, so every control
//! replica picks the same node from the same view. A node's spare is its capacity
//! minus the larger of what it reports in use and what the placement table has
//! reserved on it: a meeting just placed counts before its media starts, and media
//! that costs more than reserved counts too. When no node fits, [`NoRoom`] says why,
//! for the 503 a full cluster answers.
//!
//! Must not: read the registry or the database, or keep time (both are passed in).

use gremium_protocol::NodeStatus;

/// Why no node can take the meeting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoRoom {
    /// No live media node (in the zone, if one was asked).
    #[error("no media node is running{}", in_zone(.zone))]
    NoNodes {
        /// The zone asked for.
        zone: Option<String>,
    },
    /// Every live media node (in the zone) is draining.
    #[error("all {nodes} media nodes{} are draining", in_zone(.zone))]
    AllDraining {
        /// The zone asked for.
        zone: Option<String>,
        /// How many live nodes there are (all draining).
        nodes: usize,
    },
    /// Every live, non-draining node (in the zone) lacks room.
    #[error(
        "the cluster is full{}: a meeting needs {needed} cost units, the most any of \
         {nodes} media nodes has spare is {best_spare}",
        in_zone(.zone)
    )]
    AllFull {
        /// The zone asked for.
        zone: Option<String>,
        /// Nodes that could take meetings but are too full.
        nodes: usize,
        /// Units the meeting needs.
        needed: u32,
        /// The largest spare among those nodes.
        best_spare: u32,
    },
}

fn in_zone(zone: &Option<String>) -> String {
    match zone {
        Some(z) => format!(" in zone {z:?}"),
        None => String::new(),
    }
}

/// Whether the node's heartbeat is at most `ttl_ms` old at `now_ms`. A heartbeat
/// from the future (clocks of two machines apart) counts as fresh: the registry's own
/// TTL removes entries that stop beating.
pub fn is_fresh(node: &NodeStatus, now_ms: i64, ttl_ms: i64) -> bool {
    now_ms.saturating_sub(node.info.heartbeat_at_ms) <= ttl_ms
}

/// Cost units the node can still take: capacity minus the larger of its reported
/// load and the units placed on it (0 when it is over capacity).
pub fn spare_units(node: &NodeStatus) -> u32 {
    node.info.capacity.saturating_sub(used_units(node))
}

/// Whether a meeting costing `cost` units fits on the node without overloading it.
/// A node already over capacity takes nothing, not even a meeting that costs 0.
pub fn has_room(node: &NodeStatus, cost: u32) -> bool {
    used_units(node)
        .checked_add(cost)
        .is_some_and(|total| total <= node.info.capacity)
}

fn used_units(node: &NodeStatus) -> u32 {
    node.info.load_units.max(node.placed_units)
}

/// The node a meeting costing `cost` units goes to (see the module docs), or why
/// there is none. Node ids are unique (they are the registry's keys), which makes the
/// choice independent of the order of `nodes`.
pub fn choose_node<'a>(
    nodes: &'a [NodeStatus],
    zone: Option<&str>,
    cost: u32,
    now_ms: i64,
    ttl_ms: i64,
) -> Result<&'a NodeStatus, NoRoom> {
    let live: Vec<&NodeStatus> = nodes
        .iter()
        .filter(|n| is_fresh(n, now_ms, ttl_ms))
        .filter(|n| zone.is_none_or(|z| n.info.zone.as_deref() == Some(z)))
        .collect();
    let zone = zone.map(str::to_owned);
    if live.is_empty() {
        return Err(NoRoom::NoNodes { zone });
    }
    let open: Vec<&NodeStatus> = live.iter().copied().filter(|n| !n.info.draining).collect();
    if open.is_empty() {
        return Err(NoRoom::AllDraining {
            zone,
            nodes: live.len(),
        });
    }
    // Most spare first, then the smallest node id.
    let best = open
        .iter()
        .copied()
        .filter(|n| has_room(n, cost))
        .min_by(|a, b| {
            spare_units(b)
                .cmp(&spare_units(a))
                .then_with(|| a.info.node_id.cmp(&b.info.node_id))
        });
    best.ok_or_else(|| NoRoom::AllFull {
        zone,
        nodes: open.len(),
        needed: cost,
        best_spare: open.iter().map(|n| spare_units(n)).max().unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use gremium_protocol::NodeInfo;

    const TTL: i64 = 3000;
    const NOW: i64 = 1_000_000;

    fn node(id: &str, capacity: u32, load: u32, placed: u32) -> NodeStatus {
        NodeStatus {
            info: NodeInfo {
                node_id: id.into(),
                version: "test".into(),
                zone: None,
                capacity,
                load_units: load,
                cpu_percent: 0.0,
                meetings: 0,
                address: "127.0.0.1".into(),
                draining: false,
                heartbeat_at_ms: NOW - 500,
            },
            placed_meetings: 0,
            placed_units: placed,
        }
    }

    fn chosen<'a>(
        nodes: &'a [NodeStatus],
        zone: Option<&str>,
        cost: u32,
    ) -> Result<&'a str, NoRoom> {
        choose_node(nodes, zone, cost, NOW, TTL).map(|n| n.info.node_id.as_str())
    }

    #[test]
    fn most_spare_wins_counting_the_larger_of_load_and_placed() {
        let nodes = [
            node("a", 100, 10, 60), // spare 40: placed counts before media starts
            node("b", 100, 50, 0),  // spare 50
            node("c", 100, 30, 30), // spare 70
        ];
        assert_eq!(chosen(&nodes, None, 10), Ok("c"));
        assert_eq!(spare_units(&nodes[0]), 40);
    }

    #[test]
    fn ties_go_to_the_smallest_node_id() {
        let nodes = [node("n2", 100, 0, 0), node("n1", 100, 0, 0)];
        assert_eq!(chosen(&nodes, None, 10), Ok("n1"));
    }

    #[test]
    fn a_node_with_exactly_the_cost_spare_fits() {
        let nodes = [node("a", 100, 0, 60)];
        assert_eq!(chosen(&nodes, None, 40), Ok("a"));
        assert!(matches!(
            chosen(&nodes, None, 41),
            Err(NoRoom::AllFull { .. })
        ));
    }

    #[test]
    fn stale_entries_do_not_count() {
        let mut old = node("old", 1000, 0, 0);
        old.info.heartbeat_at_ms = NOW - TTL - 1;
        let mut edge = node("edge", 100, 0, 0);
        edge.info.heartbeat_at_ms = NOW - TTL;
        assert_eq!(chosen(&[old.clone(), edge], None, 10), Ok("edge"));
        let err = chosen(&[old], None, 10).unwrap_err();
        assert_eq!(err, NoRoom::NoNodes { zone: None });
        assert_eq!(err.to_string(), "no media node is running");
    }

    #[test]
    fn no_nodes_says_so_with_the_zone() {
        assert_eq!(
            chosen(&[], None, 1).unwrap_err().to_string(),
            "no media node is running"
        );
        let mut elsewhere = node("a", 100, 0, 0);
        elsewhere.info.zone = Some("nord".into());
        let err = chosen(&[elsewhere.clone()], Some("süd"), 1).unwrap_err();
        assert_eq!(
            err,
            NoRoom::NoNodes {
                zone: Some("süd".into())
            }
        );
        assert_eq!(err.to_string(), "no media node is running in zone \"süd\"");
        assert_eq!(chosen(&[elsewhere], Some("nord"), 1), Ok("a"));
    }

    #[test]
    fn all_draining_says_so() {
        let mut a = node("a", 100, 0, 0);
        a.info.draining = true;
        let mut b = a.clone();
        b.info.node_id = "b".into();
        let err = chosen(&[a, b], None, 1).unwrap_err();
        assert_eq!(
            err,
            NoRoom::AllDraining {
                zone: None,
                nodes: 2
            }
        );
        assert_eq!(err.to_string(), "all 2 media nodes are draining");
    }

    #[test]
    fn a_draining_node_is_skipped_even_with_the_most_spare() {
        let mut big = node("big", 1000, 0, 0);
        big.info.draining = true;
        assert_eq!(
            chosen(&[big, node("small", 100, 0, 0)], None, 10),
            Ok("small")
        );
    }

    #[test]
    fn all_full_names_the_need_and_the_best_spare() {
        let mut drained = node("d", 1000, 0, 0);
        drained.info.draining = true;
        let nodes = [
            node("a", 100, 90, 0),
            node("b", 100, 0, 75),
            node("c", 50, 80, 0), // overloaded: spare 0, not negative
            drained,
        ];
        let err = chosen(&nodes, None, 30).unwrap_err();
        assert_eq!(
            err,
            NoRoom::AllFull {
                zone: None,
                nodes: 3,
                needed: 30,
                best_spare: 25
            }
        );
        assert_eq!(
            err.to_string(),
            "the cluster is full: a meeting needs 30 cost units, the most any of 3 media \
             nodes has spare is 25"
        );
        let mut zoned = node("z", 100, 90, 0);
        zoned.info.zone = Some("nord".into());
        assert_eq!(
            chosen(&[zoned], Some("nord"), 30).unwrap_err().to_string(),
            "the cluster is full in zone \"nord\": a meeting needs 30 cost units, the most \
             any of 1 media nodes has spare is 10"
        );
    }

    #[test]
    fn an_overloaded_node_takes_nothing_not_even_a_free_meeting() {
        let over = node("a", 100, 120, 0);
        assert_eq!(spare_units(&over), 0);
        assert!(!has_room(&over, 0));
        assert!(has_room(&node("b", 100, 100, 0), 0));
        assert_eq!(
            chosen(&[over.clone(), node("b", 100, 100, 0)], None, 0),
            Ok("b")
        );
        assert!(matches!(
            chosen(&[over], None, 0),
            Err(NoRoom::AllFull { best_spare: 0, .. })
        ));
        assert!(!has_room(&node("c", u32::MAX, 10, 0), u32::MAX));
    }

    #[test]
    fn a_heartbeat_from_the_future_is_fresh() {
        let mut ahead = node("ahead", 100, 0, 0);
        ahead.info.heartbeat_at_ms = NOW + 10_000;
        assert_eq!(chosen(&[ahead], None, 10), Ok("ahead"));
        let mut ancient = node("x", 100, 0, 0);
        ancient.info.heartbeat_at_ms = i64::MIN;
        assert!(!is_fresh(&ancient, i64::MAX, TTL));
    }
}
