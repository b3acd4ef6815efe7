//! Wake-ups. Topic wake-ups say "a job may be claimable on topic T"; job
//! events say "this watched job made progress or settled" (a governance run
//! waits on them). In-process for SQLite; for PostgreSQL the driver
//! `NOTIFY`s and a listener task feeds every replica's [`Notifier`].

use std::sync::Arc;

use agw_events::ExecutionEvent;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::{Job, JobState, Protocol};

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

/// Fans out wake-ups to waiting claimers (long polls, SSE sessions) and job
/// events to waiting runs.
///
/// A wake-up is a hint, never a promise: waiters must re-check the store, and
/// must subscribe *before* their first check so no wake-up falls in between.
#[derive(Debug, Clone)]
pub struct Notifier {
    tx: broadcast::Sender<Arc<str>>,
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
    pub fn wakes(message: &str, topic: &str) -> bool {
        message == topic || message == ALL_TOPICS
    }

    /// Wakes every waiter of every topic, so each re-checks the store (after
    /// wake-ups may have been lost).
    pub fn wake_all(&self) {
        let _ = self.tx.send(Arc::from(ALL_TOPICS));
    }

    /// Announces that a job on `topic` may be claimable.
    pub fn notify(&self, topic: &str) {
        // No receivers is fine: nobody is waiting.
        let _ = self.tx.send(Arc::from(topic));
    }

    /// Subscribes to every topic's wake-ups.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
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
