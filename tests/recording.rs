//! Recording end to end: participants publish over WHIP, a moderator starts and
//! stops a recording through the API, and the archive is checked the way an archivist
//! would: ffprobe reads the media over HTTP (Range requests, decrypted on the fly) and
//! sees H.264 + AAC of the right length, frames decoded by ffmpeg show the consenting
//! participant and never the one who did not consent, the poster shows her too; what
//! lies on disk is not the plaintext; roles are enforced; deletion shreds it for good.

mod common;

use std::time::Duration;

use common::*;
use reqwest::Method;

const GOLD: [u8; 3] = [0xff, 0xd7, 0x00];
const AZURE: [u8; 3] = [0x1e, 0x50, 0xff];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_holds_only_consenting_participants_and_plays() {
    let dir = std::env::temp_dir().join(format!("gremium-rec-{}", uuid::Uuid::new_v4()));
    let (app, _media) = spawn_with_gst_media_in(
        Duration::from_secs(10),
        10,
        unlabelled_program(),
        dir.clone(),
    )
    .await;
    let chair = app.moderator();
    let m = chair.create_meeting("Finanzausschuss").await;
    let anna = m.add_participant("Anna").await;
    let bernd = m.add_participant("Bernd").await;
    anna.set_consent(Consent::RECORDING).await;
    let (mut ws, _) = m.events().await;
    let _pa = anna.publish_small("ffd700", 30);
    let _pb = bernd.publish_small("1e50ff", 30);
    wait_cameras_on(&mut ws, 2).await;

    // Agenda: item 1 is under way when the recording starts, item 2 begins in it.
    m.add_chapter("TOP 0: Eröffnung").await;
    m.add_chapter("TOP 1: Tagesordnung").await;
    let rec = m.start_recording().await;
    let started = std::time::Instant::now();
    let rid = rec.id.clone();
    wait_event(&mut ws, "recording_state_changed", |e| {
        e["state"] == "active"
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    m.add_chapter("TOP 2: Haushalt").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    rec.stop().await;
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
    let (s, _) = chair.send(Method::POST, &rec.path("/stop"), None).await;
    assert_eq!(
        s, 409,
        "stopping a finished recording again changes nothing"
    );

    // The archive's view: validated by ffmpeg when it was finalized.
    let archivist = app.archivist();
    let archived = rec.acting_as(&archivist);
    let view = archived.view().await;
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
    let manifest = archived.manifest().await;
    assert_eq!(manifest["meeting"]["title"], "Finanzausschuss");
    let people = manifest["participants"].as_array().unwrap();
    assert_eq!(
        people.len(),
        1,
        "only the consenting participant appears: {manifest}"
    );
    assert_eq!(people[0]["id"], anna.id.as_str());
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
    let m_archived = m.acting_as(&archivist);
    let hashes = m_archived.ledger().await.to_string();
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
    let (streams, duration) = archived.probe();
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
    // Every decoded frame (2 per second) shows A and never B.
    let frames = archived.decode_frames(2, 640, 360);
    assert!(frames.len() >= 6, "{} frames", frames.len());
    // The first frame may precede A's first decoded picture.
    for (i, f) in frames.iter().enumerate().skip(1) {
        assert!(f.count(GOLD) > 10_000, "frame {i}: A missing");
        assert_eq!(
            f.count(AZURE),
            0,
            "frame {i}: B (no consent) in the recording"
        );
    }

    // A Range request gets exactly those bytes of the full media.
    let media_path = rec.path("/media");
    let full = archivist
        .request(Method::GET, &media_path)
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
        let part = archivist
            .request(Method::GET, &media_path)
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
    let beyond = archivist
        .request(Method::GET, &media_path)
        .header("range", format!("bytes={}-", full.len()))
        .send()
        .await
        .unwrap();
    assert_eq!(beyond.status(), 416);

    // The poster is a JPEG showing A.
    let poster = archivist
        .request(Method::GET, &rec.path("/poster"))
        .send()
        .await
        .unwrap();
    assert_eq!(poster.status(), 200);
    assert_eq!(poster.headers()["content-type"], "image/jpeg");
    let jpeg = poster.bytes().await.unwrap();
    let rgb = Ffmpeg::bytes(jpeg.to_vec(), "image2pipe").rgb();
    let poster = Frame(&rgb);
    let gold = poster.count(GOLD);
    assert!(
        gold > poster.pixels() / 10,
        "poster without A: {gold} gold pixels"
    );

    // Roles: the meeting is not public, so viewers and moderators may not read it,
    // participants never; without a token it is 401.
    let viewer = app.viewer();
    for (who, caller, expected) in [
        ("viewer", &viewer, 403),
        ("moderator", &chair, 403),
        ("participant", &anna.client, 403),
        ("anonymous", &app.anonymous(), 401),
    ] {
        let status = caller
            .request(Method::GET, &media_path)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, expected, "{who}");
    }
    let page = archivist.archive("").await;
    assert_eq!(page["items"][0]["recording"]["id"], rid.as_str());
    assert_eq!(page["items"][0]["meeting_title"], "Finanzausschuss");
    let page = viewer.archive("").await;
    assert_eq!(
        page["items"].as_array().unwrap().len(),
        0,
        "viewers see public meetings only"
    );
    let page = archivist.archive("?q=FINANZ&public=false").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
    archivist.archive("?q=Bauausschuss").await;

    // Every read is in the meeting's ledger.
    let ledger = m_archived.ledger().await;
    let reads = ledger.to_string().matches("archive_access").count();
    assert!(reads >= 6, "{reads} archive_access entries");

    // Deletion: moderators may not; an archivist may, and then nothing reads it.
    let (s, _) = chair.send(Method::DELETE, &rec.path(""), None).await;
    assert_eq!(s, 403);
    for _ in 0..2 {
        // 204 both times: deleting twice is harmless.
        archived.delete().await;
    }
    for path in ["/media", "/poster"] {
        let (status, _) = archivist.get(&rec.path(path)).await;
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
    let (_, view) = archivist.get(&rec.path("")).await;
    assert_eq!(view["deletion_reason"], "request", "{view}");
    assert!(view["media"].is_null(), "{view}");
    let ledger = m_archived.ledger().await;
    assert!(ledger.to_string().contains("recording_deleted"), "{ledger}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// With `streaming.non_public_recording = "slate"` the recording shows the slate
/// during a non-public part too, and the program again afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_can_show_the_slate_in_non_public_parts() {
    const SLATE: [u8; 3] = [0x1d, 0x35, 0x57];
    let dir = std::env::temp_dir().join(format!("gremium-rec-{}", uuid::Uuid::new_v4()));
    let streaming = gremium_mediaplane::StreamingSettings {
        slate_recording: true,
        ..Default::default()
    };
    let (app, _media) =
        spawn_with_gst_media_streaming(unlabelled_program(), dir.clone(), streaming).await;
    let chair = app.moderator();
    let m = chair.create_public_meeting("Hauptausschuss").await;
    let anna = m.add_participant("Anna").await;
    anna.set_consent(Consent::RECORDING).await;
    let (mut ws, _) = m.events().await;
    let _pa = anna.publish_small("ffd700", 30);
    wait_cameras_on(&mut ws, 1).await;
    let rec = m.start_recording().await;
    wait_event(&mut ws, "recording_state_changed", |e| {
        e["state"] == "active"
    })
    .await;
    let started = std::time::Instant::now();
    let reason = "TOP 9: Grundstücksangelegenheiten";
    tokio::time::sleep(Duration::from_secs(4)).await;
    let off = started.elapsed().as_secs_f64();
    m.set_public(false, reason).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let on = started.elapsed().as_secs_f64();
    m.set_public(true, reason).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    rec.stop().await;
    let end = started.elapsed().as_secs_f64();
    let done = wait_event_for(
        &mut ws,
        Duration::from_secs(30),
        "recording_state_changed",
        |e| e["state"] == "finished" || e["state"] == "failed",
    )
    .await;
    assert_eq!(done["state"], "finished", "{done}");

    let frames = rec.acting_as(&app.archivist()).decode_frames(2, 640, 360);
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
        let count = |c| f.count(c);
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
    let _ = std::fs::remove_dir_all(&dir);
}
