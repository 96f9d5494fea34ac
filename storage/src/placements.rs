//! Placements of meetings on media nodes (cluster mode, issue 20).
//!
//! Owns the `meeting_placements` table: one row per meeting naming the media node
//! that runs its media, the placement's epoch (1 when placed, one more per move) and
//! the cost units it reserved there. Every change is a compare-and-swap on the epoch
//! done by one conditional statement, so two control replicas that place or move the
//! same meeting at once cannot both win: the loser gets the winner's row back.
//!
//! Must not decide where a meeting goes (that is `gremium-cluster`'s pure placement)
//! nor talk to nodes.

use sqlx::Row;
use uuid::Uuid;

use crate::meetings::parse_uuid;
use crate::{Db, Result, StorageError};

/// Where a meeting's media runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The meeting.
    pub meeting_id: Uuid,
    /// The media node that runs it.
    pub node_id: String,
    /// 1 when first placed, one more per move; commands and events carry it (a node
    /// refuses a command with an older epoch than it has seen).
    pub epoch: i64,
    /// Cost units reserved on the node for this meeting.
    pub cost_units: i32,
    /// Unix milliseconds of the placement or of the last move.
    pub placed_at_ms: i64,
}

/// What a [`Db::place_meeting`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlaceOutcome {
    /// The row was written; this is it now.
    Placed(Placement),
    /// Another writer got there first (or the expected epoch is stale): nothing was
    /// written; this is the row as it stands.
    Conflict(Placement),
}

const COLUMNS: &str = "meeting_id, node_id, epoch, cost_units, placed_at";

/// How often a compare-and-swap is retried when the row it lost to vanished (or came
/// back) before it could be read; each retry needs another writer to interfere.
const ATTEMPTS: usize = 8;

fn from_row(row: &sqlx::any::AnyRow) -> Result<Placement> {
    let cost: i64 = row.try_get("cost_units")?;
    Ok(Placement {
        meeting_id: parse_uuid(&row.try_get::<String, _>("meeting_id")?)?,
        node_id: row.try_get("node_id")?,
        epoch: row.try_get("epoch")?,
        cost_units: i32::try_from(cost)
            .map_err(|_| StorageError::Corrupt(format!("placement cost_units {cost}")))?,
        placed_at_ms: row.try_get("placed_at")?,
    })
}

/// A missing meeting surfaces as a foreign-key violation of the insert.
fn not_found_if_no_meeting(e: sqlx::Error) -> StorageError {
    match e {
        sqlx::Error::Database(d) if d.is_foreign_key_violation() => StorageError::NotFound,
        e => StorageError::Database(e),
    }
}

impl Db {
    /// The placement of a meeting, if it has one.
    pub async fn placement(&self, meeting: Uuid) -> Result<Option<Placement>> {
        let row = sqlx::query(&format!(
            "select {COLUMNS} from meeting_placements where meeting_id = $1"
        ))
        .bind(meeting.to_string())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Place a meeting on `node_id`, reserving `cost_units` there.
    ///
    /// `expected_epoch` `None`: a first placement, with epoch 1 — `Conflict` with the
    /// existing row if the meeting is placed already (`NotFound` if there is no such
    /// meeting). `Some(e)`: a move, to epoch `e + 1`, only if the row still has epoch
    /// `e` — `Conflict` with the current row otherwise, `NotFound` if the meeting is
    /// not placed.
    pub async fn place_meeting(
        &self,
        meeting: Uuid,
        node_id: &str,
        cost_units: i32,
        expected_epoch: Option<i64>,
        now_ms: i64,
    ) -> Result<PlaceOutcome> {
        for _ in 0..ATTEMPTS {
            let written = match expected_epoch {
                None => sqlx::query(&format!(
                    "insert into meeting_placements ({COLUMNS}) values ($1, $2, 1, $3, $4) \
                     on conflict (meeting_id) do nothing returning {COLUMNS}"
                ))
                .bind(meeting.to_string())
                .bind(node_id)
                .bind(i64::from(cost_units))
                .bind(now_ms)
                .fetch_optional(self.pool())
                .await
                .map_err(not_found_if_no_meeting)?,
                Some(epoch) => {
                    sqlx::query(&format!(
                        "update meeting_placements \
                         set node_id = $1, epoch = epoch + 1, cost_units = $2, placed_at = $3 \
                         where meeting_id = $4 and epoch = $5 returning {COLUMNS}"
                    ))
                    .bind(node_id)
                    .bind(i64::from(cost_units))
                    .bind(now_ms)
                    .bind(meeting.to_string())
                    .bind(epoch)
                    .fetch_optional(self.pool())
                    .await?
                }
            };
            if let Some(row) = written {
                return from_row(&row).map(PlaceOutcome::Placed);
            }
            // Lost: read what won. Between the two statements the row may have been
            // removed (and, for a move expecting epoch 1, placed anew): then the
            // compare-and-swap is tried again against what is there now.
            match (self.placement(meeting).await?, expected_epoch) {
                (Some(current), Some(e)) if current.epoch == e => continue,
                (Some(current), _) => return Ok(PlaceOutcome::Conflict(current)),
                (None, Some(_)) => return Err(StorageError::NotFound),
                (None, None) => continue,
            }
        }
        Err(StorageError::Contended("meeting_placements"))
    }

    /// Every placement, oldest first.
    pub async fn placements(&self) -> Result<Vec<Placement>> {
        let rows = sqlx::query(&format!(
            "select {COLUMNS} from meeting_placements order by placed_at, meeting_id"
        ))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// The placements on one node, oldest first.
    pub async fn placements_on(&self, node_id: &str) -> Result<Vec<Placement>> {
        let rows = sqlx::query(&format!(
            "select {COLUMNS} from meeting_placements where node_id = $1 \
             order by placed_at, meeting_id"
        ))
        .bind(node_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Remove a meeting's placement, only if it still has `epoch` (a stale remover
    /// must not drop a newer placement). `true` when a row was removed.
    pub async fn remove_placement(&self, meeting: Uuid, epoch: i64) -> Result<bool> {
        let done =
            sqlx::query("delete from meeting_placements where meeting_id = $1 and epoch = $2")
                .bind(meeting.to_string())
                .bind(epoch)
                .execute(self.pool())
                .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Per node with placements: `(node_id, meetings, cost_units)`, by node id.
    pub async fn placement_totals(&self) -> Result<Vec<(String, i64, i64)>> {
        // PostgreSQL sums bigints as numeric, which the `Any` driver cannot read.
        let rows = sqlx::query(
            "select node_id, count(*) as meetings, \
             cast(coalesce(sum(cost_units), 0) as bigint) as cost_units \
             from meeting_placements group by node_id order by node_id",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get("node_id")?,
                    row.try_get("meetings")?,
                    row.try_get("cost_units")?,
                ))
            })
            .collect()
    }
}
