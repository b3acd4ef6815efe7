//! Extractors in the [`ApiError`] shape (`{"error":{"code","message"}}`): a
//! JSON object body read into a wire type ([`JsonBody`], [`JsonBodyBytes`])
//! and a query string ([`Query`]). Governance (422 `invalid_input`), OAuth
//! (RFC 6749 errors) and event ingest answer in their own shapes and have
//! their own extractors beside their handlers.
//!
//! A handler that must refuse something else first (a non-admin caller, a
//! bad path id) takes `Result<JsonBody<T>, ApiError>` and applies `?` after
//! that check, so the error a client sees for a request wrong twice over is
//! the one it saw before extraction moved here.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequest, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::ApiError;
use super::body::{MAX_BODY_BYTES, parse_body};

/// A JSON object body parsed into `T` by [`parse_body`]: an empty body or
/// malformed JSON is `400 invalid_json`, a non-object or a `T` it does not
/// fit is `400 invalid_request`, a body over the route's limit `413`.
///
/// As `Option<JsonBody<T>>`, an empty (or whitespace-only) body is `None`:
/// Intent Bus 1.3.2 settles with no body at all.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonBody<T>(pub T);

/// A [`JsonBody`] that keeps the bytes it was parsed from, for a route that
/// records them (publish hashes them for its idempotency record).
#[derive(Debug, Clone)]
pub struct JsonBodyBytes<T> {
    /// The parsed body.
    pub value: T,
    /// The body as received.
    pub bytes: Bytes,
}

/// The request body, whole. The edge (and the Intent Bus authentication
/// middleware) have read it already, so the only failure is a body over the
/// route's `DefaultBodyLimit` (the neuron routes' frame cap).
async fn read<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|e| match e {
        BytesRejection::FailedToBufferBody(_) => {
            ApiError::PayloadTooLarge(format!("request body over {MAX_BODY_BYTES} bytes"))
        }
        other => ApiError::InvalidRequest(other.body_text()),
    })
}

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        parse_body(&read(req, state).await?).map(Self)
    }
}

impl<S, T> OptionalFromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, ApiError> {
        let bytes = read(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        parse_body(&bytes).map(|t| Some(Self(t)))
    }
}

impl<S, T> FromRequest<S> for JsonBodyBytes<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = read(req, state).await?;
        let value = parse_body(&bytes)?;
        Ok(Self { value, bytes })
    }
}

/// A query string deserialized into `T` (axum's `Query`, unknown parameters
/// ignored, a repeated field refused): failures are `400 invalid_request`
/// with `invalid query: ` and axum's reason.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<S, T> FromRequestParts<S> for Query<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(q)| Self(q))
            .map_err(|e| ApiError::InvalidRequest(format!("invalid query: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use serde::Deserialize;
    use serde_json::Value;

    use super::*;

    #[derive(Debug, Deserialize)]
    struct Owner {
        owner: String,
    }

    /// `T` extracted from a POST with `body`.
    async fn extract<T: FromRequest<()>>(body: &'static str) -> Result<T, T::Rejection> {
        T::from_request(Request::post("/x").body(Body::from(body)).unwrap(), &()).await
    }

    fn code(e: &ApiError) -> &'static str {
        e.status_and_code().1
    }

    #[tokio::test]
    async fn bodies_are_refused_in_the_api_error_shape() {
        let JsonBody(o) = extract::<JsonBody<Owner>>(r#"{"owner":"a","x":1}"#)
            .await
            .unwrap();
        assert_eq!(o.owner, "a", "unknown members are ignored");
        for (body, want) in [
            ("", "invalid_json"),
            ("{\"owner\": ", "invalid_json"),
            ("[\"a\"]", "invalid_request"),
            ("{}", "invalid_request"),
            ("{\"owner\": 5}", "invalid_request"),
        ] {
            let e = extract::<JsonBody<Owner>>(body).await.unwrap_err();
            assert_eq!(code(&e), want, "{body:?}: {e}");
        }
    }

    #[tokio::test]
    async fn an_optional_body_may_be_empty() {
        let none = extract::<Option<JsonBody<Owner>>>(" \n").await.unwrap();
        assert!(none.is_none());
        let e = extract::<Option<JsonBody<Owner>>>("{nope")
            .await
            .unwrap_err();
        assert_eq!(code(&e), "invalid_json");
        let kept = extract::<JsonBodyBytes<Value>>("{ }").await.unwrap();
        assert_eq!(&kept.bytes[..], b"{ }");
    }

    #[tokio::test]
    async fn over_the_route_limit_is_413() {
        let app = axum::Router::new()
            .route("/x", axum::routing::post(|_: JsonBody<Value>| async {}))
            .layer(axum::extract::DefaultBodyLimit::max(16));
        let req = Request::post("/x")
            .body(Body::from(vec![b' '; 64]))
            .unwrap();
        let res = tower::ServiceExt::oneshot(app, req).await.unwrap();
        assert_eq!(res.status(), axum::http::StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn queries_are_refused_in_the_api_error_shape() {
        #[derive(Debug, Deserialize)]
        struct Q {
            wait: Option<f64>,
        }
        let parts = |uri: &str| Request::get(uri).body(()).unwrap().into_parts().0;
        let Query(q) = Query::<Q>::from_request_parts(&mut parts("/c?wait=2&other=1"), &())
            .await
            .unwrap();
        assert_eq!(q.wait, Some(2.0));
        let e = Query::<Q>::from_request_parts(&mut parts("/c?wait=soon"), &())
            .await
            .unwrap_err();
        assert_eq!(code(&e), "invalid_request");
        assert!(e.to_string().starts_with("invalid query: "), "{e}");
    }
}
