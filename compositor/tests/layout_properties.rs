//! Property tests of the layout engine: for any participants, layout kind, settings
//! and canvas, tiles stay inside the canvas, never overlap within a layer, keep 16:9,
//! show nobody twice, show non-consenting participants never with their picture,
//! honour the podium, and come out the same for the same inputs.

use gremium_compositor::{
    Canvas, LayoutEngine, LayoutKind, LayoutSettings, NonConsenting, Participant, TileContent,
};
use proptest::prelude::*;
use uuid::Uuid;

fn participant() -> impl Strategy<Value = (bool, bool, bool, bool)> {
    (
        any::<bool>(),
        prop::bool::weighted(0.1),
        any::<bool>(),
        prop::bool::weighted(0.7),
    )
}

fn kind() -> impl Strategy<Value = LayoutKind> {
    prop_oneof![
        Just(LayoutKind::Grid),
        Just(LayoutKind::Speaker),
        Just(LayoutKind::ScreenShare),
        Just(LayoutKind::Podium),
    ]
}

fn canvas() -> impl Strategy<Value = Canvas> {
    prop_oneof![
        Just(Canvas {
            width: 1280,
            height: 720
        }),
        Just(Canvas {
            width: 1920,
            height: 1080
        }),
        Just(Canvas {
            width: 640,
            height: 360
        }),
        Just(Canvas {
            width: 720,
            height: 1280
        }),
        (320u32..2000, 240u32..1200).prop_map(|(w, h)| Canvas {
            width: w & !1,
            height: h & !1
        }),
    ]
}

fn build(flags: &[(bool, bool, bool, bool)]) -> Vec<Participant> {
    flags
        .iter()
        .enumerate()
        .map(|(i, (video, share, podium, consent))| Participant {
            id: Uuid::from_u128(i as u128 + 1),
            has_video: *video,
            screen_share: *share,
            podium: *podium,
            consent: *consent,
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn every_layout_is_sound(
        flags in prop::collection::vec(participant(), 0..26),
        kind in kind(),
        canvas in canvas(),
        gap in 0u32..12,
        hide in any::<bool>(),
        speaker in 0usize..30,
        pinned in prop::option::of(0usize..30),
    ) {
        let people = build(&flags);
        let id = |i: usize| Uuid::from_u128(i as u128 + 1);
        let settings = LayoutSettings {
            kind,
            pinned: pinned.map(id),
            active_speaker: Some(id(speaker)),
            non_consenting: if hide { NonConsenting::Hide } else { NonConsenting::Placeholder },
            gap,
        };
        let out = LayoutEngine::new().layout(&people, &settings, canvas);
        // Deterministic: a fresh engine gives the same answer.
        prop_assert_eq!(&out, &LayoutEngine::new().layout(&people, &settings, canvas));
        for (i, a) in out.iter().enumerate() {
            prop_assert!(a.rect.x + a.rect.w <= canvas.width && a.rect.y + a.rect.h <= canvas.height,
                "{:?} outside {:?}", a, canvas);
            prop_assert!(a.rect.w > 0 && a.rect.h > 0, "{:?} empty", a);
            if a.rect.w >= 32 {
                let ratio = a.rect.w as f64 / a.rect.h as f64;
                prop_assert!((ratio - 16.0 / 9.0).abs() < 0.1, "{:?} not 16:9", a);
            }
            for b in &out[i + 1..] {
                prop_assert_ne!(a.id, b.id, "shown twice");
                if a.z == b.z {
                    prop_assert!(!a.rect.overlaps(&b.rect), "{:?} overlaps {:?}", a, b);
                }
            }
            let p = people.iter().find(|p| p.id == a.id).expect("only known participants");
            if !p.consent {
                prop_assert_eq!(a.content, TileContent::NotRecorded);
                prop_assert!(!hide, "hidden participant shown");
            }
            if kind == LayoutKind::Podium {
                prop_assert!(p.podium, "audience shown in the podium layout");
            }
        }
        let shown = people
            .iter()
            .filter(|p| kind != LayoutKind::Podium || p.podium)
            .filter(|p| p.consent || !hide)
            .count();
        prop_assert_eq!(out.len(), shown, "everyone who may be shown is shown");
    }

    #[test]
    fn grid_tiles_keep_their_places_when_someone_leaves(
        n in 2usize..25,
        leaving in 0usize..25,
    ) {
        let leaving = leaving % n;
        let people = build(&vec![(true, false, false, true); n]);
        let settings = LayoutSettings {
            kind: LayoutKind::Grid,
            pinned: None,
            active_speaker: None,
            non_consenting: NonConsenting::Hide,
            gap: 4,
        };
        let canvas = Canvas { width: 1280, height: 720 };
        let mut engine = LayoutEngine::new();
        let before = engine.layout(&people, &settings, canvas);
        let mut rest = people.clone();
        rest.remove(leaving);
        let after = engine.layout(&rest, &settings, canvas);
        let cols = |k: usize| (k as f64).sqrt().ceil() as usize;
        let rows = |k: usize| k.div_ceil(cols(k));
        if (cols(n), rows(n)) == (cols(n - 1), rows(n - 1)) {
            for a in &after {
                let b = before.iter().find(|b| b.id == a.id).unwrap();
                prop_assert_eq!(a.rect, b.rect, "tile moved although the grid kept its shape");
            }
        }
    }
}
