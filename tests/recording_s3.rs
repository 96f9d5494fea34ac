//! Recording into S3 (a real S3-compatible server, s3s-fs, on loopback) through an
//! outage: the server dies mid-recording and stays down past the stop; the recording
//! waits in the encrypted spool (neither finished nor failed), and once the server is
//! back the upload goes through and the archive plays all of it.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use gremium_signaling::Role;
use reqwest::Method;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_outage_during_a_recording_loses_nothing() {
    let mut s3 = S3Server::start().await;
    let store = s3.store();
    store.ensure_bucket().await.unwrap();
    let dir = std::env::temp_dir().join(format!("gremium-rec-s3-{}", uuid::Uuid::new_v4()));
    let program = small_program();
    let (app, _media) = spawn_with_gst_media_store(
        Duration::from_secs(10),
        10,
        program,
        dir.clone(),
        Arc::new(store),
    )
    .await;
    let moderator = app.token(&[Role::Moderator]);
    let archivist = app.token(&[Role::Archivist]);
    let mid = app.create_meeting(&moderator, "Umweltausschuss").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (a, a_join) = app.add_participant(&moderator, &mid, "Anna").await;
    app.set_consent(&mid, &a, &a_join, true, false).await;
    let mut ws = ws_connect(app.addr, &mid, &moderator).await;
    next_event(&mut ws).await;
    // A bounded duration: a failed test leaves no publisher running.
    let mut pa = spawn_small_publisher(&app.base, &mid, &a_join, "ffd700", 60);
    wait_cameras_on(&mut ws, 1).await;

    let (s, rec) = app
        .send(
            Method::POST,
            &format!("/api/v1/meetings/{mid}/recordings"),
            Some(&moderator),
            None,
        )
        .await;
    assert_eq!(s, 201, "{rec}");
    let started = Instant::now();
    let rid = rec["id"].as_str().unwrap().to_string();
    wait_event(&mut ws, "recording_state_changed", |e| {
        e["state"] == "active"
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    s3.stop(); // the outage begins mid-recording
    tokio::time::sleep(Duration::from_secs(2)).await;
    app.stop(&moderator, "recordings", &rid).await;
    let recorded = started.elapsed().as_secs_f64();

    // While the store is down the recording waits; its spool is still there.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let state = |v: &Value| v["state"].as_str().unwrap_or_default().to_string();
    let (_, view) = app
        .send(
            Method::GET,
            &format!("/api/v1/recordings/{rid}"),
            Some(&archivist),
            None,
        )
        .await;
    assert!(
        !["finished", "failed"].contains(&state(&view).as_str()),
        "the recording must wait for the store: {view}"
    );
    assert!(
        dir.join(format!("spool/{rid}.spool")).exists(),
        "spool kept during the outage"
    );

    // The store comes back: the retried upload goes through.
    s3.run().await;
    let deadline = Instant::now() + Duration::from_secs(90);
    let view = loop {
        let (_, view) = app
            .send(
                Method::GET,
                &format!("/api/v1/recordings/{rid}"),
                Some(&archivist),
                None,
            )
            .await;
        if state(&view) == "finished" {
            break view;
        }
        assert_ne!(state(&view), "failed", "{view}");
        assert!(
            Instant::now() < deadline,
            "not stored after the outage: {view}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        !dir.join(format!("spool/{rid}.spool")).exists(),
        "spool removed once stored"
    );
    let duration = view["media"]["duration_s"].as_f64().unwrap();
    assert!(
        (duration - recorded).abs() < 0.6,
        "stored {duration} s of {recorded} s"
    );

    // The object in the bucket is the sealed one, and the archive plays it from S3.
    let object = s3
        .dir
        .join("data")
        .join(S3Server::BUCKET)
        .join(format!("recordings/{rid}/media.mp4.sealed"));
    let stored = std::fs::read(&object).unwrap();
    assert!(
        !stored.windows(4).any(|w| w == b"ftyp" || w == b"mdat"),
        "plaintext in S3"
    );
    let (streams, played) = app.probe_media(&archivist, &rid);
    let text = Value::Array(streams).to_string();
    assert!(text.contains("h264") && text.contains("aac"), "{text}");
    assert!(
        (played - recorded).abs() < 0.6,
        "plays {played} s of {recorded} s"
    );
    let _ = pa.kill();
    let _ = pa.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
