//! Prometheus metrics: request counters and latency histograms by route and
//! status, lease expiries, and store gauges read at scrape time. Rendered in
//! the Prometheus text exposition format by hand (a handful of series do not
//! need a metrics framework).

use std::collections::HashMap;
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

/// Everything recorded for one route template.
#[derive(Debug, Default)]
struct RouteStats {
    /// (method, status) → count; a handful of entries, searched linearly.
    requests: Vec<(String, u16, u64)>,
    /// Latency histogram: per-bucket (non-cumulative) counts.
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
    /// route template → stats. Looked up by `&str`, so the hot path allocates
    /// only the first time a route is seen.
    routes: Mutex<HashMap<String, RouteStats>>,
    leases_expired: AtomicU64,
}

impl Metrics {
    /// Counts leases voided by the sweeper.
    pub(crate) fn leases_expired(&self, n: u64) {
        self.inner.leases_expired.fetch_add(n, Ordering::Relaxed);
    }

    /// Requests served and the sum of their latencies, seconds.
    pub(crate) fn totals(&self) -> (u64, f64) {
        let Ok(routes) = self.inner.routes.lock() else {
            return (0, 0.0);
        };
        routes
            .values()
            .fold((0, 0.0), |(n, s), r| (n + r.total, s + r.sum))
    }

    fn observe(&self, method: &str, route: &str, status: u16, secs: f64) {
        let Ok(mut routes) = self.inner.routes.lock() else {
            return;
        };
        let stats = match routes.get_mut(route) {
            Some(st) => st,
            None => routes.entry(route.to_owned()).or_default(),
        };
        match stats
            .requests
            .iter_mut()
            .find(|(m, s, _)| m == method && *s == status)
        {
            Some((_, _, n)) => *n += 1,
            None => stats.requests.push((method.to_owned(), status, 1)),
        }
        if let Some(i) = BUCKETS.iter().position(|le| secs <= *le) {
            stats.counts[i] += 1;
        }
        stats.sum += secs;
        stats.total += 1;
    }

    /// Renders every series; `gauges` are (name, help, value) read at scrape time.
    pub(crate) fn render(&self, gauges: &[(&str, &str, f64)], decisions: &[(&str, u64)]) -> String {
        let mut out = String::new();
        let routes = self.inner.routes.lock().ok();
        // Sorted output keeps scrapes diffable.
        let mut sorted: Vec<(&String, &RouteStats)> =
            routes.iter().flat_map(|r| r.iter()).collect();
        sorted.sort_by(|a, b| a.0.cmp(b.0));
        out.push_str("# HELP agw_http_requests_total HTTP requests by method, route and status.\n");
        out.push_str("# TYPE agw_http_requests_total counter\n");
        for (route, st) in &sorted {
            let route = escape(route);
            let mut reqs: Vec<_> = st.requests.iter().collect();
            reqs.sort();
            for (m, status, n) in reqs {
                let _ = writeln!(
                    out,
                    "agw_http_requests_total{{method=\"{m}\",route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
        }
        out.push_str("# HELP agw_http_request_duration_seconds HTTP request latency by route.\n");
        out.push_str("# TYPE agw_http_request_duration_seconds histogram\n");
        for (route, st) in &sorted {
            let route = escape(route);
            let mut cumulative = 0;
            for (i, le) in BUCKETS.iter().enumerate() {
                cumulative += st.counts[i];
                let _ = writeln!(
                    out,
                    "agw_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{le}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "agw_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                st.total
            );
            let _ = writeln!(
                out,
                "agw_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                st.sum
            );
            let _ = writeln!(
                out,
                "agw_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                st.total
            );
        }
        drop(routes);
        out.push_str("# HELP agw_leases_expired_total Leases voided by the expiry sweep.\n");
        out.push_str("# TYPE agw_leases_expired_total counter\n");
        let _ = writeln!(
            out,
            "agw_leases_expired_total {}",
            self.inner.leases_expired.load(Ordering::Relaxed)
        );
        out.push_str("# HELP agw_policy_decisions_total Governance decisions by outcome.\n");
        out.push_str("# TYPE agw_policy_decisions_total counter\n");
        for (decision, n) in decisions {
            let _ = writeln!(
                out,
                "agw_policy_decisions_total{{decision=\"{decision}\"}} {n}"
            );
        }
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
        let text = m.render(&[("agw_jobs_live", "Live jobs.", 7.0)], &[("BLOCK", 2)]);
        assert!(
            text.contains("agw_policy_decisions_total{decision=\"BLOCK\"} 2"),
            "{text}"
        );
        assert_eq!(m.totals().0, 2);
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
