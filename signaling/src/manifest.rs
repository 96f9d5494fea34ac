//! A recording's manifest: what the recording is, who appears in it when, and how to
//! check it — written when the recording is finalized, sealed with the recording's
//! data key, stored next to the media (`recordings/{id}/manifest.json.sealed`) and
//! served decrypted by `GET /api/v1/recordings/{rid}/manifest`.
//!
//! Contents: meeting (id, title, public), wall-clock start and end, media duration and
//! codecs (from validation), per participant (random id — pseudonymous — and display
//! name) the media-time ranges in which they appear (from presence and the consent
//! timeline the media plane kept), the agenda chapters it covers (media offsets), the
//! meeting ledger's head when the recording was requested and when it was finalized,
//! and the SHA-256 of every stored object.
//!
//! Whether any part was made while the meeting was non-public (`non_public_parts`)
//! decides who reads it (see [`crate::disclosure`]). A recording without such parts
//! is for viewers too, so its manifest leaves out chapters marked while the meeting
//! was non-public (the one under way when it started may be such a chapter).

use gremium_protocol::RecordedMedia;
use gremium_storage::crypto::SealWriter;
use gremium_storage::vault::manifest_context;
use uuid::Uuid;

use crate::disclosure::PublicHistory;
use crate::{to_datetime, AppState};

/// Object key of a recording's manifest.
pub fn manifest_object_key(recording_id: Uuid) -> String {
    format!("recordings/{recording_id}/manifest.json.sealed")
}

/// Build, seal and store the manifest of a just-finalized recording.
pub(crate) async fn write_manifest(
    state: &AppState,
    recording_id: Uuid,
    media: &RecordedMedia,
) -> Result<(), String> {
    let db = state.db();
    let e = |e: gremium_storage::StorageError| e.to_string();
    let r = db
        .get_recording(recording_id)
        .await
        .map_err(e)?
        .ok_or("recording vanished")?;
    let m = db
        .get_meeting(r.meeting_id)
        .await
        .map_err(e)?
        .ok_or("meeting vanished")?;
    let chain = r.meeting_id.to_string();
    let requested = db
        .ledger_entries(&chain, 0, i64::MAX)
        .await
        .map_err(e)?
        .into_iter()
        .find(|entry| entry.subject == recording_id.to_string());
    let (head_seq, head_hash) = db.ledger_head(&chain).await.map_err(e)?;
    let chapters = db.list_chapters(r.meeting_id).await.map_err(e)?;
    let mut chapters = chapters_in(&chapters, r.created_at, media.duration_ms);
    if !r.non_public_parts {
        let history =
            PublicHistory::from_ledger(&db.public_history(r.meeting_id).await.map_err(e)?);
        chapters = viewer_chapters(chapters, &history);
    }
    let probe: serde_json::Value = serde_json::from_str(&media.probe).unwrap_or_default();
    let mut objects = vec![serde_json::json!({
        "key": media.media_key,
        "sha256": media.media_sha256,
        "bytes": media.stored_bytes,
        "content": "video/mp4",
    })];
    if let (Some(k), Some(h)) = (&media.poster_key, &media.poster_sha256) {
        objects.push(serde_json::json!({ "key": k, "sha256": h, "content": "image/jpeg" }));
    }
    let doc = serde_json::json!({
        "version": 1,
        "recording_id": recording_id,
        "meeting": { "id": m.id, "title": m.title, "public": m.is_public },
        "non_public_parts": r.non_public_parts,
        "started_at": to_datetime(r.created_at),
        "ended_at": to_datetime(r.updated_at),
        "duration_s": media.duration_ms.map(|d| d as f64 / 1000.0),
        "streams": probe.get("streams").cloned().unwrap_or_default(),
        "recovered_after_crash": media.recovered,
        "participants": media.appearances.iter().map(|a| serde_json::json!({
            "id": a.participant_id,
            "display_name": a.display_name,
            "appears_ms": a.ranges_ms,
        })).collect::<Vec<_>>(),
        "appearances_complete": !media.recovered,
        "chapters": chapters,
        "ledger": {
            "chain": chain,
            "at_start": requested.map(|e| serde_json::json!({ "seq": e.seq, "hash": e.hash })),
            "at_stop": { "seq": head_seq, "hash": head_hash },
        },
        "objects": objects,
    });
    let key = state
        .vault()
        .data_key(db, recording_id)
        .await
        .map_err(|e| e.to_string())?;
    let mut w = SealWriter::new(Vec::new(), &key, &manifest_context(recording_id))
        .map_err(|e| e.to_string())?;
    w.write(&serde_json::to_vec_pretty(&doc).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let (sealed, bytes) = w.finish().map_err(|e| e.to_string())?;
    // Only ciphertext touches the disk on its way to the store.
    let tmp = std::env::temp_dir().join(format!("gremium-manifest-{recording_id}.sealed"));
    tokio::fs::write(&tmp, &bytes)
        .await
        .map_err(|e| e.to_string())?;
    let object_key = manifest_object_key(recording_id);
    let stored = state.vault().store().put_file(&object_key, &tmp).await;
    let _ = tokio::fs::remove_file(&tmp).await;
    stored.map_err(|e| e.to_string())?;
    db.set_recording_manifest(recording_id, &object_key, &sealed.sha256)
        .await
        .map_err(e)
}

/// Of a recording's chapters (from [`chapters_in`]), those viewers may see: marked
/// while the meeting was public. A hidden chapter under way when the recording
/// started is left out, not replaced by an older one: the recording then starts
/// without a chapter.
fn viewer_chapters(
    chapters: Vec<serde_json::Value>,
    history: &PublicHistory,
) -> Vec<serde_json::Value> {
    chapters
        .into_iter()
        .filter(|c| {
            c["id"]
                .as_str()
                .and_then(|id| Uuid::parse_str(id).ok())
                .is_some_and(|id| history.chapter_was_public(id))
        })
        .collect()
}

/// The chapters a recording covers, with their offset into the media: the one under
/// way when it started (at offset 0) and those marked while it ran.
fn chapters_in(
    chapters: &[gremium_storage::Chapter],
    start_ms: i64,
    duration_ms: Option<u64>,
) -> Vec<serde_json::Value> {
    let end_ms = duration_ms.map(|d| start_ms + d as i64);
    let under_way = chapters.iter().rposition(|c| c.at <= start_ms);
    chapters
        .iter()
        .enumerate()
        .filter(|(i, c)| {
            (Some(*i) == under_way || c.at > start_ms) && end_ms.is_none_or(|end| c.at < end)
        })
        .map(|(_, c)| {
            serde_json::json!({
                "id": c.id,
                "title": c.title,
                "marked_at": to_datetime(c.at),
                "offset_ms": (c.at - start_ms).max(0),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recording_lists_the_chapter_under_way_and_those_marked_while_it_ran() {
        let c = |at: i64, title: &str| gremium_storage::Chapter {
            id: Uuid::from_u128(at as u128),
            meeting_id: Uuid::nil(),
            title: title.into(),
            at,
            created_by: "m".into(),
        };
        let all = [
            c(100, "TOP 1"),
            c(900, "TOP 2"),
            c(1_500, "TOP 3"),
            c(9_000, "TOP 9"),
        ];
        let got = chapters_in(&all, 1_000, Some(5_000));
        let titles: Vec<_> = got
            .iter()
            .map(|v| (v["title"].clone(), v["offset_ms"].clone()))
            .collect();
        assert_eq!(
            titles,
            [
                (serde_json::json!("TOP 2"), serde_json::json!(0)),
                (serde_json::json!("TOP 3"), serde_json::json!(500)),
            ]
        );
        assert!(chapters_in(&[], 1_000, Some(5_000)).is_empty());
        assert_eq!(chapters_in(&all, 0, None).len(), 4);
    }

    #[test]
    fn viewers_get_no_chapter_marked_while_non_public_not_even_the_one_under_way() {
        let c = |at: i64, title: &str| gremium_storage::Chapter {
            id: Uuid::from_u128(at as u128),
            meeting_id: Uuid::nil(),
            title: title.into(),
            at,
            created_by: "m".into(),
        };
        let entry = |seq: i64, kind: &str, subject: Uuid, data: serde_json::Value| {
            gremium_storage::LedgerEntry {
                chain_id: "m".into(),
                seq,
                at: 0,
                kind: kind.into(),
                actor: "a".into(),
                subject: subject.to_string(),
                data: data.to_string(),
                prev_hash: String::new(),
                hash: String::new(),
            }
        };
        let all = [
            c(100, "TOP 1"),
            c(900, "TOP 2 Personalsache"),
            c(1_500, "TOP 3"),
        ];
        let m = Uuid::nil();
        let history = PublicHistory::from_ledger(&[
            entry(
                1,
                "meeting_created",
                m,
                serde_json::json!({ "public": true }),
            ),
            entry(2, "chapter_marked", all[0].id, serde_json::json!({})),
            entry(
                3,
                "public_changed",
                m,
                serde_json::json!({ "public": false }),
            ),
            entry(4, "chapter_marked", all[1].id, serde_json::json!({})),
            entry(
                5,
                "public_changed",
                m,
                serde_json::json!({ "public": true }),
            ),
            entry(6, "chapter_marked", all[2].id, serde_json::json!({})),
        ]);
        // Started at 1_000 while TOP 2 was under way: not TOP 1 instead.
        let got = viewer_chapters(chapters_in(&all, 1_000, Some(5_000)), &history);
        let titles: Vec<_> = got.iter().map(|v| v["title"].clone()).collect();
        assert_eq!(titles, [serde_json::json!("TOP 3")]);
    }
}
