//! Domain types of the job store: jobs, their states and leases, and the
//! parameter structs each store method takes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch: how every time is stored in both drivers.
pub(crate) fn to_ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// The inverse of [`to_ms`]; out-of-range values clamp to the epoch rather than panic.
pub(crate) fn from_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Where a job is in its life. `Open → Leased → Fulfilled | Open (retry) | Dead`, plus `Cancelled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting to be claimed once `run_at` has passed.
    Open,
    /// Held by exactly one lease until it settles or the lease expires.
    Leased,
    /// Settled successfully; `result` holds the output.
    Fulfilled,
    /// Out of attempts, or failed terminally; `error` says why.
    Dead,
    /// Withdrawn by its submitter or an operator.
    Cancelled,
}

impl JobState {
    /// The name stored in the `state` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Leased => "leased",
            Self::Fulfilled => "fulfilled",
            Self::Dead => "dead",
            Self::Cancelled => "cancelled",
        }
    }

    /// Parses a stored state name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "open" => Self::Open,
            "leased" => Self::Leased,
            "fulfilled" => Self::Fulfilled,
            "dead" => Self::Dead,
            "cancelled" => Self::Cancelled,
            _ => return None,
        })
    }

    /// Whether the job can never run again.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Fulfilled | Self::Dead | Self::Cancelled)
    }
}

/// Who may see and claim a job besides its own tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    /// Only the submitting tenant, in the job's namespace.
    Private,
    /// Any tenant, from any namespace.
    Public,
}

impl Visibility {
    /// The name stored in the `visibility` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Private => "private",
            Self::Public => "public",
        }
    }

    /// Parses a stored visibility; anything unknown is private (fail closed).
    pub fn parse(s: &str) -> Self {
        if s == "public" {
            Self::Public
        } else {
            Self::Private
        }
    }
}

/// The door a job came in by; recorded for telemetry and the event chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// Intent Bus `POST /intent`.
    IntentBus,
    /// Neuron task API.
    Neuron,
    /// Governance run.
    Governance,
}

impl Protocol {
    /// The name stored in the `protocol` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::IntentBus => "intent_bus",
            Self::Neuron => "neuron",
            Self::Governance => "governance",
        }
    }

    /// Parses a stored protocol name.
    pub fn parse(s: &str) -> Self {
        match s {
            "neuron" => Self::Neuron,
            "governance" => Self::Governance,
            _ => Self::IntentBus,
        }
    }
}

/// How a settled result is to be read back (Intent Bus `result_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResultType {
    /// `result` is any JSON value.
    Json,
    /// `result` is a JSON string.
    Text,
}

impl ResultType {
    /// The name stored in the `result_type` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Text => "text",
        }
    }

    /// Parses a stored result type; unknown values read as JSON.
    pub fn parse(s: &str) -> Self {
        if s == "text" { Self::Text } else { Self::Json }
    }
}

/// One job: one row in the store, whichever protocol submitted it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Job {
    /// Opaque unique id (a UUID string).
    pub id: String,
    /// The submitting tenant (the owner of the API key or token).
    pub tenant: String,
    /// The protocol the job came in by.
    pub protocol: Protocol,
    /// What work this is: an Intent Bus goal or a neuron capability type.
    pub topic: String,
    /// Routing namespace (`default` unless given).
    pub namespace: String,
    /// Who else may see it.
    pub visibility: Visibility,
    /// 0..=1000, higher first.
    pub priority: i32,
    /// Not claimable before this instant.
    pub run_at: DateTime<Utc>,
    /// Current state.
    pub state: JobState,
    /// Number of leases granted so far.
    pub attempts: i32,
    /// Leases allowed before the job is dead.
    pub max_attempts: i32,
    /// Base of the exponential retry delay, in milliseconds.
    pub backoff_base_ms: i64,
    /// Only this worker id may claim it, when set.
    pub target_worker: Option<String>,
    /// Only a worker offering this capability may claim it, when set.
    pub required_capability: Option<String>,
    /// The user the job runs on behalf of, when set.
    pub on_behalf_of: Option<String>,
    /// The job's input (any JSON value).
    pub input: serde_json::Value,
    /// Free-form metadata (trace context, labels).
    pub metadata: Option<serde_json::Value>,
    /// Output once fulfilled.
    pub result: Option<serde_json::Value>,
    /// How `result` reads back.
    pub result_type: ResultType,
    /// Last error (failed attempt, expiry, or terminal failure).
    pub error: Option<String>,
    /// The live lease, if the job is leased.
    pub lease: Option<Lease>,
    /// Who held the latest lease, kept after it settled or expired (the worker
    /// that answered a fulfilled job).
    pub last_holder: Option<String>,
    /// The API key id or neuron session key of the latest lease.
    pub last_holder_key: Option<String>,
    /// When the latest lease was granted.
    pub leased_at: Option<DateTime<Utc>>,
    /// When it was submitted.
    pub created_at: DateTime<Utc>,
    /// Last state change.
    pub updated_at: DateTime<Utc>,
    /// When it reached a terminal state.
    pub completed_at: Option<DateTime<Utc>>,
    /// Latest progress report (`{percent?, message?, data?, at}`), if any.
    pub progress: Option<serde_json::Value>,
}

/// The one live lease on a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lease {
    /// Worker id or neuron session holding it.
    pub holder: String,
    /// The API key id (or session) that claimed, for settlements that carry no token.
    pub holder_key: Option<String>,
    /// Random secret every settlement must present (unless checked by holder key).
    pub token: String,
    /// The lease is void after this instant.
    pub expires_at: DateTime<Utc>,
}

/// A job to insert.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// Caller-chosen id (so a response can be built before the insert commits).
    pub id: String,
    /// See [`Job::tenant`].
    pub tenant: String,
    /// See [`Job::protocol`].
    pub protocol: Protocol,
    /// See [`Job::topic`].
    pub topic: String,
    /// See [`Job::namespace`].
    pub namespace: String,
    /// See [`Job::visibility`].
    pub visibility: Visibility,
    /// See [`Job::priority`].
    pub priority: i32,
    /// Delay before the job becomes claimable, in milliseconds (0 = now).
    pub delay_ms: i64,
    /// See [`Job::max_attempts`]; must be ≥ 1.
    pub max_attempts: i32,
    /// See [`Job::backoff_base_ms`].
    pub backoff_base_ms: i64,
    /// See [`Job::target_worker`].
    pub target_worker: Option<String>,
    /// See [`Job::required_capability`].
    pub required_capability: Option<String>,
    /// See [`Job::on_behalf_of`].
    pub on_behalf_of: Option<String>,
    /// See [`Job::input`].
    pub input: serde_json::Value,
    /// See [`Job::metadata`].
    pub metadata: Option<serde_json::Value>,
}

/// An idempotency record to take together with an insert.
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    /// The client's `Idempotency-Key`.
    pub key: String,
    /// Hash of the request body: a replay with another body is a conflict.
    pub request_hash: String,
    /// HTTP status of the first response.
    pub response_status: u16,
    /// Body of the first response, returned verbatim on replay.
    pub response_body: String,
    /// The record is forgotten after this instant.
    pub expires_at: DateTime<Utc>,
}

/// Parameters of [`crate::JobStore::job_insert`].
#[derive(Debug, Clone)]
pub struct JobInsertParams {
    /// The job.
    pub job: NewJob,
    /// Record this key atomically with the insert, or return the earlier record.
    pub idempotency: Option<IdempotencyKey>,
    /// Refuse when the tenant already has this many open or leased jobs (`None` = no cap).
    pub max_open_per_tenant: Option<i64>,
    /// The clock (tests pin it).
    pub now: Option<DateTime<Utc>>,
}

/// What an insert did.
#[derive(Debug, Clone, PartialEq)]
pub enum JobInsertOutcome {
    /// The job was inserted.
    Inserted(Box<Job>),
    /// The idempotency key was seen before: nothing was inserted.
    Replayed {
        /// The first request's body hash (the caller compares).
        request_hash: String,
        /// The first response's status.
        response_status: u16,
        /// The first response's body.
        response_body: String,
    },
}

/// Which jobs a tenant may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every job (operators, the admin key).
    All,
    /// The tenant's own jobs, plus public ones where the method allows.
    Tenant(String),
}

/// Parameters of [`crate::JobStore::job_claim`].
#[derive(Debug, Clone)]
pub struct JobClaimParams {
    /// Whose jobs: own private jobs (in `namespace`), own public jobs, and
    /// (with `public_work`) other tenants' public jobs.
    pub scope: Scope,
    /// Also take other tenants' public jobs (Intent Bus claims always do; a
    /// neuron only when its capability opts in).
    pub public_work: bool,
    /// Only this topic (`None` = any).
    pub topic: Option<String>,
    /// Private jobs must be in this namespace (`None` = any).
    pub namespace: Option<String>,
    /// Only jobs submitted by this tenant (`publisher=` filter).
    pub publisher: Option<String>,
    /// The claiming worker: matched against `target_worker` and recorded as lease holder.
    pub worker_id: String,
    /// The API key id (or session id) claiming, for token-less settlement.
    pub holder_key: Option<String>,
    /// Capabilities the worker offers (matched against `required_capability`).
    pub capabilities: Vec<String>,
    /// `Some(user)`: only jobs on behalf of that user; `None`: any.
    pub on_behalf_of: Option<String>,
    /// Lease length in milliseconds.
    pub lease_ms: i64,
    /// The clock.
    pub now: Option<DateTime<Utc>>,
}

/// How a settlement proves it holds the lease. Every part given must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseProof {
    /// The claim token alone (the token is the only credential, e.g. a neuron lease id).
    Token(String),
    /// The API key id that claimed (Intent Bus 2.0 clients send no token).
    HolderKey(String),
    /// Token and claiming key both (Intent Bus 2.1 "claim ownership
    /// isolation": a leaked token is useless to another key).
    TokenAndKey {
        /// The claim token.
        token: String,
        /// The API key id that claimed.
        holder_key: String,
    },
}

/// Parameters of [`crate::JobStore::job_complete`].
#[derive(Debug, Clone)]
pub struct JobCompleteParams {
    /// The job.
    pub id: String,
    /// Proof of the live lease.
    pub proof: LeaseProof,
    /// The output.
    pub result: serde_json::Value,
    /// How the output reads back.
    pub result_type: ResultType,
    /// The clock.
    pub now: Option<DateTime<Utc>>,
}

/// Parameters of [`crate::JobStore::job_fail`].
#[derive(Debug, Clone)]
pub struct JobFailParams {
    /// The job.
    pub id: String,
    /// Proof of the live lease.
    pub proof: LeaseProof,
    /// Why it failed (stored, truncated by the caller).
    pub error: String,
    /// `true`: dead now whatever attempts remain; `false`: retry with backoff if attempts remain.
    pub terminal: bool,
    /// `true`: this attempt does not count (the worker never started it).
    pub refund_attempt: bool,
    /// Longest retry delay, in milliseconds.
    pub max_backoff_ms: i64,
    /// The clock.
    pub now: Option<DateTime<Utc>>,
}

/// Parameters of [`crate::JobStore::job_extend`].
#[derive(Debug, Clone)]
pub struct JobExtendParams {
    /// The job.
    pub id: String,
    /// Proof of the live lease.
    pub proof: LeaseProof,
    /// New lease length from now, in milliseconds.
    pub lease_ms: i64,
    /// The clock.
    pub now: Option<DateTime<Utc>>,
}

/// Parameters of [`crate::JobStore::job_progress`].
#[derive(Debug, Clone)]
pub struct JobProgressParams {
    /// The job.
    pub id: String,
    /// Proof of the live lease.
    pub proof: LeaseProof,
    /// The report, stored as given (replaces the previous one).
    pub progress: serde_json::Value,
    /// The clock.
    pub now: Option<DateTime<Utc>>,
}

/// Parameters of [`crate::JobStore::job_cancel`].
#[derive(Debug, Clone)]
pub struct JobCancelParams {
    /// The job.
    pub id: String,
    /// Who asks: a tenant may cancel only its own jobs.
    pub scope: Scope,
    /// Why (stored as the error).
    pub reason: String,
    /// The clock.
    pub now: Option<DateTime<Utc>>,
}

/// A lease that the expiry sweep voided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredLease {
    /// The job.
    pub job_id: String,
    /// Its topic (to wake waiters).
    pub topic: String,
    /// Who held the lease.
    pub holder: String,
    /// The voided token.
    pub token: String,
    /// Where the job went: `Open` (attempts remain) or `Dead`.
    pub new_state: JobState,
}

/// The live jobs of one topic in one state: what
/// [`crate::JobStore::jobs_stats`] reports for queue gauges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobStats {
    /// The topic.
    pub topic: String,
    /// `Open` or `Leased`.
    pub state: JobState,
    /// How many jobs.
    pub count: i64,
    /// Open jobs: the earliest `run_at` (when it is past, the oldest due job
    /// has waited since then). Leased jobs: the earliest lease grant
    /// (`leased_at`; renewals do not move it).
    pub oldest: DateTime<Utc>,
}

/// Parameters of [`crate::JobStore::jobs_purge`].
#[derive(Debug, Clone)]
pub struct PurgeParams {
    /// Terminal jobs completed before this instant are deleted.
    pub completed_before: DateTime<Utc>,
    /// Execution events completed, and ingested events received, before this
    /// instant are deleted (`None`: kept).
    pub events_before: Option<DateTime<Utc>>,
    /// The clock (expired KV entries, nonces and idempotency records go too).
    pub now: Option<DateTime<Utc>>,
}

/// How many rows a purge removed, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeReport {
    /// Terminal jobs past retention.
    pub jobs: u64,
    /// Expired KV entries.
    pub kv: u64,
    /// Expired nonce records.
    pub nonces: u64,
    /// Expired idempotency records.
    pub idempotency: u64,
    /// Expired device authorizations.
    pub devices: u64,
    /// Governance traces past retention.
    pub traces: u64,
    /// Execution events past their retention.
    pub events: u64,
    /// Ingested events past their retention.
    pub ingested: u64,
}

/// Parameters of [`crate::JobStore::kv_set`].
#[derive(Debug, Clone)]
pub struct KvSetParams {
    /// Whose key space (a tenant).
    pub scope: String,
    /// The key.
    pub key: String,
    /// The value, as given (any JSON value).
    pub value: serde_json::Value,
    /// Lifetime in milliseconds.
    pub ttl_ms: i64,
    /// The clock.
    pub now: Option<DateTime<Utc>>,
}

/// Parameters of [`crate::JobStore::nonce_record`].
#[derive(Debug, Clone)]
pub struct NonceParams {
    /// The API key id the nonce belongs to.
    pub key_id: String,
    /// The nonce.
    pub nonce: String,
    /// Keep the record until then (≥ the signature window).
    pub expires_at: DateTime<Utc>,
}

/// The role an API key grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Full access: key creation, every tenant's jobs, no rate limit.
    Admin,
    /// One tenant's jobs, rate limited.
    Tenant,
}

impl Role {
    /// The name stored in the `role` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Tenant => "tenant",
        }
    }

    /// Parses a stored role; anything unknown is a tenant (fail closed).
    pub fn parse(s: &str) -> Self {
        if s == "admin" {
            Self::Admin
        } else {
            Self::Tenant
        }
    }
}

/// A stored API key (only its hash is kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// Stable id (not secret), used for nonces and lease holders.
    pub id: String,
    /// SHA-256 hex of the key.
    pub key_hash: String,
    /// The owner, which names the tenant.
    pub owner: String,
    /// What it may do.
    pub role: Role,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was revoked; a revoked key authenticates nothing.
    pub revoked_at: Option<DateTime<Utc>>,
    /// When it was last seen authenticating (to the minute, roughly).
    pub last_used_at: Option<DateTime<Utc>>,
}

/// An OAuth client (a neuron host's durable credential).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthClient {
    /// Public id.
    pub client_id: String,
    /// SHA-256 hex of the secret (the secret itself is shown once).
    pub secret_hash: String,
    /// The tenant its tokens act for.
    pub tenant: String,
    /// Human name given at enrollment.
    pub name: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was revoked; a revoked client gets no more tokens.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A pending RFC 8628 device authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCode {
    /// SHA-256 hex of the device code (the code itself is the poller's secret).
    pub device_code_hash: String,
    /// What the operator types to approve.
    pub user_code: String,
    /// Who asked.
    pub client_name: String,
    /// Void after this instant.
    pub expires_at: DateTime<Utc>,
    /// Minimum polling interval, milliseconds.
    pub interval_ms: i64,
    /// When it was requested.
    pub created_at: DateTime<Utc>,
}

/// Parameters of [`crate::JobStore::device_decide`].
#[derive(Debug, Clone)]
pub struct DeviceDecideParams {
    /// The code the operator read.
    pub user_code: String,
    /// `Some(tenant)`: approve for that tenant; `None`: deny.
    pub tenant: Option<String>,
    /// The clock.
    pub now: Option<DateTime<Utc>>,
}

/// Parameters of [`crate::JobStore::device_poll`].
#[derive(Debug, Clone)]
pub struct DevicePollParams {
    /// SHA-256 hex of the presented device code.
    pub device_code_hash: String,
    /// The client to create if the code was approved (its tenant is filled in
    /// from the approval).
    pub new_client: OAuthClient,
    /// The clock.
    pub now: Option<DateTime<Utc>>,
}

/// What polling a device code found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DevicePoll {
    /// No such code, or already redeemed.
    Unknown,
    /// Past its lifetime.
    Expired,
    /// Not yet decided.
    Pending,
    /// Polled faster than its interval.
    SlowDown,
    /// The operator denied it.
    Denied,
    /// Approved: this client now exists (redeemed, single use).
    Issued(OAuthClient),
}

/// What a device poll does, decided from the stored row (pure, shared by both drivers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PollStep {
    /// Answer without writing.
    Answer(DevicePoll),
    /// Record the poll time, then answer.
    Record(DevicePoll),
    /// Create the client for this tenant and mark the code redeemed.
    Redeem(String),
}

/// The stored state of a device code: (state, tenant, expires_at, interval_ms, last_poll_at).
pub(crate) type DeviceRow = (String, Option<String>, i64, i64, Option<i64>);

pub(crate) fn poll_step(row: Option<DeviceRow>, now_ms: i64) -> PollStep {
    let Some((state, tenant, expires_at, interval_ms, last_poll)) = row else {
        return PollStep::Answer(DevicePoll::Unknown);
    };
    if state == "redeemed" {
        return PollStep::Answer(DevicePoll::Unknown);
    }
    if expires_at <= now_ms {
        return PollStep::Answer(DevicePoll::Expired);
    }
    match (state.as_str(), tenant) {
        ("denied", _) => PollStep::Answer(DevicePoll::Denied),
        ("approved", Some(t)) => PollStep::Redeem(t),
        _ if last_poll.is_some_and(|at| now_ms - at < interval_ms) => {
            PollStep::Record(DevicePoll::SlowDown)
        }
        _ => PollStep::Record(DevicePoll::Pending),
    }
}

#[cfg(test)]
mod poll_tests {
    use super::*;

    #[test]
    fn poll_steps() {
        let row = |state: &str, tenant: Option<&str>, last: Option<i64>| {
            Some((
                state.to_owned(),
                tenant.map(str::to_owned),
                10_000,
                1_000,
                last,
            ))
        };
        assert_eq!(poll_step(None, 0), PollStep::Answer(DevicePoll::Unknown));
        assert_eq!(
            poll_step(row("pending", None, None), 10_000),
            PollStep::Answer(DevicePoll::Expired)
        );
        assert_eq!(
            poll_step(row("pending", None, None), 5_000),
            PollStep::Record(DevicePoll::Pending)
        );
        assert_eq!(
            poll_step(row("pending", None, Some(4_500)), 5_000),
            PollStep::Record(DevicePoll::SlowDown)
        );
        assert_eq!(
            poll_step(row("pending", None, Some(4_000)), 5_000),
            PollStep::Record(DevicePoll::Pending)
        );
        assert_eq!(
            poll_step(row("denied", None, None), 5_000),
            PollStep::Answer(DevicePoll::Denied)
        );
        assert_eq!(
            poll_step(row("approved", Some("t"), None), 5_000),
            PollStep::Redeem("t".into())
        );
        assert_eq!(
            poll_step(row("redeemed", Some("t"), None), 5_000),
            PollStep::Answer(DevicePoll::Unknown)
        );
    }
}

/// The audit record of one governance decision (a run, chat or agent run),
/// and of the job it dispatched. Decision, kind and status are the governance
/// protocol's names; the store keeps them as given.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trace {
    /// The trace id (a UUID string).
    pub id: String,
    /// The requesting tenant.
    pub tenant: String,
    /// `run`, `chat` or `agent`.
    pub kind: String,
    /// `ALLOW`, `THROTTLE` or `BLOCK`.
    pub decision: String,
    /// Why.
    pub reason: String,
    /// 0..=1.
    pub risk_score: f64,
    /// The policy that decided (`name@version`).
    pub policy: String,
    /// Ids of the rules that matched.
    pub matched_rules: Vec<String>,
    /// The rules' violations (a JSON array of flat objects).
    pub violations: serde_json::Value,
    /// The mode chosen.
    pub mode: String,
    /// The reasoning budget granted.
    pub budget: f64,
    /// `blocked`, `pending`, `completed`, `failed`, `timeout` or `cancelled`.
    pub status: String,
    /// The dispatched job (none when blocked).
    pub job_id: Option<String>,
    /// The job's topic.
    pub topic: Option<String>,
    /// The worker or neuron that settled the job.
    pub worker: Option<String>,
    /// Time from request to answer, milliseconds (0 while pending).
    pub latency_ms: f64,
    /// When the decision was taken.
    pub created_at: DateTime<Utc>,
    /// When the run ended.
    pub settled_at: Option<DateTime<Utc>>,
    /// What a BLOCK's execution event records as its inputs (captured per the
    /// event log's mode); not stored with the trace, so reads give `None`.
    #[serde(skip)]
    pub inputs: Option<serde_json::Value>,
}

/// Parameters of [`crate::JobStore::trace_settle`].
#[derive(Debug, Clone)]
pub struct TraceSettleParams {
    /// The trace.
    pub id: String,
    /// The final status.
    pub status: String,
    /// The worker that settled the job, if any.
    pub worker: Option<String>,
    /// Time from request to answer, milliseconds.
    pub latency_ms: f64,
    /// The clock.
    pub now: Option<DateTime<Utc>>,
}

/// Decisions of one kind counted over a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionCount {
    /// The decision name.
    pub decision: String,
    /// How many traces took it.
    pub count: i64,
}

/// A stored secret: ciphertext only (the caller encrypts and decrypts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secret {
    /// The owning tenant.
    pub tenant: String,
    /// Its name (the client's `credential_ref`).
    pub name: String,
    /// Free-form provider label.
    pub provider: String,
    /// Tools allowed to use it.
    pub allowed_tools: Vec<String>,
    /// Opaque sealed value (nonce and AEAD ciphertext, encoded by the caller).
    pub ciphertext: String,
    /// When it was first stored.
    pub created_at: DateTime<Utc>,
    /// When it was last replaced.
    pub updated_at: DateTime<Utc>,
}

/// The JSON Schemas an operator registered for one capability type. The
/// store keeps the documents opaque; callers compile and apply them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapabilitySchema {
    /// The capability type (a topic), e.g. `acme/echo`.
    pub capability: String,
    /// Schema every task input must match.
    pub input_schema: serde_json::Value,
    /// Schema the neuron checks its output against, if any.
    pub output_schema: Option<serde_json::Value>,
    /// When it was last stored (the caller's clock).
    pub updated_at: DateTime<Utc>,
}

/// Filters of [`crate::JobStore::events_list`]; every `Some` must match.
#[derive(Debug, Clone)]
pub struct EventQuery {
    /// Whose events (a tenant sees only its own).
    pub scope: Scope,
    /// One chain.
    pub correlation_id: Option<String>,
    /// One topic.
    pub topic: Option<String>,
    /// `intent_bus`, `neuron` or `governance`.
    pub protocol: Option<String>,
    /// `ok` or `error`.
    pub status: Option<String>,
    /// Completed at or after.
    pub since: Option<DateTime<Utc>>,
    /// Completed before.
    pub until: Option<DateTime<Utc>>,
    /// Only events stored after this sequence number (pagination cursor).
    pub after_seq: i64,
    /// At most this many.
    pub limit: i64,
}

/// An event with its storage sequence number (the pagination cursor).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Increases with every stored event.
    pub seq: i64,
    /// The signed event.
    pub event: agw_events::ExecutionEvent,
}

/// A public key that verifies events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventKey {
    /// `<instance_id>:k1`.
    pub key_id: String,
    /// Raw Ed25519 public key, base64.
    pub public_key: String,
    /// When it was first published.
    pub created_at: DateTime<Utc>,
}

/// An event a worker posted itself (`POST /v1/events`): kept as received,
/// linked to dispatches by correlation id, never part of the gateway's chains.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestedEvent {
    /// The posting tenant.
    pub tenant: String,
    /// The event's `event_id` (a repeated post is ignored).
    pub event_id: String,
    /// Its `correlation_id`.
    pub correlation_id: String,
    /// The event as posted.
    pub body: serde_json::Value,
    /// When it arrived.
    pub received_at: DateTime<Utc>,
}
