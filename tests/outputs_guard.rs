//! Issue 18, items 3, 7 and 10c, end to end over HTTP with the fake media plane, on
//! SQLite and PostgreSQL: one running recording and stream per meeting under
//! concurrent starts; RTMP URLs' secrets never in responses, events, the ledger, the
//! database in clear or log lines; who may list a meeting's recordings.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use common::*;
use gremium_signaling::Role;
use reqwest::Method;
use serde_json::{json, Value};
use sqlx::Row;

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

/// Every log line of this test binary (all targets, down to TRACE), for tests that
/// assert what never reaches a log.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || LogWriter(writer.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("first subscriber");
        buf
    })
    .clone()
}

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

/// Fire `n` concurrent `POST path` (no body or `body`); their statuses and bodies.
async fn concurrent_posts(
    app: &TestApp,
    token: &str,
    path: &str,
    body: Option<Value>,
    n: usize,
) -> Vec<(u16, Value)> {
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (http, url, token, body, barrier) = (
                app.http.clone(),
                app.url(path),
                token.to_string(),
                body.clone(),
                barrier.clone(),
            );
            tokio::spawn(async move {
                let mut req = http.post(url).bearer_auth(token);
                if let Some(b) = body {
                    req = req.json(&b);
                }
                barrier.wait().await;
                let resp = req.send().await.unwrap();
                let status = resp.status().as_u16();
                let v = resp.json::<Value>().await.unwrap_or(Value::Null);
                (status, v)
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// Exactly one 201; every other answer 409 naming the winner; no 5xx.
fn one_winner(kind: &str, answers: &[(u16, Value)]) -> String {
    let statuses: Vec<u16> = answers.iter().map(|(s, _)| *s).collect();
    let winners: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == 201)
        .map(|(_, v)| v)
        .collect();
    assert_eq!(winners.len(), 1, "{kind}: statuses {statuses:?}");
    let id = winners[0]["id"].as_str().unwrap().to_string();
    for (s, v) in answers.iter().filter(|(s, _)| *s != 201) {
        assert_eq!(*s, 409, "{kind}: {v}");
        assert_eq!(v["error"]["existing_id"], id.as_str(), "{kind}: {v}");
    }
    id
}

async fn ledger_kinds(app: &TestApp, mid: &str) -> Vec<String> {
    app.db
        .ledger_entries(mid, 0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

async fn twenty_concurrent_starts_make_one_recording_and_one_stream(backend: Backend) {
    let app = spawn_app(backend).await;
    let moderator = app.moderator();
    let m = moderator.create_meeting("Gemeinderat").await;
    let mid = m.id.clone();
    let recordings = format!("/api/v1/meetings/{mid}/recordings");
    let streams = format!("/api/v1/meetings/{mid}/streams");

    let answers = concurrent_posts(&app, moderator.token(), &recordings, None, 20).await;
    let rid = one_winner("recordings", &answers);
    let answers = concurrent_posts(
        &app,
        moderator.token(),
        &streams,
        Some(json!({"hls": true})),
        20,
    )
    .await;
    let sid = one_winner("streams", &answers);

    let rows = app.db.list_recordings(mid.parse().unwrap()).await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let rows = app.db.list_streams(mid.parse().unwrap()).await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let kinds = ledger_kinds(&app, &mid).await;
    let count = |k: &str| kinds.iter().filter(|x| *x == k).count();
    assert_eq!(count("recording_requested"), 1, "{kinds:?}");
    assert_eq!(count("stream_requested"), 1, "{kinds:?}");
    assert!(!kinds.iter().any(|k| k.ends_with("failed")), "{kinds:?}");

    // While the recording is stopping (its last data still being written), a new
    // one is refused too, naming the one that stops.
    app.fake
        .hold_stops
        .store(true, std::sync::atomic::Ordering::SeqCst);
    moderator.recording(&rid).stop().await;
    let (s, v) = moderator.send(Method::POST, &recordings, None).await;
    assert_eq!(
        (s, v["error"]["existing_id"].as_str()),
        (409, Some(rid.as_str())),
        "{v}"
    );
    // Once it finished, the next one starts.
    app.fake
        .emit(gremium_protocol::MediaEvent::RecordingFinished {
            meeting_id: mid.parse().unwrap(),
            recording_id: rid.parse().unwrap(),
            media: None,
        });
    let (s, v) = start_when_free(&app, moderator.token(), &recordings, None).await;
    assert_eq!(s, 201, "{v}");
    moderator.stream(&sid).stop().await;
    let (s, v) = start_when_free(
        &app,
        moderator.token(),
        &streams,
        Some(json!({"hls": true})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
}

/// `POST path` until it is not 409 (the media plane's "finished" is applied by a
/// task of its own), at most 5 s.
async fn start_when_free(
    app: &TestApp,
    token: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut answer = (0, Value::Null);
    for _ in 0..50 {
        answer = app
            .send(Method::POST, path, Some(token), body.clone())
            .await;
        if answer.0 != 409 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    answer
}
both_backends!(twenty_concurrent_starts_make_one_recording_and_one_stream);

/// The database refuses a second running output even when a caller skips the API's
/// check (two control-plane replicas racing).
async fn the_database_allows_one_running_output_per_meeting(backend: Backend) {
    use gremium_storage::outputs::Started;
    use gremium_storage::{LedgerRecord, NewRecording};
    let app = spawn_app(backend).await;
    let moderator = app.moderator();
    let mid: uuid::Uuid = moderator.create_meeting("Kreistag").await.body["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let db = app.db.clone();
            tokio::spawn(async move {
                let id = uuid::Uuid::new_v4();
                db.try_insert_recording(
                    &NewRecording {
                        id,
                        meeting_id: mid,
                        requested_by: "t".into(),
                        created_at: i,
                        wrapped_key: "00".into(),
                    },
                    &LedgerRecord {
                        chain_id: mid.to_string(),
                        at: i,
                        kind: "recording_requested".into(),
                        actor: "t".into(),
                        subject: id.to_string(),
                        data: json!({}),
                    },
                )
                .await
            })
        })
        .collect();
    let mut created = Vec::new();
    let mut running = Vec::new();
    for t in tasks {
        match t.await.unwrap().expect("no database error") {
            Started::Created(r) => created.push(r.id),
            Started::AlreadyRunning(id) => running.push(id),
        }
    }
    assert_eq!(created.len(), 1, "{created:?}");
    assert!(running.iter().all(|id| *id == created[0]), "{running:?}");
    // Straight past the check: the unique index itself says no.
    let id = uuid::Uuid::new_v4();
    let e = app
        .db
        .insert_recording(
            &NewRecording {
                id,
                meeting_id: mid,
                requested_by: "t".into(),
                created_at: 99,
                wrapped_key: "00".into(),
            },
            &LedgerRecord {
                chain_id: mid.to_string(),
                at: 99,
                kind: "recording_requested".into(),
                actor: "t".into(),
                subject: id.to_string(),
                data: json!({}),
            },
        )
        .await
        .expect_err("a second running recording");
    assert!(e.is_unique_violation(), "{e}");
    let kinds = ledger_kinds(&app, &mid.to_string()).await;
    let requested = kinds.iter().filter(|k| *k == "recording_requested").count();
    assert_eq!(requested, 1, "{kinds:?}");
}
both_backends!(the_database_allows_one_running_output_per_meeting);

const SECRET_URL: &str =
    "rtmp://alice:PASSWORD-SECRET@live.example.org:1935/live/PATH-SECRET?token=QUERY-SECRET";

async fn rtmp_url_secrets_never_leave_in_clear(backend: Backend) {
    let logs = captured_logs();
    tracing::info!("log capture probe");
    let app = spawn_app(backend).await;
    let moderator = app.moderator();
    let m = moderator.create_meeting("Stadtrat").await;
    let mid = m.id.clone();
    // A user info with an unescaped `/`, `?` or `#` cannot be redacted reliably (the
    // host would be guessed wrong and part of the secret shown): refused, and its
    // secret is not echoed back.
    for url in [
        "rtmp://bob:Zm9v/YmFy-SECRET@live.example.org/app",
        "rtmp://bob:pa?ss-SECRET@live.example.org/app",
        "rtmps://u:p#ss-SECRET@h/app",
    ] {
        let (s, b) = moderator
            .send(
                Method::POST,
                &format!("/api/v1/meetings/{mid}/streams"),
                Some(json!({"rtmp": [{"url": url, "key": "k"}]})),
            )
            .await;
        assert_eq!(s, 422, "{url}: {b}");
        assert!(!b.to_string().contains("SECRET"), "{b}");
    }
    let mut ws = ws_connect(app.addr, &mid, moderator.token()).await;
    let mut events = vec![next_event(&mut ws).await];
    let body = json!({"rtmp": [
        {"url": SECRET_URL, "key": "KEY-SECRET"},
        {"url": "rtmps://h.example:443/app", "key": "OTHER-SECRET"},
    ]});
    let (s, stream) = moderator
        .send(
            Method::POST,
            &format!("/api/v1/meetings/{mid}/streams"),
            Some(body),
        )
        .await;
    assert_eq!(s, 201, "{stream}");
    assert_eq!(
        stream["rtmp"][0]["url"],
        "rtmp://live.example.org:1935/live/…"
    );
    assert_eq!(stream["rtmp"][1]["url"], "rtmps://h.example:443/app/…");
    let sid = stream["id"].as_str().unwrap().to_string();
    let mut shown = vec![stream.clone()];
    shown.push(moderator.get(&format!("/api/v1/streams/{sid}")).await.1);
    shown.push(
        moderator
            .get(&format!("/api/v1/meetings/{mid}/streams"))
            .await
            .1,
    );

    // Stored sealed while the stream runs: openable with the vault, not in clear.
    let sealed = app
        .db
        .stream_destinations(sid.parse().unwrap())
        .await
        .unwrap()
        .expect("sealed destinations while running");
    let opened =
        gremium_storage::outputs::open_destinations(&app.vault, sid.parse().unwrap(), &sealed)
            .unwrap();
    let opened = String::from_utf8(opened).unwrap();
    assert!(
        opened.contains(SECRET_URL) && opened.contains("KEY-SECRET"),
        "{opened}"
    );
    let row_text = |app: &TestApp, sid: String| {
        let pool = app.db.pool().clone();
        async move {
            let row = sqlx::query(
                "select id, meeting_id, state, destinations, failure, requested_by, \
                 destinations_key, destinations_sealed from streams where id = $1",
            )
            .bind(sid)
            .fetch_one(&pool)
            .await
            .unwrap();
            (0..row.len())
                .map(|i| {
                    row.try_get::<Option<String>, _>(i)
                        .unwrap()
                        .unwrap_or_default()
                })
                .collect::<Vec<_>>()
                .join("|")
        }
    };
    let running_row = row_text(&app, sid.clone()).await;

    moderator.stream(&sid).stop().await;
    loop {
        let e = next_event(&mut ws).await;
        let done = e["type"] == "stream_state_changed" && e["state"] == "finished";
        events.push(e);
        if done {
            break;
        }
    }
    // A stream that ended keeps no URL or key, not even sealed.
    assert_eq!(
        app.db
            .stream_destinations(sid.parse().unwrap())
            .await
            .unwrap(),
        None
    );
    shown.push(moderator.get(&format!("/api/v1/streams/{sid}")).await.1);
    let ledger: Vec<String> = app
        .db
        .ledger_entries(&mid, 0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| format!("{} {} {}", e.kind, e.subject, e.data))
        .collect();
    assert!(
        ledger.iter().any(|l| l.contains("live.example.org")),
        "{ledger:?}"
    );
    let ended_row = row_text(&app, sid.clone()).await;
    let logs = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("log capture probe"));

    let places = [
        ("API responses", format!("{shown:?}")),
        ("events", format!("{events:?}")),
        ("ledger", format!("{ledger:?}")),
        ("stream row while running", running_row),
        ("stream row after the end", ended_row),
        ("logs", logs),
    ];
    for (place, text) in places {
        for secret in ["SECRET", "alice", "PASSWORD", "PATH-", "KEY-", "OTHER-"] {
            assert!(!text.contains(secret), "{secret} in {place}: {text}");
        }
    }
}
both_backends!(rtmp_url_secrets_never_leave_in_clear);

/// `GET /meetings/{id}/recordings`: moderators and admins (who run meetings) and
/// archivists (who read the whole archive anyway); nobody else. The OpenAPI
/// document says the same.
async fn who_lists_a_meetings_recordings(backend: Backend) {
    let app = spawn_app(backend).await;
    let moderator = app.moderator();
    let m = moderator.create_public_meeting("Ausschuss").await;
    let mid = m.id.clone();
    m.start_recording().await;
    let bea = m.add_participant("Bea").await;
    let path = format!("/api/v1/meetings/{mid}/recordings");
    let cases: Vec<(&str, Option<String>, u16)> = vec![
        ("moderator", Some(moderator.token().into()), 200),
        ("admin", Some(app.token(&[Role::Admin])), 200),
        ("archivist", Some(app.token(&[Role::Archivist])), 200),
        ("viewer", Some(app.token(&[Role::Viewer])), 403),
        ("participant", Some(bea.join.clone()), 403),
        ("anonymous", None, 401),
    ];
    for (who, token, expected) in cases {
        let (s, v) = app.send(Method::GET, &path, token.as_deref(), None).await;
        assert_eq!(s, expected, "{who}: {v}");
        if s == 200 {
            assert_eq!(v.as_array().map(Vec::len), Some(1), "{who}: {v}");
        }
    }
    let (_, doc) = app
        .send(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    let op = doc["paths"]["/api/v1/meetings/{id}/recordings"]["get"].to_string();
    assert!(op.contains("moderator, archivist, admin"), "{op}");
}
both_backends!(who_lists_a_meetings_recordings);
