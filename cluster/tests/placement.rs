//! Properties of `choose_node` over random registries: the chosen node has room, is
//! fresh, not draining and in the zone; no eligible node has strictly more spare; the
//! choice does not depend on the order of the entries; and `NoRoom` comes only when
//! no eligible node has room, with the reason that matches the registry.

use gremium_cluster::placement::{choose_node, is_fresh, spare_units, NoRoom};

/// The meaning of "fits", written out here rather than taken from the crate.
fn fits(n: &NodeStatus, cost: u32) -> bool {
    u64::from(n.info.load_units.max(n.placed_units)) + u64::from(cost) <= u64::from(n.info.capacity)
}
use gremium_protocol::{NodeInfo, NodeStatus};
use proptest::prelude::*;

const NOW: i64 = 10_000_000;
const TTL: i64 = 3_000;
const ZONES: [&str; 2] = ["nord", "süd"];

fn node(
    id: usize,
    zone: Option<usize>,
    (capacity, load, placed): (u32, u32, u32),
    draining: bool,
    age_ms: i64,
) -> NodeStatus {
    NodeStatus {
        info: NodeInfo {
            node_id: format!("node-{id}"),
            version: "test".into(),
            zone: zone.map(|z| ZONES[z].to_string()),
            capacity,
            load_units: load,
            cpu_percent: 0.0,
            meetings: 0,
            address: "127.0.0.1".into(),
            draining,
            heartbeat_at_ms: NOW - age_ms,
        },
        placed_meetings: 0,
        placed_units: placed,
    }
}

/// Registries of up to 8 nodes with unique ids, small numbers (so that ties in
/// spare are frequent), ages around the TTL, some draining, some zoned.
fn registry() -> impl Strategy<Value = Vec<NodeStatus>> {
    prop::collection::vec(
        (
            prop::option::of(0..ZONES.len()),
            (0u32..12, 0u32..14, 0u32..14).prop_map(|(c, l, p)| (c * 10, l * 10, p * 10)),
            prop::bool::weighted(0.25),
            prop_oneof![0i64..=TTL, (TTL - 2)..=(TTL + 2), (TTL + 1)..(10 * TTL)],
        ),
        0..8,
    )
    .prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (zone, units, draining, age))| node(i, zone, units, draining, age))
            .collect()
    })
}

fn zone() -> impl Strategy<Value = Option<&'static str>> {
    prop::option::of(prop::sample::select(ZONES.to_vec()))
}

fn in_zone(n: &NodeStatus, zone: Option<&str>) -> bool {
    zone.is_none_or(|z| n.info.zone.as_deref() == Some(z))
}

fn eligible(n: &NodeStatus, zone: Option<&str>) -> bool {
    is_fresh(n, NOW, TTL) && !n.info.draining && in_zone(n, zone)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn the_choice_is_eligible_has_room_and_the_most_spare(
        nodes in registry(),
        zone in zone(),
        cost in 0u32..130,
    ) {
        match choose_node(&nodes, zone, cost, NOW, TTL) {
            Ok(chosen) => {
                prop_assert!(NOW - chosen.info.heartbeat_at_ms <= TTL, "fresh");
                prop_assert!(!chosen.info.draining, "not draining");
                prop_assert!(in_zone(chosen, zone), "in the zone");
                let spare = spare_units(chosen);
                prop_assert!(spare >= cost, "has room");
                prop_assert!(fits(chosen, cost), "would not overload");
                for n in nodes.iter().filter(|n| eligible(n, zone)) {
                    prop_assert!(
                        spare_units(n) <= spare,
                        "{} has more spare than the chosen {}",
                        n.info.node_id,
                        chosen.info.node_id
                    );
                    // An overloaded node (spare 0) may tie with a full one that fits.
                    if spare_units(n) == spare && fits(n, cost) {
                        prop_assert!(chosen.info.node_id <= n.info.node_id, "ties by node id");
                    }
                }
            }
            Err(no_room) => {
                prop_assert!(
                    !nodes.iter().any(|n| eligible(n, zone) && fits(n, cost)),
                    "NoRoom ({no_room}) while a node fits"
                );
                let live: Vec<_> = nodes
                    .iter()
                    .filter(|n| is_fresh(n, NOW, TTL) && in_zone(n, zone))
                    .collect();
                let open: Vec<_> = live.iter().filter(|n| !n.info.draining).collect();
                let zone = zone.map(str::to_owned);
                let expected = if live.is_empty() {
                    NoRoom::NoNodes { zone }
                } else if open.is_empty() {
                    NoRoom::AllDraining { zone, nodes: live.len() }
                } else {
                    NoRoom::AllFull {
                        zone,
                        nodes: open.len(),
                        needed: cost,
                        best_spare: open.iter().map(|n| spare_units(n)).max().unwrap_or(0),
                    }
                };
                prop_assert_eq!(no_room, expected);
            }
        }
    }

    #[test]
    fn the_choice_does_not_depend_on_the_order_of_entries(
        (nodes, shuffled) in registry().prop_flat_map(|v| {
            let original = v.clone();
            (Just(original), Just(v).prop_shuffle())
        }),
        zone in zone(),
        cost in 0u32..130,
    ) {
        let a = choose_node(&nodes, zone, cost, NOW, TTL);
        let b = choose_node(&shuffled, zone, cost, NOW, TTL);
        prop_assert_eq!(a, b);
    }
}
