//! Governance wire types: request parsing with the protocol's 422 errors,
//! the exact response shapes the `hestiaos` SDK builds dataclasses from (one
//! extra or missing field makes it raise), and the protocol's error body.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::http::ApiError;

/// The mode hints a client may send.
pub const MODE_HINTS: [&str; 3] = ["fast", "balanced", "deep"];

/// What a governance request can fail with; the body is
/// `{"error": code, "message": ..., "trace_id"?: ...}`.
#[derive(Debug, thiserror::Error)]
pub enum GovError {
    /// Malformed body: missing input, wrong types, bad values (422).
    #[error("{0}")]
    Invalid(String),
    /// An `agent_id` that no `[[governance.agents]]` entry names (404).
    #[error("unknown agent {0:?}")]
    UnknownAgent(String),
    /// No such trace or secret visible to the caller (404).
    #[error("{0}")]
    NotFound(String),
    /// The policy blocked the run (403).
    #[error("{reason}")]
    Blocked {
        /// The trace that explains it.
        trace_id: String,
        /// The policy's reason.
        reason: String,
    },
    /// The worker did not settle in time; the job was cancelled (504).
    #[error("no worker answered within {timeout_ms} ms; the job was cancelled")]
    Timeout {
        /// The run's trace.
        trace_id: String,
        /// The timeout that passed.
        timeout_ms: u64,
    },
    /// The worker failed the job for good (502).
    #[error("worker failed: {message}")]
    WorkerFailed {
        /// The run's trace.
        trace_id: String,
        /// The worker's error.
        message: String,
    },
    /// Someone cancelled the job before it settled (409).
    #[error("the run's job was cancelled")]
    Cancelled {
        /// The run's trace.
        trace_id: String,
    },
    /// Authentication, limits, store failures: the shared API error.
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl From<agw_storage::StoreError> for GovError {
    fn from(e: agw_storage::StoreError) -> Self {
        Self::Api(e.into())
    }
}

impl GovError {
    /// Status and code.
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            // The SDK maps 422 to its InvalidInput error.
            Self::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_input"),
            Self::UnknownAgent(_) => (StatusCode::NOT_FOUND, "unknown_agent"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            // The SDK raises GovernanceBlock(trace_id) from a 403 body.
            Self::Blocked { .. } => (StatusCode::FORBIDDEN, "governance_block"),
            Self::Timeout { .. } => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
            Self::WorkerFailed { .. } => (StatusCode::BAD_GATEWAY, "worker_failed"),
            Self::Cancelled { .. } => (StatusCode::CONFLICT, "cancelled"),
            Self::Api(e) => e.status_and_code(),
        }
    }

    /// The trace the error belongs to, if a decision was taken.
    pub fn trace_id(&self) -> Option<&str> {
        match self {
            Self::Blocked { trace_id, .. }
            | Self::Timeout { trace_id, .. }
            | Self::WorkerFailed { trace_id, .. }
            | Self::Cancelled { trace_id } => Some(trace_id),
            Self::Invalid(_) | Self::UnknownAgent(_) | Self::NotFound(_) | Self::Api(_) => None,
        }
    }
}

impl IntoResponse for GovError {
    fn into_response(self) -> Response {
        if let Self::Api(e) = self {
            // Keeps Retry-After and the logged detail of 5xx.
            return e.into_response();
        }
        let (status, code) = self.status_and_code();
        let mut body = json!({"error": code, "message": self.to_string()});
        if let Some(t) = self.trace_id() {
            body["trace_id"] = Value::from(t);
        }
        (status, Json(body)).into_response()
    }
}

/// A JSON object body, or 422.
pub fn object(bytes: &[u8]) -> Result<Map<String, Value>, GovError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(GovError::Invalid("body must be a JSON object".into())),
        Err(e) => Err(GovError::Invalid(format!("body is not valid JSON: {e}"))),
    }
}

/// A required string field.
pub fn req_str(m: &Map<String, Value>, key: &str) -> Result<String, GovError> {
    match m.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        None | Some(Value::Null) => Err(GovError::Invalid(format!("{key} is required"))),
        Some(other) => Err(GovError::Invalid(format!(
            "{key} must be a string, got {}",
            type_name(other)
        ))),
    }
}

/// An optional string field (absent or null → `None`).
pub fn opt_str(m: &Map<String, Value>, key: &str) -> Result<Option<String>, GovError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(GovError::Invalid(format!(
            "{key} must be a string or null, got {}",
            type_name(other)
        ))),
    }
}

/// An optional object field (absent or null → empty).
pub fn opt_obj(m: &Map<String, Value>, key: &str) -> Result<Map<String, Value>, GovError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(o)) => Ok(o.clone()),
        Some(other) => Err(GovError::Invalid(format!(
            "{key} must be an object or null, got {}",
            type_name(other)
        ))),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `POST /api/v1/run` (and `/run/stream`) body, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRequest {
    /// The text to run.
    pub input: String,
    /// `context.session_id`.
    pub session_id: Option<String>,
    /// `context.agent_id`.
    pub agent_id: Option<String>,
    /// `context.mode_hint`.
    pub mode_hint: Option<String>,
    /// `options.timeout_ms` (`None` = the configured default).
    pub timeout_ms: Option<u64>,
}

impl RunRequest {
    /// Parses and validates a run body; `max_timeout_ms` bounds `timeout_ms`.
    pub fn parse(bytes: &[u8], max_timeout_ms: u64) -> Result<Self, GovError> {
        let m = object(bytes)?;
        let input = req_str(&m, "input")?;
        let ctx = opt_obj(&m, "context")?;
        let opts = opt_obj(&m, "options")?;
        let mode_hint = opt_str(&ctx, "mode_hint")?;
        if let Some(h) = &mode_hint
            && !MODE_HINTS.contains(&h.as_str())
        {
            return Err(GovError::Invalid(format!(
                "context.mode_hint must be one of fast, balanced, deep or null, got {h:?}"
            )));
        }
        let timeout_ms = match opts.get("timeout_ms") {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_u64() {
                Some(ms) if ms >= 1 && ms <= max_timeout_ms => Some(ms),
                _ => {
                    return Err(GovError::Invalid(format!(
                        "options.timeout_ms must be an integer in 1..={max_timeout_ms}, got {v}"
                    )));
                }
            },
        };
        match opts.get("stream") {
            None | Some(Value::Null | Value::Bool(_)) => {}
            Some(v) => {
                return Err(GovError::Invalid(format!(
                    "options.stream must be a boolean, got {}",
                    type_name(v)
                )));
            }
        }
        Ok(Self {
            input,
            session_id: opt_str(&ctx, "session_id")?,
            agent_id: opt_str(&ctx, "agent_id")?.filter(|a| !a.is_empty()),
            mode_hint,
            timeout_ms,
        })
    }
}

/// `RunResponse`: exactly these fields.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunResponse {
    /// `ALLOW` or `THROTTLE`.
    pub result: &'static str,
    /// The worker's output.
    pub output: Option<String>,
    /// The mode granted.
    pub mode: String,
    /// The budget granted.
    pub budget: f64,
    /// The trace.
    pub trace_id: String,
    /// Request to answer, milliseconds.
    pub latency_ms: f64,
}

/// `ChatResponse`: exactly these fields.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatResponse {
    /// The worker's output.
    pub response: String,
    /// The session (generated when the request had none).
    pub session_id: String,
    /// Request to answer, seconds.
    pub processing_time: f64,
    /// What answered: the topic the run went to.
    pub model: String,
    /// The trace.
    pub trace_id: String,
}

/// `AgentResult`: exactly these fields.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentResult {
    /// The agent.
    pub agent_id: String,
    /// `COMPLETED`, `FAILED` or `BLOCKED`.
    pub status: &'static str,
    /// The worker's output.
    pub output: Option<String>,
    /// Why it failed or was blocked.
    pub error: Option<String>,
    /// The trace.
    pub trace_id: String,
}

/// `SystemStatus`: exactly these fields.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SystemStatus {
    /// `OK`, `DEGRADED` or `ERROR`.
    pub status: &'static str,
    /// No model servers here.
    pub ollama: bool,
    /// No model servers here.
    pub vllm: bool,
    /// The policy engine is loaded.
    pub dsgk: bool,
    /// The job store answers.
    pub storage: bool,
    /// The gateway's version.
    pub version: &'static str,
    /// Seconds since start.
    pub uptime_seconds: f64,
}

/// `SystemMetrics`: exactly these fields.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SystemMetrics {
    /// Process CPU use since the previous sample, percent of one core.
    pub cpu_percent: f64,
    /// Resident memory, percent of the machine's.
    pub memory_percent: f64,
    /// Open SSE sessions (neurons and governance streams).
    pub active_sessions: u64,
    /// HTTP requests served.
    pub requests_total: u64,
    /// Mean request latency, milliseconds.
    pub avg_latency_ms: f64,
    /// No GPU.
    pub gpu_percent: Option<f64>,
    /// No GPU.
    pub vram_percent: Option<f64>,
    /// No GPU.
    pub vram_used_bytes: Option<u64>,
    /// No GPU.
    pub vram_total_bytes: Option<u64>,
}

/// A worker's result as the run's output text: a string as is, an object's
/// string `output` field, else the JSON text.
pub fn output_text(result: Option<&Value>) -> Option<String> {
    match result? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => match o.get("output") {
            Some(Value::String(s)) => Some(s.clone()),
            _ => Some(Value::Object(o.clone()).to_string()),
        },
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<RunRequest, GovError> {
        RunRequest::parse(v.to_string().as_bytes(), 60_000)
    }

    #[test]
    fn run_body_as_the_sdk_sends_it() {
        let r = parse(json!({
            "input": "hi",
            "context": {"session_id": null, "agent_id": null, "mode_hint": "deep"},
            "options": {"timeout_ms": 30000, "stream": false},
        }))
        .unwrap();
        assert_eq!(
            r,
            RunRequest {
                input: "hi".into(),
                session_id: None,
                agent_id: None,
                mode_hint: Some("deep".into()),
                timeout_ms: Some(30_000),
            }
        );
        assert_eq!(parse(json!({"input": ""})).unwrap().timeout_ms, None);
    }

    #[test]
    fn bad_run_bodies_are_422_with_the_field_named() {
        for (body, needle) in [
            (json!({}), "input is required"),
            (json!({"input": 3}), "input must be a string"),
            (
                json!({"input": "x", "context": []}),
                "context must be an object",
            ),
            (
                json!({"input": "x", "context": {"mode_hint": "turbo"}}),
                "mode_hint",
            ),
            (
                json!({"input": "x", "options": {"timeout_ms": 0}}),
                "timeout_ms",
            ),
            (
                json!({"input": "x", "options": {"timeout_ms": 60001}}),
                "timeout_ms",
            ),
            (
                json!({"input": "x", "options": {"timeout_ms": "5"}}),
                "timeout_ms",
            ),
            (
                json!({"input": "x", "options": {"stream": "yes"}}),
                "stream",
            ),
            (
                json!({"input": "x", "context": {"agent_id": 7}}),
                "agent_id",
            ),
            (json!(["input"]), "JSON object"),
        ] {
            let e = parse(body.clone()).unwrap_err();
            assert!(matches!(e, GovError::Invalid(_)), "{body}: {e:?}");
            assert!(e.to_string().contains(needle), "{body}: {e}");
        }
        assert!(matches!(
            RunRequest::parse(b"{not json", 10),
            Err(GovError::Invalid(_))
        ));
    }

    #[test]
    fn outputs_render_as_text() {
        assert_eq!(output_text(Some(&json!("a"))), Some("a".into()));
        assert_eq!(
            output_text(Some(&json!({"output": "b", "x": 1}))),
            Some("b".into())
        );
        assert_eq!(
            output_text(Some(&json!({"y": 1}))),
            Some(r#"{"y":1}"#.into())
        );
        assert_eq!(output_text(Some(&json!(5))), Some("5".into()));
        assert_eq!(output_text(None), None);
    }

    #[test]
    fn response_field_sets_are_exact() {
        let keys = |v: Value| {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        let run = serde_json::to_value(RunResponse {
            result: "ALLOW",
            output: None,
            mode: "fast".into(),
            budget: 0.1,
            trace_id: "t".into(),
            latency_ms: 1.0,
        })
        .unwrap();
        assert_eq!(
            keys(run),
            [
                "budget",
                "latency_ms",
                "mode",
                "output",
                "result",
                "trace_id"
            ]
        );
        let m = serde_json::to_value(SystemMetrics {
            cpu_percent: 0.0,
            memory_percent: 0.0,
            active_sessions: 0,
            requests_total: 0,
            avg_latency_ms: 0.0,
            gpu_percent: None,
            vram_percent: None,
            vram_used_bytes: None,
            vram_total_bytes: None,
        })
        .unwrap();
        assert_eq!(keys(m).len(), 9);
    }
}
