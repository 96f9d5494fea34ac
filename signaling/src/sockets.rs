//! The open event WebSockets: how many each token holder and each meeting may have,
//! and the handle that closes a revoked participant's sockets.
//!
//! Every socket holds a [`SocketTicket`] from the upgrade request to its end; dropping
//! the ticket (whatever ends the socket) gives its place back, so the counts cannot
//! leak. A ticket is taken *before* the token's standing is read from the database,
//! and a revocation writes the database *before* it signals the tickets, so a socket
//! racing a removal is either refused by the database check or closed by the signal.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use uuid::Uuid;

/// Who holds a socket, for the per-token cap: a join token counts per participant,
/// a staff token per subject (across meetings).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Holder {
    /// A participant's join token.
    Participant(Uuid),
    /// A staff token's subject.
    Staff(String),
}

/// Caps on open sockets (from [`crate::ApiSettings`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketLimits {
    /// Open sockets per holder.
    pub per_holder: usize,
    /// Open sockets per meeting.
    pub per_meeting: usize,
}

/// Why a socket was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CapError {
    /// The holder has `0` sockets open already.
    #[error("too many open event sockets for this token (at most {0}); close one first")]
    Holder(usize),
    /// The meeting has `0` sockets open already.
    #[error("too many open event sockets for this meeting (at most {0}); try again later")]
    Meeting(usize),
}

/// The pure decision: may one more socket open, given what is open now?
pub fn admit(
    limits: SocketLimits,
    holder_open: usize,
    meeting_open: usize,
) -> Result<(), CapError> {
    if holder_open >= limits.per_holder {
        Err(CapError::Holder(limits.per_holder))
    } else if meeting_open >= limits.per_meeting {
        Err(CapError::Meeting(limits.per_meeting))
    } else {
        Ok(())
    }
}

struct Entry {
    meeting: Uuid,
    holder: Holder,
    close: watch::Sender<Option<String>>,
}

#[derive(Default)]
struct Open {
    next: u64,
    /// Most sockets open at once since the heap was last trimmed.
    peak: usize,
    sockets: HashMap<u64, Entry>,
    per_holder: HashMap<Holder, usize>,
    per_meeting: HashMap<Uuid, usize>,
}

fn decrement<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: &K) {
    if let Some(n) = map.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            map.remove(key);
        }
    }
}

/// The process's open event sockets.
#[derive(Default)]
pub struct SocketRegistry {
    open: Arc<Mutex<Open>>,
}

/// A socket's place in the registry; dropping it gives the place back.
pub struct SocketTicket {
    open: Arc<Mutex<Open>>,
    id: u64,
    /// Becomes `Some(reason)` when the socket must close (its token was revoked).
    pub closed: watch::Receiver<Option<String>>,
}

impl Drop for SocketTicket {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = open.sockets.remove(&self.id) {
            decrement(&mut open.per_holder, &e.holder);
            decrement(&mut open.per_meeting, &e.meeting);
        }
        let trim = should_trim(open.peak, open.sockets.len());
        if trim {
            open.peak = open.sockets.len();
        }
        if open.sockets.is_empty() {
            // Give the maps' capacity back after a burst (thousands of sockets).
            *open = Open {
                next: open.next,
                ..Open::default()
            };
        }
        drop(open);
        if trim {
            trim_heap();
        }
    }
}

/// After a burst of sockets has closed, is it time to hand the freed heap back to the
/// OS? When the count has halved from a peak of at least [`TRIM_PEAK`], or reached
/// zero from a peak of at least [`TRIM_PEAK`] / 4.
pub fn should_trim(peak: usize, now_open: usize) -> bool {
    (peak >= TRIM_PEAK && now_open <= peak / 2) || (peak >= TRIM_PEAK / 4 && now_open == 0)
}

/// Peak socket count from which a closing burst trims the heap.
pub const TRIM_PEAK: usize = 256;

/// glibc keeps freed memory in its arenas: measured here, 1,000 closed sockets left
/// ~20 MB resident until `malloc_trim`, which brought the process back to within
/// 0.5 MB of where it started. Other allocators return memory on their own.
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        let run = || {
            // SAFETY: malloc_trim only releases free memory of glibc's allocator; it
            // takes no pointers and is thread-safe.
            unsafe { malloc_trim(0) };
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(run)),
            Err(_) => run(),
        }
    }
}

impl SocketRegistry {
    /// Take a place for a socket of `holder` in `meeting`, or say which cap is full.
    pub fn open(
        &self,
        meeting: Uuid,
        holder: Holder,
        limits: SocketLimits,
    ) -> Result<SocketTicket, CapError> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let holder_open = open.per_holder.get(&holder).copied().unwrap_or(0);
        let meeting_open = open.per_meeting.get(&meeting).copied().unwrap_or(0);
        admit(limits, holder_open, meeting_open)?;
        open.next += 1;
        let id = open.next;
        let (close, closed) = watch::channel(None);
        *open.per_holder.entry(holder.clone()).or_default() += 1;
        *open.per_meeting.entry(meeting).or_default() += 1;
        open.peak = open.peak.max(open.sockets.len() + 1);
        open.sockets.insert(
            id,
            Entry {
                meeting,
                holder,
                close,
            },
        );
        Ok(SocketTicket {
            open: self.open.clone(),
            id,
            closed,
        })
    }

    /// Close the sockets of `meeting` that `which` selects, telling them `reason`;
    /// returns how many were told.
    fn close_where(&self, meeting: Uuid, which: impl Fn(&Holder) -> bool, reason: &str) -> usize {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let mut told = 0;
        for e in open.sockets.values() {
            if e.meeting == meeting && which(&e.holder) {
                e.close.send_replace(Some(reason.to_string()));
                told += 1;
            }
        }
        told
    }

    /// Close a participant's sockets (removed from the meeting).
    pub fn close_participant(&self, meeting: Uuid, participant: Uuid, reason: &str) -> usize {
        self.close_where(meeting, |h| *h == Holder::Participant(participant), reason)
    }

    /// Close every participant socket of a meeting (it ended); staff sockets stay.
    pub fn close_participants(&self, meeting: Uuid, reason: &str) -> usize {
        self.close_where(meeting, |h| matches!(h, Holder::Participant(_)), reason)
    }

    /// Open sockets of a meeting.
    pub fn open_in(&self, meeting: Uuid) -> usize {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.per_meeting.get(&meeting).copied().unwrap_or(0)
    }

    /// Open sockets in the process.
    pub fn open_total(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .sockets
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: SocketLimits = SocketLimits {
        per_holder: 2,
        per_meeting: 3,
    };

    #[test]
    fn caps_count_per_holder_and_per_meeting() {
        assert_eq!(admit(LIMITS, 0, 0), Ok(()));
        assert_eq!(admit(LIMITS, 2, 0), Err(CapError::Holder(2)));
        assert_eq!(admit(LIMITS, 1, 3), Err(CapError::Meeting(3)));
        let r = SocketRegistry::default();
        let (m, other) = (Uuid::new_v4(), Uuid::new_v4());
        let alice = Holder::Participant(Uuid::new_v4());
        let a1 = r.open(m, alice.clone(), LIMITS).unwrap();
        let _a2 = r.open(m, alice.clone(), LIMITS).unwrap();
        assert_eq!(
            r.open(m, alice.clone(), LIMITS).err(),
            Some(CapError::Holder(2))
        );
        assert_eq!(
            r.open(other, alice.clone(), LIMITS).err(),
            Some(CapError::Holder(2)),
            "the holder cap spans meetings"
        );
        let _s = r.open(m, Holder::Staff("mod".into()), LIMITS).unwrap();
        assert_eq!(
            r.open(m, Holder::Staff("other".into()), LIMITS).err(),
            Some(CapError::Meeting(3))
        );
        drop(a1);
        assert!(
            r.open(m, alice, LIMITS).is_ok(),
            "a closed socket gives its place back"
        );
    }

    #[test]
    fn the_heap_is_trimmed_after_bursts_only() {
        assert!(!should_trim(10, 0), "a few sockets are not worth it");
        assert!(should_trim(64, 0));
        assert!(!should_trim(1000, 501));
        assert!(should_trim(1000, 500));
        assert!(!should_trim(255, 100));
    }

    #[test]
    fn revocation_closes_the_right_sockets() {
        let r = SocketRegistry::default();
        let (m, other) = (Uuid::new_v4(), Uuid::new_v4());
        let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
        let big = SocketLimits {
            per_holder: 10,
            per_meeting: 10,
        };
        let a = r.open(m, Holder::Participant(alice), big).unwrap();
        let a_elsewhere = r.open(other, Holder::Participant(alice), big).unwrap();
        let b = r.open(m, Holder::Participant(bob), big).unwrap();
        let staff = r.open(m, Holder::Staff("mod".into()), big).unwrap();
        assert_eq!(r.close_participant(m, alice, "removed"), 1);
        assert_eq!(a.closed.borrow().as_deref(), Some("removed"));
        assert!(a_elsewhere.closed.borrow().is_none());
        assert!(b.closed.borrow().is_none());
        assert_eq!(r.close_participants(m, "ended"), 2);
        assert_eq!(b.closed.borrow().as_deref(), Some("ended"));
        assert!(staff.closed.borrow().is_none(), "staff consoles stay");
        assert_eq!(r.open_total(), 4);
        drop((a, a_elsewhere, b, staff));
        assert_eq!(r.open_total(), 0);
        assert_eq!(r.open_in(m), 0);
    }
}
