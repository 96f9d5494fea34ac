//! Consent changes, written in batches ("group commit").
//!
//! A consent change is the hottest write: participant row plus a hash-chained ledger
//! entry. Each database round trip costs tens of microseconds (SQLite runs on a worker
//! thread; PostgreSQL is across a socket), so changes that arrive together are applied
//! in one transaction whose statement count does not grow with the batch: one read,
//! one multi-row update of participants, one sequence bump per chain, one multi-row
//! insert of ledger entries, one head update. Results are still reported per change.

use std::collections::{HashMap, HashSet};

use sqlx::{AnyConnection, Row};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::ledger::{entry_hash, LedgerEntry, GENESIS_HASH};
use crate::meetings::parse_uuid;
use crate::{flag, Db, Result, StorageError};

/// Largest batch (bounded so statements stay far below parameter limits).
pub const MAX_BATCH: usize = 64;

/// One participant's new consent, as stated by them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentChange {
    /// Meeting (and ledger chain).
    pub meeting_id: Uuid,
    /// Participant.
    pub participant_id: Uuid,
    /// Consent to appear in recordings.
    pub recording: bool,
    /// Consent to appear in the livestream.
    pub streaming: bool,
    /// Wall clock, unix milliseconds.
    pub at: i64,
    /// Ledger actor.
    pub actor: String,
    /// Program running time at which the media plane applied the gates.
    pub media_time_ns: Option<u64>,
}

/// What became of one change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsentOutcome {
    /// Stored, with the ledger entry that records it.
    Changed {
        /// Consent before the change (recording, streaming).
        previous: (bool, bool),
        /// The ledger entry.
        entry: LedgerEntry,
    },
    /// The participant already had exactly this consent; nothing was written.
    Unchanged,
    /// No such participant in that meeting.
    NotFound,
    /// The participant has left the meeting.
    Left,
}

struct Current {
    meeting_id: Uuid,
    recording: bool,
    streaming: bool,
    left: bool,
}

fn placeholders(rows: usize, cols: usize, start: usize) -> String {
    (0..rows)
        .map(|r| {
            let cells: Vec<String> = (0..cols)
                .map(|c| format!("${}", start + r * cols + c + 1))
                .collect();
            format!("({})", cells.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl Db {
    /// Store one consent change (a batch of one).
    pub async fn set_consent(&self, change: &ConsentChange) -> Result<ConsentOutcome> {
        let mut out = self
            .apply_consent_batch(std::slice::from_ref(change))
            .await?;
        out.pop()
            .ok_or_else(|| StorageError::Corrupt("empty batch result".into()))
    }

    /// Apply changes (each participant at most once) in one transaction; outcomes in
    /// input order.
    pub async fn apply_consent_batch(
        &self,
        changes: &[ConsentChange],
    ) -> Result<Vec<ConsentOutcome>> {
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        let distinct: HashSet<Uuid> = changes.iter().map(|c| c.participant_id).collect();
        if distinct.len() != changes.len() || changes.len() > MAX_BATCH {
            return Err(StorageError::Corrupt(
                "consent batch must name each participant once".into(),
            ));
        }
        let mut tx = self.pool().begin().await?;
        let outcomes = apply_in(&mut tx, changes).await?;
        tx.commit().await?;
        Ok(outcomes)
    }
}

async fn apply_in(
    conn: &mut AnyConnection,
    changes: &[ConsentChange],
) -> Result<Vec<ConsentOutcome>> {
    // 1. Current consent of everyone named.
    let sql = format!(
        "select id, meeting_id, consent_recording, consent_streaming, left_at from participants where id in ({})",
        (1..=changes.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
    );
    let mut q = sqlx::query(&sql);
    for c in changes {
        q = q.bind(c.participant_id.to_string());
    }
    let mut current: HashMap<Uuid, Current> = HashMap::new();
    for row in q.fetch_all(&mut *conn).await? {
        current.insert(
            parse_uuid(&row.try_get::<String, _>("id")?)?,
            Current {
                meeting_id: parse_uuid(&row.try_get::<String, _>("meeting_id")?)?,
                recording: row.try_get::<i64, _>("consent_recording")? != 0,
                streaming: row.try_get::<i64, _>("consent_streaming")? != 0,
                left: row.try_get::<Option<i64>, _>("left_at")?.is_some(),
            },
        );
    }
    let mut outcomes: Vec<Option<ConsentOutcome>> = vec![None; changes.len()];
    let mut changed: Vec<(usize, (bool, bool))> = Vec::new();
    for (i, c) in changes.iter().enumerate() {
        outcomes[i] = match current.get(&c.participant_id) {
            Some(cur) if cur.meeting_id != c.meeting_id => Some(ConsentOutcome::NotFound),
            None => Some(ConsentOutcome::NotFound),
            Some(cur) if cur.left => Some(ConsentOutcome::Left),
            Some(cur) if (cur.recording, cur.streaming) == (c.recording, c.streaming) => {
                Some(ConsentOutcome::Unchanged)
            }
            Some(cur) => {
                changed.push((i, (cur.recording, cur.streaming)));
                None
            }
        };
    }
    if changed.is_empty() {
        return Ok(outcomes
            .into_iter()
            .map(|o| o.unwrap_or(ConsentOutcome::Unchanged))
            .collect());
    }

    // 2. New consent, one statement.
    let sql = format!(
        "with v(id, r, s) as (values {}) \
         update participants set consent_recording = v.r, consent_streaming = v.s from v where participants.id = v.id",
        placeholders(changed.len(), 3, 0)
    );
    let mut q = sqlx::query(&sql);
    for (i, _) in &changed {
        let c = &changes[*i];
        q = q
            .bind(c.participant_id.to_string())
            .bind(flag(c.recording))
            .bind(flag(c.streaming));
    }
    q.execute(&mut *conn).await?;

    // 3. Reserve sequence numbers per chain; this also locks the chains' rows.
    let mut per_chain: Vec<(String, i64)> = Vec::new();
    for (i, _) in &changed {
        let chain = changes[*i].meeting_id.to_string();
        match per_chain.iter_mut().find(|(c, _)| *c == chain) {
            Some((_, k)) => *k += 1,
            None => per_chain.push((chain, 1)),
        }
    }
    let mut heads = bump_chains(conn, &per_chain).await?;
    if heads.len() != per_chain.len() {
        // A chain without a head row (never expected: meetings open their chain).
        for (chain, _) in &per_chain {
            sqlx::query("insert into ledger_chains (chain_id, seq, head) values ($1, 0, $2) on conflict (chain_id) do nothing")
                .bind(chain)
                .bind(GENESIS_HASH)
                .execute(&mut *conn)
                .await?;
        }
        let missing: Vec<(String, i64)> = per_chain
            .iter()
            .filter(|(c, _)| !heads.contains_key(c))
            .cloned()
            .collect();
        heads.extend(bump_chains(conn, &missing).await?);
    }

    // 4. Ledger entries, hashed in chain order, one insert.
    let mut entries: Vec<LedgerEntry> = Vec::with_capacity(changed.len());
    for (i, previous) in &changed {
        let c = &changes[*i];
        let chain = c.meeting_id.to_string();
        let (seq, head) = heads
            .get_mut(&chain)
            .ok_or_else(|| StorageError::Corrupt("chain head lost".into()))?;
        *seq += 1;
        let data = serde_json::json!({
            "recording": c.recording,
            "streaming": c.streaming,
            "previous": { "recording": previous.0, "streaming": previous.1 },
            "media_time_ns": c.media_time_ns,
        })
        .to_string();
        let subject = c.participant_id.to_string();
        let hash = entry_hash(
            &chain,
            *seq,
            c.at,
            "consent_changed",
            &c.actor,
            &subject,
            &data,
            head,
        );
        let entry = LedgerEntry {
            chain_id: chain,
            seq: *seq,
            at: c.at,
            kind: "consent_changed".into(),
            actor: c.actor.clone(),
            subject,
            data,
            prev_hash: std::mem::replace(head, hash.clone()),
            hash,
        };
        entries.push(entry);
    }
    let sql = format!(
        "insert into ledger_entries (chain_id, seq, at, kind, actor, subject, data, prev_hash, hash) values {}",
        placeholders(entries.len(), 9, 0)
    );
    let mut q = sqlx::query(&sql);
    for e in &entries {
        q = q
            .bind(&e.chain_id)
            .bind(e.seq)
            .bind(e.at)
            .bind(&e.kind)
            .bind(&e.actor)
            .bind(&e.subject)
            .bind(&e.data)
            .bind(&e.prev_hash)
            .bind(&e.hash);
    }
    q.execute(&mut *conn).await?;

    // 5. New heads, one statement.
    let sql = format!(
        "with v(chain_id, head) as (values {}) \
         update ledger_chains set head = v.head from v where ledger_chains.chain_id = v.chain_id",
        placeholders(heads.len(), 2, 0)
    );
    let mut q = sqlx::query(&sql);
    for (chain, (_, head)) in &heads {
        q = q.bind(chain.clone()).bind(head.clone());
    }
    q.execute(&mut *conn).await?;

    for ((i, previous), entry) in changed.into_iter().zip(entries) {
        outcomes[i] = Some(ConsentOutcome::Changed { previous, entry });
    }
    Ok(outcomes
        .into_iter()
        .map(|o| o.unwrap_or(ConsentOutcome::Unchanged))
        .collect())
}

/// Bump each chain's sequence by its count; returns chain → (last seq before, head).
async fn bump_chains(
    conn: &mut AnyConnection,
    per_chain: &[(String, i64)],
) -> Result<HashMap<String, (i64, String)>> {
    if per_chain.is_empty() {
        return Ok(HashMap::new());
    }
    let sql = format!(
        "with v(chain_id, k) as (values {}) \
         update ledger_chains set seq = ledger_chains.seq + v.k from v where ledger_chains.chain_id = v.chain_id \
         returning ledger_chains.chain_id, ledger_chains.seq, ledger_chains.head",
        placeholders(per_chain.len(), 2, 0)
    );
    let mut q = sqlx::query(&sql);
    for (chain, k) in per_chain {
        q = q.bind(chain.clone()).bind(*k);
    }
    let mut heads = HashMap::new();
    for row in q.fetch_all(&mut *conn).await? {
        let chain: String = row.try_get(0)?;
        let seq: i64 = row.try_get(1)?;
        let head: String = row.try_get(2)?;
        let k = per_chain
            .iter()
            .find(|(c, _)| *c == chain)
            .map(|(_, k)| *k)
            .unwrap_or(0);
        heads.insert(chain, (seq - k, head));
    }
    Ok(heads)
}

type Pending = (ConsentChange, oneshot::Sender<Result<ConsentOutcome>>);

/// Handle on the background tasks ("lanes") that group concurrent consent changes.
///
/// SQLite has one writer, so it gets one lane. On PostgreSQL each commit waits for
/// its WAL flush, so several lanes commit in parallel; a meeting always maps to the
/// same lane, so no two lanes ever lock the same ledger chain (no deadlocks) and one
/// participant's changes stay in order.
#[derive(Clone, Debug)]
pub struct ConsentWriter {
    lanes: Vec<mpsc::Sender<Pending>>,
}

impl ConsentWriter {
    /// Start the writer lanes on the current tokio runtime.
    pub fn spawn(db: Db) -> ConsentWriter {
        let lanes = match db.backend() {
            crate::Backend::Sqlite => 1,
            crate::Backend::Postgres => (db.max_connections() / 2).clamp(1, 8) as usize,
        };
        let lanes = (0..lanes)
            .map(|_| {
                let (tx, rx) = mpsc::channel::<Pending>(1024);
                tokio::spawn(run(db.clone(), rx));
                tx
            })
            .collect();
        ConsentWriter { lanes }
    }

    /// Submit one change and wait until it is committed (or refused).
    pub async fn submit(&self, change: ConsentChange) -> Result<ConsentOutcome> {
        let (reply, answer) = oneshot::channel();
        let lane = (change.meeting_id.as_u128() % self.lanes.len() as u128) as usize;
        self.lanes[lane]
            .send((change, reply))
            .await
            .map_err(|_| StorageError::Corrupt("consent writer stopped".into()))?;
        answer
            .await
            .map_err(|_| StorageError::Corrupt("consent writer stopped".into()))?
    }
}

async fn run(db: Db, mut rx: mpsc::Receiver<Pending>) {
    let mut carry: Option<Pending> = None;
    loop {
        let first = match carry.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        let mut batch = vec![first];
        let mut seen: HashSet<Uuid> = HashSet::from([batch[0].0.participant_id]);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) if seen.contains(&p.0.participant_id) => {
                    carry = Some(p); // same participant twice: next batch
                    break;
                }
                Ok(p) => {
                    seen.insert(p.0.participant_id);
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        let changes: Vec<ConsentChange> = batch.iter().map(|(c, _)| c.clone()).collect();
        match db.apply_consent_batch(&changes).await {
            Ok(outcomes) => {
                for ((_, reply), outcome) in batch.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(e) if batch.len() == 1 => {
                if let Some((_, reply)) = batch.pop() {
                    let _ = reply.send(Err(e));
                }
            }
            Err(e) => {
                // Isolate the failure: retry one by one so each caller gets its own answer.
                tracing::warn!(error = %e, size = batch.len(), "consent batch failed; retrying singly");
                for (change, reply) in batch {
                    let _ = reply.send(db.set_consent(&change).await);
                }
            }
        }
    }
}
