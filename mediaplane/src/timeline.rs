//! Who appears in a recording, and when: per participant the media-time ranges in
//! which they were publishing with recording consent. Fed by the media plane at the
//! moments that change it (start, consent changes, publishers leaving, the 250 ms
//! watch that sees media start) and closed at the stop. Pure bookkeeping.

use std::collections::HashMap;

use gremium_protocol::Appearance;
use uuid::Uuid;

/// The appearance timeline of one running recording.
#[derive(Debug)]
pub(crate) struct Timeline {
    start_ns: u64,
    open: HashMap<Uuid, u64>,
    names: HashMap<Uuid, String>,
    ranges: Vec<(Uuid, u64, u64)>,
}

impl Timeline {
    /// A timeline whose media time 0 is the pipeline running time `start_ns`.
    pub(crate) fn new(start_ns: u64) -> Timeline {
        Timeline {
            start_ns,
            open: HashMap::new(),
            names: HashMap::new(),
            ranges: Vec::new(),
        }
    }

    fn media_ms(&self, now_ns: u64) -> u64 {
        now_ns.saturating_sub(self.start_ns) / 1_000_000
    }

    /// `visible` are the participants who appear from running time `now_ns` on: those
    /// not yet open are opened, open ones not in it are closed.
    pub(crate) fn observe(&mut self, now_ns: u64, visible: &[(Uuid, String)]) {
        let t = self.media_ms(now_ns);
        let gone: Vec<Uuid> = self
            .open
            .keys()
            .filter(|id| !visible.iter().any(|(v, _)| v == *id))
            .copied()
            .collect();
        for id in gone {
            if let Some(from) = self.open.remove(&id) {
                self.ranges.push((id, from, t));
            }
        }
        for (id, name) in visible {
            self.names.insert(*id, name.clone());
            self.open.entry(*id).or_insert(t);
        }
    }

    /// Close everything at `now_ns`; per participant (in order of first appearance)
    /// the ranges, empty ones dropped.
    pub(crate) fn finish(mut self, now_ns: u64) -> Vec<Appearance> {
        self.observe(now_ns, &[]);
        let mut out: Vec<Appearance> = Vec::new();
        for (id, from, to) in self.ranges {
            if to <= from {
                continue;
            }
            match out.iter_mut().find(|a| a.participant_id == id) {
                Some(a) => a.ranges_ms.push([from, to]),
                None => out.push(Appearance {
                    participant_id: id,
                    display_name: self.names.get(&id).cloned().unwrap_or_default(),
                    ranges_ms: vec![[from, to]],
                }),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn ranges_follow_presence_and_consent() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let (an, bn) = ((a, "Anna".to_string()), (b, "Bernd".to_string()));
        let mut t = Timeline::new(10_000 * MS);
        t.observe(10_000 * MS, std::slice::from_ref(&an));
        t.observe(11_000 * MS, &[an.clone(), bn.clone()]); // B joins
        t.observe(12_500 * MS, std::slice::from_ref(&bn)); // A withdraws
        t.observe(13_000 * MS, &[an.clone(), bn.clone()]); // A grants again
        let out = t.finish(15_000 * MS);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].display_name, "Anna");
        assert_eq!(out[0].ranges_ms, vec![[0, 2500], [3000, 5000]]);
        assert_eq!(out[1].ranges_ms, vec![[1000, 5000]]);
    }

    #[test]
    fn nobody_and_instant_flickers_leave_no_ranges() {
        let a = Uuid::new_v4();
        let mut t = Timeline::new(0);
        t.observe(5 * MS, &[(a, "A".into())]);
        t.observe(5 * MS, &[]);
        assert!(t.finish(9 * MS).is_empty());
        assert!(Timeline::new(0).finish(1).is_empty());
    }
}
