//! Issue 18, items 4, 6, 9 and 10b over real HTTP and WebSocket: a removed
//! participant's join token is refused at once (and its sockets closed), a meeting's
//! end leaves a join token only the participant's own consent, WebSockets are capped
//! and slow readers dropped, and control characters never enter displayed text.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use gremium_signaling::{EventKind, Role};
use reqwest::Method;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

macro_rules! both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::Backend::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(super::Backend::Postgres).await;
            }
        }
    };
}

/// The HTTP status with which a WebSocket upgrade was refused (0 if it was not).
async fn ws_refused(app: &TestApp, mid: &str, token: &str) -> (u16, String) {
    let url = format!(
        "ws://{}/api/v1/meetings/{mid}/events?access_token={token}",
        app.addr
    );
    match tokio_tungstenite::connect_async(url).await {
        Ok(_) => (0, String::new()),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let body = resp
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).to_string())
                .unwrap_or_default();
            (resp.status().as_u16(), body)
        }
        Err(e) => panic!("websocket failed otherwise: {e}"),
    }
}

async fn ledger_len(m: &Meeting) -> usize {
    m.ledger().await.as_array().unwrap().len()
}

fn message(body: &Value) -> String {
    body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// What a participant's token reads about its meeting (not their own data: their own
/// consent stays theirs to read and withdraw after a removal).
fn participant_reads(mid: &str, pid_other: &str) -> Vec<String> {
    vec![
        format!("/api/v1/meetings/{mid}"),
        format!("/api/v1/meetings/{mid}/participants"),
        format!("/api/v1/meetings/{mid}/chapters"),
        format!("/api/v1/meetings/{mid}/participants/{pid_other}/consent"),
    ]
}

/// The meeting every test here starts from: "Rat", run by a moderator, with Alice.
async fn rat(app: &TestApp) -> (Client, Meeting, Participant) {
    let moderator = app.moderator();
    let m = moderator.create_meeting("Rat").await;
    let alice = m.add_participant("Alice").await;
    (moderator, m, alice)
}

async fn removal_revokes_the_join_token_at_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let (moderator, m, alice) = rat(&app).await;
    let bob = m.add_participant("Bob").await;
    let (mid, pid, pid_b) = (m.id.clone(), alice.id.clone(), bob.id.clone());
    alice.set_consent(Consent::RECORDING).await;
    let (mut ws_a, _) = m.acting_as(&alice.client).events().await;
    let (mut ws_b, _) = m.acting_as(&bob.client).events().await;

    // Alice's token keeps reading while the moderator removes her.
    let stop = Arc::new(AtomicBool::new(false));
    let mut hammers = Vec::new();
    for k in 0..4 {
        let (alice, stop) = (alice.client.clone(), stop.clone());
        let paths = participant_reads(&mid, &pid_b);
        hammers.push(tokio::spawn(async move {
            let mut seen: Vec<(Instant, u16, Value)> = Vec::new();
            let mut i = k;
            while !stop.load(Ordering::SeqCst) {
                let started = Instant::now();
                let resp = alice
                    .request(Method::GET, &paths[i % paths.len()])
                    .send()
                    .await
                    .unwrap();
                let status = resp.status().as_u16();
                let body: Value = resp.json().await.unwrap_or(Value::Null);
                seen.push((started, status, body));
                i += 1;
            }
            seen
        }));
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (s, b) = moderator
        .send(
            Method::DELETE,
            &format!("/api/v1/meetings/{mid}/participants/{pid}"),
            None,
        )
        .await;
    assert_eq!(s, 204, "{b}");
    let deleted = Instant::now();
    let closed = wait_closed(&mut ws_a, Duration::from_secs(1)).await;
    let within = deleted.elapsed();
    let (code, reason) = closed.expect("a close frame");
    assert_eq!(code, 1008, "policy violation");
    assert!(reason.contains("removed"), "{reason}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    let (mut before, mut after) = (0, 0);
    for h in hammers {
        for (started, status, body) in h.await.unwrap() {
            if started > deleted {
                after += 1;
                assert_eq!(status, 401, "a request after the removal: {body}");
                assert!(message(&body).contains("revoked"), "{body}");
            } else if status == 200 {
                before += 1;
            }
        }
    }
    assert!(
        before > 0 && after > 0,
        "{before} reads before, {after} after"
    );
    eprintln!("socket closed {within:?} after the DELETE answered; {before} reads before, {after} refused after");

    for path in participant_reads(&mid, &pid_b) {
        let (s, b) = alice.client.send(Method::GET, &path, None).await;
        assert_eq!(s, 401, "{path}: {b}");
    }
    // Her own consent stays hers: she reads it, cannot give more, and can withdraw
    // it, which is recorded as an erasure request (issue 18 item 4: everything but
    // consent withdrawal and the participant's own data is revoked).
    let own_consent = format!("/api/v1/meetings/{mid}/participants/{pid}/consent");
    let (s, b) = alice.client.send(Method::GET, &own_consent, None).await;
    assert_eq!((s, b["recording"].as_bool()), (200, Some(true)), "{b}");
    let (s, b) = alice
        .client
        .send(
            Method::PUT,
            &own_consent,
            Some(json!({"recording": true, "streaming": true})),
        )
        .await;
    assert_eq!(s, 409, "{b}");
    assert!(message(&b).contains("removed"), "{b}");
    let (s, b) = alice
        .client
        .send(
            Method::PUT,
            &own_consent,
            Some(json!({"recording": false, "streaming": false})),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    assert_eq!(b["recordings_changed"], false, "{b}");
    assert!(
        b["message"]
            .as_str()
            .unwrap_or_default()
            .contains("erasure"),
        "{b}"
    );
    let (s, body) = ws_refused(&app, &mid, alice.client.token()).await;
    assert_eq!(s, 401, "{body}");
    let resp = app
        .http
        .post(app.url(&format!("/whip/{mid}")))
        .bearer_auth(alice.client.token())
        .header("content-type", "application/sdp")
        .body("v=0\r\n")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    // Bob stays, and hears that Alice left.
    wait_event(&mut ws_b, "participant_left", |e| {
        e["participant_id"] == pid.as_str()
    })
    .await;
}
both_backends!(removal_revokes_the_join_token_at_once);

async fn meeting_end_leaves_the_token_only_its_own_consent(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, m, alice) = rat(&app).await;
    let bob = m.add_participant("Bob").await;
    let (mid, pid, pid_b) = (m.id.clone(), alice.id.clone(), bob.id.clone());
    alice.set_consent(Consent::BOTH).await;
    let (mut ws_a, _) = m.acting_as(&alice.client).events().await;
    let (mut ws_staff, _) = m.events().await;
    m.end().await;
    let (code, reason) = wait_closed(&mut ws_a, Duration::from_secs(1))
        .await
        .expect("a close frame");
    assert_eq!(code, 1008);
    assert!(reason.contains("ended"), "{reason}");
    // Staff consoles stay and see the end.
    wait_event(&mut ws_staff, "meeting_ended", |_| true).await;

    for path in &participant_reads(&mid, &pid)[..3] {
        let (s, b) = alice.client.send(Method::GET, path, None).await;
        assert_eq!(s, 403, "{path}: {b}");
        assert!(message(&b).contains("ended"), "{b}");
    }
    assert_eq!(ws_refused(&app, &mid, alice.client.token()).await.0, 403);
    // The participant's own data stays readable.
    let consent_path = format!("/api/v1/meetings/{mid}/participants/{pid}/consent");
    let (s, c) = alice.client.send(Method::GET, &consent_path, None).await;
    assert_eq!(s, 200, "{c}");
    assert_eq!(c, json!({"recording": true, "streaming": true}));
    // Not another's.
    let (s, _) = bob.client.send(Method::GET, &consent_path, None).await;
    assert_eq!(s, 403);

    // Granting after the end is refused, and writes nothing.
    let entries = ledger_len(&m).await;
    let (s, b) = bob
        .client
        .send(
            Method::PUT,
            &format!("/api/v1/meetings/{mid}/participants/{pid_b}/consent"),
            Some(json!({"recording": true, "streaming": false})),
        )
        .await;
    assert_eq!(s, 409, "{b}");
    assert!(message(&b).contains("ended"), "{b}");
    assert_eq!(ledger_len(&m).await, entries);

    // A withdrawal after the end is recorded and points to erasure.
    let (s, b) = alice
        .client
        .send(
            Method::PUT,
            &consent_path,
            Some(json!({"recording": false, "streaming": true})),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    assert_eq!(b["recordings_changed"], false, "{b}");
    assert!(b["message"].as_str().unwrap().contains("erasure"), "{b}");
    let ledger = m.ledger().await;
    let last = ledger.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["kind"], "consent_withdrawn_after_end", "{last}");
    assert_eq!(last["subject"], pid.as_str());
    assert_eq!(b["ledger_seq"], last["seq"]);
    let data: Value = serde_json::from_str(last["data"].as_str().unwrap()).unwrap();
    assert_eq!(
        data["withdrawn"],
        json!({"recording": true, "streaming": false}),
        "{data}"
    );
    // The consent in force during the meeting is history; it is not rewritten.
    let (_, c) = alice.client.send(Method::GET, &consent_path, None).await;
    assert_eq!(c, json!({"recording": true, "streaming": true}));
    // A grant hidden in a withdrawal is refused too.
    let (s, _) = bob
        .client
        .send(
            Method::PUT,
            &format!("/api/v1/meetings/{mid}/participants/{pid_b}/consent"),
            Some(json!({"recording": false, "streaming": true})),
        )
        .await;
    assert_eq!(s, 409);
    let archivist = app.token(&[Role::Archivist]);
    let (s, b) = app
        .send(Method::GET, "/api/v1/audit/verify", Some(&archivist), None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(b["intact"], true, "{b}");
}
both_backends!(meeting_end_leaves_the_token_only_its_own_consent);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_never_enter_displayed_text() {
    let app = spawn_app(Backend::Sqlite).await;
    let moderator = app.moderator();
    let m = moderator.create_meeting("Rat").await;
    let mid = m.id.clone();
    let bad = [
        "Eve\0",
        "\u{1b}[2J\u{1b}[31mAdmin",
        "Eve\nAdmin",
        "Eve\rX",
        "\u{202E}ecilA",
        "Al\u{2066}ice\u{2069}",
        "x\u{2028}y",
        "x\u{85}y",
    ];
    for text in bad {
        let cases: [(&str, String, Value); 4] = [
            (
                "display_name",
                format!("/api/v1/meetings/{mid}/participants"),
                json!({"display_name": text}),
            ),
            ("title", "/api/v1/meetings".into(), json!({"title": text})),
            (
                "title",
                format!("/api/v1/meetings/{mid}/chapters"),
                json!({"title": text}),
            ),
            (
                "reason",
                format!("/api/v1/meetings/{mid}/public"),
                json!({"public": true, "reason": text}),
            ),
        ];
        for (field, path, body) in cases {
            let method = if path.ends_with("/public") {
                Method::PUT
            } else {
                Method::POST
            };
            let (s, b) = moderator.send(method, &path, Some(body)).await;
            assert_eq!(s, 422, "{path} {text:?}: {b}");
            assert!(
                message(&b).starts_with(&format!("{field}: no control characters")),
                "{path} {text:?}: {b}"
            );
        }
    }
    // Nothing of it was stored.
    let ps = m.participants().await;
    assert_eq!(ps.as_array().unwrap().len(), 0, "{ps}");
    let chapters = moderator
        .get_ok(&format!("/api/v1/meetings/{mid}/chapters"))
        .await;
    assert_eq!(chapters.as_array().unwrap().len(), 0, "{chapters}");
    let now = m.get().await;
    assert_eq!(now["public"], false, "{now}");
    let page = moderator.get_ok("/api/v1/meetings").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
    // Ordinary text from anywhere in the world still passes.
    for name in ["Åsa Ørsted", "محمد", "李小龙", "👩‍👩‍👧"] {
        m.add_participant(name).await;
    }
}

/// A client that reads the snapshot and then nothing, on a small receive buffer.
async fn never_reading_client(app: &TestApp, mid: &str, token: &str) -> Ws {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(app.addr).await.unwrap();
    let url = format!(
        "ws://{}/api/v1/meetings/{mid}/events?access_token={token}",
        app.addr
    );
    let (mut ws, _) =
        tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(stream))
            .await
            .unwrap();
    assert_eq!(next_event(&mut ws).await["type"], "snapshot");
    ws
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_never_reads_is_dropped_and_others_keep_receiving() {
    let app = spawn_app(Backend::Sqlite).await;
    let (_, m, alice) = rat(&app).await;
    let mid: uuid::Uuid = m.id.parse().unwrap();
    let mut slow = never_reading_client(&app, &m.id, &alice.join).await;
    let (mut good, _) = m.events().await;
    let reader = tokio::spawn(async move {
        let mut got = 0usize;
        loop {
            let e = next_event(&mut good).await;
            got += 1;
            if e["type"] == "chapter_marked" && e["title"] == "last" {
                return (got, good);
            }
        }
    });
    // 4 KiB events, paced so a reading client keeps up.
    let big = "x".repeat(4096);
    let total = 3000;
    let started = Instant::now();
    for i in 0..total {
        app.state.publish(
            mid,
            EventKind::ChapterMarked {
                chapter_id: uuid::Uuid::new_v4(),
                title: big.clone(),
                marked_at: chrono::Utc::now(),
            },
        );
        if i % 20 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    app.state.publish(
        mid,
        EventKind::ChapterMarked {
            chapter_id: uuid::Uuid::new_v4(),
            title: "last".into(),
            marked_at: chrono::Utc::now(),
        },
    );
    let (got, mut good) = tokio::time::timeout(Duration::from_secs(20), reader)
        .await
        .expect("the reading client gets the last event")
        .unwrap();
    eprintln!(
        "{total} events of 4 KiB in {:?}; the reader got {got} messages",
        started.elapsed()
    );
    // The never-reading one was dropped: reading now, it finds the end of the
    // connection after what was already on the wire, well before all events.
    let mut drained = 0usize;
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match slow.next().await {
                Some(Ok(Message::Text(_))) => drained += 1,
                Some(Ok(_)) => {}
                None | Some(Err(_)) => return,
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the never-reading client is still connected after {drained} messages"
    );
    assert!(drained < total, "it got {drained} of {total}: not dropped");
    eprintln!("the never-reading client was dropped after {drained} messages");
    // The good one is still connected.
    app.state.publish(mid, EventKind::MeetingEnded);
    wait_event(&mut good, "meeting_ended", |_| true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_token_gets_at_most_its_cap_of_sockets() {
    let app = spawn_app(Backend::Sqlite).await;
    let (_, m, alice) = rat(&app).await;
    let mid = m.id.clone();
    let cap = gremium_signaling::WebSocketSettings::default().max_per_token;
    let mut open = Vec::new();
    for _ in 0..cap {
        open.push(ws_connect(app.addr, &mid, alice.client.token()).await);
    }
    let (s, body) = ws_refused(&app, &mid, alice.client.token()).await;
    assert_eq!(s, 429, "socket number {} of one token: {body}", cap + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removal_ends_the_participants_publishing_session() {
    let dir = std::env::temp_dir().join(format!("gremium-revoke-{}", uuid::Uuid::new_v4()));
    let PublishingMeeting {
        moderator,
        meeting,
        mid,
        anna,
        mut ws,
        // Bound, not `..`: the rest would be dropped here, ending her publisher.
        app: _app,
        media: _media,
        publisher: _publisher,
    } = PublishingMeeting::start(dir.clone(), "Rat", false, Consent::RECORDING).await;
    let ps = meeting.participants().await;
    assert_eq!(ps[0]["id"], anna.id.as_str(), "{ps}");
    let anna = anna.id;
    assert_eq!(ps[0]["publishing"], true, "{ps}");
    let (s, b) = moderator
        .send(
            Method::DELETE,
            &format!("/api/v1/meetings/{mid}/participants/{anna}"),
            None,
        )
        .await;
    assert_eq!(s, 204, "{b}");
    let deleted = Instant::now();
    wait_event_for(
        &mut ws,
        Duration::from_secs(2),
        "participant_media_stopped",
        |e| e["participant_id"] == anna.as_str(),
    )
    .await;
    eprintln!(
        "media stopped {:?} after the DELETE answered",
        deleted.elapsed()
    );
    // Nothing of hers comes back while her publisher keeps trying for a while.
    let quiet_until = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        match tokio::time::timeout_at(quiet_until, ws.next()).await {
            Err(_) => break,
            Ok(Some(Ok(Message::Text(t)))) => {
                let e: Value = serde_json::from_str(t.as_str()).unwrap();
                assert_ne!(e["type"], "participant_media_started", "{e}");
            }
            Ok(Some(Ok(_))) => {}
            Ok(other) => panic!("the moderator's socket ended: {other:?}"),
        }
    }
    let ps = meeting.participants().await;
    assert_eq!(ps[0]["publishing"], false, "{ps}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meeting_cap_refuses_with_503_and_closed_sockets_give_their_place_back() {
    let app = spawn_app_with(
        Backend::Sqlite,
        auth_settings(None),
        gremium_signaling::ApiSettings {
            websockets: gremium_signaling::WebSocketSettings {
                max_per_token: 2,
                max_per_meeting: 5,
                queue_messages: 64,
            },
            ..Default::default()
        },
    )
    .await;
    let (_, m, alice) = rat(&app).await;
    let mid = m.id.clone();
    let mid_uuid: uuid::Uuid = mid.parse().unwrap();
    let staff = |who: &str| {
        app.auth.issue_staff_token(
            who,
            &[Role::Moderator],
            now_secs(),
            Duration::from_secs(600),
        )
    };
    let mut open = vec![
        ws_connect(app.addr, &mid, alice.client.token()).await,
        ws_connect(app.addr, &mid, alice.client.token()).await,
    ];
    let (s, b) = ws_refused(&app, &mid, alice.client.token()).await;
    assert_eq!(s, 429, "{b}");
    assert!(
        b.contains("too many open event sockets for this token"),
        "{b}"
    );
    for who in ["s1", "s2", "s3"] {
        open.push(ws_connect(app.addr, &mid, &staff(who)).await);
    }
    let (s, b) = ws_refused(&app, &mid, &staff("s4")).await;
    assert_eq!(s, 503, "{b}");
    assert!(b.contains("for this meeting"), "{b}");
    assert_eq!(app.state.sockets().open_in(mid_uuid), 5);
    // Two close properly, three just vanish (TCP gone, no close frame).
    for mut ws in open.drain(..2) {
        ws.close(None).await.unwrap();
    }
    open.clear();
    let deadline = Instant::now() + Duration::from_secs(2);
    while app.state.sockets().open_total() > 0 {
        assert!(
            Instant::now() < deadline,
            "{} places still taken",
            app.state.sockets().open_total()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Every place is free again.
    let _a = ws_connect(app.addr, &mid, alice.client.token()).await;
    let _b = ws_connect(app.addr, &mid, alice.client.token()).await;
    for who in ["s1", "s2", "s3"] {
        open.push(ws_connect(app.addr, &mid, &staff(who)).await);
    }
}
