//! The program bin on real, live GStreamer pipelines: synthetic participants with
//! distinct solid colours and tones, the program's output read back from appsinks,
//! and what a viewer would see or hear checked at pixel and sample level.

use std::time::Duration;

use gremium_compositor::testing::{near, Chunk, Frame, Seen, Tap};
use gremium_compositor::{
    Canvas, Kind, LayoutChoice, LayoutKind, NonConsenting, Placement, Program, ProgramSettings,
};
use gst::prelude::*;
use uuid::Uuid;

const W: u32 = 640;
const H: u32 = 360;
const A: Uuid = Uuid::from_u128(0xa);
const B: Uuid = Uuid::from_u128(0xb);
const C: Uuid = Uuid::from_u128(0xc);
const RED: [u8; 3] = [230, 200, 20]; // yellow, unlike the red "● REC" indicator
const BLUE: [u8; 3] = [20, 20, 230];
const GREEN: [u8; 3] = [20, 200, 20];
/// Tones on exact 100 Hz bins of a 10 ms window, so Goertzel sees no leakage.
const TONE_A: f64 = 500.0;
const TONE_B: f64 = 1300.0;
const TONE_C: f64 = 2100.0;

const PALETTE: [[u8; 3]; 3] = [RED, BLUE, GREEN];
const TONES: [f64; 3] = [TONE_A, TONE_B, TONE_C];

struct Harness {
    pipeline: gst::Pipeline,
    program: Program,
    tap: Tap,
    /// Each participant's sources, so a test can stop them.
    sources: Vec<(Uuid, Kind, gst::Element)>,
}

impl Harness {
    fn new(settings: ProgramSettings) -> Harness {
        gst::init().unwrap();
        let pipeline = gst::Pipeline::new();
        let program = Program::new(settings).expect("program");
        pipeline.add(program.bin()).unwrap();
        let tap = Tap::new(W, H, PALETTE.to_vec(), TONES.to_vec());
        pipeline.add(tap.bin()).unwrap();
        for (kind, pad) in [(Kind::Video, "video"), (Kind::Audio, "audio")] {
            program
                .request_output(kind)
                .unwrap()
                .link(&tap.bin().static_pad(pad).unwrap())
                .unwrap();
        }
        Harness {
            pipeline,
            program,
            tap,
            sources: Vec::new(),
        }
    }

    fn start(&self) {
        self.pipeline.set_state(gst::State::Playing).unwrap();
    }

    /// A synthetic participant: a solid colour camera and a sine microphone.
    fn participant(&mut self, id: Uuid, name: &str, consent: bool, index: usize) {
        self.program.add_participant(id, name, consent);
        let [r, g, b] = PALETTE[index];
        let colour = 0xff00_0000u32 | u32::from(r) << 16 | u32::from(g) << 8 | u32::from(b);
        let vsrc = gst::ElementFactory::make("videotestsrc")
            .property("is-live", true)
            .build()
            .unwrap();
        vsrc.set_property_from_str("pattern", "solid-color");
        vsrc.set_property("foreground-color", colour);
        let vcaps = gst::ElementFactory::make("capsfilter")
            .property(
                "caps",
                gst::Caps::builder("video/x-raw")
                    .field("format", "I420")
                    .field("width", 320i32)
                    .field("height", 180i32)
                    .field("framerate", gst::Fraction::new(30, 1))
                    .build(),
            )
            .build()
            .unwrap();
        let asrc = gst::ElementFactory::make("audiotestsrc")
            .property("is-live", true)
            .property("freq", TONES[index])
            .property("volume", 0.3f64)
            .property("samplesperbuffer", 960i32)
            .build()
            .unwrap();
        let acaps = gst::ElementFactory::make("capsfilter")
            .property(
                "caps",
                gst::Caps::builder("audio/x-raw")
                    .field("format", "S16LE")
                    .field("rate", 48_000i32)
                    .field("channels", 1i32)
                    .build(),
            )
            .build()
            .unwrap();
        self.pipeline
            .add_many([&vsrc, &vcaps, &asrc, &acaps])
            .unwrap();
        vsrc.link(&vcaps).unwrap();
        asrc.link(&acaps).unwrap();
        self.program
            .connect(id, Kind::Video, &vcaps.static_pad("src").unwrap())
            .unwrap();
        self.program
            .connect(id, Kind::Audio, &acaps.static_pad("src").unwrap())
            .unwrap();
        // Downstream first, or a source may push into a flushing pad and stop.
        for e in [&acaps, &asrc, &vcaps, &vsrc] {
            e.sync_state_with_parent().unwrap();
        }
        self.sources.push((id, Kind::Video, vsrc));
        self.sources.push((id, Kind::Audio, asrc));
    }

    fn now(&self) -> u64 {
        self.program.running_time().unwrap_or(0)
    }

    fn frames_since(&self, t: u64) -> Vec<Frame> {
        self.tap.frames_since(t)
    }

    fn chunks_since(&self, t: u64) -> Vec<Chunk> {
        self.tap.chunks_since(t)
    }

    /// Wait until output frames with running time ≥ `t` + `span` have arrived.
    fn run_until(&self, t: u64, span: Duration) {
        let want = t + span.as_nanos() as u64;
        for _ in 0..200 {
            if self.tap.reached(want) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let bus = self.pipeline.bus().unwrap();
        let errors: Vec<String> =
            std::iter::from_fn(|| bus.pop_filtered(&[gst::MessageType::Error]))
                .map(|m| format!("{m:?}"))
                .collect();
        panic!(
            "program output stalled: wanted running time {want} ns, have {:?}, errors: {errors:?}",
            self.tap.latest()
        );
    }

    fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        self.tap.pixel(x, y)
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

fn settings(non_consenting: NonConsenting) -> ProgramSettings {
    ProgramSettings {
        name: "program-test".into(),
        canvas: Canvas {
            width: W,
            height: H,
        },
        fps: 30,
        non_consenting,
        labels: false,
        gap: 0,
        ..ProgramSettings::default()
    }
}

/// A tone at the test sources' volume measures about 0.3; its absence below 0.03
/// (an onset inside a 10 ms window leaks about 0.01 into other bins).
const AUDIBLE: f64 = 0.1;
const SILENT: f64 = 0.03;

fn assert_bbox(seen: Seen, p: &Placement, what: &str) {
    let tol = 4i64;
    let want = [
        p.rect.x as i64,
        p.rect.y as i64,
        (p.rect.x + p.rect.w - 1) as i64,
        (p.rect.y + p.rect.h - 1) as i64,
    ];
    let got = [
        seen.min_x as i64,
        seen.min_y as i64,
        seen.max_x as i64,
        seen.max_y as i64,
    ];
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g - w).abs() <= tol,
            "{what}: tile at {got:?}, layout says {want:?}"
        );
    }
}

#[test]
fn only_consenting_participants_are_seen_and_heard_and_withdrawal_is_immediate() {
    let mut h = Harness::new(settings(NonConsenting::Placeholder));
    h.participant(A, "Anna A", true, 0);
    h.participant(B, "Bernd B", false, 1);
    h.start();
    let t0 = h.now();
    h.run_until(t0, Duration::from_secs(2));

    // After A's first frame, every frame shows A and none shows B.
    let frames = h.frames_since(0);
    let first_a = frames
        .iter()
        .position(|f| f.colours[0].count > 0)
        .expect("A never appeared");
    let shown = &frames[first_a..];
    assert!(shown.len() >= 30, "only {} frames with A", shown.len());
    for f in shown {
        assert!(f.colours[0].count > 500, "a frame without A: {f:?}");
    }
    assert!(
        frames.iter().all(|f| f.colours[1].count == 0),
        "B's colour appeared although B did not consent"
    );
    let chunks = h.chunks_since(0);
    let first_tone = chunks
        .iter()
        .position(|c| c.tones[0] > AUDIBLE)
        .expect("A's tone never heard");
    let heard = &chunks[first_tone + 5..];
    assert!(heard.len() >= 100, "only {} audio windows", heard.len());
    let with_a = heard.iter().filter(|c| c.tones[0] > AUDIBLE).count();
    let missing: Vec<(u64, f64)> = heard
        .iter()
        .filter(|c| c.tones[0] <= AUDIBLE)
        .map(|c| (c.running_ns / 1_000_000, c.tones[0]))
        .collect();
    let first_ms = heard[0].running_ns / 1_000_000;
    assert!(
        with_a * 100 >= heard.len() * 95,
        "first window at {first_ms} ms, missing (ms, amplitude): {missing:?}; \
         A's tone missing in {} of {} windows",
        heard.len() - with_a,
        heard.len()
    );
    let b_max = chunks.iter().map(|c| c.tones[1]).fold(0.0, f64::max);
    assert!(b_max < SILENT, "B's tone heard: amplitude {b_max}");

    // Withdraw A: nothing of A at or after the returned running time.
    let withdrawn = h.program.set_consent(A, false).expect("running time");
    h.run_until(withdrawn, Duration::from_secs(1));
    let before = h
        .frames_since(0)
        .iter()
        .filter(|f| f.running_ns < withdrawn && f.colours[0].count > 0)
        .count();
    assert!(before > 0, "A was visible before the withdrawal");
    let after = h.frames_since(withdrawn);
    assert!(
        after.len() >= 25,
        "only {} frames after withdrawal",
        after.len()
    );
    for f in &after {
        assert_eq!(f.colours[0].count, 0, "A visible after withdrawal: {f:?}");
    }
    for c in h.chunks_since(0).iter().filter(|c| c.end_ns > withdrawn) {
        assert!(
            c.tones[0] < SILENT,
            "A's tone after withdrawal at {} ns (withdrawn {withdrawn}): {c:?}",
            c.running_ns
        );
    }
    // Both now show the neutral tile: two tiles of the placeholder colour, no person.
    let placements = h.program.placements().to_vec();
    assert_eq!(placements.len(), 2);
    assert!(placements
        .iter()
        .all(|p| p.content == gremium_compositor::TileContent::NotRecorded));

    // Grant B: B appears (at the next keyframe; raw test video has only keyframes).
    let granted = h.program.set_consent(B, true).unwrap();
    h.run_until(granted, Duration::from_millis(800));
    let late = h.frames_since(granted + 300_000_000);
    assert!(!late.is_empty());
    assert!(late
        .iter()
        .all(|f| f.colours[1].count > 500 && f.colours[0].count == 0));
    let heard_b = h.chunks_since(granted + 300_000_000);
    assert!(heard_b
        .iter()
        .all(|c| c.tones[1] > AUDIBLE && c.tones[0] < SILENT));
}

#[test]
fn grid_speaker_and_podium_geometry_at_pixel_level() {
    let mut h = Harness::new(settings(NonConsenting::Hide));
    h.participant(A, "Anna A", true, 0);
    h.participant(B, "Bernd B", true, 1);
    h.participant(C, "Clara C", true, 2);
    h.start();
    h.run_until(h.now(), Duration::from_millis(1500));

    let check = |h: &Harness, what: &str| {
        let placements = h.program.placements().to_vec();
        let t = h.now();
        h.run_until(t, Duration::from_millis(500));
        let frame = h.frames_since(t + 200_000_000).pop().expect("a frame");
        for (i, id) in [A, B, C].iter().enumerate() {
            match placements.iter().find(|p| p.id == *id) {
                Some(p) => assert_bbox(frame.colours[i], p, &format!("{what}: participant {i}")),
                None => assert_eq!(frame.colours[i].count, 0, "{what}: {i} should be hidden"),
            }
        }
        placements
    };
    // Grid of three: 2 × 2 cells, three tiles.
    let grid = check(&h, "grid");
    assert_eq!(grid.len(), 3);
    // Speaker layout with B pinned: B large on top, the others in the strip.
    h.program.set_layout(LayoutChoice {
        kind: LayoutKind::Speaker,
        pinned: Some(B),
        podium: vec![],
    });
    let speaker = check(&h, "speaker");
    let big = speaker.iter().find(|p| p.id == B).unwrap();
    assert!(big.rect.area() > 4 * speaker.iter().find(|p| p.id == A).unwrap().rect.area());
    // Podium: only A and C; B is neither seen nor heard.
    h.program.set_layout(LayoutChoice {
        kind: LayoutKind::Podium,
        pinned: None,
        podium: vec![A, C],
    });
    let t = h.now();
    let podium = check(&h, "podium");
    assert_eq!(podium.len(), 2);
    let heard = h.chunks_since(t + 300_000_000);
    assert!(!heard.is_empty());
    assert!(heard.iter().all(|c| c.tones[1] < SILENT), "audience heard");
    assert!(heard
        .iter()
        .all(|c| c.tones[0] > AUDIBLE && c.tones[2] > AUDIBLE));
}

/// Nobody publishes yet (a recording started before anyone joined): the program
/// still makes black frames and silence on the clock (its clock sources; the
/// mixers' `force-live` alone produces nothing: no input, no caps), and someone
/// joining later is seen and heard.
#[test]
fn an_empty_program_runs_on_the_clock_and_takes_a_late_joiner() {
    let mut h = Harness::new(settings(NonConsenting::Placeholder));
    h.start();
    h.run_until(0, Duration::from_secs(1));
    assert_eq!(cards(&h.program), 1, "the clock source only");
    let frames = h.frames_since(0);
    let chunks = h.chunks_since(0);
    assert!(frames.len() >= 25, "{} frames in a second", frames.len());
    assert!(chunks.iter().map(|c| c.end_ns - c.running_ns).sum::<u64>() >= 900_000_000);
    for w in frames.windows(2) {
        assert!(w[1].running_ns - w[0].running_ns < 100_000_000, "video gap");
    }
    assert!(frames
        .iter()
        .all(|f| f.colours.iter().all(|c| c.count == 0)));
    assert!(chunks.iter().all(|c| c.tones.iter().all(|t| *t < SILENT)));

    h.participant(A, "Anna A", true, 0);
    let t = h.now();
    h.run_until(t, Duration::from_millis(800));
    let f = h.frames_since(t + 500_000_000).pop().unwrap();
    assert!(f.colours[0].count > 0, "late joiner not seen: {f:?}");
    let heard = h.chunks_since(t + 500_000_000);
    assert!(!heard.is_empty() && heard.iter().all(|c| c.tones[0] > AUDIBLE));
}

/// Live sources in the program bin: the mixer's clock source and the cards
/// (placeholder tiles, the slate).
fn cards(program: &Program) -> usize {
    program
        .bin()
        .iterate_recurse()
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.factory().is_some_and(|f| f.name() == "videotestsrc"))
        .count()
}

#[test]
fn live_changes_slate_placeholders_and_stalled_inputs_never_stop_the_program() {
    let mut settings = settings(NonConsenting::Placeholder);
    settings.labels = true;
    settings.indicator = Some("● REC".into());
    let mut h = Harness::new(settings);
    h.participant(A, "Anna A", true, 0);
    h.start();
    h.run_until(h.now(), Duration::from_secs(1));
    h.program.set_indicator(true);
    let t = h.now();
    h.run_until(t, Duration::from_millis(300));
    let mut indicator = 0;
    for y in 0..40 {
        for x in W - 160..W {
            indicator += usize::from(near(&h.pixel(x, y), [255, 48, 48]));
        }
    }
    assert!(
        indicator > 20,
        "recording indicator not drawn ({indicator} red pixels)"
    );

    // Join while running.
    h.participant(B, "Bernd B", true, 1);
    let t = h.now();
    h.run_until(t, Duration::from_millis(800));
    let f = h.frames_since(t + 400_000_000).pop().unwrap();
    assert!(f.colours[0].count > 0 && f.colours[1].count > 0, "{f:?}");
    // Both show their pictures: no card is kept running hidden, only the mixer's
    // clock source is left (a card makes frames at the program's rate).
    assert_eq!(cards(&h.program), 1, "hidden cards kept running");

    // A's label is drawn in A's tile (bottom left): not all of A's tile is red.
    let a = *h.program.placements().iter().find(|p| p.id == A).unwrap();
    let mut label = 0;
    for y in a.rect.y + a.rect.h * 3 / 4..a.rect.y + a.rect.h {
        for x in a.rect.x..a.rect.x + a.rect.w / 2 {
            label += usize::from(!near(&h.pixel(x, y), RED));
        }
    }
    assert!(
        label > 200,
        "no label at the bottom of A's tile ({label} pixels)"
    );
    let mut top = 0;
    for y in a.rect.y..a.rect.y + a.rect.h / 4 {
        for x in a.rect.x..a.rect.x + a.rect.w / 2 {
            top += usize::from(!near(&h.pixel(x, y), RED));
        }
    }
    assert_eq!(top, 0, "the top of A's tile is plain picture");
    let centre = h.pixel(a.rect.x + a.rect.w / 2, a.rect.y + a.rect.h / 2);
    assert!(near(&centre, RED), "A's picture: {centre:?}");

    // A's camera stops (source stalls): the program keeps running, without A's
    // picture once A is marked camera-off, with a placeholder tile instead.
    let (_, _, a_video) = h
        .sources
        .iter()
        .find(|(id, k, _)| *id == A && *k == Kind::Video)
        .unwrap()
        .clone();
    a_video.set_state(gst::State::Paused).unwrap();
    let stalled = h.now();
    h.run_until(stalled, Duration::from_millis(700));
    let frames = h.frames_since(stalled);
    for w in frames.windows(2) {
        let gap = w[1].running_ns - w[0].running_ns;
        assert!(gap < 100_000_000, "program stalled for {gap} ns");
    }
    h.program.set_camera(A, false);
    let off = h.now();
    h.run_until(off, Duration::from_millis(500));
    let a = *h.program.placements().iter().find(|p| p.id == A).unwrap();
    assert_eq!(a.content, gremium_compositor::TileContent::Initials);
    let f = h.frames_since(off + 300_000_000).pop().unwrap();
    assert_eq!(f.colours[0].count, 0, "camera-off participant still shown");
    let tile = h.pixel(a.rect.x + 4, a.rect.y + 4);
    assert!(
        (i32::from(tile[0]) - 0x2f).abs() < 20 && (i32::from(tile[2]) - 0x40).abs() < 20,
        "placeholder colour expected, got {tile:?}"
    );

    // The slate: nobody's picture or sound, within a frame or two.
    let slate_at = h.program.set_slate(true).unwrap().unwrap();
    h.run_until(slate_at, Duration::from_millis(700));
    for f in h.frames_since(slate_at + 50_000_000) {
        assert!(
            f.colours.iter().all(|c| c.count == 0),
            "participant visible under the slate: {f:?}"
        );
    }
    let chunks = h.chunks_since(slate_at + 50_000_000);
    assert!(chunks.iter().all(|c| c.tones.iter().all(|t| *t < SILENT)));
    let px = h.pixel(W / 2, 10);
    assert!(
        near(&px, [0x1d, 0x35, 0x57]),
        "slate colour expected, got {px:?}"
    );
    let back = h.program.set_slate(false).unwrap().unwrap();
    h.run_until(back, Duration::from_millis(600));
    let f = h.frames_since(back + 300_000_000).pop().unwrap();
    assert!(f.colours[1].count > 0, "program back after the slate");
    // The slate's card went with it; A's placeholder (camera off) stays.
    assert_eq!(cards(&h.program), 2, "the slate's card kept running");
    // Up again, it is built again.
    let slate_at = h.program.set_slate(true).unwrap().unwrap();
    h.run_until(slate_at, Duration::from_millis(400));
    let px = h.pixel(W / 2, 10);
    assert!(near(&px, [0x1d, 0x35, 0x57]), "slate again: {px:?}");
    let back = h.program.set_slate(false).unwrap().unwrap();
    h.run_until(back, Duration::from_millis(600));
    let f = h.frames_since(back + 300_000_000).pop().unwrap();
    assert!(
        f.colours[1].count > 0,
        "program back after the second slate"
    );

    // Leave while running; the rest goes on.
    h.program.remove_participant(B);
    let left = h.now();
    h.run_until(left, Duration::from_millis(500));
    let f = h.frames_since(left + 200_000_000).pop().unwrap();
    assert_eq!(f.colours[1].count, 0);
    assert_eq!(h.program.placements().len(), 1);

    // After all these changes video and audio still run on one timeline: no gap in
    // either, timestamps continuous, and neither stream left behind.
    let frames = h.frames_since(0);
    for w in frames.windows(2) {
        let gap = w[1].running_ns - w[0].running_ns;
        assert!(
            gap < 100_000_000,
            "video gap of {gap} ns at {}",
            w[0].running_ns
        );
    }
    let chunks = h.chunks_since(0);
    for w in chunks.windows(2) {
        // Sample-exact timestamps round to whole nanoseconds: allow a millisecond.
        assert!(
            w[1].running_ns.abs_diff(w[0].end_ns) < 1_000_000,
            "audio not continuous: {} then {}",
            w[0].end_ns,
            w[1].running_ns
        );
    }
    let (first_v, first_a) = (frames[0].running_ns, chunks[0].running_ns);
    let (last_v, last_a) = (
        frames.last().unwrap().running_ns,
        chunks.last().unwrap().running_ns,
    );
    assert!(
        first_v.abs_diff(first_a) < 100_000_000,
        "start: video {first_v}, audio {first_a}"
    );
    // Delivery differs by the mixers' latencies (measured 160–170 ms here); a stalled
    // or drifting stream would be seconds behind.
    assert!(
        last_v.abs_diff(last_a) < 300_000_000,
        "video delivered up to {last_v} ns, audio up to {last_a} ns: out of step"
    );
}

/// The mixer pad a participant's input branch ends in: followed from the source's
/// pad through the branch's elements.
fn mixer_pad_of(source: &gst::Element) -> gst::Pad {
    let mut pad = source.static_pad("src").unwrap().peer().unwrap();
    for _ in 0..16 {
        // A ghost pad's target belongs to the element inside.
        if let Some(ghost) = pad.downcast_ref::<gst::GhostPad>() {
            pad = ghost.target().unwrap();
            continue;
        }
        let element = pad.parent_element().unwrap();
        if element.factory().is_some_and(|f| f.name() == "compositor") {
            return pad;
        }
        pad = element.static_pad("src").unwrap().peer().unwrap();
    }
    panic!("no mixer pad behind {}", source.name());
}

/// A flow error where a participant's input meets the mixer (what a program in
/// trouble returns) stops neither the participant's media — shared with every other
/// program and consumer through its tee — nor, once the program takes data again,
/// the participant's picture in it.
#[test]
fn a_flow_error_at_the_mixer_never_stops_a_participants_media() {
    let mut h = Harness::new(settings(NonConsenting::Placeholder));
    h.participant(A, "Anna A", true, 0);
    h.start();
    h.run_until(h.now(), Duration::from_secs(1));
    let vsrc = h.sources[0].2.clone();
    let vcaps = vsrc
        .static_pad("src")
        .unwrap()
        .peer()
        .unwrap()
        .parent_element()
        .unwrap();
    let mixer_pad = mixer_pad_of(&vcaps);
    let failed = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let count = failed.clone();
    let probe = mixer_pad
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 10 {
                info.flow_res = Err(gst::FlowError::Error);
                gst::PadProbeReturn::Handled
            } else {
                gst::PadProbeReturn::Ok
            }
        })
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while failed.load(std::sync::atomic::Ordering::SeqCst) < 12 {
        assert!(
            std::time::Instant::now() < deadline,
            "{} buffers at the mixer pad {:?} of {:?}; camera: {:?}",
            failed.load(std::sync::atomic::Ordering::SeqCst),
            mixer_pad.name(),
            mixer_pad
                .peer()
                .and_then(|p| p.parent_element())
                .and_then(|e| e.factory())
                .map(|f| f.name()),
            vsrc.static_pad("src").unwrap().last_flow_result()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    mixer_pad.remove_probe(probe);
    let t = h.now();
    h.run_until(t, Duration::from_millis(500));
    assert_eq!(
        vsrc.static_pad("src").unwrap().last_flow_result(),
        Ok(gst::FlowSuccess::Ok),
        "the camera stopped"
    );
    let frames = h.frames_since(t + 200_000_000);
    assert!(!frames.is_empty());
    for f in &frames {
        assert!(
            f.colours[0].count > 1000,
            "A missing after the errors: {:?}",
            f.colours[0]
        );
    }
}
