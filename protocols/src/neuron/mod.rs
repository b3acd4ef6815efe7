//! The neuron lease channel (holokai-neuron-sdk 0.1.1 / 0.2.0): an SSE stream
//! per neuron that pushes `lease` frames as work appears, and POSTed
//! register / update-capability / heartbeat / ack / nack / progress frames —
//! plus the Task API for callers that are not Intent Bus publishers. Jobs
//! come from the shared store: a capability type is a topic, so intents and
//! tasks flow between Intent Bus workers and neurons in both directions.

pub mod hub;
pub mod schemas;
pub mod tasks;
pub mod wire;

use agw_storage::AuthStore;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRef, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use futures_util::Stream;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use agw_config::{Limits, Neuron as NeuronCfg};
use agw_storage::{
    JobCompleteParams, JobExtendParams, JobFailParams, JobProgressParams, JobStore, LeaseProof,
    ResultType, Store, StoreError,
};

use crate::http::auth::{Authenticator, Bearer, Principal};
use crate::http::body::{check_payload, without_nul};
use crate::http::{ApiError, JsonBody, Query};
use crate::observe::{Observer, Settlement};
use hub::{Hub, Session, holder_key};
use wire::{
    Ack, Heartbeat, Nack, Progress, Register, ServerFrame, UpdateCapability, iso, parse_lease_id,
};

/// Largest neuron frame body (acks carry outputs); the largest body of any route.
pub const MAX_FRAME_BYTES: usize = crate::http::body::MAX_BODY_BYTES;

/// Reasons the SDK gives when it hands a lease back without starting it:
/// these never count as a failed attempt.
const UNSTARTED_REASONS: [&str; 3] = [
    "no handler registered for capability",
    "neuron shutting down",
    "lease cancelled before start",
];

/// Longest retry delay after a retryable nack (tasks back off from 1 s).
const NACK_MAX_BACKOFF_MS: i64 = 3_600_000;

/// Everything the neuron handlers need.
#[derive(Debug, Clone)]
pub struct NeuronState {
    /// The job store.
    pub store: Store,
    /// Bearer authentication.
    pub auth: Arc<Authenticator>,
    /// This protocol's settings.
    pub cfg: Arc<NeuronCfg>,
    /// Request and tenant limits.
    pub limits: Arc<Limits>,
    /// Live sessions.
    pub hub: Arc<Hub>,
    /// Operator-registered capability schemas (cached, compiled).
    pub schemas: Arc<schemas::SchemaRegistry>,
    /// Fires at shutdown: streams send `disconnect` and end.
    pub shutdown: CancellationToken,
    /// Job lifecycle hooks (metrics).
    pub observer: Arc<dyn Observer>,
    /// The governance settings in force: their route topics are reserved.
    pub policy: Arc<crate::governance::policy::Engine>,
}

impl FromRef<NeuronState> for Arc<Authenticator> {
    fn from_ref(s: &NeuronState) -> Self {
        s.auth.clone()
    }
}

/// The neuron routes, the Task API, and the operator's capability revocation
/// and schema registry.
pub fn router(state: NeuronState) -> Router {
    Router::new()
        .route("/neuron/events", get(events))
        .route("/neuron/register", post(register))
        .route("/neuron/update-capability", post(update_capability))
        .route("/neuron/heartbeat", post(heartbeat))
        .route("/neuron/ack", post(ack))
        .route("/neuron/nack", post(nack))
        .route("/neuron/progress", post(progress))
        .route("/api/v1/tasks", post(tasks::submit))
        .route("/api/v1/tasks/{id}", get(tasks::get))
        .route("/api/v1/tasks/{id}/cancel", post(tasks::cancel))
        .route("/admin/capabilities/revoke", post(revoke_capability))
        .route(
            "/admin/capabilities/schema",
            get(schemas::get).put(schemas::put).delete(schemas::delete),
        )
        .layer(axum::extract::DefaultBodyLimit::max(MAX_FRAME_BYTES))
        .with_state(state)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventsQuery {
    neuron_id: Option<String>,
}

fn neuron_id(id: Option<&str>) -> Result<String, ApiError> {
    match id.map(str::trim) {
        Some(n) if !n.is_empty() && n.len() <= 256 && !n.chars().any(char::is_control) => {
            Ok(n.to_owned())
        }
        _ => Err(ApiError::InvalidRequest(
            "neuronId must be 1-256 printable characters".into(),
        )),
    }
}

/// Closes the session when the SSE stream is dropped (client gone, shutdown).
struct SessionGuard {
    hub: Arc<Hub>,
    session: Arc<Session>,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.hub.close(&self.session);
    }
}

async fn events(
    State(s): State<NeuronState>,
    Bearer(p): Bearer,
    Query(q): Query<EventsQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let id = neuron_id(q.neuron_id.as_deref())?;
    if s.hub.len() >= s.cfg.max_sessions {
        return Err(ApiError::Unavailable("too many neuron sessions".into()));
    }
    let (tx, rx) = mpsc::channel::<ServerFrame>(1024);
    let session = s.hub.open(&p.tenant, &id, &p.key_id, tx).map_err(|_| {
        ApiError::Conflict(format!(
            "neuron {id:?} is connected under another credential of this tenant"
        ))
    })?;
    tracing::info!(neuron = %id, tenant = %p.tenant, session = %session.id, "neuron connected");
    s.hub.start_routing(s.store.notifier());
    tokio::spawn(hub::dispatch(
        s.store.clone(),
        s.schemas.clone(),
        s.hub.clone(),
        session.clone(),
        s.cfg.lease_ttl_ms as i64,
        s.observer.clone(),
    ));
    let guard = SessionGuard {
        hub: s.hub.clone(),
        session: session.clone(),
    };
    let shutdown = s.shutdown.clone();
    // The first comment goes out at once: the SDK POSTs `register` only once
    // the stream is open.
    let first = futures_util::stream::once(async { Ok(Event::default().comment("connected")) });
    let frames = futures_util::stream::unfold(
        (rx, guard, shutdown, false),
        |(mut rx, guard, shutdown, done)| async move {
            if done {
                return None;
            }
            let closed = guard.session.closed.clone();
            tokio::select! {
                f = rx.recv() => {
                    let f = f?;
                    Some((Ok(to_event(&f)), (rx, guard, shutdown, false)))
                }
                () = shutdown.cancelled() => {
                    let bye = ServerFrame::Disconnect {
                        reason: "gateway shutting down".into(),
                        reconnectable: true,
                        sent_at: iso(Utc::now()),
                    };
                    Some((Ok(to_event(&bye)), (rx, guard, shutdown, true)))
                }
                () = closed.cancelled() => None,
            }
        },
    );
    Ok(
        Sse::new(futures_util::StreamExt::chain(first, frames)).keep_alive(
            KeepAlive::new()
                .interval(Duration::from_secs(s.cfg.keepalive_secs))
                .text("ping"),
        ),
    )
}

fn to_event(f: &ServerFrame) -> Event {
    Event::default()
        .event(f.event())
        .data(serde_json::to_string(f).unwrap_or_default())
}

fn session_of(s: &NeuronState, p: &Principal, neuron: &str) -> Result<Arc<Session>, ApiError> {
    let session = s.hub.get(&p.tenant, neuron).ok_or_else(|| {
        ApiError::Conflict(format!(
            "no open event stream for neuron {neuron:?}: open GET /neuron/events first"
        ))
    })?;
    // The neuron id is bound to the credential whose stream is open.
    if session.owner != p.key_id {
        return Err(ApiError::Forbidden(format!(
            "neuron {neuron:?} is connected under another credential"
        )));
    }
    Ok(session)
}

async fn register(
    State(s): State<NeuronState>,
    Bearer(p): Bearer,
    JsonBody(r): JsonBody<Register>,
) -> Result<Json<Value>, ApiError> {
    let id = neuron_id(Some(&r.neuron_id))?;
    if r.protocol_version.split('.').next() != Some("1") {
        return Err(ApiError::InvalidRequest(format!(
            "unsupported protocolVersion {:?}: this gateway speaks 1.x",
            r.protocol_version
        )));
    }
    if r.capabilities.is_empty() {
        return Err(ApiError::InvalidRequest(
            "capabilities must not be empty".into(),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for c in &r.capabilities {
        c.validate()?;
        if !seen.insert(c.kind.as_str()) {
            return Err(ApiError::InvalidRequest(format!(
                "duplicate capability type {:?}",
                c.kind
            )));
        }
    }
    // Revoked capabilities are left out of the accepted set rather than
    // refusing the whole registration: the SDK does not retry a refused
    // register, and the neuron's other capabilities must keep working.
    // The store is the record (revocations hold across restarts and
    // replicas); the hub's set covers this replica's own, even with the
    // store briefly behind.
    let stored: std::collections::HashSet<String> = s
        .store
        .capability_revocations()
        .await?
        .into_iter()
        .map(|(kind, _)| kind)
        .collect();
    let (accepted, revoked): (Vec<_>, Vec<_>) = r
        .capabilities
        .into_iter()
        .partition(|c| !s.hub.is_revoked(&c.kind) && !stored.contains(&c.kind));
    if accepted.is_empty() {
        return Err(ApiError::Forbidden(
            "every capability in this registration is revoked by the operator".into(),
        ));
    }
    let session = session_of(&s, &p, &id)?;
    // Leases this neuron still holds (granted before a gateway restart or a
    // reconnect) count against its concurrency before anything new is pushed.
    for job in s.store.jobs_leased_by(&session.holder_key(), None).await? {
        if let Some(lease) = &job.lease {
            session.track(&job.id, &job.topic, &wire::lease_id(&job.id, &lease.token));
        }
    }
    session.set_capabilities(&accepted);
    session.send(ServerFrame::Registered {
        session_id: session.id.clone(),
        capabilities: accepted,
        accepted_at: iso(Utc::now()),
    });
    let revoked: Vec<String> = revoked.into_iter().map(|c| c.kind).collect();
    Ok(Json(
        json!({"ok": true, "sessionId": session.id, "revoked": revoked}),
    ))
}

async fn update_capability(
    State(s): State<NeuronState>,
    Bearer(p): Bearer,
    JsonBody(u): JsonBody<UpdateCapability>,
) -> Result<Json<Value>, ApiError> {
    u.capability.validate()?;
    let session = session_of(&s, &p, &neuron_id(Some(&u.neuron_id))?)?;
    let kind = u.capability.kind.clone();
    if !session.update_capability(u.capability) {
        return Err(ApiError::NotFound(format!(
            "capability {kind:?} is not registered"
        )));
    }
    Ok(Json(json!({"ok": true})))
}

async fn heartbeat(
    State(s): State<NeuronState>,
    Bearer(p): Bearer,
    JsonBody(h): JsonBody<Heartbeat>,
) -> Result<Json<Value>, ApiError> {
    let id = neuron_id(Some(&h.neuron_id))?;
    let session = s.hub.get(&p.tenant, &id);
    if let Some(sess) = &session {
        sess.touch();
    }
    let key = holder_key(&p.tenant, &id);
    let mut lost = Vec::new();
    for entry in h.in_flight {
        let Ok((job_id, token)) = parse_lease_id(&entry.lease_id) else {
            lost.push(entry.lease_id);
            continue;
        };
        let ttl = session
            .as_deref()
            .and_then(|sess| sess.capability_of(job_id))
            .and_then(|c| c.lease_ttl_ms)
            .unwrap_or(s.cfg.lease_ttl_ms as i64);
        let renewed = s
            .store
            .job_extend(JobExtendParams {
                id: job_id.to_owned(),
                proof: LeaseProof::TokenAndKey {
                    token: token.to_owned(),
                    holder_key: key.clone(),
                },
                lease_ms: ttl,
                now: None,
            })
            .await;
        match renewed {
            Ok(job) => {
                // Adopt leases granted before a reconnect or a gateway restart.
                if let Some(sess) = &session
                    && !sess.holds(job_id)
                {
                    sess.track(job_id, &job.topic, &entry.lease_id);
                }
            }
            Err(StoreError::LeaseLost) => lost.push(entry.lease_id),
            Err(e) => return Err(e.into()),
        }
    }
    // Tell the neuron to stop work it no longer holds.
    if let Some(sess) = &session {
        for l in &lost {
            if let Ok((job_id, _)) = parse_lease_id(l) {
                sess.release(job_id);
            }
            sess.send(ServerFrame::Cancel {
                lease_id: l.clone(),
                reason: "lease lost".into(),
                cancelled_at: iso(Utc::now()),
            });
        }
    }
    Ok(Json(json!({"ok": true, "lost": lost})))
}

/// The proof for a lease id presented by `p`: token plus the holding
/// neuron's key when this replica knows the holder; otherwise the token,
/// which only the leasing stream ever saw.
fn proof_for(
    s: &NeuronState,
    p: &Principal,
    job_id: &str,
    token: &str,
) -> Result<(LeaseProof, Option<Arc<Session>>), ApiError> {
    match s.hub.holder_of(job_id) {
        Some(sess) if sess.tenant != p.tenant => Err(ApiError::NotFound(format!(
            "unknown lease for task {job_id}"
        ))),
        Some(sess) => Ok((
            LeaseProof::TokenAndKey {
                token: token.to_owned(),
                holder_key: sess.holder_key(),
            },
            Some(sess),
        )),
        None => Ok((LeaseProof::Token(token.to_owned()), None)),
    }
}

/// Frees the settled lease's slot on its holder (so the dispatcher can lease
/// more) and answers the neuron.
fn settled(holder: Option<Arc<Session>>, job: &agw_storage::Job) -> Json<Value> {
    if let Some(h) = holder {
        h.release(&job.id);
    }
    Json(json!({"ok": true, "taskId": job.id, "state": job.state.as_str()}))
}

fn lease_error(e: StoreError) -> ApiError {
    match e {
        StoreError::LeaseLost => ApiError::NotFound("unknown, expired or foreign lease".into()),
        other => other.into(),
    }
}

async fn ack(
    State(s): State<NeuronState>,
    Bearer(p): Bearer,
    JsonBody(a): JsonBody<Ack>,
) -> Result<Json<Value>, ApiError> {
    let (job_id, token) = parse_lease_id(&a.lease_id)?;
    let output = a.output.unwrap_or(Value::Null);
    check_payload(
        &output,
        &Limits {
            max_payload_bytes: MAX_FRAME_BYTES,
            ..(*s.limits).clone()
        },
    )?;
    let (proof, holder) = proof_for(&s, &p, job_id, token)?;
    let job = s
        .store
        .job_complete(JobCompleteParams {
            id: job_id.to_owned(),
            proof,
            result: output,
            result_type: ResultType::Json,
            now: None,
        })
        .await
        .map_err(lease_error)?;
    s.observer.settled(&job, Settlement::Ack);
    Ok(settled(holder, &job))
}

async fn nack(
    State(s): State<NeuronState>,
    Bearer(p): Bearer,
    JsonBody(n): JsonBody<Nack>,
) -> Result<Json<Value>, ApiError> {
    let (job_id, token) = parse_lease_id(&n.lease_id)?;
    let (terminal, refund) = match n.kind.as_str() {
        "retryable" => (false, UNSTARTED_REASONS.contains(&n.reason.as_str())),
        "terminal" | "schema-mismatch" | "cancelled" => (true, false),
        other => {
            return Err(ApiError::InvalidRequest(format!(
                "kind must be retryable, terminal, schema-mismatch or cancelled, got {other:?}"
            )));
        }
    };
    let mut error = format!("{}: {}", n.kind, n.reason);
    if let Some(code) = &n.code {
        error = format!("{error} ({code})");
    }
    let (proof, holder) = proof_for(&s, &p, job_id, token)?;
    let job = s
        .store
        .job_fail(JobFailParams {
            id: job_id.to_owned(),
            proof,
            error: without_nul(error).chars().take(2000).collect(),
            terminal,
            refund_attempt: refund,
            max_backoff_ms: NACK_MAX_BACKOFF_MS,
            now: None,
        })
        .await
        .map_err(lease_error)?;
    s.observer.settled(&job, Settlement::Nack);
    Ok(settled(holder, &job))
}

async fn progress(
    State(s): State<NeuronState>,
    Bearer(p): Bearer,
    JsonBody(pr): JsonBody<Progress>,
) -> Result<Json<Value>, ApiError> {
    let (job_id, token) = parse_lease_id(&pr.lease_id)?;
    if let Some(pct) = pr.percent
        && !(0.0..=100.0).contains(&pct)
    {
        return Err(ApiError::InvalidRequest(
            "percent must be between 0 and 100".into(),
        ));
    }
    let mut report = serde_json::Map::new();
    if let Some(pct) = pr.percent {
        report.insert("percent".into(), json!(pct));
    }
    if let Some(m) = pr.message {
        report.insert("message".into(), json!(m));
    }
    if let Some(d) = pr.data {
        report.insert("data".into(), d);
    }
    report.insert("at".into(), json!(iso(Utc::now())));
    let (proof, _) = proof_for(&s, &p, job_id, token)?;
    s.store
        .job_progress(JobProgressParams {
            id: job_id.to_owned(),
            proof,
            progress: Value::Object(report),
            now: None,
        })
        .await
        .map_err(lease_error)?;
    Ok(Json(json!({"ok": true})))
}

#[derive(Debug, Deserialize)]
struct RevokeRequest {
    capability: String,
    reason: Option<String>,
}

async fn revoke_capability(
    State(s): State<NeuronState>,
    Bearer(p): Bearer,
    body: Result<JsonBody<RevokeRequest>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    if !p.is_admin() {
        return Err(ApiError::Forbidden(
            "only the admin key may revoke capabilities".into(),
        ));
    }
    let JsonBody(r) = body?;
    if !wire::valid_capability_type(&r.capability) {
        return Err(ApiError::InvalidRequest(
            "capability must be a namespaced type like owner/package".into(),
        ));
    }
    let reason = without_nul(
        r.reason
            .filter(|r| !r.trim().is_empty())
            .unwrap_or_else(|| "revoked by operator".into()),
    );
    s.store
        .capability_revoke(&r.capability, &reason, None)
        .await?;
    let sessions = s.hub.revoke_capability(&r.capability, &reason);
    Ok(Json(
        json!({"ok": true, "capability": r.capability, "sessions": sessions}),
    ))
}
