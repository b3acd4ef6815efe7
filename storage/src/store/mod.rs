//! The store API, one trait per area, and [`Store`], the driver chosen by URL
//! scheme.
//!
//! | area | trait | files (one per layer) |
//! |---|---|---|
//! | jobs and leases | [`JobStore`] | `jobs.rs` |
//! | auth and keys | [`AuthStore`] | `auth.rs` |
//! | governance | [`GovernanceStore`] | `governance.rs` |
//! | execution events | [`EventStore`] | `events.rs` |
//! | settings, KV, capability schemas, leader leases | [`SettingsStore`] | `settings.rs` |
//!
//! The layers, each a folder of `storage/`: `src/store/` (the traits),
//! `src/model/` (types), `src/sql/` (statements), `src/sqlite/` and
//! `src/postgres/` (the drivers), `tests/conformance/` (the cases both
//! drivers pass).
//!
//! Every method of every trait is one atomic unit: it commits entirely or not
//! at all, and two concurrent calls never observe each other half-done.
//! Methods that take a `now` use it as the clock (tests pin it); `None` means
//! the wall clock.

mod auth;
mod events;
mod governance;
mod jobs;
mod settings;

pub use auth::AuthStore;
pub use events::EventStore;
pub use governance::GovernanceStore;
pub use jobs::JobStore;
pub use settings::SettingsStore;

use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::CapabilitySchema;
use crate::JobStats;
use crate::eventlog::EventLog;
use crate::postgres::PgStore;
use crate::sqlite::SqliteStore;
use crate::{AdmitParams, DecisionCount, Secret, Trace, TraceSettleParams};
use crate::{
    ApiKey, DeviceCode, DeviceDecideParams, DevicePoll, DevicePollParams, ExpiredLease, Job,
    JobCancelParams, JobClaimParams, JobCompleteParams, JobExtendParams, JobFailParams,
    JobInsertOutcome, JobInsertParams, JobProgressParams, KvSetParams, NonceParams, Notifier,
    OAuthClient, PurgeParams, PurgeReport, Scope, StoreError, StoreResult,
};
use crate::{EventKey, EventQuery, IngestedEvent, StoredEvent};
use crate::{
    JobListParams, JobRetryParams, TopicActivity, TopicCount, TopicHolder, TopicPurgeParams,
};

/// The store, with its driver chosen by the URL scheme.
#[derive(Debug, Clone)]
pub enum Store {
    /// `sqlite://PATH`: one node, embedded.
    Sqlite(SqliteStore),
    /// `postgres://...`: any number of replicas.
    Postgres(PgStore),
}

/// Connection tuning shared by both drivers.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// PostgreSQL pool size. (SQLite uses exactly one writer and one reader
    /// connection, each owned by its thread.)
    pub max_connections: u32,
    /// SQLite `synchronous = FULL` (an acknowledged commit survives a power
    /// loss) rather than `NORMAL` (survives a process crash only).
    pub sqlite_full_sync: bool,
    /// PostgreSQL is reached through a transaction pooler (PgBouncer
    /// `pool_mode = transaction`): no statement or session state outlives a
    /// transaction, and `LISTEN` goes over `pg_listen_url` only.
    pub pg_transaction_pooler: bool,
    /// A direct PostgreSQL connection URL (not through a pooler) for
    /// `LISTEN`. `None` with a transaction pooler: waiters are woken by a
    /// poll of the database instead (see the PostgreSQL driver).
    pub pg_listen_url: Option<String>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            sqlite_full_sync: true,
            pg_transaction_pooler: false,
            pg_listen_url: None,
        }
    }
}

impl Store {
    /// Connects to `url` (`sqlite://PATH`, `sqlite::memory:` is refused because
    /// readers and the writer must share one database; `postgres://` or
    /// `postgresql://`) and applies pending migrations.
    pub async fn connect(url: &str, opts: &ConnectOptions) -> StoreResult<Self> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite(SqliteStore::connect(url, opts).await?))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres(PgStore::connect(url, opts).await?))
        } else {
            Err(StoreError::InvalidUrl(format!(
                "{}: expected sqlite://PATH or postgres://...",
                redact_url(url)
            )))
        }
    }

    /// Turns on execution events: from now on every settlement writes its
    /// signed event in its own transaction. Without it (operator commands,
    /// tests that do not need events) settlements write none.
    pub fn set_event_log(&self, log: Arc<EventLog>) {
        match self {
            Self::Sqlite(s) => s.set_event_log(log),
            Self::Postgres(s) => s.set_event_log(log),
        }
    }

    /// The wake-up fan-out of this store.
    pub fn notifier(&self) -> &Notifier {
        match self {
            Self::Sqlite(s) => s.notifier(),
            Self::Postgres(s) => s.notifier(),
        }
    }

    /// The driver's name, for logs and metrics.
    pub fn driver_name(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }

    /// Closes every connection.
    pub async fn close(&self) {
        match self {
            Self::Sqlite(s) => s.close().await,
            Self::Postgres(s) => s.close().await,
        }
    }
}

/// Removes a password from a URL for error messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Forwards each [`JobStore`] method to the selected driver.
macro_rules! delegate {
    ($trait:ident { $( fn $name:ident(&self $(, $arg:ident : $ty:ty)*) -> $ret:ty; )* }) => {
        impl $trait for Store {
            $(
                async fn $name(&self $(, $arg: $ty)*) -> $ret {
                    match self {
                        Self::Sqlite(s) => s.$name($($arg),*).await,
                        Self::Postgres(s) => s.$name($($arg),*).await,
                    }
                }
            )*
        }
    };
}

delegate! {
    JobStore {
        fn ping(&self) -> StoreResult<()>;
        fn job_insert(&self, params: JobInsertParams) -> StoreResult<JobInsertOutcome>;
        fn job_claim(&self, params: JobClaimParams) -> StoreResult<Option<Job>>;
        fn job_complete(&self, params: JobCompleteParams) -> StoreResult<Job>;
        fn job_fail(&self, params: JobFailParams) -> StoreResult<Job>;
        fn job_extend(&self, params: JobExtendParams) -> StoreResult<Job>;
        fn job_progress(&self, params: JobProgressParams) -> StoreResult<Job>;
        fn job_cancel(&self, params: JobCancelParams) -> StoreResult<Job>;
        fn job_get(&self, id: &str, scope: &Scope) -> StoreResult<Option<Job>>;
        fn jobs_leased_by(&self, holder_key: &str, now: Option<DateTime<Utc>>) -> StoreResult<Vec<Job>>;
        fn jobs_expire_leases(&self, now: DateTime<Utc>) -> StoreResult<Vec<ExpiredLease>>;
        fn jobs_due_topics(&self, since: DateTime<Utc>, now: DateTime<Utc>) -> StoreResult<Vec<String>>;
        fn jobs_purge(&self, params: PurgeParams) -> StoreResult<PurgeReport>;
        fn jobs_count_open(&self, scope: &Scope) -> StoreResult<i64>;
        fn jobs_stats(&self) -> StoreResult<Vec<JobStats>>;
        fn jobs_topic_counts(&self, scope: &Scope) -> StoreResult<Vec<TopicCount>>;
        fn jobs_list(&self, params: JobListParams) -> StoreResult<Vec<Job>>;
        fn job_retry(&self, params: JobRetryParams) -> StoreResult<Job>;
        fn jobs_purge_topic(&self, params: TopicPurgeParams) -> StoreResult<u64>;
        fn jobs_activity(&self, scope: &Scope, since: DateTime<Utc>, minutes: usize) -> StoreResult<Vec<TopicActivity>>;
        fn jobs_recent_holders(&self, scope: &Scope, since: DateTime<Utc>) -> StoreResult<Vec<TopicHolder>>;
    }
}

delegate! {
    SettingsStore {
        fn kv_set(&self, params: KvSetParams) -> StoreResult<()>;
        fn kv_get(&self, scope: &str, key: &str, now: Option<DateTime<Utc>>) -> StoreResult<Option<serde_json::Value>>;
        fn setting_get_or_insert(&self, name: &str, value: &str) -> StoreResult<String>;
        fn schema_put(&self, schema: CapabilitySchema) -> StoreResult<()>;
        fn schema_get(&self, capability: &str) -> StoreResult<Option<CapabilitySchema>>;
        fn schema_delete(&self, capability: &str) -> StoreResult<bool>;
        fn leader_lease(&self, name: &str, holder: &str, ttl_ms: i64, now: DateTime<Utc>) -> StoreResult<bool>;
    }
}

delegate! {
    AuthStore {
        fn nonce_record(&self, params: NonceParams) -> StoreResult<bool>;
        fn api_key_insert(&self, key: ApiKey) -> StoreResult<()>;
        fn api_key_get_by_hash(&self, key_hash: &str) -> StoreResult<Option<ApiKey>>;
        fn api_keys_list(&self, owner: Option<&str>) -> StoreResult<Vec<ApiKey>>;
        fn api_key_revoke(&self, id: &str, now: Option<DateTime<Utc>>) -> StoreResult<bool>;
        fn api_key_touch(&self, id: &str, now: DateTime<Utc>) -> StoreResult<()>;
        fn oauth_clients_list(&self, tenant: Option<&str>) -> StoreResult<Vec<OAuthClient>>;
        fn oauth_client_revoke(&self, client_id: &str, now: Option<DateTime<Utc>>) -> StoreResult<bool>;
        fn capability_revoke(&self, capability: &str, reason: &str, now: Option<DateTime<Utc>>) -> StoreResult<()>;
        fn capability_revocations(&self) -> StoreResult<Vec<(String, String)>>;
        fn device_insert(&self, code: DeviceCode) -> StoreResult<()>;
        fn device_decide(&self, params: DeviceDecideParams) -> StoreResult<()>;
        fn device_poll(&self, params: DevicePollParams) -> StoreResult<DevicePoll>;
        fn oauth_client_get(&self, client_id: &str) -> StoreResult<Option<OAuthClient>>;
    }
}

delegate! {
    GovernanceStore {
        fn trace_insert(&self, trace: Trace) -> StoreResult<()>;
        fn trace_admit(&self, params: AdmitParams) -> StoreResult<JobInsertOutcome>;
        fn trace_settle(&self, params: TraceSettleParams) -> StoreResult<bool>;
        fn trace_get(&self, id: &str, scope: &Scope) -> StoreResult<Option<Trace>>;
        fn trace_counts(&self, scope: &Scope, since: DateTime<Utc>) -> StoreResult<Vec<DecisionCount>>;
        fn secret_put(&self, secret: Secret) -> StoreResult<()>;
        fn secret_get(&self, tenant: &str, name: &str) -> StoreResult<Option<Secret>>;
        fn secret_delete(&self, tenant: &str, name: &str) -> StoreResult<bool>;
    }
}

delegate! {
    EventStore {
        fn events_list(&self, query: EventQuery) -> StoreResult<Vec<StoredEvent>>;
        fn events_seqs(&self, query: EventQuery) -> StoreResult<Vec<i64>>;
        fn events_ingested_seqs(&self, scope: &Scope, correlation_id: Option<&str>, after_seq: i64, limit: i64) -> StoreResult<Vec<i64>>;
        fn event_key_put(&self, key: EventKey) -> StoreResult<()>;
        fn event_keys(&self) -> StoreResult<Vec<EventKey>>;
        fn event_ingest(&self, event: IngestedEvent) -> StoreResult<bool>;
        fn events_ingested(&self, scope: &Scope, correlation_id: Option<&str>, after_seq: i64, limit: i64) -> StoreResult<Vec<(i64, serde_json::Value)>>;
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    }
}
