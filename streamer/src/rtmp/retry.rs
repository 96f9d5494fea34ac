//! The retry state of one RTMP destination, without threads, clocks or GStreamer:
//! attempts are numbered, an attempt that is not live by its deadline or that
//! reports an error fails, failures in a row set the [`RtmpStatus`] to `Retrying`
//! and the wait before the next attempt ([`backoff`]: 1, 2, 4, … s, at most
//! [`BACKOFF_MAX`]); an attempt that goes live resets the count. Time is passed in.
//!
//! It never gives up on its own: a destination is retried until it is stopped (the
//! caller removed it or the stream finished) or its server ended the stream — the
//! platform may be down for a while, and the HLS output goes on meanwhile.
//!
//! Must not: build or tear down branches, wait, or log (the supervisor does).

use std::time::{Duration, Instant};

use super::{RtmpStatus, BACKOFF_MAX, BACKOFF_START, LIVE_TIMEOUT};

/// The wait before the next attempt after `failures` failures in a row (at least 1):
/// [`BACKOFF_START`] doubled for each earlier failure, at most [`BACKOFF_MAX`].
pub fn backoff(failures: u32) -> Duration {
    BACKOFF_START
        .saturating_mul(1 << failures.saturating_sub(1).min(16))
        .min(BACKOFF_MAX)
}

/// What the supervisor does after a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    /// The status to report (`Retrying`).
    pub status: RtmpStatus,
    /// Failed attempts in a row, this one included.
    pub failures: u32,
    /// How long to wait (unless stopped) before the next attempt.
    pub after: Duration,
}

/// Retry state of one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryState {
    /// Number of the current attempt (0: none started yet).
    attempt: u32,
    /// Failed attempts in a row.
    failures: u32,
    /// The current attempt went live.
    live: bool,
    /// When the current attempt counts as failed if it is not live by then.
    deadline: Option<Instant>,
    status: RtmpStatus,
}

impl Default for RetryState {
    fn default() -> Self {
        RetryState {
            attempt: 0,
            failures: 0,
            live: false,
            deadline: None,
            status: RtmpStatus::Connecting,
        }
    }
}

impl RetryState {
    /// A destination whose first connection is about to be made (`Connecting`).
    pub fn new() -> RetryState {
        RetryState::default()
    }

    /// The status to report now.
    pub fn status(&self) -> &RtmpStatus {
        &self.status
    }

    /// Failed attempts in a row.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Start the next attempt at `now`; returns its number (1, 2, …). Reports of
    /// other attempts are ignored from here on.
    pub fn begin(&mut self, now: Instant) -> u32 {
        self.attempt += 1;
        self.live = false;
        self.deadline = Some(now + LIVE_TIMEOUT);
        self.attempt
    }

    /// Is `attempt` the current one?
    pub fn is_current(&self, attempt: u32) -> bool {
        self.attempt == attempt && self.status != RtmpStatus::Stopped
    }

    /// When the current attempt fails unless it went live (`None`: it is live, or
    /// none runs).
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline.filter(|_| !self.live)
    }

    /// Media of `attempt` reached the server. True if this made the destination
    /// `Live` (the first report of the current attempt); the failure count starts
    /// again.
    pub fn live(&mut self, attempt: u32) -> bool {
        if !self.is_current(attempt) || self.live {
            return false;
        }
        self.live = true;
        self.failures = 0;
        self.status = RtmpStatus::Live;
        true
    }

    /// The current attempt failed with `error` (already redacted).
    pub fn failed(&mut self, error: String) -> Retry {
        self.failures += 1;
        self.live = false;
        self.deadline = None;
        self.status = RtmpStatus::Retrying {
            attempt: self.failures,
            last_error: error,
        };
        Retry {
            status: self.status.clone(),
            failures: self.failures,
            after: backoff(self.failures),
        }
    }

    /// Nothing was heard of the current attempt until `now`: if it is past the
    /// deadline without going live, it failed.
    pub fn timed_out(&mut self, now: Instant) -> Option<Retry> {
        let deadline = self.deadline()?;
        (now >= deadline)
            .then(|| self.failed(format!("not live after {} s", LIVE_TIMEOUT.as_secs())))
    }

    /// Stopped (removed, the stream finished, or the server ended it): no more
    /// attempts.
    pub fn stop(&mut self) -> &RtmpStatus {
        self.deadline = None;
        self.status = RtmpStatus::Stopped;
        &self.status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn backoff_doubles_from_one_second_up_to_thirty() {
        let waits: Vec<u64> = (1..=8).map(|f| backoff(f).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(backoff(u32::MAX), BACKOFF_MAX, "no overflow");
        assert_eq!(backoff(0), BACKOFF_START);
    }

    #[test]
    fn failures_in_a_row_count_up_and_wait_longer() {
        let t0 = Instant::now();
        let mut r = RetryState::new();
        assert_eq!(*r.status(), RtmpStatus::Connecting);
        for n in 1..=4u32 {
            assert_eq!(r.begin(t0), n);
            let retry = r.failed(format!("refused {n}"));
            assert_eq!(
                retry,
                Retry {
                    status: RtmpStatus::Retrying {
                        attempt: n,
                        last_error: format!("refused {n}"),
                    },
                    failures: n,
                    after: secs(1 << (n - 1)),
                }
            );
            assert_eq!(*r.status(), retry.status);
        }
    }

    #[test]
    fn going_live_resets_the_count() {
        let t0 = Instant::now();
        let mut r = RetryState::new();
        r.begin(t0);
        r.failed("refused".into());
        r.begin(t0);
        r.failed("refused".into());
        let n = r.begin(t0);
        assert!(r.live(n));
        assert_eq!(*r.status(), RtmpStatus::Live);
        assert_eq!(r.failures(), 0);
        assert!(!r.live(n), "live once per attempt");
        // The server goes away: the first failure after being live waits 1 s again.
        let retry = r.failed("reset".into());
        assert_eq!((retry.failures, retry.after), (1, secs(1)));
    }

    #[test]
    fn reports_of_earlier_attempts_are_ignored() {
        let t0 = Instant::now();
        let mut r = RetryState::new();
        let first = r.begin(t0);
        r.failed("refused".into());
        let second = r.begin(t0);
        assert!(!r.is_current(first) && r.is_current(second));
        assert!(!r.live(first), "a late report of attempt 1");
        assert_eq!(r.failures(), 1);
        assert!(r.live(second));
    }

    #[test]
    fn an_attempt_not_live_in_time_fails() {
        let t0 = Instant::now();
        let mut r = RetryState::new();
        r.begin(t0);
        assert_eq!(r.deadline(), Some(t0 + LIVE_TIMEOUT));
        assert_eq!(r.timed_out(t0 + LIVE_TIMEOUT - secs(1)), None, "not yet");
        let retry = r.timed_out(t0 + LIVE_TIMEOUT).expect("failed");
        assert_eq!(
            retry.status,
            RtmpStatus::Retrying {
                attempt: 1,
                last_error: "not live after 15 s".into(),
            }
        );
        assert_eq!(r.deadline(), None, "no attempt runs during the backoff");
    }

    #[test]
    fn a_live_attempt_has_no_deadline() {
        let t0 = Instant::now();
        let mut r = RetryState::new();
        let n = r.begin(t0);
        r.live(n);
        assert_eq!(r.deadline(), None);
        assert_eq!(r.timed_out(t0 + secs(3600)), None);
        // The next attempt gets a deadline of its own.
        let t1 = t0 + secs(100);
        r.failed("reset".into());
        r.begin(t1);
        assert_eq!(r.deadline(), Some(t1 + LIVE_TIMEOUT));
    }

    #[test]
    fn it_retries_until_stopped_and_then_takes_nothing() {
        let t0 = Instant::now();
        let mut r = RetryState::new();
        for _ in 0..100 {
            r.begin(t0);
            r.failed("refused".into());
        }
        assert_eq!(r.failures(), 100, "never gives up on its own");
        let n = r.begin(t0);
        assert_eq!(*r.stop(), RtmpStatus::Stopped);
        assert!(!r.live(n), "nothing after stop");
        assert_eq!(*r.status(), RtmpStatus::Stopped);
        assert_eq!(r.deadline(), None);
    }
}
