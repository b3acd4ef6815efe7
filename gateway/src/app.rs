//! The axum application: every protocol router over one store, health and
//! metrics endpoints, and the layer stack.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::set_header::SetResponseHeaderLayer;

use agw_config::Config;
use agw_protocols::governance::policy::Engine;
use agw_protocols::governance::secrets::SecretBox;
use agw_protocols::governance::{self, GovMetrics, GovernanceState};
use agw_protocols::http::auth::Authenticator;
use agw_protocols::http::{ApiError, ErrorDetail, method_not_allowed_fallback, not_found_fallback};
use agw_protocols::intent_bus::{self, IntentBusState, PROTOCOL_VERSION};
use agw_protocols::neuron::{self, NeuronState, hub::Hub};
use agw_protocols::oauth::{self, OAuthSettings, OAuthState};
use agw_protocols::observe::Observer;
use agw_storage::{JobStore, Store};

use crate::metrics::{Metrics, Scrape};
use crate::system::System;

/// What the app needs, built once by `serve` (or by tests).
#[derive(Debug, Clone)]
pub struct AppState {
    /// The job store.
    pub store: Store,
    /// The effective configuration.
    pub config: Arc<Config>,
    /// Key resolution and signature checks.
    pub auth: Arc<Authenticator>,
    /// Fires at shutdown.
    pub shutdown: CancellationToken,
    /// Live neuron sessions of this replica.
    pub hub: Arc<Hub>,
    pub(crate) metrics: Metrics,
    /// The governance policy engine (hot-reloadable).
    pub(crate) policy: Arc<Engine>,
    pub(crate) gov_metrics: Arc<GovMetrics>,
    pub(crate) secrets: Arc<SecretBox>,
    pub(crate) system: Arc<System>,
    pub(crate) event_schema: Arc<jsonschema::Validator>,
    pub(crate) in_flight: Arc<crate::limit::InFlightLimits>,
    /// The operator console's signed-in sessions.
    pub(crate) console_sessions: Arc<agw_protocols::console::Sessions>,
    /// The last queue figures read for `/metrics`, and when.
    pub(crate) queue_figures: Arc<tokio::sync::Mutex<Option<QueueFigures>>>,
}

/// Queue figures read from the store for `/metrics`.
#[derive(Debug, Clone)]
pub(crate) struct QueueFigures {
    read_at: tokio::time::Instant,
    stats: Arc<Vec<agw_storage::JobStats>>,
}

/// How long `/metrics` reuses the store's queue figures: an unauthenticated
/// scrape (or a flood of them) costs the store at most one query per period.
const QUEUE_FIGURES_TTL: std::time::Duration = std::time::Duration::from_secs(2);

impl AppState {
    /// State over `store` with the admin key whose SHA-256 hex is `admin_key_hash`.
    /// Fails when the governance policy does not compile or the secrets key
    /// is malformed. Without `secrets_key` in `config`, secrets are sealed
    /// with a key that lives as long as the process (`serve` always sets one).
    pub fn new(
        store: Store,
        config: Config,
        admin_key_hash: String,
        jwt_secret: Vec<u8>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        let policy =
            Arc::new(Engine::new(config.governance.clone()).map_err(|e| anyhow::anyhow!(e))?);
        let secrets = Arc::new(
            SecretBox::from_base64(
                &config
                    .secrets_key
                    .clone()
                    .unwrap_or_else(SecretBox::generate_key),
            )
            .map_err(|e| anyhow::anyhow!("invalid AGW_SECRETS_KEY / secrets_key: {e}"))?,
        );
        let auth = Arc::new(Authenticator::new(
            store.clone(),
            agw_protocols::http::auth::AuthSettings {
                admin_key_hash,
                window_secs: config.intent_bus.signature_window_secs as i64,
                rate_per_minute: config.limits.rate_limit_per_minute,
                preauth_per_minute: config.limits.preauth_per_minute,
                max_body_bytes: config.limits.max_body_bytes,
                jwt_secret,
                jwt_audience: config.jwt_audience.clone(),
                jwt_keys: config.jwt.keys.clone(),
                jwt_issuer: config.jwt.issuer.clone(),
                jwt_max_ttl_secs: match config.jwt.max_ttl_secs {
                    0 => None,
                    n => Some(i64::try_from(n).unwrap_or(i64::MAX)),
                },
                jwt_leeway_secs: i64::try_from(config.jwt.leeway_secs).unwrap_or(0),
            },
        ));
        let config = Arc::new(config);
        let hub: Arc<Hub> = Arc::default();
        let metrics = Metrics::default();
        let gov_metrics: Arc<GovMetrics> = Arc::default();
        let system = Arc::new(System::new(
            metrics.clone(),
            config.clone(),
            policy.clone(),
            hub.clone(),
            gov_metrics.clone(),
        ));
        let event_schema =
            Arc::new(agw_protocols::events::compile_schema().map_err(|e| anyhow::anyhow!(e))?);
        let in_flight = Arc::new(crate::limit::InFlightLimits::new(
            config.limits.max_in_flight,
            config.limits.max_in_flight_per_route,
        ));
        Ok(Self {
            console_sessions: Arc::default(),
            queue_figures: Arc::default(),
            in_flight,
            event_schema,
            store,
            config,
            auth,
            shutdown,
            hub,
            metrics,
            policy,
            gov_metrics,
            secrets,
            system,
        })
    }
}

/// Assembles the app. Layers run outside-in in this order (`Router::layer`
/// wraps, so the last `.layer` call is the outermost):
/// 1. catch panics → JSON 500, so a bug never drops the connection;
/// 2. a trace span per request, so everything inside logs within it (an
///    OpenTelemetry span, child of the caller's `traceparent`, when exporting),
///    and the trace context that job inserts hand to workers;
/// 3. metrics by route template and final status (a panic, turned into a
///    500 by layer 1, is outside it and shows only in the logs);
/// 4. protocol headers on every response, errors and fallbacks included;
/// 5. the in-flight limits (`503` beyond; outside 6, as an overload is not a
///    failure worth an error log line);
/// 6. logging of the causes that `ApiError` attaches to 5xx responses.
///
/// Connection-level bounds (connections, read and idle timeouts) live in
/// `edge`, which feeds this app.
pub fn build_app(state: AppState) -> Router {
    let observer: Arc<dyn Observer> = Arc::new(state.metrics.clone());
    let ib = intent_bus::router(IntentBusState {
        store: state.store.clone(),
        auth: state.auth.clone(),
        cfg: Arc::new(state.config.intent_bus.clone()),
        limits: Arc::new(state.config.limits.clone()),
        shutdown: state.shutdown.clone(),
        observer: observer.clone(),
        policy: state.policy.clone(),
    });
    let neurons = neuron::router(NeuronState {
        store: state.store.clone(),
        auth: state.auth.clone(),
        cfg: Arc::new(state.config.neuron.clone()),
        limits: Arc::new(state.config.limits.clone()),
        hub: state.hub.clone(),
        schemas: Arc::default(),
        shutdown: state.shutdown.clone(),
        observer: observer.clone(),
        policy: state.policy.clone(),
    });
    let oauth = oauth::router(OAuthState {
        store: state.store.clone(),
        auth: state.auth.clone(),
        settings: Arc::new(OAuthSettings {
            device_ttl_secs: state.config.oauth.device_ttl_secs as i64,
            device_interval_secs: state.config.oauth.device_interval_secs as i64,
            token_ttl_secs: state.config.oauth.token_ttl_secs as i64,
        }),
    });
    let console = agw_protocols::console::router(agw_protocols::console::ConsoleState {
        store: state.store.clone(),
        auth: state.auth.clone(),
        hub: state.hub.clone(),
        observer: observer.clone(),
        redact_keys: Arc::new(state.config.events.redact_keys.clone()),
        sessions: state.console_sessions.clone(),
        shutdown: state.shutdown.clone(),
    });
    let governance = governance::router(GovernanceState {
        store: state.store.clone(),
        auth: state.auth.clone(),
        hub: state.hub.clone(),
        limits: Arc::new(state.config.limits.clone()),
        policy: state.policy.clone(),
        system: state.system.clone(),
        secrets: state.secrets.clone(),
        metrics: state.gov_metrics.clone(),
        observer,
    });
    let events = agw_protocols::events::router(agw_protocols::events::EventsState {
        store: state.store.clone(),
        auth: state.auth.clone(),
        schema: state.event_schema.clone(),
    });
    let admin = agw_protocols::admin::router(agw_protocols::admin::AdminState {
        store: state.store.clone(),
        auth: state.auth.clone(),
    });
    let ops = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(crate::openapi::openapi))
        .with_state(state.clone());
    Router::new()
        .merge(ib)
        .merge(neurons)
        .merge(oauth)
        .merge(governance)
        .merge(events)
        .merge(admin)
        .merge(console)
        .merge(ops)
        .fallback(not_found_fallback)
        .method_not_allowed_fallback(method_not_allowed_fallback)
        .layer(middleware::from_fn(log_server_errors))
        .layer(middleware::from_fn_with_state(
            state.in_flight.clone(),
            crate::limit::in_flight,
        ))
        .layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static("x-intent-version"),
            HeaderValue::from_static(PROTOCOL_VERSION),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(middleware::from_fn_with_state(
            state.metrics.clone(),
            crate::metrics::track,
        ))
        .layer(middleware::from_fn(crate::telemetry::propagate))
        .layer(crate::telemetry::trace_layer())
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("handler panicked");
            ApiError::Internal("panic".into()).into_response()
        }))
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(s): State<AppState>) -> Response {
    match s.store.ping().await {
        Ok(()) => Json(json!({"status": "ready", "store": s.store.driver_name()})).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable", "store": s.store.driver_name()})),
            )
                .into_response()
        }
    }
}

/// `GET /metrics`: the registry plus figures read now (queue depth and ages
/// from one read-only store query, open streams). A store failure leaves the
/// queue series out rather than failing the scrape.
async fn metrics(State(s): State<AppState>) -> Response {
    let queues = queue_figures(&s).await;
    let decisions = s.gov_metrics.decisions().map(|(v, n)| (v.as_str(), n));
    let body = s.metrics.render(&Scrape {
        now: chrono::Utc::now(),
        queues: queues.as_deref().map(Vec::as_slice),
        decisions: &decisions,
        neuron_sessions: s.hub.len() as u64,
        neuron_dispatch: crate::metrics::NeuronDispatch::from(&s.hub.counts),
        governance_streams: s.gov_metrics.open_streams(),
    });
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// The queue figures, read from the store at most once per
/// [`QUEUE_FIGURES_TTL`] (concurrent scrapes wait for one read).
async fn queue_figures(s: &AppState) -> Option<Arc<Vec<agw_storage::JobStats>>> {
    let mut cached = s.queue_figures.lock().await;
    let now = tokio::time::Instant::now();
    if let Some(f) = cached.as_ref()
        && now.duration_since(f.read_at) < QUEUE_FIGURES_TTL
    {
        return Some(f.stats.clone());
    }
    match s.store.jobs_stats().await {
        Ok(stats) => {
            let stats = Arc::new(stats);
            *cached = Some(QueueFigures {
                read_at: now,
                stats: stats.clone(),
            });
            Some(stats)
        }
        Err(e) => {
            tracing::warn!(error = %e, "queue figures unavailable for /metrics");
            None
        }
    }
}

/// Logs the real cause of a 5xx inside the request's span; clients see only a generic body.
async fn log_server_errors(req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    if let Some(ErrorDetail(detail)) = res.extensions().get::<ErrorDetail>() {
        tracing::error!(status = res.status().as_u16(), error = %detail, "request failed");
    }
    res
}
