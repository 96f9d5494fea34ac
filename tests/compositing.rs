//! Consent-gated compositing end to end: two `gremium publish` clients with distinct
//! colours and tones publish over WHIP (loopback ICE) into an in-process Gremium with
//! the GStreamer media plane; the recording-audience program is read back at pixel
//! and sample level while consent and layout change through the HTTP API.

mod common;

use std::time::Duration;

use common::*;
use gremium_compositor::testing::Tap;
use gremium_compositor::{Canvas, NonConsenting, ProgramSettings};
use gremium_protocol::Audience;
use gremium_signaling::Role;
use reqwest::Method;
use serde_json::json;

const W: u32 = 640;
const H: u32 = 360;
/// As VP8 and Opus bring them back: the publishers send ffd700 and 1e50ff.
const GOLD: [u8; 3] = [0xff, 0xd7, 0x00];
const AZURE: [u8; 3] = [0x1e, 0x50, 0xff];
const TONE_A: f64 = 500.0;
const TONE_B: f64 = 1300.0;
/// The publisher's sine measures ~0.3–0.5 after Opus; absent means below 0.03.
const AUDIBLE: f64 = 0.08;
const SILENT: f64 = 0.03;

fn publish(who: &Participant, color: &str, tone: &str, screen: bool) -> Publisher {
    let mut extra = vec!["--color", color, "--tone", tone, "--duration", "25"];
    if screen {
        extra.push("--screen");
    }
    who.publish(&extra)
}

/// Wait until the tap's output reached running time `t`.
async fn reach(tap: &Tap, t: u64) {
    for _ in 0..300 {
        if tap.reached(t) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("program stalled before {t} ns: {:?}", tap.latest());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_program_shows_and_plays_only_consenting_participants() {
    let program = ProgramSettings {
        canvas: Canvas {
            width: W,
            height: H,
        },
        fps: 15,
        labels: false,
        non_consenting: NonConsenting::Hide,
        latency: Duration::from_millis(200),
        ..ProgramSettings::default()
    };
    let (app, media) = spawn_with_gst_media(Duration::from_secs(10), 10, program).await;
    let moderator = app.moderator();
    let m = moderator.create_meeting("Bauausschuss").await;
    let mid = m.id.clone();
    let anna = m.add_participant("Anna Alt").await;
    let bernd = m.add_participant("Bernd Berg").await;
    let (mut ws, _) = m.events().await;
    let consent = |recording: bool| Consent {
        recording,
        streaming: false,
    };
    // A consents before publishing; B never does.
    anna.set_consent(consent(true)).await;
    let _pa = publish(&anna, "ffd700", "500", false);
    // B shares a screen (featured by the screen-share layout below).
    let _pb = publish(&bernd, "1e50ff", "1300", true);
    // Both speak all the time: the active speaker detector names one of them (maybe
    // before the second publisher's media started, so both are awaited together).
    let (mut started, mut speaker) = (0, None);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while started < 2 || speaker.is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{started} media started, speaker {speaker:?}"
        );
        let e = next_event(&mut ws).await;
        match e["type"].as_str() {
            Some("participant_media_started") => started += 1,
            Some("active_speaker_changed") => speaker = Some(e["participant_id"].clone()),
            _ => {}
        }
    }
    let speaker = speaker.unwrap();
    assert!(
        speaker == anna.id.as_str() || speaker == bernd.id.as_str(),
        "{speaker}"
    );

    let tap = Tap::new(W, H, vec![GOLD, AZURE], vec![TONE_A, TONE_B]);
    let meeting_id = mid.parse().unwrap();
    media
        .attach_consumer(meeting_id, Audience::Recording, tap.bin().clone())
        .await
        .expect("consumer attached");
    // Until A's first frame arrives, then 3 s of program.
    let mut first = None;
    for _ in 0..200 {
        first = tap
            .frames_since(0)
            .iter()
            .find(|f| f.colours[0].count > 200)
            .map(|f| f.running_ns);
        if first.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let first = first.unwrap_or_else(|| {
        let frames = tap.frames_since(0);
        panic!(
            "A never appeared in the recording program: {} frames, latest {:?}, last {:?}",
            frames.len(),
            tap.latest(),
            frames.last()
        )
    });
    reach(&tap, first + 3_000_000_000).await;
    let frames = tap.frames_since(first);
    assert!(frames.len() >= 30, "{} frames", frames.len());
    for f in &frames {
        assert!(f.colours[0].count > 200, "a frame without A: {f:?}");
    }
    assert!(
        tap.frames_since(0).iter().all(|f| f.colours[1].count == 0),
        "B appeared in the recording program without consent"
    );
    // A's tile is the only one (B is hidden), where the layout put it.
    let last = frames.last().unwrap().colours[0];
    let placements = media
        .placements(meeting_id, Audience::Recording)
        .await
        .unwrap();
    assert_eq!(placements.len(), 1, "{placements:?}");
    let r = placements[0].rect;
    for (got, want) in [
        (last.min_x, r.x),
        (last.min_y, r.y),
        (last.max_x, r.x + r.w - 1),
        (last.max_y, r.y + r.h - 1),
    ] {
        assert!(got.abs_diff(want) <= 4, "A's tile {last:?} vs layout {r:?}");
    }
    assert!(r.w >= W - 20, "a single tile fills the canvas: {r:?}");
    let chunks = tap.chunks_since(first + 500_000_000);
    assert!(chunks.len() >= 200, "{} audio windows", chunks.len());
    let with_a = chunks.iter().filter(|c| c.tones[0] > AUDIBLE).count();
    assert!(
        with_a * 100 >= chunks.len() * 90,
        "A's tone in only {with_a} of {} windows",
        chunks.len()
    );
    // B at its real level would measure ~0.3 in every window. Opus concealment glitches
    // in A's audio can leak a little into B's bin now and then; never B's level.
    let all = tap.chunks_since(0);
    let b_max = all.iter().map(|c| c.tones[1]).fold(0.0, f64::max);
    let b_traces = all.iter().filter(|c| c.tones[1] >= SILENT).count();
    assert!(
        b_max < 0.1 && b_traces * 100 <= all.len(),
        "B's tone heard: max {b_max}, {b_traces} of {} windows",
        all.len()
    );

    // A second consumer comes and goes while the program runs; the first one keeps
    // getting the program throughout (a consumer attached or detached mid-stream must
    // never stop the program for the others).
    let second = Tap::new(W, H, vec![GOLD, AZURE], vec![TONE_A, TONE_B]);
    let second_id = media
        .attach_consumer(meeting_id, Audience::Recording, second.bin().clone())
        .await
        .expect("second consumer");
    let now = tap.latest().0.unwrap();
    reach(&tap, now + 1_000_000_000).await;
    reach(&second, now + 500_000_000).await;
    assert!(second
        .frames_since(0)
        .iter()
        .any(|f| f.colours[0].count > 200));
    assert!(media.detach_consumer(meeting_id, second_id).await);
    let now = tap.latest().0.unwrap();
    reach(&tap, now + 1_000_000_000).await;

    // A withdraws: the answer carries the running time after which nothing of A is
    // in the program.
    let r = anna.set_consent(consent(false)).await;
    let withdrawn = r["media_time_ns"]
        .as_u64()
        .expect("media time of the withdrawal");
    reach(&tap, withdrawn + 1_500_000_000).await;
    let after = tap.frames_since(withdrawn);
    assert!(after.len() >= 15, "{} frames after withdrawal", after.len());
    for f in &after {
        assert_eq!(f.colours[0].count, 0, "A after withdrawal: {f:?}");
    }
    for c in tap.chunks_since(0).iter().filter(|c| c.end_ns > withdrawn) {
        assert!(c.tones[0] < SILENT, "A's tone after withdrawal: {c:?}");
    }
    let ledger = app
        .send(
            Method::GET,
            &format!("/api/v1/meetings/{mid}/ledger"),
            Some(&app.token(&[Role::Admin])),
            None,
        )
        .await;
    assert_eq!(ledger.0, 200, "{}", ledger.1);
    let entries = ledger.1.as_array().expect("ledger entries").clone();
    let last_consent = entries
        .iter()
        .rev()
        .find(|e| e["kind"] == "consent_changed")
        .unwrap();
    let data: serde_json::Value =
        serde_json::from_str(last_consent["data"].as_str().unwrap()).unwrap();
    assert_eq!(
        data["media_time_ns"], withdrawn,
        "ledger records the running time"
    );

    // B consents: B appears (at B's next keyframe) and is heard.
    let r = bernd.set_consent(consent(true)).await;
    let granted = r["media_time_ns"].as_u64().unwrap();
    reach(&tap, granted + 2_500_000_000).await;
    let late = tap.frames_since(granted + 1_500_000_000);
    assert!(!late.is_empty());
    for f in &late {
        assert!(f.colours[1].count > 200 && f.colours[0].count == 0, "{f:?}");
    }
    let heard = tap.chunks_since(granted + 1_500_000_000);
    let with_b = heard.iter().filter(|c| c.tones[1] > AUDIBLE).count();
    assert!(
        with_b * 100 >= heard.len() * 90,
        "B heard in {with_b} of {}",
        heard.len()
    );

    // Layout: A consents again, B is put on the podium alone → only B's tile, only
    // B's sound; announced on the WebSocket and shown by GET.
    anna.set_consent(consent(true)).await;
    let set_layout = |body: serde_json::Value| {
        let (media, path, moderator) = (
            &media,
            format!("/api/v1/meetings/{mid}/layout"),
            moderator.clone(),
        );
        async move {
            let (s, m) = moderator.send(Method::PUT, &path, Some(body)).await;
            assert_eq!(s, 200, "{m}");
            let placements = media
                .placements(meeting_id, Audience::Recording)
                .await
                .unwrap();
            (m, placements)
        }
    };
    let (m, placements) = set_layout(json!({"kind": "podium", "podium": [bernd.id]})).await;
    assert_eq!(m["layout"]["kind"], "podium");
    let e = wait_event(&mut ws, "layout_changed", |_| true).await;
    assert_eq!(e["layout"]["podium"], json!([bernd.id]));
    assert_eq!(placements.len(), 1);
    assert_eq!(placements[0].id.to_string(), bernd.id);
    let now = tap.latest().1.unwrap();
    reach(&tap, now + 1_500_000_000).await;
    let heard = tap.chunks_since(now + 1_000_000_000);
    assert!(
        heard.iter().all(|c| c.tones[0] < SILENT),
        "the audience (A) is not heard on the podium layout"
    );
    // Back to the grid: both side by side.
    let (_, t) = set_layout(json!({"kind": "grid"})).await;
    assert_eq!(t.len(), 2, "{t:?}");
    let now = tap.latest().0.unwrap();
    reach(&tap, now + 1_500_000_000).await;
    let f = tap.frames_since(now + 1_000_000_000).pop().unwrap();
    assert!(
        f.colours[0].count > 200 && f.colours[1].count > 200,
        "{f:?}"
    );
    for (i, who) in [&anna.id, &bernd.id].into_iter().enumerate() {
        let r = t.iter().find(|p| p.id.to_string() == *who).unwrap().rect;
        let seen = f.colours[i];
        assert!(
            seen.min_x.abs_diff(r.x) <= 4 && seen.max_x.abs_diff(r.x + r.w - 1) <= 4,
            "participant {i} at {seen:?}, layout {r:?}"
        );
    }
    assert_ne!(t[0].rect.x, t[1].rect.x, "side by side");

    // Screen share: B's screen large, A in the filmstrip, at pixel level.
    let (_, t) = set_layout(json!({"kind": "screen_share"})).await;
    let big = t.iter().max_by_key(|p| p.rect.area()).unwrap();
    assert_eq!(
        big.id.to_string(),
        bernd.id,
        "the screen share is featured: {t:?}"
    );
    let now = tap.latest().0.unwrap();
    reach(&tap, now + 1_500_000_000).await;
    let f = tap.frames_since(now + 1_000_000_000).pop().unwrap();
    assert!(
        f.colours[1].max_x - f.colours[1].min_x > 3 * (f.colours[0].max_x - f.colours[0].min_x),
        "B's screen much wider than A's filmstrip tile: {f:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layout_requests_are_checked() {
    let (app, _media) =
        spawn_with_gst_media(Duration::from_secs(10), 10, ProgramSettings::default()).await;
    let moderator = app.moderator();
    let mid = moderator.create_meeting("Rat").await.id;
    let (pid, join) = moderator
        .meeting(&mid)
        .add_participant("A")
        .await
        .into_parts();
    let path = format!("/api/v1/meetings/{mid}/layout");
    let stranger = uuid::Uuid::new_v4();
    let cases = [
        (Some(join.token()), json!({"kind": "grid"}), 403),
        (None, json!({"kind": "grid"}), 401),
        (Some(moderator.token()), json!({"kind": "mosaic"}), 422),
        (
            Some(moderator.token()),
            json!({"kind": "grid", "extra": 1}),
            422,
        ),
        (
            Some(moderator.token()),
            json!({"kind": "speaker", "pinned": stranger}),
            422,
        ),
        (
            Some(moderator.token()),
            json!({"kind": "podium", "podium": [pid, stranger]}),
            422,
        ),
    ];
    for (token, body, want) in cases {
        let (s, r) = app
            .send(Method::PUT, &path, token, Some(body.clone()))
            .await;
        assert_eq!(s, want, "{body} → {r}");
        if s >= 400 && s != 401 {
            assert!(r["error"]["message"].is_string(), "{r}");
        }
    }
    let (s, r) = {
        let resp = app
            .http
            .post(app.url(&format!("/whip/{mid}?content=hologram")))
            .bearer_auth(join.token())
            .header("content-type", "application/sdp")
            .body("v=0\r\n")
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    };
    assert_eq!(s, 422, "{r}");
    assert!(r.contains("content"), "{r}");
    let (s, _) = moderator
        .send(
            Method::PUT,
            &format!("/api/v1/meetings/{}/layout", uuid::Uuid::new_v4()),
            Some(json!({"kind": "grid"})),
        )
        .await;
    assert_eq!(s, 404);
    let (s, m) = moderator
        .send(
            Method::PUT,
            &path,
            Some(json!({"kind": "speaker", "pinned": pid, "podium": [pid, pid]})),
        )
        .await;
    assert_eq!(s, 200, "{m}");
    assert_eq!(
        m["layout"],
        json!({"kind": "speaker", "pinned": pid, "podium": [pid]})
    );
    let (_, got) = moderator
        .send(Method::GET, &format!("/api/v1/meetings/{mid}"), None)
        .await;
    assert_eq!(got["layout"]["kind"], "speaker", "{got}");
    moderator
        .send(Method::POST, &format!("/api/v1/meetings/{mid}/end"), None)
        .await;
    let (s, _) = moderator
        .send(Method::PUT, &path, Some(json!({"kind": "grid"})))
        .await;
    assert_eq!(s, 409, "ended meetings keep their layout");
}
