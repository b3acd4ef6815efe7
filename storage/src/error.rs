//! The store's error type.

use crate::JobState;

/// Everything a store call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such row, or not visible to the caller.
    #[error("not found")]
    NotFound,
    /// The lease is not held: unknown or stale token, wrong holder, expired or reclaimed.
    #[error("lease lost")]
    LeaseLost,
    /// The record was already decided or used.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The job's state does not allow the operation.
    #[error("job is {}", .0.as_str())]
    InvalidState(JobState),
    /// The tenant already has `limit` open or leased jobs.
    #[error("tenant has {limit} open jobs, the configured maximum")]
    TooManyOpen {
        /// The configured cap.
        limit: i64,
    },
    /// The database URL names no supported driver, or cannot be parsed.
    #[error("invalid database url: {0}")]
    InvalidUrl(String),
    /// A stored value could not be decoded (a bug or a hand-edited row).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// A migration failed.
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// SQLite failed.
    #[error("sqlite: {0}")]
    Sqlite(String),
}

/// Shorthand for store results.
pub type StoreResult<T> = Result<T, StoreError>;

impl StoreError {
    /// Whether the failure is the database being overloaded or unreachable
    /// (worth a retry), rather than a bug.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::Database(
                sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_)
            )
        )
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sqlite(e.to_string())
    }
}
