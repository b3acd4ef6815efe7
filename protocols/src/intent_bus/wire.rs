//! Intent Bus wire types: request bodies as both SDK generations send them,
//! their validation into store parameters, and response bodies. Pure serde,
//! no I/O.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use agw_config::Limits;
use agw_storage::{Job, JobState, NewJob, Protocol, ResultType, Visibility, new_job_id};

use crate::http::ApiError;
#[cfg(test)]
use crate::http::body::json_depth;
use crate::http::body::{check_payload, parse_body, printable};

/// Longest goal, namespace, worker id, capability, KV key.
pub const MAX_NAME_LEN: usize = 256;
/// Longest target worker / required capability (the reference server's).
pub const MAX_ROUTING_LEN: usize = 64;
/// Longest stored failure message (the reference server's).
pub const MAX_ERROR_LEN: usize = 500;
/// Longest delay of a publish, seconds (30 days).
pub const MAX_DELAY_SECS: f64 = 30.0 * 86_400.0;

fn name(field: &str, v: &str, max: usize) -> Result<String, ApiError> {
    let t = v.trim();
    if t.is_empty() {
        return Err(ApiError::InvalidRequest(format!(
            "{field} must be a non-empty string"
        )));
    }
    if t.chars().count() > max {
        return Err(ApiError::InvalidRequest(format!(
            "{field} cannot exceed {max} characters"
        )));
    }
    if t.chars().any(char::is_control) {
        return Err(ApiError::InvalidRequest(format!(
            "{field} must not contain control characters"
        )));
    }
    Ok(t.to_owned())
}

fn optional_route(field: &str, v: Option<String>) -> Result<Option<String>, ApiError> {
    match v.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => name(field, s, MAX_ROUTING_LEN).map(Some),
    }
}

/// `POST /intent` body (both SDK generations; 1.3.2 sends only the first four).
#[derive(Debug, Deserialize)]
pub struct PublishRequest {
    /// What work it is (the topic).
    pub goal: String,
    /// Any JSON value (2.1.2 allows non-objects; we accept them).
    pub payload: Option<Value>,
    /// `private` (default) or `public`.
    pub visibility: Option<String>,
    /// Routing namespace (default `default`).
    pub namespace: Option<String>,
    /// 0..=1000, higher first (default 100).
    pub priority: Option<i64>,
    /// Seconds before the intent becomes claimable.
    pub delay: Option<f64>,
    /// Claims allowed before dead (default 3).
    pub max_attempts: Option<i64>,
    /// Retry delay base, seconds (default 5).
    pub backoff_base: Option<f64>,
    /// Only this worker id may claim.
    pub target_worker: Option<String>,
    /// Only workers with this capability may claim.
    pub required_capability: Option<String>,
}

impl PublishRequest {
    /// Validates every field into a job for `tenant`.
    pub fn into_job(self, tenant: &str, limits: &Limits) -> Result<NewJob, ApiError> {
        let goal = name("goal", &self.goal, MAX_NAME_LEN)?;
        let input = self
            .payload
            .ok_or_else(|| ApiError::InvalidRequest("payload is required".into()))?;
        check_payload(&input, limits)?;
        let visibility = match self.visibility.as_deref() {
            None | Some("private") => Visibility::Private,
            Some("public") => Visibility::Public,
            Some(other) => {
                return Err(ApiError::InvalidRequest(format!(
                    "visibility must be \"private\" or \"public\", got {other:?}"
                )));
            }
        };
        let namespace = match &self.namespace {
            Some(ns) => name("namespace", ns, MAX_NAME_LEN)?,
            None => "default".to_owned(),
        };
        let priority = self.priority.unwrap_or(100);
        if !(0..=1000).contains(&priority) {
            return Err(ApiError::InvalidRequest(format!(
                "priority must be between 0 and 1000, got {priority}"
            )));
        }
        let delay = self.delay.unwrap_or(0.0);
        if !delay.is_finite() || !(0.0..=MAX_DELAY_SECS).contains(&delay) {
            return Err(ApiError::InvalidRequest(format!(
                "delay must be between 0 and {MAX_DELAY_SECS} seconds, got {delay}"
            )));
        }
        let max_attempts = self.max_attempts.unwrap_or(3);
        if !(1..=100).contains(&max_attempts) {
            return Err(ApiError::InvalidRequest(format!(
                "max_attempts must be between 1 and 100, got {max_attempts}"
            )));
        }
        let backoff = self.backoff_base.unwrap_or(5.0);
        if !backoff.is_finite() || backoff <= 0.0 || backoff > 86_400.0 {
            return Err(ApiError::InvalidRequest(format!(
                "backoff_base must be > 0 and at most 86400 seconds, got {backoff}"
            )));
        }
        Ok(NewJob {
            id: new_job_id(),
            tenant: tenant.to_owned(),
            protocol: Protocol::IntentBus,
            topic: goal,
            namespace,
            visibility,
            priority: priority as i32,
            delay_ms: (delay * 1000.0).round() as i64,
            max_attempts: max_attempts as i32,
            backoff_base_ms: ((backoff * 1000.0).round() as i64).max(1),
            target_worker: optional_route("target_worker", self.target_worker)?,
            required_capability: optional_route("required_capability", self.required_capability)?,
            on_behalf_of: None,
            input,
            metadata: None,
        })
    }
}

/// `POST /claim` query.
#[derive(Debug, Default, Deserialize)]
pub struct ClaimQuery {
    /// Private intents must be in this namespace (default `default`).
    pub namespace: Option<String>,
    /// Only this goal (default: any).
    pub goal: Option<String>,
    /// Only intents of this publisher (tenant name; admin or the publisher itself).
    pub publisher: Option<String>,
    /// Long poll: hold up to this many seconds for a job (capped by config).
    pub wait: Option<f64>,
}

/// `POST /fulfill/<id>` body: 2.1.2 sends a `claim_token`; 1.3.2 sends its
/// handler's kwargs (any object) or nothing.
#[derive(Debug)]
pub enum FulfillRequest {
    /// 2.1.2: token-checked.
    Tokened {
        /// The lease's token.
        claim_token: String,
        /// The output (absent → null).
        result: Value,
        /// How it reads back.
        result_type: ResultType,
    },
    /// 1.3.2: the whole body is the result; checked by claiming key.
    Legacy {
        /// The output.
        result: Value,
    },
}

impl FulfillRequest {
    /// Parses either generation's body (as
    /// `Option<JsonBody<Map<String, Value>>>` reads it).
    pub fn parse(bytes: &[u8]) -> Result<Self, ApiError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Self::from_body(None);
        }
        Self::from_body(Some(parse_body(bytes)?))
    }

    /// Tells the generations apart by the body's members: the 1.3.2 body is
    /// any object (its handler's kwargs), so it is read as one, not as a struct.
    /// No body at all is a 1.3.2 `null` result.
    pub fn from_body(body: Option<Map<String, Value>>) -> Result<Self, ApiError> {
        let Some(mut map) = body else {
            return Ok(Self::Legacy {
                result: Value::Null,
            });
        };
        let Some(token) = map.remove("claim_token") else {
            return Ok(Self::Legacy {
                result: Value::Object(map),
            });
        };
        let Value::String(claim_token) = token else {
            return Err(ApiError::InvalidRequest(
                "claim_token must be a string".into(),
            ));
        };
        printable("claim_token", &claim_token)?;
        let result_type = match map.get("result_type") {
            None => ResultType::Json,
            Some(Value::String(s)) if s == "json" => ResultType::Json,
            Some(Value::String(s)) if s == "text" => ResultType::Text,
            Some(other) => {
                return Err(ApiError::InvalidRequest(format!(
                    "result_type must be \"json\" or \"text\", got {other}"
                )));
            }
        };
        let result = map.remove("result").unwrap_or(Value::Null);
        if result_type == ResultType::Text && !result.is_string() {
            return Err(ApiError::InvalidRequest(
                "result must be a string when result_type is \"text\"".into(),
            ));
        }
        Ok(Self::Tokened {
            claim_token,
            result,
            result_type,
        })
    }
}

/// `POST /fail/<id>` body.
#[derive(Debug, Default, Deserialize)]
pub struct FailRequest {
    /// 2.1.2's lease token (1.3.2 sends none).
    pub claim_token: Option<String>,
    /// Why; truncated to [`MAX_ERROR_LEN`] characters.
    pub error: Option<String>,
}

/// `POST /extend_claim/<id>` body.
#[derive(Debug, Deserialize)]
pub struct ExtendRequest {
    /// The lease's token.
    pub claim_token: String,
    /// New lease length from now (default: the configured claim timeout).
    pub seconds: Option<i64>,
}

/// `POST /set/<key>` body.
#[derive(Debug, Deserialize)]
pub struct KvSetRequest {
    /// Any JSON value, stored as given.
    pub value: Option<Value>,
    /// Lifetime in seconds, 1..=86400 (default 600, the SDKs' default).
    pub ttl: Option<i64>,
}

/// `POST /admin/generate_key` body.
#[derive(Debug, Deserialize)]
pub struct GenerateKeyRequest {
    /// The tenant the key belongs to.
    pub owner: String,
}

/// Validates a tenant (owner) name: 1–64 of `A-Za-z0-9_.@-`, not starting with `_`.
pub fn owner_name(owner: &str) -> Result<String, ApiError> {
    let ok = !owner.is_empty()
        && owner.len() <= 64
        && !owner.starts_with('_')
        && owner
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.@-".contains(c));
    if ok {
        Ok(owner.to_owned())
    } else {
        Err(ApiError::InvalidRequest(
            "owner must be 1-64 characters of A-Z a-z 0-9 _ . @ -, not starting with _".into(),
        ))
    }
}

fn secs(t: DateTime<Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

/// The protocol's name for a state.
pub fn status_name(s: JobState) -> &'static str {
    match s {
        JobState::Open => "open",
        JobState::Leased => "claimed",
        JobState::Fulfilled => "fulfilled",
        JobState::Dead => "dead",
        JobState::Cancelled => "cancelled",
    }
}

/// `GET /status/<id>` and the publish response.
#[derive(Debug, Serialize)]
pub struct StatusResponse {
    /// Intent id.
    pub id: String,
    /// open | claimed | fulfilled | dead | cancelled.
    pub status: &'static str,
    /// The goal.
    pub goal: String,
    /// The namespace.
    pub namespace: String,
    /// private | public.
    pub visibility: &'static str,
    /// Priority.
    pub priority: i32,
    /// Claims so far.
    pub claim_attempts: i32,
    /// Claims allowed.
    pub max_attempts: i32,
    /// Not claimable before (Unix seconds).
    pub run_at: f64,
    /// Submitted (Unix seconds).
    pub created_at: f64,
    /// Last error, when any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl From<&Job> for StatusResponse {
    fn from(j: &Job) -> Self {
        Self {
            id: j.id.clone(),
            status: status_name(j.state),
            goal: j.topic.clone(),
            namespace: j.namespace.clone(),
            visibility: j.visibility.as_str(),
            priority: j.priority,
            claim_attempts: j.attempts,
            max_attempts: j.max_attempts,
            run_at: secs(j.run_at),
            created_at: secs(j.created_at),
            error: j.error.clone(),
        }
    }
}

/// `GET /result/<id>`.
#[derive(Debug, Serialize)]
pub struct ResultResponse {
    /// The status fields.
    #[serde(flatten)]
    pub status: StatusResponse,
    /// The output (null until fulfilled).
    pub result: Value,
    /// json | text.
    pub result_type: &'static str,
    /// When it settled (Unix seconds).
    pub completed_at: Option<f64>,
}

impl From<&Job> for ResultResponse {
    fn from(j: &Job) -> Self {
        Self {
            status: j.into(),
            result: j.result.clone().unwrap_or(Value::Null),
            result_type: j.result_type.as_str(),
            completed_at: j.completed_at.map(secs),
        }
    }
}

/// `POST /claim` 200 body.
#[derive(Debug, Serialize)]
pub struct ClaimResponse {
    /// Intent id.
    pub id: String,
    /// The goal.
    pub goal: String,
    /// The payload.
    pub payload: Value,
    /// Token every settlement must present.
    pub claim_token: String,
    /// Namespace.
    pub namespace: String,
    /// private | public.
    pub visibility: &'static str,
    /// Claims so far, this one included.
    pub claim_attempts: i32,
    /// Claims allowed.
    pub max_attempts: i32,
    /// Priority.
    pub priority: i32,
    /// Lease length, seconds.
    pub claim_timeout: i64,
    /// Lease end (Unix seconds).
    pub lease_expires_at: f64,
    /// Targeted worker, if any.
    pub target_worker: Option<String>,
    /// Required capability, if any.
    pub required_capability: Option<String>,
    /// The publisher's W3C trace context, so the worker's spans join its
    /// trace (both SDK generations keep unknown members).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

impl ClaimResponse {
    /// The response for a freshly leased job.
    pub fn new(j: Job, claim_timeout: i64) -> Result<Self, ApiError> {
        let lease = j
            .lease
            .ok_or_else(|| ApiError::Internal("claimed job has no lease".into()))?;
        Ok(Self {
            claim_token: lease.token,
            lease_expires_at: secs(lease.expires_at),
            id: j.id,
            goal: j.topic,
            payload: j.input,
            namespace: j.namespace,
            visibility: j.visibility.as_str(),
            claim_attempts: j.attempts,
            max_attempts: j.max_attempts,
            priority: j.priority,
            claim_timeout,
            traceparent: crate::http::trace::from_metadata(j.metadata.as_ref()),
            target_worker: j.target_worker,
            required_capability: j.required_capability,
        })
    }
}

impl StatusResponse {
    /// The publish response, fixed before the insert commits (`now` is the insert's clock).
    pub fn for_new(j: &NewJob, now: DateTime<Utc>) -> Self {
        Self {
            id: j.id.clone(),
            status: status_name(JobState::Open),
            goal: j.topic.clone(),
            namespace: j.namespace.clone(),
            visibility: j.visibility.as_str(),
            priority: j.priority,
            claim_attempts: 0,
            max_attempts: j.max_attempts,
            run_at: secs(now) + j.delay_ms as f64 / 1000.0,
            created_at: secs(now),
            error: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn limits() -> Limits {
        Limits {
            max_body_bytes: 8192,
            max_payload_bytes: 5120,
            max_payload_depth: 10,
            max_open_jobs_per_tenant: 100,
            rate_limit_per_minute: 60,
            preauth_per_minute: 120,
            header_read_timeout_secs: 15,
            body_read_timeout_secs: 15,
            idle_timeout_secs: 60,
            max_connections: 100,
            max_in_flight: 100,
            max_in_flight_per_route: 100,
        }
    }

    fn publish(v: Value) -> Result<NewJob, ApiError> {
        parse_body::<PublishRequest>(v.to_string().as_bytes())?.into_job("t", &limits())
    }

    #[test]
    fn publish_defaults_match_the_sdk() {
        let j = publish(json!({"goal": "acme/echo", "payload": {"a": 1}})).unwrap();
        assert_eq!(
            (j.priority, j.max_attempts, j.backoff_base_ms, j.delay_ms),
            (100, 3, 5000, 0)
        );
        assert_eq!(j.namespace, "default");
        assert_eq!(j.visibility, Visibility::Private);
    }

    #[test]
    fn publish_rejects_each_bad_field() {
        for (body, code) in [
            (json!({"payload": {}}), "invalid_request"),
            (json!({"goal": "", "payload": {}}), "invalid_request"),
            (json!({"goal": "g"}), "invalid_request"),
            (
                json!({"goal": "g", "payload": {}, "priority": "high"}),
                "invalid_request",
            ),
            (
                json!({"goal": "g", "payload": {}, "priority": 1001}),
                "invalid_request",
            ),
            (
                json!({"goal": "g", "payload": {}, "max_attempts": 0}),
                "invalid_request",
            ),
            (
                json!({"goal": "g", "payload": {}, "delay": -1}),
                "invalid_request",
            ),
            (
                json!({"goal": "g", "payload": {}, "backoff_base": 0}),
                "invalid_request",
            ),
            (
                json!({"goal": "g", "payload": {}, "visibility": "secret"}),
                "invalid_request",
            ),
            (
                json!({"goal": "g", "payload": {}, "target_worker": "x".repeat(65)}),
                "invalid_request",
            ),
            (
                json!({"goal": "g", "payload": {"s": "x".repeat(6000)}}),
                "payload_too_large",
            ),
        ] {
            let err = publish(body.clone()).unwrap_err();
            assert_eq!(err.status_and_code().1, code, "{body}");
        }
        let err = parse_body::<PublishRequest>(b"{\"goal\": ").unwrap_err();
        assert_eq!(err.status_and_code().1, "invalid_json");
        // A full-length array would fill every field by position.
        let array = br#"["g",{},null,null,null,null,null,null,null,null]"#;
        let err = parse_body::<PublishRequest>(array).unwrap_err();
        assert_eq!(
            err.status_and_code().1,
            "invalid_request",
            "arrays are not objects"
        );
        let err = parse_body::<KvSetRequest>(b"[1,2]").unwrap_err();
        assert_eq!(
            err.status_and_code().1,
            "invalid_request",
            "arrays are not objects"
        );
    }

    #[test]
    fn depth_limit_counts_levels() {
        let mut v = json!(1);
        for _ in 0..10 {
            v = json!([v]);
        }
        assert_eq!(json_depth(&v), 10);
        assert!(check_payload(&v, &limits()).is_ok());
        let err = check_payload(&json!({ "d": v }), &limits()).unwrap_err();
        assert_eq!(err.status_and_code().1, "payload_too_deep");
    }

    #[test]
    fn fulfill_bodies_of_both_generations() {
        match FulfillRequest::parse(b"").unwrap() {
            FulfillRequest::Legacy { result } => assert_eq!(result, Value::Null),
            FulfillRequest::Tokened { .. } => panic!("empty body is 1.3.2"),
        }
        match FulfillRequest::parse(br#"{"status":"processed_by_cli"}"#).unwrap() {
            FulfillRequest::Legacy { result } => {
                assert_eq!(result, json!({"status": "processed_by_cli"}));
            }
            FulfillRequest::Tokened { .. } => panic!("no token is 1.3.2"),
        }
        match FulfillRequest::parse(br#"{"claim_token":"t","result_type":"json"}"#).unwrap() {
            FulfillRequest::Tokened {
                claim_token,
                result,
                result_type,
            } => {
                assert_eq!(
                    (claim_token.as_str(), result, result_type),
                    ("t", Value::Null, ResultType::Json)
                );
            }
            FulfillRequest::Legacy { .. } => panic!("token is 2.1.2"),
        }
        assert!(
            FulfillRequest::parse(br#"{"claim_token":"t","result_type":"text","result":1}"#)
                .is_err()
        );
        assert!(
            FulfillRequest::parse(br#"{"claim_token":"t","result_type":"xml","result":"a"}"#)
                .is_err()
        );
        assert!(FulfillRequest::parse(br#"[1]"#).is_err());
        // A NUL would reach the store's lookup (a 500 on PostgreSQL).
        assert!(matches!(
            FulfillRequest::parse(br#"{"claim_token":"t\u0000"}"#),
            Err(ApiError::InvalidRequest(_))
        ));
    }

    #[test]
    fn owner_names() {
        assert!(owner_name("acme-corp.eu").is_ok());
        assert!(owner_name("__admin__").is_err());
        assert!(owner_name("").is_err());
        assert!(owner_name("a b").is_err());
    }
}
