//! End-to-end tests of the control-plane API over real HTTP and WebSocket, on SQLite
//! and on PostgreSQL, with the fake media plane standing in for GStreamer.

mod common;

use common::*;
use gremium_protocol::MediaCommand;
use gremium_signaling::Role;
use reqwest::Method;
use serde_json::{json, Value};

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

async fn moderator_runs_a_meeting_and_clients_see_every_change(backend: Backend) {
    let app = spawn_app(backend).await;
    let moderator = app.moderator();
    let (status, m) = moderator
        .send(
            Method::POST,
            "/api/v1/meetings",
            Some(json!({"title": "Stadtrat, 12. Sitzung", "public": true})),
        )
        .await;
    assert_eq!(status, 201, "{m}");
    assert_eq!(m["state"], "open");
    assert_eq!(m["public"], true);
    assert_eq!(m["retention_days"], 30);
    let mid = m["id"].as_str().unwrap().to_string();

    let mut mod_ws = ws_connect(app.addr, &mid, moderator.token()).await;
    let snap = next_event(&mut mod_ws).await;
    assert_eq!(snap["type"], "snapshot");
    assert_eq!(snap["recording"], false);
    assert_eq!(snap["participants"].as_array().unwrap().len(), 0);

    let anna = moderator
        .meeting(&mid)
        .add_participant("Anna Schmidt")
        .await;
    let joined = wait_event(&mut mod_ws, "participant_joined", |_| true).await;
    assert_eq!(joined["participant_id"], anna.id.as_str());
    assert_eq!(joined["display_name"], "Anna Schmidt");

    // The participant sees the meeting, with consent defaulting to no.
    let (s, c) = anna
        .client
        .send(
            Method::GET,
            &format!("/api/v1/meetings/{mid}/participants/{}/consent", anna.id),
            None,
        )
        .await;
    assert_eq!(
        (s, c),
        (200, json!({"recording": false, "streaming": false}))
    );
    let mut p_ws = ws_connect(app.addr, &mid, anna.client.token()).await;
    assert_eq!(next_event(&mut p_ws).await["type"], "snapshot");

    // Media-plane events reach every client of the meeting.
    app.fake
        .emit(gremium_protocol::MediaEvent::ParticipantMediaStarted {
            meeting_id: mid.parse().unwrap(),
            participant_id: anna.id.parse().unwrap(),
        });
    let e = wait_event(&mut mod_ws, "participant_media_started", |_| true).await;
    assert_eq!(e["participant_id"], anna.id.as_str());

    let consent_path = format!("/api/v1/meetings/{mid}/participants/{}/consent", anna.id);
    let (s, r) = anna
        .client
        .send(
            Method::PUT,
            &consent_path,
            Some(json!({"recording": true, "streaming": false})),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["changed"], true);
    assert_eq!(r["consent"], json!({"recording": true, "streaming": false}));
    assert_eq!(
        r["media_time_ns"], 1_000_000_000u64,
        "media time reported by the media plane"
    );
    let seq = r["ledger_seq"].as_i64().unwrap();
    for ws in [&mut mod_ws, &mut p_ws] {
        let e = wait_event(ws, "consent_changed", |_| true).await;
        assert_eq!(
            (
                e["participant_id"].as_str(),
                e["recording"].as_bool(),
                e["streaming"].as_bool()
            ),
            (Some(anna.id.as_str()), Some(true), Some(false))
        );
    }
    assert!(app.fake.commands().contains(&MediaCommand::SetConsent {
        meeting_id: mid.parse().unwrap(),
        participant_id: anna.id.parse().unwrap(),
        recording: true,
        streaming: false
    }));

    // Recording: the indicator every client shows.
    let (s, rec) = moderator
        .send(
            Method::POST,
            &format!("/api/v1/meetings/{mid}/recordings"),
            None,
        )
        .await;
    assert_eq!(s, 201, "{rec}");
    let rid = rec["id"].as_str().unwrap().to_string();
    let active = wait_event(&mut p_ws, "recording_state_changed", |e| {
        e["state"] == "active"
    })
    .await;
    assert_eq!(active["recording_id"], rid.as_str());
    let (s, _) = moderator
        .send(
            Method::POST,
            &format!("/api/v1/meetings/{mid}/recordings"),
            None,
        )
        .await;
    assert_eq!(s, 409, "one recording at a time");
    let (s, stopped) = moderator
        .send(
            Method::POST,
            &format!("/api/v1/recordings/{rid}/stop"),
            None,
        )
        .await;
    assert_eq!(s, 202, "{stopped}");
    wait_event(&mut p_ws, "recording_state_changed", |e| {
        e["state"] == "finished"
    })
    .await;
    let (s, e) = moderator
        .send(
            Method::POST,
            &format!("/api/v1/recordings/{rid}/stop"),
            None,
        )
        .await;
    assert_eq!(s, 409, "stopping a finished recording is a conflict: {e}");
    assert_eq!(e["error"]["code"], "conflict");

    // Stream with an RTMP key that must never come back.
    let st = moderator.meeting(&mid).start_stream(json!({"hls": true, "rtmp": [{"url": "rtmp://127.0.0.1:1935/live", "key": "super-secret-key"}]})).await.body;
    assert!(!st.to_string().contains("super-secret-key"));
    assert_eq!(st["hls_url"], format!("/live/{mid}/index.m3u8"));
    let sid = st["id"].as_str().unwrap().to_string();
    wait_event(&mut p_ws, "stream_state_changed", |e| {
        e["state"] == "active"
    })
    .await;

    // Non-public agenda item.
    let (s, pm) = moderator
        .send(
            Method::PUT,
            &format!("/api/v1/meetings/{mid}/public"),
            Some(json!({"public": false, "reason": "TOP 7: Personalangelegenheit"})),
        )
        .await;
    assert_eq!(s, 200, "{pm}");
    assert_eq!(pm["public"], false);
    let e = wait_event(&mut p_ws, "public_changed", |_| true).await;
    assert_eq!(
        (e["public"].as_bool(), e["reason"].as_str()),
        (Some(false), Some("TOP 7: Personalangelegenheit"))
    );

    // Participant leaves; meeting ends and stops the stream.
    let (s, _) = anna
        .client
        .send(
            Method::DELETE,
            &format!("/api/v1/meetings/{mid}/participants/{}", anna.id),
            None,
        )
        .await;
    assert_eq!(s, 204);
    wait_event(&mut mod_ws, "participant_left", |e| {
        e["participant_id"] == anna.id.as_str()
    })
    .await;
    let (s, ended) = moderator
        .send(Method::POST, &format!("/api/v1/meetings/{mid}/end"), None)
        .await;
    assert_eq!(s, 200, "{ended}");
    assert_eq!(ended["state"], "ended");
    wait_event(&mut mod_ws, "stream_state_changed", |e| {
        e["stream_id"] == sid.as_str() && e["state"] == "stopping"
    })
    .await;
    wait_event(&mut mod_ws, "meeting_ended", |_| true).await;
    let (s, _) = moderator
        .send(Method::POST, &format!("/api/v1/meetings/{mid}/end"), None)
        .await;
    assert_eq!(s, 409);

    // The ledger witnessed all of it, in order, and verifies.
    let (s, entries) = moderator
        .send(Method::GET, &format!("/api/v1/meetings/{mid}/ledger"), None)
        .await;
    assert_eq!(s, 200);
    let kinds: Vec<&str> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    for expected in [
        "meeting_created",
        "consent_changed",
        "recording_requested",
        "recording_active",
        "recording_stopping",
        "recording_finished",
        "stream_requested",
        "public_changed",
        "stream_stopping",
        "meeting_ended",
    ] {
        assert!(
            kinds.contains(&expected),
            "{expected} missing from {kinds:?}"
        );
    }
    let consent_entry = &entries.as_array().unwrap()[(seq - 1) as usize];
    assert_eq!(consent_entry["kind"], "consent_changed");
    let data: Value = serde_json::from_str(consent_entry["data"].as_str().unwrap()).unwrap();
    assert_eq!(data["media_time_ns"], 1_000_000_000u64);
    assert!(
        !entries.to_string().contains("Anna"),
        "display names stay out of the ledger"
    );
    let archivist = app.archivist();
    let (s, v) = archivist
        .send(Method::GET, "/api/v1/audit/verify", None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["intact"], true, "{v}");
}
both_backends!(moderator_runs_a_meeting_and_clients_see_every_change);

async fn only_the_participant_sets_their_consent(backend: Backend) {
    let app = spawn_app(backend).await;
    let moderator = app.moderator();
    let admin = app.admin();
    let m = moderator.create_meeting("Ausschuss").await;
    let mid = m.id.clone();
    let other = moderator.create_meeting("Anderer Ausschuss").await.id;
    let (a, a_join) = m.add_participant("A").await.into_parts();
    let (b, _b_join) = m.add_participant("B").await.into_parts();
    let (_, x_join) = moderator
        .meeting(&other)
        .add_participant("X")
        .await
        .into_parts();
    let body = json!({"recording": true, "streaming": true});
    let path = |p: &str| format!("/api/v1/meetings/{mid}/participants/{p}/consent");
    for (who, token, target) in [
        ("moderator", moderator.token(), &a),
        ("admin", admin.token(), &a),
        ("another participant", a_join.token(), &b),
        ("participant of another meeting", x_join.token(), &a),
    ] {
        let (s, e) = app
            .send(Method::PUT, &path(target), Some(token), Some(body.clone()))
            .await;
        assert_eq!(s, 403, "{who}: {e}");
        assert_eq!(e["error"]["code"], "forbidden");
    }
    let (s, e) = x_join
        .send(Method::GET, &format!("/api/v1/meetings/{mid}"), None)
        .await;
    assert_eq!(s, 403, "join tokens are meeting-scoped: {e}");
    let (s, _) = a_join
        .send(
            Method::POST,
            "/api/v1/meetings",
            Some(json!({"title": "x"})),
        )
        .await;
    assert_eq!(s, 403, "participants do not create meetings");

    let (s, r) = a_join
        .send(
            Method::PUT,
            &path(&a),
            Some(json!({"recording": false, "streaming": false})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        r["changed"], false,
        "repeating the current consent writes nothing"
    );
    let (s, r) = a_join
        .send(Method::PUT, &path(&a), Some(body.clone()))
        .await;
    assert_eq!((s, r["changed"].as_bool()), (200, Some(true)));
    let (s, r) = a_join
        .send(
            Method::PUT,
            &path(&a),
            Some(json!({"recording": false, "streaming": true})),
        )
        .await;
    assert_eq!((s, r["changed"].as_bool()), (200, Some(true)), "withdrawal");
    let entries = app.db.ledger_entries(&mid, 0, 100).await.unwrap();
    let consent: Vec<_> = entries
        .iter()
        .filter(|e| e.kind == "consent_changed")
        .collect();
    assert_eq!(consent.len(), 2);
    assert_eq!(consent[1].actor, format!("participant:{a}"));
    assert!(consent[1].data.contains(r#""recording":false"#));
}
both_backends!(only_the_participant_sets_their_consent);

async fn meetings_paginate(backend: Backend) {
    let app = spawn_app(backend).await;
    let moderator = app.moderator();
    let mut created = Vec::new();
    for i in 0..5 {
        created.push(moderator.create_meeting(&format!("Sitzung {i}")).await.id);
    }
    let mut seen = Vec::new();
    let mut path = "/api/v1/meetings?limit=2".to_string();
    let mut pages = 0;
    loop {
        let (s, page) = moderator.send(Method::GET, &path, None).await;
        assert_eq!(s, 200, "{page}");
        pages += 1;
        seen.extend(page["items"].as_array().unwrap().iter().map(|m| {
            let at =
                chrono::DateTime::parse_from_rfc3339(m["created_at"].as_str().unwrap()).unwrap();
            (at, m["id"].as_str().unwrap().to_string())
        }));
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/meetings?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    // Newest first; meetings created in the same millisecond are ordered by id.
    let mut expected = seen.clone();
    expected.sort_by(|a, b| b.cmp(a));
    assert_eq!(seen, expected, "newest first");
    let mut ids: Vec<String> = seen.into_iter().map(|(_, id)| id).collect();
    ids.sort();
    created.sort();
    assert_eq!(ids, created, "each meeting exactly once");
}
both_backends!(meetings_paginate);

async fn tampering_shows_in_the_verify_endpoint(backend: Backend) {
    let app = spawn_app(backend).await;
    let moderator = app.moderator();
    let m = moderator.create_meeting("Rat").await;
    let mid = m.id.clone();
    let (pid, join) = m.add_participant("A").await.into_parts();
    let (s, _) = join
        .send(
            Method::PUT,
            &format!("/api/v1/meetings/{mid}/participants/{pid}/consent"),
            Some(json!({"recording": true, "streaming": false})),
        )
        .await;
    assert_eq!(s, 200);
    let admin = app.admin();
    let (_, v) = admin.send(Method::GET, "/api/v1/audit/verify", None).await;
    assert_eq!(v["intact"], true);
    // Someone rewrites history: the consent entry now says "no".
    sqlx::query("update ledger_entries set data = replace(data, '\"recording\":true', '\"recording\":false') where kind = 'consent_changed'")
        .execute(app.db.pool())
        .await
        .unwrap();
    let (s, v) = admin.send(Method::GET, "/api/v1/audit/verify", None).await;
    assert_eq!(s, 200);
    assert_eq!(v["intact"], false, "{v}");
    assert_eq!(v["first_broken"]["chain_id"], mid.as_str());
    assert_eq!(v["first_broken"]["seq"], 2);
    let (s, _) = moderator
        .send(Method::GET, "/api/v1/audit/verify", None)
        .await;
    assert_eq!(s, 403, "moderators do not audit");
}
both_backends!(tampering_shows_in_the_verify_endpoint);

async fn failed_media_start_marks_the_recording_failed(backend: Backend) {
    let app = spawn_app(backend).await;
    let moderator = app.moderator();
    let m = moderator.create_meeting("Rat").await;
    let mid = m.id.clone();
    *app.fake.fail_starts.lock().unwrap() = Some("encoder missing".into());
    let (mut ws, _) = m.events().await;
    let (s, e) = moderator
        .send(
            Method::POST,
            &format!("/api/v1/meetings/{mid}/recordings"),
            None,
        )
        .await;
    assert_eq!(s, 500, "{e}");
    assert_eq!(
        e["error"]["message"], "internal error",
        "details stay in the log"
    );
    let failed = wait_event(&mut ws, "recording_state_changed", |e| {
        e["state"] == "failed"
    })
    .await;
    assert!(failed["reason"]
        .as_str()
        .unwrap()
        .contains("encoder missing"));
    // A new attempt is allowed once the failed one is terminal.
    *app.fake.fail_starts.lock().unwrap() = None;
    let (s, _) = moderator
        .send(
            Method::POST,
            &format!("/api/v1/meetings/{mid}/recordings"),
            None,
        )
        .await;
    assert_eq!(s, 201);
}
both_backends!(failed_media_start_marks_the_recording_failed);

/// A write that fails in the stop's final flush (after the moderator stopped the
/// recording): the recording is already `stopping`, but its record still says why its
/// end is missing, clients hear it, and the ledger has it. The first reason stays.
async fn an_interruption_while_stopping_is_kept(backend: Backend) {
    let app = spawn_app(backend).await;
    let moderator = app.moderator();
    let m = moderator.create_meeting("Rat").await;
    let mid = m.id.clone();
    let (mut ws, _) = m.events().await;
    let rid = m.start_recording().await.id;
    wait_event(&mut ws, "recording_state_changed", |e| {
        e["state"] == "active"
    })
    .await;
    app.fake
        .hold_stops
        .store(true, std::sync::atomic::Ordering::SeqCst);
    moderator.recording(&rid).stop().await;
    wait_event(&mut ws, "recording_state_changed", |e| {
        e["state"] == "stopping" && e["reason"].is_null()
    })
    .await;

    let reason = "writing the spool failed after 7.4 s: No space left on device (os error 28)";
    for r in [reason, "a second failure"] {
        app.fake
            .emit(gremium_protocol::MediaEvent::RecordingInterrupted {
                meeting_id: mid.parse().unwrap(),
                recording_id: rid.parse().unwrap(),
                reason: r.into(),
            });
    }
    let e = wait_event(&mut ws, "recording_state_changed", |e| {
        !e["reason"].is_null()
    })
    .await;
    assert_eq!(
        (e["state"].as_str(), e["reason"].as_str()),
        (Some("stopping"), Some(reason))
    );
    app.fake
        .emit(gremium_protocol::MediaEvent::RecordingFinished {
            meeting_id: mid.parse().unwrap(),
            recording_id: rid.parse().unwrap(),
            media: None,
        });
    let e = wait_event(&mut ws, "recording_state_changed", |e| {
        e["state"] == "finished"
    })
    .await;
    assert!(e["reason"].is_null(), "{e}");
    let (s, view) = app
        .send(
            Method::GET,
            &format!("/api/v1/recordings/{rid}"),
            Some(&app.token(&[Role::Archivist])),
            None,
        )
        .await;
    assert_eq!(s, 200, "{view}");
    assert_eq!(view["state"], "finished");
    assert_eq!(view["interruption"].as_str(), Some(reason));
    let kinds: Vec<String> = app
        .db
        .ledger_entries(&mid, 0, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.subject == rid)
        .map(|e| e.kind)
        .skip_while(|k| k != "recording_active")
        .collect();
    // (`recording_starting` before it or not: the fake's started event may overtake
    // the reply to the start command.)
    assert_eq!(
        kinds,
        [
            "recording_active",
            "recording_stopping",
            "recording_interrupted",
            "recording_finished",
            "archive_access"
        ]
    );
}
both_backends!(an_interruption_while_stopping_is_kept);

#[tokio::test]
async fn bad_input_gets_a_json_4xx_and_loses_nothing() {
    let app = spawn_app(Backend::Sqlite).await;
    let moderator = app.moderator();
    let m = moderator.create_meeting("Rat").await;
    let mid = m.id.clone();
    let (pid, join) = m.add_participant("A").await.into_parts();
    let consent = format!("/api/v1/meetings/{mid}/participants/{pid}/consent");

    let raw = |method: Method,
               path: String,
               token: String,
               ctype: Option<&'static str>,
               body: Vec<u8>| {
        let app = &app;
        async move {
            let mut req = app
                .http
                .request(method, app.url(&path))
                .bearer_auth(token)
                .body(body);
            if let Some(c) = ctype {
                req = req.header("content-type", c);
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.expect("error bodies are JSON");
            (status, body)
        }
    };
    let json_ct = Some("application/json");
    // (what, method, path, token, content type, body, expected status)
    type Case = (
        &'static str,
        Method,
        String,
        String,
        Option<&'static str>,
        Vec<u8>,
        u16,
    );
    let cases: Vec<Case> = vec![
        (
            "malformed JSON",
            Method::PUT,
            consent.clone(),
            join.token().to_string(),
            json_ct,
            b"{\"recording\": tru".to_vec(),
            400,
        ),
        (
            "unknown field",
            Method::PUT,
            consent.clone(),
            join.token().to_string(),
            json_ct,
            br#"{"recording":true,"streaming":true,"forever":true}"#.to_vec(),
            422,
        ),
        (
            "wrong type",
            Method::PUT,
            consent.clone(),
            join.token().to_string(),
            json_ct,
            br#"{"recording":"yes","streaming":true}"#.to_vec(),
            422,
        ),
        (
            "missing field",
            Method::PUT,
            consent.clone(),
            join.token().to_string(),
            json_ct,
            br#"{"recording":true}"#.to_vec(),
            422,
        ),
        (
            "no content type",
            Method::PUT,
            consent.clone(),
            join.token().to_string(),
            None,
            br#"{"recording":true,"streaming":true}"#.to_vec(),
            415,
        ),
        (
            "oversized body",
            Method::POST,
            "/api/v1/meetings".into(),
            moderator.token().to_string(),
            json_ct,
            format!("{{\"title\":\"{}\"}}", "x".repeat(10_000)).into_bytes(),
            413,
        ),
        (
            "empty title",
            Method::POST,
            "/api/v1/meetings".into(),
            moderator.token().to_string(),
            json_ct,
            br#"{"title":"   "}"#.to_vec(),
            422,
        ),
        (
            "retention too long",
            Method::POST,
            "/api/v1/meetings".into(),
            moderator.token().to_string(),
            json_ct,
            br#"{"title":"x","retention_days":99999}"#.to_vec(),
            422,
        ),
        (
            "bad id in path",
            Method::GET,
            "/api/v1/meetings/not-a-uuid".into(),
            moderator.token().to_string(),
            None,
            vec![],
            400,
        ),
        (
            "unknown meeting",
            Method::GET,
            format!("/api/v1/meetings/{}", uuid::Uuid::new_v4()),
            moderator.token().to_string(),
            None,
            vec![],
            404,
        ),
        (
            "unknown recording",
            Method::POST,
            format!("/api/v1/recordings/{}/stop", uuid::Uuid::new_v4()),
            moderator.token().to_string(),
            None,
            vec![],
            404,
        ),
        (
            "unknown participant",
            Method::DELETE,
            format!(
                "/api/v1/meetings/{mid}/participants/{}",
                uuid::Uuid::new_v4()
            ),
            moderator.token().to_string(),
            None,
            vec![],
            404,
        ),
        (
            "unknown route",
            Method::GET,
            "/api/v1/nothing-here".into(),
            moderator.token().to_string(),
            None,
            vec![],
            404,
        ),
        (
            "limit out of range",
            Method::GET,
            "/api/v1/meetings?limit=0".into(),
            moderator.token().to_string(),
            None,
            vec![],
            400,
        ),
        (
            "garbage cursor",
            Method::GET,
            "/api/v1/meetings?cursor=%%%".into(),
            moderator.token().to_string(),
            None,
            vec![],
            400,
        ),
        (
            "bad cursor",
            Method::GET,
            "/api/v1/meetings?cursor=bm9wZQ".into(),
            moderator.token().to_string(),
            None,
            vec![],
            400,
        ),
        (
            "stream without outputs",
            Method::POST,
            format!("/api/v1/meetings/{mid}/streams"),
            moderator.token().to_string(),
            json_ct,
            br#"{"hls":false}"#.to_vec(),
            422,
        ),
        (
            "stream to http",
            Method::POST,
            format!("/api/v1/meetings/{mid}/streams"),
            moderator.token().to_string(),
            json_ct,
            br#"{"rtmp":[{"url":"http://x","key":"k"}]}"#.to_vec(),
            422,
        ),
    ];
    for (what, method, path, token, ctype, body, expected) in cases {
        let (status, body) = raw(method, path, token, ctype, body).await;
        assert_eq!(status, expected, "{what}: {body}");
        assert!(
            body["error"]["code"].is_string() && body["error"]["message"].is_string(),
            "{what}: {body}"
        );
    }
    // Nothing was lost or changed by the bad requests.
    let (s, c) = join.send(Method::GET, &consent, None).await;
    assert_eq!(
        (s, c),
        (200, json!({"recording": false, "streaming": false}))
    );
    let (s, h) = app.send(Method::GET, "/healthz", None, None).await;
    assert_eq!((s, h), (200, json!({"status": "ok"})));
}

#[tokio::test]
async fn local_tokens_bad_ones_get_401_and_wrong_roles_403() {
    let app = spawn_app(Backend::Sqlite).await;
    let (s, e) = app.send(Method::GET, "/api/v1/meetings", None, None).await;
    assert_eq!(s, 401);
    assert_eq!(e["error"]["code"], "unauthorized");
    let resp = app
        .http
        .get(app.url("/api/v1/meetings"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");

    let expired = app.auth.issue_staff_token(
        "t",
        &[Role::Admin],
        now_secs() - 7200,
        std::time::Duration::from_secs(60),
    );
    let other_key = gremium_signaling::Authenticator::new(gremium_signaling::AuthSettings {
        local_key: b"a completely different key of 32+ bytes".to_vec(),
        ..auth_settings(None)
    });
    let forged = other_key.issue_staff_token(
        "t",
        &[Role::Admin],
        now_secs(),
        std::time::Duration::from_secs(60),
    );
    let b64 = |v: &Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let alg_none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(
            &json!({"iss": "gremium", "aud": "gremium", "sub": "x", "exp": now_secs() + 600, "roles": ["admin"]})
        )
    );
    for (what, token) in [
        ("expired", expired),
        ("wrong signature", forged),
        ("alg none", alg_none),
        ("garbage", "abc.def.ghi".into()),
    ] {
        let (s, e) = app
            .send(Method::GET, "/api/v1/meetings", Some(&token), None)
            .await;
        assert_eq!(s, 401, "{what}: {e}");
    }
    let viewer = app.viewer();
    let (s, _) = viewer
        .send(
            Method::POST,
            "/api/v1/meetings",
            Some(json!({"title": "x"})),
        )
        .await;
    assert_eq!(s, 403);
    let archivist = app.archivist();
    let (s, _) = archivist.send(Method::GET, "/api/v1/meetings", None).await;
    assert_eq!(s, 200, "archivists browse meetings");

    // WebSocket refuses before upgrading.
    let moderator = app.moderator();
    let m = moderator.create_meeting("Rat").await;
    let mid = m.id.clone();
    let url = format!("ws://{}/api/v1/meetings/{mid}/events", app.addr);
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 401),
        other => panic!("expected 401, got {other:?}"),
    }
}

#[tokio::test]
async fn openapi_health_and_metrics_are_served() {
    let app = spawn_app(Backend::Sqlite).await;
    let (s, doc) = app
        .send(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(s, 200);
    for path in [
        "/api/v1/meetings",
        "/api/v1/meetings/{id}/participants/{pid}/consent",
        "/api/v1/recordings/{rid}/stop",
        "/api/v1/meetings/{id}/public",
        "/api/v1/audit/verify",
        "/api/v1/meetings/{id}/events",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from OpenAPI"
        );
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    let moderator = app.moderator();
    moderator.create_meeting("Rat").await;
    let text = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("gremium_http_requests_total"), "{text}");
    assert!(text.contains(r#"route="/api/v1/meetings""#), "{text}");
}

async fn moderators_mark_agenda_chapters(backend: Backend) {
    let app = spawn_app(backend).await;
    let moderator = app.moderator();
    let m = moderator.create_meeting("Kreistag").await;
    let mid = m.id.clone();
    let anna = m.add_participant("Anna").await;
    let (mut ws, _) = m.events().await;
    let path = format!("/api/v1/meetings/{mid}/chapters");
    let (s, c) = moderator
        .send(
            Method::POST,
            &path,
            Some(json!({"title": "  TOP 1: Haushalt 2027 "})),
        )
        .await;
    assert_eq!(s, 201, "{c}");
    assert_eq!(c["title"], "TOP 1: Haushalt 2027");
    let e = wait_event(&mut ws, "chapter_marked", |_| true).await;
    assert_eq!(e["chapter_id"], c["id"]);
    assert_eq!(e["title"], "TOP 1: Haushalt 2027");
    let (s, c2) = moderator
        .send(Method::POST, &path, Some(json!({"title": "TOP 2"})))
        .await;
    assert_eq!(s, 201, "{c2}");

    // Participants read them; only moderators mark them; bad titles are refused.
    let (s, list) = anna.client.send(Method::GET, &path, None).await;
    assert_eq!(s, 200, "{list}");
    let titles: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["TOP 1: Haushalt 2027", "TOP 2"]);
    let (s, _) = anna
        .client
        .send(Method::POST, &path, Some(json!({"title": "x"})))
        .await;
    assert_eq!(s, 403);
    let viewer = app.viewer();
    assert_eq!(viewer.send(Method::GET, &path, None).await.0, 403);
    for bad in [
        json!({"title": " "}),
        json!({"title": "a\nb"}),
        json!({"title": "x".repeat(201)}),
        json!({"name": "x"}),
    ] {
        let (s, b) = moderator.send(Method::POST, &path, Some(bad.clone())).await;
        assert!(s == 422 || s == 400, "{bad}: {s} {b}");
    }
    let unknown = format!("/api/v1/meetings/{}/chapters", uuid::Uuid::new_v4());
    let (s, _) = moderator
        .send(Method::POST, &unknown, Some(json!({"title": "x"})))
        .await;
    assert_eq!(s, 404);

    // Each mark is in the meeting's ledger; an ended meeting takes no more.
    let (s, ledger) = app
        .send(
            Method::GET,
            &format!("/api/v1/meetings/{mid}/ledger"),
            Some(&app.token(&[Role::Admin])),
            None,
        )
        .await;
    assert_eq!(s, 200);
    let marks = ledger
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "chapter_marked")
        .count();
    assert_eq!(marks, 2);
    let (s, _) = moderator
        .send(Method::POST, &format!("/api/v1/meetings/{mid}/end"), None)
        .await;
    assert_eq!(s, 200);
    let (s, _) = moderator
        .send(Method::POST, &path, Some(json!({"title": "late"})))
        .await;
    assert_eq!(s, 409);
    let (_, list) = moderator.send(Method::GET, &path, None).await;
    assert_eq!(list.as_array().unwrap().len(), 2);
}
both_backends!(moderators_mark_agenda_chapters);
