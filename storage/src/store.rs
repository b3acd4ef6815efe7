//! The store API ([`JobStore`]) and [`Store`], the driver chosen by URL scheme.

use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::CapabilitySchema;
use crate::JobStats;
use crate::eventlog::EventLog;
use crate::postgres::PgStore;
use crate::sqlite::SqliteStore;
use crate::{
    ApiKey, DeviceCode, DeviceDecideParams, DevicePoll, DevicePollParams, ExpiredLease, Job,
    JobCancelParams, JobClaimParams, JobCompleteParams, JobExtendParams, JobFailParams,
    JobInsertOutcome, JobInsertParams, JobProgressParams, KvSetParams, NonceParams, Notifier,
    OAuthClient, PurgeParams, PurgeReport, Scope, StoreError, StoreResult,
};
use crate::{DecisionCount, Secret, Trace, TraceSettleParams};
use crate::{EventKey, EventQuery, IngestedEvent, StoredEvent};

/// The job store. Every method is one atomic unit: it commits entirely or not
/// at all, and two concurrent calls never observe each other half-done.
///
/// Methods that take a `now` use it as the clock (tests pin it); `None` means
/// the wall clock.
pub trait JobStore: Send + Sync {
    /// Checks the database answers (readiness probe).
    fn ping(&self) -> impl Future<Output = StoreResult<()>> + Send;

    /// Inserts a job. Atomically: refuses with [`StoreError::TooManyOpen`] when the
    /// tenant is at its cap; with an idempotency key, either records the key and
    /// inserts, or returns the earlier record and inserts nothing.
    fn job_insert(
        &self,
        params: JobInsertParams,
    ) -> impl Future<Output = StoreResult<JobInsertOutcome>> + Send;

    /// Leases the best eligible job (priority desc, attempts asc, age asc) to the
    /// caller, or returns `None`. Atomic under any concurrency: a job has at most
    /// one live lease. Eligible: open and due, or leased with an expired lease;
    /// attempts below max; matching topic, namespace, visibility, target worker,
    /// required capability and on-behalf-of filters. Increments attempts and
    /// issues a fresh random token.
    fn job_claim(
        &self,
        params: JobClaimParams,
    ) -> impl Future<Output = StoreResult<Option<Job>>> + Send;

    /// Settles a leased job as fulfilled, if the proof matches the live,
    /// unexpired lease; otherwise [`StoreError::LeaseLost`] and nothing changes.
    fn job_complete(
        &self,
        params: JobCompleteParams,
    ) -> impl Future<Output = StoreResult<Job>> + Send;

    /// Settles a leased job as failed, under the same lease check as
    /// [`JobStore::job_complete`]: back to open with exponential backoff when
    /// attempts remain and the failure is not terminal, dead otherwise.
    fn job_fail(&self, params: JobFailParams) -> impl Future<Output = StoreResult<Job>> + Send;

    /// Renews a live lease for `lease_ms` from now, under the same lease check.
    fn job_extend(&self, params: JobExtendParams) -> impl Future<Output = StoreResult<Job>> + Send;

    /// Records the latest progress report of a leased job, under the same
    /// lease check as [`JobStore::job_complete`]. One statement.
    fn job_progress(
        &self,
        params: JobProgressParams,
    ) -> impl Future<Output = StoreResult<Job>> + Send;

    /// Cancels a job that is not yet terminal. Returns the job as it was before
    /// (so the caller can tell a lease holder). Foreign tenants get
    /// [`StoreError::NotFound`]; terminal jobs [`StoreError::InvalidState`].
    fn job_cancel(&self, params: JobCancelParams) -> impl Future<Output = StoreResult<Job>> + Send;

    /// Reads a job visible to `scope` (own jobs only; public jobs are claimable
    /// by others but not readable).
    fn job_get(
        &self,
        id: &str,
        scope: &Scope,
    ) -> impl Future<Output = StoreResult<Option<Job>>> + Send;

    /// Every live lease held under `holder_key` (a neuron's identity), e.g. to
    /// count them against its concurrency after a reconnect. Read only.
    fn jobs_leased_by(
        &self,
        holder_key: &str,
        now: Option<DateTime<Utc>>,
    ) -> impl Future<Output = StoreResult<Vec<Job>>> + Send;

    /// Voids every lease that expired at or before `now`: back to open when
    /// attempts remain, dead otherwise. One atomic statement; returns what it did.
    fn jobs_expire_leases(
        &self,
        now: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<Vec<ExpiredLease>>> + Send;

    /// Topics of open jobs whose `run_at` fell in `(since, now]`: delayed and
    /// retried jobs that just became due, so their waiters can be woken. Read only.
    fn jobs_due_topics(
        &self,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<Vec<String>>> + Send;

    /// Deletes terminal jobs completed before the cutoff and every expired KV
    /// entry, nonce and idempotency record. Each kind is one statement.
    fn jobs_purge(
        &self,
        params: PurgeParams,
    ) -> impl Future<Output = StoreResult<PurgeReport>> + Send;

    /// Counts jobs by state for one tenant or all (`Scope::All`). Read only.
    fn jobs_count_open(&self, scope: &Scope) -> impl Future<Output = StoreResult<i64>> + Send;

    /// Live (open and leased) jobs counted by topic and state, with the
    /// oldest of each (see [`JobStats`]), for queue gauges. Read only; one
    /// statement.
    fn jobs_stats(&self) -> impl Future<Output = StoreResult<Vec<JobStats>>> + Send;

    /// Sets a KV entry (insert or replace) that expires after `ttl_ms`.
    fn kv_set(&self, params: KvSetParams) -> impl Future<Output = StoreResult<()>> + Send;

    /// Reads a live KV entry of `scope`; expired entries read as `None`.
    fn kv_get(
        &self,
        scope: &str,
        key: &str,
        now: Option<DateTime<Utc>>,
    ) -> impl Future<Output = StoreResult<Option<serde_json::Value>>> + Send;

    /// Records a request nonce. `true` when it is new; `false` when the same key
    /// used it before (a replay). One atomic insert.
    fn nonce_record(&self, params: NonceParams) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Stores a new API key (its hash).
    fn api_key_insert(&self, key: ApiKey) -> impl Future<Output = StoreResult<()>> + Send;

    /// Finds an API key by the SHA-256 hex of its secret.
    fn api_key_get_by_hash(
        &self,
        key_hash: &str,
    ) -> impl Future<Output = StoreResult<Option<ApiKey>>> + Send;

    /// Every API key, or those of one owner, oldest first (revoked ones included).
    fn api_keys_list(
        &self,
        owner: Option<&str>,
    ) -> impl Future<Output = StoreResult<Vec<ApiKey>>> + Send;

    /// Revokes an API key by id; `false` when there is no such key. A second
    /// revocation keeps the first time. One statement.
    fn api_key_revoke(
        &self,
        id: &str,
        now: Option<DateTime<Utc>>,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Records that a key was used at `now`. One statement.
    fn api_key_touch(
        &self,
        id: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Every OAuth client, or those of one tenant, oldest first.
    fn oauth_clients_list(
        &self,
        tenant: Option<&str>,
    ) -> impl Future<Output = StoreResult<Vec<OAuthClient>>> + Send;

    /// Revokes an OAuth client; `false` when there is no such client.
    fn oauth_client_revoke(
        &self,
        client_id: &str,
        now: Option<DateTime<Utc>>,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Records that an operator revoked a capability type (with the reason
    /// neurons are told). Idempotent. One statement.
    fn capability_revoke(
        &self,
        capability: &str,
        reason: &str,
        now: Option<DateTime<Utc>>,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Every revoked capability type and its reason.
    fn capability_revocations(
        &self,
    ) -> impl Future<Output = StoreResult<Vec<(String, String)>>> + Send;

    /// Records a new device authorization (pending).
    fn device_insert(&self, code: DeviceCode) -> impl Future<Output = StoreResult<()>> + Send;

    /// Approves (for a tenant) or denies a pending, unexpired device code by
    /// its user code. [`StoreError::NotFound`] when there is none,
    /// [`StoreError::Conflict`] when it was already decided. One statement.
    fn device_decide(
        &self,
        params: DeviceDecideParams,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Polls a device code (RFC 8628 §3.4/3.5). Atomically: records the poll,
    /// and on the first poll after approval creates the client and marks the
    /// code redeemed, so a code yields a client at most once.
    fn device_poll(
        &self,
        params: DevicePollParams,
    ) -> impl Future<Output = StoreResult<DevicePoll>> + Send;

    /// Finds an OAuth client.
    fn oauth_client_get(
        &self,
        client_id: &str,
    ) -> impl Future<Output = StoreResult<Option<OAuthClient>>> + Send;

    /// Stores `value` under `name` unless a value exists; returns the stored value
    /// either way (first writer wins across replicas).
    fn setting_get_or_insert(
        &self,
        name: &str,
        value: &str,
    ) -> impl Future<Output = StoreResult<String>> + Send;

    /// Records a governance trace. One insert.
    fn trace_insert(&self, trace: Trace) -> impl Future<Output = StoreResult<()>> + Send;

    /// Settles a pending trace (final status, worker, latency). One statement:
    /// `false`, and nothing changed, when the trace is unknown or already settled.
    fn trace_settle(
        &self,
        params: TraceSettleParams,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Reads a trace visible to `scope` (a tenant sees only its own).
    fn trace_get(
        &self,
        id: &str,
        scope: &Scope,
    ) -> impl Future<Output = StoreResult<Option<Trace>>> + Send;

    /// Counts the traces of `scope` created after `since`, by decision. Read only.
    fn trace_counts(
        &self,
        scope: &Scope,
        since: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<Vec<DecisionCount>>> + Send;

    /// Stores a secret, replacing one of the same tenant and name. One statement.
    fn secret_put(&self, secret: Secret) -> impl Future<Output = StoreResult<()>> + Send;

    /// Reads a tenant's secret.
    fn secret_get(
        &self,
        tenant: &str,
        name: &str,
    ) -> impl Future<Output = StoreResult<Option<Secret>>> + Send;

    /// Lists stored execution events in storage order, filtered. Read only.
    fn events_list(
        &self,
        query: EventQuery,
    ) -> impl Future<Output = StoreResult<Vec<StoredEvent>>> + Send;

    /// The sequence numbers [`JobStore::events_list`] would return for `query`
    /// (to learn a page's extent without loading its bodies).
    fn events_seqs(&self, query: EventQuery) -> impl Future<Output = StoreResult<Vec<i64>>> + Send;

    /// The sequence numbers [`JobStore::events_ingested`] would return.
    fn events_ingested_seqs(
        &self,
        scope: &Scope,
        correlation_id: Option<&str>,
        after_seq: i64,
        limit: i64,
    ) -> impl Future<Output = StoreResult<Vec<i64>>> + Send;

    /// Publishes a public key that verifies events (kept if the id exists).
    fn event_key_put(&self, key: EventKey) -> impl Future<Output = StoreResult<()>> + Send;

    /// Every published event key.
    fn event_keys(&self) -> impl Future<Output = StoreResult<Vec<EventKey>>> + Send;

    /// Stores an event a worker posted; `false` when its `event_id` was
    /// stored before (nothing changed). One statement.
    fn event_ingest(&self, event: IngestedEvent) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Lists posted events of `scope` (one correlation id, or all), after a
    /// sequence number, in storage order. Read only.
    fn events_ingested(
        &self,
        scope: &Scope,
        correlation_id: Option<&str>,
        after_seq: i64,
        limit: i64,
    ) -> impl Future<Output = StoreResult<Vec<(i64, serde_json::Value)>>> + Send;

    /// Deletes a tenant's secret; `false` when there was none. One statement.
    fn secret_delete(
        &self,
        tenant: &str,
        name: &str,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Stores the schemas of a capability, replacing any earlier ones whole
    /// (an absent output schema clears the old one). One statement.
    fn schema_put(&self, schema: CapabilitySchema) -> impl Future<Output = StoreResult<()>> + Send;

    /// Reads the schemas of a capability. Read only.
    fn schema_get(
        &self,
        capability: &str,
    ) -> impl Future<Output = StoreResult<Option<CapabilitySchema>>> + Send;

    /// Deletes the schemas of a capability; `false` when there were none.
    /// One statement.
    fn schema_delete(&self, capability: &str) -> impl Future<Output = StoreResult<bool>> + Send;
}

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
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            sqlite_full_sync: true,
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
    ($( fn $name:ident(&self $(, $arg:ident : $ty:ty)*) -> $ret:ty; )*) => {
        impl JobStore for Store {
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
    fn kv_set(&self, params: KvSetParams) -> StoreResult<()>;
    fn kv_get(&self, scope: &str, key: &str, now: Option<DateTime<Utc>>) -> StoreResult<Option<serde_json::Value>>;
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
    fn setting_get_or_insert(&self, name: &str, value: &str) -> StoreResult<String>;
    fn device_insert(&self, code: DeviceCode) -> StoreResult<()>;
    fn device_decide(&self, params: DeviceDecideParams) -> StoreResult<()>;
    fn device_poll(&self, params: DevicePollParams) -> StoreResult<DevicePoll>;
    fn oauth_client_get(&self, client_id: &str) -> StoreResult<Option<OAuthClient>>;
    fn trace_insert(&self, trace: Trace) -> StoreResult<()>;
    fn trace_settle(&self, params: TraceSettleParams) -> StoreResult<bool>;
    fn trace_get(&self, id: &str, scope: &Scope) -> StoreResult<Option<Trace>>;
    fn trace_counts(&self, scope: &Scope, since: DateTime<Utc>) -> StoreResult<Vec<DecisionCount>>;
    fn secret_put(&self, secret: Secret) -> StoreResult<()>;
    fn secret_get(&self, tenant: &str, name: &str) -> StoreResult<Option<Secret>>;
    fn secret_delete(&self, tenant: &str, name: &str) -> StoreResult<bool>;
    fn schema_put(&self, schema: CapabilitySchema) -> StoreResult<()>;
    fn schema_get(&self, capability: &str) -> StoreResult<Option<CapabilitySchema>>;
    fn schema_delete(&self, capability: &str) -> StoreResult<bool>;
    fn events_list(&self, query: EventQuery) -> StoreResult<Vec<StoredEvent>>;
    fn events_seqs(&self, query: EventQuery) -> StoreResult<Vec<i64>>;
    fn events_ingested_seqs(&self, scope: &Scope, correlation_id: Option<&str>, after_seq: i64, limit: i64) -> StoreResult<Vec<i64>>;
    fn event_key_put(&self, key: EventKey) -> StoreResult<()>;
    fn event_keys(&self) -> StoreResult<Vec<EventKey>>;
    fn event_ingest(&self, event: IngestedEvent) -> StoreResult<bool>;
    fn events_ingested(&self, scope: &Scope, correlation_id: Option<&str>, after_seq: i64, limit: i64) -> StoreResult<Vec<(i64, serde_json::Value)>>;
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
