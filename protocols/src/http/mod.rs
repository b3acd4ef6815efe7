//! HTTP pieces shared by every protocol: the API error type, API-key and
//! HMAC authentication, bearer JWTs, body/path parsing and the extractors
//! that reject in the API error shape (JSON bodies, queries), and the W3C
//! trace context handed to workers.
//!
//! Layout:
//! - `auth`: API keys, HMAC signatures, bearer tokens, rate limits.
//! - `body`: the JSON object parser, payload limits, path segments, client strings.
//! - `error`: [`ApiError`] and its response.
//! - `extract`: [`JsonBody`], [`JsonBodyBytes`] and [`Query`], rejecting as [`ApiError`].
//! - `jwt`: bearer JWT encoding and validation.
//! - `trace`: the W3C `traceparent` handed to workers.

pub mod auth;
pub mod body;
pub mod error;
pub mod extract;
pub mod jwt;
pub mod trace;

pub use error::{ApiError, ErrorDetail, method_not_allowed_fallback, not_found_fallback};
pub use extract::{JsonBody, JsonBodyBytes, Query};
