//! The consent gate: one per participant input and program.
//!
//! A gate sits in front of a compositor or mixer input and drops every buffer while
//! it is closed, so a participant without consent contributes no pixels and no
//! samples. Closing is immediate (an atomic store the streaming thread checks on every
//! buffer); opening waits for the next keyframe (or a short deadline for sources that
//! never mark one), so a program never starts a participant on a broken picture.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CLOSED: u8 = 0;
const OPENING: u8 = 1;
const OPEN: u8 = 2;

/// Shared state of one gate.
#[derive(Debug)]
pub struct Gate {
    state: AtomicU8,
    /// While opening: milliseconds since `epoch` after which the gate opens even
    /// without a keyframe.
    deadline_ms: AtomicU64,
    epoch: Instant,
    passed: AtomicU64,
    dropped: AtomicU64,
}

impl Default for Gate {
    fn default() -> Self {
        Gate {
            state: AtomicU8::new(CLOSED),
            deadline_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            passed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }
}

/// What the gate decided for one buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Let it through.
    Pass,
    /// Drop it.
    Drop,
    /// Let it through; it is the first since the gate opened.
    Opened,
}

impl Gate {
    /// A new, closed gate.
    pub fn new() -> Arc<Gate> {
        Arc::new(Gate::default())
    }

    /// Close at once. Every buffer the streaming thread looks at after this returns
    /// is dropped.
    pub fn close(&self) {
        self.state.store(CLOSED, Ordering::SeqCst);
    }

    /// Start opening: the next keyframe (or anything after `patience`) passes.
    /// No-op when already open.
    pub fn open(&self, patience: Duration) {
        let deadline = self.epoch.elapsed() + patience;
        self.deadline_ms
            .store(deadline.as_millis() as u64, Ordering::SeqCst);
        let _ = self
            .state
            .compare_exchange(CLOSED, OPENING, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// Open now, whatever the next buffer is (audio has no keyframes).
    pub fn open_now(&self) {
        self.state.store(OPEN, Ordering::SeqCst);
    }

    /// Is the gate fully open?
    pub fn is_open(&self) -> bool {
        self.state.load(Ordering::SeqCst) == OPEN
    }

    /// Decide for one buffer (`keyframe`: it does not depend on earlier ones).
    pub fn judge(&self, keyframe: bool) -> Verdict {
        let verdict = match self.state.load(Ordering::SeqCst) {
            OPEN => Verdict::Pass,
            OPENING => {
                let late = self.epoch.elapsed().as_millis() as u64
                    >= self.deadline_ms.load(Ordering::SeqCst);
                if (keyframe || late)
                    && self
                        .state
                        .compare_exchange(OPENING, OPEN, Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok()
                {
                    Verdict::Opened
                } else {
                    Verdict::Drop
                }
            }
            _ => Verdict::Drop,
        };
        match verdict {
            Verdict::Drop => self.dropped.fetch_add(1, Ordering::Relaxed),
            _ => self.passed.fetch_add(1, Ordering::Relaxed),
        };
        verdict
    }

    /// Buffers let through so far.
    pub fn passed(&self) -> u64 {
        self.passed.load(Ordering::Relaxed)
    }

    /// Buffers dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_gate_drops_everything() {
        let g = Gate::new();
        assert_eq!(g.judge(true), Verdict::Drop);
        assert_eq!(g.judge(false), Verdict::Drop);
        assert_eq!((g.passed(), g.dropped()), (0, 2));
    }

    #[test]
    fn opening_waits_for_a_keyframe() {
        let g = Gate::new();
        g.open(Duration::from_secs(60));
        assert_eq!(g.judge(false), Verdict::Drop);
        assert_eq!(g.judge(true), Verdict::Opened);
        assert_eq!(g.judge(false), Verdict::Pass);
        g.close();
        assert_eq!(g.judge(true), Verdict::Drop, "closing is immediate");
    }

    #[test]
    fn opening_gives_up_waiting_after_the_deadline() {
        let g = Gate::new();
        g.open(Duration::ZERO);
        assert_eq!(g.judge(false), Verdict::Opened);
    }

    #[test]
    fn reopening_an_open_gate_keeps_it_open() {
        let g = Gate::new();
        g.open_now();
        g.open(Duration::from_secs(60));
        assert_eq!(g.judge(false), Verdict::Pass);
    }
}
