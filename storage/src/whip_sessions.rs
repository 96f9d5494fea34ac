//! WHIP publishing sessions (cluster mode needs them shared; issue 20).
//!
//! Owns the `whip_sessions` table: session → meeting, participant and the number of
//! ICE restarts (which makes its ETag). Any control replica reads it, so a trickle
//! PATCH or a DELETE may reach another replica than the POST did. An ICE restart is
//! counted by a compare-and-swap on the count, so of two restarts racing with one
//! ETag only one is counted.
//!
//! Must not talk to the media plane (the session's media lives there).

use sqlx::Row;
use uuid::Uuid;

use crate::meetings::parse_uuid;
use crate::{Db, Result, StorageError};

/// A WHIP session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhipSession {
    /// The session (the last segment of its `Location`).
    pub session_id: Uuid,
    /// Its meeting.
    pub meeting_id: Uuid,
    /// The publishing participant.
    pub participant_id: Uuid,
    /// ICE restarts so far (0 for a new session).
    pub ice_restarts: u32,
}

fn from_row(row: &sqlx::any::AnyRow) -> Result<WhipSession> {
    let restarts: i64 = row.try_get("ice_restarts")?;
    Ok(WhipSession {
        session_id: parse_uuid(&row.try_get::<String, _>("session_id")?)?,
        meeting_id: parse_uuid(&row.try_get::<String, _>("meeting_id")?)?,
        participant_id: parse_uuid(&row.try_get::<String, _>("participant_id")?)?,
        ice_restarts: u32::try_from(restarts)
            .map_err(|_| StorageError::Corrupt(format!("whip session ice_restarts {restarts}")))?,
    })
}

const COLUMNS: &str = "session_id, meeting_id, participant_id, ice_restarts";

impl Db {
    /// Register a new session (0 ICE restarts).
    pub async fn insert_whip_session(
        &self,
        session: Uuid,
        meeting: Uuid,
        participant: Uuid,
        now_ms: i64,
    ) -> Result<()> {
        sqlx::query(
            "insert into whip_sessions \
             (session_id, meeting_id, participant_id, ice_restarts, created_at) \
             values ($1, $2, $3, 0, $4)",
        )
        .bind(session.to_string())
        .bind(meeting.to_string())
        .bind(participant.to_string())
        .bind(now_ms)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// A session, if registered.
    pub async fn whip_session(&self, session: Uuid) -> Result<Option<WhipSession>> {
        let row = sqlx::query(&format!(
            "select {COLUMNS} from whip_sessions where session_id = $1"
        ))
        .bind(session.to_string())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Count an ICE restart, only if the session still has `expected` restarts: the
    /// new count, or `None` when the session is gone or another restart was counted
    /// first.
    pub async fn count_whip_ice_restart(
        &self,
        session: Uuid,
        expected: u32,
    ) -> Result<Option<u32>> {
        let row = sqlx::query(
            "update whip_sessions set ice_restarts = ice_restarts + 1 \
             where session_id = $1 and ice_restarts = $2 returning ice_restarts",
        )
        .bind(session.to_string())
        .bind(i64::from(expected))
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            let n: i64 = r.try_get("ice_restarts")?;
            u32::try_from(n).map_err(|_| StorageError::Corrupt(format!("ice_restarts {n}")))
        })
        .transpose()
    }

    /// Forget a session; `true` when it was registered.
    pub async fn remove_whip_session(&self, session: Uuid) -> Result<bool> {
        let done = sqlx::query("delete from whip_sessions where session_id = $1")
            .bind(session.to_string())
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Forget a participant's sessions; the ones that were registered.
    pub async fn take_whip_sessions_of(
        &self,
        meeting: Uuid,
        participant: Uuid,
    ) -> Result<Vec<Uuid>> {
        let rows = sqlx::query(
            "delete from whip_sessions where meeting_id = $1 and participant_id = $2 \
             returning session_id",
        )
        .bind(meeting.to_string())
        .bind(participant.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| parse_uuid(&r.try_get::<String, _>("session_id")?))
            .collect()
    }

    /// Forget every session of a meeting (it ended); how many there were.
    pub async fn remove_meeting_whip_sessions(&self, meeting: Uuid) -> Result<u64> {
        let done = sqlx::query("delete from whip_sessions where meeting_id = $1")
            .bind(meeting.to_string())
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected())
    }
}
