//! The supervisor of one destination: a thread that makes an attempt (a [`Branch`]),
//! waits for its outcome, and after a failure waits out the backoff before the next
//! one. What counts as failed, the status and the waits are the pure
//! [`RetryState`]'s; this module carries them out with channels and the clock.
//!
//! Must not: touch the tees or the bin other than through [`Branch`].

use std::collections::BTreeMap;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::branch::Branch;
use super::dest_bin::DestMessage;
use super::retry::{Retry, RetryState};
use super::{redact_text, Ctl, RtmpStatus};

/// Owns one destination: builds branches, watches them, retries.
pub(super) struct Supervisor {
    pub(super) id: String,
    pub(super) location: String,
    pub(super) key: String,
    pub(super) shown: String,
    pub(super) parent: gst::Bin,
    pub(super) video_tee: gst::Element,
    pub(super) audio_tee: gst::Element,
    pub(super) status: watch::Sender<BTreeMap<String, RtmpStatus>>,
    pub(super) ctl_tx: mpsc::Sender<Ctl>,
    pub(super) ctl: mpsc::Receiver<Ctl>,
}

enum Outcome {
    /// The attempt failed; what to report and how long to wait.
    Failed(Retry),
    Stop,
    Ended,
}

impl Supervisor {
    pub(super) fn set(&self, s: RtmpStatus) {
        self.status.send_modify(|m| {
            m.insert(self.id.clone(), s);
        });
    }

    fn redact(&self, text: &str) -> String {
        redact_text(text, &self.location, &self.key)
    }

    pub(super) fn run(self) {
        let mut retry = RetryState::new();
        loop {
            let attempt_no = retry.begin(Instant::now());
            let outcome = match Branch::attach(&self, attempt_no) {
                Ok(branch) => {
                    let outcome = self.watch(&mut retry, attempt_no);
                    if matches!(outcome, Outcome::Stop) {
                        branch.drain(&self.ctl, attempt_no);
                    }
                    branch.detach();
                    outcome
                }
                Err(e) => Outcome::Failed(retry.failed(self.redact(&e.to_string()))),
            };
            let next = match outcome {
                Outcome::Failed(next) => next,
                Outcome::Stop | Outcome::Ended => break,
            };
            if let RtmpStatus::Retrying { last_error, .. } = &next.status {
                tracing::warn!(
                    rtmp = %self.id, location = %self.shown, attempt = next.failures,
                    error = %last_error, "RTMP destination failed, retrying"
                );
            }
            self.set(next.status);
            if self.wait_for_stop(next.after) {
                break;
            }
        }
        tracing::info!(rtmp = %self.id, "RTMP destination stopped");
        self.set(retry.stop().clone());
    }

    /// Wait for the outcome of one attempt.
    fn watch(&self, retry: &mut RetryState, attempt_no: u32) -> Outcome {
        loop {
            let msg = match retry.deadline() {
                None => self.ctl.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(deadline) => self
                    .ctl
                    .recv_timeout(deadline.saturating_duration_since(Instant::now())),
            };
            match msg {
                Ok(Ctl::Live(n)) => {
                    if retry.live(n) {
                        tracing::info!(rtmp = %self.id, location = %self.shown, "RTMP destination live");
                        self.set(RtmpStatus::Live);
                    }
                }
                Ok(Ctl::Branch(n, DestMessage::Error(e))) if n == attempt_no => {
                    return Outcome::Failed(retry.failed(self.redact(&e)));
                }
                Ok(Ctl::Branch(n, DestMessage::Warning(w))) if n == attempt_no => {
                    tracing::warn!(rtmp = %self.id, warning = %self.redact(&w), "RTMP destination");
                }
                Ok(Ctl::Branch(n, DestMessage::Eos)) if n == attempt_no => {
                    return Outcome::Ended;
                }
                Ok(Ctl::Stop) | Err(RecvTimeoutError::Disconnected) => return Outcome::Stop,
                Ok(_) => {} // a report of an earlier attempt
                Err(RecvTimeoutError::Timeout) => {
                    // Woken at the deadline; not yet past it, the wait goes on.
                    if let Some(next) = retry.timed_out(Instant::now()) {
                        return Outcome::Failed(next);
                    }
                }
            }
        }
    }

    /// Sleep `d` unless told to stop; true if told to stop.
    fn wait_for_stop(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        loop {
            match self
                .ctl
                .recv_timeout(until.saturating_duration_since(Instant::now()))
            {
                Ok(Ctl::Stop) | Err(RecvTimeoutError::Disconnected) => return true,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => return false,
            }
        }
    }
}
