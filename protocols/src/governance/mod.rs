//! The governance protocol (the `hestiaos` SDK's API): runs decided by the
//! policy engine and dispatched as jobs on the shared store, their streams,
//! traces, explanations and stability counts, system endpoints, and
//! per-tenant secrets.
//!
//! Layout: `wire` (request bodies and their 422s, exact response shapes, the
//! error body), `policy` (the policy engine and its decisions), `run` (one
//! governed run: decide, trace and job admitted together, wait), `secrets`
//! (AEAD sealing), and below the body extractor ([`GovJson`]) and the handlers.

pub mod policy;
pub mod run;
pub mod secrets;
pub mod wire;

use agw_storage::GovernanceStore;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRef, FromRequest, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, SecondsFormat, Utc};
use futures_util::Stream;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use agw_config::Limits;
use agw_storage::{JobStore, Secret, Store, Trace};

use self::policy::{Decision, Engine, PolicyInput, Verdict};
use self::run::{Admission, Dispatch, Outcome, RunKind, RunSpec, Step};
use self::secrets::SecretBox;
use self::wire::{
    AgentResult, AgentRunBody, ChatBody, ChatResponse, ExplainBody, GovError, Member, RunBody,
    RunRequest, RunResponse, SecretBody, SystemMetrics, SystemStatus, parse_object,
};
use crate::http::ApiError;
use crate::http::auth::{Authenticator, Bearer};
use crate::http::body::path_segment;
use crate::neuron::hub::Hub;

/// What the daemon reports about itself (process figures, effective config).
pub trait SystemInfo: Send + Sync + std::fmt::Debug + 'static {
    /// Process and request figures.
    fn metrics(&self) -> SystemMetrics;
    /// The effective configuration, secrets removed.
    fn config(&self) -> Value;
    /// Seconds since start.
    fn uptime_seconds(&self) -> f64;
}

/// Decision and stream counters, rendered by the daemon's `/metrics`.
#[derive(Debug, Default)]
pub struct GovMetrics {
    decisions: [AtomicU64; 3],
    streams: AtomicU64,
}

impl GovMetrics {
    /// Counts a decision.
    pub fn decision(&self, v: Verdict) {
        self.decisions[v as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Decisions so far, by verdict.
    pub fn decisions(&self) -> [(Verdict, u64); 3] {
        [Verdict::Allow, Verdict::Throttle, Verdict::Block]
            .map(|v| (v, self.decisions[v as usize].load(Ordering::Relaxed)))
    }

    /// Open run streams.
    pub fn open_streams(&self) -> u64 {
        self.streams.load(Ordering::Relaxed)
    }
}

/// Everything the governance handlers need.
#[derive(Debug, Clone)]
pub struct GovernanceState {
    /// The job store.
    pub store: Store,
    /// Bearer authentication (API keys and JWTs).
    pub auth: Arc<Authenticator>,
    /// Neuron sessions of this replica (to tell a neuron its run was cancelled).
    pub hub: Arc<Hub>,
    /// Request limits.
    pub limits: Arc<Limits>,
    /// The policy engine (hot-reloadable).
    pub policy: Arc<Engine>,
    /// Daemon figures.
    pub system: Arc<dyn SystemInfo>,
    /// Seals secrets.
    pub secrets: Arc<SecretBox>,
    /// Counters.
    pub metrics: Arc<GovMetrics>,
    /// Job lifecycle hooks (metrics).
    pub observer: Arc<dyn crate::observe::Observer>,
}

impl FromRef<GovernanceState> for Arc<Authenticator> {
    fn from_ref(s: &GovernanceState) -> Self {
        s.auth.clone()
    }
}

/// The governance routes.
pub fn router(state: GovernanceState) -> Router {
    Router::new()
        .route("/api/v1/run", post(run_once))
        .route("/api/v1/run/stream", post(run_stream))
        .route("/api/chat", post(chat))
        .route("/api/agents/run", post(agent_run))
        .route("/api/governance/trace/{id}", get(trace))
        .route("/api/governance/explain", post(explain))
        .route("/api/governance/stability", get(stability))
        .route("/api/system/status", get(system_status))
        .route("/api/system/config", get(system_config))
        .route("/api/system/metrics", get(system_metrics))
        .route("/api/secrets", post(secret_set))
        .route("/api/secrets/{key}", get(secret_get).delete(secret_delete))
        .layer(middleware::from_fn(close_for_hestia_sdk))
        .with_state(state)
}

/// `hestiaos.Client` runs each call in a fresh event loop but reuses one
/// pooled connection, so its second call fails against a kept-alive
/// connection. Closing after each response to that SDK makes it work (its
/// async client pays one connection per call).
async fn close_for_hestia_sdk(req: Request, next: Next) -> Response {
    let sdk = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ua| ua.starts_with("HestiaOS-SDK/"));
    let mut res = next.run(req).await;
    if sdk {
        res.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    res
}

/// The largest governance body: room for the policy's largest input (so an
/// oversize input is decided and traced, not cut off), bounded.
fn body_cap(s: &GovernanceState) -> usize {
    let input = s.policy.settings().policy.max_input_bytes;
    s.limits
        .max_body_bytes
        .max(input.saturating_mul(2))
        .clamp(64 * 1024, 16 << 20)
}

/// A governance request body: a JSON object read into `T` (a struct of
/// [`Member`]s) by [`parse_object`]. Malformed bodies are the protocol's
/// `422 invalid_input`; a body over the cap (room for the policy's largest
/// input, so that one is decided and traced) is `413 payload_too_large`.
#[derive(Debug, Clone, Copy, Default)]
pub struct GovJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<GovernanceState> for GovJson<T> {
    type Rejection = GovError;

    async fn from_request(req: Request, s: &GovernanceState) -> Result<Self, GovError> {
        let b = Bytes::from_request(req, s)
            .await
            .map_err(|e| GovError::Invalid(format!("cannot read body: {e}")))?;
        let cap = body_cap(s);
        if b.len() > cap {
            return Err(GovError::Api(ApiError::PayloadTooLarge(format!(
                "body is {} bytes; the limit is {cap}",
                b.len()
            ))));
        }
        parse_object(&b).map(Self)
    }
}

fn run_spec(r: RunRequest, kind: RunKind) -> RunSpec {
    RunSpec {
        kind,
        input: r.input,
        session_id: r.session_id,
        agent_id: r.agent_id,
        mode_hint: r.mode_hint,
        timeout_ms: r.timeout_ms,
        config: None,
    }
}

async fn run_once(
    State(s): State<GovernanceState>,
    Bearer(p): Bearer,
    GovJson(body): GovJson<RunBody>,
) -> Result<Json<RunResponse>, GovError> {
    let req = body.validate(s.policy.settings().max_timeout_ms)?;
    let mut d = run::admit(&s, &p, &run_spec(req, RunKind::Run))
        .await?
        .dispatched()?;
    let output = d.wait(&s).await?.into_error(&d)?;
    Ok(Json(RunResponse {
        result: d.decision.verdict.as_str(),
        output,
        mode: d.decision.mode.clone(),
        budget: d.decision.budget,
        trace_id: d.trace_id.clone(),
        latency_ms: d.elapsed_ms(),
    }))
}

fn now_iso() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn stream_event(kind: &str, data: Value, trace_id: &str) -> Event {
    let body = json!({"type": kind, "data": data, "trace_id": trace_id, "timestamp": now_iso()});
    Event::default().data(body.to_string())
}

/// A progress report as stream events: `token` when its data carries a
/// token, else `delta`.
fn progress_event(p: &Value, trace_id: &str) -> Event {
    if let Some(token) = p.get("data").and_then(|d| d.get("token")) {
        return stream_event("token", json!({"token": token}), trace_id);
    }
    let mut data = Map::new();
    for k in ["message", "percent", "data"] {
        if let Some(v) = p.get(k).filter(|v| !v.is_null()) {
            data.insert(k.into(), v.clone());
        }
    }
    stream_event("delta", Value::Object(data), trace_id)
}

fn start_data(d: &Decision, topic: Option<&str>, job_id: Option<&str>) -> Value {
    json!({
        "decision": d.verdict.as_str(),
        "mode": d.mode,
        "budget": d.budget,
        "topic": topic,
        "job_id": job_id,
    })
}

/// Drops with the stream: cancels the run if its client left before the end.
struct StreamGuard {
    state: GovernanceState,
    dispatch: Option<Dispatch>,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.state.metrics.streams.fetch_sub(1, Ordering::Relaxed);
        if let Some(mut d) = self.dispatch.take()
            && !d.finished
        {
            let s = self.state.clone();
            // No runtime: the process is ending and cannot cancel; the job
            // stays in the store and its trace pending.
            let Ok(rt) = tokio::runtime::Handle::try_current() else {
                return;
            };
            rt.spawn(async move {
                tracing::info!(trace_id = %d.trace_id, job = %d.job_id, "stream client left; cancelling the run");
                d.abandon(&s, "the run's stream client disconnected").await;
            });
        }
    }
}

async fn run_stream(
    State(s): State<GovernanceState>,
    Bearer(p): Bearer,
    GovJson(body): GovJson<RunBody>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, GovError> {
    let req = body.validate(s.policy.settings().max_timeout_ms)?;
    let admission = run::admit(&s, &p, &run_spec(req, RunKind::Run)).await?;
    // The run is driven by a task that feeds the response; when the client
    // leaves, the body (and the receiver) drops, the task's send fails, and
    // the guard cancels the job.
    let (tx, rx) = mpsc::channel::<Event>(64);
    s.metrics.streams.fetch_add(1, Ordering::Relaxed);
    let mut guard = StreamGuard {
        state: s.clone(),
        dispatch: None,
    };
    match admission {
        Admission::Blocked(b) => {
            let t = &b.trace_id;
            for ev in [
                stream_event("start", start_data(&b.decision, None, None), t),
                stream_event(
                    "error",
                    json!({"code": "GOVERNANCE_BLOCK", "message": b.decision.reason, "decision": "BLOCK"}),
                    t,
                ),
                stream_event("done", json!({}), t),
            ] {
                let _ = tx.try_send(ev);
            }
            drop(guard);
        }
        Admission::Dispatched(d) => {
            let first = stream_event(
                "start",
                start_data(&d.decision, Some(&d.topic), Some(&d.job_id)),
                &d.trace_id,
            );
            let _ = tx.try_send(first);
            guard.dispatch = Some(d);
            tokio::spawn(drive_stream(guard, tx));
        }
    }
    let events = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|ev| (Ok(ev), rx))
    });
    // A ping every 5 s also bounds how long a silent client that hung up goes
    // unnoticed (the write fails, the body drops, the run is cancelled).
    Ok(Sse::new(events).keep_alive(
        KeepAlive::new()
            .interval(Duration::from_secs(5))
            .text("ping"),
    ))
}

async fn drive_stream(mut guard: StreamGuard, tx: mpsc::Sender<Event>) {
    let s = guard.state.clone();
    let Some(d) = guard.dispatch.as_mut() else {
        return;
    };
    let trace_id = d.trace_id.clone();
    loop {
        let step = tokio::select! {
            step = d.next(&s) => step,
            // The client left: the guard cancels the run.
            () = tx.closed() => return,
        };
        let ev = match step {
            Ok(Step::Progress(p)) => progress_event(&p, &trace_id),
            Ok(Step::Done(outcome)) => {
                let last = match outcome {
                    Outcome::Completed { output, .. } => stream_event(
                        "final",
                        json!({"output": output, "result": d.decision.verdict.as_str(), "latency_ms": d.elapsed_ms()}),
                        &trace_id,
                    ),
                    other => {
                        let (code, message) = match other {
                            Outcome::Failed { message, .. } => ("WORKER_FAILED", message),
                            Outcome::TimedOut => (
                                "TIMEOUT",
                                format!(
                                    "no worker answered within {} ms; the job was cancelled",
                                    d.timeout_ms
                                ),
                            ),
                            _ => ("CANCELLED", "the run's job was cancelled".to_owned()),
                        };
                        stream_event(
                            "error",
                            json!({"code": code, "message": message}),
                            &trace_id,
                        )
                    }
                };
                let _ = tx.send(last).await;
                let _ = tx.send(stream_event("done", json!({}), &trace_id)).await;
                return;
            }
            Err(e) => {
                tracing::warn!(trace_id = %trace_id, error = %e, "run stream failed");
                d.abandon(&s, "the gateway could not follow the run").await;
                let _ = tx
                    .send(stream_event("error", json!({"code": "INTERNAL", "message": "the gateway could not follow the run"}), &trace_id))
                    .await;
                let _ = tx.send(stream_event("done", json!({}), &trace_id)).await;
                return;
            }
        };
        if tx.send(ev).await.is_err() {
            return;
        }
    }
}

async fn chat(
    State(s): State<GovernanceState>,
    Bearer(p): Bearer,
    GovJson(body): GovJson<ChatBody>,
) -> Result<Json<ChatResponse>, GovError> {
    let message = body.message.required("message")?;
    let session_id = body
        .session_id
        .optional("session_id")?
        .unwrap_or_else(agw_storage::new_job_id);
    let spec = RunSpec {
        kind: RunKind::Chat,
        input: message,
        session_id: Some(session_id.clone()),
        agent_id: None,
        mode_hint: None,
        timeout_ms: None,
        config: None,
    };
    let mut d = run::admit(&s, &p, &spec).await?.dispatched()?;
    let output = d.wait(&s).await?.into_error(&d)?;
    Ok(Json(ChatResponse {
        response: output.unwrap_or_default(),
        session_id,
        processing_time: d.elapsed_ms() / 1000.0,
        model: d.topic.clone(),
        trace_id: d.trace_id.clone(),
    }))
}

async fn agent_run(
    State(s): State<GovernanceState>,
    Bearer(p): Bearer,
    GovJson(body): GovJson<AgentRunBody>,
) -> Result<Json<AgentResult>, GovError> {
    let agent_id = body.agent_id.required("agent_id")?;
    let task = body.task.required("task")?;
    let config = body.config.optional("config")?.unwrap_or_default();
    let spec = RunSpec {
        kind: RunKind::Agent,
        input: task,
        session_id: None,
        agent_id: Some(agent_id.clone()),
        mode_hint: None,
        timeout_ms: None,
        config: Some(Value::Object(config)),
    };
    let mut d = match run::admit(&s, &p, &spec).await? {
        Admission::Blocked(b) => {
            return Ok(Json(AgentResult {
                agent_id,
                status: "BLOCKED",
                output: None,
                error: Some(b.decision.reason),
                trace_id: b.trace_id,
            }));
        }
        Admission::Dispatched(d) => d,
    };
    let (status, output, error) = match d.wait(&s).await? {
        Outcome::Completed { output, .. } => ("COMPLETED", output, None),
        Outcome::Failed { message, .. } => ("FAILED", None, Some(message)),
        other @ (Outcome::TimedOut | Outcome::Cancelled) => {
            return Err(other.into_error(&d).err().unwrap_or(GovError::Cancelled {
                trace_id: d.trace_id.clone(),
            }));
        }
    };
    Ok(Json(AgentResult {
        agent_id,
        status,
        output,
        error,
        trace_id: d.trace_id.clone(),
    }))
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A trace as the API shows it: the SDK's `TraceResponse` fields, then links.
pub fn trace_view(t: &Trace) -> Value {
    json!({
        "trace_id": t.id,
        "decision": t.decision,
        "reason": t.reason,
        "risk_score": t.risk_score,
        "policy": t.policy,
        "violations": t.violations,
        "mode": t.mode,
        "budget": t.budget,
        "latency_ms": t.latency_ms,
        "timestamp": iso(t.created_at),
        "kind": t.kind,
        "status": t.status,
        "matched_rules": t.matched_rules,
        "job_id": t.job_id,
        "topic": t.topic,
        "worker": t.worker,
        "events": format!("/api/v1/events?correlation_id={}", t.id),
    })
}

async fn trace(
    State(s): State<GovernanceState>,
    Bearer(p): Bearer,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, GovError> {
    let id = path_segment(id, "trace id")?;
    let t = s
        .store
        .trace_get(&id, &p.scope())
        .await?
        .ok_or_else(|| GovError::NotFound(format!("no trace {id}")))?;
    Ok(Json(trace_view(&t)))
}

async fn explain(
    State(s): State<GovernanceState>,
    Bearer(p): Bearer,
    GovJson(body): GovJson<ExplainBody>,
) -> Result<Json<Value>, GovError> {
    let command_type = body.command_type.required("command_type")?;
    let input = body
        .command_input
        .optional("command_input")?
        .unwrap_or_default();
    let text = input.text();
    let agent_id = input.agent_id.optional("agent_id")?;
    let mode_hint = input.mode_hint.optional("mode_hint")?;
    if let Some(h) = &mode_hint
        && !wire::MODE_HINTS.contains(&h.as_str())
    {
        return Err(GovError::Invalid(format!(
            "command_input.mode_hint must be one of fast, balanced, deep, got {h:?}"
        )));
    }
    let d = s.policy.decide(
        &PolicyInput {
            tenant: &p.tenant,
            agent_id: agent_id.as_deref(),
            mode_hint: mode_hint.as_deref(),
            input: &text,
        },
        false,
    );
    Ok(Json(json!({
        "decision": d.verdict.as_str(),
        "reason": d.reason,
        "risk_score": d.risk_score,
        "matched_rules": d.matched_rules,
        "violations": d.violations,
        "mode": d.mode,
        "budget": d.budget,
        "policy": d.policy,
        "policy_version": d.policy_version,
        "command_type": command_type,
    })))
}

async fn stability(
    State(s): State<GovernanceState>,
    Bearer(p): Bearer,
) -> Result<Json<Value>, GovError> {
    let status = s.policy.status();
    let settings = s.policy.settings();
    let now = Utc::now();
    let mut windows = Map::new();
    for (name, secs) in [("1m", 60), ("5m", 300), ("1h", 3600)] {
        let counts = s
            .store
            .trace_counts(&p.scope(), now - chrono::Duration::seconds(secs))
            .await?;
        let mut w = json!({"ALLOW": 0, "THROTTLE": 0, "BLOCK": 0});
        for c in counts {
            w[c.decision.as_str()] = c.count.into();
        }
        windows.insert(name.into(), w);
    }
    Ok(Json(json!({
        "status": if status.error.is_some() { "degraded" } else { "stable" },
        "mode": settings.policy.default_mode,
        "policy": status.policy,
        "policy_version": status.version,
        "policy_loaded_at": iso(status.loaded_at),
        "policy_error": status.error,
        "windows": windows,
    })))
}

async fn system_status(State(s): State<GovernanceState>) -> Json<SystemStatus> {
    let storage = s.store.ping().await.is_ok();
    let degraded = s.policy.status().error.is_some();
    Json(SystemStatus {
        status: match (storage, degraded) {
            (false, _) => "ERROR",
            (true, true) => "DEGRADED",
            (true, false) => "OK",
        },
        ollama: false,
        vllm: false,
        dsgk: true,
        storage,
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: s.system.uptime_seconds(),
    })
}

async fn system_config(State(s): State<GovernanceState>, Bearer(_): Bearer) -> Json<Value> {
    Json(s.system.config())
}

async fn system_metrics(
    State(s): State<GovernanceState>,
    Bearer(_): Bearer,
) -> Json<SystemMetrics> {
    Json(s.system.metrics())
}

/// A secret name: a path segment of printable characters.
fn secret_name(name: &str) -> Result<(), GovError> {
    if name.is_empty() || name.len() > 200 || name.chars().any(|c| c.is_control() || c == '/') {
        return Err(GovError::Invalid(
            "credential_ref must be 1..=200 characters, without '/' or control characters".into(),
        ));
    }
    Ok(())
}

/// Largest secret value, bytes.
const MAX_SECRET_BYTES: usize = 64 * 1024;

async fn secret_set(
    State(s): State<GovernanceState>,
    Bearer(p): Bearer,
    GovJson(body): GovJson<SecretBody>,
) -> Result<(StatusCode, Json<Value>), GovError> {
    let name = body.credential_ref.required("credential_ref")?;
    secret_name(&name)?;
    let value = body.secret.required("secret")?;
    if value.len() > MAX_SECRET_BYTES {
        return Err(GovError::Invalid(format!(
            "secret is {} bytes; the limit is {MAX_SECRET_BYTES}",
            value.len()
        )));
    }
    let provider = body
        .provider
        .optional("provider")?
        .unwrap_or_else(|| "custom".into());
    let allowed_tools = match body.allowed_tools {
        Member::Absent => vec!["*".to_owned()],
        Member::Given(tools) => tools,
        Member::Wrong(_) => {
            return Err(GovError::Invalid(
                "allowed_tools must be a list of strings".into(),
            ));
        }
    };
    let now = Utc::now();
    s.store
        .secret_put(Secret {
            ciphertext: s.secrets.seal(&p.tenant, &name, &value),
            tenant: p.tenant.clone(),
            name: name.clone(),
            provider: provider.clone(),
            allowed_tools: allowed_tools.clone(),
            created_at: now,
            updated_at: now,
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"credential_ref": name, "provider": provider, "allowed_tools": allowed_tools})),
    ))
}

async fn secret_get(
    State(s): State<GovernanceState>,
    Bearer(p): Bearer,
    key: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, GovError> {
    let name = path_segment(key, "secret name")?;
    let secret = s
        .store
        .secret_get(&p.tenant, &name)
        .await?
        .ok_or_else(|| GovError::NotFound(format!("no secret {name}")))?;
    let value = s
        .secrets
        .open(&p.tenant, &name, &secret.ciphertext)
        .map_err(|e| GovError::Api(ApiError::Internal(e.to_string())))?;
    Ok(Json(json!({"value": value})))
}

async fn secret_delete(
    State(s): State<GovernanceState>,
    Bearer(p): Bearer,
    key: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, GovError> {
    let name = path_segment(key, "secret name")?;
    if s.store.secret_delete(&p.tenant, &name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(GovError::NotFound(format!("no secret {name}")))
    }
}

/// Refuses a tenant job on a governance route topic (`403 reserved_topic`):
/// only governance admission enqueues there, after the policy, with a trace
/// and within the budgets. The admin key may (operators repairing a queue).
pub fn check_not_reserved(
    policy: &Engine,
    p: &crate::http::auth::Principal,
    topic: &str,
) -> Result<(), ApiError> {
    if !p.is_admin() && policy.settings().is_reserved(topic) {
        return Err(ApiError::ReservedTopic(topic.to_owned()));
    }
    Ok(())
}
