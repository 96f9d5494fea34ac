//! Issue 20 item 5 against the real binaries on loopback: `gremium publish` comes
//! back by itself when its WHIP session is gone. The server is killed with SIGKILL
//! and started again on the same port and data (what a media node's death is to a
//! cluster): the same publisher process, never restarted, publishes the same
//! participant again. A participant the moderator removed does not come back: the
//! publisher stops retrying and exits non-zero saying why.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::serve::ServeProcess;
use common::{cdp, netns};
use common::{wait_event_for, ws_connect, Ws};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// From the restarted server's first answer to the participant's media starting again.
const COME_BACK_WITHIN: Duration = Duration::from_secs(40);

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http.request(method, url).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A meeting with one participant: (meeting id, participant id, join token).
async fn meeting_with_participant(
    server: &ServeProcess,
    moderator: &str,
) -> (String, String, String) {
    let http = reqwest::Client::new();
    let base = server.base();
    let (s, m) = call(
        &http,
        reqwest::Method::POST,
        &format!("{base}/api/v1/meetings"),
        moderator,
        Some(json!({ "title": "Gemeinderat" })),
    )
    .await;
    assert_eq!(s, 201, "{m}");
    let mid = m["id"].as_str().unwrap().to_string();
    let (s, p) = call(
        &http,
        reqwest::Method::POST,
        &format!("{base}/api/v1/meetings/{mid}/participants"),
        moderator,
        Some(json!({ "display_name": "Karl" })),
    )
    .await;
    assert_eq!(s, 201, "{p}");
    let pid = p["participant"]["id"].as_str().unwrap().to_string();
    (mid, pid, p["join_token"].as_str().unwrap().to_string())
}

/// The real `gremium publish` (small VP8 camera, loopback ICE, until killed), its
/// stdout and stderr going to `log`.
fn spawn_publish(
    base: &str,
    mid: &str,
    join: &str,
    log: &std::path::Path,
) -> tokio::process::Child {
    let out = std::fs::File::create(log).unwrap();
    tokio::process::Command::new(env!("CARGO_BIN_EXE_gremium"))
        .args([
            "publish",
            "--server",
            base,
            "--meeting",
            mid,
            "--token",
            join,
        ])
        .args(["--ice-address", "127.0.0.1", "--color", "00ff00"])
        .args(["--width", "160", "--height", "90", "--fps", "15"])
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

async fn events(server: &ServeProcess, mid: &str, token: &str) -> Ws {
    let addr = ([127, 0, 0, 1], server.port).into();
    let mut ws = ws_connect(addr, mid, token).await;
    let first = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("a snapshot")
        .expect("socket open")
        .expect("no socket error");
    assert!(
        matches!(first, Message::Text(ref t) if t.contains("snapshot")),
        "{first:?}"
    );
    ws
}

/// Whether `pid` is listed as publishing in the meeting.
async fn publishing(server: &ServeProcess, mid: &str, pid: &str, token: &str) -> bool {
    let (s, list) = call(
        &reqwest::Client::new(),
        reqwest::Method::GET,
        &format!("{}/api/v1/meetings/{mid}/participants", server.base()),
        token,
        None,
    )
    .await;
    assert_eq!(s, 200, "{list}");
    list.as_array()
        .unwrap()
        .iter()
        .any(|p| p["id"] == pid && p["publishing"] == true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gremium_publish_comes_back_after_the_server_is_killed_and_restarted() {
    let mut server = ServeProcess::start().await;
    let moderator = server.token("moderator");
    let (mid, pid, join) = meeting_with_participant(&server, &moderator).await;
    let mut ws = events(&server, &mid, &moderator).await;
    let log = server.dir.join("publish.log");
    let mut publisher = spawn_publish(&server.base(), &mid, &join, &log);
    let is_karl = |e: &Value| e["participant_id"] == pid.as_str();
    wait_event_for(
        &mut ws,
        Duration::from_secs(20),
        "participant_media_started",
        is_karl,
    )
    .await;
    assert!(publishing(&server, &mid, &pid, &moderator).await);

    server.kill9();
    drop(ws);
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.run().await;
    let back = Instant::now();
    // Connected before the publisher can notice the loss (that takes seconds of
    // silence), so its media start is not missed.
    let mut ws = events(&server, &mid, &moderator).await;
    assert!(
        !publishing(&server, &mid, &pid, &moderator).await,
        "a fresh process knows no publishing session"
    );
    wait_event_for(
        &mut ws,
        COME_BACK_WITHIN,
        "participant_media_started",
        is_karl,
    )
    .await;
    let took = back.elapsed();
    assert!(publishing(&server, &mid, &pid, &moderator).await);
    assert!(
        publisher.try_wait().unwrap().is_none(),
        "the same publisher process came back: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    // It keeps publishing: the meeting's media timeout would have removed it.
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert!(publishing(&server, &mid, &pid, &moderator).await);
    let out = std::fs::read_to_string(&log).unwrap_or_default();
    println!("came back {took:?} after the restart\n{out}");
    assert!(out.contains("reconnecting…"), "{out}");
    assert!(out.contains("reconnected after"), "{out}");
    let _ = publisher.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_participant_is_not_published_again() {
    let server = ServeProcess::start().await;
    let moderator = server.token("moderator");
    let (mid, pid, join) = meeting_with_participant(&server, &moderator).await;
    let mut ws = events(&server, &mid, &moderator).await;
    let log = server.dir.join("publish.log");
    let mut publisher = spawn_publish(&server.base(), &mid, &join, &log);
    let is_karl = |e: &Value| e["participant_id"] == pid.as_str();
    wait_event_for(
        &mut ws,
        Duration::from_secs(20),
        "participant_media_started",
        is_karl,
    )
    .await;

    let (s, body) = call(
        &reqwest::Client::new(),
        reqwest::Method::DELETE,
        &format!("{}/api/v1/meetings/{mid}/participants/{pid}", server.base()),
        &moderator,
        None,
    )
    .await;
    assert_eq!(s, 204, "{body}");
    // The publisher notices, tries to come back, is refused and gives up, without
    // the participant's media ever starting again.
    let came_back = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t)))
                    if t.contains("participant_media_started") && t.contains(pid.as_str()) =>
                {
                    return t.to_string()
                }
                Some(Ok(_)) => continue,
                _ => std::future::pending::<()>().await,
            }
        }
    };
    let status = tokio::select! {
        status = tokio::time::timeout(Duration::from_secs(60), publisher.wait()) => {
            status.expect("the publisher gives up within 60 s").unwrap()
        }
        e = came_back => {
            panic!("the removed participant came back: {e}\n{}", std::fs::read_to_string(&log).unwrap_or_default())
        }
    };
    let out = std::fs::read_to_string(&log).unwrap_or_default();
    println!("{out}");
    assert!(!status.success(), "exits non-zero: {status}\n{out}");
    assert!(out.contains("cannot come back"), "{out}");
    assert!(out.contains("401 Unauthorized"), "says why: {out}");
    assert!(!publishing(&server, &mid, &pid, &moderator).await);
}

/// Every line the /publish page shows in its status from now on, into `whipLog`.
const RECORD_STATUS: &str = "window.whipLog = []; new MutationObserver(() => \
     whipLog.push(document.getElementById('status').textContent)).observe(\
     document.getElementById('status'), { childList: true, characterData: true, subtree: true }); true";

/// Chromium on the /publish page (whip.js) of a fresh server in a loopback-only
/// namespace, publishing participant Karl: (server, chromium, events, meeting,
/// participant, moderator token).
async fn chromium_publishing() -> (ServeProcess, cdp::Chromium, Ws, String, String, String) {
    common::assert_chromium();
    let server = ServeProcess::start().await;
    let moderator = server.token("moderator");
    let (mid, pid, join) = meeting_with_participant(&server, &moderator).await;
    let mut ws = events(&server, &mid, &moderator).await;
    let url = format!("{}/publish/{mid}?token={join}", server.base());
    let mut chrome = cdp::Chromium::launch_with(&url, cdp::FAKE_MEDIA).await;
    chrome
        .wait_for(
            "!!window.gremiumSession && gremiumSession.pc.iceConnectionState === 'connected'",
            Duration::from_secs(30),
            "document.getElementById('status').textContent",
        )
        .await;
    let karl = pid.clone();
    wait_event_for(
        &mut ws,
        Duration::from_secs(20),
        "participant_media_started",
        |e| e["participant_id"] == karl.as_str(),
    )
    .await;
    chrome.eval(RECORD_STATUS).await;
    (server, chrome, ws, mid, pid, moderator)
}

#[test]
fn headless_chromium_comes_back_after_the_server_is_killed_and_restarted() {
    netns::run_isolated_async(
        "headless_chromium_comes_back_after_the_server_is_killed_and_restarted",
        Duration::from_secs(180),
        chromium_comes_back,
    )
}

async fn chromium_comes_back() {
    let (mut server, mut chrome, ws, mid, pid, moderator) = chromium_publishing().await;
    server.kill9();
    drop(ws);
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.run().await;
    let mut ws = events(&server, &mid, &moderator).await;
    wait_event_for(
        &mut ws,
        COME_BACK_WITHIN,
        "participant_media_started",
        |e| e["participant_id"] == pid.as_str(),
    )
    .await;
    chrome
        .wait_for(
            "gremiumSession.pc.connectionState === 'connected' \
             && whipLog.some((l) => l.startsWith('WHIP-RECONNECTED'))",
            Duration::from_secs(20),
            "JSON.stringify(whipLog)",
        )
        .await;
    let log = chrome.eval("JSON.stringify(whipLog)").await;
    let log = log.as_str().unwrap().to_string();
    println!("{log}");
    assert!(
        log.contains("WHIP-RECONNECTING reconnecting…"),
        "the page said so: {log}"
    );
    assert!(publishing(&server, &mid, &pid, &moderator).await);
}

#[test]
fn headless_chromium_of_a_removed_participant_does_not_come_back() {
    netns::run_isolated_async(
        "headless_chromium_of_a_removed_participant_does_not_come_back",
        Duration::from_secs(180),
        chromium_removed,
    )
}

async fn chromium_removed() {
    let (server, mut chrome, _ws, mid, pid, moderator) = chromium_publishing().await;
    let (s, body) = call(
        &reqwest::Client::new(),
        reqwest::Method::DELETE,
        &format!("{}/api/v1/meetings/{mid}/participants/{pid}", server.base()),
        &moderator,
        None,
    )
    .await;
    assert_eq!(s, 204, "{body}");
    chrome
        .wait_for(
            "whipLog.some((l) => l.startsWith('WHIP-GONE 401'))",
            Duration::from_secs(60),
            "JSON.stringify(whipLog)",
        )
        .await;
    // Given up for good: nothing more is tried.
    let before = chrome.eval("whipLog.length").await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    let log = chrome.eval("JSON.stringify(whipLog)").await;
    assert_eq!(chrome.eval("whipLog.length").await, before, "{log}");
    assert!(!publishing(&server, &mid, &pid, &moderator).await);
}
