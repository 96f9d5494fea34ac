//! The DTLS fingerprint check of WHIP ingest (issue 18, item 1): a publisher whose
//! DTLS certificate is not the one its offer's `a=fingerprint` names is torn down
//! before any of its media is decoded, counted in `/metrics`, and an honest
//! publisher of the same meeting is not affected. Its own test binary: the process-
//! wide metrics it reads are not disturbed by other tests' publishers.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use gremium_pipelines::webrtc::accept_answer;

use tokio_tungstenite::tungstenite::Message;

const BIN: &str = env!("CARGO_BIN_EXE_gremium");

/// Replace every `a=fingerprint` of `sdp` by a random SHA-256 one.
fn forge_fingerprints(sdp: &str) -> String {
    let random: Vec<u8> = [uuid::Uuid::new_v4(), uuid::Uuid::new_v4()]
        .iter()
        .flat_map(|u| u.into_bytes())
        .collect();
    let hex: Vec<String> = random.iter().map(|b| format!("{b:02X}")).collect();
    let forged = format!("a=fingerprint:sha-256 {}", hex.join(":"));
    let out: Vec<String> = sdp
        .lines()
        .map(|l| {
            if l.starts_with("a=fingerprint:") {
                forged.clone()
            } else {
                l.to_string()
            }
        })
        .collect();
    assert_ne!(
        out.join("\r\n"),
        sdp.replace('\n', "\r\n"),
        "nothing to forge"
    );
    out.join("\r\n") + "\r\n"
}

/// The value of an unlabelled Prometheus sample, if present.
fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        let (n, v) = l.split_once(' ')?;
        (n == name).then(|| v.trim().parse().ok())?
    })
}

/// Log lines of the whole process (GStreamer threads included), for the test to read.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_whose_certificate_does_not_match_its_offer_never_publishes() {
    let logs = Logs::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();
    let (app, media) = spawn_with_gst_media(Duration::from_secs(10), 10, Default::default()).await;
    let moderator = app.moderator();
    let m = moderator.create_meeting("Rat").await;
    let mid = m.id.clone();
    let mallory = m.add_participant("Mallory").await;
    let anna = m.add_participant("Anna").await;
    let (mut ws, _) = m.events().await;

    // A real webrtcbin publisher whose offer names someone else's certificate.
    let (publisher, webrtc, offer) = loopback_publisher_offer("forger", Some(0xff0000)).await;
    let resp = mallory
        .client
        .post_whip(&mid, forge_fingerprints(&offer))
        .await;
    assert_eq!(
        resp.status().as_u16(),
        201,
        "a well-formed offer is answered"
    );
    accept_answer(&webrtc, &resp.text().await.unwrap())
        .await
        .unwrap();

    // Torn down like a vanished publisher: media stopped, never started.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("the forging publisher is torn down within 10 s");
        let Some(Ok(Message::Text(t))) = msg else {
            continue;
        };
        let e: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
        assert!(
            !(e["type"] == "participant_media_started"
                && e["participant_id"] == mallory.id.as_str()),
            "the publisher with a forged fingerprint was reported publishing: {e}"
        );
        if e["type"] == "participant_media_stopped" && e["participant_id"] == mallory.id.as_str() {
            break;
        }
    }
    let (status, list) = moderator
        .send(
            reqwest::Method::GET,
            &format!("/api/v1/meetings/{mid}/participants"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let row = list
        .as_array()
        .or_else(|| list["participants"].as_array())
        .unwrap()
        .iter()
        .find(|p| p["id"] == mallory.id.as_str())
        .cloned()
        .unwrap();
    assert_eq!(row["publishing"], false, "{row}");
    let metrics = app.http.get(app.url("/metrics")).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert_eq!(
        sample(&metrics, "gremium_dtls_fingerprint_mismatch_total"),
        Some(1.0),
        "counted once"
    );
    assert!(
        !metrics.contains("gremium_ingest_decoded_buffers_total"),
        "not one buffer of the forger was decoded"
    );
    assert_eq!(media.active_meetings(), 0, "nothing of it is left");
    let log = logs.text();
    let line = log
        .lines()
        .find(|l| l.contains("does not match its offer's fingerprint"))
        .unwrap_or_else(|| panic!("the mismatch is logged:\n{log}"));
    assert!(
        line.contains("WARN") && line.contains(&mallory.id),
        "{line}"
    );
    assert!(!line.contains("127.0.0.1"), "no address in the log: {line}");
    drop(publisher);

    // An honest publisher (our own client, which checks the server's certificate
    // in turn) publishes into the same meeting.
    let child = tokio::process::Command::new(BIN)
        .args(["publish", "--server", &app.base, "--meeting", &mid])
        .args([
            "--token",
            anna.client.token(),
            "--color",
            "00ff00",
            "--duration",
            "2",
        ])
        .args(["--width", "160", "--height", "90", "--fps", "10"])
        .args(["--ice-address", "127.0.0.1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_event_for(
        &mut ws,
        Duration::from_secs(10),
        "participant_media_started",
        |e| e["participant_id"] == anna.id.as_str(),
    )
    .await;
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metrics = app.http.get(app.url("/metrics")).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert_eq!(
        sample(&metrics, "gremium_dtls_fingerprint_mismatch_total"),
        Some(1.0),
        "the honest publisher passed the check"
    );
}
