//! One governed run, whichever route asked for it (run, stream, chat, agent
//! run): decide, trace, enqueue on the route's topic, wait for the store to
//! announce the settlement (or progress, for streams), and close the trace.

use agw_storage::GovernanceStore;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio::time::Instant;

use agw_storage::{
    AdmitParams, Job, JobCancelParams, JobChange, JobEvent, JobInsertOutcome, JobInsertParams,
    JobState, JobStore, NewJob, Protocol, Scope, StoreError, Trace, TraceSettleParams, Visibility,
    new_job_id,
};

use super::GovernanceState;
use super::policy::{Decision, PolicyInput, Verdict};
use super::wire::{GovError, output_text};
use crate::http::auth::Principal;

/// Leases a run gets: one retry after a crashed or failing worker, if time allows.
const RUN_MAX_ATTEMPTS: i32 = 2;
/// Retry delay base of a run's job, milliseconds.
const RUN_BACKOFF_MS: i64 = 100;
/// A waiter re-reads its job this often in case a wake-up was lost (for
/// example while a PostgreSQL `LISTEN` connection reconnected).
const SAFETY_RECHECK: Duration = Duration::from_secs(5);

/// Which route a run came from (stored as the trace's kind, sent to workers).
pub use agw_storage::RunKind;

/// What to run.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// The route.
    pub kind: RunKind,
    /// The text.
    pub input: String,
    /// The client's session.
    pub session_id: Option<String>,
    /// The agent asked for.
    pub agent_id: Option<String>,
    /// The mode hint.
    pub mode_hint: Option<String>,
    /// `None`: the configured default.
    pub timeout_ms: Option<u64>,
    /// Agent configuration, passed to the worker.
    pub config: Option<Value>,
}

/// A decided run.
#[derive(Debug)]
pub enum Admission {
    /// Blocked: traced, nothing enqueued.
    Blocked(Blocked),
    /// Enqueued: wait on it.
    Dispatched(Dispatch),
}

impl Admission {
    /// The dispatched run, or the protocol's 403 for a blocked one.
    pub fn dispatched(self) -> Result<Dispatch, GovError> {
        match self {
            Self::Dispatched(d) => Ok(d),
            Self::Blocked(b) => Err(GovError::Blocked {
                trace_id: b.trace_id,
                reason: b.decision.reason,
            }),
        }
    }
}

/// A blocked run.
#[derive(Debug)]
pub struct Blocked {
    /// Its trace.
    pub trace_id: String,
    /// Why.
    pub decision: Decision,
}

/// A run whose job is in the store.
#[derive(Debug)]
pub struct Dispatch {
    /// Its trace.
    pub trace_id: String,
    /// The decision (ALLOW or THROTTLE).
    pub decision: Decision,
    /// The job.
    pub job_id: String,
    /// Where it went.
    pub topic: String,
    /// The request's timeout.
    pub timeout_ms: u64,
    started: Instant,
    deadline: Instant,
    events: broadcast::Receiver<Arc<JobEvent>>,
    /// Whether the trace was closed (so a dropped stream knows to cancel).
    pub finished: bool,
}

/// What a waiter learns next.
#[derive(Debug)]
pub enum Step {
    /// A progress report.
    Progress(Value),
    /// The run ended.
    Done(Outcome),
}

/// How a run ended.
#[derive(Debug)]
pub enum Outcome {
    /// The worker answered.
    Completed {
        /// Its output as text.
        output: Option<String>,
        /// Who answered.
        worker: Option<String>,
    },
    /// The worker failed for good.
    Failed {
        /// The worker's error.
        message: String,
        /// Who failed it.
        worker: Option<String>,
    },
    /// Nobody answered in time; the job was cancelled.
    TimedOut,
    /// Someone else cancelled the job.
    Cancelled,
}

impl Outcome {
    /// The trace status it leaves.
    pub fn status(&self) -> &'static str {
        match self {
            Self::Completed { .. } => "completed",
            Self::Failed { .. } => "failed",
            Self::TimedOut => "timeout",
            Self::Cancelled => "cancelled",
        }
    }

    /// The error a non-streaming route answers for anything but completion.
    pub fn into_error(self, d: &Dispatch) -> Result<Option<String>, GovError> {
        let trace_id = d.trace_id.clone();
        match self {
            Self::Completed { output, .. } => Ok(output),
            Self::Failed { message, .. } => Err(GovError::WorkerFailed { trace_id, message }),
            Self::TimedOut => Err(GovError::Timeout {
                trace_id,
                timeout_ms: d.timeout_ms,
            }),
            Self::Cancelled => Err(GovError::Cancelled { trace_id }),
        }
    }
}

/// Decides `spec` for `p`, records its trace and, unless blocked, enqueues
/// its job. Nothing is enqueued on any error.
pub async fn admit(
    s: &GovernanceState,
    p: &Principal,
    spec: &RunSpec,
) -> Result<Admission, GovError> {
    let started = Instant::now();
    let settings = s.policy.settings();
    let listed = |id: &str| settings.agents.iter().any(|a| a.id == id);
    // Only `agents.run` names an agent to execute; on `run` / `run_stream` /
    // chat, `agent_id` is who is calling — context for the policy's agent
    // lists and budgets — and an unlisted one routes like no agent at all.
    let route_agent = match (&spec.agent_id, spec.kind) {
        (Some(agent), RunKind::Agent) if !listed(agent) => {
            return Err(GovError::UnknownAgent(agent.clone()));
        }
        (Some(agent), _) if listed(agent) => Some(agent.as_str()),
        _ => None,
    };
    let timeout_ms = spec.timeout_ms.unwrap_or(settings.default_timeout_ms);
    if timeout_ms == 0 || timeout_ms > settings.max_timeout_ms {
        return Err(GovError::Invalid(format!(
            "timeout_ms must be in 1..={}",
            settings.max_timeout_ms
        )));
    }
    let decision = s.policy.decide(
        &PolicyInput {
            tenant: &p.tenant,
            agent_id: spec.agent_id.as_deref(),
            mode_hint: spec.mode_hint.as_deref(),
            input: &spec.input,
        },
        true,
    );
    let trace_id = uuid_v4();
    let topic = settings
        .topic_for(route_agent, &decision.mode)
        .unwrap_or(settings.default_topic.as_str())
        .to_owned();
    s.metrics.decision(decision.verdict);
    let mut trace = Trace {
        id: trace_id.clone(),
        tenant: p.tenant.clone(),
        kind: spec.kind,
        decision: decision.verdict,
        reason: decision.reason.clone(),
        risk_score: decision.risk_score,
        policy: decision.policy.clone(),
        matched_rules: decision.matched_rules.clone(),
        violations: serde_json::to_value(&decision.violations).unwrap_or_else(|_| json!([])),
        mode: decision.mode.clone(),
        budget: decision.budget,
        status: "blocked".into(),
        job_id: None,
        topic: Some(topic.clone()),
        worker: None,
        latency_ms: 0.0,
        created_at: Utc::now(),
        settled_at: None,
        inputs: Some(
            json!({"input": spec.input, "session_id": spec.session_id, "agent_id": spec.agent_id, "mode_hint": spec.mode_hint}),
        ),
    };
    if decision.verdict == Verdict::Block {
        trace.latency_ms = ms_since(started);
        trace.settled_at = Some(trace.created_at);
        s.store.trace_insert(trace).await?;
        return Ok(Admission::Blocked(Blocked { trace_id, decision }));
    }
    let job_id = new_job_id();
    trace.status = "pending".into();
    trace.job_id = Some(job_id.clone());
    // Subscribe before the insert so no settlement can slip in between.
    let events = s.store.notifier().subscribe_jobs();
    let priority = if decision.verdict == Verdict::Throttle {
        settings.throttle_priority
    } else {
        settings.allow_priority
    };
    let input = json!({
        "kind": spec.kind.as_str(),
        "input": spec.input,
        "trace_id": trace_id,
        "mode": decision.mode,
        "budget": decision.budget,
        "session_id": spec.session_id,
        "agent_id": spec.agent_id,
        "config": spec.config,
    });
    let cap = s.limits.max_open_jobs_per_tenant;
    // The trace and its job in one transaction: no trace is ever left
    // pending without a job.
    let inserted = s
        .store
        .trace_admit(AdmitParams {
            trace,
            job: JobInsertParams {
                job: NewJob {
                    id: job_id.clone(),
                    tenant: p.tenant.clone(),
                    protocol: Protocol::Governance,
                    topic: topic.clone(),
                    namespace: "default".into(),
                    visibility: Visibility::Private,
                    priority,
                    delay_ms: 0,
                    max_attempts: RUN_MAX_ATTEMPTS,
                    backoff_base_ms: RUN_BACKOFF_MS,
                    target_worker: None,
                    required_capability: None,
                    on_behalf_of: None,
                    input,
                    metadata: crate::http::trace::with_traceparent(Some(json!({
                        "trace_id": trace_id,
                        (RunKind::METADATA_KEY): spec.kind.as_str(),
                        "decision": decision.verdict.as_str(),
                        "policy": decision.policy,
                    }))),
                },
                idempotency: None,
                max_open_per_tenant: (cap > 0 && !p.is_admin()).then_some(cap),
                now: None,
            },
            refused_latency_ms: ms_since(started),
            now: None,
        })
        .await;
    match inserted {
        Ok(JobInsertOutcome::Inserted(job)) => s.observer.published(&job),
        Ok(JobInsertOutcome::Replayed { .. }) => {
            return Err(GovError::Api(crate::http::ApiError::Internal(
                "unexpected idempotent replay".into(),
            )));
        }
        // A refused job left its trace `failed` (same transaction).
        Err(e) => return Err(e.into()),
    }
    Ok(Admission::Dispatched(Dispatch {
        trace_id,
        decision,
        job_id,
        topic,
        timeout_ms,
        started,
        deadline: started + Duration::from_millis(timeout_ms),
        events,
        finished: false,
    }))
}

impl Dispatch {
    /// Milliseconds since the request arrived.
    pub fn elapsed_ms(&self) -> f64 {
        ms_since(self.started)
    }

    /// Waits for the next progress report or the end of the run. On timeout
    /// the job is cancelled (its neuron, if on this replica, told). The trace
    /// is closed when the run ends.
    pub async fn next(&mut self, s: &GovernanceState) -> Result<Step, GovError> {
        loop {
            let recheck = tokio::time::sleep(SAFETY_RECHECK);
            let change = tokio::select! {
                ev = self.events.recv() => match ev {
                    Ok(ev) if ev.id == self.job_id => Some(ev.change.clone()),
                    Ok(_) => continue,
                    // Missed wake-ups: look at the job itself.
                    Err(broadcast::error::RecvError::Lagged(_)) => None,
                    // The store is closing: no more wake-ups; fall back to
                    // the periodic re-check instead of spinning.
                    Err(broadcast::error::RecvError::Closed) => {
                        let left = self.deadline.saturating_duration_since(Instant::now());
                        tokio::time::sleep(SAFETY_RECHECK.min(left)).await;
                        None
                    }
                },
                () = tokio::time::sleep_until(self.deadline) => {
                    return self.time_out(s).await.map(Step::Done);
                }
                () = recheck => None,
            };
            match change {
                Some(JobChange::Progress(Some(p))) => return Ok(Step::Progress(p)),
                Some(JobChange::Progress(None)) => {
                    if let Some(p) = self.job(s).await?.progress {
                        return Ok(Step::Progress(p));
                    }
                }
                Some(JobChange::Settled(_)) | None => {
                    let job = self.job(s).await?;
                    if job.state.is_terminal() {
                        return self.finish(s, outcome_of(&job)).await.map(Step::Done);
                    }
                }
            }
        }
    }

    /// Waits for the end of the run, skipping progress.
    pub async fn wait(&mut self, s: &GovernanceState) -> Result<Outcome, GovError> {
        loop {
            if let Step::Done(o) = self.next(s).await? {
                return Ok(o);
            }
        }
    }

    async fn job(&self, s: &GovernanceState) -> Result<Job, GovError> {
        s.store
            .job_get(&self.job_id, &Scope::All)
            .await?
            .ok_or_else(|| {
                GovError::Api(crate::http::ApiError::Internal(format!(
                    "run job {} vanished",
                    self.job_id
                )))
            })
    }

    async fn time_out(&mut self, s: &GovernanceState) -> Result<Outcome, GovError> {
        let reason = format!("run timed out after {} ms", self.timeout_ms);
        match cancel_job(s, &self.job_id, &reason).await {
            Ok(()) => self.finish(s, Outcome::TimedOut).await,
            // It settled just now: report what happened.
            Err(StoreError::InvalidState(_)) => {
                let job = self.job(s).await?;
                self.finish(s, outcome_of(&job)).await
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Cancels the run (its client went away). Idempotent.
    pub async fn abandon(&mut self, s: &GovernanceState, reason: &str) {
        if self.finished {
            return;
        }
        let outcome = match cancel_job(s, &self.job_id, reason).await {
            Ok(()) => Outcome::Cancelled,
            Err(_) => match self.job(s).await {
                Ok(job) => outcome_of(&job),
                Err(_) => Outcome::Cancelled,
            },
        };
        if let Err(e) = self.finish(s, outcome).await {
            tracing::warn!(trace_id = %self.trace_id, error = %e, "closing an abandoned run's trace failed");
        }
    }

    async fn finish(&mut self, s: &GovernanceState, outcome: Outcome) -> Result<Outcome, GovError> {
        self.finished = true;
        let worker = match &outcome {
            Outcome::Completed { worker, .. } | Outcome::Failed { worker, .. } => worker.clone(),
            Outcome::TimedOut | Outcome::Cancelled => None,
        };
        s.store
            .trace_settle(TraceSettleParams {
                id: self.trace_id.clone(),
                status: outcome.status().into(),
                worker,
                latency_ms: self.elapsed_ms(),
                now: None,
            })
            .await?;
        Ok(outcome)
    }
}

/// Cancels a run's job and tells its neuron (when this replica holds it).
async fn cancel_job(s: &GovernanceState, job_id: &str, reason: &str) -> Result<(), StoreError> {
    let before = s
        .store
        .job_cancel(JobCancelParams {
            id: job_id.to_owned(),
            scope: Scope::All,
            reason: reason.to_owned(),
            now: None,
        })
        .await?;
    s.observer
        .settled(&before, crate::observe::Settlement::Cancelled);
    if before.lease.is_some() {
        s.hub.revoke_lease(job_id, reason);
    }
    Ok(())
}

fn outcome_of(job: &Job) -> Outcome {
    match job.state {
        JobState::Fulfilled => Outcome::Completed {
            output: output_text(job.result.as_ref()),
            worker: job.last_holder.clone(),
        },
        JobState::Dead => Outcome::Failed {
            message: job.error.clone().unwrap_or_else(|| "worker failed".into()),
            worker: job.last_holder.clone(),
        },
        JobState::Cancelled | JobState::Open | JobState::Leased => Outcome::Cancelled,
    }
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// A random (v4) UUID string: trace ids are UUIDs by contract.
fn uuid_v4() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn trace_ids_are_v4_uuids() {
        let id = super::uuid_v4();
        let parts: Vec<&str> = id.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'));
        assert!(matches!(&parts[3][..1], "8" | "9" | "a" | "b"));
        assert_ne!(id, super::uuid_v4());
    }
}
