//! The Intent Bus protocol (SDK generations 1.3.2 / protocol 2.0 and 2.1.2 /
//! server 7.61): signed HTTP polling over the shared job store. Handlers parse
//! ([`wire`]), call one store method, and encode; no SQL, no lifecycle rules.

pub mod wire;

use agw_storage::SettingsStore;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::PathRejection;
use axum::extract::{Extension, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router, middleware};
use chrono::Utc;
use serde_json::{Map, Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use agw_config::{IntentBus, Limits};
use agw_storage::{
    IdempotencyKey, JobClaimParams, JobCompleteParams, JobExtendParams, JobFailParams,
    JobInsertOutcome, JobInsertParams, JobStore, KvSetParams, LeaseProof, Notifier, ResultType,
    Store, sha256_hex,
};

use crate::http::auth::{Authenticator, Principal, create_api_key, require_api_key};
use crate::http::body::{check_payload, path_segment, printable, without_nul};
use crate::http::{ApiError, JsonBody, JsonBodyBytes, Query};
use crate::observe::{Observer, Settlement};
use wire::{
    ClaimQuery, ClaimResponse, ExtendRequest, FailRequest, FulfillRequest, GenerateKeyRequest,
    KvSetRequest, MAX_ERROR_LEN, MAX_NAME_LEN, PublishRequest, ResultResponse, StatusResponse,
    owner_name, status_name,
};

/// The protocol version clients see in `X-Intent-Version` (2.1.2 checks the major).
pub const PROTOCOL_VERSION: &str = "7.61";

/// Everything the Intent Bus handlers need.
#[derive(Debug, Clone)]
pub struct IntentBusState {
    /// The job store.
    pub store: Store,
    /// Key resolution and signatures.
    pub auth: Arc<Authenticator>,
    /// This protocol's settings.
    pub cfg: Arc<IntentBus>,
    /// Request and tenant limits.
    pub limits: Arc<Limits>,
    /// Fires at shutdown: long polls answer at once.
    pub shutdown: CancellationToken,
    /// Job lifecycle hooks (metrics).
    pub observer: Arc<dyn Observer>,
    /// The governance settings in force: their route topics are reserved.
    pub policy: Arc<crate::governance::policy::Engine>,
}

/// The Intent Bus routes. Everything but `GET /` requires an API key.
pub fn router(state: IntentBusState) -> Router {
    let authed = Router::new()
        .route("/intent", post(publish))
        .route("/claim", post(claim))
        .route("/fulfill/{id}", post(fulfill))
        .route("/fail/{id}", post(fail))
        .route("/extend_claim/{id}", post(extend_claim))
        .route("/status/{id}", get(status))
        .route("/result/{id}", get(result))
        .route("/set/{key}", post(kv_set))
        .route("/get/{key}", get(kv_get))
        .route("/admin/generate_key", post(generate_key))
        .route_layer(middleware::from_fn_with_state(
            state.auth.clone(),
            require_api_key,
        ))
        .with_state(Arc::new(state));
    Router::new().route("/", get(banner)).merge(authed)
}

async fn banner() -> &'static str {
    concat!(
        "agent-gateway ",
        env!("CARGO_PKG_VERSION"),
        ": Intent Bus protocol ",
        "7.61",
        " (signed HTTP polling). See /healthz, /readyz, /metrics.\n"
    )
}

fn header<'h>(h: &'h HeaderMap, name: &str) -> Option<&'h str> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// Longest `Idempotency-Key`.
const MAX_IDEMPOTENCY_KEY_LEN: usize = 128;

/// A publish's `Idempotency-Key` (blank or absent: none).
#[derive(Debug)]
struct IdempotencyKeyHeader(Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKeyHeader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        match header(&parts.headers, "idempotency-key") {
            Some(k) if k.len() > MAX_IDEMPOTENCY_KEY_LEN => Err(ApiError::InvalidRequest(format!(
                "Idempotency-Key cannot exceed {MAX_IDEMPOTENCY_KEY_LEN} characters"
            ))),
            k => Ok(Self(k.map(str::to_owned))),
        }
    }
}

/// Who is claiming: `X-Worker-ID` (blank or absent: none) and the
/// comma-separated `X-Worker-Capabilities`.
#[derive(Debug)]
struct WorkerHeaders {
    id: Option<String>,
    capabilities: Vec<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for WorkerHeaders {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let id = match header(&parts.headers, "x-worker-id") {
            Some(w) if w.len() > MAX_NAME_LEN => {
                return Err(ApiError::InvalidRequest(format!(
                    "X-Worker-ID cannot exceed {MAX_NAME_LEN} characters"
                )));
            }
            w => w.map(str::to_owned),
        };
        let capabilities = header(&parts.headers, "x-worker-capabilities")
            .map(|c| {
                c.split(',')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self { id, capabilities })
    }
}

async fn publish(
    State(s): State<Arc<IntentBusState>>,
    Extension(p): Extension<Principal>,
    idem_key: Result<IdempotencyKeyHeader, ApiError>,
    body: JsonBodyBytes<PublishRequest>,
) -> Result<Response, ApiError> {
    let JsonBodyBytes { value: req, bytes } = body;
    let mut job = req.into_job(&p.tenant, &s.limits)?;
    crate::governance::check_not_reserved(s.policy.as_ref(), &p, &job.topic)?;
    job.metadata = crate::http::trace::with_traceparent(job.metadata.take());
    let now = Utc::now();
    let IdempotencyKeyHeader(idem_key) = idem_key?;
    // The response is fixed before the insert so that it can be stored with
    // the idempotency record in the same transaction.
    let response = StatusResponse::for_new(&job, now);
    let response_body =
        serde_json::to_string(&response).map_err(|e| ApiError::Internal(e.to_string()))?;
    let request_hash = sha256_hex(&bytes);
    let idempotency = idem_key.map(|key| IdempotencyKey {
        key,
        request_hash: request_hash.clone(),
        response_status: 201,
        response_body: response_body.clone(),
        expires_at: now + chrono::Duration::seconds(s.cfg.idempotency_ttl_secs as i64),
    });
    let cap = s.limits.max_open_jobs_per_tenant;
    let outcome = s
        .store
        .job_insert(JobInsertParams {
            job,
            idempotency,
            max_open_per_tenant: (cap > 0 && !p.is_admin()).then_some(cap),
            now: Some(now),
        })
        .await?;
    let (status, body, replayed) = match outcome {
        JobInsertOutcome::Inserted(job) => {
            s.observer.published(&job);
            (StatusCode::CREATED, response_body, false)
        }
        JobInsertOutcome::Replayed {
            request_hash: first,
            response_status,
            response_body,
        } => {
            if first != request_hash {
                return Err(ApiError::Conflict(
                    "Idempotency-Key was already used with a different request body".into(),
                ));
            }
            (
                StatusCode::from_u16(response_status).unwrap_or(StatusCode::CREATED),
                response_body,
                true,
            )
        }
    };
    let mut res = (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    if replayed {
        res.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(res)
}

async fn claim(
    State(s): State<Arc<IntentBusState>>,
    Extension(p): Extension<Principal>,
    Query(q): Query<ClaimQuery>,
    worker: Result<WorkerHeaders, ApiError>,
) -> Result<Response, ApiError> {
    for (what, v) in [("goal", &q.goal), ("namespace", &q.namespace)] {
        if let Some(v) = v {
            printable(what, v)?;
        }
    }
    let publisher = match q
        .publisher
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
    {
        None => None,
        Some(name) if p.is_admin() => Some(name.to_owned()),
        Some(name) if name == p.tenant => Some(p.tenant.clone()),
        // The SDK documents `publisher` as "published by this API key".
        Some(key)
            if s.auth
                .resolve_key(key)
                .await?
                .is_some_and(|k| k.tenant == p.tenant) =>
        {
            Some(p.tenant.clone())
        }
        Some(_) => {
            return Err(ApiError::Forbidden(
                "publisher filter is limited to your own intents".into(),
            ));
        }
    };
    let worker = worker?;
    let worker_id = worker.id.unwrap_or_else(|| format!("key:{}", p.key_id));
    let topic = q
        .goal
        .map(|g| g.trim().to_owned())
        .filter(|g| !g.is_empty());
    let claim_timeout = s.cfg.claim_timeout_secs as i64;
    let params = JobClaimParams {
        scope: p.scope(),
        public_work: true,
        topic: topic.clone(),
        namespace: Some(
            q.namespace
                .map(|n| n.trim().to_owned())
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "default".into()),
        ),
        publisher,
        worker_id,
        holder_key: Some(p.key_id.clone()),
        capabilities: worker.capabilities,
        on_behalf_of: None,
        lease_ms: claim_timeout * 1000,
        now: None,
    };
    let wait = match q.wait {
        Some(w) if !w.is_finite() || w < 0.0 => {
            return Err(ApiError::InvalidRequest(
                "wait must be a non-negative number of seconds".into(),
            ));
        }
        Some(w) => w.min(s.cfg.max_wait_secs as f64),
        None => 0.0,
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(wait);
    // Subscribe before the first look so no wake-up slips in between.
    let mut wakeups = s.store.notifier().subscribe();
    loop {
        if let Some(job) = s.store.job_claim(params.clone()).await? {
            s.observer.leased(&job);
            return Ok(Json(ClaimResponse::new(job, claim_timeout)?).into_response());
        }
        let woke = tokio::select! {
            () = s.shutdown.cancelled() => false,
            r = tokio::time::timeout_at(deadline, next_wakeup(&mut wakeups, topic.as_deref())) => r.is_ok(),
        };
        if !woke {
            break;
        }
    }
    let mut res = StatusCode::NO_CONTENT.into_response();
    res.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(s.cfg.idle_retry_after_secs),
    );
    Ok(res)
}

/// Resolves on the next wake-up for `topic` (any topic when `None`).
async fn next_wakeup(
    rx: &mut tokio::sync::broadcast::Receiver<Arc<agw_storage::Wake>>,
    topic: Option<&str>,
) {
    loop {
        match rx.recv().await {
            Ok(t) if topic.is_none_or(|want| Notifier::wakes(&t, want)) => return,
            Ok(_) => {}
            // Missed some hints: look again.
            Err(RecvError::Lagged(_)) => return,
            Err(RecvError::Closed) => std::future::pending::<()>().await,
        }
    }
}

async fn fulfill(
    State(s): State<Arc<IntentBusState>>,
    Extension(p): Extension<Principal>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Option<JsonBody<Map<String, Value>>>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    let id = path_segment(id, "intent id")?;
    let (proof, result, result_type) = match FulfillRequest::from_body(body?.map(|b| b.0))? {
        FulfillRequest::Tokened {
            claim_token,
            result,
            result_type,
        } => (
            LeaseProof::TokenAndKey {
                token: claim_token,
                holder_key: p.key_id.clone(),
            },
            result,
            result_type,
        ),
        FulfillRequest::Legacy { result } => (
            LeaseProof::HolderKey(p.key_id.clone()),
            result,
            ResultType::Json,
        ),
    };
    check_payload(&result, &s.limits)?;
    let job = s
        .store
        .job_complete(JobCompleteParams {
            id,
            proof,
            result,
            result_type,
            now: None,
        })
        .await?;
    s.observer.settled(&job, Settlement::Fulfilled);
    Ok(Json(
        json!({"ok": true, "id": job.id, "status": status_name(job.state)}),
    ))
}

async fn fail(
    State(s): State<Arc<IntentBusState>>,
    Extension(p): Extension<Principal>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Option<JsonBody<FailRequest>>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    let id = path_segment(id, "intent id")?;
    let req = body?.map(|b| b.0).unwrap_or_default();
    if let Some(token) = &req.claim_token {
        printable("claim_token", token)?;
    }
    let proof = match req.claim_token {
        Some(token) => LeaseProof::TokenAndKey {
            token,
            holder_key: p.key_id.clone(),
        },
        None => LeaseProof::HolderKey(p.key_id.clone()),
    };
    let error: String = without_nul(req.error.unwrap_or_else(|| "worker failure".into()))
        .chars()
        .take(MAX_ERROR_LEN)
        .collect();
    let job = s
        .store
        .job_fail(JobFailParams {
            id,
            proof,
            error,
            terminal: false,
            refund_attempt: false,
            max_backoff_ms: s.cfg.max_backoff_secs as i64 * 1000,
            now: None,
        })
        .await?;
    s.observer.settled(&job, Settlement::Failed);
    let st = StatusResponse::from(&job);
    Ok(Json(json!({
        "ok": true, "id": st.id, "status": st.status, "run_at": st.run_at,
        "claim_attempts": st.claim_attempts, "max_attempts": st.max_attempts, "error": st.error,
    })))
}

async fn extend_claim(
    State(s): State<Arc<IntentBusState>>,
    Extension(p): Extension<Principal>,
    id: Result<Path<String>, PathRejection>,
    body: Result<JsonBody<ExtendRequest>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    let id = path_segment(id, "intent id")?;
    let JsonBody(req) = body?;
    printable("claim_token", &req.claim_token)?;
    let seconds = req.seconds.unwrap_or(s.cfg.claim_timeout_secs as i64);
    let max = s.cfg.max_extend_secs as i64;
    if !(1..=max).contains(&seconds) {
        return Err(ApiError::InvalidRequest(format!(
            "seconds must be between 1 and {max}, got {seconds}"
        )));
    }
    let job = s
        .store
        .job_extend(JobExtendParams {
            id,
            proof: LeaseProof::TokenAndKey {
                token: req.claim_token,
                holder_key: p.key_id,
            },
            lease_ms: seconds * 1000,
            now: None,
        })
        .await?;
    let expires = job
        .lease
        .map(|l| l.expires_at.timestamp_millis() as f64 / 1000.0);
    Ok(Json(
        json!({"ok": true, "id": job.id, "status": status_name(job.state), "lease_expires_at": expires, "claim_timeout": seconds}),
    ))
}

/// An intent the caller may read (its own tenant's, or any for admin).
async fn own_intent(
    s: &IntentBusState,
    p: &Principal,
    id: Result<Path<String>, PathRejection>,
) -> Result<agw_storage::Job, ApiError> {
    let id = path_segment(id, "intent id")?;
    s.store
        .job_get(&id, &p.scope())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no intent {id}")))
}

async fn status(
    State(s): State<Arc<IntentBusState>>,
    Extension(p): Extension<Principal>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<StatusResponse>, ApiError> {
    let job = own_intent(&s, &p, id).await?;
    Ok(Json(StatusResponse::from(&job)))
}

async fn result(
    State(s): State<Arc<IntentBusState>>,
    Extension(p): Extension<Principal>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<ResultResponse>, ApiError> {
    let job = own_intent(&s, &p, id).await?;
    Ok(Json(ResultResponse::from(&job)))
}

async fn kv_set(
    State(s): State<Arc<IntentBusState>>,
    Extension(p): Extension<Principal>,
    key: Result<Path<String>, PathRejection>,
    body: Result<JsonBody<KvSetRequest>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    let key = path_segment(key, "key")?;
    let JsonBody(req) = body?;
    let value = req
        .value
        .ok_or_else(|| ApiError::InvalidRequest("value is required".into()))?;
    check_payload(&value, &s.limits)?;
    let ttl = req.ttl.unwrap_or(600);
    if !(1..=86_400).contains(&ttl) {
        return Err(ApiError::InvalidRequest(format!(
            "ttl must be between 1 and 86400 seconds, got {ttl}"
        )));
    }
    s.store
        .kv_set(KvSetParams {
            scope: p.tenant,
            key,
            value,
            ttl_ms: ttl * 1000,
            now: None,
        })
        .await?;
    Ok(Json(json!({"ok": true})))
}

async fn kv_get(
    State(s): State<Arc<IntentBusState>>,
    Extension(p): Extension<Principal>,
    key: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let key = path_segment(key, "key")?;
    let value = s
        .store
        .kv_get(&p.tenant, &key, None)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no key {key}")))?;
    Ok(Json(json!({"value": value})))
}

async fn generate_key(
    State(s): State<Arc<IntentBusState>>,
    Extension(p): Extension<Principal>,
    body: Result<JsonBody<GenerateKeyRequest>, ApiError>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    if !p.is_admin() {
        return Err(ApiError::Forbidden(
            "only the admin key may create keys".into(),
        ));
    }
    let JsonBody(req) = body?;
    let owner = owner_name(req.owner.trim())?;
    let (key, raw) = create_api_key(&s.store, &owner).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"api_key": raw, "owner": key.owner, "key_id": key.id})),
    ))
}
