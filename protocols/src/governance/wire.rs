//! Governance wire types: request bodies (structs of [`Member`]s, so each 422
//! names its member) and their validation with the protocol's 422 errors,
//! the exact response shapes the `hestiaos` SDK builds dataclasses from (one
//! extra or missing field makes it raise), and the protocol's error body.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
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

/// Parses a JSON object body into `T`, or 422. `T` is read from the parsed
/// object, so a repeated member is its last value, not a duplicate-field error.
pub fn parse_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, GovError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v @ Value::Object(_)) => T::deserialize(v).map_err(|e| GovError::Invalid(e.to_string())),
        Ok(_) => Err(GovError::Invalid("body must be a JSON object".into())),
        Err(e) => Err(GovError::Invalid(format!("body is not valid JSON: {e}"))),
    }
}

/// A body member as the client sent it. Governance bodies are read into
/// structs of these rather than through serde's own type errors, so that a
/// 422 names its member in the protocol's words (`input must be a string,
/// got a number`) and members are checked in the handler's order.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Member<T> {
    /// Absent, or `null`.
    #[default]
    Absent,
    /// Of the expected type.
    Given(T),
    /// Of another type: the value as sent.
    Wrong(Value),
}

/// What a [`Member`] holds: its name in a 422, and the JSON it comes as.
pub trait Expected: DeserializeOwned {
    /// `a string`, `an object`, …
    const WHAT: &'static str;

    /// Whether `v` is of this kind; checked before deserializing, as serde
    /// would read a struct from an array of its fields.
    fn fits(v: &Value) -> bool;
}

impl Expected for String {
    const WHAT: &'static str = "a string";

    fn fits(v: &Value) -> bool {
        v.is_string()
    }
}

impl Expected for bool {
    const WHAT: &'static str = "a boolean";

    fn fits(v: &Value) -> bool {
        v.is_boolean()
    }
}

impl Expected for u64 {
    const WHAT: &'static str = "an integer";

    fn fits(v: &Value) -> bool {
        v.is_u64()
    }
}

impl Expected for Vec<String> {
    const WHAT: &'static str = "a list of strings";

    fn fits(v: &Value) -> bool {
        v.as_array().is_some_and(|a| a.iter().all(Value::is_string))
    }
}

impl<'de, T: Expected> Deserialize<'de> for Member<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::Null => Self::Absent,
            v if T::fits(&v) => match T::deserialize(&v) {
                Ok(t) => Self::Given(t),
                Err(_) => Self::Wrong(v),
            },
            v => Self::Wrong(v),
        })
    }
}

impl<T: Expected> Member<T> {
    /// A required member: absent is `{key} is required`.
    pub fn required(self, key: &str) -> Result<T, GovError> {
        match self {
            Self::Given(t) => Ok(t),
            Self::Absent => Err(GovError::Invalid(format!("{key} is required"))),
            Self::Wrong(v) => Err(GovError::Invalid(format!(
                "{key} must be {}, got {}",
                T::WHAT,
                type_name(&v)
            ))),
        }
    }

    /// An optional member.
    pub fn optional(self, key: &str) -> Result<Option<T>, GovError> {
        match self {
            Self::Given(t) => Ok(Some(t)),
            Self::Absent => Ok(None),
            Self::Wrong(v) => Err(GovError::Invalid(format!(
                "{key} must be {} or null, got {}",
                T::WHAT,
                type_name(&v)
            ))),
        }
    }

    /// The value, if of the expected type.
    pub fn given(&self) -> Option<&T> {
        match self {
            Self::Given(t) => Some(t),
            Self::Absent | Self::Wrong(_) => None,
        }
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

/// Implements [`Expected`] for objects.
macro_rules! object_member {
    ($($t:ty),+) => {$(
        impl Expected for $t {
            const WHAT: &'static str = "an object";

            fn fits(v: &Value) -> bool {
                v.is_object()
            }
        }
    )+};
}

object_member!(Map<String, Value>, RunContext, RunOptions, CommandInput);

/// `POST /api/v1/run` (and `/run/stream`) body as sent; [`RunBody::validate`]
/// makes it a [`RunRequest`].
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RunBody {
    /// The text to run.
    pub input: Member<String>,
    /// Who is asking, and how.
    pub context: Member<RunContext>,
    /// How to run.
    pub options: Member<RunOptions>,
}

/// `context` of a run body.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RunContext {
    /// The conversation.
    pub session_id: Member<String>,
    /// The calling agent (empty = none).
    pub agent_id: Member<String>,
    /// One of [`MODE_HINTS`].
    pub mode_hint: Member<String>,
}

/// `options` of a run body.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RunOptions {
    /// How long to wait for a worker.
    pub timeout_ms: Member<u64>,
    /// Ignored (the route decides); must be a boolean when sent.
    pub stream: Member<bool>,
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
        parse_object::<RunBody>(bytes)?.validate(max_timeout_ms)
    }
}

impl RunBody {
    /// Validates the body; `max_timeout_ms` bounds `timeout_ms`.
    pub fn validate(self, max_timeout_ms: u64) -> Result<RunRequest, GovError> {
        let input = self.input.required("input")?;
        let ctx = self.context.optional("context")?.unwrap_or_default();
        let opts = self.options.optional("options")?.unwrap_or_default();
        let mode_hint = ctx.mode_hint.optional("mode_hint")?;
        if let Some(h) = &mode_hint
            && !MODE_HINTS.contains(&h.as_str())
        {
            return Err(GovError::Invalid(format!(
                "context.mode_hint must be one of fast, balanced, deep or null, got {h:?}"
            )));
        }
        let bad_timeout = |v: Value| {
            GovError::Invalid(format!(
                "options.timeout_ms must be an integer in 1..={max_timeout_ms}, got {v}"
            ))
        };
        let timeout_ms = match opts.timeout_ms {
            Member::Absent => None,
            Member::Given(ms) if (1..=max_timeout_ms).contains(&ms) => Some(ms),
            Member::Given(ms) => return Err(bad_timeout(ms.into())),
            Member::Wrong(v) => return Err(bad_timeout(v)),
        };
        if let Member::Wrong(v) = &opts.stream {
            return Err(GovError::Invalid(format!(
                "options.stream must be a boolean, got {}",
                type_name(v)
            )));
        }
        Ok(RunRequest {
            input,
            session_id: ctx.session_id.optional("session_id")?,
            agent_id: ctx.agent_id.optional("agent_id")?.filter(|a| !a.is_empty()),
            mode_hint,
            timeout_ms,
        })
    }
}

/// `POST /api/chat` body.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ChatBody {
    /// The message (required).
    pub message: Member<String>,
    /// The conversation (generated when absent).
    pub session_id: Member<String>,
}

/// `POST /api/agents/run` body.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct AgentRunBody {
    /// The agent to run (required).
    pub agent_id: Member<String>,
    /// Its task (required).
    pub task: Member<String>,
    /// Passed to the worker (default `{}`).
    pub config: Member<Map<String, Value>>,
}

/// `POST /api/governance/explain` body.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ExplainBody {
    /// Echoed back (required).
    pub command_type: Member<String>,
    /// What would run (default `{}`).
    pub command_input: Member<CommandInput>,
}

/// `command_input` of an explain body: a free-form object, of which the
/// policy reads a few members and, failing those, the whole.
#[derive(Debug, Default)]
pub struct CommandInput {
    /// The object as sent.
    pub raw: Map<String, Value>,
    /// Text to judge, first choice.
    pub input: Member<String>,
    /// Text to judge, second choice.
    pub message: Member<String>,
    /// Text to judge, third choice.
    pub task: Member<String>,
    /// The calling agent.
    pub agent_id: Member<String>,
    /// One of [`MODE_HINTS`].
    pub mode_hint: Member<String>,
}

impl CommandInput {
    /// The text the policy judges: the first string of `input`, `message`
    /// and `task`, else the object's JSON.
    pub fn text(&self) -> String {
        [&self.input, &self.message, &self.task]
            .into_iter()
            .find_map(Member::given)
            .cloned()
            .unwrap_or_else(|| Value::Object(self.raw.clone()).to_string())
    }
}

impl<'de> Deserialize<'de> for CommandInput {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Default, Deserialize)]
        #[serde(default)]
        struct Members {
            input: Member<String>,
            message: Member<String>,
            task: Member<String>,
            agent_id: Member<String>,
            mode_hint: Member<String>,
        }
        let raw = Map::<String, Value>::deserialize(d)?;
        let m = Members::deserialize(&raw).map_err(serde::de::Error::custom)?;
        Ok(Self {
            raw,
            input: m.input,
            message: m.message,
            task: m.task,
            agent_id: m.agent_id,
            mode_hint: m.mode_hint,
        })
    }
}

/// `POST /api/secrets` body.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SecretBody {
    /// The secret's name (required).
    pub credential_ref: Member<String>,
    /// Its value (required).
    pub secret: Member<String>,
    /// Who issued it (default `custom`).
    pub provider: Member<String>,
    /// The tools it may be used by (default `["*"]`).
    pub allowed_tools: Member<Vec<String>>,
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
    fn members_are_refused_by_name_in_the_handlers_order() {
        let explain = |v: Value| parse_object::<ExplainBody>(v.to_string().as_bytes()).unwrap();
        let b = explain(json!({"command_type": "run", "command_input": {"input": 5, "task": "t"}}));
        let input = b.command_input.optional("command_input").unwrap().unwrap();
        assert_eq!(input.text(), "t", "the first member that is a string");
        let b = explain(json!({"command_type": "run", "command_input": {"x": 1}}));
        let input = b.command_input.optional("command_input").unwrap().unwrap();
        assert_eq!(input.text(), r#"{"x":1}"#, "else the whole object");
        assert_eq!(CommandInput::default().text(), "{}");
        let b = explain(json!({"command_type": 5, "command_input": [1]}));
        assert_eq!(
            b.command_type
                .required("command_type")
                .unwrap_err()
                .to_string(),
            "command_type must be a string, got a number"
        );
        assert_eq!(
            b.command_input
                .optional("command_input")
                .unwrap_err()
                .to_string(),
            "command_input must be an object or null, got an array"
        );
        let secret = |v: Value| parse_object::<SecretBody>(v.to_string().as_bytes()).unwrap();
        let b = secret(json!({"credential_ref": null, "allowed_tools": ["a", 1]}));
        assert_eq!(
            b.credential_ref
                .required("credential_ref")
                .unwrap_err()
                .to_string(),
            "credential_ref is required"
        );
        assert!(matches!(b.allowed_tools, Member::Wrong(_)));
        let b = secret(json!({"allowed_tools": ["a"], "provider": "p"}));
        assert_eq!(b.allowed_tools, Member::Given(vec!["a".to_owned()]));
        assert_eq!(
            b.provider.optional("provider").unwrap().as_deref(),
            Some("p")
        );
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
