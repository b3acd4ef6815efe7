//! Prometheus metrics: request counters and latency histograms by route and
//! status, lease expiries, and store gauges read at scrape time. Rendered in
//! the Prometheus text exposition format by hand (a handful of series do not
//! need a metrics framework).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

/// Upper bounds of the latency histogram, seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Debug, Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    total: u64,
}

/// Shared metric state (cheap to clone).
#[derive(Debug, Clone, Default)]
pub(crate) struct Metrics {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// (method, route, status) → count.
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    /// route → latency histogram.
    latency: Mutex<BTreeMap<String, Histogram>>,
    leases_expired: AtomicU64,
}

impl Metrics {
    /// Counts leases voided by the sweeper.
    pub(crate) fn leases_expired(&self, n: u64) {
        self.inner.leases_expired.fetch_add(n, Ordering::Relaxed);
    }

    fn observe(&self, method: &str, route: &str, status: u16, secs: f64) {
        if let Ok(mut r) = self.inner.requests.lock() {
            *r.entry((method.to_owned(), route.to_owned(), status))
                .or_default() += 1;
        }
        if let Ok(mut l) = self.inner.latency.lock() {
            let h = l.entry(route.to_owned()).or_default();
            for (i, le) in BUCKETS.iter().enumerate() {
                if secs <= *le {
                    h.counts[i] += 1;
                }
            }
            h.sum += secs;
            h.total += 1;
        }
    }

    /// Renders every series; `gauges` are (name, help, value) read at scrape time.
    pub(crate) fn render(&self, gauges: &[(&str, &str, f64)]) -> String {
        let mut out = String::new();
        out.push_str("# HELP agw_http_requests_total HTTP requests by method, route and status.\n");
        out.push_str("# TYPE agw_http_requests_total counter\n");
        if let Ok(r) = self.inner.requests.lock() {
            for ((m, route, status), n) in r.iter() {
                let _ = writeln!(
                    out,
                    "agw_http_requests_total{{method=\"{m}\",route=\"{}\",status=\"{status}\"}} {n}",
                    escape(route)
                );
            }
        }
        out.push_str("# HELP agw_http_request_duration_seconds HTTP request latency by route.\n");
        out.push_str("# TYPE agw_http_request_duration_seconds histogram\n");
        if let Ok(l) = self.inner.latency.lock() {
            for (route, h) in l.iter() {
                let route = escape(route);
                for (i, le) in BUCKETS.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "agw_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{le}\"}} {}",
                        h.counts[i]
                    );
                }
                let _ = writeln!(
                    out,
                    "agw_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                    h.total
                );
                let _ = writeln!(
                    out,
                    "agw_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                    h.sum
                );
                let _ = writeln!(
                    out,
                    "agw_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                    h.total
                );
            }
        }
        out.push_str("# HELP agw_leases_expired_total Leases voided by the expiry sweep.\n");
        out.push_str("# TYPE agw_leases_expired_total counter\n");
        let _ = writeln!(
            out,
            "agw_leases_expired_total {}",
            self.inner.leases_expired.load(Ordering::Relaxed)
        );
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Middleware: counts and times every request by its route template (never
/// the raw path, which would explode label cardinality).
pub(crate) async fn track(State(m): State<Metrics>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let start = Instant::now();
    let res = next.run(req).await;
    m.observe(
        &method,
        &route,
        res.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let m = Metrics::default();
        m.observe("POST", "/claim", 204, 0.002);
        m.observe("POST", "/claim", 204, 0.2);
        m.leases_expired(3);
        let text = m.render(&[("agw_jobs_live", "Live jobs.", 7.0)]);
        assert!(
            text.contains(
                "agw_http_requests_total{method=\"POST\",route=\"/claim\",status=\"204\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "agw_http_request_duration_seconds_bucket{route=\"/claim\",le=\"0.0025\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "agw_http_request_duration_seconds_bucket{route=\"/claim\",le=\"0.25\"} 2"
            ),
            "{text}"
        );
        assert!(text.contains("agw_leases_expired_total 3"));
        assert!(text.contains("agw_jobs_live 7"));
    }
}
