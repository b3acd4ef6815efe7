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
    /// The database cannot take the work now (SQLite busy, locked, full or
    /// read-only; the store's writer gone); worth a retry.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// Shorthand for store results.
pub type StoreResult<T> = Result<T, StoreError>;

impl StoreError {
    /// Whether the failure is the database being overloaded or unreachable
    /// (worth a retry), rather than a bug.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Unavailable(_) => true,
            Self::Database(
                sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::WorkerCrashed,
            ) => true,
            Self::Database(sqlx::Error::Database(db)) => {
                db.code().is_some_and(|c| pg_state_unavailable(&c))
            }
            _ => false,
        }
    }
}

/// PostgreSQL SQLSTATEs that mean "not now" rather than "wrong": connection
/// failures (08), insufficient resources (53), operator intervention such as
/// shutdown or failover (57P01–57P03), serialization failures and deadlocks
/// (40001, 40P01), and a read-only transaction (25006, a demoted primary).
pub(crate) fn pg_state_unavailable(state: &str) -> bool {
    state.starts_with("08")
        || state.starts_with("53")
        || matches!(
            state,
            "57P01" | "57P02" | "57P03" | "40001" | "40P01" | "25006"
        )
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode as C;
        match e.sqlite_error_code() {
            Some(
                C::DatabaseBusy
                | C::DatabaseLocked
                | C::DiskFull
                | C::ReadOnly
                | C::CannotOpen
                | C::SystemIoFailure
                | C::OutOfMemory,
            ) => Self::Unavailable(e.to_string()),
            _ => Self::Sqlite(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_failures_are_unavailable_and_bugs_are_not() {
        for s in [
            "08006", "08001", "53300", "57P01", "57P03", "40001", "40P01", "25006",
        ] {
            assert!(pg_state_unavailable(s), "{s}");
        }
        for s in ["23505", "42P01", "22P02"] {
            assert!(!pg_state_unavailable(s), "{s}");
        }
        let busy = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        );
        assert!(StoreError::from(busy).is_unavailable());
        let full = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            None,
        );
        assert!(StoreError::from(full).is_unavailable());
        let bug = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT),
            None,
        );
        assert!(!StoreError::from(bug).is_unavailable());
    }
}
