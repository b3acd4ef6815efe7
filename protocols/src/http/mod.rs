//! HTTP pieces shared by every protocol: the API error type, API-key and
//! HMAC authentication, bearer JWTs, body/path parsing, and the W3C trace
//! context handed to workers.

pub mod auth;
pub mod body;
pub mod error;
pub mod jwt;
pub mod trace;

pub use error::{ApiError, ErrorDetail, method_not_allowed_fallback, not_found_fallback};
