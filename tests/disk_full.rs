//! Full disks, on real small tmpfs mounts the tests make (the test command runs as
//! root).
//!
//! * The spool disk is too full to start a recording (refused up front), then fills
//!   up during one: the recording is interrupted at once — the moderator hears it on
//!   the WebSocket, with the reason — it keeps every fragment written before, waits
//!   (not fails) while there is no room to finalize it, and is finalized and plays
//!   once space is freed. The meeting carries on: a new recording starts afterwards.
//! * A recording waiting for room can be deleted meanwhile, which frees its spool.
//! * The live disk fills up during a stream: HLS stalls and the moderator is told
//!   why, while the RTMP push goes on.

mod common;

use std::time::{Duration, Instant};

use common::*;
use gremium_storage::testing::SmallDisk;
use reqwest::Method;
use serde_json::{json, Value};

/// A directory for a media plane's files (as [`spawn_with_gst_media_in`] lays them
/// out) whose `sub` directory is on a new 8 MiB tmpfs.
fn files_with_small(sub: &str) -> (SmallDisk, std::path::PathBuf) {
    let disk = SmallDisk::mount(8 * 1024 * 1024);
    let dir = std::env::temp_dir().join(format!("gremium-full-{sub}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(disk.path(), dir.join(sub)).unwrap();
    (disk, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_disk_interrupts_the_recording_and_keeps_what_was_written() {
    // The spool directory is on the small disk; the object store is not.
    let (disk, dir) = files_with_small("spool");
    let PublishingMeeting {
        app,
        media: _media,
        moderator,
        meeting,
        mid,
        mut ws,
        publisher,
        anna: _,
    } = PublishingMeeting::start(dir.clone(), "Bauausschuss", false, Consent::RECORDING).await;
    let archivist = app.archivist();

    // Less room than the media plane asks for (1 MiB here): refused up front, with
    // the reason, and that recording is failed.
    let filler = disk.fill_leaving(512 * 1024);
    let (s, refused) = moderator
        .send(
            Method::POST,
            &format!("/api/v1/meetings/{mid}/recordings"),
            None,
        )
        .await;
    assert_eq!(s, 409, "{refused}");
    let message = refused["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("not enough space on the spool disk")
            && message.contains("1 MiB required"),
        "{refused}"
    );
    let list = moderator
        .get_ok(&format!("/api/v1/meetings/{mid}/recordings"))
        .await;
    assert_eq!(list[0]["state"], "failed", "{list}");
    std::fs::remove_file(&filler).unwrap();

    // Started with room; then the disk fills up but for a few seconds of this
    // recording (a flat picture and a tone: about 20 kB/s).
    let rec = meeting.start_recording().await;
    let rid = rec.id.clone();
    let started = Instant::now();
    wait_event(&mut ws, "recording_state_changed", |e| {
        e["recording_id"] == rid.as_str() && e["state"] == "active"
    })
    .await;
    let filler = disk.fill_leaving(160 * 1024);
    let stopping = wait_event_for(
        &mut ws,
        Duration::from_secs(60),
        "recording_state_changed",
        |e| e["recording_id"] == rid.as_str() && e["state"] == "stopping",
    )
    .await;
    let interrupted_after = started.elapsed().as_secs_f64();
    let reason = stopping["reason"].as_str().unwrap_or_default().to_string();
    assert!(
        reason.contains("No space left") && reason.contains("writing the spool failed"),
        "{stopping}"
    );
    assert!(
        interrupted_after > 2.0,
        "interrupted after {interrupted_after} s"
    );

    // No room to seal it: it waits, and nothing is lost meanwhile.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let view = rec.acting_as(&archivist).view().await;
    assert_eq!(view["state"], "stopping", "{view}");
    assert_eq!(
        view["interruption"].as_str(),
        Some(reason.as_str()),
        "{view}"
    );
    assert!(disk.path().join(format!("{rid}.spool")).exists());

    // Space is freed: it is finalized, with what was written before the disk filled.
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    let view = loop {
        let view = rec.acting_as(&archivist).view().await;
        if view["state"] == "finished" {
            break view;
        }
        assert_ne!(view["state"], "failed", "{view}");
        assert!(
            Instant::now() < deadline,
            "not finalized once space was freed: {view}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(
        view["interruption"].as_str(),
        Some(reason.as_str()),
        "{view}"
    );
    assert!(view["failure"].is_null(), "{view}");
    let duration = view["media"]["duration_s"].as_f64().unwrap();
    assert!(
        duration > 1.0 && duration < interrupted_after + 0.5,
        "stored {duration} s; the disk filled after {interrupted_after} s"
    );
    eprintln!("the disk filled after {interrupted_after:.1} s; {duration:.2} s stored");
    let (streams, played) = rec.acting_as(&archivist).probe();
    let text = Value::Array(streams).to_string();
    assert!(text.contains("h264") && text.contains("aac"), "{text}");
    assert!(
        (played - duration).abs() < 0.5,
        "plays {played} s of {duration} s"
    );
    // Its appearances end with the media.
    let manifest = rec.acting_as(&archivist).manifest().await;
    let end = manifest["participants"][0]["appears_ms"]
        .as_array()
        .and_then(|r| r.last())
        .map(|r| r[1].as_u64().unwrap())
        .unwrap_or_else(|| panic!("no appearance: {manifest}"));
    assert!(end as f64 <= duration * 1000.0 + 1.0, "{manifest}");
    // Nothing of it is left on the spool disk.
    let left: Vec<_> = std::fs::read_dir(disk.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left on the spool disk: {left:?}");

    // The meeting carries on: a new recording starts and runs.
    let second = meeting.start_recording().await;
    wait_event(&mut ws, "recording_state_changed", |e| {
        e["recording_id"] == second.id.as_str() && e["state"] == "active"
    })
    .await;
    second.stop().await;
    drop(publisher);
    drop(app);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The disk stays full: an archivist deletes the recording that waits for room, and
/// that frees the space its spool held (before, 409 until someone freed space).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_waiting_for_room_can_be_deleted_and_its_spool_goes() {
    let (disk, dir) = files_with_small("spool");
    let PublishingMeeting {
        app,
        media: _media,
        moderator,
        meeting,
        mid: _,
        mut ws,
        publisher,
        anna: _,
    } = PublishingMeeting::start(dir.clone(), "Finanzausschuss", false, Consent::RECORDING).await;
    let archivist = app.archivist();
    let rec = meeting.start_recording().await;
    let rid = rec.id.clone();
    wait_event(&mut ws, "recording_state_changed", |e| {
        e["recording_id"] == rid.as_str() && e["state"] == "active"
    })
    .await;
    let delete = |caller: &Client| {
        let (caller, path) = (caller.clone(), rec.path(""));
        async move { caller.send(Method::DELETE, &path, None).await }
    };
    // Running: stop it first.
    let (s, body) = delete(&archivist).await;
    assert_eq!(s, 409, "{body}");
    assert!(body.to_string().contains("stop it first"), "{body}");

    let filler = disk.fill_leaving(160 * 1024);
    wait_event_for(
        &mut ws,
        Duration::from_secs(60),
        "recording_state_changed",
        |e| e["recording_id"] == rid.as_str() && e["state"] == "stopping",
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let view = rec.acting_as(&archivist).view().await;
    assert_eq!(view["state"], "stopping", "{view}");
    let spool = disk.path().join(format!("{rid}.spool"));
    assert!(spool.exists());

    // Moderators may not delete; an archivist may, while it waits.
    let (s, _) = delete(&moderator).await;
    assert_eq!(s, 403);
    let (s, body) = delete(&archivist).await;
    assert_eq!(s, 204, "{body}");
    let (s, _) = delete(&archivist).await;
    assert_eq!(s, 204, "deleting twice is harmless");
    // Its spool is gone at once (the filler is all that is left), and it ends failed
    // with the reason; nothing of it can be read.
    let left: Vec<_> = std::fs::read_dir(disk.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p != &filler)
        .collect();
    assert!(left.is_empty(), "left on the spool disk: {left:?}");
    let failed = wait_event_for(
        &mut ws,
        Duration::from_secs(10),
        "recording_state_changed",
        |e| e["recording_id"] == rid.as_str() && e["state"] == "failed",
    )
    .await;
    assert!(
        failed
            .to_string()
            .contains("deleted while waiting for room"),
        "{failed}"
    );
    assert_eq!(archivist.status(&rec.path("/media")).await, 410);
    // The deletion is in the meeting's ledger.
    let ledger = meeting.acting_as(&archivist).ledger().await;
    assert!(ledger.to_string().contains("recording_deleted"), "{ledger}");
    drop(publisher);
    drop(app);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_live_disk_stalls_hls_and_says_so_while_the_push_goes_on() {
    // The HLS output is on the small disk; spool and objects are not.
    let (disk, dir) = files_with_small("live");
    let nginx = NginxRtmp::start(&dir.join("nginx"));
    let PublishingMeeting {
        app,
        media: _media,
        moderator,
        meeting,
        mid,
        mut ws,
        publisher,
        anna: _,
    } = PublishingMeeting::start(dir.clone(), "Kreistag", true, Consent::BOTH).await;

    let url = format!("rtmp://127.0.0.1:{}/live", nginx.port);
    let stream = meeting
        .start_stream(json!({"hls": true, "rtmp": [{"url": url, "key": "k1"}]}))
        .await;
    let sid = stream.id.clone();
    wait_event_for(
        &mut ws,
        Duration::from_secs(30),
        "stream_destination_changed",
        |e| e["status"] == "live",
    )
    .await;
    let playlist = disk.path().join(format!("{mid}/360p/index.m3u8"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&playlist).is_ok_and(|t| t.contains(".ts")) {
        assert!(Instant::now() < deadline, "no HLS segment listed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let filler = disk.fill_leaving(0);
    let stalled = wait_event_for(
        &mut ws,
        Duration::from_secs(20),
        "stream_hls_changed",
        |e| e["stream_id"] == sid.as_str(),
    )
    .await;
    let error = stalled["error"].as_str().unwrap_or_default().to_string();
    assert!(error.contains("No space left"), "{stalled}");
    let view = moderator.get_ok(&format!("/api/v1/streams/{sid}")).await;
    assert_eq!(view["state"], "active", "{view}");
    assert_eq!(view["hls_error"].as_str(), Some(error.as_str()), "{view}");
    assert!(
        error.starts_with("hls-"),
        "named after the rendition's sink: {error}"
    );
    assert_eq!(view["rtmp"][0]["status"], "live", "{view}");
    // The platform still gets the stream, seconds after HLS stalled.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_rtmp_plays(&format!("{url}/k1"));

    std::fs::remove_file(filler).unwrap();
    stream.stop().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let view = loop {
        let view = moderator.get_ok(&format!("/api/v1/streams/{sid}")).await;
        if ["finished", "failed"].contains(&view["state"].as_str().unwrap_or_default()) {
            break view;
        }
        assert!(Instant::now() < deadline, "the stream did not end: {view}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    // It ends at once (no wait for the dead HLS sinks to drain), failed, saying why.
    assert_eq!(view["state"], "failed", "{view}");
    let failure = view["failure"].as_str().unwrap_or_default();
    assert!(
        failure.contains("stream output failed: hls-") && failure.contains("No space left"),
        "{view}"
    );
    assert!(view["hls_error"].is_null(), "{view}");
    drop(publisher);
    drop(app);
    let _ = std::fs::remove_dir_all(&dir);
}
