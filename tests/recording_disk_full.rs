//! The spool disk is too full to start a recording (refused up front), then fills
//! up during one (a real tmpfs of a few MiB, filled by the test): the recording is
//! interrupted at once — the moderator hears it on the
//! WebSocket, with the reason — it keeps every fragment written before, waits (not
//! fails) while there is no room to finalize it, and is finalized and plays once
//! space is freed. The meeting carries on: a new recording starts afterwards.

mod common;

use std::time::{Duration, Instant};

use common::*;
use gremium_compositor::{Canvas, ProgramSettings};
use gremium_signaling::Role;
use gremium_storage::testing::SmallDisk;
use reqwest::Method;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_disk_interrupts_the_recording_and_keeps_what_was_written() {
    let disk = SmallDisk::mount(8 * 1024 * 1024);
    let dir = std::env::temp_dir().join(format!("gremium-rec-full-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    // The spool directory is on the small disk; the object store is not.
    std::os::unix::fs::symlink(disk.path(), dir.join("spool")).unwrap();
    let program = ProgramSettings {
        canvas: Canvas {
            width: 640,
            height: 360,
        },
        fps: 15,
        ..ProgramSettings::default()
    };
    let (app, _media) =
        spawn_with_gst_media_in(Duration::from_secs(10), 10, program, dir.clone()).await;
    let moderator = app.token(&[Role::Moderator]);
    let archivist = app.token(&[Role::Archivist]);
    let mid = app.create_meeting(&moderator, "Bauausschuss").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (a, a_join) = app.add_participant(&moderator, &mid, "Anna").await;
    app.set_consent(&mid, &a, &a_join, true, false).await;
    let mut ws = ws_connect(app.addr, &mid, &moderator).await;
    next_event(&mut ws).await;
    let mut pa = spawn_small_publisher(&app.base, &mid, &a_join, "ffd700", 90);
    wait_event(&mut ws, "participant_media_started", |_| true).await;

    // Less room than the media plane asks for (1 MiB here): refused up front, with
    // the reason, and that recording is failed.
    let filler = disk.fill_leaving(512 * 1024);
    let (s, refused) = app
        .send(
            Method::POST,
            &format!("/api/v1/meetings/{mid}/recordings"),
            Some(&moderator),
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
    let (_, list) = app
        .send(
            Method::GET,
            &format!("/api/v1/meetings/{mid}/recordings"),
            Some(&moderator),
            None,
        )
        .await;
    assert_eq!(list[0]["state"], "failed", "{list}");
    std::fs::remove_file(&filler).unwrap();

    // Started with room; then the disk fills up but for a few seconds of this
    // recording (a flat picture and a tone: about 20 kB/s).
    let rid = app.start_recording(&moderator, &mid).await;
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
    let get = |rid: String| {
        let (app, token) = (&app, &archivist);
        async move {
            app.send(
                Method::GET,
                &format!("/api/v1/recordings/{rid}"),
                Some(token),
                None,
            )
            .await
            .1
        }
    };
    let view = get(rid.clone()).await;
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
        let view = get(rid.clone()).await;
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
    let (streams, played) = app.probe_media(&archivist, &rid);
    let text = Value::Array(streams).to_string();
    assert!(text.contains("h264") && text.contains("aac"), "{text}");
    assert!(
        (played - duration).abs() < 0.5,
        "plays {played} s of {duration} s"
    );
    // Its appearances end with the media.
    let (_, manifest) = app
        .send(
            Method::GET,
            &format!("/api/v1/recordings/{rid}/manifest"),
            Some(&archivist),
            None,
        )
        .await;
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
    let second = app.start_recording(&moderator, &mid).await;
    wait_event(&mut ws, "recording_state_changed", |e| {
        e["recording_id"] == second.as_str() && e["state"] == "active"
    })
    .await;
    app.stop(&moderator, "recordings", &second).await;
    let _ = pa.kill();
    let _ = pa.wait();
    drop(app);
    let _ = std::fs::remove_dir_all(&dir);
}
