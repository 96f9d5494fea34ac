//! Waiting for room on the spool disk, and the gate that may discard a recording
//! while it waits.
//!
//! Owns: [`DiscardGate`] (a forward-only phase: waiting → discarded | finalizing) and
//! the wait itself: sealing writes a copy of the spool next to it, so a recording
//! interrupted by a full disk waits until there is room for that copy.
//!
//! Must not: touch the spool (nothing is read or written from it while waiting).

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use uuid::Uuid;

/// Whether a stopped recording may still be discarded instead of finalized: yes while
/// [`finalize`](super::finalize) waits for room on the spool disk (nothing has been read from the
/// spool or written from it yet), no once sealing has begun.
#[derive(Debug, Default)]
pub struct DiscardGate {
    phase: Mutex<Phase>,
    wake: tokio::sync::Notify,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for room; nothing read from the spool yet.
    #[default]
    Waiting,
    /// Discarded while waiting; the spool is left alone.
    Discarded,
    /// Sealing has begun; too late to discard.
    Finalizing,
}

impl DiscardGate {
    /// Discard the recording if its finalization has not begun: `true` if it is (or
    /// already was) discarded — [`finalize`](super::finalize) then leaves the spool alone and returns
    /// [`FinalizeError::Discarded`](super::FinalizeError::Discarded) — `false` if sealing has begun.
    pub fn discard(&self) -> bool {
        let mut phase = self.phase.lock().unwrap_or_else(|p| p.into_inner());
        match *phase {
            Phase::Waiting | Phase::Discarded => {
                *phase = Phase::Discarded;
                self.wake.notify_one();
                true
            }
            Phase::Finalizing => false,
        }
    }

    /// Move on to sealing, unless discarded first.
    pub(super) fn begin(&self) -> bool {
        let mut phase = self.phase.lock().unwrap_or_else(|p| p.into_inner());
        if *phase == Phase::Waiting {
            *phase = Phase::Finalizing;
        }
        *phase == Phase::Finalizing
    }

    fn discarded(&self) -> bool {
        *self.phase.lock().unwrap_or_else(|p| p.into_inner()) == Phase::Discarded
    }
}

/// Sealing writes a copy of the spool next to it. Wait (1 s doubling to 60 s) until
/// the spool's disk has room for it: a recording interrupted because that disk filled
/// up is finalized once space is freed, instead of failing for good. Nothing is lost
/// meanwhile: the spool stays. If the free space cannot be read, go ahead. `false`
/// if `gate` discarded the recording first (at once, not at the next look).
pub(super) async fn wait_for_room(spool: &Path, recording_id: Uuid, gate: &DiscardGate) -> bool {
    let dir = spool.parent().unwrap_or(Path::new("."));
    let mut wait = Duration::from_secs(1);
    loop {
        if gate.discarded() {
            return false;
        }
        let needed = match std::fs::metadata(spool) {
            // The sealed copy is a little larger than the spool; the poster is small.
            Ok(m) => m.len() + m.len() / 50 + 1024 * 1024,
            Err(_) => return gate.begin(),
        };
        match fs4::available_space(dir) {
            Ok(free) if free < needed => {
                tracing::warn!(%recording_id, free, needed, retry_in_s = wait.as_secs(),
                    "no room on the spool disk to finalize the recording; waiting");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = gate.wake.notified() => {}
                }
                wait = (wait * 2).min(Duration::from_secs(60));
            }
            _ => return gate.begin(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{wait_for_room, DiscardGate};
    use std::time::{Duration, Instant};

    /// A spool "larger" than its disk (sparse): finalizing waits for room, and a
    /// discard ends the wait at once, not at the next look.
    #[tokio::test]
    async fn a_recording_waiting_for_room_can_be_discarded_but_not_once_sealing_began() {
        let dir = std::env::temp_dir().join(format!("gremium-gate-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let spool = dir.join("r.spool");
        let free = fs4::available_space(&dir).unwrap();
        std::fs::File::create(&spool)
            .unwrap()
            .set_len(free + (1 << 30))
            .unwrap();
        let gate = std::sync::Arc::new(DiscardGate::default());
        let waiting = {
            let (spool, gate) = (spool.clone(), gate.clone());
            tokio::spawn(async move { wait_for_room(&spool, uuid::Uuid::nil(), &gate).await })
        };
        // Past the first look (it would look again after 1 s, then 2 s).
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert!(!waiting.is_finished(), "it did not wait for room");
        let asked = Instant::now();
        assert!(gate.discard());
        assert!(!waiting.await.unwrap(), "went on after a discard");
        assert!(
            asked.elapsed() < Duration::from_millis(500),
            "{:?}",
            asked.elapsed()
        );
        assert!(gate.discard(), "discarding twice is harmless");
        assert!(!gate.begin());

        // With room, it goes on to sealing, and a discard comes too late.
        std::fs::File::create(&spool)
            .unwrap()
            .set_len(1024)
            .unwrap();
        let gate = DiscardGate::default();
        assert!(wait_for_room(&spool, uuid::Uuid::nil(), &gate).await);
        assert!(!gate.discard());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
