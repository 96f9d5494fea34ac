//! ICE restart over WHIP (RFC 9725 §4.4.2) end to end, over loopback ICE only: a
//! publisher restarts ICE with a PATCH carrying new credentials and candidates, gets
//! `200` with the media plane's new ones, and media keeps reaching the meeting on the
//! same session. Bad restarts get clear 4xx answers and leave the session alone. Own
//! test binary: the decoded-buffer counters read from `/metrics` are process-wide.

mod common;

use std::time::Duration;

use common::*;
use gremium_pipelines::ice_restart::{apply_remote_ice, restart_local_ice, SelectedPairWatch};
use gremium_pipelines::webrtc::accept_answer;
use gremium_signaling::api::whip::{parse_sdpfrag, render_sdpfrag};

const SDPFRAG: &str = "application/trickle-ice-sdpfrag";

/// Decoded buffers of `kind` the media plane counted so far (`/metrics`).
async fn decoded(app: &TestApp, kind: &str) -> u64 {
    let text = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let prefix = format!("gremium_ingest_decoded_buffers_total{{kind=\"{kind}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Both counters grow by at least `min` within `within`.
async fn assert_media_flows(app: &TestApp, within: Duration, min: u64, when: &str) {
    let (v0, a0) = (decoded(app, "video").await, decoded(app, "audio").await);
    tokio::time::sleep(within).await;
    let (v1, a1) = (decoded(app, "video").await, decoded(app, "audio").await);
    assert!(
        v1 >= v0 + min && a1 >= a0 + min,
        "{when}: decoded video {v0} → {v1}, audio {a0} → {a1} in {within:?}"
    );
}

fn ufrag_of(sdp: &str) -> String {
    sdp.lines()
        .find_map(|l| l.trim().strip_prefix("a=ice-ufrag:"))
        .expect("an ice-ufrag")
        .to_string()
}

/// No `participant_media_stopped` among the events that arrive within `quiet`.
async fn assert_not_stopped(ws: &mut Ws, quiet: Duration) {
    use futures_util::StreamExt;
    let deadline = tokio::time::Instant::now() + quiet;
    while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(deadline, ws.next()).await {
        if let tokio_tungstenite::tungstenite::Message::Text(t) = msg {
            let e: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
            assert_ne!(
                e["type"], "participant_media_stopped",
                "publisher removed: {e}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ice_restart_over_whip_patch_keeps_media_flowing() {
    let (app, media) = spawn_with_gst_media(Duration::from_secs(3), 10, Default::default()).await;
    let m = app.moderator().create_meeting("Rat").await;
    let mid = m.id.clone();
    let (pid, join) = m.add_participant("Wechselt das Netz").await.into_parts();
    let (mut ws, _) = m.events().await;

    let (publisher, webrtc, offer) = loopback_publisher_offer_at("restarting", None, 15).await;
    let resp = join.post_whip(&mid, offer).await;
    assert_eq!(resp.status().as_u16(), 201);
    let etag0 = resp.headers()["etag"].to_str().unwrap().to_string();
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let answer = resp.text().await.unwrap();
    accept_answer(&webrtc, &answer).await.unwrap();
    wait_event(&mut ws, "participant_media_started", |e| {
        e["participant_id"] == pid.as_str()
    })
    .await;
    assert_media_flows(&app, Duration::from_secs(1), 5, "before the restart").await;

    let patch = |path: String, if_match: Option<String>, body: String| {
        let app = &app;
        let join = join.clone();
        async move {
            let mut r = app
                .http
                .patch(app.url(&path))
                .bearer_auth(join.token())
                .header("content-type", SDPFRAG)
                .body(body);
            if let Some(tag) = if_match {
                r = r.header("if-match", tag);
            }
            r.send().await.unwrap()
        }
    };

    // Bad restarts: refused, and the session carries on untouched.
    let good_frag = render_sdpfrag(
        "NeWu",
        "NewPasswordOf24CharsXYZ1",
        &["candidate:1 1 UDP 2015363327 127.0.0.1 9 typ host".to_string()],
    );
    let cases: Vec<(&str, String, Option<String>, String, u16)> = vec![
        (
            "malformed fragment",
            location.clone(),
            Some("*".into()),
            "a=ice-ufrag:NeWu\r\nhello\r\n".into(),
            400,
        ),
        (
            "new ufrag without pwd",
            location.clone(),
            Some("*".into()),
            "a=ice-ufrag:NeWu\r\n".into(),
            400,
        ),
        (
            "pwd too short",
            location.clone(),
            Some("*".into()),
            "a=ice-ufrag:NeWu\r\na=ice-pwd:short\r\n".into(),
            400,
        ),
        (
            "wrong If-Match",
            location.clone(),
            Some("\"some-other-ice-session\"".into()),
            good_frag.clone(),
            412,
        ),
        (
            "unknown session",
            format!("/whip/{mid}/{}", uuid::Uuid::new_v4()),
            Some("*".into()),
            good_frag.clone(),
            404,
        ),
    ];
    for (what, path, if_match, body, expected) in cases {
        let r = patch(path, if_match, body).await;
        assert_eq!(r.status().as_u16(), expected, "{what}");
        let json: serde_json::Value = r.json().await.unwrap();
        assert!(json["error"]["message"].is_string(), "{what}");
    }

    // The publisher restarts ICE on its side and tells the session.
    let local = restart_local_ice(&webrtc).unwrap();
    assert_ne!(local.ufrag, ufrag_of(&answer));
    let mut pair = SelectedPairWatch::new(&webrtc);
    let resp = patch(
        location.clone(),
        Some(etag0.clone()),
        render_sdpfrag(&local.ufrag, &local.pwd, &local.candidates),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200, "ICE restart answered");
    assert_eq!(resp.headers()["content-type"], SDPFRAG);
    let etag1 = resp.headers()["etag"].to_str().unwrap().to_string();
    assert_ne!(etag1, etag0, "a new ICE session, a new ETag");
    let frag = parse_sdpfrag(&resp.text().await.unwrap()).unwrap();
    let (ufrag, pwd) = (frag.ufrag.unwrap(), frag.pwd.unwrap());
    assert_ne!(ufrag, ufrag_of(&answer), "new ICE credentials");
    assert!(!frag.candidates.is_empty());
    for (_, c) in &frag.candidates {
        assert_eq!(
            c.split_whitespace().nth(4),
            Some("127.0.0.1"),
            "loopback candidates only: {c}"
        );
    }
    let candidates: Vec<String> = frag.candidates.into_iter().map(|(_, c)| c).collect();
    apply_remote_ice(&webrtc, &ufrag, &pwd, &candidates).unwrap();
    assert!(
        pair.selected(Duration::from_secs(10)).await,
        "the new ICE session nominated a pair within 10 s"
    );

    // Media keeps flowing on the restarted ICE session, past the 3 s media timeout,
    // and the publisher was never removed.
    for _ in 0..3 {
        assert_media_flows(&app, Duration::from_secs(2), 10, "after the restart").await;
    }
    assert_not_stopped(&mut ws, Duration::from_millis(200)).await;
    assert_eq!(media.active_meetings(), 1);

    // The old ETag is stale now; the new one identifies the ICE session.
    let r = patch(
        location.clone(),
        Some(etag0),
        "a=end-of-candidates\r\n".into(),
    )
    .await;
    assert_eq!(r.status().as_u16(), 412, "stale ETag");
    let r = patch(
        location.clone(),
        Some(etag1.clone()),
        format!("a=ice-ufrag:{}\r\na=end-of-candidates\r\n", local.ufrag),
    )
    .await;
    assert_eq!(r.status().as_u16(), 204, "trickle in the new ICE session");

    // Two restarts racing with the same ETag: one is answered, the other finds the
    // ETag moved on (412), never both.
    let race = |u: &str| {
        render_sdpfrag(
            u,
            &format!("{u}PasswordOfTwentyFour"),
            &["candidate:1 1 UDP 2015363327 127.0.0.1 9 typ host".to_string()],
        )
    };
    let (a, b) = tokio::join!(
        patch(location.clone(), Some(etag1.clone()), race("RacA")),
        patch(location.clone(), Some(etag1.clone()), race("RacB")),
    );
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, [200, 412], "racing restarts");

    let (s, _) = join.send(reqwest::Method::DELETE, &location, None).await;
    assert_eq!(s, 200);
    let stopped = wait_event(&mut ws, "participant_media_stopped", |_| true).await;
    assert_eq!(stopped["participant_id"], pid.as_str());
    drop(publisher);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gremium_publish_restarts_ice_and_keeps_publishing() {
    let (app, _media) = spawn_with_gst_media(Duration::from_secs(3), 10, Default::default()).await;
    let m = app.moderator().create_meeting("Ausschuss").await;
    let mid = m.id.clone();
    let (pid, join) = m.add_participant("Anna").await.into_parts();
    let (mut ws, _) = m.events().await;
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_gremium"))
        .args(["publish", "--server", &app.base, "--meeting", &mid])
        .args(["--token", join.token(), "--ice-address", "127.0.0.1"])
        .args(["--width", "160", "--height", "90", "--fps", "15"])
        .args(["--ice-restart-after", "2", "--duration", "9"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Read its output from the start: a full pipe would block the publisher (its
    // libnice debug log, with NICE_DEBUG set, fills one within a second).
    let output = tokio::spawn(child.wait_with_output());
    wait_event(&mut ws, "participant_media_started", |e| {
        e["participant_id"] == pid.as_str()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Restarted by now; media keeps flowing past the 3 s media timeout.
    for _ in 0..2 {
        assert_media_flows(&app, Duration::from_secs(2), 10, "after the restart").await;
    }
    assert_not_stopped(&mut ws, Duration::from_millis(200)).await;
    let out = tokio::time::timeout(Duration::from_secs(30), output)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("ICE restarted (ETag \""), "{stdout}");
}

/// Port of the local candidate in the browser's selected candidate pair.
const SELECTED_LOCAL_PORT: &str = "(async () => { const st = await gremiumSession.pc.getStats(); let port = 0; \
    st.forEach((s) => { if (s.type === 'transport' && s.selectedCandidatePairId) { \
    const pair = st.get(s.selectedCandidatePairId); const local = pair && st.get(pair.localCandidateId); \
    if (local) port = local.port; } }); return port; })()";

#[test]
fn headless_chromium_restarts_ice_over_whip() {
    netns::run_isolated_async(
        "headless_chromium_restarts_ice_over_whip",
        Duration::from_secs(180),
        chromium_restarts_ice,
    )
}

async fn chromium_restarts_ice() {
    let (app, _media) = spawn_with_gst_media(Duration::from_secs(3), 10, Default::default()).await;
    let m = app.moderator().create_meeting("Browser").await;
    let mid = m.id.clone();
    let (_pid, join) = m.add_participant("Browser").await.into_parts();
    let (mut ws, _) = m.events().await;
    let url = app.url(&format!("/publish/{mid}?token={}", join.token()));
    let mut chrome = cdp::Chromium::launch_with(&url, cdp::FAKE_MEDIA).await;
    chrome
        .wait_for(
            "!!window.gremiumSession && gremiumSession.pc.iceConnectionState === 'connected'",
            Duration::from_secs(30),
            "document.getElementById('status').textContent",
        )
        .await;
    wait_event_for(
        &mut ws,
        Duration::from_secs(15),
        "participant_media_started",
        |_| true,
    )
    .await;
    assert_media_flows(&app, Duration::from_secs(1), 5, "before the restart").await;
    let ufrag_before = chrome
        .eval("gremiumSession.pc.remoteDescription.sdp.match(/a=ice-ufrag:(\\S+)/)[1]")
        .await;
    let port_before = chrome.eval(SELECTED_LOCAL_PORT).await;
    let sent_before = chrome
        .eval("gremiumWhip.bytesSent(gremiumSession.pc)")
        .await
        .as_f64()
        .unwrap();
    // Log every state line from here on into a list the test reads. Each PATCH is
    // held back for 1.5 s, a slow network or a busy server: long enough for the
    // browser to pick a pair between its new candidates and the media plane's old
    // credentials, had it applied its restart offer before the media plane restarted
    // (that pair then kept failing; the eighth session's "kept the old pair" flake).
    chrome
        .eval(
            "window.restartLog = []; gremiumSession.pc.addEventListener('iceconnectionstatechange', \
             () => restartLog.push('ICE-STATE ' + gremiumSession.pc.iceConnectionState)); \
             new MutationObserver(() => restartLog.push(document.getElementById('status').textContent))\
             .observe(document.getElementById('status'), { childList: true, characterData: true, subtree: true }); \
             const fetchNow = window.fetch; window.fetch = (url, init) => init && init.method === 'PATCH' \
             ? new Promise((r) => setTimeout(r, 1500)).then(() => fetchNow(url, init)) : fetchNow(url, init); \
             gremiumSession.pc.restartIce(); true",
        )
        .await;
    chrome
        .wait_for(
            "restartLog.some((l) => l.startsWith('WHIP-RESTART'))",
            Duration::from_secs(20),
            "JSON.stringify(restartLog)",
        )
        .await;
    let log = chrome.eval("JSON.stringify(restartLog)").await;
    assert!(
        log.as_str().unwrap().contains("WHIP-RESTART 200"),
        "the PATCH was answered 200: {log}"
    );
    chrome
        .wait_for(
            &format!(
                "gremiumSession.pc.signalingState === 'stable' \
                 && gremiumSession.pc.iceConnectionState === 'connected' \
                 && gremiumSession.pc.remoteDescription.sdp.match(/a=ice-ufrag:(\\S+)/)[1] !== {ufrag_before}"
            ),
            Duration::from_secs(15),
            "JSON.stringify([gremiumSession.pc.signalingState, gremiumSession.pc.iceConnectionState, restartLog])",
        )
        .await;
    // Media keeps flowing: the browser keeps sending and Gremium keeps decoding, past
    // the 3 s media timeout, without removing the publisher.
    let mut sent = sent_before;
    for _ in 0..3 {
        assert_media_flows(&app, Duration::from_secs(2), 10, "after the restart").await;
        let now = chrome
            .eval("gremiumWhip.bytesSent(gremiumSession.pc)")
            .await
            .as_f64()
            .unwrap();
        assert!(now > sent + 10_000.0, "bytes sent {sent} → {now}");
        sent = now;
    }
    assert_not_stopped(&mut ws, Duration::from_millis(200)).await;
    let port_after = chrome.eval(SELECTED_LOCAL_PORT).await;
    let log = chrome.eval("JSON.stringify(restartLog)").await;
    println!("selected local port {port_before} → {port_after}; {log}");
    assert!(
        log.as_str().unwrap().contains("WHIP-TRICKLE 204"),
        "the browser's new candidates were trickled: {log}"
    );
    assert_ne!(
        port_before, port_after,
        "the browser sends over a pair of the restarted ICE session (its new candidates)"
    );
    let state = chrome.eval("gremiumSession.pc.iceConnectionState").await;
    assert_eq!(
        state,
        "connected",
        "{}",
        chrome.eval("JSON.stringify(restartLog)").await
    );
}
