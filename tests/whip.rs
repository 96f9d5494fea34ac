//! WHIP ingest end to end: the real `gremium publish` client publishes into an
//! in-process Gremium running the GStreamer media plane, over loopback ICE only; the
//! meeting's WebSocket shows the participant's media starting and stopping; bad
//! requests get clear 4xx answers.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use common::*;
use gremium_mediaplane::GstMediaPlane;
use gremium_pipelines::webrtc::IceSettings;

use reqwest::Method;

const BIN: &str = env!("CARGO_BIN_EXE_gremium");

async fn spawn_with_media(
    media_timeout: Duration,
    max_publishers: usize,
) -> (TestApp, GstMediaPlane) {
    spawn_with_gst_media(media_timeout, max_publishers, Default::default()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gremium_publish_streams_into_a_meeting_over_whip() {
    let (app, media) = spawn_with_media(Duration::from_secs(10), 10).await;
    let moderator = app.moderator();
    let m = moderator.create_meeting("Ausschuss").await;
    let mid = m.id.clone();
    let anna = m.add_participant("Anna").await;
    let (mut ws, _) = m.events().await;

    for codec in ["vp8", "h264"] {
        let child = tokio::process::Command::new(BIN)
            .args([
                "publish",
                "--server",
                &app.base,
                "--meeting",
                &mid,
                "--token",
                anna.client.token(),
            ])
            .args([
                "--color",
                "00ff00",
                "--tone",
                "440",
                "--codec",
                codec,
                "--duration",
                "3",
                "--ice-address",
                "127.0.0.1",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let started = wait_event(&mut ws, "participant_media_started", |_| true).await;
        assert_eq!(started["participant_id"], anna.id.as_str(), "{codec}");
        assert_eq!(
            media.active_meetings(),
            1,
            "one media session for the meeting"
        );
        let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        assert!(
            out.status.success(),
            "{codec}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("publishing to meeting"));
        let stopped = wait_event(&mut ws, "participant_media_stopped", |_| true).await;
        assert_eq!(stopped["participant_id"], anna.id.as_str());
        assert_eq!(media.active_meetings(), 0, "the empty session is torn down");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_whip_requests_get_clear_errors() {
    let (app, _media) = spawn_with_media(Duration::from_secs(10), 10).await;
    let moderator = app.moderator();
    let m = moderator.create_meeting("Rat").await;
    let mid = m.id.clone();
    let other = moderator.create_meeting("Anderer Rat").await.id;
    let (pid, join) = m.add_participant("A").await.into_parts();
    let now = chrono::Utc::now().timestamp();
    let expired = app
        .auth
        .issue_join_token(mid.parse().unwrap(), pid.parse().unwrap(), now - 7200)
        .0;
    let ghost_meeting = uuid::Uuid::new_v4();
    let ghost = app
        .auth
        .issue_join_token(ghost_meeting, uuid::Uuid::new_v4(), now)
        .0;
    let offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:96 VP8/90000\r\n";
    let post = |path: String, token: Option<String>, ctype: &'static str, body: String| {
        let app = &app;
        async move {
            let mut r = app
                .http
                .post(app.url(&path))
                .header("content-type", ctype)
                .body(body);
            if let Some(t) = token {
                r = r.bearer_auth(t);
            }
            let resp = r.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.text().await.unwrap())
        }
    };
    // (what, path, token, content type, body, expected status)
    type Case = (
        &'static str,
        String,
        Option<String>,
        &'static str,
        String,
        u16,
    );
    let cases: Vec<Case> = vec![
        (
            "no token",
            format!("/whip/{mid}"),
            None,
            "application/sdp",
            offer.into(),
            401,
        ),
        (
            "moderator token",
            format!("/whip/{mid}"),
            Some(moderator.token().into()),
            "application/sdp",
            offer.into(),
            403,
        ),
        (
            "token of another meeting",
            format!("/whip/{other}"),
            Some(join.token().into()),
            "application/sdp",
            offer.into(),
            403,
        ),
        (
            "not SDP",
            format!("/whip/{mid}"),
            Some(join.token().into()),
            "application/json",
            "{}".into(),
            415,
        ),
        (
            "malformed SDP",
            format!("/whip/{mid}"),
            Some(join.token().into()),
            "application/sdp",
            "hello".into(),
            400,
        ),
        (
            "oversized",
            format!("/whip/{mid}"),
            Some(join.token().into()),
            "application/sdp",
            "v=0\r\n".repeat(10_000),
            413,
        ),
        (
            "bad meeting id",
            "/whip/not-a-uuid".into(),
            Some(join.token().into()),
            "application/sdp",
            offer.into(),
            400,
        ),
        (
            "SDP without media",
            format!("/whip/{mid}"),
            Some(join.token().into()),
            "application/sdp",
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n".into(),
            400,
        ),
        (
            "only unsupported codecs",
            format!("/whip/{mid}"),
            Some(join.token().into()),
            "application/sdp",
            offer.replace("VP8/90000", "H265/90000"),
            400,
        ),
        (
            "no DTLS fingerprint (nothing to authenticate the publisher's certificate)",
            format!("/whip/{mid}"),
            Some(join.token().into()),
            "application/sdp",
            offer.into(),
            400,
        ),
        (
            "only a sha-1 DTLS fingerprint",
            format!("/whip/{mid}"),
            Some(join.token().into()),
            "application/sdp",
            format!(
                "{offer}a=fingerprint:sha-1 \
                 4A:AD:B9:B1:3F:82:18:3B:54:02:12:DF:3E:5D:49:6B:19:E5:7C:AB\r\n"
            ),
            400,
        ),
        (
            "expired token",
            format!("/whip/{mid}"),
            Some(expired.clone()),
            "application/sdp",
            offer.into(),
            401,
        ),
        (
            "unknown meeting",
            format!("/whip/{ghost_meeting}"),
            Some(ghost.clone()),
            "application/sdp",
            offer.into(),
            404,
        ),
    ];
    for (what, path, token, ctype, body, expected) in cases {
        let (status, text) = post(path, token, ctype, body).await;
        assert_eq!(status, expected, "{what}: {text}");
        let json: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{what}: JSON error body, got {text}"));
        assert!(json["error"]["message"].is_string(), "{what}");
    }
    let (_, text) = post(
        format!("/whip/{mid}"),
        Some(join.token().into()),
        "application/sdp",
        offer.into(),
    )
    .await;
    assert!(
        text.contains("no a=fingerprint with sha-256"),
        "the reason: {text}"
    );
    let resp = app
        .http
        .patch(app.url(&format!("/whip/{mid}/{}", uuid::Uuid::new_v4())))
        .bearer_auth(join.token())
        .header("content-type", "application/trickle-ice-sdpfrag")
        .body("a=end-of-candidates\r\n")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        404,
        "trickle for an unknown session"
    );
    let (s, _) = join
        .send(
            Method::DELETE,
            &format!("/whip/{mid}/{}", uuid::Uuid::new_v4()),
            None,
        )
        .await;
    assert_eq!(s, 404);
    let preflight = app
        .http
        .request(Method::OPTIONS, app.url(&format!("/whip/{mid}")))
        .header("origin", "http://127.0.0.1:9")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success());
    assert_eq!(preflight.headers()["access-control-allow-origin"], "*");
    let (s, _) = app.send(Method::GET, "/healthz", None, None).await;
    assert_eq!(s, 200, "still healthy after the bad requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_that_vanishes_is_removed_after_the_media_timeout() {
    use gremium_pipelines::webrtc::accept_answer;

    let (app, media) = spawn_with_media(Duration::from_secs(2), 1).await;
    let moderator = app.moderator();
    let m = moderator.create_meeting("Rat").await;
    let mid = m.id.clone();
    let verschwindet = m.add_participant("Verschwindet").await;
    let (mut ws, _) = m.events().await;

    let (publisher, webrtc, offer) = loopback_publisher_offer("vanishing", None).await;
    let resp = verschwindet.client.post_whip(&mid, offer).await;
    assert_eq!(resp.status().as_u16(), 201);
    assert!(resp.headers()["etag"].to_str().unwrap().starts_with('"'));
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    accept_answer(&webrtc, &resp.text().await.unwrap())
        .await
        .unwrap();
    wait_event(&mut ws, "participant_media_started", |e| {
        e["participant_id"] == verschwindet.id.as_str()
    })
    .await;

    // The publisher disappears without DELETE (crash, lost network).
    let gone = std::time::Instant::now();
    drop(publisher);
    let stopped = wait_event(&mut ws, "participant_media_stopped", |_| true).await;
    assert_eq!(stopped["participant_id"], verschwindet.id.as_str());
    assert!(
        gone.elapsed() < Duration::from_secs(5),
        "removed by the 2 s media timeout, after {:?}",
        gone.elapsed()
    );
    assert_eq!(media.active_meetings(), 0);

    // An ICE restart for the vanished session finds nothing to restart.
    let resp = app
        .http
        .patch(app.url(&location))
        .bearer_auth(verschwindet.client.token())
        .header("content-type", "application/trickle-ice-sdpfrag")
        .header("if-match", "*")
        .body("a=ice-ufrag:NeWu\r\na=ice-pwd:NewPasswordOf24CharsXYZ1\r\n")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        404,
        "ICE restart of a vanished session"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whip_answer_marks_each_media_sections_candidates_complete() {
    let (app, _media) = spawn_with_media(Duration::from_secs(10), 10).await;
    let moderator = app.moderator();
    let m = moderator.create_meeting("Rat").await;
    let mid = m.id.clone();
    let (_pid, join) = m.add_participant("A").await.into_parts();
    let (_publisher, _webrtc, offer) = loopback_publisher_offer("eoc", None).await;
    let resp = join.post_whip(&mid, offer).await;
    assert_eq!(resp.status().as_u16(), 201);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let answer = resp.text().await.unwrap();
    let sections: Vec<&str> = answer.split("\r\nm=").skip(1).collect();
    assert_eq!(sections.len(), 2, "audio and video:\n{answer}");
    for section in sections {
        let lines: Vec<&str> = section.lines().collect();
        let end = lines.iter().position(|l| *l == "a=end-of-candidates");
        let last_candidate = lines.iter().rposition(|l| l.starts_with("a=candidate:"));
        assert!(
            end.is_some() && end > last_candidate,
            "a non-trickling client learns the candidates are complete (RFC 8840), \
             per media section, after the last candidate:\nm={section}"
        );
        assert_eq!(
            lines
                .iter()
                .filter(|l| **l == "a=end-of-candidates")
                .count(),
            1
        );
    }
    let (s, _) = join.send(Method::DELETE, &location, None).await;
    assert_eq!(s, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_media_node_that_gathers_no_candidate_answers_503_with_a_reason() {
    // The media node's only ICE port is taken: gathering yields nothing.
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let (app, media) = spawn_with_gst_media_ice(IceSettings {
        local_addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        port_range: Some((port, port)),
        ..Default::default()
    })
    .await;
    let moderator = app.moderator();
    let m = moderator.create_meeting("Rat").await;
    let mid = m.id.clone();
    let (pid, join) = m.add_participant("A").await.into_parts();
    let (_publisher, _webrtc, offer) = loopback_publisher_offer("no-candidates", None).await;
    let resp = join.post_whip(&mid, offer).await;
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap();
    assert_eq!(status, 503, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let message = json["error"]["message"].as_str().unwrap();
    assert!(message.contains("ICE candidates"), "a reason: {message}");
    assert_eq!(media.active_meetings(), 0, "no leftover media session");
    let (s, list) = moderator
        .send(
            Method::GET,
            &format!("/api/v1/meetings/{mid}/participants"),
            None,
        )
        .await;
    assert_eq!(s, 200);
    let rows = list
        .as_array()
        .or_else(|| list["participants"].as_array())
        .unwrap();
    let row = rows.iter().find(|p| p["id"] == pid.as_str()).unwrap();
    assert_eq!(row["publishing"], false, "{row}");
    drop(taken);
}

/// A WHIP proxy in front of `upstream` that replaces the `a=fingerprint` lines of
/// every answer with a random one (as a man in the middle would have to). Returns
/// its base URL.
async fn fingerprint_forging_proxy(upstream: String) -> String {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, Method as M, StatusCode, Uri};
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let forward = move |method: M, uri: Uri, headers: HeaderMap, body: Bytes| {
        let (http, upstream) = (http.clone(), upstream.clone());
        async move {
            let method = reqwest::Method::from_bytes(method.as_str().as_bytes()).unwrap();
            let mut req = http.request(method, format!("{upstream}{uri}")).body(body);
            for name in ["authorization", "content-type", "if-match"] {
                if let Some(v) = headers.get(name) {
                    req = req.header(name, v.to_str().unwrap());
                }
            }
            let resp = req.send().await.unwrap();
            let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
            let mut out = HeaderMap::new();
            for name in ["location", "etag", "content-type"] {
                if let Some(v) = resp.headers().get(name) {
                    out.insert(name, v.to_str().unwrap().parse().unwrap());
                }
            }
            let text = resp.text().await.unwrap();
            let forged = format!(
                "a=fingerprint:sha-256 {}",
                uuid::Uuid::new_v4()
                    .into_bytes()
                    .iter()
                    .chain(uuid::Uuid::new_v4().into_bytes().iter())
                    .map(|b| format!("{b:02X}"))
                    .collect::<Vec<_>>()
                    .join(":")
            );
            let text: String = text
                .split_inclusive('\n')
                .map(|l| {
                    if l.starts_with("a=fingerprint:") {
                        format!("{forged}\r\n")
                    } else {
                        l.to_string()
                    }
                })
                .collect();
            (status, out, text)
        }
    };
    let app = axum::Router::new().fallback(forward);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gremium_publish_refuses_a_server_whose_certificate_does_not_match_its_answer() {
    let (app, media) = spawn_with_media(Duration::from_secs(10), 10).await;
    let moderator = app.moderator();
    let m = moderator.create_meeting("Rat").await;
    let mid = m.id.clone();
    let anna = m.add_participant("Anna").await;
    let (mut ws, _) = m.events().await;
    let proxy = fingerprint_forging_proxy(app.base.clone()).await;
    let out = tokio::process::Command::new(BIN)
        .args([
            "publish",
            "--server",
            &proxy,
            "--meeting",
            &mid,
            "--token",
            anna.client.token(),
        ])
        .args([
            "--duration",
            "2",
            "--width",
            "160",
            "--height",
            "90",
            "--fps",
            "10",
        ])
        .args(["--ice-address", "127.0.0.1"])
        .output();
    let out = tokio::time::timeout(Duration::from_secs(40), out)
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "our client published to a server whose certificate is not the answer's: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(stderr.contains("does not match"), "a clear error: {stderr}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("publishing to meeting"),
        "never reported as publishing"
    );
    // It left the session it was given, and nothing it sent was decoded.
    loop {
        let e = next_event(&mut ws).await;
        assert_ne!(
            e["type"], "participant_media_started",
            "media of the refusing client arrived: {e}"
        );
        if e["type"] == "participant_media_stopped" {
            assert_eq!(e["participant_id"], anna.id.as_str());
            break;
        }
    }
    assert_eq!(media.active_meetings(), 0);
}

/// A publish whose session cannot be recorded (the database fails after the media
/// plane accepted the offer) is answered 500 with a reason and leaves no media session
/// behind (not one that lingers until its media timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_cannot_be_recorded_is_ended_at_once() {
    let (app, media) = spawn_with_media(Duration::from_secs(30), 1).await;
    let moderator = app.moderator();
    let m = moderator.create_meeting("Rat").await;
    let mid = m.id.clone();
    let (_pid, join) = m.add_participant("A").await.into_parts();
    sqlx::query("drop table whip_sessions")
        .execute(app.db.pool())
        .await
        .unwrap();
    let (_publisher, _webrtc, offer) = loopback_publisher_offer("unrecorded", None).await;
    let resp = join.post_whip(&mid, offer).await;
    assert_eq!(resp.status().as_u16(), 500);
    let body = resp.text().await.unwrap();
    assert!(body.contains("internal"), "{body}");
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while media.active_meetings() != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the media session outlived its failed registration"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
