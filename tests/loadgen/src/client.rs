//! A timed HTTP/1.1 client over one keep-alive connection pool, with signed
//! (Intent Bus strict mode) and plain requests.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode, header};
use hyper_util::client::legacy::Client as Pool;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;

use crate::cli::Origin;
use crate::sign;

/// An HTTP client bound to one origin and, for signed calls, one API key.
///
/// Each load task owns one, and issues one request at a time, so each task
/// holds exactly one keep-alive connection.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    pool: Pool<HttpConnector, Full<Bytes>>,
    origin: Origin,
    api_key: Option<Arc<str>>,
    timeout: Duration,
}

/// A response read to the end.
#[derive(Debug)]
pub(crate) struct Reply {
    /// Response status.
    pub(crate) status: StatusCode,
    /// The whole response body.
    pub(crate) body: Bytes,
    /// `Retry-After` in (integer) seconds, if the server sent one.
    pub(crate) retry_after: Option<Duration>,
    /// When the request was handed to the connection (after signing).
    pub(crate) started: Instant,
    /// From `started` until the last body byte arrived.
    pub(crate) latency: Duration,
}

impl Reply {
    /// The body as text for error reports, cut to 200 bytes.
    pub(crate) fn snippet(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let mut end = text.len().min(200);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text[..end].to_owned()
    }
}

/// An open response whose body is read as it arrives.
#[derive(Debug)]
pub(crate) struct EventStream {
    /// Response status.
    pub(crate) status: StatusCode,
    /// Whether `Content-Type` is `text/event-stream`.
    pub(crate) event_stream: bool,
    /// The body, still streaming.
    pub(crate) body: Incoming,
    /// From sending the request until the response head arrived.
    pub(crate) latency: Duration,
}

/// Why a request produced no response.
#[derive(Debug)]
pub(crate) enum CallError {
    /// The request could not be built (e.g. a key that is not a valid header value).
    Build(hyper::http::Error),
    /// Connecting, writing or reading the head failed.
    Transport(hyper_util::client::legacy::Error),
    /// Reading the body failed.
    Body(hyper::Error),
    /// No complete response within the per-request timeout.
    Timeout,
}

impl CallError {
    /// Short label used as the error-count key.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Build(_) => "build",
            Self::Transport(_) => "transport",
            Self::Body(_) => "body",
            Self::Timeout => "timeout",
        }
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Build(err) => write!(f, "building request: {err}"),
            // The legacy client's Display is terse; the source chain says
            // why (e.g. "Connection refused").
            Self::Transport(err) => {
                write!(f, "{err}")?;
                let mut source = std::error::Error::source(err);
                while let Some(cause) = source {
                    write!(f, ": {cause}")?;
                    source = cause.source();
                }
                Ok(())
            }
            Self::Body(err) => write!(f, "reading body: {err}"),
            Self::Timeout => f.write_str("request timed out"),
        }
    }
}

impl std::error::Error for CallError {}

impl Client {
    /// A client for `origin`; `api_key` is required for [`Client::signed`].
    pub(crate) fn new(origin: &Origin, api_key: Option<&str>, timeout: Duration) -> Self {
        Self::bound(origin, api_key, timeout, None)
    }

    /// [`Client::new`] whose connections leave from `source` (its sockets
    /// are bound to it, port 0, before they connect), or from the kernel's
    /// choice when `None`.
    pub(crate) fn bound(
        origin: &Origin,
        api_key: Option<&str>,
        timeout: Duration,
        source: Option<IpAddr>,
    ) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_local_address(source);
        let pool = Pool::builder(TokioExecutor::new()).build(connector);
        Self {
            pool,
            origin: origin.clone(),
            api_key: api_key.map(Arc::from),
            timeout,
        }
    }

    /// Sends a request signed exactly like the SDKs: the request target is
    /// the canonical path (sorted, `quote`-encoded query), and the signature
    /// covers `body` as sent. A non-empty body is sent as `application/json`.
    pub(crate) async fn signed(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Reply, CallError> {
        self.signed_as(method, path, query, body, None).await
    }

    /// [`Client::signed`] with an `X-Worker-ID` header (not part of the
    /// signature), as the SDK's worker runtime sends on claims.
    pub(crate) async fn signed_with(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Bytes,
        worker_id: &str,
    ) -> Result<Reply, CallError> {
        self.signed_as(method, path, query, body, Some(worker_id))
            .await
    }

    async fn signed_as(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Bytes,
        worker_id: Option<&str>,
    ) -> Result<Reply, CallError> {
        let target = sign::canonical_path(path, query);
        let key = self.api_key.as_deref().unwrap_or_default();
        let auth = sign::sign_now(key, method.as_str(), &target, &body);
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("{}{target}", self.origin.as_str()))
            .header("x-api-key", key)
            .header("x-timestamp", auth.timestamp)
            .header("x-nonce", auth.nonce)
            .header("x-signature", auth.signature);
        if let Some(worker_id) = worker_id {
            builder = builder.header("x-worker-id", worker_id);
        }
        if !body.is_empty() {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
        }
        let request = builder.body(Full::new(body)).map_err(CallError::Build)?;
        self.send(request).await
    }

    /// `POST`s a JSON `body` with `Authorization: Bearer <token>` (the
    /// neuron frames).
    pub(crate) async fn post_bearer(
        &self,
        path: &str,
        token: &str,
        body: Bytes,
    ) -> Result<Reply, CallError> {
        let request = Request::post(format!("{}{path}", self.origin.as_str()))
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(CallError::Build)?;
        self.send(request).await
    }

    /// Opens a server-sent event stream: `GET` with the bearer token and
    /// `Accept: text/event-stream`, answered once the response head arrives
    /// (within the per-request timeout); the body is left to be read as it
    /// comes. Dropping the stream closes its connection.
    pub(crate) async fn open_stream(
        &self,
        path_and_query: &str,
        token: &str,
    ) -> Result<EventStream, CallError> {
        let request = Request::get(format!("{}{path_and_query}", self.origin.as_str()))
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::ACCEPT, "text/event-stream")
            .header(header::CACHE_CONTROL, "no-cache")
            .body(Full::new(Bytes::new()))
            .map_err(CallError::Build)?;
        let started = Instant::now();
        let response = tokio::time::timeout(self.timeout, self.pool.request(request))
            .await
            .map_err(|_| CallError::Timeout)?
            .map_err(CallError::Transport)?;
        let (parts, body) = response.into_parts();
        let event_stream = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
        Ok(EventStream {
            status: parts.status,
            event_stream,
            body,
            latency: started.elapsed(),
        })
    }

    /// Reads what is left of a failed stream's body (bounded by the
    /// per-request timeout) for an error report, cut like [`Reply::snippet`].
    pub(crate) async fn stream_snippet(&self, stream: EventStream) -> String {
        let read = tokio::time::timeout(self.timeout, stream.body.collect()).await;
        let body = match read {
            Ok(Ok(collected)) => collected.to_bytes(),
            _ => Bytes::new(),
        };
        Reply {
            status: stream.status,
            body,
            retry_after: None,
            started: Instant::now(),
            latency: Duration::ZERO,
        }
        .snippet()
    }

    /// Sends an unauthenticated `GET` of `path_and_query`.
    pub(crate) async fn get(&self, path_and_query: &str) -> Result<Reply, CallError> {
        let request = Request::get(format!("{}{path_and_query}", self.origin.as_str()))
            .body(Full::new(Bytes::new()))
            .map_err(CallError::Build)?;
        self.send(request).await
    }

    async fn send(&self, request: Request<Full<Bytes>>) -> Result<Reply, CallError> {
        let started = Instant::now();
        let exchange = async {
            let response = self
                .pool
                .request(request)
                .await
                .map_err(CallError::Transport)?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await.map_err(CallError::Body)?.to_bytes();
            Ok::<_, CallError>((parts, body))
        };
        let (parts, body) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| CallError::Timeout)??;
        let latency = started.elapsed();
        let retry_after = parts
            .headers
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        Ok(Reply {
            status: parts.status,
            body,
            retry_after,
            started,
            latency,
        })
    }
}
