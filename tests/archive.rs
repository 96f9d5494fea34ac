//! Archive rules over real HTTP on SQLite and PostgreSQL, with the fake media plane:
//! retention deletes expired recordings (objects and keys) with the time passed in,
//! legal hold stops it, who may read what, and the error statuses of the archive API.
//! (Recording, encryption and playback with the real media plane: `tests/recording.rs`.)

mod common;

use std::time::Duration;

use common::*;

use gremium_storage::crypto::SealWriter;
use gremium_storage::vault::media_context;
use gremium_storage::StoredMedia;
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

const DAY_MS: i64 = 86_400_000;

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

/// A meeting with one finished recording whose media is a sealed object in the store
/// (as finalization leaves it). Returns (meeting id, recording id, object key).
async fn recorded_meeting(app: &TestApp, title: &str, public: bool) -> (String, Uuid, String) {
    let mid = new_meeting(app, title, public).await;
    let rid = start_recording(app, &mid).await;
    let object_key = finish_recording(app, rid).await;
    (mid, rid, object_key)
}

async fn new_meeting(app: &TestApp, title: &str, public: bool) -> String {
    app.moderator()
        .create_meeting_with(json!({"title": title, "public": public, "retention_days": 1}))
        .await
        .id
}

async fn start_recording(app: &TestApp, mid: &str) -> Uuid {
    let rec = app.moderator().meeting(mid).start_recording().await;
    Uuid::parse_str(&rec.id).unwrap()
}

async fn set_public(app: &TestApp, mid: &str, public: bool) {
    let m = app
        .moderator()
        .meeting(mid)
        .set_public(public, "TOP 7")
        .await;
    assert_eq!(m["public"], public, "{m}");
}

/// Stop a recording, wait until it is finished, and store media sealed with its own
/// data key (as finalization leaves it). Returns the object key.
async fn finish_recording(app: &TestApp, rid: Uuid) -> String {
    app.moderator().recording(&rid.to_string()).stop().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while app
        .db
        .get_recording(rid)
        .await
        .unwrap()
        .unwrap()
        .state
        .as_str()
        != "finished"
    {
        assert!(std::time::Instant::now() < deadline, "not finished");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Store media sealed with the recording's own data key.
    let key = app.vault.data_key(&app.db, rid).await.unwrap();
    let mut w = SealWriter::new(Vec::new(), &key, &media_context(rid)).unwrap();
    w.write(&vec![7u8; 100_000]).unwrap();
    let (sealed, bytes) = w.finish().unwrap();
    let file = std::env::temp_dir().join(format!("gremium-archive-{rid}"));
    std::fs::write(&file, bytes).unwrap();
    let object_key = format!("recordings/{rid}/media.mp4.sealed");
    app.vault
        .store()
        .put_file(&object_key, &file)
        .await
        .unwrap();
    std::fs::remove_file(&file).unwrap();
    app.db
        .set_recording_stored(
            rid,
            &StoredMedia {
                media_key: object_key.clone(),
                media_sha256: sealed.sha256,
                stored_bytes: sealed.stored_bytes as i64,
                plaintext_bytes: sealed.plaintext_bytes as i64,
                poster_key: None,
                poster_sha256: None,
                duration_ms: Some(1000),
                probe: Some("{}".into()),
            },
        )
        .await
        .unwrap();
    object_key
}

async fn media_status(rid: Uuid, caller: &Client) -> u16 {
    caller
        .status(&format!("/api/v1/recordings/{rid}/media"))
        .await
}

async fn retention_deletes_expired_recordings_unless_held(backend: Backend) {
    let app = spawn_app(backend).await;
    let archivist = app.archivist();
    let moderator = app.moderator();
    let (_, expiring, expiring_key) = recorded_meeting(&app, "Bauausschuss", false).await;
    let (held_mid, held, held_key) = recorded_meeting(&app, "Hauptausschuss", false).await;
    assert_eq!(media_status(expiring, &archivist).await, 200);

    let (s, _) = moderator
        .send(
            Method::PUT,
            &format!("/api/v1/meetings/{held_mid}/retention"),
            Some(json!({"legal_hold": true})),
        )
        .await;
    assert_eq!(s, 403, "moderators do not set legal holds");
    let (s, m) = archivist
        .send(
            Method::PUT,
            &format!("/api/v1/meetings/{held_mid}/retention"),
            Some(json!({"legal_hold": true})),
        )
        .await;
    assert_eq!(s, 200, "{m}");
    assert_eq!(
        (m["legal_hold"].as_bool(), m["retention_days"].as_i64()),
        (Some(true), Some(1))
    );

    let now = chrono::Utc::now().timestamp_millis();
    let deleted = gremium_signaling::retention::sweep(&app.state, now + DAY_MS / 2).await;
    assert!(
        deleted.is_empty(),
        "nothing expires within the retention period"
    );
    let deleted = gremium_signaling::retention::sweep(&app.state, now + 2 * DAY_MS).await;
    assert_eq!(deleted, vec![expiring], "expired and not on hold");

    // Deleted for good: key gone, object gone, 410 through the API, ledgered.
    assert!(app.db.recording_key(expiring).await.unwrap().is_none());
    assert_eq!(app.vault.store().size(&expiring_key).await.unwrap(), None);
    assert_eq!(media_status(expiring, &archivist).await, 410);
    let r = app.db.get_recording(expiring).await.unwrap().unwrap();
    assert_eq!(r.deletion_reason.as_deref(), Some("retention"));
    let entries = app
        .db
        .ledger_entries(&r.meeting_id.to_string(), 0, 1000)
        .await
        .unwrap();
    let deletion = entries
        .iter()
        .find(|e| e.kind == "recording_deleted")
        .expect("deletion ledgered");
    assert_eq!(deletion.actor, "system:retention");
    assert!(deletion.data.contains(&expiring_key), "{}", deletion.data);
    // The held one is untouched.
    assert_eq!(media_status(held, &archivist).await, 200);
    assert!(app.vault.store().size(&held_key).await.unwrap().is_some());

    // Lifting the hold (its own step) lets the next sweep delete it.
    let (s, _) = archivist
        .send(
            Method::POST,
            &format!("/api/v1/meetings/{held_mid}/legal-hold/lift"),
            Some(json!({"reason": "Verfahren abgeschlossen"})),
        )
        .await;
    assert_eq!(s, 200);
    let deleted = gremium_signaling::retention::sweep(&app.state, now + 2 * DAY_MS).await;
    assert_eq!(deleted, vec![held]);
    assert_eq!(media_status(held, &archivist).await, 410);
    // A second sweep finds nothing more.
    assert!(
        gremium_signaling::retention::sweep(&app.state, now + 30 * DAY_MS)
            .await
            .is_empty()
    );
}
both_backends!(retention_deletes_expired_recordings_unless_held);

async fn the_archive_enforces_roles_and_reports_bad_requests(backend: Backend) {
    let app = spawn_app(backend).await;
    let archivist = app.archivist();
    let admin = app.admin();
    let moderator = app.moderator();
    let viewer = app.viewer();
    let (public_mid, public_rid, _) = recorded_meeting(&app, "Stadtrat öffentlich", true).await;
    let (_, closed_rid, _) = recorded_meeting(&app, "Stadtrat nichtöffentlich", false).await;

    // Public meeting: viewers, moderators, archivists, admins read; closed: archive staff only.
    for (token, public, closed) in [
        (&viewer, 200, 403),
        (&moderator, 200, 403),
        (&archivist, 200, 200),
        (&admin, 200, 200),
    ] {
        assert_eq!(media_status(public_rid, token).await, public);
        assert_eq!(media_status(closed_rid, token).await, closed);
    }
    let anna = moderator.meeting(&public_mid).add_participant("Anna").await;
    assert_eq!(
        media_status(public_rid, &anna.client).await,
        403,
        "join tokens never read"
    );
    assert_eq!(media_status(public_rid, &app.anonymous()).await, 401);

    // Listing: viewers see public meetings only and may not ask for the others.
    let (s, page) = viewer.send(Method::GET, "/api/v1/archive", None).await;
    assert_eq!(s, 200, "{page}");
    let ids: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["recording"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![public_rid.to_string().as_str()]);
    let (s, _) = viewer
        .send(Method::GET, "/api/v1/archive?public=false", None)
        .await;
    assert_eq!(s, 403);
    let (s, page) = archivist
        .send(Method::GET, "/api/v1/archive?limit=1", None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        page["items"][0]["recording"]["id"],
        closed_rid.to_string(),
        "newest first"
    );
    let (_, page2) = archivist
        .send(
            Method::GET,
            &format!("/api/v1/archive?limit=1&offset={}", page["next_offset"]),
            None,
        )
        .await;
    assert_eq!(page2["items"][0]["recording"]["id"], public_rid.to_string());
    let (_, later) = archivist
        .send(
            Method::GET,
            "/api/v1/archive?from=2999-01-01T00:00:00Z",
            None,
        )
        .await;
    assert_eq!(later["items"].as_array().unwrap().len(), 0);
    let (_, titled) = archivist
        .send(Method::GET, "/api/v1/archive?q=NICHT", None)
        .await;
    assert_eq!(titled["items"].as_array().unwrap().len(), 1, "{titled}");

    // Bad requests are clear 4xx and change nothing.
    for (path, expected) in [
        ("/api/v1/archive?limit=0", 400),
        ("/api/v1/archive?limit=abc", 400),
        ("/api/v1/archive?from=yesterday", 400),
        ("/api/v1/archive?colour=red", 400),
        ("/api/v1/recordings/not-a-uuid/media", 400),
    ] {
        let (s, body) = archivist.send(Method::GET, path, None).await;
        assert_eq!(s, expected, "{path}: {body}");
    }
    let unknown = Uuid::new_v4();
    assert_eq!(media_status(unknown, &archivist).await, 404);
    let (s, _) = archivist
        .send(
            Method::DELETE,
            &format!("/api/v1/recordings/{unknown}"),
            None,
        )
        .await;
    assert_eq!(s, 404);
    let (s, body) = archivist
        .send(Method::DELETE, "/api/v1/recordings/not-a-uuid", None)
        .await;
    assert_eq!(s, 400, "{body}");
    let (s, _) = archivist
        .send(
            Method::PUT,
            &format!("/api/v1/meetings/{unknown}/retention"),
            Some(json!({"retention_days": 5})),
        )
        .await;
    assert_eq!(s, 404);
    let (s, body) = archivist
        .send(
            Method::PUT,
            &format!("/api/v1/meetings/{public_mid}/retention"),
            Some(json!({"retention_days": 1_000_000})),
        )
        .await;
    assert_eq!(s, 422, "{body}");
    let (s, _) = archivist
        .send(
            Method::PUT,
            &format!("/api/v1/meetings/{public_mid}/retention"),
            Some(json!({"keep": "forever"})),
        )
        .await;
    assert_eq!(s, 422);

    // A running recording is stopped before it can be deleted; poster-less → 404.
    let running = moderator.meeting(&public_mid).start_recording().await;
    let (s, _) = archivist
        .send(Method::DELETE, &running.path(""), None)
        .await;
    assert_eq!(s, 409);
    assert_eq!(
        media_status(Uuid::parse_str(&running.id).unwrap(), &archivist).await,
        409,
        "not finalized yet"
    );
    let (s, _) = archivist
        .send(
            Method::GET,
            &format!("/api/v1/recordings/{public_rid}/poster"),
            None,
        )
        .await;
    assert_eq!(s, 404);
    let (s, view): (u16, Value) = viewer
        .send(
            Method::GET,
            &format!("/api/v1/recordings/{public_rid}"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{view}");
    assert_eq!(view["media"]["bytes"], 100_000);
}
both_backends!(the_archive_enforces_roles_and_reports_bad_requests);

/// Archive access follows what a recording contains, decided while it was made (issue
/// 18, item 2): a recording with any part made while the meeting was non-public is for
/// archivists and admins only, whatever the meeting's flag is later; one made entirely
/// while public stays readable for viewers after the meeting goes non-public.
async fn access_follows_what_a_recording_contains(backend: Backend) {
    let app = spawn_app(backend).await;
    let viewer = app.viewer();
    let moderator = app.moderator();
    let archivist = app.archivist();
    let admin = app.admin();

    // Public, then a non-public part, then public again, all while it records.
    let mixed_mid = new_meeting(&app, "Stadtrat mit TOP 7", true).await;
    let mixed = start_recording(&app, &mixed_mid).await;
    set_public(&app, &mixed_mid, false).await;
    set_public(&app, &mixed_mid, true).await;
    finish_recording(&app, mixed).await;
    // Made entirely while non-public; the meeting is switched public afterwards.
    let closed_mid = new_meeting(&app, "Personalausschuss", false).await;
    let closed = start_recording(&app, &closed_mid).await;
    finish_recording(&app, closed).await;
    set_public(&app, &closed_mid, true).await;
    // Made entirely while public; the meeting is switched non-public afterwards.
    let open_mid = new_meeting(&app, "Bürgerfragestunde", true).await;
    let open = start_recording(&app, &open_mid).await;
    finish_recording(&app, open).await;
    set_public(&app, &open_mid, false).await;

    for rid in [mixed, closed] {
        for what in ["", "/media", "/manifest", "/poster"] {
            let path = format!("recordings/{rid}{what}");
            let (s, body) = viewer
                .send(Method::GET, &format!("/api/v1/{path}"), None)
                .await;
            assert_eq!(s, 403, "viewer {path}: {body}");
            assert!(body.to_string().contains("non-public"), "{body}");
        }
        // Moderators see the public archive only (they keep a recording's state,
        // which running a meeting needs; see docs/security/archive-access.md).
        for what in ["/media", "/manifest", "/poster"] {
            let path = format!("recordings/{rid}{what}");
            assert_eq!(
                moderator.status(&format!("/api/v1/{path}")).await,
                403,
                "moderator {path}"
            );
        }
        for staff in [&archivist, &admin] {
            assert_eq!(media_status(rid, staff).await, 200);
        }
    }
    assert_eq!(
        viewer.status(&format!("/api/v1/recordings/{open}")).await,
        200
    );
    for caller in [&viewer, &moderator, &archivist] {
        assert_eq!(media_status(open, caller).await, 200);
    }

    // Listings: viewers see the fully public recording only, whatever its meeting's
    // flag is now; archivists see all three and which have non-public parts.
    for path in ["/api/v1/archive", "/api/v1/archive?public=true"] {
        let (s, page) = viewer.send(Method::GET, path, None).await;
        assert_eq!(s, 200, "{page}");
        let ids: Vec<&str> = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["recording"]["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, vec![open.to_string().as_str()], "{path}");
    }
    let (s, page) = archivist.send(Method::GET, "/api/v1/archive", None).await;
    assert_eq!(s, 200, "{page}");
    let flags: Vec<(String, Value)> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["recording"]["id"].as_str().unwrap().to_string(),
                i["non_public_parts"].clone(),
            )
        })
        .collect();
    assert_eq!(
        flags,
        vec![
            (open.to_string(), json!(false)),
            (closed.to_string(), json!(true)),
            (mixed.to_string(), json!(true)),
        ]
    );
}
both_backends!(access_follows_what_a_recording_contains);

/// A recording started at the same moment as a switch to non-public is marked either
/// way: by the switch (which marks every recording that has not ended) or by its own
/// start (which sees the meeting non-public). Twenty rounds of both at once.
async fn a_start_racing_a_switch_is_marked(backend: Backend) {
    use gremium_storage::{LedgerRecord, NewRecording};
    let app = spawn_app(backend).await;
    for round in 0..20 {
        let mid = new_meeting(&app, &format!("Runde {round}"), true).await;
        let meeting_id = Uuid::parse_str(&mid).unwrap();
        let rid = Uuid::new_v4();
        let ledger = |kind: &str| LedgerRecord {
            chain_id: mid.clone(),
            at: chrono::Utc::now().timestamp_millis(),
            kind: kind.into(),
            actor: "test".into(),
            subject: mid.clone(),
            data: json!({}),
        };
        let new_recording = NewRecording {
            id: rid,
            meeting_id,
            requested_by: "test".into(),
            created_at: chrono::Utc::now().timestamp_millis(),
            wrapped_key: "00".into(),
        };
        let (requested, changed) = (ledger("recording_requested"), ledger("public_changed"));
        let start = app.db.insert_recording(&new_recording, &requested);
        let switch = app.db.set_meeting_public(meeting_id, false, &changed);
        let (started, switched) = tokio::join!(start, switch);
        started.unwrap();
        assert!(switched.unwrap().is_some());
        let r = app.db.get_recording(rid).await.unwrap().unwrap();
        assert!(r.non_public_parts, "round {round}: not marked");
    }
}
both_backends!(a_start_racing_a_switch_is_marked);

/// Legal hold (issue 18, item 10): while it is set nobody deletes a recording of the
/// meeting, admins included (409); the retention call does not lift it; lifting is its
/// own step, for archivists and admins, ledgered with its reason.
async fn a_legal_hold_stops_every_deletion_until_it_is_lifted(backend: Backend) {
    let app = spawn_app(backend).await;
    let archivist = app.archivist();
    let admin = app.admin();
    let moderator = app.moderator();
    let (mid, rid, key) = recorded_meeting(&app, "Vergabeausschuss", false).await;
    let (s, m) = archivist
        .send(
            Method::PUT,
            &format!("/api/v1/meetings/{mid}/retention"),
            Some(json!({"legal_hold": true})),
        )
        .await;
    assert_eq!(s, 200, "{m}");

    for staff in [&archivist, &admin] {
        let (s, body) = staff
            .send(Method::DELETE, &format!("/api/v1/recordings/{rid}"), None)
            .await;
        assert_eq!(s, 409, "{body}");
        assert!(body.to_string().contains("legal hold"), "{body}");
    }
    assert_eq!(media_status(rid, &archivist).await, 200);
    assert!(app.vault.store().size(&key).await.unwrap().is_some());
    assert!(app.db.recording_key(rid).await.unwrap().is_some());

    // The retention call changes retention but does not lift the hold.
    let (s, body) = archivist
        .send(
            Method::PUT,
            &format!("/api/v1/meetings/{mid}/retention"),
            Some(json!({"legal_hold": false})),
        )
        .await;
    assert_eq!(s, 409, "{body}");
    assert!(body.to_string().contains("legal-hold/lift"), "{body}");
    let (s, m) = archivist
        .send(
            Method::PUT,
            &format!("/api/v1/meetings/{mid}/retention"),
            Some(json!({"retention_days": 5})),
        )
        .await;
    assert_eq!(s, 200, "{m}");
    assert_eq!(
        (m["legal_hold"].clone(), m["retention_days"].clone()),
        (json!(true), json!(5))
    );

    // Lifting: archive staff only, with a clear 4xx for a bad reason; documented.
    let lift = format!("/api/v1/meetings/{mid}/legal-hold/lift");
    let (_, doc) = app
        .send(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert!(
        doc["paths"]["/api/v1/meetings/{id}/legal-hold/lift"]["post"].is_object(),
        "the lift step is in the OpenAPI document"
    );
    let (s, _) = moderator
        .send(Method::POST, &lift, Some(json!({"reason": "x"})))
        .await;
    assert_eq!(s, 403);
    let (s, body) = archivist
        .send(Method::POST, &lift, Some(json!({"reason": "a\u{1b}[31m"})))
        .await;
    assert_eq!(s, 422, "{body}");
    let (s, m) = archivist
        .send(
            Method::POST,
            &lift,
            Some(json!({"reason": "Verfahren abgeschlossen"})),
        )
        .await;
    assert_eq!(s, 200, "{m}");
    assert_eq!(m["legal_hold"], false, "{m}");
    let entries = app.db.ledger_entries(&mid, 0, 1000).await.unwrap();
    let kinds: Vec<&str> = entries.iter().map(|e| e.kind.as_str()).collect();
    assert!(kinds.contains(&"legal_hold_set"), "{kinds:?}");
    let lifted = entries
        .iter()
        .find(|e| e.kind == "legal_hold_lifted")
        .expect("lifting is ledgered");
    assert!(
        lifted.data.contains("Verfahren abgeschlossen"),
        "{}",
        lifted.data
    );
    // Lifting again changes nothing and writes nothing.
    let (s, _) = archivist.send(Method::POST, &lift, Some(json!({}))).await;
    assert_eq!(s, 200);
    let again = app.db.ledger_entries(&mid, 0, 1000).await.unwrap();
    assert_eq!(again.len(), entries.len());

    let (s, body) = archivist
        .send(Method::DELETE, &format!("/api/v1/recordings/{rid}"), None)
        .await;
    assert_eq!(s, 204, "{body}");
    assert_eq!(media_status(rid, &archivist).await, 410);
}
both_backends!(a_legal_hold_stops_every_deletion_until_it_is_lifted);

/// Migration 0007 sets `non_public_parts` of recordings made before it from each
/// meeting's ledger, erring towards restricting. The test runs the migration's own
/// backfill statement again over rows written the old way.
async fn the_migration_restricts_existing_recordings_from_the_ledger(backend: Backend) {
    let app = spawn_app(backend).await;
    let migration = match backend {
        Backend::Sqlite => include_str!("../storage/migrations/sqlite/0007_non_public_parts.sql"),
        Backend::Postgres => {
            include_str!("../storage/migrations/postgres/0007_non_public_parts.sql")
        }
    };
    let backfill = &migration[migration
        .find("-- Recordings made before this column existed")
        .expect("backfill section")..];
    let pool = app.db.pool();
    let exec = |sql: String| async move {
        sqlx::query(&sql).execute(pool).await.unwrap();
    };
    let mut seq = 0;
    let mut ledger = |meeting: Uuid, at: i64, kind: &str, data: &str| {
        seq += 1;
        format!(
            "insert into ledger_entries (chain_id, seq, at, kind, actor, subject, data, prev_hash, hash) \
             values ('{meeting}', {seq}, {at}, '{kind}', 'test', '{meeting}', '{data}', '', '')"
        )
    };
    // (meeting, ledger: (at, kind, data), recordings: (created, updated, state, want))
    type Case = (
        Vec<(i64, &'static str, &'static str)>,
        Vec<(i64, i64, &'static str, bool)>,
    );
    let created_public = (
        0,
        "meeting_created",
        r#"{"public":true,"retention_days":30}"#,
    );
    let created_closed = (
        0,
        "meeting_created",
        r#"{"public":false,"retention_days":30}"#,
    );
    let to_public = |at| {
        (
            at,
            "public_changed",
            r#"{"media_time_ns":1,"public":true,"reason":null}"#,
        )
    };
    let to_closed = |at| {
        (
            at,
            "public_changed",
            r#"{"media_time_ns":1,"public":false,"reason":"TOP 7"}"#,
        )
    };
    let cases: Vec<Case> = vec![
        // Public throughout.
        (vec![created_public], vec![(10, 20, "finished", false)]),
        // A non-public part from 15 to 18.
        (
            vec![created_public, to_closed(15), to_public(18)],
            vec![
                (10, 20, "finished", true),
                (30, 40, "finished", false),
                (5, 12, "finished", false),
                (16, 17, "failed", true),
            ],
        ),
        // Created non-public, public from 50.
        (
            vec![created_closed, to_public(50)],
            vec![(10, 20, "finished", true), (60, 70, "finished", false)],
        ),
        // Still running when the meeting went non-public.
        (
            vec![created_public, to_closed(100)],
            vec![(10, 10, "active", true)],
        ),
        // The ledger does not say.
        (vec![], vec![(10, 20, "finished", true)]),
    ];
    let mut expected = Vec::new();
    for (entries, recordings) in cases {
        let meeting = Uuid::new_v4();
        exec(format!(
            "insert into meetings (id, title, is_public, state, retention_days, legal_hold, created_by, created_at) \
             values ('{meeting}', 'alt', 1, 'open', 30, 0, 'test', 0)"
        ))
        .await;
        for (at, kind, data) in entries {
            exec(ledger(meeting, at, kind, data)).await;
        }
        for (created, updated, state, want) in recordings {
            let rid = Uuid::new_v4();
            exec(format!(
                "insert into recordings (id, meeting_id, state, requested_by, created_at, updated_at) \
                 values ('{rid}', '{meeting}', '{state}', 'test', {created}, {updated})"
            ))
            .await;
            expected.push((rid, created, updated, state, want));
        }
    }
    exec(backfill.to_string()).await;
    for (rid, created, updated, state, want) in expected {
        let r = app.db.get_recording(rid).await.unwrap().unwrap();
        assert_eq!(r.non_public_parts, want, "{created}..{updated} {state}");
    }
}
both_backends!(the_migration_restricts_existing_recordings_from_the_ledger);
