//! Persistence for Gremium's control plane.
//!
//! Owns: the database schema and migrations (SQLite as the embedded default,
//! PostgreSQL for production, same semantics), the repositories for meetings,
//! participants and consent, recordings and streams, and the hash-chained audit
//! ledger with its verification; the vault that joins master key, object store
//! and the stored wrapped keys ([`vault`]), and the archive's retention and deletion
//! queries ([`archive`]).
//!
//! What needs no database — data keys and the encrypted file formats ([`crypto`]),
//! the object store ([`objects`]: local disk, [`s3`]: S3-compatible servers) — lives
//! in the `gremium-vault` crate, which the media plane uses without linking sqlx; it
//! is re-exported here at its old paths.
//!
//! Must not: depend on GStreamer, speak HTTP, or decide policy (who may do what is
//! the signaling crate's job). Every state change that the ledger must witness is
//! written in the same transaction as its ledger entry.
//!
//! Queries are plain lowercase SQL with `$n` placeholders, which both SQLite and
//! PostgreSQL accept, run through sqlx's `Any` driver so one repository serves both.
//! Booleans are stored as `bigint` 0/1 and times as unix milliseconds for the same
//! reason.

mod applied;
pub mod archive;
pub mod chapters;
pub mod consent;
mod db;
mod error;
pub mod ledger;
pub mod meetings;
pub mod outputs;
pub mod participants;
pub mod placements;
pub mod vault;
pub mod whip_sessions;

pub use gremium_vault::{crypto, objects, s3};

pub use archive::{ArchiveItem, ArchiveQuery, Shredded};
pub use chapters::Chapter;
pub use consent::{ConsentChange, ConsentOutcome, ConsentWriter};
pub use db::{Backend, Db, DbOptions};
pub use error::StorageError;
pub use ledger::{BrokenEntry, LedgerEntry, LedgerRecord, VerifyReport};
pub use meetings::{Meeting, MeetingState, NewMeeting};
pub use objects::{LocalStore, ObjectError, ObjectStore};
pub use outputs::{
    NewRecording, NewStream, OutputKind, Recording, StoredManifest, StoredMedia, Stream, Transition,
};
pub use participants::{NewParticipant, Participant, ParticipantStanding};
pub use placements::{PlaceOutcome, Placement};
pub use s3::{S3Settings, S3Store};
pub use vault::{OpenObject, Vault, VaultError};
pub use whip_sessions::WhipSession;

/// Result alias for this crate.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

pub(crate) fn flag(b: bool) -> i64 {
    i64::from(b)
}

/// An update that names one row by id: no row changed means there is no such row
/// (or it is deleted), which callers report as `NotFound`.
pub(crate) fn one_row(done: &sqlx::any::AnyQueryResult) -> Result<()> {
    if done.rows_affected() == 0 {
        return Err(StorageError::NotFound);
    }
    Ok(())
}

#[cfg(any(test, feature = "test-support"))]
pub mod testing;
