//! The agent-gateway job store: one durable store for every protocol door.
//!
//! A job is one row whichever protocol submitted it; this crate owns the job
//! lifecycle rules (claim, settle, retry with backoff, lease expiry, dead
//! letters, retention) and knows nothing of wire formats. Protocol crates call
//! the store traits on a [`Store`], whose driver — SQLite (embedded default)
//! or PostgreSQL (replicas) — is picked by the database URL. Both drivers run
//! the same SQL text and pass one conformance suite (`tests/conformance/`).
//!
//! Layout: one file per area in each layer. The areas are jobs and leases
//! ([`JobStore`]), auth and keys ([`AuthStore`]), governance
//! ([`GovernanceStore`]), execution events ([`EventStore`]) and settings, KV
//! and capability schemas ([`SettingsStore`]); for an area `X`:
//! - `store/X.rs`: its trait (atomicity stated per method); `store/mod.rs`:
//!   [`Store`], which forwards every trait to the selected driver.
//! - `model/X.rs`: its domain types, `XxxParams` structs, and the decisions
//!   both drivers share as pure functions (device decisions, failure
//!   prediction, [`Trace`]'s event rule).
//! - `sql/X.rs`: its statements (`sql/mod.rs`: the few dialect differences).
//! - `sqlite/X.rs`, `postgres/X.rs`: the drivers' methods. `sqlite/mod.rs`
//!   holds the driver's shared helpers, `sqlite/worker.rs` the threads (a
//!   writer with group commit, a reader; each owns one connection),
//!   `sqlite/migrate.rs` opening, migrations and the WAL checkpointer;
//!   `postgres/mod.rs` connecting, migrating and the wake-up tasks (`LISTEN`,
//!   or a poll behind a transaction pooler), `postgres/pool.rs` the pool
//!   every statement goes through (transaction-pooler mode) and outage
//!   detection.
//! - `tests/conformance/X.rs`: its conformance cases, run on both drivers.
//!
//! Shared by every area: `notify` (wake-up fan-out to waiting claimers),
//! `row` (row decoding), `error` ([`StoreError`]), and `eventlog`
//! ([`EventLog`], the settlement → signed event step the drivers run inside
//! each settlement's transaction; the events themselves — canonical form,
//! keys, hash chains, redaction — are the `agw_events` crate).

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
pub use eventlog::{EventLog, correlation_id};
pub use model::*;
pub use notify::{
    CommittedEvent, JobChange, JobEvent, JobHint, Notifier, PG_CHANNEL, PG_JOB_CHANNEL, Wake,
};
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
