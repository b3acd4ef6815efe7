//! `GET /openapi.json`: the hand-written OpenAPI 3.1 description of every
//! route, embedded at build time. `tests/openapi.rs` keeps it true to the routers.

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// The document, as committed in `src/openapi.json`.
const DOCUMENT: &str = include_str!("openapi.json");

/// Serves the document (no auth).
pub(crate) async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT).into_response()
}
