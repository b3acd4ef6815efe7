//! HTTP pieces shared by every protocol: the API error type, API-key and
//! HMAC authentication, and bearer JWTs.

pub mod auth;
pub mod error;
pub mod jwt;

pub use error::{ApiError, ErrorDetail, method_not_allowed_fallback, not_found_fallback};
