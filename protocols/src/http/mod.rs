//! HTTP pieces shared by every protocol: the API error type and authentication.

pub mod auth;
pub mod error;

pub use error::{ApiError, ErrorDetail, method_not_allowed_fallback, not_found_fallback};
