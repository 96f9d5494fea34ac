//! Agenda chapters of a meeting: a title and the wall-clock moment it was marked.
//! Each mark is stored together with its ledger entry in one transaction.

use sqlx::Row;
use uuid::Uuid;

use crate::ledger::{append_in, LedgerRecord};
use crate::meetings::parse_uuid;
use crate::{Db, Result, StorageError};

/// One agenda chapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chapter {
    /// Chapter id.
    pub id: Uuid,
    /// Meeting it belongs to.
    pub meeting_id: Uuid,
    /// Agenda item title.
    pub title: String,
    /// Unix milliseconds at which it was marked.
    pub at: i64,
    /// Who marked it.
    pub created_by: String,
}

fn from_row(row: &sqlx::any::AnyRow) -> Result<Chapter> {
    Ok(Chapter {
        id: parse_uuid(&row.try_get::<String, _>("id")?)?,
        meeting_id: parse_uuid(&row.try_get::<String, _>("meeting_id")?)?,
        title: row.try_get("title")?,
        at: row.try_get("at")?,
        created_by: row.try_get("created_by")?,
    })
}

impl Db {
    /// Store a chapter of an open meeting with its ledger entry: `false` (nothing
    /// stored) when the meeting has ended, `NotFound` when it is unknown.
    pub async fn add_chapter(&self, chapter: &Chapter, ledger: &LedgerRecord) -> Result<bool> {
        let mut tx = self.pool().begin().await?;
        let state: Option<String> = sqlx::query_scalar("select state from meetings where id = $1")
            .bind(chapter.meeting_id.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        match state.as_deref() {
            None => return Err(StorageError::NotFound),
            Some("open") => {}
            Some(_) => return Ok(false),
        }
        sqlx::query(
            "insert into chapters (id, meeting_id, title, at, created_by, seq) \
             values ($1, $2, $3, $4, $5, \
             (select coalesce(max(seq), 0) + 1 from chapters where meeting_id = $2))",
        )
        .bind(chapter.id.to_string())
        .bind(chapter.meeting_id.to_string())
        .bind(&chapter.title)
        .bind(chapter.at)
        .bind(&chapter.created_by)
        .execute(&mut *tx)
        .await?;
        append_in(&mut tx, ledger).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// A meeting's chapters in the order of their time; marks within the same
    /// millisecond in the order they were stored (two racing on PostgreSQL may share
    /// a `seq`, and then fall back to their id).
    pub async fn list_chapters(&self, meeting_id: Uuid) -> Result<Vec<Chapter>> {
        let rows = sqlx::query(
            "select id, meeting_id, title, at, created_by from chapters \
             where meeting_id = $1 order by at, seq, id",
        )
        .bind(meeting_id.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(from_row).collect()
    }
}
