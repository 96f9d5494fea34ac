//! The hash-chained audit ledger.
//!
//! Each chain (one per meeting, plus `global`) is a sequence of entries numbered from
//! one. An entry's hash is the SHA-256 of its canonical encoding, which includes the
//! previous entry's hash, so changing, removing or reordering any stored entry breaks
//! every hash after it. The chain head (last sequence number and hash) is kept in
//! `ledger_chains`, so cutting entries off the end is detected as well.

use futures_util::TryStreamExt;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{AnyConnection, Row};

use crate::{Db, Result, StorageError};

/// Previous-hash value of a chain's first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Chain used for events that belong to no meeting.
pub const GLOBAL_CHAIN: &str = "global";

/// What to append: the caller's facts. Sequence and hashes are filled in by the ledger.
#[derive(Debug, Clone)]
pub struct LedgerRecord {
    /// Chain to append to (a meeting id, or [`GLOBAL_CHAIN`]).
    pub chain_id: String,
    /// Wall-clock time, unix milliseconds.
    pub at: i64,
    /// Event kind, e.g. `consent_changed`.
    pub kind: String,
    /// Who caused it (subject of the token, or `system`).
    pub actor: String,
    /// What it is about (participant, recording, stream or meeting id).
    pub subject: String,
    /// Details; stored in canonical JSON (sorted keys).
    pub data: serde_json::Value,
}

/// A stored ledger entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerEntry {
    /// Chain the entry belongs to.
    pub chain_id: String,
    /// Position in the chain, from 1.
    pub seq: i64,
    /// Wall-clock time, unix milliseconds.
    pub at: i64,
    /// Event kind.
    pub kind: String,
    /// Who caused it.
    pub actor: String,
    /// What it is about.
    pub subject: String,
    /// Canonical JSON details.
    pub data: String,
    /// Hash of the previous entry ([`GENESIS_HASH`] for the first).
    pub prev_hash: String,
    /// SHA-256 of this entry's canonical encoding, lowercase hex.
    pub hash: String,
}

/// The first entry that failed verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrokenEntry {
    /// Chain the entry belongs to.
    pub chain_id: String,
    /// Sequence number where the chain breaks.
    pub seq: i64,
    /// What is wrong.
    pub reason: String,
}

/// Result of verifying every chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// True when every chain verified.
    pub intact: bool,
    /// Number of chains checked.
    pub chains: u64,
    /// Number of entries checked.
    pub entries: u64,
    /// The first problem found, if any.
    pub first_broken: Option<BrokenEntry>,
}

#[derive(Serialize)]
struct Canonical<'a> {
    chain: &'a str,
    seq: i64,
    at: i64,
    kind: &'a str,
    actor: &'a str,
    subject: &'a str,
    data: &'a str,
    prev: &'a str,
}

/// SHA-256 over the canonical encoding of an entry's fields.
// One argument per hashed field, in the canonical order: a struct would only rename
// them.
#[allow(clippy::too_many_arguments)]
pub fn entry_hash(
    chain_id: &str,
    seq: i64,
    at: i64,
    kind: &str,
    actor: &str,
    subject: &str,
    data: &str,
    prev_hash: &str,
) -> String {
    let canonical = Canonical {
        chain: chain_id,
        seq,
        at,
        kind,
        actor,
        subject,
        data,
        prev: prev_hash,
    };
    // Serializing a struct of strings and integers cannot fail.
    let bytes = serde_json::to_vec(&canonical).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))
}

/// Append within an open transaction (so the entry commits with the change it records).
pub(crate) async fn append_in(
    conn: &mut AnyConnection,
    record: &LedgerRecord,
) -> Result<LedgerEntry> {
    sqlx::query(
        "insert into ledger_chains (chain_id, seq, head) values ($1, 0, $2) \
         on conflict (chain_id) do nothing",
    )
    .bind(&record.chain_id)
    .bind(GENESIS_HASH)
    .execute(&mut *conn)
    .await?;
    // Bumping the sequence first takes the row lock (PostgreSQL) or the write lock
    // (SQLite), so concurrent appends to one chain serialize here.
    let row = sqlx::query(
        "update ledger_chains set seq = seq + 1 where chain_id = $1 returning seq, head",
    )
    .bind(&record.chain_id)
    .fetch_one(&mut *conn)
    .await?;
    let seq: i64 = row.try_get("seq")?;
    let prev_hash: String = row.try_get("head")?;
    let data = serde_json::to_string(&record.data)
        .map_err(|e| StorageError::Corrupt(format!("ledger data: {e}")))?;
    let hash = entry_hash(
        &record.chain_id,
        seq,
        record.at,
        &record.kind,
        &record.actor,
        &record.subject,
        &data,
        &prev_hash,
    );
    sqlx::query(
        "insert into ledger_entries (chain_id, seq, at, kind, actor, subject, data, prev_hash, hash) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&record.chain_id)
    .bind(seq)
    .bind(record.at)
    .bind(&record.kind)
    .bind(&record.actor)
    .bind(&record.subject)
    .bind(&data)
    .bind(&prev_hash)
    .bind(&hash)
    .execute(&mut *conn)
    .await?;
    sqlx::query("update ledger_chains set head = $1 where chain_id = $2")
        .bind(&hash)
        .bind(&record.chain_id)
        .execute(&mut *conn)
        .await?;
    Ok(LedgerEntry {
        chain_id: record.chain_id.clone(),
        seq,
        at: record.at,
        kind: record.kind.clone(),
        actor: record.actor.clone(),
        subject: record.subject.clone(),
        data,
        prev_hash,
        hash,
    })
}

pub(crate) fn entry_from_row(row: &sqlx::any::AnyRow) -> Result<LedgerEntry> {
    Ok(LedgerEntry {
        chain_id: row.try_get("chain_id")?,
        seq: row.try_get("seq")?,
        at: row.try_get("at")?,
        kind: row.try_get("kind")?,
        actor: row.try_get("actor")?,
        subject: row.try_get("subject")?,
        data: row.try_get("data")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

pub(crate) const ENTRY_COLUMNS: &str =
    "chain_id, seq, at, kind, actor, subject, data, prev_hash, hash";

impl Db {
    /// Append one entry in its own transaction.
    pub async fn append_ledger(&self, record: &LedgerRecord) -> Result<LedgerEntry> {
        let mut tx = self.pool().begin().await?;
        let entry = append_in(&mut tx, record).await?;
        tx.commit().await?;
        Ok(entry)
    }

    /// Entries of one chain, oldest first.
    pub async fn ledger_entries(
        &self,
        chain_id: &str,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<LedgerEntry>> {
        let rows = sqlx::query(&format!(
            "select {ENTRY_COLUMNS} from ledger_entries where chain_id = $1 and seq > $2 \
             order by seq limit $3"
        ))
        .bind(chain_id)
        .bind(after_seq)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(entry_from_row).collect()
    }

    /// Current head hash of a chain ([`GENESIS_HASH`] if the chain is empty).
    pub async fn ledger_head(&self, chain_id: &str) -> Result<(i64, String)> {
        let row = sqlx::query("select seq, head from ledger_chains where chain_id = $1")
            .bind(chain_id)
            .fetch_optional(self.pool())
            .await?;
        match row {
            Some(r) => Ok((r.try_get("seq")?, r.try_get("head")?)),
            None => Ok((0, GENESIS_HASH.to_string())),
        }
    }

    /// Recompute every chain and report the first broken entry, if any.
    pub async fn verify_ledger(&self) -> Result<VerifyReport> {
        // Heads and entries from one snapshot: an append committing between the two
        // reads must not look like tampering. (SQLite: a read transaction is a
        // snapshot; PostgreSQL needs REPEATABLE READ for that.)
        let mut tx = self.pool().begin().await?;
        if self.backend() == crate::Backend::Postgres {
            sqlx::query("set transaction isolation level repeatable read read only")
                .execute(&mut *tx)
                .await?;
        }
        let heads = sqlx::query("select chain_id, seq, head from ledger_chains order by chain_id")
            .fetch_all(&mut *tx)
            .await?;
        let mut heads: std::collections::BTreeMap<String, (i64, String)> = heads
            .iter()
            .map(|r| {
                Ok((
                    r.try_get("chain_id")?,
                    (r.try_get("seq")?, r.try_get("head")?),
                ))
            })
            .collect::<Result<_>>()?;
        let mut report = VerifyReport {
            intact: true,
            chains: 0,
            entries: 0,
            first_broken: None,
        };
        let sql = format!("select {ENTRY_COLUMNS} from ledger_entries order by chain_id, seq");
        let mut rows = sqlx::query(&sql).fetch(&mut *tx);
        let mut current: Option<(String, i64, String)> = None; // chain, last seq, last hash
        let broken = |chain_id: &str, seq: i64, reason: String| BrokenEntry {
            chain_id: chain_id.to_string(),
            seq,
            reason,
        };
        let mut problem: Option<BrokenEntry> = None;
        while let Some(row) = rows.try_next().await? {
            let e = entry_from_row(&row)?;
            report.entries += 1;
            let (expected_seq, expected_prev) = match &current {
                Some((chain, seq, hash)) if *chain == e.chain_id => (seq + 1, hash.clone()),
                Some((chain, seq, hash)) => {
                    if let Some(p) = check_head(&mut heads, chain, *seq, hash) {
                        problem = Some(p);
                        break;
                    }
                    report.chains += 1;
                    (1, GENESIS_HASH.to_string())
                }
                None => (1, GENESIS_HASH.to_string()),
            };
            if e.seq != expected_seq {
                problem = Some(broken(
                    &e.chain_id,
                    expected_seq,
                    format!("entry {expected_seq} is missing (found {})", e.seq),
                ));
                break;
            }
            if e.prev_hash != expected_prev {
                problem = Some(broken(
                    &e.chain_id,
                    e.seq,
                    "previous-hash link does not match the previous entry".into(),
                ));
                break;
            }
            let recomputed = entry_hash(
                &e.chain_id,
                e.seq,
                e.at,
                &e.kind,
                &e.actor,
                &e.subject,
                &e.data,
                &e.prev_hash,
            );
            if recomputed != e.hash {
                problem = Some(broken(
                    &e.chain_id,
                    e.seq,
                    "content does not match its hash".into(),
                ));
                break;
            }
            current = Some((e.chain_id, e.seq, e.hash));
        }
        drop(rows);
        tx.rollback().await?;
        if problem.is_none() {
            if let Some((chain, seq, hash)) = &current {
                problem = check_head(&mut heads, chain, *seq, hash);
                report.chains += 1;
            }
        }
        if problem.is_none() {
            // Chains whose head claims entries that are all gone.
            if let Some((chain, (seq, _))) = heads.into_iter().find(|(_, (seq, _))| *seq > 0) {
                problem = Some(broken(
                    &chain,
                    1,
                    format!("chain head claims {seq} entries but none are stored"),
                ));
            }
        }
        report.intact = problem.is_none();
        report.first_broken = problem;
        Ok(report)
    }
}

/// Compare a fully-read chain with its stored head; removes the chain from `heads`.
fn check_head(
    heads: &mut std::collections::BTreeMap<String, (i64, String)>,
    chain: &str,
    last_seq: i64,
    last_hash: &str,
) -> Option<BrokenEntry> {
    match heads.remove(chain) {
        None => Some(BrokenEntry {
            chain_id: chain.into(),
            seq: last_seq,
            reason: "chain has no head record".into(),
        }),
        Some((seq, _)) if seq != last_seq => Some(BrokenEntry {
            chain_id: chain.into(),
            seq: last_seq + 1,
            reason: format!("chain head claims {seq} entries but {last_seq} are stored"),
        }),
        Some((_, head)) if head != last_hash => Some(BrokenEntry {
            chain_id: chain.into(),
            seq: last_seq,
            reason: "chain head hash does not match the last entry".into(),
        }),
        Some(_) => None,
    }
}
