//! The agent-gateway job store: one durable store for every protocol door.
//!
//! A job is one row whichever protocol submitted it; this crate owns the job
//! lifecycle rules (claim, settle, retry with backoff, lease expiry, dead
//! letters, retention) and knows nothing of wire formats. Protocol crates call
//! [`JobStore`] methods on a [`Store`], whose driver — SQLite (embedded
//! default) or PostgreSQL (replicas) — is picked by the database URL. Both
//! drivers run the same SQL text (`sql`) and pass one conformance suite (`tests/`).
//!
//! Layout:
//! - `model`: domain types and the `XxxParams` structs of each method.
//! - `store`: the [`JobStore`] trait (atomicity stated per method) and [`Store`].
//! - `sql`: every statement, with the few dialect differences.
//! - `sqlite`: the embedded driver — a writer thread with group commit and a
//!   reader thread, each owning one connection.
//! - `postgres`: the replica driver — a sqlx pool, `SKIP LOCKED`, `LISTEN/NOTIFY`.
//! - `notify`: wake-up fan-out to waiting claimers.
//! - `row`: row decoding.
//! - `error`: [`StoreError`].
//! - `eventlog`: [`EventLog`], the settlement → signed event step the drivers
//!   run inside each settlement's transaction (the events themselves —
//!   canonical form, keys, hash chains, redaction — are `agw_events`).

mod error;
mod eventlog;
mod model;
mod notify;
mod postgres;
mod row;
mod sql;
mod sqlite;
mod store;

pub use error::{StoreError, StoreResult};
pub use eventlog::EventLog;
pub use model::*;
pub use notify::{CommittedEvent, JobChange, JobEvent, Notifier, PG_CHANNEL, PG_JOB_CHANNEL};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;
pub use store::{
    AuthStore, ConnectOptions, EventStore, GovernanceStore, JobStore, SettingsStore, Store,
    redact_url,
};

/// A fresh random secret: 32 lowercase hex characters (128 bits).
pub fn new_token() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// A fresh job id (a UUIDv7: time-ordered, so ids sort by submission).
pub fn new_job_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// SHA-256 hex of a secret, as stored for API keys and request bodies.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

impl LeaseProof {
    /// (token, holder key) binds: at least one is `Some`; each given must match.
    pub(crate) fn split(&self) -> (Option<&str>, Option<&str>) {
        match self {
            Self::Token(t) => (Some(t), None),
            Self::HolderKey(k) => (None, Some(k)),
            Self::TokenAndKey { token, holder_key } => (Some(token), Some(holder_key)),
        }
    }
}

impl Scope {
    /// The tenant filter bind: `None` for all tenants.
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Self::All => None,
            Self::Tenant(t) => Some(t),
        }
    }
}
