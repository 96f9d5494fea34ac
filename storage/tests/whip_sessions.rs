//! WHIP sessions in the database (any control replica finds them): registration,
//! ICE restarts counted by compare-and-swap, removal by session, participant and
//! meeting; on SQLite and PostgreSQL.

use gremium_storage::testing::new_meeting;
use gremium_storage::*;
use uuid::Uuid;

use gremium_storage::both_backends;

async fn sessions_are_shared_and_restarts_counted_once(db: Db) {
    let meeting = new_meeting(&db).await.unwrap();
    let (anna, bernd) = (Uuid::new_v4(), Uuid::new_v4());
    let (s1, s2, s3) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    assert_eq!(db.whip_session(s1).await.unwrap(), None);
    db.insert_whip_session(s1, meeting, anna, 5).await.unwrap();
    db.insert_whip_session(s2, meeting, anna, 6).await.unwrap();
    db.insert_whip_session(s3, meeting, bernd, 7).await.unwrap();
    assert_eq!(
        db.whip_session(s1).await.unwrap(),
        Some(WhipSession {
            session_id: s1,
            meeting_id: meeting,
            participant_id: anna,
            ice_restarts: 0
        })
    );
    // The same session twice is refused (a session id is the media plane's).
    assert!(db.insert_whip_session(s1, meeting, anna, 8).await.is_err());

    // Two restarts expecting the same count: one wins.
    assert_eq!(db.count_whip_ice_restart(s1, 0).await.unwrap(), Some(1));
    assert_eq!(db.count_whip_ice_restart(s1, 0).await.unwrap(), None);
    assert_eq!(db.count_whip_ice_restart(s1, 1).await.unwrap(), Some(2));
    assert_eq!(db.whip_session(s1).await.unwrap().unwrap().ice_restarts, 2);
    assert_eq!(
        db.count_whip_ice_restart(Uuid::new_v4(), 0).await.unwrap(),
        None
    );

    // A removed participant's sessions are taken, once.
    let mut taken = db.take_whip_sessions_of(meeting, anna).await.unwrap();
    taken.sort();
    let mut expected = vec![s1, s2];
    expected.sort();
    assert_eq!(taken, expected);
    assert!(db
        .take_whip_sessions_of(meeting, anna)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(db.whip_session(s1).await.unwrap(), None);
    assert!(db.whip_session(s3).await.unwrap().is_some());

    assert!(db.remove_whip_session(s3).await.unwrap());
    assert!(!db.remove_whip_session(s3).await.unwrap());

    // An ended meeting's sessions go at once; another meeting's stay.
    let other = new_meeting(&db).await.unwrap();
    let s4 = Uuid::new_v4();
    db.insert_whip_session(s3, meeting, bernd, 9).await.unwrap();
    db.insert_whip_session(s4, other, bernd, 9).await.unwrap();
    assert_eq!(db.remove_meeting_whip_sessions(meeting).await.unwrap(), 1);
    assert_eq!(db.whip_session(s3).await.unwrap(), None);
    assert!(db.whip_session(s4).await.unwrap().is_some());

    // A session of a meeting that does not exist is refused.
    assert!(db
        .insert_whip_session(Uuid::new_v4(), Uuid::new_v4(), anna, 1)
        .await
        .is_err());
}
both_backends!(sessions_are_shared_and_restarts_counted_once);
