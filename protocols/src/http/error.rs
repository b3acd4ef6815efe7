//! The one API error type. Every handler and extractor failure becomes an
//! [`ApiError`], rendered as `{"error":{"code","message"}}` — the shape both
//! Intent Bus SDKs print as `code: message`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use agw_storage::StoreError;

/// A request failure, with the status and code the client sees.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No or unknown API key / token.
    #[error("{0}")]
    Unauthorized(String),
    /// Bad, stale or replayed request signature.
    #[error("{0}")]
    InvalidSignature(String),
    /// Authenticated, but not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// A tenant tried to put a job on a governance route topic.
    #[error("topic {0:?} is reserved for governance runs; submit through /api/v1/run")]
    ReservedTopic(String),
    /// No such resource visible to the caller.
    #[error("{0}")]
    NotFound(String),
    /// The caller does not hold the job's live lease.
    #[error("lease not held: unknown job, wrong or stale claim token, or expired lease")]
    LeaseLost,
    /// A repeated request conflicts with an earlier one (idempotency key reuse).
    #[error("{0}")]
    Conflict(String),
    /// Request body or payload over the configured size.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// Payload nested deeper than allowed.
    #[error("payload nesting deeper than {0} levels")]
    PayloadTooDeep(usize),
    /// The body is not JSON.
    #[error("{0}")]
    InvalidJson(String),
    /// Well-formed, but a field is missing, mistyped or out of range.
    #[error("{0}")]
    InvalidRequest(String),
    /// A task input that does not match its capability's registered JSON Schema.
    #[error("{message}")]
    SchemaMismatch {
        /// A summary naming the capability and the first violation.
        message: String,
        /// Every violation reported (the body's `error.errors`).
        errors: Vec<SchemaViolation>,
    },
    /// Route exists, method does not.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// Tenant over its request rate.
    #[error("rate limit exceeded; retry in {retry_after}s")]
    RateLimited {
        /// Seconds until a request will be accepted.
        retry_after: u64,
    },
    /// Tenant at its open-job cap.
    #[error("too many open intents (limit {limit}); fulfill or fail some first")]
    TooManyOpen {
        /// The cap.
        limit: i64,
    },
    /// The store is overloaded or unreachable; worth retrying.
    #[error("service temporarily unavailable")]
    Unavailable(String),
    /// A bug or an unexpected failure; details go to the log, not the client.
    #[error("internal error")]
    Internal(String),
}

/// One JSON Schema violation: where in the instance, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SchemaViolation {
    /// JSON Pointer of the offending value (`""` is the whole input).
    pub path: String,
    /// The validator's message.
    pub message: String,
}

/// The real cause of a 5xx, attached to the response for the logging layer.
#[derive(Debug, Clone)]
pub struct ErrorDetail(pub String);

impl ApiError {
    /// The status and the machine-readable code.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::InvalidSignature(_) => (StatusCode::FORBIDDEN, "invalid_signature"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::ReservedTopic(_) => (StatusCode::FORBIDDEN, "reserved_topic"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            // 404, not 409: Intent Bus 2.1 clients map exactly 404 on
            // fulfill/fail/extend_claim to IntentBusLeaseLostError.
            Self::LeaseLost => (StatusCode::NOT_FOUND, "lease_lost"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Self::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::PayloadTooDeep(_) => (StatusCode::BAD_REQUEST, "payload_too_deep"),
            Self::InvalidJson(_) => (StatusCode::BAD_REQUEST, "invalid_json"),
            Self::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            Self::SchemaMismatch { .. } => (StatusCode::BAD_REQUEST, "schema_mismatch"),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            Self::TooManyOpen { .. } => (StatusCode::TOO_MANY_REQUESTS, "too_many_open_intents"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let retry_after = match &self {
            Self::RateLimited { retry_after } => Some(*retry_after),
            // 2.1 clients retry publish/set on 429 and 503 honouring Retry-After.
            Self::TooManyOpen { .. } => Some(5),
            Self::Unavailable(_) => Some(1),
            _ => None,
        };
        let detail = match &self {
            Self::Unavailable(d) | Self::Internal(d) => Some(ErrorDetail(d.clone())),
            _ => None,
        };
        let mut body = json!({"error": {"code": code, "message": self.to_string()}});
        if let Self::SchemaMismatch { errors, .. } = &self {
            body["error"]["errors"] = json!(errors);
        }
        let mut res = (status, axum::Json(body)).into_response();
        if let Some(secs) = retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(d) = detail {
            res.extensions_mut().insert(d);
        }
        res
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Self::NotFound("no such job".into()),
            StoreError::LeaseLost => Self::LeaseLost,
            StoreError::InvalidState(s) => Self::Conflict(format!("job is {}", s.as_str())),
            StoreError::Conflict(m) => Self::Conflict(m),
            StoreError::TooManyOpen { limit } => Self::TooManyOpen { limit },
            StoreError::Unavailable(d) => Self::Unavailable(d),
            e if e.is_unavailable() => Self::Unavailable(e.to_string()),
            other @ (StoreError::InvalidUrl(_)
            | StoreError::Corrupt(_)
            | StoreError::Sqlite(_)
            | StoreError::Database(_)
            | StoreError::Migrate(_)) => Self::Internal(other.to_string()),
        }
    }
}

/// JSON 404 for unknown routes.
pub async fn not_found_fallback() -> ApiError {
    ApiError::NotFound("no such route".into())
}

/// JSON 405 for known routes with another method.
pub async fn method_not_allowed_fallback() -> ApiError {
    ApiError::MethodNotAllowed
}
