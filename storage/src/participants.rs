//! Participants and their consent.

use sqlx::Row;
use uuid::Uuid;

use crate::meetings::parse_uuid;
use crate::{Db, Result, StorageError};

/// A stored participant. The id is pseudonymous; the display name is what others see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participant {
    /// Participant id.
    pub id: Uuid,
    /// Meeting joined.
    pub meeting_id: Uuid,
    /// Name shown to others and in recordings' manifests.
    pub display_name: String,
    /// Consent to appear in recordings.
    pub consent_recording: bool,
    /// Consent to appear in the public livestream.
    pub consent_streaming: bool,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds, once left.
    pub left_at: Option<i64>,
}

/// Whether a participant's join token still stands, as the database says now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParticipantStanding {
    /// The participant has left or was removed: their token is revoked.
    pub left: bool,
    /// Their meeting has ended: the token only reaches their own data.
    pub meeting_ended: bool,
}

/// Fields of a participant to create. Consent always starts as "no".
#[derive(Debug, Clone)]
pub struct NewParticipant {
    /// Participant id.
    pub id: Uuid,
    /// Meeting.
    pub meeting_id: Uuid,
    /// Display name.
    pub display_name: String,
    /// Unix milliseconds.
    pub created_at: i64,
}

const COLUMNS: &str =
    "id, meeting_id, display_name, consent_recording, consent_streaming, created_at, left_at";

fn from_row(row: &sqlx::any::AnyRow) -> Result<Participant> {
    Ok(Participant {
        id: parse_uuid(&row.try_get::<String, _>("id")?)?,
        meeting_id: parse_uuid(&row.try_get::<String, _>("meeting_id")?)?,
        display_name: row.try_get("display_name")?,
        consent_recording: row.try_get::<i64, _>("consent_recording")? != 0,
        consent_streaming: row.try_get::<i64, _>("consent_streaming")? != 0,
        created_at: row.try_get("created_at")?,
        left_at: row.try_get("left_at")?,
    })
}

impl Db {
    /// Add a participant to an open meeting.
    pub async fn insert_participant(&self, p: &NewParticipant) -> Result<Participant> {
        sqlx::query(
            "insert into participants (id, meeting_id, display_name, consent_recording, consent_streaming, created_at) \
             values ($1, $2, $3, 0, 0, $4)",
        )
        .bind(p.id.to_string())
        .bind(p.meeting_id.to_string())
        .bind(&p.display_name)
        .bind(p.created_at)
        .execute(self.pool())
        .await?;
        Ok(Participant {
            id: p.id,
            meeting_id: p.meeting_id,
            display_name: p.display_name.clone(),
            consent_recording: false,
            consent_streaming: false,
            created_at: p.created_at,
            left_at: None,
        })
    }

    /// One participant of a meeting.
    pub async fn get_participant(&self, meeting_id: Uuid, id: Uuid) -> Result<Option<Participant>> {
        let row = sqlx::query(&format!(
            "select {COLUMNS} from participants where id = $1 and meeting_id = $2"
        ))
        .bind(id.to_string())
        .bind(meeting_id.to_string())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Whether the participant's join token still stands (one indexed read; checked on
    /// every request a join token makes). `None`: no such participant in that meeting.
    pub async fn participant_standing(
        &self,
        meeting_id: Uuid,
        id: Uuid,
    ) -> Result<Option<ParticipantStanding>> {
        let row = sqlx::query(
            "select p.left_at, m.state from participants p join meetings m on m.id = p.meeting_id \
             where p.id = $1 and p.meeting_id = $2",
        )
        .bind(id.to_string())
        .bind(meeting_id.to_string())
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            Ok(ParticipantStanding {
                left: r.try_get::<Option<i64>, _>("left_at")?.is_some(),
                meeting_ended: r.try_get::<String, _>("state")? != "open",
            })
        })
        .transpose()
    }

    /// All participants of a meeting, in joining order.
    pub async fn list_participants(&self, meeting_id: Uuid) -> Result<Vec<Participant>> {
        let rows = sqlx::query(&format!(
            "select {COLUMNS} from participants where meeting_id = $1 order by created_at, id"
        ))
        .bind(meeting_id.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Mark a participant as having left. Returns `None` if they had left already.
    pub async fn mark_participant_left(
        &self,
        meeting_id: Uuid,
        id: Uuid,
        now: i64,
    ) -> Result<Option<Participant>> {
        let row = sqlx::query(&format!(
            "update participants set left_at = $1 where id = $2 and meeting_id = $3 and left_at is null \
             returning {COLUMNS}"
        ))
        .bind(now)
        .bind(id.to_string())
        .bind(meeting_id.to_string())
        .fetch_optional(self.pool())
        .await?;
        match row {
            Some(r) => Ok(Some(from_row(&r)?)),
            None => match self.get_participant(meeting_id, id).await? {
                Some(_) => Ok(None),
                None => Err(StorageError::NotFound),
            },
        }
    }
}
