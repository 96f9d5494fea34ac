//! What both planes need of storage without a database.
//!
//! Owns: recordings' data keys and the master key that wraps them, the two encrypted
//! file formats ([`crypto`]: the spool written while recording, the sealed objects
//! kept in storage), the contexts that bind keys and objects to one recording
//! ([`context`]), and the object store they are kept in ([`objects`]: the trait and
//! local disk, [`s3`]: S3-compatible servers).
//!
//! Must not: depend on sqlx or GStreamer, read the environment, or decide policy
//! (what is recorded, kept or deleted). The media plane writes spools and stores
//! sealed objects with this crate; the control plane (`gremium-storage`) adds the
//! database: wrapped keys, recordings, the archive, and re-exports this crate's
//! items at their old paths.

pub mod context;
pub mod crypto;
pub mod objects;
pub mod s3;

pub use context::{key_context, manifest_context, media_context, poster_context};
pub use crypto::{CryptoError, DataKey, MasterKey};
pub use objects::{LocalStore, ObjectError, ObjectStore};
pub use s3::{S3Settings, S3SettingsError, S3Store};

#[cfg(any(test, feature = "test-support"))]
pub mod testing;
