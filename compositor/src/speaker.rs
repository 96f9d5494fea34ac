//! Active speaker detection from audio levels, with hysteresis.
//!
//! Pure: fed levels (dBFS) and the time, it answers who the active speaker is. A
//! challenger takes over only after being the loudest speaker for `hold`, only when
//! louder than the current speaker by `margin_db` (or the current one is silent),
//! and never sooner than `min_dwell` after the previous switch — so coughs, short
//! interjections and two people talking at once do not make the layout flicker.
//! Silence keeps the last speaker.

use std::collections::HashMap;
use std::time::Duration;

use uuid::Uuid;

/// Tuning of the detector.
#[derive(Debug, Clone, Copy)]
pub struct SpeakerSettings {
    /// Smoothed level (dBFS) above which someone counts as speaking.
    pub threshold_db: f32,
    /// How long a challenger must lead before taking over.
    pub hold: Duration,
    /// How much louder than the current speaker a challenger must be.
    pub margin_db: f32,
    /// Shortest time between two switches.
    pub min_dwell: Duration,
    /// Weight of a new sample in the moving average (0..1).
    pub smoothing: f32,
}

impl Default for SpeakerSettings {
    fn default() -> Self {
        SpeakerSettings {
            threshold_db: -45.0,
            hold: Duration::from_millis(700),
            margin_db: 6.0,
            min_dwell: Duration::from_secs(2),
            smoothing: 0.3,
        }
    }
}

/// The detector's state.
#[derive(Debug, Clone)]
pub struct SpeakerDetector {
    settings: SpeakerSettings,
    smoothed: HashMap<Uuid, f32>,
    current: Option<Uuid>,
    switched_at: Option<Duration>,
    challenger: Option<(Uuid, Duration)>,
}

const SILENCE_DB: f32 = -100.0;

impl SpeakerDetector {
    /// A detector with no speaker yet.
    pub fn new(settings: SpeakerSettings) -> SpeakerDetector {
        SpeakerDetector {
            settings,
            smoothed: HashMap::new(),
            current: None,
            switched_at: None,
            challenger: None,
        }
    }

    /// The active speaker.
    pub fn current(&self) -> Option<Uuid> {
        self.current
    }

    /// Forget a participant (they left).
    pub fn remove(&mut self, id: Uuid) {
        self.smoothed.remove(&id);
        if self.current == Some(id) {
            self.current = None;
        }
        if self.challenger.is_some_and(|(c, _)| c == id) {
            self.challenger = None;
        }
    }

    /// Feed one round of levels (dBFS, `None` = no audio) at time `now`. Returns the
    /// new active speaker when it changed.
    pub fn update(&mut self, levels: &[(Uuid, Option<f32>)], now: Duration) -> Option<Uuid> {
        let a = self.settings.smoothing;
        for (id, level) in levels {
            let l = level.unwrap_or(SILENCE_DB).max(SILENCE_DB);
            let s = self.smoothed.entry(*id).or_insert(SILENCE_DB);
            *s = *s * (1.0 - a) + l * a;
        }
        let speaking = |s: f32| s > self.settings.threshold_db;
        let loudest = self
            .smoothed
            .iter()
            .filter(|(_, s)| speaking(**s))
            .max_by(|x, y| x.1.total_cmp(y.1).then(y.0.cmp(x.0)))
            .map(|(id, s)| (*id, *s));
        let Some((candidate, level)) = loudest else {
            self.challenger = None;
            return None;
        };
        let Some(current) = self.current else {
            return self.switch_to(candidate, now);
        };
        if candidate == current {
            self.challenger = None;
            return None;
        }
        let current_level = self.smoothed.get(&current).copied().unwrap_or(SILENCE_DB);
        let beats = !speaking(current_level) || level >= current_level + self.settings.margin_db;
        if !beats {
            self.challenger = None;
            return None;
        }
        let since = match self.challenger {
            Some((c, since)) if c == candidate => since,
            _ => {
                self.challenger = Some((candidate, now));
                now
            }
        };
        let dwelled = self
            .switched_at
            .is_none_or(|t| now.saturating_sub(t) >= self.settings.min_dwell);
        if now.saturating_sub(since) >= self.settings.hold && dwelled {
            return self.switch_to(candidate, now);
        }
        None
    }

    fn switch_to(&mut self, id: Uuid, now: Duration) -> Option<Uuid> {
        self.current = Some(id);
        self.switched_at = Some(now);
        self.challenger = None;
        Some(id)
    }
}

/// Level of interleaved S16 samples in dBFS (RMS); `None` for an empty buffer.
pub fn level_s16(samples: &[i16]) -> Option<f32> {
    if samples.is_empty() {
        return None;
    }
    let sum: f64 = samples.iter().map(|s| f64::from(*s).powi(2)).sum();
    let rms = (sum / samples.len() as f64).sqrt() / 32768.0;
    Some((20.0 * rms.max(1e-5).log10()) as f32)
}

/// Level of interleaved F32 samples in dBFS (RMS); `None` for an empty buffer.
pub fn level_f32(samples: &[f32]) -> Option<f32> {
    if samples.is_empty() {
        return None;
    }
    let sum: f64 = samples.iter().map(|s| f64::from(*s).powi(2)).sum();
    let rms = (sum / samples.len() as f64).sqrt();
    Some((20.0 * rms.max(1e-5).log10()) as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Uuid = Uuid::from_u128(1);
    const B: Uuid = Uuid::from_u128(2);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Run `rounds` rounds of 100 ms with fixed levels; return every change.
    fn run(
        d: &mut SpeakerDetector,
        start: u64,
        rounds: u64,
        a: Option<f32>,
        b: Option<f32>,
    ) -> Vec<(u64, Uuid)> {
        (0..rounds)
            .filter_map(|i| {
                let t = start + i * 100;
                d.update(&[(A, a), (B, b)], ms(t)).map(|id| (t, id))
            })
            .collect()
    }

    #[test]
    fn first_speaker_takes_over_and_silence_keeps_them() {
        let mut d = SpeakerDetector::new(SpeakerSettings::default());
        assert!(run(&mut d, 0, 5, None, None).is_empty());
        let changes = run(&mut d, 500, 10, Some(-20.0), None);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].1, A);
        assert!(run(&mut d, 1500, 50, None, None).is_empty());
        assert_eq!(d.current(), Some(A), "silence keeps the last speaker");
    }

    #[test]
    fn short_interjections_do_not_switch() {
        let mut d = SpeakerDetector::new(SpeakerSettings::default());
        run(&mut d, 0, 30, Some(-20.0), None);
        assert_eq!(d.current(), Some(A));
        // B coughs for 300 ms while A goes quiet.
        let changes = run(&mut d, 3000, 3, Some(-60.0), Some(-15.0));
        assert!(changes.is_empty(), "{changes:?}");
        let changes = run(&mut d, 3300, 20, Some(-20.0), None);
        assert!(changes.is_empty(), "{changes:?}");
        assert_eq!(d.current(), Some(A));
    }

    #[test]
    fn a_sustained_new_speaker_takes_over_once() {
        let mut d = SpeakerDetector::new(SpeakerSettings::default());
        run(&mut d, 0, 30, Some(-20.0), None);
        let changes = run(&mut d, 3000, 30, None, Some(-20.0));
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].1, B);
        let took = changes[0].0 - 3000;
        assert!((700..=1500).contains(&took), "took {took} ms");
    }

    #[test]
    fn two_people_at_similar_levels_do_not_flicker() {
        let mut d = SpeakerDetector::new(SpeakerSettings::default());
        run(&mut d, 0, 10, Some(-20.0), None);
        // Both talk, B slightly louder (less than the margin) and alternating.
        let mut changes = Vec::new();
        for i in 0..100u64 {
            let (a, b) = if i % 4 < 2 {
                (-22.0, -19.0)
            } else {
                (-19.0, -22.0)
            };
            if let Some(c) = d.update(&[(A, Some(a)), (B, Some(b))], ms(1000 + i * 100)) {
                changes.push(c);
            }
        }
        assert!(changes.is_empty(), "{changes:?}");
    }

    #[test]
    fn switches_are_spaced_by_the_dwell_time() {
        let settings = SpeakerSettings {
            hold: ms(100),
            ..SpeakerSettings::default()
        };
        let mut d = SpeakerDetector::new(settings);
        let mut changes = Vec::new();
        for i in 0..200u64 {
            // The loud one alternates every 500 ms.
            let (a, b) = if (i / 5) % 2 == 0 {
                (Some(-15.0), None)
            } else {
                (None, Some(-15.0))
            };
            if let Some(c) = d.update(&[(A, a), (B, b)], ms(i * 100)) {
                changes.push(i * 100);
                let _ = c;
            }
        }
        for w in changes.windows(2) {
            assert!(w[1] - w[0] >= 2000, "{changes:?}");
        }
        assert!(
            changes.len() >= 3,
            "it still follows the conversation: {changes:?}"
        );
    }

    #[test]
    fn levels() {
        assert_eq!(level_s16(&[]), None);
        let full = level_s16(&[i16::MAX, i16::MIN]).unwrap();
        assert!(full.abs() < 0.1, "{full}");
        let quiet = level_f32(&[0.01, -0.01]).unwrap();
        assert!((quiet + 40.0).abs() < 0.1, "{quiet}");
        assert!(level_f32(&[0.0; 8]).unwrap() <= -99.0);
    }
}
