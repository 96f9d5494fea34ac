use gremium_protocol::InvalidTransition;

/// Everything the storage layer can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The database refused or failed a query (connection lost, constraint, …).
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Applying the embedded migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database URL names a backend Gremium does not support.
    #[error("unsupported database url (expected sqlite:// or postgres://)")]
    UnsupportedUrl,
    /// A stored value cannot be interpreted by this version.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// No row with the given id.
    #[error("not found")]
    NotFound,
    /// The requested state change is not allowed from the current state.
    #[error(transparent)]
    InvalidTransition(#[from] InvalidTransition),
    /// A concurrent writer kept winning an optimistic update.
    #[error("too much contention on {0}")]
    Contended(&'static str),
}

impl StorageError {
    /// True when the error is a unique or primary-key violation.
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, StorageError::Database(sqlx::Error::Database(e)) if e.is_unique_violation())
    }
}
