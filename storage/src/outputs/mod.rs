//! Recordings and streams: the two kinds of program output, with a shared lifecycle
//! (their rows, inserts guarded to one running output per meeting, and the
//! compare-and-set transitions). How a stream's destinations are sealed lives in
//! `destinations`; the archive's columns of a recording are written by `archive`.

use gremium_protocol::{OutputState, OutputTrigger};
use sqlx::Row;
use uuid::Uuid;

use crate::ledger::{append_in, LedgerRecord};
use crate::meetings::parse_uuid;
use crate::{flag, Db, Result, StorageError};

mod destinations;

pub use destinations::{open_destinations, seal_destinations, SealedDestinations};

/// Which table an output lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    /// A recording of the recording-audience program.
    Recording,
    /// A livestream (HLS and/or RTMP) of the livestream-audience program.
    Stream,
}

impl OutputKind {
    fn table(self) -> &'static str {
        match self {
            OutputKind::Recording => "recordings",
            OutputKind::Stream => "streams",
        }
    }

    /// Lowercase name, used as a ledger-kind prefix.
    pub fn as_str(self) -> &'static str {
        match self {
            OutputKind::Recording => "recording",
            OutputKind::Stream => "stream",
        }
    }
}

/// A stored recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recording {
    /// Recording id.
    pub id: Uuid,
    /// Meeting recorded.
    pub meeting_id: Uuid,
    /// Lifecycle state.
    pub state: OutputState,
    /// Why it failed, when it did.
    pub failure: Option<String>,
    /// Why it ended before anyone stopped it (e.g. its spool disk filled up); what
    /// was written before is kept.
    pub interruption: Option<String>,
    /// Who asked for it.
    pub requested_by: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds of the last state change.
    pub updated_at: i64,
    /// What was stored once the recording was finalized.
    pub stored: Option<StoredMedia>,
    /// The stored manifest, once written.
    pub manifest: Option<StoredManifest>,
    /// Unix milliseconds of the deletion (retention or request), when deleted.
    pub deleted_at: Option<i64>,
    /// Why it was deleted.
    pub deletion_reason: Option<String>,
    /// Some part of it was made while the meeting was non-public, so it is for
    /// archivists and admins only (set by the database, see migration 0007).
    pub non_public_parts: bool,
}

/// A finalized recording's stored objects and what post-processing found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMedia {
    /// Object key of the sealed (encrypted) media.
    pub media_key: String,
    /// SHA-256 of the stored media object (hex).
    pub media_sha256: String,
    /// Stored (encrypted) size.
    pub stored_bytes: i64,
    /// Plaintext size.
    pub plaintext_bytes: i64,
    /// Object key of the sealed poster image, when one was made.
    pub poster_key: Option<String>,
    /// SHA-256 of the stored poster object.
    pub poster_sha256: Option<String>,
    /// Media duration from the probe, milliseconds.
    pub duration_ms: Option<i64>,
    /// Probe result (JSON: streams, duration, container).
    pub probe: Option<String>,
}

/// Where a recording's manifest is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredManifest {
    /// Object key of the sealed manifest.
    pub key: String,
    /// SHA-256 of the stored object.
    pub sha256: String,
}

/// A stored stream. `destinations` holds only what may be shown of each RTMP
/// destination (JSON `[{"url": "rtmp://host/app/…"}]`); the URLs and keys themselves
/// are sealed apart ([`SealedDestinations`]) and never leave the storage layer in clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    /// Stream id.
    pub id: Uuid,
    /// Meeting streamed.
    pub meeting_id: Uuid,
    /// Lifecycle state.
    pub state: OutputState,
    /// HLS for citizens enabled.
    pub hls: bool,
    /// JSON array of RTMP destinations.
    pub destinations: String,
    /// Why it failed, when it did.
    pub failure: Option<String>,
    /// Who asked for it.
    pub requested_by: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds of the last state change.
    pub updated_at: i64,
}

/// A recording to create.
#[derive(Debug, Clone)]
pub struct NewRecording {
    /// Recording id.
    pub id: Uuid,
    /// Meeting.
    pub meeting_id: Uuid,
    /// Requester's subject.
    pub requested_by: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// The recording's data key wrapped by the master key (hex), stored with it.
    pub wrapped_key: String,
}

/// A stream to create.
#[derive(Debug, Clone)]
pub struct NewStream {
    /// Stream id.
    pub id: Uuid,
    /// Meeting.
    pub meeting_id: Uuid,
    /// HLS enabled.
    pub hls: bool,
    /// JSON array of what may be shown of the RTMP destinations (redacted URLs).
    pub destinations: String,
    /// Requester's subject.
    pub requested_by: String,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// What starting an output did. At most one recording and one stream of a meeting
/// run at a time (a partial unique index over the non-terminal states, migration
/// 0008): a start that loses the race gets the id of the one that runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started<T> {
    /// The output was created (state `requested`) with its ledger entry.
    Created(T),
    /// Another output of the meeting runs (this id); nothing was written.
    AlreadyRunning(Uuid),
}

/// Outcome of applying a trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// Meeting the output belongs to.
    pub meeting_id: Uuid,
    /// State before.
    pub from: OutputState,
    /// State after (equal to `from` for a harmless repeat).
    pub to: OutputState,
    /// The state did not change, but the trigger's reason was kept as the output's
    /// interruption: the media plane stopped it itself while it was already
    /// stopping (a write failed during the stop's final flush).
    pub interrupted: bool,
}

impl Transition {
    /// True when the state changed.
    pub fn changed(&self) -> bool {
        self.from != self.to
    }

    /// True when the state changed or an interruption was noted.
    pub fn recorded(&self) -> bool {
        self.changed() || self.interrupted
    }
}

fn parse_state(s: &str) -> Result<OutputState> {
    OutputState::parse(s).ok_or_else(|| StorageError::Corrupt(format!("output state {s:?}")))
}

pub(crate) const RECORDING_COLUMNS: &str =
    "id, meeting_id, state, failure, interruption, requested_by, created_at, updated_at, media_key, \
     media_sha256, stored_bytes, plaintext_bytes, poster_key, poster_sha256, duration_ms, probe, \
     deleted_at, deletion_reason, manifest_key, manifest_sha256, non_public_parts";
const STREAM_COLUMNS: &str =
    "id, meeting_id, state, hls, destinations, failure, requested_by, created_at, updated_at";

pub(crate) fn recording_from_row(row: &sqlx::any::AnyRow) -> Result<Recording> {
    let stored = match row.try_get::<Option<String>, _>("media_key")? {
        Some(media_key) => Some(StoredMedia {
            media_key,
            media_sha256: row
                .try_get::<Option<String>, _>("media_sha256")?
                .unwrap_or_default(),
            stored_bytes: row.try_get::<Option<i64>, _>("stored_bytes")?.unwrap_or(0),
            plaintext_bytes: row
                .try_get::<Option<i64>, _>("plaintext_bytes")?
                .unwrap_or(0),
            poster_key: row.try_get("poster_key")?,
            poster_sha256: row.try_get("poster_sha256")?,
            duration_ms: row.try_get("duration_ms")?,
            probe: row.try_get("probe")?,
        }),
        None => None,
    };
    let manifest = match row.try_get::<Option<String>, _>("manifest_key")? {
        Some(key) => Some(StoredManifest {
            key,
            sha256: row
                .try_get::<Option<String>, _>("manifest_sha256")?
                .unwrap_or_default(),
        }),
        None => None,
    };
    Ok(Recording {
        stored,
        manifest,
        deleted_at: row.try_get("deleted_at")?,
        deletion_reason: row.try_get("deletion_reason")?,
        non_public_parts: row.try_get::<i64, _>("non_public_parts")? != 0,
        id: parse_uuid(&row.try_get::<String, _>("id")?)?,
        meeting_id: parse_uuid(&row.try_get::<String, _>("meeting_id")?)?,
        state: parse_state(&row.try_get::<String, _>("state")?)?,
        failure: row.try_get("failure")?,
        interruption: row.try_get("interruption")?,
        requested_by: row.try_get("requested_by")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn stream_from_row(row: &sqlx::any::AnyRow) -> Result<Stream> {
    Ok(Stream {
        id: parse_uuid(&row.try_get::<String, _>("id")?)?,
        meeting_id: parse_uuid(&row.try_get::<String, _>("meeting_id")?)?,
        state: parse_state(&row.try_get::<String, _>("state")?)?,
        hls: row.try_get::<i64, _>("hls")? != 0,
        destinations: row.try_get("destinations")?,
        failure: row.try_get("failure")?,
        requested_by: row.try_get("requested_by")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl Db {
    /// Create a recording in state `requested`, with its ledger entry.
    pub async fn insert_recording(
        &self,
        r: &NewRecording,
        ledger: &LedgerRecord,
    ) -> Result<Recording> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "insert into recordings (id, meeting_id, state, requested_by, created_at, updated_at) \
             values ($1, $2, 'requested', $3, $4, $4)",
        )
        .bind(r.id.to_string())
        .bind(r.meeting_id.to_string())
        .bind(&r.requested_by)
        .bind(r.created_at)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "insert into recording_keys (recording_id, wrapped, created_at) values ($1, $2, $3)",
        )
        .bind(r.id.to_string())
        .bind(&r.wrapped_key)
        .bind(r.created_at)
        .execute(&mut *tx)
        .await?;
        append_in(&mut tx, ledger).await?;
        tx.commit().await?;
        Ok(Recording {
            id: r.id,
            meeting_id: r.meeting_id,
            state: OutputState::Requested,
            failure: None,
            interruption: None,
            requested_by: r.requested_by.clone(),
            created_at: r.created_at,
            updated_at: r.created_at,
            stored: None,
            manifest: None,
            deleted_at: None,
            deletion_reason: None,
            // The insert's trigger (migration 0007) sets it when the meeting is
            // non-public; read the row back (`get_recording`) for what it holds.
            non_public_parts: false,
        })
    }

    /// Create a stream in state `requested`, with its ledger entry.
    pub async fn insert_stream(&self, s: &NewStream, ledger: &LedgerRecord) -> Result<Stream> {
        self.insert_stream_sealed(s, None, ledger).await
    }

    async fn insert_stream_sealed(
        &self,
        s: &NewStream,
        sealed: Option<&SealedDestinations>,
        ledger: &LedgerRecord,
    ) -> Result<Stream> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "insert into streams (id, meeting_id, state, hls, destinations, requested_by, created_at, updated_at, \
             destinations_key, destinations_sealed) \
             values ($1, $2, 'requested', $3, $4, $5, $6, $6, $7, $8)",
        )
        .bind(s.id.to_string())
        .bind(s.meeting_id.to_string())
        .bind(flag(s.hls))
        .bind(&s.destinations)
        .bind(&s.requested_by)
        .bind(s.created_at)
        .bind(sealed.map(|x| x.wrapped_key.clone()))
        .bind(sealed.map(|x| x.sealed.clone()))
        .execute(&mut *tx)
        .await?;
        append_in(&mut tx, ledger).await?;
        tx.commit().await?;
        Ok(Stream {
            id: s.id,
            meeting_id: s.meeting_id,
            state: OutputState::Requested,
            hls: s.hls,
            destinations: s.destinations.clone(),
            failure: None,
            requested_by: s.requested_by.clone(),
            created_at: s.created_at,
            updated_at: s.created_at,
        })
    }

    /// Create a recording unless one of the meeting runs: the database decides
    /// (unique index), so of concurrent starts exactly one is created; the others
    /// write nothing, ledger included, and learn the winner's id.
    pub async fn try_insert_recording(
        &self,
        r: &NewRecording,
        ledger: &LedgerRecord,
    ) -> Result<Started<Recording>> {
        if let Some(id) = self
            .running_output(OutputKind::Recording, r.meeting_id)
            .await?
        {
            return Ok(Started::AlreadyRunning(id));
        }
        match self.insert_recording(r, ledger).await {
            Ok(created) => Ok(Started::Created(created)),
            Err(e) => self.lost_race(OutputKind::Recording, r.meeting_id, e).await,
        }
    }

    /// Create a stream (with its destinations sealed) unless one of the meeting
    /// runs; see [`Db::try_insert_recording`].
    pub async fn try_insert_stream(
        &self,
        s: &NewStream,
        sealed: Option<&SealedDestinations>,
        ledger: &LedgerRecord,
    ) -> Result<Started<Stream>> {
        if let Some(id) = self
            .running_output(OutputKind::Stream, s.meeting_id)
            .await?
        {
            return Ok(Started::AlreadyRunning(id));
        }
        match self.insert_stream_sealed(s, sealed, ledger).await {
            Ok(created) => Ok(Started::Created(created)),
            Err(e) => self.lost_race(OutputKind::Stream, s.meeting_id, e).await,
        }
    }

    /// An insert failed: a unique violation with a running output of the meeting is
    /// a lost race; anything else stays an error.
    async fn lost_race<T>(
        &self,
        kind: OutputKind,
        meeting_id: Uuid,
        e: StorageError,
    ) -> Result<Started<T>> {
        if e.is_unique_violation() {
            if let Some(id) = self.running_output(kind, meeting_id).await? {
                return Ok(Started::AlreadyRunning(id));
            }
        }
        Err(e)
    }

    /// The meeting's running (non-terminal) output of this kind, if any.
    pub async fn running_output(&self, kind: OutputKind, meeting_id: Uuid) -> Result<Option<Uuid>> {
        let table = kind.table();
        let row = sqlx::query(&format!(
            "select id from {table} where meeting_id = $1 \
             and state in ('requested', 'starting', 'active', 'stopping') \
             order by created_at, id limit 1"
        ))
        .bind(meeting_id.to_string())
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| parse_uuid(&r.try_get::<String, _>("id")?))
            .transpose()
    }

    /// A stream's sealed destinations, while it runs (`None` once it ended, or for
    /// a stream without RTMP destinations).
    pub async fn stream_destinations(&self, id: Uuid) -> Result<Option<SealedDestinations>> {
        let row =
            sqlx::query("select destinations_key, destinations_sealed from streams where id = $1")
                .bind(id.to_string())
                .fetch_optional(self.pool())
                .await?
                .ok_or(StorageError::NotFound)?;
        let key: Option<String> = row.try_get("destinations_key")?;
        let sealed: Option<String> = row.try_get("destinations_sealed")?;
        Ok(key
            .zip(sealed)
            .map(|(wrapped_key, sealed)| SealedDestinations {
                wrapped_key,
                sealed,
            }))
    }

    /// One recording.
    pub async fn get_recording(&self, id: Uuid) -> Result<Option<Recording>> {
        let row = sqlx::query(&format!(
            "select {RECORDING_COLUMNS} from recordings where id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(recording_from_row).transpose()
    }

    /// One stream.
    pub async fn get_stream(&self, id: Uuid) -> Result<Option<Stream>> {
        let row = sqlx::query(&format!(
            "select {STREAM_COLUMNS} from streams where id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(stream_from_row).transpose()
    }

    /// Recordings of a meeting, oldest first.
    pub async fn list_recordings(&self, meeting_id: Uuid) -> Result<Vec<Recording>> {
        let rows = sqlx::query(&format!(
            "select {RECORDING_COLUMNS} from recordings where meeting_id = $1 order by created_at, id"
        ))
        .bind(meeting_id.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(recording_from_row).collect()
    }

    /// Streams of a meeting, oldest first.
    pub async fn list_streams(&self, meeting_id: Uuid) -> Result<Vec<Stream>> {
        let rows = sqlx::query(&format!(
            "select {STREAM_COLUMNS} from streams where meeting_id = $1 order by created_at, id"
        ))
        .bind(meeting_id.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(stream_from_row).collect()
    }

    /// Apply a lifecycle trigger with compare-and-set on the current state. When the
    /// state changes and `ledger` yields a record, it is appended in the same
    /// transaction. Refused transitions return `InvalidTransition`.
    pub async fn transition_output(
        &self,
        kind: OutputKind,
        id: Uuid,
        trigger: OutputTrigger,
        now: i64,
        reason: Option<&str>,
        ledger: impl Fn(&Transition) -> Option<LedgerRecord>,
    ) -> Result<Transition> {
        let table = kind.table();
        for _ in 0..5 {
            let mut tx = self.pool().begin().await?;
            let row = sqlx::query(&format!(
                "select meeting_id, state, interruption from {table} where id = $1"
            ))
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StorageError::NotFound)?;
            let meeting_id = parse_uuid(&row.try_get::<String, _>("meeting_id")?)?;
            let from = parse_state(&row.try_get::<String, _>("state")?)?;
            let to = from.apply(trigger)?;
            let mut transition = Transition {
                meeting_id,
                from,
                to,
                interrupted: false,
            };
            if !transition.changed() {
                // A stop with a reason is the media plane interrupting the output
                // itself; one already stopping keeps the first such reason (the
                // state machine has nothing to change, the record still has to say
                // that the end was lost).
                let noted = row.try_get::<Option<String>, _>("interruption")?.is_some();
                let stop_with_reason = trigger == OutputTrigger::StopRequested && reason.is_some();
                if noted || !stop_with_reason {
                    return Ok(transition);
                }
                transition.interrupted = true;
            }
            // The reason of a failure is its failure; any other trigger's reason (the
            // media plane stopping an output itself) is why it was interrupted. An
            // interruption without a state change only ever fills an empty one.
            let (column, only_once) = if trigger == OutputTrigger::MediaFailed {
                ("failure", "")
            } else if transition.interrupted {
                ("interruption", " and interruption is null")
            } else {
                ("interruption", "")
            };
            let done = sqlx::query(&format!(
                "update {table} set state = $1, updated_at = $2, \
                 {column} = coalesce($3, {column}) where id = $4 and state = $5{only_once}"
            ))
            .bind(to.as_str())
            .bind(now)
            .bind(reason.map(str::to_string))
            .bind(id.to_string())
            .bind(from.as_str())
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                continue; // someone else moved it (or noted it); re-read and re-apply
            }
            if kind == OutputKind::Stream && to.is_terminal() && transition.changed() {
                // A stream that ended never pushes again: its URLs and keys go.
                sqlx::query(
                    "update streams set destinations_key = null, destinations_sealed = null \
                     where id = $1",
                )
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
            }
            if let Some(record) = ledger(&transition) {
                append_in(&mut tx, &record).await?;
            }
            tx.commit().await?;
            return Ok(transition);
        }
        Err(StorageError::Contended(table))
    }
}
