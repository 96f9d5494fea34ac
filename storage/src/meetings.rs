//! Meetings repository.

use sqlx::Row;
use uuid::Uuid;

use crate::ledger::{append_in, entry_from_row, LedgerEntry, LedgerRecord, ENTRY_COLUMNS};
use crate::{flag, Db, Result, StorageError};

/// Whether a meeting still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeetingState {
    /// Participants may join; outputs may run.
    Open,
    /// Ended: no new participants or outputs.
    Ended,
}

impl MeetingState {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            MeetingState::Open => "open",
            MeetingState::Ended => "ended",
        }
    }
}

/// A stored meeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meeting {
    /// Meeting id.
    pub id: Uuid,
    /// Human title (e.g. "Stadtrat, 12. Sitzung").
    pub title: String,
    /// Whether the livestream currently shows the program (true) or the slate.
    pub is_public: bool,
    /// Open or ended.
    pub state: MeetingState,
    /// Days recordings are kept after the meeting.
    pub retention_days: i64,
    /// Legal hold: retention deletion is suspended.
    pub legal_hold: bool,
    /// Subject of the token that created it.
    pub created_by: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds, once ended.
    pub ended_at: Option<i64>,
    /// The moderator's layout choice as JSON (the control plane gives it meaning).
    pub layout: String,
}

/// Fields of a meeting to create.
#[derive(Debug, Clone)]
pub struct NewMeeting {
    /// Meeting id (chosen by the caller).
    pub id: Uuid,
    /// Title.
    pub title: String,
    /// Initial public flag.
    pub is_public: bool,
    /// Retention in days.
    pub retention_days: i64,
    /// Creator's subject.
    pub created_by: String,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// The column default of `meetings.layout` (see migration 0002).
const DEFAULT_LAYOUT: &str = r#"{"kind":"grid"}"#;

const COLUMNS: &str =
    "id, title, is_public, state, retention_days, legal_hold, created_by, created_at, ended_at, \
     layout";

pub(crate) fn parse_uuid(s: &str) -> Result<Uuid> {
    Uuid::parse_str(s).map_err(|_| StorageError::Corrupt(format!("bad uuid {s:?}")))
}

/// Marks every recording of a meeting that has not ended as having non-public
/// parts; used by the switch itself and ahead of it (see
/// [`Db::mark_running_recordings_non_public`]).
const MARK_RUNNING_RECORDINGS_NON_PUBLIC: &str =
    "update recordings set non_public_parts = 1 where meeting_id = $1 \
     and state not in ('finished', 'failed') and non_public_parts = 0";

/// Ends a meeting change: appends its ledger entry in the same transaction, reads
/// the meeting back and commits.
async fn commit_with_ledger(
    mut tx: sqlx::Transaction<'_, sqlx::Any>,
    id: Uuid,
    ledger: &LedgerRecord,
) -> Result<Meeting> {
    append_in(&mut tx, ledger).await?;
    let row = sqlx::query(&format!("select {COLUMNS} from meetings where id = $1"))
        .bind(id.to_string())
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    from_row(&row)
}

fn from_row(row: &sqlx::any::AnyRow) -> Result<Meeting> {
    let state: String = row.try_get("state")?;
    Ok(Meeting {
        id: parse_uuid(&row.try_get::<String, _>("id")?)?,
        title: row.try_get("title")?,
        is_public: row.try_get::<i64, _>("is_public")? != 0,
        state: match state.as_str() {
            "open" => MeetingState::Open,
            "ended" => MeetingState::Ended,
            other => return Err(StorageError::Corrupt(format!("meeting state {other:?}"))),
        },
        retention_days: row.try_get("retention_days")?,
        legal_hold: row.try_get::<i64, _>("legal_hold")? != 0,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        ended_at: row.try_get("ended_at")?,
        layout: row.try_get("layout")?,
    })
}

impl Db {
    /// Create a meeting and open its ledger chain with `ledger`.
    pub async fn insert_meeting(&self, m: &NewMeeting, ledger: &LedgerRecord) -> Result<Meeting> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "insert into meetings (id, title, is_public, state, retention_days, legal_hold, created_by, created_at) \
             values ($1, $2, $3, 'open', $4, 0, $5, $6)",
        )
        .bind(m.id.to_string())
        .bind(&m.title)
        .bind(flag(m.is_public))
        .bind(m.retention_days)
        .bind(&m.created_by)
        .bind(m.created_at)
        .execute(&mut *tx)
        .await?;
        append_in(&mut tx, ledger).await?;
        tx.commit().await?;
        Ok(Meeting {
            id: m.id,
            title: m.title.clone(),
            is_public: m.is_public,
            state: MeetingState::Open,
            retention_days: m.retention_days,
            legal_hold: false,
            created_by: m.created_by.clone(),
            created_at: m.created_at,
            ended_at: None,
            layout: DEFAULT_LAYOUT.into(),
        })
    }

    /// One meeting, if it exists.
    pub async fn get_meeting(&self, id: Uuid) -> Result<Option<Meeting>> {
        let row = sqlx::query(&format!("select {COLUMNS} from meetings where id = $1"))
            .bind(id.to_string())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Newest first; `before` is the (created_at, id) keyset cursor of the last item seen.
    pub async fn list_meetings(
        &self,
        before: Option<(i64, Uuid)>,
        limit: i64,
    ) -> Result<Vec<Meeting>> {
        let rows = match before {
            None => {
                sqlx::query(&format!(
                    "select {COLUMNS} from meetings order by created_at desc, id desc limit $1"
                ))
                .bind(limit)
                .fetch_all(self.pool())
                .await?
            }
            Some((at, id)) => {
                sqlx::query(&format!(
                    "select {COLUMNS} from meetings \
                     where created_at < $1 or (created_at = $1 and id < $2) \
                     order by created_at desc, id desc limit $3"
                ))
                .bind(at)
                .bind(id.to_string())
                .bind(limit)
                .fetch_all(self.pool())
                .await?
            }
        };
        rows.iter().map(from_row).collect()
    }

    /// End an open meeting (with its ledger entry). Returns `None` if it was already
    /// ended, `NotFound` if it does not exist.
    pub async fn end_meeting(
        &self,
        id: Uuid,
        now: i64,
        ledger: &LedgerRecord,
    ) -> Result<Option<Meeting>> {
        let mut tx = self.pool().begin().await?;
        let done = sqlx::query(
            "update meetings set state = 'ended', ended_at = $1 where id = $2 and state = 'open'",
        )
        .bind(now)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            drop(tx);
            return self.require_meeting(id).await.map(|()| None);
        }
        commit_with_ledger(tx, id, ledger).await.map(Some)
    }

    /// Switch public/non-public. Returns `None` (and writes nothing) if unchanged.
    ///
    /// In the same transaction, every recording of the meeting that has not ended is
    /// marked as having non-public parts: switching to non-public, it records one from
    /// now; switching back, it recorded one until now. (A recording that starts while
    /// the meeting is non-public is marked by its insert, see migration 0007.)
    pub async fn set_meeting_public(
        &self,
        id: Uuid,
        public: bool,
        ledger: &LedgerRecord,
    ) -> Result<Option<Meeting>> {
        let mut tx = self.pool().begin().await?;
        let done =
            sqlx::query("update meetings set is_public = $1 where id = $2 and is_public <> $1")
                .bind(flag(public))
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
        if done.rows_affected() == 0 {
            drop(tx);
            return self.require_meeting(id).await.map(|()| None);
        }
        sqlx::query(MARK_RUNNING_RECORDINGS_NON_PUBLIC)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        commit_with_ledger(tx, id, ledger).await.map(Some)
    }

    /// `Ok` if the meeting exists, else `NotFound`: tells why a guarded update
    /// changed no row (already in the asked state, or no such meeting).
    pub(crate) async fn require_meeting(&self, id: Uuid) -> Result<()> {
        match self.get_meeting(id).await? {
            Some(_) => Ok(()),
            None => Err(StorageError::NotFound),
        }
    }

    /// Mark every recording of the meeting that has not ended as having non-public
    /// parts, ahead of a switch to non-public: the media plane switches first (the
    /// cut must have taken effect before the API answers), so marking only in the
    /// switch's own transaction would leave a window — and, should that transaction
    /// fail, a recording holding non-public material that viewers could read. Marking
    /// early errs on the safe side: a switch that then fails leaves the flag set.
    pub async fn mark_running_recordings_non_public(&self, meeting_id: Uuid) -> Result<u64> {
        let done = sqlx::query(MARK_RUNNING_RECORDINGS_NON_PUBLIC)
            .bind(meeting_id.to_string())
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected())
    }

    /// The ledger entries of a meeting that say what was public when: its creation
    /// (`meeting_created`, with the initial `public` flag), its switches
    /// (`public_changed`) and its chapter marks (`chapter_marked`), in chain order.
    /// The chain orders a mark and a switch exactly, where their times may tie.
    pub async fn public_history(&self, id: Uuid) -> Result<Vec<LedgerEntry>> {
        let rows = sqlx::query(&format!(
            "select {ENTRY_COLUMNS} from ledger_entries where chain_id = $1 \
             and kind in ('meeting_created', 'public_changed', 'chapter_marked') \
             order by seq"
        ))
        .bind(id.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(entry_from_row).collect()
    }

    /// Store the layout choice (JSON) of an open meeting. `None` when the meeting is
    /// unknown or ended.
    pub async fn set_meeting_layout(&self, id: Uuid, layout: &str) -> Result<Option<Meeting>> {
        let done = sqlx::query("update meetings set layout = $1 where id = $2 and state = 'open'")
            .bind(layout)
            .bind(id.to_string())
            .execute(self.pool())
            .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        self.get_meeting(id).await
    }
}
