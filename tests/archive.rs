//! Archive rules over real HTTP on SQLite and PostgreSQL, with the fake media plane:
//! retention deletes expired recordings (objects and keys) with the time passed in,
//! legal hold stops it, who may read what, and the error statuses of the archive API.
//! (Recording, encryption and playback with the real media plane: `tests/recording.rs`.)

mod common;

use std::time::Duration;

use common::*;
use gremium_signaling::Role;
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
    let moderator = app.token(&[Role::Moderator]);
    let (s, m) = app
        .send(
            Method::POST,
            "/api/v1/meetings",
            Some(&moderator),
            Some(json!({"title": title, "public": public, "retention_days": 1})),
        )
        .await;
    assert_eq!(s, 201, "{m}");
    let mid = m["id"].as_str().unwrap().to_string();
    let (s, r) = app
        .send(
            Method::POST,
            &format!("/api/v1/meetings/{mid}/recordings"),
            Some(&moderator),
            None,
        )
        .await;
    assert_eq!(s, 201, "{r}");
    let rid = Uuid::parse_str(r["id"].as_str().unwrap()).unwrap();
    let (s, _) = app
        .send(
            Method::POST,
            &format!("/api/v1/recordings/{rid}/stop"),
            Some(&moderator),
            None,
        )
        .await;
    assert!(s == 200 || s == 202);
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
    (mid, rid, object_key)
}

async fn media_status(app: &TestApp, rid: Uuid, token: &str) -> u16 {
    app.get_status(token, &format!("recordings/{rid}/media"))
        .await
}

async fn retention_deletes_expired_recordings_unless_held(backend: Backend) {
    let app = spawn_app(backend).await;
    let archivist = app.token(&[Role::Archivist]);
    let moderator = app.token(&[Role::Moderator]);
    let (_, expiring, expiring_key) = recorded_meeting(&app, "Bauausschuss", false).await;
    let (held_mid, held, held_key) = recorded_meeting(&app, "Hauptausschuss", false).await;
    assert_eq!(media_status(&app, expiring, &archivist).await, 200);

    let (s, _) = app
        .send(
            Method::PUT,
            &format!("/api/v1/meetings/{held_mid}/retention"),
            Some(&moderator),
            Some(json!({"legal_hold": true})),
        )
        .await;
    assert_eq!(s, 403, "moderators do not set legal holds");
    let (s, m) = app
        .send(
            Method::PUT,
            &format!("/api/v1/meetings/{held_mid}/retention"),
            Some(&archivist),
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
    assert_eq!(media_status(&app, expiring, &archivist).await, 410);
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
    assert_eq!(media_status(&app, held, &archivist).await, 200);
    assert!(app.vault.store().size(&held_key).await.unwrap().is_some());

    // Releasing the hold lets the next sweep delete it.
    let (s, _) = app
        .send(
            Method::PUT,
            &format!("/api/v1/meetings/{held_mid}/retention"),
            Some(&archivist),
            Some(json!({"legal_hold": false})),
        )
        .await;
    assert_eq!(s, 200);
    let deleted = gremium_signaling::retention::sweep(&app.state, now + 2 * DAY_MS).await;
    assert_eq!(deleted, vec![held]);
    assert_eq!(media_status(&app, held, &archivist).await, 410);
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
    let archivist = app.token(&[Role::Archivist]);
    let admin = app.token(&[Role::Admin]);
    let moderator = app.token(&[Role::Moderator]);
    let viewer = app.token(&[Role::Viewer]);
    let (public_mid, public_rid, _) = recorded_meeting(&app, "Stadtrat öffentlich", true).await;
    let (_, closed_rid, _) = recorded_meeting(&app, "Stadtrat nichtöffentlich", false).await;

    // Public meeting: viewers, moderators, archivists, admins read; closed: archive staff only.
    for (token, public, closed) in [
        (&viewer, 200, 403),
        (&moderator, 200, 403),
        (&archivist, 200, 200),
        (&admin, 200, 200),
    ] {
        assert_eq!(media_status(&app, public_rid, token).await, public);
        assert_eq!(media_status(&app, closed_rid, token).await, closed);
    }
    let (_, join) = app.add_participant(&moderator, &public_mid, "Anna").await;
    assert_eq!(
        media_status(&app, public_rid, &join).await,
        403,
        "join tokens never read"
    );
    assert_eq!(
        app.http
            .get(format!("{}/api/v1/recordings/{public_rid}/media", app.base))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    // Listing: viewers see public meetings only and may not ask for the others.
    let (s, page) = app
        .send(Method::GET, "/api/v1/archive", Some(&viewer), None)
        .await;
    assert_eq!(s, 200, "{page}");
    let ids: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["recording"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![public_rid.to_string().as_str()]);
    let (s, _) = app
        .send(
            Method::GET,
            "/api/v1/archive?public=false",
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(s, 403);
    let (s, page) = app
        .send(
            Method::GET,
            "/api/v1/archive?limit=1",
            Some(&archivist),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        page["items"][0]["recording"]["id"],
        closed_rid.to_string(),
        "newest first"
    );
    let (_, page2) = app
        .send(
            Method::GET,
            &format!("/api/v1/archive?limit=1&offset={}", page["next_offset"]),
            Some(&archivist),
            None,
        )
        .await;
    assert_eq!(page2["items"][0]["recording"]["id"], public_rid.to_string());
    let (_, later) = app
        .send(
            Method::GET,
            "/api/v1/archive?from=2999-01-01T00:00:00Z",
            Some(&archivist),
            None,
        )
        .await;
    assert_eq!(later["items"].as_array().unwrap().len(), 0);
    let (_, titled) = app
        .send(
            Method::GET,
            "/api/v1/archive?q=NICHT",
            Some(&archivist),
            None,
        )
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
        let (s, body) = app.send(Method::GET, path, Some(&archivist), None).await;
        assert_eq!(s, expected, "{path}: {body}");
    }
    let unknown = Uuid::new_v4();
    assert_eq!(media_status(&app, unknown, &archivist).await, 404);
    let (s, _) = app
        .send(
            Method::DELETE,
            &format!("/api/v1/recordings/{unknown}"),
            Some(&archivist),
            None,
        )
        .await;
    assert_eq!(s, 404);
    let (s, body) = app
        .send(
            Method::DELETE,
            "/api/v1/recordings/not-a-uuid",
            Some(&archivist),
            None,
        )
        .await;
    assert_eq!(s, 400, "{body}");
    let (s, _) = app
        .send(
            Method::PUT,
            &format!("/api/v1/meetings/{unknown}/retention"),
            Some(&archivist),
            Some(json!({"retention_days": 5})),
        )
        .await;
    assert_eq!(s, 404);
    let (s, body) = app
        .send(
            Method::PUT,
            &format!("/api/v1/meetings/{public_mid}/retention"),
            Some(&archivist),
            Some(json!({"retention_days": 1_000_000})),
        )
        .await;
    assert_eq!(s, 422, "{body}");
    let (s, _) = app
        .send(
            Method::PUT,
            &format!("/api/v1/meetings/{public_mid}/retention"),
            Some(&archivist),
            Some(json!({"keep": "forever"})),
        )
        .await;
    assert_eq!(s, 422);

    // A running recording is stopped before it can be deleted; poster-less → 404.
    let (s, r) = app
        .send(
            Method::POST,
            &format!("/api/v1/meetings/{public_mid}/recordings"),
            Some(&moderator),
            None,
        )
        .await;
    assert_eq!(s, 201, "{r}");
    let running = r["id"].as_str().unwrap();
    let (s, _) = app
        .send(
            Method::DELETE,
            &format!("/api/v1/recordings/{running}"),
            Some(&archivist),
            None,
        )
        .await;
    assert_eq!(s, 409);
    assert_eq!(
        media_status(&app, Uuid::parse_str(running).unwrap(), &archivist).await,
        409,
        "not finalized yet"
    );
    let (s, _) = app
        .send(
            Method::GET,
            &format!("/api/v1/recordings/{public_rid}/poster"),
            Some(&archivist),
            None,
        )
        .await;
    assert_eq!(s, 404);
    let (s, view): (u16, Value) = app
        .send(
            Method::GET,
            &format!("/api/v1/recordings/{public_rid}"),
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(s, 200, "{view}");
    assert_eq!(view["media"]["bytes"], 100_000);
}
both_backends!(the_archive_enforces_roles_and_reports_bad_requests);
