//! The export pipeline in front of the SDK's batch processors: an admission
//! bound that counts what a full queue drops, exporters that count what a
//! failed export loses, and the OTLP/HTTP client (hyper, no TLS).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry::Context;
use opentelemetry::InstrumentationScope;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{LogBatch, LogExporter, LogProcessor, SdkLogRecord};
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use tokio::runtime::Handle;

/// Collector responses larger than this are refused (they carry at most a
/// partial-success message).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// How many records of one signal are queued or being exported, bounded so
/// that the SDK's own queue (sized the same) never fills; drops are counted.
#[derive(Debug)]
pub(super) struct Queue {
    name: &'static str,
    pending: AtomicUsize,
    capacity: usize,
    dropped: &'static AtomicU64,
    /// Whether the last export failed (so a dead collector warns once).
    failing: AtomicBool,
}

impl Queue {
    pub(super) fn new(
        name: &'static str,
        capacity: usize,
        dropped: &'static AtomicU64,
    ) -> Arc<Self> {
        Arc::new(Self {
            name,
            pending: AtomicUsize::new(0),
            capacity,
            dropped,
            failing: AtomicBool::new(false),
        })
    }

    /// Takes a slot, or counts a drop when the queue is full.
    fn admit(&self) -> bool {
        if self.pending.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// `n` records left the queue for an export (or were lost on the way).
    fn release(&self, n: usize) {
        // Saturating: the SDK may hand an exporter records it never admitted
        // (none today), which must not wrap the counter.
        let _ = self
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| {
                Some(p.saturating_sub(n))
            });
    }

    fn exported(&self, n: usize, result: &OTelSdkResult) {
        match result {
            Ok(()) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(signal = self.name, "OTLP export recovered");
                }
            }
            Err(e) => {
                self.dropped.fetch_add(n as u64, Ordering::Relaxed);
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(signal = self.name, error = %e, dropped = n,
                        "OTLP export failed; dropping telemetry until the collector answers (agw_telemetry_dropped_total)");
                }
            }
        }
    }
}

// === spans ===

/// A span processor that admits spans into `inner` only while its queue has room.
#[derive(Debug)]
pub(super) struct BoundedSpans<P> {
    pub(super) inner: P,
    pub(super) queue: Arc<Queue>,
}

impl<P: SpanProcessor> SpanProcessor for BoundedSpans<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.queue.admit() {
            self.inner.on_end(span);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// A span exporter that releases queue slots and counts failed batches.
#[derive(Debug)]
pub(super) struct CountedSpans<E> {
    pub(super) inner: E,
    pub(super) queue: Arc<Queue>,
}

impl<E: SpanExporter> SpanExporter for CountedSpans<E> {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        let n = batch.len();
        self.queue.release(n);
        let export = self.inner.export(batch);
        async move {
            let result = export.await;
            self.queue.exported(n, &result);
            result
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

// === logs ===

/// A log processor that admits records into `inner` only while its queue has room.
#[derive(Debug)]
pub(super) struct BoundedLogs<P> {
    pub(super) inner: P,
    pub(super) queue: Arc<Queue>,
}

impl<P: LogProcessor> LogProcessor for BoundedLogs<P> {
    fn emit(&self, data: &mut SdkLogRecord, scope: &InstrumentationScope) {
        if self.queue.admit() {
            self.inner.emit(data, scope);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// A log exporter that releases queue slots and counts failed batches.
#[derive(Debug)]
pub(super) struct CountedLogs<E> {
    pub(super) inner: E,
    pub(super) queue: Arc<Queue>,
}

impl<E: LogExporter> LogExporter for CountedLogs<E> {
    fn export(&self, batch: LogBatch<'_>) -> impl Future<Output = OTelSdkResult> + Send {
        let n = batch.iter().count();
        self.queue.release(n);
        let export = self.inner.export(batch);
        async move {
            let result = export.await;
            self.queue.exported(n, &result);
            result
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

// === OTLP/HTTP client ===

/// The OTLP/HTTP transport: plain-HTTP hyper on the gateway's runtime. The
/// SDK's batch processors export from their own threads, so each request is
/// spawned onto `runtime` and awaited from there; `timeout` bounds the whole
/// exchange, body included.
#[derive(Debug, Clone)]
pub(super) struct OtlpHttpClient {
    client: Client<HttpConnector, Full<Bytes>>,
    runtime: Handle,
    timeout: Duration,
}

impl OtlpHttpClient {
    pub(super) fn new(runtime: Handle, timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        connector.set_nodelay(true);
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            runtime,
            timeout,
        }
    }

    async fn send(
        client: Client<HttpConnector, Full<Bytes>>,
        request: Request<Bytes>,
    ) -> Result<Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let response = client
            .request(Request::from_parts(parts, Full::new(body)))
            .await?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_RESPONSE_BYTES)
            .collect()
            .await?
            .to_bytes();
        Ok(Response::from_parts(parts, body))
    }
}

impl HttpClient for OtlpHttpClient {
    // The `#[async_trait]` signature, written out.
    fn send_bytes<'a, 'b>(
        &'a self,
        request: Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<Bytes>, HttpError>> + Send + 'b>>
    where
        'a: 'b,
        Self: 'b,
    {
        let (client, timeout) = (self.client.clone(), self.timeout);
        let task = self
            .runtime
            .spawn(async move { tokio::time::timeout(timeout, Self::send(client, request)).await });
        Box::pin(async move {
            match task.await {
                Ok(Ok(result)) => result,
                Ok(Err(_)) => Err(format!("no answer within {timeout:?}").into()),
                Err(e) => Err(Box::new(e) as HttpError),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static DROPPED: AtomicU64 = AtomicU64::new(0);

    #[test]
    fn a_full_queue_drops_and_counts_until_an_export_frees_it() {
        let q = Queue::new("traces", 2, &DROPPED);
        assert!(q.admit() && q.admit());
        assert!(!q.admit());
        assert_eq!(DROPPED.load(Ordering::Relaxed), 1);
        q.release(2);
        assert!(q.admit());
        q.exported(
            3,
            &Err(opentelemetry_sdk::error::OTelSdkError::Timeout(
                Duration::from_secs(1),
            )),
        );
        assert_eq!(DROPPED.load(Ordering::Relaxed), 4);
        q.release(5);
        assert_eq!(q.pending.load(Ordering::Relaxed), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn http_client_fails_fast_against_a_closed_port() {
        // Bind then drop: the port is (almost certainly) closed afterwards.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("port");
        let client = OtlpHttpClient::new(Handle::current(), Duration::from_secs(5));
        let req = Request::post(format!("http://127.0.0.1:{port}/v1/traces"))
            .body(Bytes::from_static(b""))
            .expect("request");
        // Awaited from another thread, as the SDK's batch processor does.
        let result = std::thread::spawn(move || bare_block_on(client.send_bytes(req)))
            .join()
            .expect("thread");
        assert!(result.is_err());
    }

    /// Polls `f` on a runtime without timers or I/O: a future that needs the
    /// caller's drivers panics here.
    fn bare_block_on<F: Future>(f: F) -> F::Output {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(f)
    }
}
