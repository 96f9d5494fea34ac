//! Unit tests of the scene plan: each rule on its own, then every combination of
//! three participants' flags against the privacy invariants.

use super::*;
use crate::layout::{Canvas, NonConsenting, Rect};

const A: Uuid = Uuid::from_u128(0xa);
const B: Uuid = Uuid::from_u128(0xb);
const C: Uuid = Uuid::from_u128(0xc);

fn person(id: Uuid, name: &str, consent: bool) -> SceneParticipant {
    SceneParticipant {
        id,
        display_name: name.into(),
        consent,
        camera_on: true,
        screen_share: false,
        video_connected: true,
    }
}

fn settings(non_consenting: NonConsenting, labels: bool) -> ProgramSettings {
    ProgramSettings {
        canvas: Canvas {
            width: 640,
            height: 360,
        },
        non_consenting,
        labels,
        ..ProgramSettings::default()
    }
}

fn plan_of(
    people: &[SceneParticipant],
    choice: &LayoutChoice,
    speaker: Option<Uuid>,
    slate: bool,
    settings: &ProgramSettings,
) -> ScenePlan {
    plan(
        &mut LayoutEngine::new(),
        &SceneInput {
            participants: people,
            choice,
            active_speaker: speaker,
            slate,
            settings,
        },
    )
}

#[test]
fn initials_and_markup() {
    assert_eq!(initials("Anna Beate Schmidt"), "AS");
    assert_eq!(initials("ümit"), "Ü");
    assert_eq!(initials("  "), "?");
    assert_eq!(escape_markup("A & <B>"), "A &amp; &lt;B&gt;");
}

#[test]
fn a_consenting_camera_is_live_video_with_its_label_and_sound() {
    let s = settings(NonConsenting::Placeholder, true);
    let p = plan_of(
        &[person(A, "Anna <Admin> Schmidt", true)],
        &LayoutChoice::default(),
        None,
        false,
        &s,
    );
    let a = p.participant(A).unwrap();
    let tile = a.video.expect("live video");
    assert_eq!(tile.content, TileContent::Video);
    assert_eq!(p.placements, vec![tile]);
    assert_eq!(a.label.as_deref(), Some("Anna &lt;Admin&gt; Schmidt"));
    assert!(a.audible);
    assert_eq!(a.card, None);
    assert!(!p.slate);
}

#[test]
fn labels_off_means_no_label() {
    let s = settings(NonConsenting::Placeholder, false);
    let p = plan_of(
        &[person(A, "Anna", true)],
        &LayoutChoice::default(),
        None,
        false,
        &s,
    );
    let a = p.participant(A).unwrap();
    assert!(a.video.is_some());
    assert_eq!(a.label, None);
}

#[test]
fn without_consent_a_neutral_card_and_nothing_of_theirs() {
    let s = settings(NonConsenting::Placeholder, true);
    let p = plan_of(
        &[person(A, "Anna", true), person(B, "Bernd Geheim", false)],
        &LayoutChoice::default(),
        None,
        false,
        &s,
    );
    let b = p.participant(B).unwrap();
    assert_eq!(b.video, None);
    assert_eq!(b.label, None);
    assert!(!b.audible);
    let card = b.card.as_ref().expect("neutral tile");
    assert_eq!(card.placement.content, TileContent::NotRecorded);
    assert_eq!(card.text, "Keine Einwilligung · No consent");
    assert!(p.placements.iter().any(|t| t.id == B));
}

#[test]
fn without_consent_and_hide_they_are_not_on_the_canvas_at_all() {
    let s = settings(NonConsenting::Hide, true);
    let p = plan_of(
        &[person(A, "Anna", true), person(B, "Bernd", false)],
        &LayoutChoice::default(),
        None,
        false,
        &s,
    );
    let b = p.participant(B).unwrap();
    assert_eq!(
        (b.video, &b.label, b.audible, &b.card),
        (None, &None, false, &None)
    );
    assert!(p.placements.iter().all(|t| t.id != B));
    // Anna alone gets the whole grid.
    assert_eq!(p.placements.len(), 1);
}

#[test]
fn the_neutral_text_is_escaped_markup() {
    let s = ProgramSettings {
        not_consenting_text: "No <consent> & no picture".into(),
        ..settings(NonConsenting::Placeholder, true)
    };
    let p = plan_of(
        &[person(A, "Anna", false)],
        &LayoutChoice::default(),
        None,
        false,
        &s,
    );
    let card = p.participant(A).unwrap().card.clone().unwrap();
    assert_eq!(card.text, "No &lt;consent&gt; &amp; no picture");
}

#[test]
fn camera_off_or_not_connected_is_an_initials_card() {
    let s = settings(NonConsenting::Placeholder, true);
    let mut off = person(A, "Anna Beate Schmidt", true);
    off.camera_on = false;
    let mut unconnected = person(B, "bernd", true);
    unconnected.video_connected = false;
    let p = plan_of(
        &[off, unconnected],
        &LayoutChoice::default(),
        None,
        false,
        &s,
    );
    let a = p.participant(A).unwrap();
    assert_eq!(a.video, None);
    assert_eq!(a.label, None, "no label without video");
    assert!(a.audible, "their microphone is still heard");
    let card = a.card.as_ref().unwrap();
    assert_eq!(card.placement.content, TileContent::Initials);
    assert_eq!(
        card.text,
        "<span size=\"xx-large\">AS</span>\nAnna Beate Schmidt"
    );
    let b = p.participant(B).unwrap();
    assert_eq!(
        b.card.as_ref().map(|c| c.text.as_str()),
        Some("<span size=\"xx-large\">B</span>\nbernd")
    );
}

#[test]
fn a_screen_share_needs_connected_video() {
    let s = settings(NonConsenting::Placeholder, true);
    let mut share = person(A, "Anna", true);
    share.camera_on = false;
    share.screen_share = true;
    let choice = LayoutChoice {
        kind: LayoutKind::ScreenShare,
        ..LayoutChoice::default()
    };
    let p = plan_of(
        &[share.clone(), person(B, "B", true)],
        &choice,
        None,
        false,
        &s,
    );
    let a = p.participant(A).unwrap().video.expect("share shown");
    let b = p.participant(B).unwrap().video.expect("camera shown");
    assert!(a.rect.area() > b.rect.area(), "the share is large");
    share.video_connected = false;
    let p = plan_of(&[share], &choice, None, false, &s);
    let a = p.participant(A).unwrap();
    assert_eq!(a.video, None);
    assert_eq!(
        a.card.as_ref().map(|c| c.placement.content),
        Some(TileContent::Initials)
    );
}

#[test]
fn the_slate_hides_everyone_and_keeps_their_slots() {
    let s = settings(NonConsenting::Placeholder, true);
    let people = [
        person(A, "Anna", true),
        person(B, "Bernd", false),
        person(C, "Carla", true),
    ];
    let choice = LayoutChoice::default();
    let mut engine = LayoutEngine::new();
    let mut input = SceneInput {
        participants: &people,
        choice: &choice,
        active_speaker: None,
        slate: false,
        settings: &s,
    };
    let before = plan(&mut engine, &input);
    input.slate = true;
    let during = plan(&mut engine, &input);
    assert!(during.slate);
    assert!(during.placements.is_empty());
    for p in &during.participants {
        assert_eq!(
            (p.video, &p.label, p.audible, &p.card),
            (None, &None, false, &None)
        );
    }
    input.slate = false;
    assert_eq!(
        plan(&mut engine, &input),
        before,
        "back as before the slate"
    );
}

#[test]
fn the_podium_audience_is_neither_seen_nor_heard() {
    let s = settings(NonConsenting::Placeholder, true);
    let choice = LayoutChoice {
        kind: LayoutKind::Podium,
        pinned: None,
        podium: vec![A],
    };
    let p = plan_of(
        &[person(A, "Anna", true), person(B, "Bernd", true)],
        &choice,
        None,
        false,
        &s,
    );
    let (a, b) = (p.participant(A).unwrap(), p.participant(B).unwrap());
    assert!(a.video.is_some() && a.audible);
    assert_eq!((b.video, b.audible, &b.card), (None, false, &None));
}

#[test]
fn a_speaker_without_consent_is_never_featured() {
    let s = settings(NonConsenting::Placeholder, true);
    let choice = LayoutChoice {
        kind: LayoutKind::Speaker,
        ..LayoutChoice::default()
    };
    let p = plan_of(
        &[person(A, "Anna", true), person(B, "Bernd", false)],
        &choice,
        Some(B),
        false,
        &s,
    );
    let a = p.participant(A).unwrap().video.unwrap();
    let b = p.participant(B).unwrap().card.clone().unwrap().placement;
    assert!(a.rect.area() > b.rect.area());
    assert_eq!(b.content, TileContent::NotRecorded);
}

#[test]
fn plans_are_deterministic() {
    let s = settings(NonConsenting::Placeholder, true);
    let people: Vec<SceneParticipant> = (1..=7u128)
        .map(|i| person(Uuid::from_u128(i), &format!("P {i}"), i % 3 != 0))
        .collect();
    for kind in [
        LayoutKind::Grid,
        LayoutKind::Speaker,
        LayoutKind::ScreenShare,
        LayoutKind::Podium,
    ] {
        let choice = LayoutChoice {
            kind,
            pinned: Some(Uuid::from_u128(3)),
            podium: vec![Uuid::from_u128(1), Uuid::from_u128(3)],
        };
        let a = plan_of(&people, &choice, Some(Uuid::from_u128(2)), false, &s);
        let b = plan_of(&people, &choice, Some(Uuid::from_u128(2)), false, &s);
        assert_eq!(a, b, "{kind:?}");
    }
}

/// Every combination of three participants' consent, camera, connection and
/// screen share, under every layout, treatment, label setting, speaker and slate:
/// nobody without consent is ever shown live, labelled, heard or named, and every
/// planned tile is one of the layout's placements.
#[test]
fn nobody_without_consent_is_ever_shown_heard_or_named() {
    let names = ["Anna Secretname", "Bernd Hiddenname", "Carla Privatename"];
    let ids = [A, B, C];
    let kinds = [
        LayoutKind::Grid,
        LayoutKind::Speaker,
        LayoutKind::ScreenShare,
        LayoutKind::Podium,
    ];
    let mut checked = 0u32;
    // Four flags per participant, three participants.
    for bits in 0u32..(1 << 12) {
        let people: Vec<SceneParticipant> = (0..3)
            .map(|i| {
                let f = bits >> (4 * i);
                SceneParticipant {
                    id: ids[i],
                    display_name: names[i].into(),
                    consent: f & 1 != 0,
                    camera_on: f & 2 != 0,
                    screen_share: f & 4 != 0,
                    video_connected: f & 8 != 0,
                }
            })
            .collect();
        for kind in kinds {
            for non_consenting in [NonConsenting::Hide, NonConsenting::Placeholder] {
                for (labels, slate, speaker) in [
                    (true, false, Some(B)),
                    (false, false, None),
                    (true, true, Some(C)),
                ] {
                    let s = settings(non_consenting, labels);
                    let choice = LayoutChoice {
                        kind,
                        pinned: (bits % 5 == 0).then_some(A),
                        podium: vec![A, C],
                    };
                    let p = plan_of(&people, &choice, speaker, slate, &s);
                    check(&people, &p, &s);
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 4096 * 4 * 2 * 3);
}

fn check(people: &[SceneParticipant], p: &ScenePlan, s: &ProgramSettings) {
    assert_eq!(p.participants.len(), people.len());
    for (who, plan) in people.iter().zip(&p.participants) {
        assert_eq!(who.id, plan.id, "joining order");
        let shown: Vec<&Rect> = p
            .placements
            .iter()
            .filter(|t| t.id == who.id)
            .map(|t| &t.rect)
            .collect();
        if let Some(v) = plan.video {
            assert!(who.consent && who.video_connected, "{who:?}: {plan:?}");
            assert_eq!(shown, vec![&v.rect]);
        }
        if let Some(c) = &plan.card {
            assert_eq!(shown, vec![&c.placement.rect]);
            assert!(plan.video.is_none(), "video or card, not both");
        }
        if p.slate {
            assert!(plan.video.is_none() && plan.card.is_none() && !plan.audible);
        }
        if plan.label.is_some() {
            assert!(s.labels && plan.video.is_some());
        }
        if !who.consent {
            assert_eq!(plan.video, None, "{who:?}");
            assert_eq!(plan.label, None, "{who:?}");
            assert!(!plan.audible, "{who:?}");
            if let Some(c) = &plan.card {
                assert_eq!(c.placement.content, TileContent::NotRecorded);
                assert_eq!(c.text, escape_markup(&s.not_consenting_text));
            }
            if s.non_consenting == NonConsenting::Hide {
                assert!(plan.card.is_none() && shown.is_empty(), "{who:?}");
            }
            let surname = who.display_name.split(' ').nth(1).unwrap_or_default();
            let texts = plan
                .card
                .iter()
                .map(|c| c.text.as_str())
                .chain(plan.label.as_deref());
            for t in texts {
                assert!(!t.contains(surname), "{who:?} named in {t:?}");
            }
        }
    }
}
