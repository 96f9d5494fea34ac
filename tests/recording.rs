//! Recording end to end: participants publish over WHIP, a moderator starts and
//! stops a recording through the API, and the archive is checked the way an archivist
//! would: ffprobe reads the media over HTTP (Range requests, decrypted on the fly) and
//! sees H.264 + AAC of the right length, frames decoded by ffmpeg show the consenting
//! participant and never the one who did not consent, the poster shows her too; what
//! lies on disk is not the plaintext; roles are enforced; deletion shreds it for good.

mod common;

use std::time::Duration;

use common::*;
use gremium_compositor::testing::near;
use gremium_compositor::{Canvas, ProgramSettings};
use gremium_signaling::Role;
use reqwest::Method;
use serde_json::json;

const GOLD: [u8; 3] = [0xff, 0xd7, 0x00];
const AZURE: [u8; 3] = [0x1e, 0x50, 0xff];

fn publish(base: &str, mid: &str, join: &str, color: &str) -> std::process::Child {
    spawn_small_publisher(base, mid, join, color, 30)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_holds_only_consenting_participants_and_plays() {
    let dir = std::env::temp_dir().join(format!("gremium-rec-{}", uuid::Uuid::new_v4()));
    let program = ProgramSettings {
        canvas: Canvas {
            width: 640,
            height: 360,
        },
        fps: 15,
        labels: false,
        ..ProgramSettings::default()
    };
    let (app, _media) =
        spawn_with_gst_media_in(Duration::from_secs(10), 10, program, dir.clone()).await;
    let moderator = app.token(&[Role::Moderator]);
    let mid = app.create_meeting(&moderator, "Finanzausschuss").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (a, a_join) = app.add_participant(&moderator, &mid, "Anna").await;
    let (_b, b_join) = app.add_participant(&moderator, &mid, "Bernd").await;
    app.set_consent(&mid, &a, &a_join, true, false).await;
    let mut ws = ws_connect(app.addr, &mid, &moderator).await;
    next_event(&mut ws).await;
    let mut pa = publish(&app.base, &mid, &a_join, "ffd700");
    let mut pb = publish(&app.base, &mid, &b_join, "1e50ff");
    wait_cameras_on(&mut ws, 2).await;

    let chapter = |title: &'static str| {
        let (app, path, moderator) = (
            &app,
            format!("/api/v1/meetings/{mid}/chapters"),
            moderator.clone(),
        );
        async move {
            let (s, c) = app
                .send(
                    Method::POST,
                    &path,
                    Some(&moderator),
                    Some(json!({ "title": title })),
                )
                .await;
            assert_eq!(s, 201, "{c}");
        }
    };
    // Agenda: item 1 is under way when the recording starts, item 2 begins in it.
    chapter("TOP 0: Eröffnung").await;
    chapter("TOP 1: Tagesordnung").await;
    let (s, rec) = app
        .send(
            Method::POST,
            &format!("/api/v1/meetings/{mid}/recordings"),
            Some(&moderator),
            None,
        )
        .await;
    assert_eq!(s, 201, "{rec}");
    let started = std::time::Instant::now();
    let rid = rec["id"].as_str().unwrap().to_string();
    wait_event(&mut ws, "recording_state_changed", |e| {
        e["state"] == "active"
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    chapter("TOP 2: Haushalt").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    app.stop(&moderator, "recordings", &rid).await;
    let recorded = started.elapsed().as_secs_f64();
    // Post-processing reports progress before the recording is finished.
    let mut progress = 0;
    let done = loop {
        let e = next_event(&mut ws).await;
        if e["type"] == "recording_progress" {
            progress += 1;
        }
        if e["type"] == "recording_state_changed"
            && (e["state"] == "finished" || e["state"] == "failed")
        {
            break e;
        }
    };
    assert!(progress > 0, "no recording_progress event");
    assert_eq!(done["state"], "finished", "{done}");
    let (s, _) = app
        .send(
            Method::POST,
            &format!("/api/v1/recordings/{rid}/stop"),
            Some(&moderator),
            None,
        )
        .await;
    assert_eq!(
        s, 409,
        "stopping a finished recording again changes nothing"
    );

    // The archive's view: validated by ffmpeg when it was finalized.
    let archivist = app.token(&[Role::Archivist]);
    let (s, view) = app
        .send(
            Method::GET,
            &format!("/api/v1/recordings/{rid}"),
            Some(&archivist),
            None,
        )
        .await;
    assert_eq!(s, 200, "{view}");
    let media = &view["media"];
    let kinds: Vec<(&str, &str)> = media["probe"]["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["kind"].as_str().unwrap(), s["codec"].as_str().unwrap()))
        .collect();
    assert!(
        kinds.contains(&("video", "h264")) && kinds.contains(&("audio", "aac")),
        "{view}"
    );
    let validated = media["duration_s"].as_f64().unwrap();
    let first = media["probe"]["first_fragment_ms"].as_u64().unwrap();
    eprintln!("recorded {recorded:.2} s, validated {validated:.2} s, first fragment {first} ms");
    assert!(
        first <= 1000,
        "start → first keyframe on disk took {first} ms"
    );
    assert!(
        (validated - recorded).abs() < 0.6,
        "validated {validated} s, recorded {recorded} s"
    );

    // The manifest: who appears when (A throughout, B never), ledger heads, hashes.
    let (s, manifest) = app
        .send(
            Method::GET,
            &format!("/api/v1/recordings/{rid}/manifest"),
            Some(&archivist),
            None,
        )
        .await;
    assert_eq!(s, 200, "{manifest}");
    assert_eq!(manifest["meeting"]["title"], "Finanzausschuss");
    let people = manifest["participants"].as_array().unwrap();
    assert_eq!(
        people.len(),
        1,
        "only the consenting participant appears: {manifest}"
    );
    assert_eq!(people[0]["id"], a.as_str());
    assert_eq!(people[0]["display_name"], "Anna");
    let ranges = people[0]["appears_ms"].as_array().unwrap();
    assert_eq!(ranges.len(), 1, "{manifest}");
    assert!(ranges[0][0].as_u64().unwrap() < 300, "{manifest}");
    assert!(
        ranges[0][1].as_f64().unwrap() / 1000.0 > recorded - 0.6,
        "{manifest}"
    );
    assert_eq!(manifest["objects"][0]["sha256"], media["stored_sha256"]);
    let chapters: Vec<(&str, u64)> = manifest["chapters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["title"].as_str().unwrap(),
                c["offset_ms"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(chapters.len(), 2, "{manifest}");
    assert_eq!(chapters[0], ("TOP 1: Tagesordnung", 0));
    assert_eq!(chapters[1].0, "TOP 2: Haushalt");
    assert!(
        (1_500..=3_500).contains(&chapters[1].1),
        "TOP 2 about 2 s in: {manifest}"
    );
    let (_, ledger) = app
        .send(
            Method::GET,
            &format!("/api/v1/meetings/{mid}/ledger"),
            Some(&archivist),
            None,
        )
        .await;
    let hashes = ledger.to_string();
    for at in ["at_start", "at_stop"] {
        let h = manifest["ledger"][at]["hash"].as_str().unwrap();
        assert!(hashes.contains(h), "{at} hash {h} not in the ledger");
    }

    // What lies on disk is encrypted: no MP4 box names, no spool left behind.
    let stored =
        std::fs::read(dir.join(format!("objects/recordings/{rid}/media.mp4.sealed"))).unwrap();
    let plain = media["bytes"].as_u64().unwrap();
    assert_eq!(
        stored.len() as u64,
        31 + plain + 16 * plain.div_ceil(65_536).max(1)
    );
    let digest = ring::digest::digest(&ring::digest::SHA256, &stored);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex,
        media["stored_sha256"].as_str().unwrap(),
        "manifest hash = stored bytes"
    );
    for word in [&b"ftyp"[..], b"moov", b"mdat", b"moof"] {
        assert!(
            !stored.windows(4).any(|w| w == word),
            "{:?} in the stored bytes",
            std::str::from_utf8(word)
        );
    }
    assert!(!dir.join(format!("spool/{rid}.spool")).exists());

    // ffprobe over HTTP, as a player would (it seeks with Range requests).
    let (streams, duration) = app.probe_media(&archivist, &rid);
    let codecs: Vec<&str> = streams
        .iter()
        .map(|s| s["codec_name"].as_str().unwrap())
        .collect();
    assert!(
        codecs.contains(&"h264") && codecs.contains(&"aac"),
        "{streams:?}"
    );
    assert!(
        (duration - recorded).abs() < 0.6,
        "ffprobe {duration} s, recorded {recorded} s"
    );
    let url = format!("{}/api/v1/recordings/{rid}/media", app.base);
    let auth = format!("Authorization: Bearer {archivist}\r\n");

    // Every decoded frame (2 per second) shows A and never B.
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-headers", &auth, "-i"])
        .arg(&url)
        .args(["-vf", "fps=2", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let frame = 640 * 360 * 3;
    let frames: Vec<&[u8]> = out.stdout.chunks_exact(frame).collect();
    assert!(frames.len() >= 6, "{} frames", frames.len());
    // The first frame may precede A's first decoded picture.
    for (i, f) in frames.iter().enumerate().skip(1) {
        let count = |c| f.chunks_exact(3).filter(|px| near(px, c)).count();
        assert!(count(GOLD) > 10_000, "frame {i}: A missing");
        assert_eq!(
            count(AZURE),
            0,
            "frame {i}: B (no consent) in the recording"
        );
    }

    // A Range request gets exactly those bytes of the full media.
    let full = app
        .http
        .get(&url)
        .bearer_auth(&archivist)
        .send()
        .await
        .unwrap();
    assert_eq!(full.status(), 200);
    assert_eq!(full.headers()["content-type"], "video/mp4");
    let full = full.bytes().await.unwrap();
    assert_eq!(full.len() as u64, media["bytes"].as_u64().unwrap());
    for (range, from, to) in [
        ("bytes=100-70099", 100, 70_100),
        ("bytes=-10", full.len() - 10, full.len()),
    ] {
        let part = app
            .http
            .get(&url)
            .bearer_auth(&archivist)
            .header("range", range)
            .send()
            .await
            .unwrap();
        assert_eq!(part.status(), 206, "{range}");
        assert_eq!(
            part.headers()["content-range"].to_str().unwrap(),
            format!("bytes {from}-{}/{}", to - 1, full.len())
        );
        assert_eq!(&part.bytes().await.unwrap()[..], &full[from..to], "{range}");
    }
    let beyond = app
        .http
        .get(&url)
        .bearer_auth(&archivist)
        .header("range", format!("bytes={}-", full.len()))
        .send()
        .await
        .unwrap();
    assert_eq!(beyond.status(), 416);

    // The poster is a JPEG showing A.
    let poster = app
        .http
        .get(format!("{}/api/v1/recordings/{rid}/poster", app.base))
        .bearer_auth(&archivist)
        .send()
        .await
        .unwrap();
    assert_eq!(poster.status(), 200);
    assert_eq!(poster.headers()["content-type"], "image/jpeg");
    let jpeg = poster.bytes().await.unwrap();
    let mut decode = std::process::Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-f",
            "image2pipe",
            "-i",
            "-",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut decode.stdin.take().unwrap(), &jpeg).unwrap();
    let rgb = decode.wait_with_output().unwrap().stdout;
    let gold = rgb.chunks_exact(3).filter(|px| near(px, GOLD)).count();
    assert!(
        gold > rgb.len() / 3 / 10,
        "poster without A: {gold} gold pixels"
    );

    // Roles: the meeting is not public, so viewers and moderators may not read it,
    // participants never; without a token it is 401.
    let viewer = app.token(&[Role::Viewer]);
    for (token, expected) in [
        (Some(&viewer), 403),
        (Some(&moderator), 403),
        (Some(&a_join), 403),
        (None, 401),
    ] {
        let mut req = app.http.get(&url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        assert_eq!(req.send().await.unwrap().status(), expected);
    }
    let (s, page) = app
        .send(Method::GET, "/api/v1/archive", Some(&archivist), None)
        .await;
    assert_eq!(s, 200, "{page}");
    assert_eq!(page["items"][0]["recording"]["id"], rid.as_str());
    assert_eq!(page["items"][0]["meeting_title"], "Finanzausschuss");
    let (s, page) = app
        .send(Method::GET, "/api/v1/archive", Some(&viewer), None)
        .await;
    assert_eq!(s, 200, "{page}");
    assert_eq!(
        page["items"].as_array().unwrap().len(),
        0,
        "viewers see public meetings only"
    );
    let (s, page) = app
        .send(
            Method::GET,
            "/api/v1/archive?q=FINANZ&public=false",
            Some(&archivist),
            None,
        )
        .await;
    assert_eq!(
        (s, page["items"].as_array().unwrap().len()),
        (200, 1),
        "{page}"
    );
    let (s, _) = app
        .send(
            Method::GET,
            "/api/v1/archive?q=Bauausschuss",
            Some(&archivist),
            None,
        )
        .await;
    assert_eq!(s, 200);

    // Every read is in the meeting's ledger.
    let (_, ledger) = app
        .send(
            Method::GET,
            &format!("/api/v1/meetings/{mid}/ledger"),
            Some(&archivist),
            None,
        )
        .await;
    let reads = ledger.to_string().matches("archive_access").count();
    assert!(reads >= 6, "{reads} archive_access entries");

    // Deletion: moderators may not; an archivist may, and then nothing reads it.
    let (s, _) = app
        .send(
            Method::DELETE,
            &format!("/api/v1/recordings/{rid}"),
            Some(&moderator),
            None,
        )
        .await;
    assert_eq!(s, 403);
    for _ in 0..2 {
        let (s, _) = app
            .send(
                Method::DELETE,
                &format!("/api/v1/recordings/{rid}"),
                Some(&archivist),
                None,
            )
            .await;
        assert_eq!(s, 204, "deleting twice is harmless");
    }
    for path in ["media", "poster"] {
        let status = app
            .get_status(&archivist, &format!("recordings/{rid}/{path}"))
            .await;
        assert_eq!(status, 410, "{path}");
    }
    assert!(app
        .db
        .recording_key(uuid::Uuid::parse_str(&rid).unwrap())
        .await
        .unwrap()
        .is_none());
    assert!(!dir
        .join(format!("objects/recordings/{rid}/media.mp4.sealed"))
        .exists());
    // A copy kept elsewhere (a backup) is unreadable now too: the data key is gone.
    let err = app
        .vault
        .data_key(&app.db, uuid::Uuid::parse_str(&rid).unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(err, gremium_storage::VaultError::Shredded),
        "{err}"
    );
    let (_, view) = app
        .send(
            Method::GET,
            &format!("/api/v1/recordings/{rid}"),
            Some(&archivist),
            None,
        )
        .await;
    assert_eq!(view["deletion_reason"], "request", "{view}");
    assert!(view["media"].is_null(), "{view}");
    let (_, ledger) = app
        .send(
            Method::GET,
            &format!("/api/v1/meetings/{mid}/ledger"),
            Some(&archivist),
            None,
        )
        .await;
    assert!(ledger.to_string().contains("recording_deleted"), "{ledger}");

    for p in [&mut pa, &mut pb] {
        let _ = p.kill();
        let _ = p.wait();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// With `streaming.non_public_recording = "slate"` the recording shows the slate
/// during a non-public part too, and the program again afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_can_show_the_slate_in_non_public_parts() {
    const SLATE: [u8; 3] = [0x1d, 0x35, 0x57];
    let dir = std::env::temp_dir().join(format!("gremium-rec-{}", uuid::Uuid::new_v4()));
    let program = ProgramSettings {
        canvas: Canvas {
            width: 640,
            height: 360,
        },
        fps: 15,
        labels: false,
        ..ProgramSettings::default()
    };
    let streaming = gremium_mediaplane::StreamingSettings {
        slate_recording: true,
        ..Default::default()
    };
    let (app, _media) = spawn_with_gst_media_streaming(program, dir.clone(), streaming).await;
    let moderator = app.token(&[Role::Moderator]);
    let mid = app
        .create_public_meeting(&moderator, "Hauptausschuss")
        .await;
    let (a, a_join) = app.add_participant(&moderator, &mid, "Anna").await;
    app.set_consent(&mid, &a, &a_join, true, false).await;
    let mut ws = ws_connect(app.addr, &mid, &moderator).await;
    next_event(&mut ws).await;
    let mut pa = publish(&app.base, &mid, &a_join, "ffd700");
    wait_cameras_on(&mut ws, 1).await;
    let rid = app.start_recording(&moderator, &mid).await;
    wait_event(&mut ws, "recording_state_changed", |e| {
        e["state"] == "active"
    })
    .await;
    let started = std::time::Instant::now();
    let switch = |public: bool| {
        let (app, path, moderator) = (
            &app,
            format!("/api/v1/meetings/{mid}/public"),
            moderator.clone(),
        );
        async move {
            let (s, r) = app
                .send(
                    Method::PUT,
                    &path,
                    Some(&moderator),
                    Some(json!({"public": public, "reason": "TOP 9: Grundstücksangelegenheiten"})),
                )
                .await;
            assert_eq!(s, 200, "{r}");
        }
    };
    tokio::time::sleep(Duration::from_secs(4)).await;
    let off = started.elapsed().as_secs_f64();
    switch(false).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let on = started.elapsed().as_secs_f64();
    switch(true).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    app.stop(&moderator, "recordings", &rid).await;
    let end = started.elapsed().as_secs_f64();
    let done = wait_event_for(
        &mut ws,
        Duration::from_secs(30),
        "recording_state_changed",
        |e| e["state"] == "finished" || e["state"] == "failed",
    )
    .await;
    assert_eq!(done["state"], "finished", "{done}");

    let archivist = app.token(&[Role::Archivist]);
    let out = std::process::Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-headers",
            &format!("Authorization: Bearer {archivist}\r\n"),
            "-i",
        ])
        .arg(format!("{}/api/v1/recordings/{rid}/media", app.base))
        .args(["-vf", "fps=2", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let frames: Vec<&[u8]> = out.stdout.chunks_exact(640 * 360 * 3).collect();
    assert!(
        frames.len() as f64 >= (end - 1.0) * 2.0,
        "{} frames",
        frames.len()
    );
    // Frame i shows media time i/2 s; the recording's media time follows the wall
    // clock since it became active within about half a second.
    let (mut slated, mut program) = (0, 0);
    for (i, f) in frames.iter().enumerate() {
        let t = i as f64 / 2.0;
        let count = |c| f.chunks_exact(3).filter(|px| near(px, c)).count();
        if t > off + 1.5 && t < on - 0.5 {
            assert_eq!(
                count(GOLD),
                0,
                "{t} s: A in the recording's non-public part"
            );
            assert!(count(SLATE) > 640 * 360 / 2, "{t} s: no slate");
            slated += 1;
        } else if (t > 1.0 && t < off - 1.0) || (t > on + 2.0 && t < end - 0.5) {
            assert!(count(GOLD) > 10_000, "{t} s: A missing while public");
            program += 1;
        }
    }
    assert!(
        slated >= 3 && program >= 4,
        "{slated} slate frames, {program} program frames"
    );
    let _ = pa.kill();
    let _ = pa.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
