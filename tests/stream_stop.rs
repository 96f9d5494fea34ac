//! Issue 18 item 8: a livestream stopped at any moment after its start — before any
//! media reached its muxers, while its RTMP destination is still connecting — ends
//! `finished` with what was produced, never `failed`. Real media plane, HLS and an
//! RTMP push to a real nginx-rtmp.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

use reqwest::Method;
use serde_json::json;

/// When each try stops its stream after the start answered: at once and at
/// moments of the first half second (before and while media reaches the muxers).
const STOP_AFTER_MS: [u64; 10] = [0, 0, 10, 20, 40, 60, 100, 150, 250, 400];

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_stopped_right_after_their_start_end_finished() {
    // Every log line (item 7: the stream key never reaches one).
    let logs = Arc::new(Mutex::new(Vec::new()));
    let writer = logs.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || LogWriter(writer.clone()))
            .finish(),
    )
    .unwrap();
    let dir = std::env::temp_dir().join(format!("gremium-quickstop-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let nginx = NginxRtmp::start(&dir.join("nginx"));
    let (app, _media) =
        spawn_with_gst_media_in(Duration::from_secs(10), 10, small_program(), dir.clone()).await;
    let moderator = app.moderator();
    let m = moderator.create_public_meeting("Ortsbeirat").await;
    let mid = m.id.clone();
    let anna = m.add_participant("Anna").await;
    anna.set_consent(Consent::BOTH).await;
    let (mut ws, _) = m.events().await;
    let mut publisher = anna.publish_small("ffd700", 120);
    wait_cameras_on(&mut ws, 1).await;

    let started = Instant::now();
    let mut outcomes = Vec::new();
    for (i, wait) in STOP_AFTER_MS.into_iter().enumerate() {
        let body = json!({"hls": true, "rtmp": [
            {"url": format!("rtmp://127.0.0.1:{}/live", nginx.port), "key": "quick-KEYSECRET"},
        ]});
        let t0 = Instant::now();
        let stream = m.start_stream(body).await.body;
        let sid = stream["id"].as_str().unwrap().to_string();
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let (s, v) = moderator
            .send(Method::POST, &format!("/api/v1/streams/{sid}/stop"), None)
            .await;
        assert!(s == 202 || s == 200, "{s} {v}");
        let done = wait_event_for(
            &mut ws,
            Duration::from_secs(30),
            "stream_state_changed",
            |e| {
                e["stream_id"] == sid.as_str()
                    && (e["state"] == "finished" || e["state"] == "failed")
            },
        )
        .await;
        let view = moderator.get(&format!("/api/v1/streams/{sid}")).await.1;
        // What was produced is ended: a playlist, if any was written, is closed.
        let playlist = app
            .http
            .get(app.url(&format!("/live/{mid}/360p/index.m3u8")))
            .send()
            .await
            .unwrap();
        if playlist.status() == 200 {
            let text = playlist.text().await.unwrap();
            assert!(text.contains("#EXT-X-ENDLIST"), "try {i}: {text}");
        }
        outcomes.push(format!(
            "try {i} (+{wait} ms, {} ms in all): {} {}",
            t0.elapsed().as_millis(),
            done["state"],
            view["failure"]
        ));
    }
    let elapsed = started.elapsed();
    let failed: Vec<&String> = outcomes
        .iter()
        .filter(|o| !o.contains("finished"))
        .collect();
    assert!(failed.is_empty(), "{failed:#?}\nall: {outcomes:#?}");
    // Quick enough to keep in CI: no stop waits for a watchdog.
    let tries = STOP_AFTER_MS.len();
    assert!(
        elapsed < Duration::from_secs(4 * tries as u64),
        "{tries} start/stop cycles took {elapsed:?}: {outcomes:#?}"
    );
    eprintln!("{tries} quick start/stop cycles in {elapsed:?}: {outcomes:#?}");
    let logs = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("RTMP destination added"), "{logs}");
    assert!(!logs.contains("KEYSECRET"), "{logs}");
    publisher.kill();
    drop(nginx);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Ending the meeting while its livestream runs finishes the stream like a stop does:
/// the playlists are closed (`#EXT-X-ENDLIST`), the stream reports `finished`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ending_the_meeting_finishes_its_running_livestream() {
    let dir = std::env::temp_dir().join(format!("gremium-endstream-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let (app, media) =
        spawn_with_gst_media_in(Duration::from_secs(10), 10, small_program(), dir.clone()).await;
    let moderator = app.moderator();
    let m = moderator.create_public_meeting("Ortsbeirat").await;
    let mid = m.id.clone();
    let anna = m.add_participant("Anna").await;
    anna.set_consent(Consent::BOTH).await;
    let (mut ws, _) = m.events().await;
    let mut publisher = anna.publish_small("ffd700", 60);
    wait_cameras_on(&mut ws, 1).await;
    let stream = m.start_stream(json!({"hls": true})).await.body;
    let sid = stream["id"].as_str().unwrap().to_string();
    let playlist = dir.join("live").join(&mid).join("360p").join("index.m3u8");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&playlist).is_ok_and(|t| t.contains("#EXTINF")) {
        assert!(Instant::now() < deadline, "no HLS segment within 20 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (s, v) = moderator
        .send(Method::POST, &format!("/api/v1/meetings/{mid}/end"), None)
        .await;
    assert!(s == 200 || s == 202, "{s} {v}");
    let done = wait_event_for(
        &mut ws,
        Duration::from_secs(30),
        "stream_state_changed",
        |e| e["stream_id"] == sid.as_str() && (e["state"] == "finished" || e["state"] == "failed"),
    )
    .await;
    assert_eq!(done["state"], "finished", "{done}");
    let text = std::fs::read_to_string(&playlist).unwrap();
    assert!(
        text.contains("#EXT-X-ENDLIST"),
        "the playlist is not closed: {text}"
    );
    assert_eq!(
        media.active_meetings(),
        0,
        "the ended meeting's session is gone"
    );
    publisher.kill();
    let _ = std::fs::remove_dir_all(&dir);
}
