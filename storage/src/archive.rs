//! The archive side of recordings: wrapped data keys, stored objects, retention,
//! deletion (crypto-shredding) and the archive listing.

use sqlx::Row;
use uuid::Uuid;

use crate::ledger::{append_in, LedgerRecord};
use crate::meetings::parse_uuid;
use crate::outputs::{recording_from_row, StoredMedia, RECORDING_COLUMNS};
use crate::{flag, one_row, Db, Recording, Result, StorageError};

const DAY_MS: i64 = 86_400_000;

/// What a deletion found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shredded {
    /// Meeting the recording belonged to.
    pub meeting_id: Uuid,
    /// Object keys the recording had in the store; delete them after the commit (the
    /// data key is gone by then, so they are unreadable whether or not that works).
    pub object_keys: Vec<String>,
    /// True when the recording had been deleted before: nothing changed.
    pub already: bool,
    /// True when its meeting is under legal hold: nothing changed.
    pub held: bool,
}

/// Filters of the archive listing.
#[derive(Debug, Clone, Default)]
pub struct ArchiveQuery {
    /// Only recordings started at or after (unix ms).
    pub from: Option<i64>,
    /// Only recordings started before (unix ms).
    pub to: Option<i64>,
    /// Case-insensitive substring of the meeting title.
    pub text: Option<String>,
    /// Only public (`true`) or only non-public (`false`) meetings (their flag now).
    pub public: Option<bool>,
    /// Only recordings made entirely while their meeting was public (what viewers
    /// may see, whatever the meeting's flag is now).
    pub without_non_public_parts: bool,
    /// Page size.
    pub limit: i64,
    /// Rows to skip.
    pub offset: i64,
}

/// One archive row: a recording with its meeting's facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveItem {
    /// The recording.
    pub recording: Recording,
    /// Meeting title.
    pub meeting_title: String,
    /// Meeting public flag.
    pub meeting_public: bool,
}

fn prefixed_columns(prefix: &str) -> String {
    RECORDING_COLUMNS
        .split(',')
        .map(|c| format!("{prefix}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Db {
    /// The wrapped data key of a recording (hex), `None` once shredded.
    pub async fn recording_key(&self, recording_id: Uuid) -> Result<Option<String>> {
        let row = sqlx::query("select wrapped from recording_keys where recording_id = $1")
            .bind(recording_id.to_string())
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(|r| r.try_get("wrapped")).transpose()?)
    }

    /// Record what finalization stored. Refused (`NotFound`) for a deleted recording,
    /// so a late finalization cannot resurrect it.
    pub async fn set_recording_stored(&self, recording_id: Uuid, m: &StoredMedia) -> Result<()> {
        let done = sqlx::query(
            "update recordings set media_key = $1, media_sha256 = $2, stored_bytes = $3, \
             plaintext_bytes = $4, poster_key = $5, poster_sha256 = $6, duration_ms = $7, \
             probe = $8 where id = $9 and deleted_at is null",
        )
        .bind(&m.media_key)
        .bind(&m.media_sha256)
        .bind(m.stored_bytes)
        .bind(m.plaintext_bytes)
        .bind(m.poster_key.clone())
        .bind(m.poster_sha256.clone())
        .bind(m.duration_ms)
        .bind(m.probe.clone())
        .bind(recording_id.to_string())
        .execute(self.pool())
        .await?;
        one_row(&done)
    }

    /// Record the stored manifest object of a recording.
    pub async fn set_recording_manifest(
        &self,
        recording_id: Uuid,
        manifest_key: &str,
        manifest_sha256: &str,
    ) -> Result<()> {
        let done = sqlx::query(
            "update recordings set manifest_key = $1, manifest_sha256 = $2 \
             where id = $3 and deleted_at is null",
        )
        .bind(manifest_key)
        .bind(manifest_sha256)
        .bind(recording_id.to_string())
        .execute(self.pool())
        .await?;
        one_row(&done)
    }

    /// Delete a recording: drop its data key (crypto-shredding), mark it deleted and
    /// append `ledger`, in one transaction. Repeating it is harmless (`already`).
    /// Nothing is deleted while its meeting is under legal hold (`held`): the check is
    /// part of the deleting update, so a hold set concurrently either commits first
    /// and is seen, or commits after the deletion.
    pub async fn shred_recording(
        &self,
        recording_id: Uuid,
        now: i64,
        reason: &str,
        ledger: &LedgerRecord,
    ) -> Result<Shredded> {
        let mut tx = self.pool().begin().await?;
        let row = sqlx::query(
            "select meeting_id, media_key, poster_key, manifest_key, deleted_at from recordings \
             where id = $1",
        )
        .bind(recording_id.to_string())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StorageError::NotFound)?;
        let meeting_id = parse_uuid(&row.try_get::<String, _>("meeting_id")?)?;
        let object_keys: Vec<String> = [
            row.try_get::<Option<String>, _>("media_key")?,
            row.try_get::<Option<String>, _>("poster_key")?,
            row.try_get::<Option<String>, _>("manifest_key")?,
        ]
        .into_iter()
        .flatten()
        .collect();
        let mut outcome = Shredded {
            meeting_id,
            object_keys,
            already: row.try_get::<Option<i64>, _>("deleted_at")?.is_some(),
            held: false,
        };
        if outcome.already {
            return Ok(outcome);
        }
        let done = sqlx::query(
            "update recordings set deleted_at = $1, deletion_reason = $2 \
             where id = $3 and deleted_at is null \
             and meeting_id not in (select id from meetings where legal_hold <> 0)",
        )
        .bind(now)
        .bind(reason)
        .bind(recording_id.to_string())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            drop(tx);
            // Deleted by a concurrent call, or held.
            let deleted = sqlx::query("select deleted_at from recordings where id = $1")
                .bind(recording_id.to_string())
                .fetch_one(self.pool())
                .await?
                .try_get::<Option<i64>, _>("deleted_at")?
                .is_some();
            outcome.already = deleted;
            outcome.held = !deleted;
            return Ok(outcome);
        }
        sqlx::query("delete from recording_keys where recording_id = $1")
            .bind(recording_id.to_string())
            .execute(&mut *tx)
            .await?;
        append_in(&mut tx, ledger).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// Recordings whose retention has passed at `now`: ended (finished or failed),
    /// not deleted, their meeting not on legal hold, last changed more than the
    /// meeting's retention days before `now`.
    pub async fn expired_recordings(&self, now: i64) -> Result<Vec<Uuid>> {
        let rows = sqlx::query(
            "select r.id from recordings r join meetings m on m.id = r.meeting_id \
             where r.deleted_at is null and m.legal_hold = 0 \
             and r.state in ('finished', 'failed') \
             and r.updated_at + m.retention_days * $1 <= $2 \
             order by r.updated_at, r.id",
        )
        .bind(DAY_MS)
        .bind(now)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| parse_uuid(&r.try_get::<String, _>("id")?))
            .collect()
    }

    /// Recordings that were running when the process stopped (not ended, not deleted).
    pub async fn unfinished_recordings(&self) -> Result<Vec<Recording>> {
        let rows = sqlx::query(&format!(
            "select {RECORDING_COLUMNS} from recordings \
             where state not in ('finished', 'failed') and deleted_at is null \
             order by created_at, id"
        ))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(recording_from_row).collect()
    }

    /// Lift a meeting's legal hold, with its ledger entry. `false` (and nothing
    /// written) when there was no hold; `NotFound` for an unknown meeting.
    pub async fn lift_legal_hold(&self, meeting_id: Uuid, ledger: &LedgerRecord) -> Result<bool> {
        let mut tx = self.pool().begin().await?;
        let done =
            sqlx::query("update meetings set legal_hold = 0 where id = $1 and legal_hold <> 0")
                .bind(meeting_id.to_string())
                .execute(&mut *tx)
                .await?;
        if done.rows_affected() == 0 {
            drop(tx);
            return self.require_meeting(meeting_id).await.map(|()| false);
        }
        append_in(&mut tx, ledger).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Set a meeting's retention and legal hold, with its ledger entry. Lifting a
    /// hold is its own step ([`Db::lift_legal_hold`]): here a hold is only ever set or
    /// kept.
    pub async fn set_meeting_retention(
        &self,
        meeting_id: Uuid,
        retention_days: i64,
        legal_hold: bool,
        ledger: &LedgerRecord,
    ) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        let done = sqlx::query(
            "update meetings set retention_days = $1, \
                 legal_hold = case when legal_hold <> 0 then legal_hold else $2 end where id = $3",
        )
        .bind(retention_days)
        .bind(flag(legal_hold))
        .bind(meeting_id.to_string())
        .execute(&mut *tx)
        .await?;
        one_row(&done)?;
        append_in(&mut tx, ledger).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The archive: recordings with their meetings, newest first, filtered and paged.
    /// Deleted recordings are not listed.
    pub async fn list_archive(&self, q: &ArchiveQuery) -> Result<Vec<ArchiveItem>> {
        let mut sql = format!(
            "select {}, m.title as meeting_title, m.is_public as meeting_public \
             from recordings r join meetings m on m.id = r.meeting_id \
             where r.deleted_at is null",
            prefixed_columns("r")
        );
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("${n}")
        };
        if q.from.is_some() {
            sql += &format!(" and r.created_at >= {}", next());
        }
        if q.to.is_some() {
            sql += &format!(" and r.created_at < {}", next());
        }
        if q.text.is_some() {
            sql += &format!(" and lower(m.title) like {}", next());
        }
        if q.public.is_some() {
            sql += &format!(" and m.is_public = {}", next());
        }
        if q.without_non_public_parts {
            sql += " and r.non_public_parts = 0";
        }
        sql += &format!(
            " order by r.created_at desc, r.id limit {} offset {}",
            next(),
            next()
        );
        let mut query = sqlx::query(&sql);
        if let Some(from) = q.from {
            query = query.bind(from);
        }
        if let Some(to) = q.to {
            query = query.bind(to);
        }
        if let Some(text) = &q.text {
            let escaped = text.to_lowercase().replace(['%', '_'], "");
            query = query.bind(format!("%{escaped}%"));
        }
        if let Some(public) = q.public {
            query = query.bind(flag(public));
        }
        let rows = query
            .bind(q.limit)
            .bind(q.offset)
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|row| {
                Ok(ArchiveItem {
                    recording: recording_from_row(row)?,
                    meeting_title: row.try_get("meeting_title")?,
                    meeting_public: row.try_get::<i64, _>("meeting_public")? != 0,
                })
            })
            .collect()
    }
}
