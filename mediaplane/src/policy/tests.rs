//! Property tests of the policy: random sequences of commands checked after every
//! step against a reference model written from the rules (scans of the command
//! history, not the implementation's memo), equal-time commands in any order, and the
//! publisher watch's observations in any order. (The rules one by one are unit tests
//! next to the code: `consent.rs`, `watch.rs`, and the truth tables in `mod.rs`.)

use gremium_protocol::{Audience, Consent, LayoutKind, LayoutSpec, MeetingContext};
use proptest::prelude::*;
use uuid::Uuid;

use super::*;

const AUDIENCES: [Audience; 2] = [Audience::Recording, Audience::Streaming];

/// Participants of the property tests: a small pool, so ops collide often.
const POOL: u8 = 5;

fn id(n: u8) -> Uuid {
    Uuid::from_u128(u128::from(n) + 1)
}

fn name(n: u8) -> String {
    format!("P{n}")
}

fn consent(recording: bool, streaming: bool) -> Consent {
    Consent {
        recording,
        streaming,
    }
}

fn settings(slate_recording: bool, broadcast_delay: bool) -> PolicySettings {
    PolicySettings {
        slate_recording,
        broadcast_delay,
        ..PolicySettings::default()
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Op {
    /// A publish carrying this consent, answered (carried consent, then join).
    Join(u8, Consent),
    Leave(u8),
    Command(u8, Consent),
    Public(bool),
    Layout(LayoutSpec),
    Context(bool, LayoutSpec),
}

fn apply(policy: &mut MeetingPolicy, op: &Op) {
    match op {
        Op::Join(p, c) => {
            policy.carried_consent(id(*p), *c);
            policy.join(id(*p), &name(*p));
        }
        Op::Leave(p) => policy.leave(id(*p)),
        Op::Command(p, c) => policy.command_consent(id(*p), *c),
        Op::Public(public) => policy.set_public(*public),
        Op::Layout(l) => policy.set_layout(l.clone()),
        Op::Context(public, l) => policy.learn_context(&MeetingContext {
            public: *public,
            layout: l.clone(),
        }),
    }
}

/// The rules, read off the whole history of commands.
struct Model {
    settings: PolicySettings,
    history: Vec<Op>,
}

impl Model {
    fn last_command(&self, p: u8) -> Option<Consent> {
        self.history.iter().rev().find_map(|op| match op {
            Op::Command(q, c) if *q == p => Some(*c),
            _ => None,
        })
    }

    /// The last command, else the first consent a publish carried, else none.
    fn consent(&self, p: u8) -> Consent {
        let first_carried = || {
            self.history.iter().find_map(|op| match op {
                Op::Join(q, c) if *q == p => Some(*c),
                _ => None,
            })
        };
        self.last_command(p)
            .or_else(first_carried)
            .unwrap_or_default()
    }

    /// The last switch, else the first context, else not public.
    fn public(&self) -> bool {
        let switched = self.history.iter().rev().find_map(|op| match op {
            Op::Public(b) => Some(*b),
            _ => None,
        });
        let context = || {
            self.history.iter().find_map(|op| match op {
                Op::Context(b, _) => Some(*b),
                _ => None,
            })
        };
        switched.or_else(context).unwrap_or(false)
    }

    fn layout(&self) -> LayoutSpec {
        let commanded = self.history.iter().rev().find_map(|op| match op {
            Op::Layout(l) => Some(l.clone()),
            _ => None,
        });
        let context = || {
            self.history.iter().find_map(|op| match op {
                Op::Context(_, l) => Some(l.clone()),
                _ => None,
            })
        };
        commanded.or_else(context).unwrap_or_default()
    }

    /// Members: joined since their last leave; in order of that first join.
    fn roster(&self) -> Vec<u8> {
        let mut members: Vec<(usize, u8)> = (0..POOL)
            .filter_map(|p| {
                let since = self
                    .history
                    .iter()
                    .rposition(|op| *op == Op::Leave(p))
                    .map_or(0, |i| i + 1);
                let joined = self.history[since..]
                    .iter()
                    .position(|op| matches!(op, Op::Join(q, _) if *q == p))?;
                Some((since + joined, p))
            })
            .collect();
        members.sort();
        members.into_iter().map(|(_, p)| p).collect()
    }

    fn slate(&self, a: Audience) -> bool {
        !self.public() && (a == Audience::Streaming || self.settings.slate_recording)
    }

    fn appears(&self, p: u8, a: Audience) -> bool {
        let l = self.layout();
        self.consent(p).for_audience(a)
            && !self.slate(a)
            && (l.kind != LayoutKind::Podium || l.podium.contains(&id(p)))
    }
}

fn consent_strategy() -> impl Strategy<Value = Consent> {
    (any::<bool>(), any::<bool>()).prop_map(|(r, s)| consent(r, s))
}

fn layout_strategy() -> impl Strategy<Value = LayoutSpec> {
    let kind = prop_oneof![
        Just(LayoutKind::Grid),
        Just(LayoutKind::Speaker),
        Just(LayoutKind::ScreenShare),
        Just(LayoutKind::Podium),
    ];
    (
        kind,
        proptest::option::of(0..POOL),
        proptest::collection::vec(any::<bool>(), POOL as usize),
    )
        .prop_map(|(kind, pinned, on_podium)| LayoutSpec {
            kind,
            pinned: pinned.map(id),
            podium: (0..POOL)
                .filter(|n| on_podium[usize::from(*n)])
                .map(id)
                .collect(),
        })
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..POOL, consent_strategy()).prop_map(|(p, c)| Op::Join(p, c)),
        2 => (0..POOL).prop_map(Op::Leave),
        3 => (0..POOL, consent_strategy()).prop_map(|(p, c)| Op::Command(p, c)),
        1 => any::<bool>().prop_map(Op::Public),
        1 => layout_strategy().prop_map(Op::Layout),
        1 => (any::<bool>(), layout_strategy()).prop_map(|(p, l)| Op::Context(p, l)),
    ]
}

fn settings_strategy() -> impl Strategy<Value = PolicySettings> {
    (any::<bool>(), any::<bool>()).prop_map(|(s, d)| settings(s, d))
}

/// Every rule, after one step.
fn check(policy: &MeetingPolicy, model: &Model) -> Result<(), TestCaseError> {
    let roster: Vec<Uuid> = model.roster().into_iter().map(id).collect();
    let ids: Vec<Uuid> = policy.roster().iter().map(|(u, _)| *u).collect();
    prop_assert_eq!(&ids, &roster);
    for a in AUDIENCES {
        let view = policy.view(a);
        prop_assert_eq!(view.slate, model.slate(a));
        prop_assert_eq!(&view.layout, &model.layout());
        for seat in &view.roster {
            let n = (0..POOL).find(|n| id(*n) == seat.participant);
            let Some(n) = n else {
                return Err(TestCaseError::fail("a seat of a stranger"));
            };
            let allowed = model.consent(n).for_audience(a);
            // Rule 1: nobody without consent for the audience is seen or heard in it.
            prop_assert!(!seat.admitted || allowed, "{:?} admitted in {:?}", seat, a);
            prop_assert_eq!(seat.consent, allowed);
            prop_assert_eq!(seat.admitted, model.appears(n, a));
        }
        for n in 0..POOL {
            let said_no = model.last_command(n).is_some_and(|c| !c.for_audience(a));
            let allowed = model.consent(n).for_audience(a);
            if said_no || !allowed {
                prop_assert!(!policy.admits(id(n), a), "P{} admitted in {:?}", n, a);
            }
        }
        let seen = |u: Uuid| u.as_u128() % 2 == 1;
        let expected: Vec<(Uuid, String)> = model
            .roster()
            .into_iter()
            .filter(|n| model.consent(*n).for_audience(a) && seen(id(*n)))
            .map(|n| (id(n), name(n)))
            .collect();
        prop_assert_eq!(policy.visible(a, seen), expected);
    }
    // Rule 2: programs match exactly when both show the same and nothing is held back;
    // sharing only then.
    let same = policy.view(Audience::Recording) == policy.view(Audience::Streaming);
    let matching = policy.programs_match();
    prop_assert_eq!(matching, same && !model.settings.broadcast_delay);
    for bits in 0..8u8 {
        let (takes, exists, same_settings) = (bits & 1 != 0, bits & 2 != 0, bits & 4 != 0);
        if feed_source(matching, takes, exists, same_settings) == FeedSource::Shared {
            prop_assert!(matching && takes && exists && same_settings);
        }
    }
    Ok(())
}

/// A batch of equal-time ops that commute: at most one op per participant, at most
/// one public switch and one layout command (a context is older information and
/// does not commute with either, so it is not in batches).
fn batch_strategy() -> impl Strategy<Value = Vec<Op>> {
    let per_participant = proptest::option::of(prop_oneof![
        consent_strategy().prop_map(|c| (0u8, Some(c))),
        Just((1u8, None)),
        consent_strategy().prop_map(|c| (2u8, Some(c))),
    ]);
    (
        proptest::collection::vec(per_participant, POOL as usize),
        proptest::option::of(any::<bool>()),
        proptest::option::of(layout_strategy()),
    )
        .prop_map(|(per, public, layout)| {
            let mut ops: Vec<Op> = per
                .into_iter()
                .enumerate()
                .filter_map(|(n, op)| {
                    let p = n as u8;
                    match op? {
                        (0, Some(c)) => Some(Op::Join(p, c)),
                        (2, Some(c)) => Some(Op::Command(p, c)),
                        _ => Some(Op::Leave(p)),
                    }
                })
                .collect();
            ops.extend(public.map(Op::Public));
            ops.extend(layout.map(Op::Layout));
            ops
        })
}

/// A view with the seats in id order (joins of two participants at the same time may
/// seat them either way; who is admitted must not depend on it).
fn by_id(mut view: AudienceView) -> AudienceView {
    view.roster.sort_by_key(|s| s.participant);
    view
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_step_obeys_consent_and_sharing_rules(
        s in settings_strategy(),
        ops in proptest::collection::vec(op_strategy(), 1..40),
    ) {
        let mut policy = MeetingPolicy::new(s);
        let mut model = Model { settings: s, history: Vec::new() };
        check(&policy, &model)?;
        for op in ops {
            apply(&mut policy, &op);
            model.history.push(op);
            check(&policy, &model)?;
        }
    }

    #[test]
    fn equal_time_events_commute(
        s in settings_strategy(),
        prefix in proptest::collection::vec(op_strategy(), 0..20),
        (batch, shuffled) in batch_strategy()
            .prop_flat_map(|b| (Just(b.clone()), Just(b).prop_shuffle())),
    ) {
        let mut first = MeetingPolicy::new(s);
        for op in &prefix {
            apply(&mut first, op);
        }
        let mut second = first.clone();
        for op in &batch {
            apply(&mut first, op);
        }
        for op in &shuffled {
            apply(&mut second, op);
        }
        for a in AUDIENCES {
            prop_assert_eq!(by_id(first.view(a)), by_id(second.view(a)));
        }
        prop_assert_eq!(first.programs_match(), second.programs_match());
        let joins = batch.iter().filter(|op| matches!(op, Op::Join(..))).count();
        if joins <= 1 {
            prop_assert_eq!(first, second);
        }
    }
}

/// One session's sample in a watch round: (session, media age, video age, level);
/// ages in ms before now, `None` for nothing yet.
type Sample = (u8, Option<u64>, Option<u64>, Option<f32>);

/// Sessions of the watch test: four, the first two of one participant.
fn watched_participant(session: u8) -> u8 {
    [0, 0, 1, 2][usize::from(session)]
}

fn sample_strategy() -> impl Strategy<Value = Sample> {
    (
        0..4u8,
        proptest::option::of(0..3000u64),
        proptest::option::of(0..3000u64),
        proptest::option::of(-90.0f32..0.0),
    )
}

fn observations(now: u64, samples: &[Sample]) -> Vec<Observation> {
    samples
        .iter()
        .map(|(session, media, video, level)| Observation {
            session_id: id(100 + session),
            participant_id: id(watched_participant(*session)),
            last_media_ms: media.map_or(0, |age| now.saturating_sub(age).max(1)),
            last_video_ms: video.map_or(0, |age| now.saturating_sub(age).max(1)),
            level_dbfs: *level,
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn watch_follows_its_rules_in_any_observation_order(
        rounds in proptest::collection::vec(
            (
                0..1000u64,
                proptest::option::of(0..4u8),
                proptest::collection::vec(sample_strategy(), 0..7),
            )
                .prop_flat_map(|(step, gone, samples)| {
                    (Just(step), Just(gone), Just(samples.clone()), Just(samples).prop_shuffle())
                }),
            1..40,
        ),
    ) {
        let mut first = PublisherWatch::new(2000, 1500);
        for session in 0..4u8 {
            first.add(id(100 + session), id(watched_participant(session)), 0);
        }
        let mut second = first.clone();
        let mut now = 0;
        let mut removed = Vec::new();
        for (step, gone, samples, shuffled) in rounds {
            now += step;
            let seen = observations(now, &samples);
            let a = first.tick(now, &seen);
            let b = second.tick(now, &observations(now, &shuffled));
            prop_assert_eq!(&a, &b);
            // The rules themselves, per session still watched and sampled: removed
            // past the media timeout (answered at 0), camera on within its limit.
            let mut expected = Vec::new();
            for session in (0..4u8).filter(|s| !removed.contains(s)) {
                let mine = || seen.iter().filter(|o| o.session_id == id(100 + session));
                let Some(media) = mine().map(|o| o.last_media_ms).max() else {
                    continue;
                };
                if now.saturating_sub(media) > 2000 {
                    expected.push(WatchAction::Remove { session_id: id(100 + session) });
                }
                let video = mine().map(|o| o.last_video_ms).max().unwrap_or(0);
                let on = video > 0 && now.saturating_sub(video) <= 1500;
                prop_assert_eq!(first.camera_on(id(100 + session)), on);
            }
            let removes: Vec<WatchAction> = a
                .into_iter()
                .filter(|x| matches!(x, WatchAction::Remove { .. }))
                .collect();
            prop_assert_eq!(removes, expected);
            prop_assert_eq!(first.current_speaker(), second.current_speaker());
            for session in 0..4u8 {
                prop_assert_eq!(
                    first.camera_on(id(100 + session)),
                    second.camera_on(id(100 + session))
                );
            }
            if let Some(session) = gone {
                first.remove(id(100 + session));
                second.remove(id(100 + session));
                removed.push(session);
            }
        }
    }
}
