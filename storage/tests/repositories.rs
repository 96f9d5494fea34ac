//! Repository tests, each run against SQLite and against the PostgreSQL server.

use gremium_protocol::{OutputState, OutputTrigger};
use gremium_storage::*;
use serde_json::json;
use uuid::Uuid;

use gremium_storage::both_backends;

fn record(chain: Uuid, at: i64, kind: &str, subject: impl ToString) -> LedgerRecord {
    LedgerRecord {
        chain_id: chain.to_string(),
        at,
        kind: kind.into(),
        actor: "tester".into(),
        subject: subject.to_string(),
        data: json!({"b": 2, "a": 1}),
    }
}

fn change(
    meeting_id: Uuid,
    participant_id: Uuid,
    recording: bool,
    streaming: bool,
    at: i64,
) -> ConsentChange {
    ConsentChange {
        meeting_id,
        participant_id,
        recording,
        streaming,
        at,
        actor: "p".into(),
        media_time_ns: Some(7),
    }
}

async fn new_meeting(db: &Db, at: i64) -> Meeting {
    let id = Uuid::new_v4();
    let m = NewMeeting {
        id,
        title: format!("Sitzung {at}"),
        is_public: true,
        retention_days: 30,
        created_by: "mod".into(),
        created_at: at,
    };
    db.insert_meeting(&m, &record(id, at, "meeting_created", id))
        .await
        .unwrap()
}

async fn meetings_paginate_and_end(db: Db) {
    let mut ids = Vec::new();
    for at in [1000, 2000, 2000, 3000, 4000] {
        ids.push(new_meeting(&db, at).await.id);
    }
    let first = db.list_meetings(None, 2).await.unwrap();
    assert_eq!(first.len(), 2);
    assert_eq!(first[0].created_at, 4000);
    let mut seen: Vec<Uuid> = first.iter().map(|m| m.id).collect();
    let mut cursor = first.last().map(|m| (m.created_at, m.id));
    while let Some(c) = cursor {
        let page = db.list_meetings(Some(c), 2).await.unwrap();
        seen.extend(page.iter().map(|m| m.id));
        cursor = if page.len() == 2 {
            page.last().map(|m| (m.created_at, m.id))
        } else {
            None
        };
    }
    seen.sort();
    ids.sort();
    assert_eq!(
        seen, ids,
        "keyset pagination visits every meeting exactly once"
    );

    let id = ids[0];
    let ended = db
        .end_meeting(id, 9000, &record(id, 9000, "meeting_ended", id))
        .await
        .unwrap();
    let ended = ended.expect("first end changes state");
    assert_eq!(ended.state, MeetingState::Ended);
    assert_eq!(ended.ended_at, Some(9000));
    assert!(db
        .end_meeting(id, 9100, &record(id, 9100, "meeting_ended", id))
        .await
        .unwrap()
        .is_none());
    assert!(matches!(
        db.end_meeting(Uuid::new_v4(), 1, &record(id, 1, "x", id))
            .await,
        Err(StorageError::NotFound)
    ));
    assert!(db.get_meeting(Uuid::new_v4()).await.unwrap().is_none());
}
both_backends!(meetings_paginate_and_end);

async fn consent_is_stored_with_a_chained_ledger_entry(db: Db) {
    let m = new_meeting(&db, 1).await;
    let p = db
        .insert_participant(&NewParticipant {
            id: Uuid::new_v4(),
            meeting_id: m.id,
            display_name: "Anna".into(),
            created_at: 2,
        })
        .await
        .unwrap();
    assert!(
        !p.consent_recording && !p.consent_streaming,
        "default is no consent"
    );
    let out = db
        .set_consent(&change(m.id, p.id, true, false, 3))
        .await
        .unwrap();
    let ConsentOutcome::Changed { previous, entry } = out else {
        panic!("{out:?}")
    };
    assert_eq!(previous, (false, false));
    assert_eq!(entry.seq, 2);
    let p2 = db.get_participant(m.id, p.id).await.unwrap().unwrap();
    assert!(p2.consent_recording && !p2.consent_streaming);
    assert_eq!(
        db.set_consent(&change(m.id, p.id, true, false, 4))
            .await
            .unwrap(),
        ConsentOutcome::Unchanged
    );
    assert_eq!(
        db.set_consent(&change(m.id, Uuid::new_v4(), true, true, 4))
            .await
            .unwrap(),
        ConsentOutcome::NotFound
    );
    let other = new_meeting(&db, 1).await;
    assert_eq!(
        db.set_consent(&change(other.id, p.id, false, false, 4))
            .await
            .unwrap(),
        ConsentOutcome::NotFound,
        "wrong meeting"
    );

    let entries = db.ledger_entries(&m.id.to_string(), 0, 100).await.unwrap();
    assert_eq!(
        entries.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
        ["meeting_created", "consent_changed"]
    );
    assert_eq!(entries[0].prev_hash, ledger::GENESIS_HASH);
    assert_eq!(entries[1].prev_hash, entries[0].hash);
    assert_eq!(
        entries[1].data,
        r#"{"media_time_ns":7,"previous":{"recording":false,"streaming":false},"recording":true,"streaming":false}"#,
        "data is canonical JSON"
    );
    let (seq, head) = db.ledger_head(&m.id.to_string()).await.unwrap();
    assert_eq!((seq, head), (2, entries[1].hash.clone()));

    let left = db
        .mark_participant_left(m.id, p.id, 5)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(left.left_at, Some(5));
    assert!(db
        .mark_participant_left(m.id, p.id, 6)
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        db.set_consent(&change(m.id, p.id, false, false, 7))
            .await
            .unwrap(),
        ConsentOutcome::Left
    );
    assert_eq!(db.list_participants(m.id).await.unwrap().len(), 1);
}
both_backends!(consent_is_stored_with_a_chained_ledger_entry);

async fn tampering_is_detected(db: Db) {
    let a = new_meeting(&db, 1).await;
    let b = new_meeting(&db, 2).await;
    for i in 0..3 {
        db.append_ledger(&record(a.id, 10 + i, "consent_changed", a.id))
            .await
            .unwrap();
        db.append_ledger(&record(b.id, 20 + i, "consent_changed", b.id))
            .await
            .unwrap();
    }
    let ok = db.verify_ledger().await.unwrap();
    assert!(ok.intact, "{ok:?}");
    assert_eq!((ok.chains, ok.entries), (2, 8));

    // Alter one entry's content directly in SQL.
    sqlx::query("update ledger_entries set data = $1 where chain_id = $2 and seq = 3")
        .bind(r#"{"recording":false}"#)
        .bind(b.id.to_string())
        .execute(db.pool())
        .await
        .unwrap();
    let bad = db.verify_ledger().await.unwrap();
    assert!(!bad.intact);
    let broken = bad.first_broken.unwrap();
    assert_eq!(
        (broken.chain_id.as_str(), broken.seq),
        (b.id.to_string().as_str(), 3)
    );
    assert!(broken.reason.contains("hash"), "{}", broken.reason);
}
both_backends!(tampering_is_detected);

async fn truncation_is_detected(db: Db) {
    let a = new_meeting(&db, 1).await;
    db.append_ledger(&record(a.id, 2, "consent_changed", a.id))
        .await
        .unwrap();
    sqlx::query("delete from ledger_entries where chain_id = $1 and seq = 2")
        .bind(a.id.to_string())
        .execute(db.pool())
        .await
        .unwrap();
    let bad = db.verify_ledger().await.unwrap();
    assert!(!bad.intact);
    assert!(bad.first_broken.unwrap().reason.contains("head"));
}
both_backends!(truncation_is_detected);

async fn output_lifecycle_is_forward_only(db: Db) {
    let m = new_meeting(&db, 1).await;
    let rid = Uuid::new_v4();
    let r = db
        .insert_recording(
            &NewRecording {
                id: rid,
                meeting_id: m.id,
                requested_by: "mod".into(),
                created_at: 5,
                wrapped_key: "00".into(),
            },
            &record(m.id, 5, "recording_requested", rid),
        )
        .await
        .unwrap();
    assert_eq!(r.state, OutputState::Requested);
    let ledger = |t: &Transition| {
        let kind = if t.interrupted {
            "recording_interrupted".to_string()
        } else {
            format!("recording_{}", t.to.as_str())
        };
        Some(record(t.meeting_id, 6, &kind, rid))
    };
    let t = db
        .transition_output(
            OutputKind::Recording,
            rid,
            OutputTrigger::MediaAccepted,
            6,
            None,
            ledger,
        )
        .await
        .unwrap();
    assert_eq!(
        (t.from, t.to),
        (OutputState::Requested, OutputState::Starting)
    );
    db.transition_output(
        OutputKind::Recording,
        rid,
        OutputTrigger::MediaStarted,
        7,
        None,
        ledger,
    )
    .await
    .unwrap();
    db.transition_output(
        OutputKind::Recording,
        rid,
        OutputTrigger::StopRequested,
        8,
        None,
        ledger,
    )
    .await
    .unwrap();
    let again = db
        .transition_output(
            OutputKind::Recording,
            rid,
            OutputTrigger::StopRequested,
            9,
            None,
            ledger,
        )
        .await
        .unwrap();
    assert!(!again.changed(), "second stop is harmless");
    assert!(!again.recorded());
    // The media plane stopping it itself while it is stopping (a write failed in the
    // final flush): no state change, but the reason is kept, once.
    for (at, reason, noted) in [(9, "spool full", true), (9, "other", false)] {
        let t = db
            .transition_output(
                OutputKind::Recording,
                rid,
                OutputTrigger::StopRequested,
                at,
                Some(reason),
                ledger,
            )
            .await
            .unwrap();
        assert!(!t.changed());
        assert_eq!(t.interrupted, noted, "{reason}");
    }
    let r = db.get_recording(rid).await.unwrap().unwrap();
    assert_eq!(r.state, OutputState::Stopping);
    assert_eq!(r.interruption.as_deref(), Some("spool full"));
    db.transition_output(
        OutputKind::Recording,
        rid,
        OutputTrigger::MediaFailed,
        10,
        Some("disk full"),
        ledger,
    )
    .await
    .unwrap();
    let r = db.get_recording(rid).await.unwrap().unwrap();
    assert_eq!(r.state, OutputState::Failed);
    assert_eq!(r.failure.as_deref(), Some("disk full"));
    assert_eq!(r.updated_at, 10);
    let refused = db
        .transition_output(
            OutputKind::Recording,
            rid,
            OutputTrigger::StopRequested,
            11,
            None,
            ledger,
        )
        .await;
    assert!(matches!(refused, Err(StorageError::InvalidTransition(_))));
    let kinds: Vec<String> = db
        .ledger_entries(&m.id.to_string(), 0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            "meeting_created",
            "recording_requested",
            "recording_starting",
            "recording_active",
            "recording_stopping",
            "recording_interrupted",
            "recording_failed"
        ]
    );

    let sid = Uuid::new_v4();
    let s = db
        .insert_stream(
            &NewStream {
                id: sid,
                meeting_id: m.id,
                hls: true,
                destinations: "[]".into(),
                requested_by: "mod".into(),
                created_at: 12,
            },
            &record(m.id, 12, "stream_requested", sid),
        )
        .await
        .unwrap();
    assert!(s.hls);
    assert_eq!(db.list_streams(m.id).await.unwrap(), vec![s]);
    assert_eq!(db.list_recordings(m.id).await.unwrap().len(), 1);
    assert!(matches!(
        db.transition_output(
            OutputKind::Stream,
            Uuid::new_v4(),
            OutputTrigger::MediaStarted,
            1,
            None,
            |_| None
        )
        .await,
        Err(StorageError::NotFound)
    ));
    assert!(db.verify_ledger().await.unwrap().intact);
}
both_backends!(output_lifecycle_is_forward_only);

async fn public_switch_writes_only_on_change(db: Db) {
    let m = new_meeting(&db, 1).await;
    let changed = db
        .set_meeting_public(m.id, false, &record(m.id, 2, "public_changed", m.id))
        .await
        .unwrap();
    assert!(!changed.unwrap().is_public);
    assert!(db
        .set_meeting_public(m.id, false, &record(m.id, 3, "public_changed", m.id))
        .await
        .unwrap()
        .is_none());
    assert_eq!(db.ledger_head(&m.id.to_string()).await.unwrap().0, 2);
}
both_backends!(public_switch_writes_only_on_change);

async fn layout_is_stored_for_open_meetings_only(db: Db) {
    let m = new_meeting(&db, 1).await;
    assert_eq!(m.layout, r#"{"kind":"grid"}"#, "default layout");
    let json = r#"{"kind":"podium","pinned":null,"podium":["x"]}"#;
    let updated = db.set_meeting_layout(m.id, json).await.unwrap().unwrap();
    assert_eq!(updated.layout, json);
    assert_eq!(db.get_meeting(m.id).await.unwrap().unwrap().layout, json);
    assert!(db
        .set_meeting_layout(Uuid::new_v4(), json)
        .await
        .unwrap()
        .is_none());
}
both_backends!(layout_is_stored_for_open_meetings_only);

async fn consent_batches_chain_every_entry(db: Db) {
    let a = new_meeting(&db, 1).await;
    let b = new_meeting(&db, 2).await;
    let mut people = Vec::new();
    for (i, m) in [a.id, a.id, b.id, a.id, b.id].into_iter().enumerate() {
        let p = db
            .insert_participant(&NewParticipant {
                id: Uuid::new_v4(),
                meeting_id: m,
                display_name: format!("P{i}"),
                created_at: 3,
            })
            .await
            .unwrap();
        people.push(p);
    }
    db.set_consent(&change(a.id, people[3].id, true, true, 4))
        .await
        .unwrap();
    let batch: Vec<ConsentChange> = people
        .iter()
        .map(|p| change(p.meeting_id, p.id, true, true, 5))
        .collect();
    let out = db.apply_consent_batch(&batch).await.unwrap();
    assert_eq!(out[3], ConsentOutcome::Unchanged);
    let seqs: Vec<(String, i64)> = out
        .iter()
        .filter_map(|o| match o {
            ConsentOutcome::Changed { entry, .. } => Some((entry.chain_id.clone(), entry.seq)),
            _ => None,
        })
        .collect();
    let (ac, bc) = (a.id.to_string(), b.id.to_string());
    assert_eq!(
        seqs,
        vec![
            (ac.clone(), 3),
            (ac.clone(), 4),
            (bc.clone(), 2),
            (bc.clone(), 3)
        ]
    );
    for p in &people {
        let now = db
            .get_participant(p.meeting_id, p.id)
            .await
            .unwrap()
            .unwrap();
        assert!(now.consent_recording && now.consent_streaming);
    }
    assert_eq!(db.ledger_head(&ac).await.unwrap().0, 4);
    let report = db.verify_ledger().await.unwrap();
    assert!(report.intact, "{report:?}");
    assert_eq!(report.entries, 7);
    let dup = vec![
        change(a.id, people[0].id, false, false, 6),
        change(a.id, people[0].id, true, false, 6),
    ];
    assert!(
        db.apply_consent_batch(&dup).await.is_err(),
        "a participant twice in a batch is refused"
    );

    // The writer task groups concurrent submissions and answers each caller.
    let writer = ConsentWriter::spawn(db.clone());
    let handles: Vec<_> = people
        .iter()
        .map(|p| {
            let w = writer.clone();
            let c = change(p.meeting_id, p.id, false, true, 7);
            tokio::spawn(async move { w.submit(c).await })
        })
        .collect();
    for h in handles {
        assert!(matches!(
            h.await.unwrap().unwrap(),
            ConsentOutcome::Changed {
                previous: (true, true),
                ..
            }
        ));
    }
    assert!(db.verify_ledger().await.unwrap().intact);
}
both_backends!(consent_batches_chain_every_entry);

async fn verify_sees_one_snapshot_while_appends_commit(db: Db) {
    let chain = Uuid::new_v4();
    let writer = {
        let db = db.clone();
        tokio::spawn(async move {
            for i in 0..300 {
                db.append_ledger(&record(chain, i, "archive_access", i))
                    .await
                    .unwrap();
            }
        })
    };
    let mut checks = 0;
    while !writer.is_finished() {
        let report = db.verify_ledger().await.unwrap();
        assert!(report.intact, "{report:?}");
        checks += 1;
    }
    writer.await.unwrap();
    assert!(checks > 0);
    let report = db.verify_ledger().await.unwrap();
    assert!(report.intact && report.entries == 300, "{report:?}");
}
both_backends!(verify_sees_one_snapshot_while_appends_commit);

both_backends!(chapters_are_ordered_ledgered_and_only_for_open_meetings);
async fn chapters_are_ordered_ledgered_and_only_for_open_meetings(db: Db) {
    let m = new_meeting(&db, 1_000).await;
    let chapter = |at: i64, title: &str| Chapter {
        id: Uuid::new_v4(),
        meeting_id: m.id,
        title: title.into(),
        at,
        created_by: "mod".into(),
    };
    let (second, first) = (chapter(3_000, "TOP 2"), chapter(2_000, "TOP 1"));
    for c in [&second, &first] {
        let stored = db
            .add_chapter(c, &record(m.id, c.at, "chapter_marked", c.id))
            .await
            .unwrap();
        assert!(stored);
    }
    assert_eq!(
        db.list_chapters(m.id).await.unwrap(),
        vec![first.clone(), second.clone()]
    );
    // Marks within one millisecond keep the order they were stored in (eight of
    // them: by chance in order once in 40 320).
    let same_ms: Vec<Chapter> = (0..8)
        .map(|i| chapter(4_000, &format!("TOP 3.{i}")))
        .collect();
    for c in &same_ms {
        assert!(db
            .add_chapter(c, &record(m.id, c.at, "chapter_marked", c.id))
            .await
            .unwrap());
    }
    let listed = db.list_chapters(m.id).await.unwrap();
    assert_eq!(listed[..2], [first, second]);
    assert_eq!(listed[2..], same_ms[..]);
    let kinds: Vec<String> = db
        .ledger_entries(&m.id.to_string(), 0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| *k == "chapter_marked").count(),
        10,
        "{kinds:?}"
    );
    assert!(db.list_chapters(Uuid::new_v4()).await.unwrap().is_empty());
    let unknown = Chapter {
        meeting_id: Uuid::new_v4(),
        ..chapter(4_000, "x")
    };
    assert!(matches!(
        db.add_chapter(
            &unknown,
            &record(unknown.meeting_id, 4_000, "chapter_marked", 1)
        )
        .await,
        Err(StorageError::NotFound)
    ));
    db.end_meeting(m.id, 5_000, &record(m.id, 5_000, "meeting_ended", m.id))
        .await
        .unwrap();
    let late = chapter(6_000, "after the end");
    assert!(!db
        .add_chapter(&late, &record(m.id, 6_000, "chapter_marked", late.id))
        .await
        .unwrap());
    assert_eq!(db.list_chapters(m.id).await.unwrap().len(), 10);
}
