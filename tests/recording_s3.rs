//! Recording into S3 (a real S3-compatible server, s3s-fs, on loopback) through an
//! outage: the server dies mid-recording and stays down past the stop; the recording
//! waits in the encrypted spool (neither finished nor failed), and once the server is
//! back the upload goes through and the archive plays all of it.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
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
    let m = app.moderator().create_meeting("Umweltausschuss").await;
    let anna = m.add_participant("Anna").await;
    anna.set_consent(Consent::RECORDING).await;
    let (mut ws, _) = m.events().await;
    // A bounded duration, and killed on drop: a failed test leaves no publisher running.
    let _pa = anna.publish_small("ffd700", 60);
    wait_cameras_on(&mut ws, 1).await;

    let rec = m.start_recording().await;
    let started = Instant::now();
    let rid = rec.id.clone();
    wait_event(&mut ws, "recording_state_changed", |e| {
        e["state"] == "active"
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    s3.stop(); // the outage begins mid-recording
    tokio::time::sleep(Duration::from_secs(2)).await;
    rec.stop().await;
    let recorded = started.elapsed().as_secs_f64();

    // While the store is down the recording waits; its spool is still there.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let state = |v: &Value| v["state"].as_str().unwrap_or_default().to_string();
    let archived = rec.acting_as(&app.archivist());
    let (_, view) = archived.client.get(&rec.path("")).await;
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
        let (_, view) = archived.client.get(&rec.path("")).await;
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
    let (streams, played) = archived.probe();
    let text = Value::Array(streams).to_string();
    assert!(text.contains("h264") && text.contains("aac"), "{text}");
    assert!(
        (played - recorded).abs() < 0.6,
        "plays {played} s of {recorded} s"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
