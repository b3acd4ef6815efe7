//! Jobs and leases: the job, its states, and the parameters of [`crate::JobStore`].

use super::*;

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
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "intent_bus" => Self::IntentBus,
            "neuron" => Self::Neuron,
            "governance" => Self::Governance,
            _ => return None,
        })
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

/// The jobs of one topic in one state, as the console's topic view counts
/// them ([`crate::JobStore::jobs_topic_counts`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicCount {
    /// The topic.
    pub topic: String,
    /// The state.
    pub state: JobState,
    /// Open jobs waiting for a retry after a failed attempt or an expired
    /// lease (their `error` is set); always `false` for other states.
    pub failed: bool,
    /// How many jobs.
    pub count: i64,
    /// Open jobs: the earliest `run_at`; others: the earliest `created_at`.
    pub oldest: DateTime<Utc>,
}

/// Which jobs [`crate::JobStore::jobs_list`] returns: newest first, one page.
#[derive(Debug, Clone)]
pub struct JobListParams {
    /// Whose jobs (a tenant sees only its own).
    pub scope: Scope,
    /// One topic, or all.
    pub topic: Option<String>,
    /// One state, or all.
    pub state: Option<JobState>,
    /// Only open jobs waiting for a retry after a failure (see [`TopicCount::failed`]).
    pub failed_only: bool,
    /// Keyset cursor: only jobs created before this job (`created_at`, `id`).
    pub before: Option<(DateTime<Utc>, String)>,
    /// At most this many.
    pub limit: i64,
}

/// Parameters of [`crate::JobStore::job_retry`].
#[derive(Debug, Clone)]
pub struct JobRetryParams {
    /// The job.
    pub id: String,
    /// Who asks: a tenant may retry only its own jobs.
    pub scope: Scope,
    /// Who retried it (recorded in the job's event).
    pub by: String,
    /// The clock.
    pub now: Option<DateTime<Utc>>,
}

/// Parameters of [`crate::JobStore::jobs_purge_topic`].
#[derive(Debug, Clone)]
pub struct TopicPurgeParams {
    /// Whose jobs (a tenant purges only its own).
    pub scope: Scope,
    /// The topic.
    pub topic: String,
}

/// Jobs created and settled per minute on one topic
/// ([`crate::JobStore::jobs_activity`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MinuteActivity {
    /// Jobs created in the minute.
    pub created: i64,
    /// Jobs that reached a terminal state in the minute.
    pub settled: i64,
}

/// Per-minute activity of one topic since a given instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicActivity {
    /// The topic.
    pub topic: String,
    /// Minute `i` covers `[since + i min, since + (i+1) min)`.
    pub minutes: Vec<MinuteActivity>,
}

/// A lease holder seen on a topic ([`crate::JobStore::jobs_recent_holders`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicHolder {
    /// The topic.
    pub topic: String,
    /// The worker id or neuron that held a lease.
    pub holder: String,
    /// Neuron or Intent Bus worker (by its holder key).
    pub kind: HolderKind,
    /// Its latest lease grant on the topic.
    pub last_leased: DateTime<Utc>,
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

/// Who holds a lease, told by its holder key: neuron sessions hold theirs
/// under [`HolderKind::neuron_key`]; anything else is an Intent Bus worker's
/// API key id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HolderKind {
    /// A neuron session (lease pushed over SSE).
    Neuron,
    /// An Intent Bus worker (claimed by polling).
    Worker,
}

impl HolderKind {
    const NEURON_PREFIX: &'static str = "neuron:";

    /// The lease-holder key of a neuron: stable across its reconnects,
    /// distinct per tenant.
    pub fn neuron_key(tenant: &str, neuron_id: &str) -> String {
        format!("{}{tenant}:{neuron_id}", Self::NEURON_PREFIX)
    }

    /// Who holds a lease under `holder_key`.
    pub fn of(holder_key: &str) -> Self {
        if holder_key.starts_with(Self::NEURON_PREFIX) {
            Self::Neuron
        } else {
            Self::Worker
        }
    }
}

impl Job {
    /// The job as a failed settlement leaves it (what the fail statement
    /// computes): one attempt refunded if asked, then dead when the failure
    /// is terminal or no attempt is left, open for a retry otherwise.
    pub(crate) fn after_failure(&self, terminal: bool, refund_attempt: bool) -> Job {
        let mut after = self.clone();
        after.attempts -= i32::from(refund_attempt);
        let dead = terminal || after.attempts >= after.max_attempts;
        after.state = if dead { JobState::Dead } else { JobState::Open };
        after
    }
}
