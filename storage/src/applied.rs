//! Media events already applied, by event id: what lets several control-plane
//! replicas (or one replica that gets an event delivered twice) apply each media event
//! to the database once. Ids are uuids stored as text, times unix milliseconds, like
//! every other table.

use uuid::Uuid;

use crate::{Db, Result};

impl Db {
    /// Has the media event `event_id` been marked applied?
    pub async fn media_event_applied(&self, event_id: Uuid) -> Result<bool> {
        let found: Option<i64> =
            sqlx::query_scalar("select applied_at from applied_media_events where event_id = $1")
                .bind(event_id.to_string())
                .fetch_optional(self.pool())
                .await?;
        Ok(found.is_some())
    }

    /// Mark the media event `event_id` applied at `now_ms`: `true` when this call marked
    /// it, `false` when it was marked already (not an error: a repeat is expected).
    pub async fn mark_media_event_applied(&self, event_id: Uuid, now_ms: i64) -> Result<bool> {
        let done = sqlx::query(
            "insert into applied_media_events (event_id, applied_at) values ($1, $2) \
             on conflict (event_id) do nothing",
        )
        .bind(event_id.to_string())
        .bind(now_ms)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Forget the marks made before `older_than_ms` (an event is redelivered within
    /// the transport's ack wait, not days later); returns how many were removed.
    pub async fn prune_applied_media_events(&self, older_than_ms: i64) -> Result<u64> {
        let done = sqlx::query("delete from applied_media_events where applied_at < $1")
            .bind(older_than_ms)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{fresh_postgres, fresh_sqlite};

    async fn marks_once_and_prunes_by_age(db: Db) {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        assert!(!db.media_event_applied(a).await.unwrap());
        assert!(db.mark_media_event_applied(a, 1_000).await.unwrap());
        assert!(db.media_event_applied(a).await.unwrap());
        assert!(
            !db.mark_media_event_applied(a, 5_000).await.unwrap(),
            "a second mark is a repeat, not an error"
        );
        assert!(!db.media_event_applied(b).await.unwrap(), "ids are apart");
        assert!(db.mark_media_event_applied(b, 3_000).await.unwrap());

        // The repeat kept the first time: `a` is older than 2 s, `b` is not.
        assert_eq!(db.prune_applied_media_events(2_000).await.unwrap(), 1);
        assert!(!db.media_event_applied(a).await.unwrap());
        assert!(db.media_event_applied(b).await.unwrap());
        assert_eq!(db.prune_applied_media_events(2_000).await.unwrap(), 0);
        // A pruned id can be marked again (it would be applied again, too).
        assert!(db.mark_media_event_applied(a, 4_000).await.unwrap());
    }

    async fn concurrent_marks_have_one_winner(db: Db) {
        let id = Uuid::new_v4();
        let marks = (0..8).map(|i| {
            let db = db.clone();
            tokio::spawn(async move { db.mark_media_event_applied(id, i).await })
        });
        let mut won = 0;
        for m in marks {
            if m.await.unwrap().unwrap() {
                won += 1;
            }
        }
        assert_eq!(won, 1);
    }

    #[tokio::test]
    async fn sqlite_marks_once_and_prunes_by_age() {
        let (db, _dir) = fresh_sqlite().await.unwrap();
        marks_once_and_prunes_by_age(db).await;
    }

    #[tokio::test]
    async fn postgres_marks_once_and_prunes_by_age() {
        let db = fresh_postgres()
            .await
            .expect("postgres at GREMIUM_TEST_POSTGRES_URL");
        marks_once_and_prunes_by_age(db).await;
    }

    #[tokio::test]
    async fn sqlite_concurrent_marks_have_one_winner() {
        let (db, _dir) = fresh_sqlite().await.unwrap();
        concurrent_marks_have_one_winner(db).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres_concurrent_marks_have_one_winner() {
        let db = fresh_postgres()
            .await
            .expect("postgres at GREMIUM_TEST_POSTGRES_URL");
        concurrent_marks_have_one_winner(db).await;
    }
}
