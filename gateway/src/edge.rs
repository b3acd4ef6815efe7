//! The HTTP edge: the accept loop and each connection, run here rather than
//! by `axum::serve` so that a client cannot hold the gateway open. It bounds
//! the open connections (beyond: `503` + `Retry-After`, then closed), the
//! time to send a request head (hyper's header read timeout: the connection
//! is closed) and a body (`408`, closed), and closes keep-alive connections
//! idle for longer than the idle timeout. A request counts as in flight until
//! its response body ends, so long polls, SSE streams and run streams are
//! never taken for idle. Request bodies are read here, whole and bounded
//! (routes apply their own smaller caps), so no handler ever waits on a slow
//! client; the client address reaches handlers as `ConnectInfo`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// The largest request body the edge reads (the neuron frame cap, the
/// largest of any route's).
pub(crate) const MAX_BODY_BYTES: usize = agw_protocols::neuron::MAX_FRAME_BYTES;

/// What the edge bounds (`[limits]`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct EdgeSettings {
    /// A request head must arrive within this.
    pub(crate) header_read_timeout: Duration,
    /// A request body must arrive within this once its head is in.
    pub(crate) body_read_timeout: Duration,
    /// A connection with nothing in flight is closed after this.
    pub(crate) idle_timeout: Duration,
    /// Open connections at most.
    pub(crate) max_connections: usize,
}

impl EdgeSettings {
    /// The edge settings of `limits`.
    pub(crate) fn from_limits(l: &agw_config::Limits) -> Self {
        Self {
            header_read_timeout: Duration::from_secs(l.header_read_timeout_secs),
            body_read_timeout: Duration::from_secs(l.body_read_timeout_secs),
            idle_timeout: Duration::from_secs(l.idle_timeout_secs),
            max_connections: l.max_connections,
        }
    }
}

/// Serves `app` on `listener` until `shutdown` fires, then waits for every
/// connection to finish (each is told to close once its requests are done;
/// the caller bounds the wait).
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    settings: EdgeSettings,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors, mostly: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                let (app, shutdown) = (app.clone(), shutdown.clone());
                tokio::spawn(async move {
                    connection(tcp, peer, app, settings, shutdown).await;
                    drop(slot);
                });
            }
            Err(_) => {
                tokio::spawn(refuse(tcp));
            }
        }
    }
    // Every slot back means every connection ended.
    let all = u32::try_from(settings.max_connections).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
}

/// The answer to a connection over the cap: a `503` the client can read and
/// retry on, then the connection is closed.
async fn refuse(mut tcp: TcpStream) {
    const BODY: &str =
        r#"{"error":{"code":"unavailable","message":"too many connections; retry shortly"}}"#;
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let write = async {
        tcp.write_all(response.as_bytes()).await?;
        tcp.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
}

/// Requests in flight on one connection and when the last one ended.
#[derive(Debug)]
struct Activity {
    base: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds since `base` at the last request start or end.
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            base: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
        }
    }

    fn mark(&self) {
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.mark();
        InFlight(self.clone())
    }

    /// When the connection becomes idle-closable if nothing happens first.
    fn idle_deadline(&self, idle: Duration) -> Instant {
        let last = self.base + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        let from = if self.in_flight.load(Ordering::Relaxed) > 0 {
            Instant::now()
        } else {
            last
        };
        from + idle
    }

    fn idle_for(&self, idle: Duration) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0 && Instant::now() >= self.idle_deadline(idle)
    }
}

/// One request in flight, until its response body is done with.
#[derive(Debug)]
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.mark();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that holds its request's [`InFlight`] until it ends.
struct Tracked {
    inner: Body,
    _in_flight: InFlight,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Why a request body could not be read.
enum BodyFailure {
    TimedOut,
    TooLarge,
    Broken,
}

/// Reads a whole request body within the timeout, at most [`MAX_BODY_BYTES`].
async fn read_body(body: Incoming, within: Duration) -> Result<Bytes, BodyFailure> {
    if hyper::body::Body::is_end_stream(&body) {
        return Ok(Bytes::new());
    }
    match tokio::time::timeout(within, Limited::new(body, MAX_BODY_BYTES).collect()).await {
        Err(_) => Err(BodyFailure::TimedOut),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(BodyFailure::TooLarge),
        Ok(Err(_)) => Err(BodyFailure::Broken),
    }
}

/// A JSON error the edge answers itself, closing the connection after it.
fn edge_error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
    let mut res = Response::new(Body::from(body));
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    res
}

/// Serves one connection until the client closes it, it idles out, or shutdown.
async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    app: Router,
    settings: EdgeSettings,
    shutdown: CancellationToken,
) {
    let activity = Arc::new(Activity::new());
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |req: Request<Incoming>| {
            let (app, activity) = (app.clone(), activity.clone());
            async move {
                let in_flight = activity.begin();
                let (mut parts, body) = req.into_parts();
                let body = match read_body(body, settings.body_read_timeout).await {
                    Ok(bytes) => bytes,
                    Err(BodyFailure::TimedOut) => {
                        return Ok::<_, Infallible>(edge_error(
                            StatusCode::REQUEST_TIMEOUT,
                            "request_timeout",
                            "the request body did not arrive in time",
                        ));
                    }
                    Err(BodyFailure::TooLarge) => {
                        return Ok(edge_error(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "payload_too_large",
                            &format!("request body over {MAX_BODY_BYTES} bytes"),
                        ));
                    }
                    Err(BodyFailure::Broken) => {
                        return Ok(edge_error(
                            StatusCode::BAD_REQUEST,
                            "invalid_request",
                            "the request body could not be read",
                        ));
                    }
                };
                parts.extensions.insert(ConnectInfo(peer));
                let req = Request::from_parts(parts, Body::from(body));
                let res = match app.oneshot(req).await {
                    Ok(res) => res,
                    Err(never) => match never {},
                };
                Ok(res.map(|inner| {
                    Body::new(Tracked {
                        inner,
                        _in_flight: in_flight,
                    })
                }))
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout);
    let mut conn = pin!(builder.serve_connection(TokioIo::new(tcp), service));
    let mut closing = false;
    loop {
        let idle_at = activity.idle_deadline(settings.idle_timeout);
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    tracing::debug!(error = %e, %peer, "connection ended with an error");
                }
                return;
            }
            () = shutdown.cancelled(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            () = tokio::time::sleep_until(idle_at), if !closing => {
                if activity.idle_for(settings.idle_timeout) {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::{get, post};
    use tokio::io::AsyncReadExt;

    /// A gateway edge over a small app on a free port: `/ok` answers at once,
    /// `/slow` after 1.5 s (longer than the idle timeout), `/echo` returns
    /// the body it was given and the client address it saw.
    async fn start(max_connections: usize) -> (SocketAddr, CancellationToken) {
        let app = Router::new()
            .route("/ok", get(|| async { "ok" }))
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                    "slow"
                }),
            )
            .route(
                "/echo",
                post(
                    |ConnectInfo(peer): ConnectInfo<SocketAddr>, body: Bytes| async move {
                        format!("{} {}", peer.ip(), String::from_utf8_lossy(&body))
                    },
                ),
            );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let settings = EdgeSettings {
            header_read_timeout: Duration::from_secs(1),
            body_read_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
            max_connections,
        };
        tokio::spawn(serve(listener, app, settings, shutdown.clone()));
        (addr, shutdown)
    }

    /// Reads until the peer closes (bounded by `within`); the bytes read.
    async fn read_to_close(tcp: &mut TcpStream, within: Duration) -> String {
        let mut out = Vec::new();
        tokio::time::timeout(within, tcp.read_to_end(&mut out))
            .await
            .expect("the connection should have been closed")
            .expect("read");
        String::from_utf8_lossy(&out).into_owned()
    }

    async fn get_ok(addr: SocketAddr) -> String {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"GET /ok HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        read_to_close(&mut tcp, Duration::from_secs(5)).await
    }

    #[tokio::test]
    async fn unfinished_heads_are_closed_while_others_are_served() {
        let (addr, _stop) = start(64).await;
        let mut slow = Vec::new();
        for _ in 0..20 {
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            tcp.write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-le")
                .await
                .unwrap();
            slow.push(tcp);
        }
        // Normal requests keep being served meanwhile.
        assert!(get_ok(addr).await.starts_with("HTTP/1.1 200"));
        for mut tcp in slow {
            // Closed by the 1 s header timeout, well before the 5 s bound.
            let got = read_to_close(&mut tcp, Duration::from_secs(5)).await;
            assert!(!got.contains(" 200 "), "an unfinished head got {got:?}");
        }
    }

    #[tokio::test]
    async fn unfinished_bodies_get_408_and_are_closed() {
        let (addr, _stop) = start(64).await;
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n0123456789")
            .await
            .unwrap();
        let got = read_to_close(&mut tcp, Duration::from_secs(5)).await;
        assert!(got.starts_with("HTTP/1.1 408"), "{got}");
        assert!(got.contains("request_timeout"), "{got}");
        assert!(get_ok(addr).await.starts_with("HTTP/1.1 200"));
    }

    #[tokio::test]
    async fn whole_bodies_and_the_client_address_reach_handlers() {
        let (addr, _stop) = start(64).await;
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(
            b"POST /echo HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 5\r\n\r\nhello",
        )
        .await
        .unwrap();
        let got = read_to_close(&mut tcp, Duration::from_secs(5)).await;
        assert!(got.ends_with("127.0.0.1 hello"), "{got}");
    }

    #[tokio::test]
    async fn idle_keep_alive_connections_close_but_slow_answers_do_not() {
        let (addr, _stop) = start(64).await;
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        // A request slower than the idle timeout is answered in full...
        tcp.write_all(b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let head = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(
            head.starts_with("HTTP/1.1 200") && head.ends_with("slow"),
            "{head}"
        );
        // ...and the kept-alive connection, idle after it, is then closed.
        let rest = read_to_close(&mut tcp, Duration::from_secs(5)).await;
        assert_eq!(rest, "");
    }

    #[tokio::test]
    async fn connections_over_the_cap_get_503_with_retry_after() {
        let (addr, _stop) = start(1).await;
        let mut held = TcpStream::connect(addr).await.unwrap();
        held.write_all(b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        // Give the accept loop the first connection before the second.
        let mut buf = [0u8; 0];
        let _ = held.peek(&mut buf).await;
        let mut extra = TcpStream::connect(addr).await.unwrap();
        let got = read_to_close(&mut extra, Duration::from_secs(5)).await;
        assert!(got.starts_with("HTTP/1.1 503"), "{got}");
        assert!(got.to_ascii_lowercase().contains("retry-after: 1"), "{got}");
    }
}
