//! Names on NATS: subjects, the event stream, the registry bucket. Every name is
//! prefixed with the cluster's name (`[cluster] name`, default `gremium`), so that
//! several clusters (or test runs) share one NATS without seeing each other.

use uuid::Uuid;

/// The names of one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    prefix: String,
}

impl Names {
    /// Names of the cluster called `name` (letters, digits, '-' and '_').
    pub fn new(name: &str) -> Names {
        Names {
            prefix: name.to_string(),
        }
    }

    /// JetStream stream holding media events.
    pub fn event_stream(&self) -> String {
        format!(
            "{}_MEDIA_EVENTS",
            self.prefix.to_ascii_uppercase().replace('-', "_")
        )
    }

    /// Durable consumer shared by all control replicas: each event is applied once.
    pub fn event_consumer(&self) -> String {
        format!("{}-control", self.prefix)
    }

    /// Every media event subject.
    pub fn events_all(&self) -> String {
        format!("{}.events.>", self.prefix)
    }

    /// Media events of one meeting.
    pub fn events(&self, meeting_id: Uuid) -> String {
        format!("{}.events.{meeting_id}", self.prefix)
    }

    /// KV bucket of the node registry.
    pub fn node_bucket(&self) -> String {
        format!("{}_nodes", self.prefix.replace('-', "_"))
    }

    /// Commands for one media node (request/reply).
    pub fn node_commands(&self, node_id: &str) -> String {
        format!("{}.node.{node_id}.cmd", self.prefix)
    }

    /// Operator requests for one media node (request/reply: drain on or off).
    pub fn node_admin(&self, node_id: &str) -> String {
        format!("{}.node.{node_id}.admin", self.prefix)
    }

    /// Every WebSocket fan-out subject.
    pub fn ws_all(&self) -> String {
        format!("{}.ws.>", self.prefix)
    }

    /// Serialized WebSocket events of one meeting, for every control replica.
    pub fn ws(&self, meeting_id: Uuid) -> String {
        format!("{}.ws.{meeting_id}", self.prefix)
    }
}

/// The meeting a `….ws.{meeting}` or `….events.{meeting}` subject names.
pub fn meeting_of(subject: &str) -> Option<Uuid> {
    subject.rsplit('.').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_cluster_prefix() {
        let n = Names::new("test-a1");
        let m = Uuid::nil();
        assert_eq!(n.events(m), format!("test-a1.events.{m}"));
        assert_eq!(n.event_stream(), "TEST_A1_MEDIA_EVENTS");
        assert_eq!(n.node_bucket(), "test_a1_nodes");
        assert_eq!(n.node_commands("n1"), "test-a1.node.n1.cmd");
        assert_eq!(n.node_admin("n1"), "test-a1.node.n1.admin");
        assert_eq!(meeting_of(&n.ws(m)), Some(m));
    }
}
