//! The operator console at `/console/`: server-rendered HTML over the same
//! store, sessions signed in with the admin key or a tenant API key, live
//! fragments over SSE, and its assets embedded in the binary.
//!
//! Layout: `session` (sign-in sessions, CSRF, the [`Operator`] extractor),
//! `view` (the HTML), `chart` (the inline SVG chart), `assets/` (CSS, JS,
//! icon; `include_str!`ed).

mod chart;
pub mod session;
mod view;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{FormRejection, PathRejection, QueryRejection};
use axum::extract::{FromRef, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use chrono::{DateTime, Utc};
use futures_util::Stream;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use agw_storage::{
    AuthStore, EventQuery, EventStore, GovernanceStore, HolderKind, Job, JobCancelParams,
    JobListParams, JobRetryParams, JobState, JobStore, Scope, Store, StoreError, TopicPurgeParams,
    sha256_hex,
};

use crate::http::ApiError;
use crate::http::auth::{Authenticator, peer_of};
use crate::neuron::hub::Hub;
use crate::observe::{Observer, Settlement};
pub use session::{Operator, Sessions};
use view::TopicRow;

/// Jobs per page of the job list.
const PAGE: i64 = 50;
/// How often a live view re-renders (a change shows within this, plus the
/// time to render and send).
const LIVE_EVERY: Duration = Duration::from_secs(1);
/// Consumers "seen recently": a lease granted within this.
const RECENT: chrono::Duration = chrono::Duration::minutes(5);
/// Events shown (and verified) per job.
const MAX_EVENTS: i64 = 500;

/// What the console needs.
#[derive(Debug, Clone)]
pub struct ConsoleState {
    /// The job store.
    pub store: Store,
    /// Key resolution and the pre-auth limit.
    pub auth: Arc<Authenticator>,
    /// This replica's neuron sessions (cancel frames, the neurons page).
    pub hub: Arc<Hub>,
    /// Job lifecycle hooks (a console cancel is counted like any other).
    pub observer: Arc<dyn Observer>,
    /// The execution events' redaction keys, applied to every payload shown.
    pub redact_keys: Arc<Vec<String>>,
    /// Signed-in sessions.
    pub sessions: Arc<Sessions>,
    /// Fires at shutdown (live streams end).
    pub shutdown: CancellationToken,
}

impl FromRef<ConsoleState> for Arc<Authenticator> {
    fn from_ref(s: &ConsoleState) -> Self {
        s.auth.clone()
    }
}

/// Every console route.
pub fn router(state: ConsoleState) -> Router {
    Router::new()
        .route("/console", get(to_root))
        .route("/console/", get(root))
        .route("/console/login", post(login))
        .route("/console/logout", post(logout))
        .route("/console/topics", get(topics))
        .route("/console/topics/purge", post(purge))
        .route("/console/jobs", get(jobs))
        .route("/console/jobs/{id}", get(job))
        .route("/console/jobs/{id}/retry", post(retry))
        .route("/console/jobs/{id}/cancel", post(cancel))
        .route("/console/neurons", get(neurons))
        .route("/console/traces/{trace_id}", get(trace))
        .route("/console/keys", get(keys).post(key_create))
        .route("/console/keys/{key_id}/revoke", post(key_revoke))
        .route("/console/live/topics", get(live_topics))
        .route("/console/live/jobs", get(live_jobs))
        .route("/console/live/jobs/{id}", get(live_job))
        .route("/console/assets/{name}", get(asset))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

/// The console's own headers: a strict CSP (nothing but this origin; no
/// inline script or style), no framing, no referrer to other sites (a
/// `no-referrer` policy would make browsers send `Origin: null` on forms).
async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    res
}

// === errors ===

/// A console failure, answered with an HTML page (or, for a visitor without
/// a session, a redirect to the sign-in page).
#[derive(Debug)]
pub enum ConsoleError {
    /// No (or no longer a) valid session: 303 to `/console/`.
    SignIn,
    /// 400: a bad filter, form or path.
    BadRequest(String),
    /// 403: an admin-only page, a bad CSRF token.
    Forbidden(String),
    /// 404: no such job, trace or key.
    NotFound(String),
    /// 409: the action does not apply to the job's state.
    Conflict(String),
    /// Anything the shared API error type describes (store failures, 429).
    Api(ApiError),
}

impl From<StoreError> for ConsoleError {
    fn from(e: StoreError) -> Self {
        Self::Api(e.into())
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let (status, title, message) = match self {
            Self::SignIn => return Redirect::to("/console/").into_response(),
            Self::BadRequest(m) => (StatusCode::BAD_REQUEST, "Bad request", m),
            Self::Forbidden(m) => (StatusCode::FORBIDDEN, "Forbidden", m),
            Self::NotFound(m) => (StatusCode::NOT_FOUND, "Not found", m),
            Self::Conflict(m) => (StatusCode::CONFLICT, "Not possible now", m),
            Self::Api(e) => {
                let (status, _) = e.status_and_code();
                // The JSON response keeps the 5xx cause for the error log;
                // the page says only what a client may know.
                let json = e.into_response();
                let message = if status.is_server_error() {
                    "the gateway could not answer; try again".to_owned()
                } else {
                    status.canonical_reason().unwrap_or("error").to_owned()
                };
                let mut res =
                    (status, Html(view::error_page(None, "Error", &message))).into_response();
                for (k, v) in json.headers() {
                    if k == header::RETRY_AFTER {
                        res.headers_mut().insert(k, v.clone());
                    }
                }
                if let Some(d) = json.extensions().get::<crate::http::ErrorDetail>() {
                    res.extensions_mut().insert(d.clone());
                }
                return res;
            }
        };
        (status, Html(view::error_page(None, title, &message))).into_response()
    }
}

type PageResult = Result<Response, ConsoleError>;

fn html(body: String) -> Response {
    Html(body).into_response()
}

fn bad_path(e: PathRejection) -> ConsoleError {
    ConsoleError::BadRequest(format!("bad path: {}", e.body_text()))
}

fn bad_form(e: FormRejection) -> ConsoleError {
    ConsoleError::BadRequest(format!("bad form: {}", e.body_text()))
}

/// A path id: non-empty, printable, at most 200 characters.
fn id_of(p: Result<Path<String>, PathRejection>, what: &str) -> Result<String, ConsoleError> {
    let Path(id) = p.map_err(bad_path)?;
    if id.is_empty() || id.len() > 200 || id.chars().any(char::is_control) {
        return Err(ConsoleError::BadRequest(format!("invalid {what}")));
    }
    Ok(id)
}

// === sign-in ===

async fn to_root() -> Redirect {
    Redirect::permanent("/console/")
}

async fn root(State(s): State<ConsoleState>, parts: Parts) -> Response {
    let mut parts = parts;
    match <Operator as axum::extract::FromRequestParts<ConsoleState>>::from_request_parts(
        &mut parts, &s,
    )
    .await
    {
        Ok(_) => Redirect::to("/console/topics").into_response(),
        Err(_) => html(view::sign_in(None)),
    }
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    key: String,
}

/// `POST /console/login`: a right key opens a session; a wrong one gets the
/// sign-in page again with a message, and counts against the pre-auth limit
/// of its address like any failed authentication.
async fn login(
    State(s): State<ConsoleState>,
    parts: Parts,
    form: Result<Form<LoginForm>, FormRejection>,
) -> PageResult {
    let peer = peer_of(&parts.extensions);
    let limited = |retry_after: u64| {
        let mut res = (
            StatusCode::TOO_MANY_REQUESTS,
            Html(view::sign_in(Some(&format!(
                "Too many failed sign-ins from this address: try again in {retry_after} s."
            )))),
        )
            .into_response();
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        res
    };
    if let Err(ApiError::RateLimited { retry_after }) = s.auth.preauth_gate(peer) {
        return Ok(limited(retry_after));
    }
    if !session::same_origin(&parts.headers) {
        return Err(ConsoleError::Forbidden(
            "cross-origin sign-in refused".into(),
        ));
    }
    let Form(form) = form.map_err(bad_form)?;
    let key = form.key.trim();
    if key.is_empty() {
        return Ok((
            StatusCode::BAD_REQUEST,
            Html(view::sign_in(Some("Enter a key."))),
        )
            .into_response());
    }
    let refused = match s.auth.resolve_key(key).await {
        Ok(Some(_)) => None,
        Ok(None) => Some("That key is not valid: no such admin or tenant API key."),
        Err(ApiError::Unauthorized(_)) => Some("That key was revoked."),
        Err(other) => return Err(ConsoleError::Api(other)),
    };
    if let Some(message) = refused {
        if let Err(ApiError::RateLimited { retry_after }) = s.auth.preauth_take(peer) {
            return Ok(limited(retry_after));
        }
        return Ok((StatusCode::UNAUTHORIZED, Html(view::sign_in(Some(message)))).into_response());
    }
    let (id, _) = s.sessions.open(sha256_hex(key.as_bytes()));
    let mut res = Redirect::to("/console/topics").into_response();
    if let Ok(v) = HeaderValue::from_str(&session::set_cookie(&id, &parts.headers)) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(res)
}

#[derive(Debug, Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout(
    State(s): State<ConsoleState>,
    op: Operator,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> PageResult {
    let Form(f) = form.map_err(bad_form)?;
    op.check_form(&headers, &f.csrf)?;
    s.sessions.close(&op.session);
    let mut res = Redirect::to("/console/").into_response();
    if let Ok(v) = HeaderValue::from_str(&session::clear_cookie()) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(res)
}

// === topics ===

#[derive(Debug, Deserialize)]
struct TopicsQuery {
    purged: Option<u64>,
    topic: Option<String>,
}

async fn topic_rows(
    s: &ConsoleState,
    op: &Operator,
    now: DateTime<Utc>,
) -> Result<Vec<TopicRow>, ConsoleError> {
    let scope = op.principal.scope();
    let since = now - chrono::Duration::minutes(60);
    let (counts, activity, holders) = tokio::try_join!(
        s.store.jobs_topic_counts(&scope),
        s.store.jobs_activity(&scope, since, 60),
        s.store.jobs_recent_holders(&scope, now - RECENT),
    )?;
    let mut rows: BTreeMap<String, TopicRow> = BTreeMap::new();
    for c in counts {
        let row = rows.entry(c.topic.clone()).or_insert_with(|| TopicRow {
            topic: c.topic.clone(),
            ..TopicRow::default()
        });
        let col = match (c.state, c.failed) {
            (JobState::Open, _) => 0,
            (JobState::Leased, _) => 2,
            (JobState::Fulfilled, _) => 3,
            (JobState::Dead, _) => 4,
            (JobState::Cancelled, _) => 5,
        };
        row.counts[col] += c.count;
        if c.failed {
            row.counts[1] += c.count;
        }
        if c.state == JobState::Open {
            row.oldest_open = Some(row.oldest_open.map_or(c.oldest, |o| o.min(c.oldest)));
        }
    }
    for h in holders {
        if h.kind == HolderKind::Worker
            && let Some(row) = rows.get_mut(&h.topic)
            && !row.workers.contains(&h.holder)
        {
            row.workers.push(h.holder);
        }
    }
    for sess in s.hub.sessions() {
        if !op.principal.is_admin() && sess.tenant != op.principal.tenant {
            continue;
        }
        let leases = sess.leases();
        for cap in sess.capabilities() {
            if let Some(row) = rows.get_mut(&cap.kind) {
                let held = leases.iter().filter(|(_, k)| *k == cap.kind).count();
                row.neurons
                    .push((sess.neuron_id.clone(), cap.concurrency, held));
            }
        }
    }
    let activity: BTreeMap<String, Vec<agw_storage::MinuteActivity>> =
        activity.into_iter().map(|a| (a.topic, a.minutes)).collect();
    let empty = vec![agw_storage::MinuteActivity::default(); 60];
    for row in rows.values_mut() {
        let live = row.counts[0] + row.counts[2];
        let minutes = activity.get(&row.topic).unwrap_or(&empty);
        row.chart = chart::svg(&row.topic, minutes, live);
        row.neurons.sort();
        row.workers.sort();
    }
    Ok(rows.into_values().collect())
}

async fn topics_html(s: &ConsoleState, op: &Operator) -> Result<String, ConsoleError> {
    let now = Utc::now();
    Ok(view::topics_fragment(
        op,
        &topic_rows(s, op, now).await?,
        now,
    ))
}

async fn topics(
    State(s): State<ConsoleState>,
    op: Operator,
    query: Result<Query<TopicsQuery>, QueryRejection>,
) -> PageResult {
    let Query(q) = query.map_err(|e| ConsoleError::BadRequest(e.body_text()))?;
    let notice = match (q.purged, q.topic) {
        (Some(n), Some(t)) => format!(
            "<p class=\"notice\" id=\"purged\" role=\"status\">Purged {n} settled job{} of {}.</p>",
            if n == 1 { "" } else { "s" },
            view::esc(&t)
        ),
        _ => String::new(),
    };
    let fragment = topics_html(&s, &op).await?;
    let body = format!(
        "{notice}<section id=\"live\" data-live=\"/console/live/topics?v={}\" aria-live=\"polite\">{fragment}</section>",
        fingerprint(&fragment)
    );
    Ok(html(view::page(
        "Topics",
        Some(&op),
        "/console/topics",
        &body,
    )))
}

#[derive(Debug, Deserialize)]
struct PurgeForm {
    csrf: String,
    topic: String,
}

async fn purge(
    State(s): State<ConsoleState>,
    op: Operator,
    headers: HeaderMap,
    form: Result<Form<PurgeForm>, FormRejection>,
) -> PageResult {
    let Form(f) = form.map_err(bad_form)?;
    op.check_form(&headers, &f.csrf)?;
    if f.topic.is_empty() || f.topic.len() > 256 {
        return Err(ConsoleError::BadRequest("invalid topic".into()));
    }
    let n = s
        .store
        .jobs_purge_topic(TopicPurgeParams {
            scope: op.principal.scope(),
            topic: f.topic.clone(),
        })
        .await?;
    tracing::info!(topic = %f.topic, jobs = n, by = %op.principal.key_id, "console: settled jobs purged");
    Ok(Redirect::to(&format!(
        "/console/topics?purged={n}&topic={}",
        view::q(&f.topic)
    ))
    .into_response())
}

// === jobs ===

#[derive(Debug, Deserialize)]
struct JobsQuery {
    topic: Option<String>,
    state: Option<String>,
    before: Option<String>,
    /// Live streams: the fingerprint of the fragment the page shows.
    v: Option<String>,
}

/// A validated job filter.
struct Filter {
    topic: Option<String>,
    state: Option<String>,
    params: JobListParams,
}

fn filter(op: &Operator, q: JobsQuery) -> Result<Filter, ConsoleError> {
    let topic = q.topic.filter(|t| !t.is_empty());
    if let Some(t) = &topic
        && (t.len() > 256 || t.chars().any(char::is_control))
    {
        return Err(ConsoleError::BadRequest("invalid topic filter".into()));
    }
    let state = q.state.filter(|s| !s.is_empty());
    let (st, failed_only) = match state.as_deref() {
        None => (None, false),
        Some("failed") => (Some(JobState::Open), true),
        Some(other) => (
            Some(JobState::parse(other).ok_or_else(|| {
                ConsoleError::BadRequest(format!(
                    "unknown state {other:?}: expected one of {}",
                    view::COLUMNS.join(", ")
                ))
            })?),
            false,
        ),
    };
    let before = match q.before.filter(|b| !b.is_empty()) {
        None => None,
        Some(b) => {
            let parsed = b.split_once(':').and_then(|(ms, id)| {
                Some((
                    DateTime::from_timestamp_millis(ms.parse().ok()?)?,
                    id.to_owned(),
                ))
            });
            Some(parsed.ok_or_else(|| ConsoleError::BadRequest("invalid page cursor".into()))?)
        }
    };
    Ok(Filter {
        params: JobListParams {
            scope: op.principal.scope(),
            topic: topic.clone(),
            state: st,
            failed_only,
            before,
            limit: PAGE + 1,
        },
        topic,
        state,
    })
}

fn jobs_url(base: &str, topic: Option<&str>, state: Option<&str>, before: Option<&str>) -> String {
    let mut parts = Vec::new();
    if let Some(t) = topic {
        parts.push(format!("topic={}", view::q(t)));
    }
    if let Some(s) = state {
        parts.push(format!("state={}", view::q(s)));
    }
    if let Some(b) = before {
        parts.push(format!("before={}", view::q(b)));
    }
    if parts.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", parts.join("&"))
    }
}

async fn jobs_html(s: &ConsoleState, op: &Operator, f: &Filter) -> Result<String, ConsoleError> {
    let mut list = s.store.jobs_list(f.params.clone()).await?;
    let next = if list.len() as i64 > PAGE {
        list.truncate(PAGE as usize);
        list.last().map(|j| {
            let cursor = format!("{}:{}", j.created_at.timestamp_millis(), j.id);
            jobs_url(
                "/console/jobs",
                f.topic.as_deref(),
                f.state.as_deref(),
                Some(&cursor),
            )
        })
    } else {
        None
    };
    Ok(view::jobs_fragment(op, &list, next.as_deref()))
}

async fn jobs(
    State(s): State<ConsoleState>,
    op: Operator,
    query: Result<Query<JobsQuery>, QueryRejection>,
) -> PageResult {
    let Query(q) = query.map_err(|e| ConsoleError::BadRequest(e.body_text()))?;
    let before = q.before.clone();
    let f = filter(&op, q)?;
    let live = jobs_url(
        "/console/live/jobs",
        f.topic.as_deref(),
        f.state.as_deref(),
        before.as_deref(),
    );
    let fragment = jobs_html(&s, &op, &f).await?;
    let sep = if live.contains('?') { '&' } else { '?' };
    let body = format!(
        "{}<section id=\"live\" data-live=\"{}{sep}v={}\" aria-live=\"polite\">{fragment}</section>",
        view::jobs_filter(f.topic.as_deref(), f.state.as_deref()),
        view::esc(&live),
        fingerprint(&fragment)
    );
    Ok(html(view::page("Jobs", Some(&op), "/console/jobs", &body)))
}

/// The job, if the operator may see it: 404 when there is none and when it
/// is another tenant's (as the protocol APIs answer: no id is confirmed to
/// a tenant that does not own it).
async fn own_job(s: &ConsoleState, op: &Operator, id: &str) -> Result<Job, ConsoleError> {
    let job = s
        .store
        .job_get(id, &Scope::All)
        .await?
        .ok_or_else(|| ConsoleError::NotFound(format!("no job {id}")))?;
    if !op.principal.is_admin() && job.tenant != op.principal.tenant {
        return Err(ConsoleError::NotFound(format!("no job {id}")));
    }
    Ok(job)
}

async fn chain_of(s: &ConsoleState, job: &Job) -> Result<view::ChainView, ConsoleError> {
    let events = s
        .store
        .events_list(EventQuery {
            scope: Scope::Tenant(job.tenant.clone()),
            correlation_id: Some(agw_storage::correlation_id(job)),
            topic: None,
            protocol: None,
            status: None,
            since: None,
            until: None,
            after_seq: 0,
            limit: MAX_EVENTS,
        })
        .await?;
    let keys: BTreeMap<String, agw_events::EventPublicKey> = s
        .store
        .event_keys()
        .await?
        .into_iter()
        .filter_map(|k| {
            Some((
                k.key_id,
                agw_events::EventPublicKey::from_b64(&k.public_key).ok()?,
            ))
        })
        .collect();
    // A chain may start after position 1 once retention purged its head:
    // its first kept event is then the checkpoint, as `events verify` does.
    let mut verifier = agw_events::ChainVerifier::new(|id: &str| keys.get(id).copied(), true);
    let mut verdict = Ok(events.len());
    for e in &events {
        if let Err(err) = verifier.push(&e.event) {
            verdict = Err(err.to_string());
            break;
        }
    }
    Ok(view::ChainView { events, verdict })
}

async fn job_html(s: &ConsoleState, op: &Operator, id: &str) -> Result<String, ConsoleError> {
    let job = own_job(s, op, id).await?;
    let chain = chain_of(s, &job).await?;
    let input = agw_events::redact(&job.input, &s.redact_keys);
    let result = job
        .result
        .as_ref()
        .map(|r| agw_events::redact(r, &s.redact_keys));
    Ok(view::job_fragment(
        op,
        &job,
        &input,
        result.as_ref(),
        &chain,
    ))
}

async fn job(
    State(s): State<ConsoleState>,
    op: Operator,
    id: Result<Path<String>, PathRejection>,
) -> PageResult {
    let id = id_of(id, "job id")?;
    let body = job_html(&s, &op, &id).await?;
    let body = format!(
        "<p class=\"mono sub\" id=\"job-id\">{}</p><section id=\"live\" data-live=\"/console/live/jobs/{}?v={}\" aria-live=\"polite\">{body}</section>",
        view::esc(&id),
        view::q(&id),
        fingerprint(&body)
    );
    Ok(html(view::page("Job", Some(&op), "/console/jobs", &body)))
}

async fn retry(
    State(s): State<ConsoleState>,
    op: Operator,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> PageResult {
    let id = id_of(id, "job id")?;
    let Form(f) = form.map_err(bad_form)?;
    op.check_form(&headers, &f.csrf)?;
    own_job(&s, &op, &id).await?;
    s.store
        .job_retry(JobRetryParams {
            id: id.clone(),
            scope: op.principal.scope(),
            by: format!("console:{}", op.principal.key_id),
            now: None,
        })
        .await
        .map_err(|e| match e {
            StoreError::InvalidState(st) => ConsoleError::Conflict(format!(
                "the job is {}: only dead jobs and failed jobs waiting for a retry can be retried",
                st.as_str()
            )),
            other => other.into(),
        })?;
    tracing::info!(job = %id, by = %op.principal.key_id, "console: job retried");
    Ok(Redirect::to(&format!("/console/jobs/{}", view::q(&id))).into_response())
}

async fn cancel(
    State(s): State<ConsoleState>,
    op: Operator,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> PageResult {
    let id = id_of(id, "job id")?;
    let Form(f) = form.map_err(bad_form)?;
    op.check_form(&headers, &f.csrf)?;
    own_job(&s, &op, &id).await?;
    let before = s
        .store
        .job_cancel(JobCancelParams {
            id: id.clone(),
            scope: op.principal.scope(),
            reason: "cancelled by an operator".into(),
            now: None,
        })
        .await
        .map_err(|e| match e {
            StoreError::InvalidState(st) => {
                ConsoleError::Conflict(format!("the job is already {}", st.as_str()))
            }
            other => other.into(),
        })?;
    s.observer.settled(&before, Settlement::Cancelled);
    // The same path as the Task API's cancel: the holding neuron (on this
    // replica) gets a `cancel` frame.
    if before.lease.is_some() {
        s.hub.revoke_lease(&id, "task cancelled by an operator");
    }
    tracing::info!(job = %id, by = %op.principal.key_id, "console: job cancelled");
    Ok(Redirect::to(&format!("/console/jobs/{}", view::q(&id))).into_response())
}

// === neurons, traces, keys ===

async fn neurons(State(s): State<ConsoleState>, op: Operator) -> PageResult {
    let now = Utc::now();
    let mut rows: Vec<view::NeuronRow> = s
        .hub
        .sessions()
        .into_iter()
        .filter(|sess| op.principal.is_admin() || sess.tenant == op.principal.tenant)
        .map(|sess| view::NeuronRow {
            tenant: sess.tenant.clone(),
            neuron_id: sess.neuron_id.clone(),
            connected_at: sess.connected_at,
            last_seen: sess.last_seen(),
            capabilities: sess
                .capabilities()
                .into_iter()
                .map(|c| (c.kind, c.concurrency))
                .collect(),
            leases: sess.leases(),
        })
        .collect();
    rows.sort_by(|a, b| (&a.tenant, &a.neuron_id).cmp(&(&b.tenant, &b.neuron_id)));
    let body = view::neurons_body(&op, &rows, now);
    Ok(html(view::page(
        "Neurons",
        Some(&op),
        "/console/neurons",
        &body,
    )))
}

async fn trace(
    State(s): State<ConsoleState>,
    op: Operator,
    id: Result<Path<String>, PathRejection>,
) -> PageResult {
    let id = id_of(id, "trace id")?;
    let t = s
        .store
        .trace_get(&id, &Scope::All)
        .await?
        .ok_or_else(|| ConsoleError::NotFound(format!("no governance trace {id}")))?;
    if !op.principal.is_admin() && t.tenant != op.principal.tenant {
        return Err(ConsoleError::NotFound(format!("no governance trace {id}")));
    }
    let violations = agw_events::redact(&t.violations, &s.redact_keys);
    let body = format!(
        "<p class=\"mono sub\" id=\"trace-id\">{}</p>{}",
        view::esc(&id),
        view::trace_body(&t, &violations)
    );
    Ok(html(view::page("Governance trace", Some(&op), "", &body)))
}

fn admin_only(op: &Operator) -> Result<(), ConsoleError> {
    if op.principal.is_admin() {
        Ok(())
    } else {
        Err(ConsoleError::Forbidden(
            "only the admin key may manage keys".into(),
        ))
    }
}

async fn keys_page(s: &ConsoleState, op: &Operator, created: Option<(&str, &str)>) -> PageResult {
    let keys = s.store.api_keys_list(None).await?;
    let body = view::keys_body(op, &keys, created);
    Ok(html(view::page("Keys", Some(op), "/console/keys", &body)))
}

async fn keys(State(s): State<ConsoleState>, op: Operator) -> PageResult {
    admin_only(&op)?;
    keys_page(&s, &op, None).await
}

#[derive(Debug, Deserialize)]
struct KeyForm {
    csrf: String,
    owner: String,
}

async fn key_create(
    State(s): State<ConsoleState>,
    op: Operator,
    headers: HeaderMap,
    form: Result<Form<KeyForm>, FormRejection>,
) -> PageResult {
    admin_only(&op)?;
    let Form(f) = form.map_err(bad_form)?;
    op.check_form(&headers, &f.csrf)?;
    let owner = f.owner.trim();
    if owner.is_empty()
        || owner.len() > 128
        || owner.chars().any(char::is_control)
        || owner == crate::http::auth::ADMIN_TENANT
    {
        return Err(ConsoleError::BadRequest("invalid tenant name".into()));
    }
    let (key, raw) = crate::http::auth::create_api_key(&s.store, owner)
        .await
        .map_err(ConsoleError::Api)?;
    tracing::info!(key_id = %key.id, owner = %owner, "console: API key created");
    keys_page(&s, &op, Some((owner, &raw))).await
}

async fn key_revoke(
    State(s): State<ConsoleState>,
    op: Operator,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> PageResult {
    admin_only(&op)?;
    let id = id_of(id, "key id")?;
    let Form(f) = form.map_err(bad_form)?;
    op.check_form(&headers, &f.csrf)?;
    if !s.store.api_key_revoke(&id, None).await? {
        return Err(ConsoleError::NotFound(format!("no API key with id {id}")));
    }
    s.auth.forget_key(&id);
    tracing::info!(key_id = %id, "console: API key revoked");
    Ok(Redirect::to("/console/keys").into_response())
}

// === live ===

/// A short fingerprint of a rendered fragment: the page names it in its live
/// URL (`v=`), so the stream sends nothing until the view differs from what
/// the page already shows.
fn fingerprint(html: &str) -> String {
    sha256_hex(html.as_bytes())[..16].to_owned()
}

/// `?v=` of a live stream.
#[derive(Debug, Deserialize)]
struct Since {
    v: Option<String>,
}

/// What a live stream re-renders.
#[derive(Debug, Clone)]
enum LiveView {
    Topics,
    Jobs(JobsQueryOwned),
    Job(String),
}

#[derive(Debug, Clone)]
struct JobsQueryOwned {
    topic: Option<String>,
    state: Option<String>,
    before: Option<String>,
}

async fn render(s: &ConsoleState, op: &Operator, v: &LiveView) -> Result<String, ConsoleError> {
    match v {
        LiveView::Topics => topics_html(s, op).await,
        LiveView::Jobs(q) => {
            let f = filter(
                op,
                JobsQuery {
                    topic: q.topic.clone(),
                    state: q.state.clone(),
                    before: q.before.clone(),
                    v: None,
                },
            )?;
            jobs_html(s, op, &f).await
        }
        LiveView::Job(id) => job_html(s, op, id).await,
    }
}

/// An SSE stream of `update` events, each the view's new HTML, sent when it
/// changed; re-rendered every [`LIVE_EVERY`] for the session's scope (the
/// session is re-checked each time: a revoked key ends the stream). Ends at
/// shutdown. `shown`: the fingerprint of what the page already shows.
fn live(
    s: ConsoleState,
    op: Operator,
    v: LiveView,
    shown: Option<String>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = futures_util::stream::unfold(
        (s, op, v, shown, true),
        |(s, op, v, last, mut first)| async move {
            loop {
                if !first {
                    tokio::select! {
                        () = tokio::time::sleep(LIVE_EVERY) => {}
                        () = s.shutdown.cancelled() => return None,
                    }
                }
                first = false;
                if s.shutdown.is_cancelled() {
                    return None;
                }
                if !session::still_signed_in(&s, &op).await {
                    return None;
                }
                match render(&s, &op, &v).await {
                    Ok(html) if last.as_deref() != Some(fingerprint(&html).as_str()) => {
                        let seen = fingerprint(&html);
                        let event = Event::default().event("update").data(html);
                        return Some((Ok(event), (s, op, v, Some(seen), false)));
                    }
                    Ok(_) => {}
                    Err(ConsoleError::NotFound(_) | ConsoleError::Forbidden(_)) => return None,
                    Err(e) => tracing::debug!(error = ?e, "console: live view not rendered"),
                }
            }
        },
    );
    Sse::new(stream).keep_alive(
        KeepAlive::new()
            .interval(Duration::from_secs(15))
            .text("ping"),
    )
}

async fn live_topics(
    State(s): State<ConsoleState>,
    op: Operator,
    since: Result<Query<Since>, QueryRejection>,
) -> Result<impl IntoResponse, ConsoleError> {
    let Query(since) = since.map_err(|e| ConsoleError::BadRequest(e.body_text()))?;
    Ok(live(s, op, LiveView::Topics, since.v))
}

async fn live_jobs(
    State(s): State<ConsoleState>,
    op: Operator,
    query: Result<Query<JobsQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ConsoleError> {
    let Query(q) = query.map_err(|e| ConsoleError::BadRequest(e.body_text()))?;
    let owned = JobsQueryOwned {
        topic: q.topic.clone(),
        state: q.state.clone(),
        before: q.before.clone(),
    };
    let shown = q.v.clone();
    filter(&op, q)?;
    Ok(live(s, op, LiveView::Jobs(owned), shown))
}

async fn live_job(
    State(s): State<ConsoleState>,
    op: Operator,
    id: Result<Path<String>, PathRejection>,
    since: Result<Query<Since>, QueryRejection>,
) -> Result<impl IntoResponse, ConsoleError> {
    let id = id_of(id, "job id")?;
    let Query(since) = since.map_err(|e| ConsoleError::BadRequest(e.body_text()))?;
    own_job(&s, &op, &id).await?;
    Ok(live(s, op, LiveView::Job(id), since.v))
}

// === assets ===

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");
const ICON: &str = include_str!("assets/favicon.svg");

async fn asset(name: Result<Path<String>, PathRejection>) -> Result<Response, ConsoleError> {
    let Path(name) = name.map_err(bad_path)?;
    let (body, kind) = match name.as_str() {
        "console.css" => (CSS, "text/css; charset=utf-8"),
        "console.js" => (JS, "text/javascript; charset=utf-8"),
        "favicon.svg" => (ICON, "image/svg+xml"),
        _ => return Err(ConsoleError::NotFound(format!("no asset {name}"))),
    };
    Ok((
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response())
}
