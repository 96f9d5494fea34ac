//! Who gets a connection slot. The listener asks [`AdmissionTable::admit`] for every
//! accepted socket; the [`Ticket`] it gets back travels with the socket (also into
//! an upgraded WebSocket) and gives the slot back when the socket is dropped.
//!
//! The rules, as a reverse proxy in front would apply them:
//! - at most `max_per_client` connections per peer address (peers listed as trusted
//!   proxies count only against the global cap: all their clients share one address);
//! - at most `max_connections` in all. When that is reached, the oldest connection
//!   that has not sent a request yet (an idle or slow-header client) is evicted to
//!   make room, so a flood of idle sockets cannot lock out health checks and real
//!   clients, which send their request right after connecting. Only when no such
//!   connection exists is the newcomer refused.
//!
//! Pure bookkeeping: no sockets, no clocks; the decision itself is [`decide`].

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// Validated `[connections]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// A connection must deliver a request's complete header within this time (the
    /// first request from accept on, later ones from the end of the previous one).
    pub header_read_timeout: Duration,
    /// A connection on which no byte moves either way for this long is closed
    /// (not after a WebSocket upgrade: those have their own liveness).
    pub idle_timeout: Duration,
    /// Most open client connections in all.
    pub max_connections: usize,
    /// Most open connections from one peer address.
    pub max_per_client: usize,
    /// Peers exempt from `max_per_client` (a reverse proxy's addresses).
    pub trusted_proxies: Vec<IpAddr>,
    /// How long a shutdown waits for open requests before closing them.
    pub shutdown_grace: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            max_per_client: 256,
            trusted_proxies: Vec::new(),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// What happens to a newly accepted connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Below every cap: serve it.
    Admit,
    /// The global cap is reached: evict the oldest connection without a request,
    /// then serve this one.
    AdmitEvicting,
    /// Its address already holds `max_per_client` connections.
    RefuseClient,
    /// The global cap is reached and every connection is busy with a request.
    RefuseFull,
}

/// The admission rule. `open` excludes connections already being evicted;
/// `from_client` counts the peer's open connections.
pub fn decide(
    limits: &ConnectionLimits,
    open: usize,
    from_client: usize,
    trusted: bool,
    any_waiting: bool,
) -> Decision {
    if !trusted && from_client >= limits.max_per_client {
        Decision::RefuseClient
    } else if open < limits.max_connections {
        Decision::Admit
    } else if any_waiting {
        Decision::AdmitEvicting
    } else {
        Decision::RefuseFull
    }
}

/// One connection's shared marks: whether it started a request, whether it is told
/// to go.
#[derive(Debug, Default)]
pub struct Slot {
    started: AtomicBool,
    evicted: AtomicBool,
    /// Wakes the connection's task when it is evicted.
    pub eviction: tokio::sync::Notify,
}

impl Slot {
    /// The connection delivered a complete request header: no longer evictable.
    pub fn mark_started(&self) {
        self.started.store(true, Ordering::Relaxed);
    }

    pub fn started(&self) -> bool {
        self.started.load(Ordering::Relaxed)
    }

    pub fn evicted(&self) -> bool {
        self.evicted.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Default)]
struct Counts {
    /// Open connections, including those being evicted.
    total: usize,
    /// Evicted but not yet closed (their tickets still alive).
    evicting: usize,
    per_client: HashMap<IpAddr, usize>,
    /// Connections that had not started a request when admitted, oldest first.
    /// Entries of ones that started or closed since are skipped lazily.
    waiting: VecDeque<Weak<Slot>>,
}

impl Counts {
    /// Drop stale entries from the front so the queue stays bounded by the
    /// connections that are really waiting (plus those admitted since the oldest).
    fn prune(&mut self) {
        while let Some(front) = self.waiting.front() {
            match front.upgrade() {
                Some(s) if !s.started() && !s.evicted() => break,
                _ => {
                    self.waiting.pop_front();
                }
            }
        }
    }
}

/// Counts of open connections, shared by the accept loop and every ticket.
#[derive(Debug)]
pub struct AdmissionTable {
    limits: ConnectionLimits,
    counts: Mutex<Counts>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Client,
    Full,
}

impl AdmissionTable {
    pub fn new(limits: ConnectionLimits) -> Arc<AdmissionTable> {
        Arc::new(AdmissionTable {
            limits,
            counts: Mutex::new(Counts::default()),
        })
    }

    pub fn limits(&self) -> &ConnectionLimits {
        &self.limits
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        // The critical sections cannot panic half-way; a poisoned lock still holds
        // consistent counts.
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Decide about a connection from `peer`; on admission its ticket.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Ticket, Refusal> {
        let canonical = peer.to_canonical();
        let trusted = self.limits.trusted_proxies.contains(&canonical);
        let peer = client_key(canonical);
        let mut c = self.lock();
        c.prune();
        let from_client = c.per_client.get(&peer).copied().unwrap_or(0);
        let open = c.total - c.evicting;
        match decide(
            &self.limits,
            open,
            from_client,
            trusted,
            !c.waiting.is_empty(),
        ) {
            Decision::RefuseClient => return Err(Refusal::Client),
            Decision::RefuseFull => return Err(Refusal::Full),
            Decision::AdmitEvicting => {
                if let Some(victim) = c.waiting.pop_front().and_then(|w| w.upgrade()) {
                    victim.evicted.store(true, Ordering::Relaxed);
                    victim.eviction.notify_one();
                    c.evicting += 1;
                }
            }
            Decision::Admit => {}
        }
        c.total += 1;
        *c.per_client.entry(peer).or_insert(0) += 1;
        let slot = Arc::new(Slot::default());
        c.waiting.push_back(Arc::downgrade(&slot));
        Ok(Ticket {
            table: self.clone(),
            peer,
            slot,
        })
    }

    /// Open connections (including ones being evicted).
    pub fn open(&self) -> usize {
        self.lock().total
    }
}

/// A connection's slot; dropping it frees the slot.
#[derive(Debug)]
pub struct Ticket {
    table: Arc<AdmissionTable>,
    peer: IpAddr,
    slot: Arc<Slot>,
}

impl Ticket {
    pub fn slot(&self) -> &Arc<Slot> {
        &self.slot
    }

    pub fn limits(&self) -> &ConnectionLimits {
        self.table.limits()
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut c = self.table.lock();
        c.total -= 1;
        if self.slot.evicted() {
            c.evicting -= 1;
        }
        if let Some(n) = c.per_client.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                c.per_client.remove(&self.peer);
            }
        }
    }
}

/// The client a connection counts against: its address, but an IPv6 address by its
/// /64 (one host, or one customer line, usually owns a whole /64 and could otherwise
/// pick a fresh address for every connection).
pub fn client_key(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn ipv6_clients_count_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(other));
        let v4: IpAddr = "127.0.0.7".parse().unwrap();
        assert_eq!(client_key(v4), v4);
    }
    use super::*;

    fn limits(max: usize, per_client: usize) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: max,
            max_per_client: per_client,
            trusted_proxies: vec![IpAddr::from([10, 0, 0, 1])],
            ..Default::default()
        }
    }

    #[test]
    fn the_rule() {
        let l = limits(10, 3);
        assert_eq!(decide(&l, 0, 0, false, false), Decision::Admit);
        assert_eq!(decide(&l, 5, 3, false, true), Decision::RefuseClient);
        assert_eq!(decide(&l, 5, 3, true, true), Decision::Admit);
        assert_eq!(decide(&l, 10, 0, false, true), Decision::AdmitEvicting);
        assert_eq!(decide(&l, 10, 0, false, false), Decision::RefuseFull);
        assert_eq!(decide(&l, 10, 3, false, true), Decision::RefuseClient);
    }

    #[test]
    fn per_client_cap_counts_each_address_and_frees_on_drop() {
        let t = AdmissionTable::new(limits(100, 2));
        let a = IpAddr::from([127, 0, 0, 2]);
        let b = IpAddr::from([127, 0, 0, 3]);
        let one = t.admit(a).unwrap();
        let _two = t.admit(a).unwrap();
        assert_eq!(t.admit(a).unwrap_err(), Refusal::Client);
        let _other = t.admit(b).unwrap();
        // The same address written as IPv4-mapped IPv6 is the same client.
        assert_eq!(
            t.admit("::ffff:127.0.0.2".parse().unwrap()).unwrap_err(),
            Refusal::Client
        );
        drop(one);
        let _again = t.admit(a).unwrap();
        assert_eq!(t.open(), 3);
    }

    #[test]
    fn trusted_proxies_count_only_against_the_global_cap() {
        let t = AdmissionTable::new(limits(4, 1));
        let proxy = IpAddr::from([10, 0, 0, 1]);
        let tickets: Vec<_> = (0..4).map(|_| t.admit(proxy).unwrap()).collect();
        for s in &tickets {
            s.slot().mark_started();
        }
        assert_eq!(t.admit(proxy).unwrap_err(), Refusal::Full);
    }

    #[test]
    fn at_the_cap_the_oldest_connection_without_a_request_is_evicted() {
        let t = AdmissionTable::new(limits(3, 10));
        let ip = IpAddr::from([127, 0, 0, 2]);
        let busy = t.admit(ip).unwrap();
        busy.slot().mark_started();
        let idle1 = t.admit(ip).unwrap();
        let idle2 = t.admit(ip).unwrap();
        let newcomer = t.admit(ip).unwrap();
        assert!(!busy.slot().evicted());
        assert!(idle1.slot().evicted(), "the oldest waiting one goes");
        assert!(!idle2.slot().evicted());
        // Still 4 open until the evicted one's task drops its ticket; it does not
        // count against the cap meanwhile, so the next newcomer evicts idle2.
        assert_eq!(t.open(), 4);
        newcomer.slot().mark_started();
        let _next = t.admit(ip).unwrap();
        assert!(idle2.slot().evicted());
        drop(idle1);
        drop(idle2);
        assert_eq!(t.open(), 3);
        // All three busy: the next one is refused.
        _next.slot().mark_started();
        assert_eq!(t.admit(ip).unwrap_err(), Refusal::Full);
    }

    #[test]
    fn the_waiting_queue_does_not_grow_with_served_connections() {
        let t = AdmissionTable::new(limits(10, 10));
        let ip = IpAddr::from([127, 0, 0, 2]);
        for _ in 0..10_000 {
            let s = t.admit(ip).unwrap();
            s.slot().mark_started();
        }
        assert!(t.lock().waiting.len() <= 1);
        assert_eq!(t.open(), 0);
    }
}
