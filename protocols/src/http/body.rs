//! Request-body and path helpers shared by every protocol: the JSON object
//! parser behind [`JsonBody`](super::extract::JsonBody), with errors that
//! tell malformed JSON from a wrong shape, payload size and depth limits,
//! path segments in the API error shape, and client strings both stores can
//! hold.

use axum::extract::Path;
use axum::extract::rejection::PathRejection;
use serde_json::Value;

use agw_config::Limits;

use super::ApiError;

/// Longest path segment (ids, KV keys).
pub const MAX_SEGMENT_LEN: usize = 256;

/// Largest request body any route reads, bytes: the neuron frame cap (acks
/// carry outputs); the edge reads no more.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// Parses a JSON object body, telling malformed JSON from a wrong shape.
pub fn parse_body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => {
            return Err(ApiError::InvalidJson(
                "request body is empty; expected a JSON object".into(),
            ));
        }
        // serde would also accept a struct written as an array of its fields.
        Some(b'{') => {}
        Some(_) => {
            return Err(match serde_json::from_slice::<Value>(bytes) {
                Ok(_) => ApiError::InvalidRequest("request body must be a JSON object".into()),
                Err(e) => ApiError::InvalidJson(format!("malformed JSON: {e}")),
            });
        }
    }
    serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::InvalidRequest(e.to_string()),
        serde_json::error::Category::Io
        | serde_json::error::Category::Syntax
        | serde_json::error::Category::Eof => ApiError::InvalidJson(format!("malformed JSON: {e}")),
    })
}

/// Depth of a JSON value: scalars 0, each array/object level +1.
pub fn json_depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(json_depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(json_depth).max().unwrap_or(0),
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => 0,
    }
}

/// Checks a payload against the size and depth limits.
pub fn check_payload(v: &Value, limits: &Limits) -> Result<(), ApiError> {
    let size = v.to_string().len();
    if size > limits.max_payload_bytes {
        return Err(ApiError::PayloadTooLarge(format!(
            "payload is {size} bytes; the limit is {}",
            limits.max_payload_bytes
        )));
    }
    if json_depth(v) > limits.max_payload_depth {
        return Err(ApiError::PayloadTooDeep(limits.max_payload_depth));
    }
    Ok(())
}

/// A client string used as a name or a lookup key: no control characters.
/// PostgreSQL's `text` refuses NUL where SQLite keeps it, so without this a
/// stray `\0` is a 500 on one store and a miss on the other.
pub fn printable(what: &str, s: &str) -> Result<(), ApiError> {
    if s.chars().any(char::is_control) {
        return Err(ApiError::InvalidRequest(format!(
            "{what} must not contain control characters"
        )));
    }
    Ok(())
}

/// Free text a client sends for the record (a failure reason): NULs
/// dropped, as PostgreSQL's `text` cannot hold them.
pub fn without_nul(s: String) -> String {
    if s.contains('\0') {
        s.replace('\0', "")
    } else {
        s
    }
}

/// A path segment, with non-UTF-8 and other rejections in our error shape.
pub fn path_segment(
    p: Result<Path<String>, PathRejection>,
    what: &str,
) -> Result<String, ApiError> {
    let Path(s) =
        p.map_err(|e| ApiError::InvalidRequest(format!("invalid {what} in path: {e}")))?;
    if s.is_empty() || s.len() > MAX_SEGMENT_LEN || s.chars().any(char::is_control) {
        return Err(ApiError::InvalidRequest(format!(
            "{what} must be 1-{MAX_SEGMENT_LEN} printable characters"
        )));
    }
    Ok(s)
}
