//! Logging and OpenTelemetry.
//!
//! Logs go to stderr through `tracing`, filtered by `RUST_LOG` (default
//! `info`). OpenTelemetry export is on only when an OTLP endpoint is set
//! (`OTEL_EXPORTER_OTLP_ENDPOINT`, or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` /
//! `..._LOGS_ENDPOINT` for one signal) and costs nothing when off. Then every
//! request is a span (child of the caller's W3C `traceparent`) and every
//! execution event a log record in its dispatch's trace, exported over OTLP
//! (`OTEL_EXPORTER_OTLP_PROTOCOL`: `grpc` or `http/protobuf`, the default) by
//! the SDK's batch processors behind bounded queues: a slow or dead collector
//! costs dropped telemetry (`agw_telemetry_dropped_total`), never request time.
//! Job inserts carry the request's `traceparent` to workers either way
//! (`agw_protocols::http::trace`).
//!
//! Layout: this file reads the settings, installs the subscriber and shapes
//! request spans; `export` holds the bounded pipeline and the OTLP/HTTP
//! client; `events` turns execution events into log records.

mod events;
mod export;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::{MatchedPath, Request};
use axum::http;
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::KeyValue;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt, TracerProvider as _};
use opentelemetry_http::HeaderExtractor;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::{BatchLogProcessor, SdkLoggerProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::resource::TelemetryResourceDetector;
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, IdGenerator as _, RandomIdGenerator, Sampler, SdkTracerProvider,
};
use tokio::runtime::Handle;
use tokio::sync::broadcast::Receiver;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::trace::{DefaultOnRequest, MakeSpan, OnResponse, TraceLayer};
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, filter};

use agw_config::{Env, LogFormat};
use agw_protocols::http::trace::{self, TRACEPARENT};
use agw_storage::CommittedEvent;

use crate::metrics::TELEMETRY_DROPPED;
use export::{BoundedLogs, BoundedSpans, CountedLogs, CountedSpans, OtlpHttpClient, Queue};

/// Whether request spans are exported (they are INFO spans then, DEBUG otherwise).
static TRACES_ON: AtomicBool = AtomicBool::new(false);

/// Which requests get an exported span (set with [`TRACES_ON`]).
static SAMPLER: OnceLock<RequestSampler> = OnceLock::new();

/// The instrumentation scope of everything the gateway exports.
const SCOPE: &str = "agent-gateway";

// === settings ===

/// An OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// OTLP/gRPC (tonic, plain HTTP/2).
    Grpc,
    /// OTLP/HTTP with protobuf bodies.
    HttpProtobuf,
}

/// How one signal is exported.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SignalSettings {
    pub(crate) protocol: Protocol,
    /// Per export request (`OTEL_EXPORTER_OTLP[_<SIGNAL>]_TIMEOUT`, ms).
    pub(crate) timeout: Duration,
    /// Records queued before new ones are dropped (`OTEL_BSP_MAX_QUEUE_SIZE`,
    /// `OTEL_BLRP_MAX_QUEUE_SIZE`).
    pub(crate) queue: usize,
}

/// The OpenTelemetry settings, from the standard `OTEL_*` variables. The
/// exporters themselves read the endpoint, headers and compression variables.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Settings {
    /// Span export; `None` when off.
    pub(crate) traces: Option<SignalSettings>,
    /// Execution-event (log record) export; `None` when off.
    pub(crate) logs: Option<SignalSettings>,
    /// Resource attributes, `service.name` first.
    pub(crate) resource: Vec<(String, String)>,
    /// Which requests get a span (`OTEL_TRACES_SAMPLER`, `_ARG`).
    pub(crate) sampler: RequestSampler,
}

/// Which requests get a span, decided *before* the span is built, from the
/// standard `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` (default
/// `parentbased_always_on`). A request sampled out costs no span at all
/// (the SDK's own sampler would decide only after the span and its
/// OpenTelemetry data were built); the spans that are built are then all
/// exported (the SDK runs with `always_on`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RequestSampler {
    /// `parentbased_*`: a caller's `traceparent` decides by its flag.
    parent_based: bool,
    /// The rule for requests without a parent (or for all, when not
    /// parent-based): the share of them sampled, 0 to 1.
    root_ratio: f64,
}

impl Default for RequestSampler {
    fn default() -> Self {
        Self {
            parent_based: true,
            root_ratio: 1.0,
        }
    }
}

impl RequestSampler {
    /// Whether a request with this parent (if any) gets a span.
    pub(crate) fn samples(&self, parent: Option<&SpanContext>) -> bool {
        if self.parent_based
            && let Some(p) = parent
        {
            return p.is_sampled();
        }
        if self.root_ratio >= 1.0 {
            return true;
        }
        if self.root_ratio <= 0.0 {
            return false;
        }
        // As the SDK's `TraceIdRatioBased`: the low 63 bits of a random
        // trace id against the ratio.
        let id = u128::from_be_bytes(RandomIdGenerator::default().new_trace_id().to_bytes());
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let bound = (self.root_ratio * (1u64 << 63) as f64) as u64;
        ((id as u64) >> 1) < bound
    }
}

/// `OTEL_TRACES_SAMPLER` and its argument.
fn sampler(env: &impl Env, errors: &mut Vec<String>) -> RequestSampler {
    let name = var(env, "OTEL_TRACES_SAMPLER")
        .unwrap_or_else(|| "parentbased_always_on".to_owned())
        .to_ascii_lowercase();
    let mut ratio = || match var(env, "OTEL_TRACES_SAMPLER_ARG") {
        None => 1.0,
        Some(v) => match v.parse::<f64>() {
            Ok(r) if (0.0..=1.0).contains(&r) => r,
            _ => {
                errors.push(format!(
                    "OTEL_TRACES_SAMPLER_ARG={v}: expected a ratio from 0 to 1"
                ));
                1.0
            }
        },
    };
    let (parent_based, root_ratio) = match name.as_str() {
        "always_on" => (false, 1.0),
        "always_off" => (false, 0.0),
        "traceidratio" => (false, ratio()),
        "parentbased_always_on" => (true, 1.0),
        "parentbased_always_off" => (true, 0.0),
        "parentbased_traceidratio" => (true, ratio()),
        other => {
            errors.push(format!(
                "OTEL_TRACES_SAMPLER={other}: expected always_on, always_off, traceidratio, \
                 parentbased_always_on, parentbased_always_off or parentbased_traceidratio"
            ));
            (true, 1.0)
        }
    };
    RequestSampler {
        parent_based,
        root_ratio,
    }
}

/// The variables of one signal.
struct SignalVars {
    upper: &'static str,
    exporter: &'static str,
    queue: &'static str,
}

const TRACES: SignalVars = SignalVars {
    upper: "TRACES",
    exporter: "OTEL_TRACES_EXPORTER",
    queue: "OTEL_BSP_MAX_QUEUE_SIZE",
};
const LOGS: SignalVars = SignalVars {
    upper: "LOGS",
    exporter: "OTEL_LOGS_EXPORTER",
    queue: "OTEL_BLRP_MAX_QUEUE_SIZE",
};

impl Settings {
    /// Reads the settings; reports every bad variable at once.
    pub(crate) fn from_env(env: &impl Env) -> anyhow::Result<Self> {
        let mut errors = Vec::new();
        let disabled =
            var(env, "OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let mut read = |vars: &SignalVars| {
            if disabled {
                None
            } else {
                signal(env, vars, &mut errors)
            }
        };
        let traces = read(&TRACES);
        let logs = read(&LOGS);
        let resource = resource(env, &mut errors);
        let sampler = sampler(env, &mut errors);
        if !errors.is_empty() {
            anyhow::bail!("invalid OpenTelemetry settings: {}", errors.join("; "));
        }
        Ok(Self {
            traces,
            logs,
            resource,
            sampler,
        })
    }
}

/// A variable's trimmed value; empty counts as unset.
fn var(env: &impl Env, name: &str) -> Option<String> {
    env.var(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// The signal-specific variable, else the generic one: (name, value).
fn either(env: &impl Env, signal: &str, suffix: &str) -> Option<(String, String)> {
    let specific = format!("OTEL_EXPORTER_OTLP_{signal}_{suffix}");
    let generic = format!("OTEL_EXPORTER_OTLP_{suffix}");
    var(env, &specific)
        .map(|v| (specific, v))
        .or_else(|| var(env, &generic).map(|v| (generic, v)))
}

fn signal(env: &impl Env, vars: &SignalVars, errors: &mut Vec<String>) -> Option<SignalSettings> {
    match var(env, vars.exporter).as_deref() {
        None | Some("otlp") => {}
        Some("none") => return None,
        Some(other) => {
            errors.push(format!("{} is {other:?} (otlp or none)", vars.exporter));
            return None;
        }
    }
    either(env, vars.upper, "ENDPOINT")?;
    let protocol = match either(env, vars.upper, "PROTOCOL") {
        None => Protocol::HttpProtobuf,
        Some((_, v)) if v == "http/protobuf" => Protocol::HttpProtobuf,
        Some((_, v)) if v == "grpc" => Protocol::Grpc,
        Some((name, v)) => {
            errors.push(format!("{name} is {v:?} (grpc or http/protobuf)"));
            Protocol::HttpProtobuf
        }
    };
    let timeout = match either(env, vars.upper, "TIMEOUT") {
        None => Duration::from_secs(10),
        Some((name, v)) => v.parse().map(Duration::from_millis).unwrap_or_else(|_| {
            errors.push(format!("{name} is {v:?} (milliseconds)"));
            Duration::from_secs(10)
        }),
    };
    let queue = match var(env, vars.queue) {
        None => 2048,
        Some(v) => match v.parse() {
            Ok(n) if n > 0 => n,
            _ => {
                errors.push(format!("{} is {v:?} (a positive number)", vars.queue));
                2048
            }
        },
    };
    Some(SignalSettings {
        protocol,
        timeout,
        queue,
    })
}

/// `OTEL_RESOURCE_ATTRIBUTES` (percent-decoded `k=v` pairs), with
/// `service.name` from `OTEL_SERVICE_NAME`, else those attributes, else
/// `agent-gateway`, and `service.version` defaulting to this build's.
fn resource(env: &impl Env, errors: &mut Vec<String>) -> Vec<(String, String)> {
    let mut attrs: Vec<(String, String)> = Vec::new();
    for entry in var(env, "OTEL_RESOURCE_ATTRIBUTES")
        .unwrap_or_default()
        .split(',')
        .filter(|e| !e.trim().is_empty())
    {
        let decoded = entry.split_once('=').and_then(|(k, v)| {
            let k = percent_encoding::percent_decode_str(k.trim())
                .decode_utf8()
                .ok()?;
            let v = percent_encoding::percent_decode_str(v.trim())
                .decode_utf8()
                .ok()?;
            (!k.is_empty()).then(|| (k.into_owned(), v.into_owned()))
        });
        match decoded {
            Some((k, v)) => {
                attrs.retain(|(old, _)| *old != k);
                attrs.push((k, v));
            }
            None => errors.push(format!(
                "OTEL_RESOURCE_ATTRIBUTES has a bad entry {entry:?}"
            )),
        }
    }
    let from_attrs = attrs
        .iter()
        .position(|(k, _)| k == "service.name")
        .map(|i| attrs.remove(i).1);
    let name = var(env, "OTEL_SERVICE_NAME")
        .or(from_attrs)
        .unwrap_or_else(|| SCOPE.to_owned());
    attrs.insert(0, ("service.name".to_owned(), name));
    if !attrs.iter().any(|(k, _)| k == "service.version") {
        attrs.push((
            "service.version".to_owned(),
            env!("CARGO_PKG_VERSION").to_owned(),
        ));
    }
    attrs
}

// === installation and shutdown ===

/// The exporting providers; [`Telemetry::shutdown`] flushes them.
#[derive(Debug, Default)]
pub(crate) struct Telemetry {
    traces: Option<SdkTracerProvider>,
    logs: Option<SdkLoggerProvider>,
}

/// Installs the global subscriber (once; later calls only build exporters
/// nobody uses) and, when configured, the OTLP exporters. Must run inside
/// the runtime, which the exporters use.
pub(crate) fn init(format: LogFormat, env: &impl Env) -> anyhow::Result<Telemetry> {
    let settings = Settings::from_env(env)?;
    let resource = Resource::builder_empty()
        .with_detector(Box::new(TelemetryResourceDetector))
        .with_attributes(
            settings
                .resource
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
        )
        .build();
    let traces = settings
        .traces
        .as_ref()
        .map(|s| tracer_provider(s, &resource))
        .transpose()?;
    let logs = settings
        .logs
        .as_ref()
        .map(|s| logger_provider(s, &resource))
        .transpose()?;
    // RUST_LOG filters the log output only: the export has its own filter
    // (INFO and up, minus the export path), so quieter logs keep the traces.
    let log_filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let otel = traces.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer(SCOPE))
            // Per-span extras that cost CPU on every request and say
            // nothing a trace of this gateway needs: source locations,
            // thread ids, busy/idle timings, the tracing target, and an OTel
            // context attached on every poll (nothing here reads it: the
            // job's traceparent comes from the span itself, `propagate`).
            .with_location(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
            .with_target(false)
            .with_context_activation(false)
            .with_filter(filter::filter_fn(|m| {
                *m.level() <= tracing::Level::INFO && !export_stack(m.target())
            }))
    });
    let installed = tracing_subscriber::registry()
        .with(fmt.with_filter(log_filter))
        .with(otel)
        .try_init()
        .is_ok();
    if installed {
        let _ = SAMPLER.set(settings.sampler);
    }
    TRACES_ON.store(installed && traces.is_some(), Ordering::Relaxed);
    let protocol = |s: &Option<SignalSettings>| s.as_ref().map(|s| s.protocol);
    if traces.is_some() || logs.is_some() {
        tracing::info!(
            traces = ?protocol(&settings.traces),
            logs = ?protocol(&settings.logs),
            service = %settings.resource[0].1,
            "OpenTelemetry export on"
        );
    }
    Ok(Telemetry { traces, logs })
}

/// Crates on the export path: spans of theirs would feed the exporter its
/// own traffic.
fn export_stack(target: &str) -> bool {
    let krate = target.split("::").next().unwrap_or(target);
    matches!(krate, "h2" | "hyper" | "hyper_util" | "tonic" | "tower")
        || krate.starts_with("opentelemetry")
}

fn tracer_provider(s: &SignalSettings, resource: &Resource) -> anyhow::Result<SdkTracerProvider> {
    let builder = opentelemetry_otlp::SpanExporter::builder();
    let exporter = match s.protocol {
        Protocol::Grpc => builder.with_tonic().build(),
        Protocol::HttpProtobuf => builder
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_http_client(OtlpHttpClient::new(Handle::current(), s.timeout))
            .build(),
    }
    .context("cannot build the OTLP span exporter")?;
    let queue = Queue::new("traces", s.queue, &TELEMETRY_DROPPED.traces);
    let batch = BatchSpanProcessor::builder(CountedSpans {
        inner: exporter,
        queue: queue.clone(),
    })
    .with_batch_config(
        opentelemetry_sdk::trace::BatchConfigBuilder::default()
            .with_max_queue_size(s.queue)
            .build(),
    )
    .build();
    Ok(SdkTracerProvider::builder()
        .with_resource(resource.clone())
        // Sampled before the span is built (`RequestSampler`): what is built
        // is exported.
        .with_sampler(Sampler::AlwaysOn)
        .with_span_processor(BoundedSpans {
            inner: batch,
            queue,
        })
        .build())
}

fn logger_provider(s: &SignalSettings, resource: &Resource) -> anyhow::Result<SdkLoggerProvider> {
    let builder = opentelemetry_otlp::LogExporter::builder();
    let exporter = match s.protocol {
        Protocol::Grpc => builder.with_tonic().build(),
        Protocol::HttpProtobuf => builder
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_http_client(OtlpHttpClient::new(Handle::current(), s.timeout))
            .build(),
    }
    .context("cannot build the OTLP log exporter")?;
    let queue = Queue::new("logs", s.queue, &TELEMETRY_DROPPED.logs);
    let batch = BatchLogProcessor::builder(CountedLogs {
        inner: exporter,
        queue: queue.clone(),
    })
    .with_batch_config(
        opentelemetry_sdk::logs::BatchConfigBuilder::default()
            .with_max_queue_size(s.queue)
            .build(),
    )
    .build();
    Ok(SdkLoggerProvider::builder()
        .with_resource(resource.clone())
        .with_log_processor(BoundedLogs {
            inner: batch,
            queue,
        })
        .build())
}

impl Telemetry {
    /// Starts exporting execution events as log records (when logs are on);
    /// the task drains what is queued once `stop` fires.
    pub(crate) fn export_events(
        &self,
        events: Receiver<Arc<CommittedEvent>>,
        stop: CancellationToken,
    ) -> Option<JoinHandle<()>> {
        let provider = self.logs.clone()?;
        Some(tokio::spawn(events::run(provider, events, stop)))
    }

    /// Exports what is queued, waiting at most `within`.
    pub(crate) async fn shutdown(self, within: Duration) {
        let traces = self.traces.map(|p| {
            tokio::task::spawn_blocking(move || {
                p.shutdown_with_timeout(within).map_err(|e| e.to_string())
            })
        });
        let logs = self.logs.map(|p| {
            tokio::task::spawn_blocking(move || {
                p.shutdown_with_timeout(within).map_err(|e| e.to_string())
            })
        });
        for (signal, task) in [("traces", traces), ("logs", logs)] {
            let Some(task) = task else { continue };
            match tokio::time::timeout(within + Duration::from_secs(1), task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => tracing::warn!(signal, error = %e, "telemetry flush incomplete"),
                Ok(Err(e)) => tracing::warn!(signal, error = %e, "telemetry flush failed"),
                Err(_) => tracing::warn!(signal, "telemetry flush timed out"),
            }
        }
    }
}

// === request spans and propagation ===

/// The request layer: [`RequestSpan`] spans, [`RecordStatus`] on responses.
pub(crate) type HttpTraceLayer = TraceLayer<
    SharedClassifier<ServerErrorsAsFailures>,
    RequestSpan,
    DefaultOnRequest,
    RecordStatus,
>;

/// The request layer (wrap it around [`propagate`]).
pub(crate) fn trace_layer() -> HttpTraceLayer {
    TraceLayer::new_for_http()
        .make_span_with(RequestSpan)
        .on_response(RecordStatus)
}

/// One span per request. Exporting, it is an INFO span named after the route
/// template, with the caller's `traceparent` as its parent; otherwise the
/// DEBUG span tower-http makes by default.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestSpan;

impl<B> MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, req: &http::Request<B>) -> Span {
        let untraced = || {
            tracing::debug_span!(
                "request",
                method = %req.method(),
                uri = %req.uri(),
                version = ?req.version(),
            )
        };
        if !TRACES_ON.load(Ordering::Relaxed) {
            return untraced();
        }
        let parent = TraceContextPropagator::new().extract(&HeaderExtractor(req.headers()));
        let parent_span = parent.span().span_context().clone();
        let sampled = SAMPLER
            .get()
            .copied()
            .unwrap_or_default()
            .samples(parent_span.is_valid().then_some(&parent_span));
        if !sampled {
            // No span to build or export; `propagate` still hands workers a
            // trace context (the caller's, or a new unsampled one).
            return untraced();
        }
        let route = req
            .extensions()
            .get::<MatchedPath>()
            .map(MatchedPath::as_str);
        let name = match route {
            Some(r) => format!("{} {r}", req.method()),
            None => req.method().to_string(),
        };
        // Only the path: query strings may carry secrets.
        let span = tracing::info_span!(
            "request",
            otel.name = %name,
            otel.kind = "server",
            otel.status_code = Empty,
            http.request.method = %req.method(),
            http.route = route,
            url.path = req.uri().path(),
            http.response.status_code = Empty,
        );
        if parent_span.is_valid() {
            let _ = span.set_parent(parent);
        }
        span
    }
}

/// Records the status on the request span (5xx marks it failed).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordStatus;

impl<B> OnResponse<B> for RecordStatus {
    fn on_response(self, res: &http::Response<B>, latency: Duration, span: &Span) {
        let status = res.status().as_u16();
        span.record("http.response.status_code", i64::from(status));
        if res.status().is_server_error() {
            span.record("otel.status_code", "ERROR");
        }
        tracing::debug!(?latency, status, "finished processing request");
    }
}

/// Middleware inside the request span: scopes the `traceparent` that job
/// inserts hand to workers — the request span's own when exporting, else the
/// caller's, passed through unchanged; a request sampled out without a caller
/// context gets a new unsampled one (so its execution events' log records
/// still share a trace id with the worker's spans).
pub(crate) async fn propagate(req: Request, next: Next) -> Response {
    let exporting = TRACES_ON.load(Ordering::Relaxed);
    let own = if exporting {
        let mut carrier = HashMap::with_capacity(2);
        TraceContextPropagator::new().inject_context(&Span::current().context(), &mut carrier);
        carrier.remove(TRACEPARENT)
    } else {
        None
    };
    let traceparent = own
        .or_else(|| {
            req.headers()
                .get(TRACEPARENT)
                .and_then(|v| v.to_str().ok())
                .filter(|v| remote_context(v).is_some())
                .map(str::to_owned)
        })
        .or_else(|| exporting.then(unsampled_root));
    trace::scope(traceparent.map(Arc::from), next.run(req)).await
}

/// A new root `traceparent` with the sampled flag off.
fn unsampled_root() -> String {
    let ids = RandomIdGenerator::default();
    format!(
        "00-{:032x}-{:016x}-00",
        ids.new_trace_id(),
        ids.new_span_id()
    )
}

/// The span context a W3C `traceparent` names, if it is valid.
fn remote_context(traceparent: &str) -> Option<SpanContext> {
    let cx = TraceContextPropagator::new().extract(&OnlyTraceparent(traceparent));
    let span = cx.span().span_context().clone();
    span.is_valid().then_some(span)
}

/// A carrier holding just a `traceparent` (no map to build per call).
struct OnlyTraceparent<'a>(&'a str);

impl Extractor for OnlyTraceparent<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == TRACEPARENT).then_some(self.0)
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        Settings::from_env(&env(pairs)).expect("valid settings")
    }

    #[test]
    fn request_sampler_from_the_standard_variables() {
        let parent = |sampled: bool| {
            SpanContext::new(
                opentelemetry::trace::TraceId::from(7),
                opentelemetry::trace::SpanId::from(9),
                if sampled {
                    opentelemetry::trace::TraceFlags::SAMPLED
                } else {
                    opentelemetry::trace::TraceFlags::default()
                },
                true,
                opentelemetry::trace::TraceState::default(),
            )
        };
        let (on, off) = (parent(true), parent(false));
        let default = settings(&[]).sampler;
        assert!(default.samples(None) && default.samples(Some(&on)));
        assert!(!default.samples(Some(&off)), "parent-based by default");
        let none = settings(&[
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0"),
        ])
        .sampler;
        assert!(!none.samples(None) && none.samples(Some(&on)));
        let tenth = settings(&[
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.1"),
        ])
        .sampler;
        let n = (0..20_000).filter(|_| tenth.samples(None)).count();
        assert!((1_500..2_500).contains(&n), "{n} of 20,000 roots at 0.1");
        let always = settings(&[("OTEL_TRACES_SAMPLER", "always_on")]).sampler;
        assert!(always.samples(Some(&off)), "not parent-based");
        assert!(
            !settings(&[("OTEL_TRACES_SAMPLER", "always_off")])
                .sampler
                .samples(Some(&on))
        );
        for bad in [
            &[("OTEL_TRACES_SAMPLER", "jaeger_remote")][..],
            &[
                ("OTEL_TRACES_SAMPLER", "traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "1.5"),
            ][..],
        ] {
            let e = Settings::from_env(&env(bad)).expect_err("refused");
            assert!(e.to_string().contains("OTEL_TRACES_SAMPLER"), "{e}");
        }
    }

    #[test]
    fn unsampled_roots_are_valid_and_not_sampled() {
        let tp = unsampled_root();
        let cx = remote_context(&tp).expect("valid");
        assert!(!cx.is_sampled());
        assert_ne!(tp, unsampled_root());
    }

    #[test]
    fn export_is_off_without_an_endpoint() {
        let s = settings(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]);
        assert_eq!((s.traces, s.logs), (None, None));
        assert_eq!(
            s.resource[0],
            ("service.name".into(), "agent-gateway".into())
        );
        let s = settings(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_SDK_DISABLED", "true"),
        ]);
        assert_eq!((s.traces, s.logs), (None, None));
    }

    #[test]
    fn endpoint_and_protocol_per_signal_with_http_protobuf_by_default() {
        let s = settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")]);
        let t = s.traces.expect("traces on");
        assert_eq!(t.protocol, Protocol::HttpProtobuf);
        assert_eq!((t.timeout, t.queue), (Duration::from_secs(10), 2048));
        assert!(s.logs.is_some());

        let s = settings(&[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "64"),
        ]);
        let t = s.traces.expect("traces on");
        assert_eq!(t.protocol, Protocol::Grpc);
        assert_eq!((t.timeout, t.queue), (Duration::from_millis(2500), 64));
        assert_eq!(s.logs, None);

        let s = settings(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_LOGS_EXPORTER", "none"),
        ]);
        assert!(s.traces.is_some() && s.logs.is_none());
    }

    #[test]
    fn every_bad_variable_is_reported() {
        let err = Settings::from_env(&env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", "soon"),
            ("OTEL_TRACES_EXPORTER", "zipkin"),
            ("OTEL_RESOURCE_ATTRIBUTES", "novalue"),
        ]))
        .expect_err("invalid")
        .to_string();
        for part in [
            "OTEL_EXPORTER_OTLP_PROTOCOL is \"http/json\"",
            "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT is \"soon\"",
            "OTEL_TRACES_EXPORTER is \"zipkin\"",
            "OTEL_RESOURCE_ATTRIBUTES has a bad entry \"novalue\"",
        ] {
            assert!(err.contains(part), "{err}");
        }
    }

    #[test]
    fn resource_attributes_and_service_name_precedence() {
        let s = settings(&[(
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment=prod, service.name=from-attrs,team=a%2Cb",
        )]);
        assert_eq!(
            s.resource,
            vec![
                ("service.name".to_owned(), "from-attrs".to_owned()),
                ("deployment.environment".to_owned(), "prod".to_owned()),
                ("team".to_owned(), "a,b".to_owned()),
                (
                    "service.version".to_owned(),
                    env!("CARGO_PKG_VERSION").to_owned()
                ),
            ]
        );
        let s = settings(&[
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.name=from-attrs,service.version=9",
            ),
            ("OTEL_SERVICE_NAME", "gw-eu"),
        ]);
        assert_eq!(
            s.resource,
            vec![
                ("service.name".to_owned(), "gw-eu".to_owned()),
                ("service.version".to_owned(), "9".to_owned()),
            ]
        );
    }

    #[tokio::test]
    async fn grpc_and_http_exporters_build_from_settings() {
        // Connections are lazy: nothing listens on these ports.
        let resource = Resource::builder_empty().build();
        for protocol in [Protocol::Grpc, Protocol::HttpProtobuf] {
            let s = SignalSettings {
                protocol,
                timeout: Duration::from_millis(200),
                queue: 8,
            };
            let traces = tracer_provider(&s, &resource).expect("span exporter");
            let logs = logger_provider(&s, &resource).expect("log exporter");
            let (t, l) = tokio::task::spawn_blocking(move || {
                (
                    traces.shutdown_with_timeout(Duration::from_secs(2)),
                    logs.shutdown_with_timeout(Duration::from_secs(2)),
                )
            })
            .await
            .expect("shutdown");
            assert!(t.is_ok() && l.is_ok(), "{protocol:?}: {t:?} {l:?}");
        }
    }

    #[test]
    fn the_export_path_is_not_traced() {
        assert!(
            export_stack("h2::codec") && export_stack("tonic") && export_stack("opentelemetry_sdk")
        );
        assert!(!export_stack("tower_http::trace") && !export_stack("agw_gateway::telemetry"));
    }

    #[test]
    fn traceparent_validation() {
        assert!(
            remote_context("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").is_some()
        );
        assert!(
            remote_context("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none()
        );
        assert!(remote_context("garbage").is_none());
    }
}
