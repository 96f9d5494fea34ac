//! The control plane's side of a cluster, through the real HTTP router: `GET
//! /api/v1/cluster`, a full cluster answered with 503 and `Retry-After`, media events
//! applied once by event id (and harmlessly again in the crash window between
//! applying and marking), and WebSocket events fanned out between two control
//! replicas on one database.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{next_event as next, Backend, TestApp};
use gremium_protocol::{
    ClusterStatus, CommandOutcome, MediaCommand, MediaEvent, MediaPlane, MediaPlaneError, NodeInfo,
    NodeStatus, RecordedMedia,
};
use gremium_signaling::{
    apply_media_event, ApiSettings, AppState, ClusterView, EventFanout, NoMediaPlane, Role,
};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

/// A view whose answer the test sets.
struct SetView(Mutex<Result<ClusterStatus, String>>);

#[async_trait::async_trait]
impl ClusterView for SetView {
    async fn status(&self) -> Result<ClusterStatus, String> {
        self.0.lock().unwrap().clone()
    }
}

fn node(id: &str) -> NodeStatus {
    NodeStatus {
        info: NodeInfo {
            node_id: id.into(),
            version: "0.0.0-test".into(),
            zone: Some("fsn1".into()),
            capacity: 100,
            load_units: 30,
            cpu_percent: 150.5,
            meetings: 2,
            address: "10.0.0.7".into(),
            draining: false,
            heartbeat_at_ms: 1_700_000_000_000,
        },
        placed_meetings: 2,
        placed_units: 40,
    }
}

#[tokio::test]
async fn cluster_route_is_admin_only_and_says_single_without_a_view() {
    let app = common::spawn_app(Backend::Sqlite).await;
    let (s, body) = app.admin().get("/api/v1/cluster").await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body, json!({"mode": "single", "nodes": []}));

    let meeting = app.moderator().create_meeting("Bauausschuss").await;
    let participant = meeting.add_participant("Frau Adler").await;
    for (who, client, want) in [
        ("anonymous", app.anonymous(), 401),
        ("moderator", app.moderator(), 403),
        ("archivist", app.archivist(), 403),
        ("viewer", app.viewer(), 403),
        ("participant", participant.client.clone(), 403),
    ] {
        let (s, body) = client.get("/api/v1/cluster").await;
        assert_eq!(s, want, "{who}: {body}");
    }

    let (s, doc) = app.anonymous().get("/api/v1/openapi.json").await;
    assert_eq!(s, 200);
    let op = &doc["paths"]["/api/v1/cluster"]["get"];
    assert!(op.is_object(), "documented: {}", doc["paths"]);
    assert!(op["responses"]["503"].is_object(), "{op}");
    assert!(doc["components"]["schemas"]["ClusterStatus"].is_object());
}

#[tokio::test]
async fn cluster_route_shows_the_view_and_answers_503_when_it_fails() {
    let app = common::spawn_app(Backend::Sqlite).await;
    let status = ClusterStatus {
        mode: "cluster".into(),
        nodes: vec![node("media-a"), node("media-b")],
    };
    let view = Arc::new(SetView(Mutex::new(Ok(status.clone()))));
    assert!(app.state.set_cluster_view(view.clone()));
    assert!(
        !app.state
            .set_cluster_view(Arc::new(SetView(Mutex::new(Err("x".into()))))),
        "set once"
    );

    let (s, body) = app.admin().get("/api/v1/cluster").await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["mode"], "cluster");
    // The registry entry's fields sit next to the placement's (flattened).
    assert_eq!(body["nodes"][1]["node_id"], "media-b");
    assert_eq!(body["nodes"][1]["placed_units"], 40);
    assert_eq!(body["nodes"][1]["load_units"], 30);
    let back: ClusterStatus = serde_json::from_value(body).unwrap();
    assert_eq!(back, status);
    let (s, _) = app.moderator().get("/api/v1/cluster").await;
    assert_eq!(s, 403, "a view changes nothing about who may read it");

    *view.0.lock().unwrap() = Err("node registry unreachable".into());
    let (s, body) = app.admin().get("/api/v1/cluster").await;
    assert_eq!(s, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("node registry unreachable"), "{message}");
}

/// A media plane of a cluster with no room left: it refuses what would place a
/// meeting on a node, and applies the rest (nothing runs, so nothing is affected).
struct FullCluster;

#[async_trait::async_trait]
impl MediaPlane for FullCluster {
    async fn execute(&self, command: MediaCommand) -> Result<CommandOutcome, MediaPlaneError> {
        match command {
            MediaCommand::StartRecording { .. }
            | MediaCommand::StartStream { .. }
            | MediaCommand::Publish { .. } => Err(MediaPlaneError::NoCapacity {
                message: "no media node has room for this meeting (best spare 12 of 40 units)"
                    .into(),
                retry_after_secs: 30,
            }),
            _ => Ok(CommandOutcome::Applied {
                media_time_ns: None,
            }),
        }
    }
}

#[tokio::test]
async fn a_full_cluster_answers_503_with_retry_after_and_the_reason() {
    let app = common::spawn_app(Backend::Sqlite).await;
    let full = replica(&app, Arc::new(FullCluster)).await;
    let meeting = full.moderator().create_meeting("Haushalt").await;
    let response = full
        .moderator()
        .request(
            Method::POST,
            &format!("/api/v1/meetings/{}/recordings", meeting.id),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(
        response.headers()[reqwest::header::RETRY_AFTER]
            .to_str()
            .unwrap(),
        "30"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "no_capacity", "{body}");
    assert_eq!(
        body["error"]["message"],
        "no media node has room for this meeting (best spare 12 of 40 units)"
    );
    // The refused start does not hold the meeting's one running recording: a retry
    // is refused for room again, not as a conflict.
    let (s, body) = meeting
        .client
        .send(
            Method::POST,
            &format!("/api/v1/meetings/{}/recordings", meeting.id),
            None,
        )
        .await;
    assert_eq!(s, 503, "{body}");
}

/// A second control replica of `app`: same database, keys and vault, its own state
/// (hub, caches) and listener, driving `media`.
async fn replica(app: &TestApp, media: Arc<dyn MediaPlane>) -> TestApp {
    let state = AppState::new(
        app.db.clone(),
        app.auth.clone(),
        media,
        app.vault.clone(),
        ApiSettings {
            max_body_bytes: 4096,
            ..Default::default()
        },
        gremium_signaling::system_clock(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = gremium_signaling::router(state.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    TestApp {
        base: format!("http://{addr}"),
        addr,
        db: app.db.clone(),
        fake: app.fake.clone(),
        auth: app.auth.clone(),
        vault: app.vault.clone(),
        state,
        http: app.http.clone(),
    }
}

#[tokio::test]
async fn a_media_event_with_an_id_is_applied_once() {
    let app = common::spawn_app(Backend::Sqlite).await;
    let meeting = app.moderator().create_meeting("Sozialausschuss").await;
    let meeting_id: Uuid = meeting.id.parse().unwrap();
    let recording = meeting.start_recording().await;
    let recording_id: Uuid = recording.id.parse().unwrap();
    wait_state(&recording, "active").await;
    let (mut ws, _) = meeting.events().await;
    let entries = meeting.ledger().await.as_array().unwrap().len();

    let who = Uuid::new_v4();
    let started = MediaEvent::ParticipantMediaStarted {
        meeting_id,
        participant_id: who,
    };
    let id = Uuid::new_v4();
    assert!(apply_media_event(&app.state, Some(id), started.clone())
        .await
        .unwrap());
    assert!(
        !apply_media_event(&app.state, Some(id), started)
            .await
            .unwrap(),
        "the same id again is skipped"
    );
    let interrupted = MediaEvent::RecordingInterrupted {
        meeting_id,
        recording_id,
        reason: "spool disk full".into(),
    };
    let id = Uuid::new_v4();
    assert!(apply_media_event(&app.state, Some(id), interrupted.clone())
        .await
        .unwrap());
    assert!(!apply_media_event(&app.state, Some(id), interrupted)
        .await
        .unwrap());

    // Sockets saw each once, in order.
    let e = next(&mut ws).await;
    assert_eq!(e["type"], "participant_media_started", "{e}");
    assert_eq!(e["participant_id"], who.to_string());
    let e = next(&mut ws).await;
    assert_eq!(e["type"], "recording_state_changed", "{e}");
    assert_eq!(e["state"], "stopping");
    assert_eq!(e["reason"], "spool disk full");
    // A marker event: nothing else came in between.
    apply_media_event(
        &app.state,
        Some(Uuid::new_v4()),
        MediaEvent::CameraChanged {
            meeting_id,
            participant_id: who,
            on: false,
        },
    )
    .await
    .unwrap();
    let e = next(&mut ws).await;
    assert_eq!(e["type"], "camera_changed", "no second copy before it: {e}");

    // The ledger got one entry, the recording its interruption.
    let ledger = meeting.ledger().await;
    let ledger = ledger.as_array().unwrap();
    assert_eq!(ledger.len(), entries + 1, "{ledger:?}");
    assert_eq!(ledger.last().unwrap()["kind"], "recording_stopping");
    let view = recording.view().await;
    assert_eq!(view["state"], "stopping", "{view}");
}

#[tokio::test]
async fn an_event_applied_again_before_it_was_marked_changes_nothing() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        crash_window(backend).await;
    }
}

/// Applied but not marked (the replica died before the mark, or the event was
/// delivered again to another one meanwhile): a second application with the id
/// leaves state, ledger, media and manifest as they were and sends no event.
async fn crash_window(backend: Backend) {
    let app = common::spawn_app(backend).await;
    app.fake
        .hold_stops
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let meeting = app.moderator().create_meeting("Rat").await;
    let meeting_id: Uuid = meeting.id.parse().unwrap();
    let recording = meeting.start_recording().await;
    let recording_id: Uuid = recording.id.parse().unwrap();
    wait_state(&recording, "active").await;
    recording.stop().await;
    wait_state(&recording, "stopping").await;

    let finished = MediaEvent::RecordingFinished {
        meeting_id,
        recording_id,
        media: Some(RecordedMedia {
            media_key: format!("recordings/{recording_id}.mp4.sealed"),
            media_sha256: "ab".repeat(32),
            stored_bytes: 4096,
            plaintext_bytes: 4000,
            poster_key: None,
            poster_sha256: None,
            duration_ms: Some(61_000),
            probe: r#"{"streams":[{"codec_type":"video"}]}"#.into(),
            recovered: false,
            appearances: Vec::new(),
        }),
    };
    let id = Uuid::new_v4();
    // Applied, not marked: what a crash between the two leaves.
    assert!(apply_media_event(&app.state, None, finished.clone())
        .await
        .unwrap());
    let first = recording.view().await;
    assert_eq!(first["state"], "finished", "{first}");
    let archivist = recording.acting_as(&app.archivist());
    let manifest = archivist.manifest().await;
    assert_eq!(manifest["duration_s"], 61.0, "{manifest}");
    let ledger = meeting.ledger().await;
    let (mut ws, _) = meeting.events().await;

    assert!(
        apply_media_event(&app.state, Some(id), finished.clone())
            .await
            .unwrap(),
        "not marked: applied again"
    );
    assert!(!apply_media_event(&app.state, Some(id), finished)
        .await
        .unwrap());

    assert_eq!(recording.view().await, first, "{backend:?}");
    assert_eq!(
        archivist.manifest().await,
        manifest,
        "{backend:?}: the manifest is not rewritten (it pins the ledger head at the stop)"
    );
    // Reading the archive is ledgered (`archive_access`); nothing else was added.
    assert_eq!(
        without_reads(&meeting.ledger().await),
        without_reads(&ledger),
        "{backend:?}"
    );
    apply_media_event(
        &app.state,
        None,
        MediaEvent::RecordingProgress {
            meeting_id,
            recording_id,
            processed_ms: 1,
        },
    )
    .await
    .unwrap();
    let e = next(&mut ws).await;
    assert_eq!(
        e["type"], "recording_progress",
        "{backend:?}: no event before it: {e}"
    );
}

/// The ledger's entries but the archive reads.
fn without_reads(ledger: &Value) -> Vec<Value> {
    let entries = ledger.as_array().expect("ledger entries");
    assert!(!entries.is_empty());
    entries
        .iter()
        .filter(|e| e["kind"] != "archive_access")
        .cloned()
        .collect()
}

/// Wait (up to 5 s) until the recording's state is `want`.
async fn wait_state(recording: &common::Recording, want: &str) {
    let mut view = Value::Null;
    for _ in 0..100 {
        view = recording.view().await;
        if view["state"] == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("recording not {want}: {view}");
}

/// The cluster transport in miniature: what one replica's hub publishes reaches
/// every replica's hub (the publisher's too).
#[derive(Default)]
struct Loopback(Mutex<Vec<AppState>>);

impl EventFanout for Loopback {
    fn publish(&self, meeting_id: Uuid, text: Arc<str>) {
        for replica in self.0.lock().unwrap().iter() {
            replica.hub().deliver_local(meeting_id, text.clone());
        }
    }
}

#[tokio::test]
async fn replicas_sockets_see_each_event_once_whichever_replica_published_it() {
    let a = common::spawn_app(Backend::Postgres).await;
    let b = replica(&a, Arc::new(NoMediaPlane)).await;
    let fanout = Arc::new(Loopback::default());
    for r in [&a, &b] {
        fanout.0.lock().unwrap().push(r.state.clone());
        assert!(r.state.hub().set_fanout(fanout.clone()));
    }
    let meeting = a.moderator().create_meeting("Kreistag").await;
    let on_b = meeting.acting_as(&b.client(&[Role::Moderator]));
    let (mut ws_a, _) = meeting.events().await;
    let (mut ws_b, _) = on_b.events().await;

    // A request on b, an event on both sockets, once.
    on_b.set_public(true, "TOP 4: öffentlich").await;
    for ws in [&mut ws_a, &mut ws_b] {
        let e = next(ws).await;
        assert_eq!(e["type"], "public_changed", "{e}");
        assert_eq!(e["reason"], "TOP 4: öffentlich");
    }
    // A media event applied by a (the replica that got it from the stream).
    let meeting_id: Uuid = meeting.id.parse().unwrap();
    apply_media_event(
        &a.state,
        Some(Uuid::new_v4()),
        MediaEvent::ActiveSpeakerChanged {
            meeting_id,
            participant_id: Uuid::nil(),
        },
    )
    .await
    .unwrap();
    meeting.add_chapter("TOP 5").await;
    for ws in [&mut ws_a, &mut ws_b] {
        let e = next(ws).await;
        assert_eq!(e["type"], "active_speaker_changed", "{e}");
        let e = next(ws).await;
        assert_eq!(e["type"], "chapter_marked", "exactly once each: {e}");
    }
}
