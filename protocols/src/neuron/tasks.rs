//! The Task API: submit work for a capability without being an Intent Bus
//! publisher, read it back (state, attempts, progress, output or error), and
//! cancel it (the holding neuron gets a `cancel` frame).

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use agw_storage::{
    Job, JobCancelParams, JobInsertOutcome, JobInsertParams, JobStore, NewJob, Protocol,
    StoreError, Visibility, new_job_id,
};

use super::NeuronState;
use super::wire::{iso, valid_capability_type};
use crate::http::auth::{Bearer, Principal};
use crate::http::body::{check_payload, path_segment, printable};
use crate::http::{ApiError, JsonBody};

/// `POST /api/v1/tasks` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubmitTask {
    /// The capability type (the topic).
    pub capability: String,
    /// The input (any JSON value).
    pub input: Option<Value>,
    /// Run on behalf of this user (only matching or `any` neurons lease it).
    pub on_behalf_of: Option<String>,
    /// Free-form object, passed to the neuron.
    pub metadata: Option<Value>,
    /// Leases allowed before the task is dead (default 3).
    pub max_attempts: Option<i64>,
    /// 0..=1000, higher first (default 100).
    pub priority: Option<i64>,
}

/// A task as the API shows it.
pub fn view(j: &Job) -> Value {
    let time = |t: Option<DateTime<Utc>>| t.map(iso);
    json!({
        "taskId": j.id,
        "capability": j.topic,
        "state": j.state.as_str(),
        "attempts": j.attempts,
        "maxAttempts": j.max_attempts,
        "priority": j.priority,
        "onBehalfOf": j.on_behalf_of,
        "progress": j.progress,
        "output": j.result,
        "error": j.error,
        "createdAt": iso(j.created_at),
        "updatedAt": iso(j.updated_at),
        "completedAt": time(j.completed_at),
    })
}

pub(crate) async fn submit(
    State(s): State<NeuronState>,
    Bearer(p): Bearer,
    JsonBody(t): JsonBody<SubmitTask>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    if !valid_capability_type(&t.capability) {
        return Err(ApiError::InvalidRequest(format!(
            "capability {:?} must look like owner/package[/name]",
            t.capability
        )));
    }
    crate::governance::check_not_reserved(s.policy.as_ref(), &p, &t.capability)?;
    let input = t
        .input
        .ok_or_else(|| ApiError::InvalidRequest("input is required".into()))?;
    check_payload(&input, &s.limits)?;
    // Intent Bus publishes on the same topic are not checked here; the
    // neuron checks them against the schema its lease frame carries.
    if let Some(schema) = s.schemas.get(&s.store, &t.capability).await? {
        schema.check_input(&input)?;
    }
    if let Some(m) = &t.metadata
        && !m.is_object()
    {
        return Err(ApiError::InvalidRequest(
            "metadata must be a JSON object".into(),
        ));
    }
    let max_attempts = t.max_attempts.unwrap_or(3);
    if !(1..=s.cfg.max_attempts_cap).contains(&max_attempts) {
        return Err(ApiError::InvalidRequest(format!(
            "maxAttempts must be between 1 and {}",
            s.cfg.max_attempts_cap
        )));
    }
    let priority = t.priority.unwrap_or(100);
    if !(0..=1000).contains(&priority) {
        return Err(ApiError::InvalidRequest(
            "priority must be between 0 and 1000".into(),
        ));
    }
    let on_behalf_of = t.on_behalf_of.filter(|u| !u.trim().is_empty());
    if let Some(u) = &on_behalf_of {
        printable("onBehalfOf", u)?;
    }
    let cap = s.limits.max_open_jobs_per_tenant;
    let outcome = s
        .store
        .job_insert(JobInsertParams {
            job: NewJob {
                id: new_job_id(),
                tenant: p.tenant.clone(),
                protocol: Protocol::Neuron,
                topic: t.capability,
                namespace: "default".into(),
                visibility: Visibility::Private,
                priority: priority as i32,
                delay_ms: 0,
                max_attempts: max_attempts as i32,
                backoff_base_ms: 1000,
                target_worker: None,
                required_capability: None,
                on_behalf_of,
                input,
                metadata: crate::http::trace::with_traceparent(t.metadata),
            },
            idempotency: None,
            max_open_per_tenant: (cap > 0 && !p.is_admin()).then_some(cap),
            now: None,
        })
        .await?;
    match outcome {
        JobInsertOutcome::Inserted(job) => {
            s.observer.published(&job);
            Ok((StatusCode::CREATED, Json(view(&job))))
        }
        JobInsertOutcome::Replayed { .. } => {
            Err(ApiError::Internal("unexpected idempotent replay".into()))
        }
    }
}

/// A task the caller may read (its own tenant's, or any for admin).
async fn own_task(s: &NeuronState, p: &Principal, id: &str) -> Result<Job, ApiError> {
    s.store
        .job_get(id, &p.scope())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no task {id}")))
}

pub(crate) async fn get(
    State(s): State<NeuronState>,
    Bearer(p): Bearer,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = path_segment(id, "task id")?;
    Ok(Json(view(&own_task(&s, &p, &id).await?)))
}

pub(crate) async fn cancel(
    State(s): State<NeuronState>,
    Bearer(p): Bearer,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = path_segment(id, "task id")?;
    let before = s
        .store
        .job_cancel(JobCancelParams {
            id: id.clone(),
            scope: p.scope(),
            reason: "cancelled by submitter".into(),
            now: None,
        })
        .await
        .map_err(|e| match e {
            StoreError::NotFound => ApiError::NotFound(format!("no task {id}")),
            StoreError::InvalidState(st) => {
                ApiError::Conflict(format!("task is already {}", st.as_str()))
            }
            other => other.into(),
        })?;
    s.observer
        .settled(&before, crate::observe::Settlement::Cancelled);
    if before.lease.is_some() {
        s.hub.revoke_lease(&id, "task cancelled by its submitter");
    }
    Ok(Json(view(&own_task(&s, &p, &id).await?)))
}
