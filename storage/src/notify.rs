//! Wake-ups. Topic wake-ups say "a job may be claimable on topic T"; job
//! events say "this watched job made progress or settled" (a governance run
//! waits on them). In-process for SQLite; for PostgreSQL the driver
//! `NOTIFY`s and a listener task feeds every replica's [`Notifier`].

use std::sync::Arc;

use agw_events::ExecutionEvent;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::{Job, JobClaimParams, JobState, Protocol, Scope, Visibility};

/// An execution event this process committed, with its stored JSON (so
/// exporters need not serialize it again).
#[derive(Debug, Clone, PartialEq)]
pub struct CommittedEvent {
    /// The event.
    pub event: ExecutionEvent,
    /// The event as JSON, as stored.
    pub json: String,
}

/// Channel name used with PostgreSQL `LISTEN`/`NOTIFY` for topic wake-ups.
pub const PG_CHANNEL: &str = "agw_jobs";

/// Channel name used with PostgreSQL `LISTEN`/`NOTIFY` for job events.
pub const PG_JOB_CHANNEL: &str = "agw_job_events";

/// PostgreSQL refuses `NOTIFY` payloads from 8000 bytes on; larger progress
/// reports travel as "re-read the job".
const MAX_PG_PAYLOAD: usize = 7900;

/// What happened to a watched job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobChange {
    /// A progress report: the report, or `None` when it was too large to
    /// carry (re-read the job for the latest one).
    Progress(Option<serde_json::Value>),
    /// The job reached this terminal state.
    Settled(JobState),
}

/// A change of one watched job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobEvent {
    /// The job.
    pub id: String,
    /// What happened.
    pub change: JobChange,
}

impl JobEvent {
    /// Whether anyone waits on changes of `job`: governance runs only, so the
    /// other protocols pay nothing for this channel.
    pub fn watched(job: &Job) -> bool {
        job.protocol == Protocol::Governance
    }

    /// The `NOTIFY` payload (always under PostgreSQL's limit).
    pub fn to_payload(&self) -> String {
        let text = serde_json::to_string(self).unwrap_or_default();
        if text.len() <= MAX_PG_PAYLOAD {
            return text;
        }
        let slim = Self {
            id: self.id.clone(),
            change: JobChange::Progress(None),
        };
        serde_json::to_string(&slim).unwrap_or_default()
    }

    /// Parses a `NOTIFY` payload.
    pub fn from_payload(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }
}

/// What a claimant must know of a job to tell whether its claim could take
/// it: the filters of the claim statement, minus time and attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobHint {
    /// The job.
    pub id: String,
    /// The submitting tenant.
    pub tenant: String,
    /// Its namespace.
    pub namespace: String,
    /// Whether other tenants may claim it.
    pub public: bool,
    /// See [`Job::target_worker`].
    pub target_worker: Option<String>,
    /// See [`Job::required_capability`].
    pub required_capability: Option<String>,
    /// See [`Job::on_behalf_of`].
    pub on_behalf_of: Option<String>,
}

impl JobHint {
    /// The hint of `job`.
    pub fn of(job: &Job) -> Self {
        Self {
            id: job.id.clone(),
            tenant: job.tenant.clone(),
            namespace: job.namespace.clone(),
            public: job.visibility == Visibility::Public,
            target_worker: job.target_worker.clone(),
            required_capability: job.required_capability.clone(),
            on_behalf_of: job.on_behalf_of.clone(),
        }
    }

    /// Whether a claim with `p` could take this job on `topic` once it is
    /// due: the claim statements' topic, tenant, visibility, namespace,
    /// publisher, target-worker, capability and on-behalf-of filters
    /// (`sql::build`), in Rust. A waiter told "no" is not woken for the job,
    /// so this must never say "no" where the claim would take it.
    pub fn claimable_by(&self, topic: &str, p: &JobClaimParams) -> bool {
        let namespace_ok = p.namespace.as_ref().is_none_or(|n| *n == self.namespace);
        let visible = match (&p.scope, &p.topic) {
            (_, Some(t)) if t != topic => return false,
            (Scope::All, _) => self.public || namespace_ok,
            // Any topic: one scan over own jobs and every public one.
            (Scope::Tenant(t), None) => self.public || (*t == self.tenant && namespace_ok),
            (Scope::Tenant(t), Some(_)) if *t == self.tenant => self.public || namespace_ok,
            (Scope::Tenant(_), Some(_)) => p.public_work && self.public,
        };
        visible
            && p.publisher.as_ref().is_none_or(|t| *t == self.tenant)
            && self
                .target_worker
                .as_ref()
                .is_none_or(|w| *w == p.worker_id)
            && self
                .required_capability
                .as_ref()
                .is_none_or(|c| p.capabilities.contains(c))
            && p.on_behalf_of
                .as_ref()
                .is_none_or(|u| self.on_behalf_of.as_ref() == Some(u))
    }
}

/// A topic wake-up: a job may be claimable on `topic`. When this process
/// committed the job, the wake-up also says which job it is (`job`), so a
/// waiter that could not take it need not look; wake-ups from elsewhere
/// (another replica's `NOTIFY`, an expiry, a delayed job falling due) name
/// only the topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wake {
    topic: Box<str>,
    job: Option<JobHint>,
}

impl Wake {
    /// A wake-up for `topic`, about the job `job` describes when given.
    pub fn new(topic: &str, job: Option<JobHint>) -> Self {
        Self {
            topic: topic.into(),
            job,
        }
    }

    /// A wake-up for `topic` that says nothing of the job.
    pub fn topic_only(topic: &str) -> Self {
        Self::new(topic, None)
    }

    /// A wake-up for `job`, freshly claimable.
    pub fn job(job: &Job) -> Self {
        Self::new(&job.topic, Some(JobHint::of(job)))
    }

    /// The topic (a NUL for a wake-up of every topic).
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The job, when the wake-up is about one job this process committed.
    pub fn hint(&self) -> Option<&JobHint> {
        self.job.as_ref()
    }

    /// Whether this wake-up stands for every topic ([`Notifier::wake_all`]).
    pub fn is_all(&self) -> bool {
        &*self.topic == ALL_TOPICS
    }
}

/// Fans out wake-ups to waiting claimers (long polls, SSE sessions) and job
/// events to waiting runs.
///
/// A wake-up is a hint, never a promise: waiters must re-check the store, and
/// must subscribe *before* their first check so no wake-up falls in between.
#[derive(Debug, Clone)]
pub struct Notifier {
    tx: broadcast::Sender<Arc<Wake>>,
    jobs: broadcast::Sender<Arc<JobEvent>>,
    events: broadcast::Sender<Arc<CommittedEvent>>,
}

impl Default for Notifier {
    fn default() -> Self {
        // Lagging receivers only lose hints; they re-check on `Lagged`.
        let (tx, _) = broadcast::channel(1024);
        let (jobs, _) = broadcast::channel(1024);
        let (events, _) = broadcast::channel(4096);
        Self { tx, jobs, events }
    }
}

/// The wake-up that stands for every topic: sent after a gap in which
/// wake-ups may have been lost (a `LISTEN` connection that dropped). A NUL,
/// which no topic name can hold.
const ALL_TOPICS: &str = "\0";

impl Notifier {
    /// Whether the wake-up `message` concerns `topic`: it names it, or it is
    /// a wake-up for every topic ([`Notifier::wake_all`]).
    pub fn wakes(message: &Wake, topic: &str) -> bool {
        message.topic() == topic || message.is_all()
    }

    /// Wakes every waiter of every topic, so each re-checks the store (after
    /// wake-ups may have been lost).
    pub fn wake_all(&self) {
        let _ = self.tx.send(Arc::new(Wake::topic_only(ALL_TOPICS)));
    }

    /// Announces that a job on `topic` may be claimable.
    pub fn notify(&self, topic: &str) {
        // No receivers is fine: nobody is waiting.
        let _ = self.tx.send(Arc::new(Wake::topic_only(topic)));
    }

    /// Announces that `job`, committed by this process, is claimable now.
    pub fn notify_job(&self, job: &Job) {
        self.wake(Wake::job(job));
    }

    /// Sends `wake` to every waiter.
    pub fn wake(&self, wake: Wake) {
        let _ = self.tx.send(Arc::new(wake));
    }

    /// Subscribes to every topic's wake-ups.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Wake>> {
        self.tx.subscribe()
    }

    /// Announces a change of a watched job.
    pub fn job_event(&self, event: JobEvent) {
        let _ = self.jobs.send(Arc::new(event));
    }

    /// Subscribes to every watched job's changes.
    pub fn subscribe_jobs(&self) -> broadcast::Receiver<Arc<JobEvent>> {
        self.jobs.subscribe()
    }

    /// Announces an execution event this process committed (for telemetry
    /// export; other replicas export their own).
    pub fn execution_event(&self, event: CommittedEvent) {
        let _ = self.events.send(Arc::new(event));
    }

    /// Announces a committed settlement's event, if it wrote one.
    pub(crate) fn publish(&self, event: Option<CommittedEvent>) {
        if let Some(e) = event {
            self.execution_event(e);
        }
    }

    /// Subscribes to the execution events this process commits. A receiver
    /// that lags loses events (`Lagged(n)` says how many): telemetry must
    /// never slow a settlement; the store keeps every event regardless.
    pub fn subscribe_events(&self) -> broadcast::Receiver<Arc<CommittedEvent>> {
        self.events.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips_and_large_progress_is_slimmed() {
        let ev = JobEvent {
            id: "j1".into(),
            change: JobChange::Settled(JobState::Fulfilled),
        };
        assert_eq!(JobEvent::from_payload(&ev.to_payload()), Some(ev));
        let small = JobEvent {
            id: "j2".into(),
            change: JobChange::Progress(Some(serde_json::json!({"message": "hi"}))),
        };
        assert_eq!(JobEvent::from_payload(&small.to_payload()), Some(small));
        let big = JobEvent {
            id: "j3".into(),
            change: JobChange::Progress(Some(serde_json::json!({"message": "x".repeat(9000)}))),
        };
        let back = JobEvent::from_payload(&big.to_payload()).unwrap();
        assert_eq!(back.change, JobChange::Progress(None));
        assert!(big.to_payload().len() < 8000);
    }
}
