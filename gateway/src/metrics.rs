//! Prometheus metrics, rendered in the text exposition format (0.0.4) by hand:
//! HTTP requests by route, the job lifecycle by protocol / topic / tenant /
//! outcome (fed by the protocol handlers through [`Observer`] and by the
//! sweeper), policy decisions, telemetry drops, and gauges read at scrape
//! time (queue depth and ages by topic from the store, SSE sessions).
//!
//! Why no metrics crate: `prometheus-client` keys a labelled family by an
//! owned label struct, so every observation of a `(topic, tenant)` series
//! would build `String`s; the interning below (needed anyway to cap label
//! cardinality) makes a warm observation a hash lookup under a read lock plus
//! one atomic add, and the encoder is a few dozen lines.
//!
//! Topic and tenant label values are capped: the first [`MAX_TOPICS`] /
//! [`MAX_TENANTS`] distinct values keep their name, later ones are counted
//! under `other`, so a client cannot grow the series count without bound.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use chrono::{DateTime, Utc};

use agw_protocols::observe::{Observer, Settlement};
use agw_storage::{ExpiredLease, Job, JobState, JobStats, Protocol};

/// Distinct topic label values before the rest become `other`.
pub(crate) const MAX_TOPICS: usize = 100;
/// Distinct tenant label values before the rest become `other`.
pub(crate) const MAX_TENANTS: usize = 100;
/// The label value of everything past a cap.
pub(crate) const OTHER: &str = "other";

/// Upper bounds of the HTTP latency histogram, seconds.
const HTTP_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Upper bounds of the job latency histograms (claim, end to end), seconds:
/// from a hot queue's milliseconds to an hour-long backlog.
const JOB_BUCKETS: [f64; 16] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

/// Telemetry lost before export, by signal: spans and log records that met a
/// full queue or a failed export, and execution events a lagging subscription
/// skipped. Process-wide, as the exporters are.
#[derive(Debug)]
pub(crate) struct TelemetryDropped {
    pub(crate) traces: AtomicU64,
    pub(crate) logs: AtomicU64,
}

/// The process's [`TelemetryDropped`] (`agw_telemetry_dropped_total`).
pub(crate) static TELEMETRY_DROPPED: TelemetryDropped = TelemetryDropped {
    traces: AtomicU64::new(0),
    logs: AtomicU64::new(0),
};

// === label interning ===

/// Interns label values up to a cap; id 0 is [`OTHER`].
#[derive(Debug)]
struct LabelValues {
    cap: usize,
    inner: RwLock<Interned>,
}

#[derive(Debug)]
struct Interned {
    ids: HashMap<Box<str>, u32>,
    /// id → value; `names[0]` is [`OTHER`].
    names: Vec<Box<str>>,
}

impl LabelValues {
    fn new(cap: usize) -> Self {
        Self {
            cap,
            inner: RwLock::new(Interned {
                ids: HashMap::new(),
                names: vec![OTHER.into()],
            }),
        }
    }

    /// The id of `value`; allocates only the first time a value is seen.
    fn id(&self, value: &str) -> u32 {
        if value == OTHER {
            return 0;
        }
        {
            let r = self.inner.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(id) = r.ids.get(value) {
                return *id;
            }
            if r.ids.len() >= self.cap {
                return 0;
            }
        }
        let mut w = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(id) = w.ids.get(value) {
            return *id;
        }
        if w.ids.len() >= self.cap {
            return 0;
        }
        let id = w.names.len() as u32;
        w.names.push(value.into());
        w.ids.insert(value.into(), id);
        id
    }

    /// Every value by id (for rendering).
    fn names(&self) -> Vec<Box<str>> {
        self.inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .names
            .clone()
    }
}

/// Protocol label values: the job's door, or `unknown` (an expired lease
/// whose job could not be read back).
const PROTOCOLS: [&str; 4] = ["intent_bus", "neuron", "governance", "unknown"];
const UNKNOWN_PROTOCOL: u8 = 3;

fn protocol_id(p: Protocol) -> u8 {
    match p {
        Protocol::IntentBus => 0,
        Protocol::Neuron => 1,
        Protocol::Governance => 2,
    }
}

/// Where a settled job went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Outcome {
    Fulfilled,
    Retried,
    Dead,
    Cancelled,
}

impl Outcome {
    fn of(state: JobState, how: Settlement) -> Self {
        match (how, state) {
            (Settlement::Cancelled, _) | (_, JobState::Cancelled) => Self::Cancelled,
            (_, JobState::Fulfilled) => Self::Fulfilled,
            (_, JobState::Dead) => Self::Dead,
            (_, JobState::Open | JobState::Leased) => Self::Retried,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Fulfilled => "fulfilled",
            Self::Retried => "retried",
            Self::Dead => "dead",
            Self::Cancelled => "cancelled",
        }
    }
}

// === families ===

/// Series of one metric family keyed by small `Copy` label ids. After its
/// first observation a series is found under the read lock and updated with
/// atomics; only a new series takes the write lock.
#[derive(Debug)]
struct Family<K, V> {
    map: RwLock<HashMap<K, V>>,
}

impl<K, V> Default for Family<K, V> {
    fn default() -> Self {
        Self {
            map: RwLock::new(HashMap::new()),
        }
    }
}

impl<K: Copy + Eq + Hash + Ord, V: Default> Family<K, V> {
    /// Runs `f` on the series of `key`, creating it when new.
    fn with(&self, key: K, f: impl FnOnce(&V)) {
        {
            let r = self.map.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(v) = r.get(&key) {
                f(v);
                return;
            }
        }
        f(self
            .map
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key)
            .or_default());
    }

    /// Every series read by `read`, sorted by key.
    fn snapshot<T>(&self, read: impl Fn(&V) -> T) -> Vec<(K, T)> {
        let r = self.map.read().unwrap_or_else(PoisonError::into_inner);
        let mut v: Vec<_> = r.iter().map(|(k, s)| (*k, read(s))).collect();
        v.sort_unstable_by_key(|(k, _)| *k);
        v
    }
}

/// A counter family.
type CounterVec<K> = Family<K, AtomicU64>;

impl<K: Copy + Eq + Hash + Ord> CounterVec<K> {
    fn add(&self, key: K, n: u64) {
        self.with(key, |c| {
            c.fetch_add(n, Ordering::Relaxed);
        });
    }

    fn counts(&self) -> Vec<(K, u64)> {
        self.snapshot(|c| c.load(Ordering::Relaxed))
    }
}

/// One histogram over [`JOB_BUCKETS`]; bucket counts are kept per bucket and
/// made cumulative when rendered.
#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; JOB_BUCKETS.len()],
    count: AtomicU64,
    /// The sum, as `f64` bits.
    sum: AtomicU64,
}

impl Histogram {
    fn observe(&self, secs: f64) {
        let secs = secs.max(0.0);
        if let Some(i) = JOB_BUCKETS.iter().position(|le| secs <= *le) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let _ = self
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + secs).to_bits())
            });
    }
}

/// A histogram family.
type HistogramVec<K> = Family<K, Histogram>;

/// A histogram read out: cumulative bucket counts, count, sum.
type HistogramSample = ([u64; JOB_BUCKETS.len()], u64, f64);

impl<K: Copy + Eq + Hash + Ord> HistogramVec<K> {
    fn observe(&self, key: K, secs: f64) {
        self.with(key, |h| h.observe(secs));
    }

    /// Every series as (key, (cumulative bucket counts, count, sum)), sorted by key.
    fn histograms(&self) -> Vec<(K, HistogramSample)> {
        self.snapshot(|h| {
            let mut acc = 0;
            let buckets = std::array::from_fn(|i| {
                acc += h.buckets[i].load(Ordering::Relaxed);
                acc
            });
            (
                buckets,
                h.count.load(Ordering::Relaxed),
                f64::from_bits(h.sum.load(Ordering::Relaxed)),
            )
        })
    }
}

/// Everything recorded for one route template.
#[derive(Debug, Default)]
struct RouteStats {
    /// (method, status) → count; a handful of entries, searched linearly.
    requests: Vec<(Method, u16, u64)>,
    /// Latency histogram: per-bucket (non-cumulative) counts.
    counts: [u64; HTTP_BUCKETS.len()],
    sum: f64,
    total: u64,
}

// === the registry ===

/// Shared metric state (cheap to clone).
#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    inner: Arc<Inner>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::with_caps(MAX_TOPICS, MAX_TENANTS)
    }
}

#[derive(Debug)]
struct Inner {
    /// route template → stats. Looked up by `&str`, so the hot path allocates
    /// only the first time a route is seen.
    routes: Mutex<HashMap<String, RouteStats>>,
    leases_expired: AtomicU64,
    topics: LabelValues,
    tenants: LabelValues,
    /// (protocol, topic, tenant)
    published: CounterVec<(u8, u32, u32)>,
    /// (protocol, topic)
    leased: CounterVec<(u8, u32)>,
    /// (protocol, topic, settlement, outcome)
    settled: CounterVec<(u8, u32, Settlement, Outcome)>,
    /// (protocol, topic): publish → first lease.
    claim_latency: HistogramVec<(u8, u32)>,
    /// (protocol, topic): publish → terminal state.
    end_to_end: HistogramVec<(u8, u32)>,
}

/// The neuron hub's dispatch counters at scrape time (see
/// `agw_protocols::neuron::hub::DispatchCounts`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct NeuronDispatch {
    /// Store wake-ups the hub received.
    pub(crate) wakeups: u64,
    /// Sessions those woke.
    pub(crate) sessions_woken: u64,
    /// Wake-ups passed on by a session that filled up first.
    pub(crate) passed_on: u64,
    /// Dispatcher claims that leased a job.
    pub(crate) claims_leased: u64,
    /// Dispatcher claims that found nothing.
    pub(crate) claims_empty: u64,
}

impl From<&agw_protocols::neuron::hub::DispatchCounts> for NeuronDispatch {
    fn from(c: &agw_protocols::neuron::hub::DispatchCounts) -> Self {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Self {
            wakeups: n(&c.wakeups),
            sessions_woken: n(&c.sessions_woken),
            passed_on: n(&c.passed_on),
            claims_leased: n(&c.claims_leased),
            claims_empty: n(&c.claims_empty),
        }
    }
}

/// Figures read at scrape time, handed to [`Metrics::render`].
#[derive(Debug)]
pub(crate) struct Scrape<'a> {
    /// The clock queue ages are measured against.
    pub(crate) now: DateTime<Utc>,
    /// Live jobs by topic and state; `None` when the store did not answer.
    pub(crate) queues: Option<&'a [JobStats]>,
    /// Governance decisions so far, by verdict.
    pub(crate) decisions: &'a [(&'a str, u64)],
    /// Open neuron event streams.
    pub(crate) neuron_sessions: u64,
    /// The neuron hub's dispatch counters.
    pub(crate) neuron_dispatch: NeuronDispatch,
    /// Open governance run streams.
    pub(crate) governance_streams: u64,
}

impl Metrics {
    fn with_caps(topics: usize, tenants: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                routes: Mutex::default(),
                leases_expired: AtomicU64::new(0),
                topics: LabelValues::new(topics),
                tenants: LabelValues::new(tenants),
                published: CounterVec::default(),
                leased: CounterVec::default(),
                settled: CounterVec::default(),
                claim_latency: HistogramVec::default(),
                end_to_end: HistogramVec::default(),
            }),
        }
    }

    /// Counts leases voided by the sweeper, all together.
    pub(crate) fn leases_expired(&self, n: u64) {
        self.inner.leases_expired.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts one lease voided by the sweeper; `job` is the job read back
    /// after the sweep (its protocol and age), when the sweeper read it.
    pub(crate) fn lease_expired(&self, e: &ExpiredLease, job: Option<&Job>) {
        let p = job.map_or(UNKNOWN_PROTOCOL, |j| protocol_id(j.protocol));
        let t = self.inner.topics.id(&e.topic);
        let outcome = Outcome::of(e.new_state, Settlement::Expired);
        self.inner
            .settled
            .add((p, t, Settlement::Expired, outcome), 1);
        if outcome == Outcome::Dead
            && let Some(j) = job
        {
            let end = j.completed_at.unwrap_or_else(Utc::now);
            self.inner
                .end_to_end
                .observe((p, t), secs(j.created_at, end));
        }
    }

    /// Requests served and the sum of their latencies, seconds.
    pub(crate) fn totals(&self) -> (u64, f64) {
        let routes = self
            .inner
            .routes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        routes
            .values()
            .fold((0, 0.0), |(n, s), r| (n + r.total, s + r.sum))
    }

    fn observe(&self, method: &Method, route: &str, status: u16, secs: f64) {
        let mut routes = self
            .inner
            .routes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
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
            None => stats.requests.push((method.clone(), status, 1)),
        }
        if let Some(i) = HTTP_BUCKETS.iter().position(|le| secs <= *le) {
            stats.counts[i] += 1;
        }
        stats.sum += secs;
        stats.total += 1;
    }

    /// Renders every series.
    pub(crate) fn render(&self, scrape: &Scrape<'_>) -> String {
        let mut out = Text(String::with_capacity(16 * 1024));
        self.render_http(&mut out);
        self.render_jobs(&mut out, scrape);
        out.header(
            "agw_leases_expired_total",
            "counter",
            "Leases voided by the expiry sweep.",
        );
        out.sample(
            "agw_leases_expired_total",
            &[],
            self.inner.leases_expired.load(Ordering::Relaxed),
        );
        out.header(
            "agw_policy_decisions_total",
            "counter",
            "Governance decisions by outcome.",
        );
        for (decision, n) in scrape.decisions {
            out.sample("agw_policy_decisions_total", &[("decision", decision)], *n);
        }
        out.header(
            "agw_sse_sessions",
            "gauge",
            "Open server-sent-event streams of this replica: neuron lease channels and governance run streams.",
        );
        out.sample(
            "agw_sse_sessions",
            &[("protocol", "neuron")],
            scrape.neuron_sessions,
        );
        out.sample(
            "agw_sse_sessions",
            &[("protocol", "governance")],
            scrape.governance_streams,
        );
        let d = scrape.neuron_dispatch;
        out.header(
            "agw_neuron_wakeups_total",
            "counter",
            "Store wake-ups the neuron hub routed (a job may be claimable on a topic).",
        );
        out.sample("agw_neuron_wakeups_total", &[], d.wakeups);
        out.header(
            "agw_neuron_sessions_woken_total",
            "counter",
            "Neuron dispatchers woken by the hub (store wake-ups and wake-ups passed on).",
        );
        out.sample("agw_neuron_sessions_woken_total", &[], d.sessions_woken);
        out.header(
            "agw_neuron_wakeups_passed_on_total",
            "counter",
            "Wake-ups about one job that a neuron dispatcher passed on because it filled up first.",
        );
        out.sample("agw_neuron_wakeups_passed_on_total", &[], d.passed_on);
        out.header(
            "agw_neuron_claims_total",
            "counter",
            "Claims run by neuron dispatchers, by whether they leased a job.",
        );
        out.sample(
            "agw_neuron_claims_total",
            &[("result", "leased")],
            d.claims_leased,
        );
        out.sample(
            "agw_neuron_claims_total",
            &[("result", "empty")],
            d.claims_empty,
        );
        out.header(
            "agw_telemetry_dropped_total",
            "counter",
            "Spans and log records dropped before export.",
        );
        for (signal, n) in [
            ("traces", &TELEMETRY_DROPPED.traces),
            ("logs", &TELEMETRY_DROPPED.logs),
        ] {
            out.sample(
                "agw_telemetry_dropped_total",
                &[("signal", signal)],
                n.load(Ordering::Relaxed),
            );
        }
        out.header(
            "agw_build_info",
            "gauge",
            "Always 1; the version of this replica.",
        );
        out.sample(
            "agw_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))],
            1,
        );
        out.0
    }

    fn render_http(&self, out: &mut Text) {
        let routes = self
            .inner
            .routes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Sorted output keeps scrapes diffable.
        let mut sorted: Vec<(&String, &RouteStats)> = routes.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(b.0));
        out.header(
            "agw_http_requests_total",
            "counter",
            "HTTP requests by method, route and status.",
        );
        for (route, st) in &sorted {
            let mut reqs: Vec<_> = st.requests.iter().collect();
            reqs.sort_by(|a, b| (a.0.as_str(), a.1).cmp(&(b.0.as_str(), b.1)));
            for (m, status, n) in reqs {
                out.sample(
                    "agw_http_requests_total",
                    &[
                        ("method", m.as_str()),
                        ("route", route.as_str()),
                        ("status", &status.to_string()),
                    ],
                    *n,
                );
            }
        }
        out.header(
            "agw_http_request_duration_seconds",
            "histogram",
            "HTTP request latency by route.",
        );
        for (route, st) in &sorted {
            let mut cumulative = 0;
            for (i, le) in HTTP_BUCKETS.iter().enumerate() {
                cumulative += st.counts[i];
                out.bucket(
                    "agw_http_request_duration_seconds",
                    &[("route", route.as_str())],
                    *le,
                    cumulative,
                );
            }
            out.histogram_tail(
                "agw_http_request_duration_seconds",
                &[("route", route.as_str())],
                st.total,
                st.sum,
            );
        }
    }

    fn render_jobs(&self, out: &mut Text, scrape: &Scrape<'_>) {
        let inner = &*self.inner;
        // Queue figures intern their topics first, so the names read below
        // include topics only the store knows of (another replica's).
        let queues = scrape.queues.map(|q| {
            let mut by: BTreeMap<(u32, bool), (i64, DateTime<Utc>)> = BTreeMap::new();
            for s in q {
                let leased = match s.state {
                    JobState::Open => false,
                    JobState::Leased => true,
                    JobState::Fulfilled | JobState::Dead | JobState::Cancelled => continue,
                };
                let e = by
                    .entry((inner.topics.id(&s.topic), leased))
                    .or_insert((0, s.oldest));
                e.0 += s.count;
                e.1 = e.1.min(s.oldest);
            }
            by
        });
        let topics = inner.topics.names();
        let tenants = inner.tenants.names();
        let topic = |id: u32| topics.get(id as usize).map_or(OTHER, |t| t);
        let tenant = |id: u32| tenants.get(id as usize).map_or(OTHER, |t| t);

        out.header(
            "agw_jobs_published_total",
            "counter",
            "Jobs accepted (idempotent replays excluded), by protocol, topic and tenant.",
        );
        for ((p, t, n), v) in inner.published.counts() {
            out.sample(
                "agw_jobs_published_total",
                &[
                    ("protocol", PROTOCOLS[p as usize]),
                    ("topic", topic(t)),
                    ("tenant", tenant(n)),
                ],
                v,
            );
        }
        out.header(
            "agw_jobs_leased_total",
            "counter",
            "Leases granted (Intent Bus claims and neuron leases), by protocol and topic.",
        );
        for ((p, t), v) in inner.leased.counts() {
            out.sample(
                "agw_jobs_leased_total",
                &[("protocol", PROTOCOLS[p as usize]), ("topic", topic(t))],
                v,
            );
        }
        out.header(
            "agw_jobs_settled_total",
            "counter",
            "Settlements by protocol, topic, what settled the job (kind: fulfilled, failed, ack, nack, expired, cancelled) and where it went (outcome: fulfilled, retried, dead, cancelled).",
        );
        for ((p, t, kind, outcome), v) in inner.settled.counts() {
            out.sample(
                "agw_jobs_settled_total",
                &[
                    ("protocol", PROTOCOLS[p as usize]),
                    ("topic", topic(t)),
                    ("kind", kind.as_str()),
                    ("outcome", outcome.as_str()),
                ],
                v,
            );
        }
        for (name, help, family) in [
            (
                "agw_job_claim_latency_seconds",
                "Time from publish to a job's first lease, by protocol and topic.",
                &inner.claim_latency,
            ),
            (
                "agw_job_end_to_end_latency_seconds",
                "Time from publish to a terminal state (fulfilled, dead, cancelled), by protocol and topic.",
                &inner.end_to_end,
            ),
        ] {
            out.header(name, "histogram", help);
            for ((p, t), (buckets, count, sum)) in family.histograms() {
                let labels = [("protocol", PROTOCOLS[p as usize]), ("topic", topic(t))];
                for (le, n) in JOB_BUCKETS.iter().zip(buckets) {
                    out.bucket(name, &labels, *le, n);
                }
                out.histogram_tail(name, &labels, count, sum);
            }
        }

        let live = queues.as_ref().map_or(f64::NAN, |q| {
            q.values().map(|(n, _)| *n).sum::<i64>() as f64
        });
        out.header(
            "agw_jobs_live",
            "gauge",
            "Open or leased jobs in the store.",
        );
        out.sample("agw_jobs_live", &[], live);
        let Some(queues) = queues else { return };
        // Every topic this replica knows gets its series, zero when idle, so
        // a drained queue reads 0 rather than vanishing; `other` only once
        // the store has jobs past the cap.
        let get = |t: u32, leased: bool| queues.get(&(t, leased)).copied();
        let shown: Vec<u32> = (0..topics.len() as u32)
            .filter(|t| *t != 0 || get(0, false).is_some() || get(0, true).is_some())
            .collect();
        out.header(
            "agw_queue_depth",
            "gauge",
            "Live jobs by topic and state (open, leased), from the shared store: every replica reports the same figures.",
        );
        for &t in &shown {
            for (state, leased) in [("open", false), ("leased", true)] {
                let n = get(t, leased).map_or(0, |(n, _)| n);
                out.sample(
                    "agw_queue_depth",
                    &[("topic", topic(t)), ("state", state)],
                    n as f64,
                );
            }
        }
        let age = |oldest: Option<(i64, DateTime<Utc>)>| {
            oldest.map_or(0.0, |(_, at)| secs(at, scrape.now))
        };
        out.header(
            "agw_queue_oldest_age_seconds",
            "gauge",
            "How long the oldest due open job of the topic has waited (0 when none is due).",
        );
        for &t in &shown {
            out.sample(
                "agw_queue_oldest_age_seconds",
                &[("topic", topic(t))],
                age(get(t, false)),
            );
        }
        out.header(
            "agw_queue_lease_age_seconds",
            "gauge",
            "Age of the topic's oldest live lease, since it was granted (0 when none).",
        );
        for &t in &shown {
            out.sample(
                "agw_queue_lease_age_seconds",
                &[("topic", topic(t))],
                age(get(t, true)),
            );
        }
    }
}

/// Seconds from `from` to `to`, never negative.
fn secs(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    ((to - from).num_milliseconds() as f64 / 1000.0).max(0.0)
}

impl Observer for Metrics {
    fn published(&self, job: &Job) {
        let key = (
            protocol_id(job.protocol),
            self.inner.topics.id(&job.topic),
            self.inner.tenants.id(&job.tenant),
        );
        self.inner.published.add(key, 1);
    }

    fn leased(&self, job: &Job) {
        let key = (protocol_id(job.protocol), self.inner.topics.id(&job.topic));
        self.inner.leased.add(key, 1);
        // The grant time is on the store's clock, as `created_at` is.
        if job.attempts == 1 {
            let granted = job.leased_at.unwrap_or(job.updated_at);
            self.inner
                .claim_latency
                .observe(key, secs(job.created_at, granted));
        }
    }

    fn settled(&self, job: &Job, how: Settlement) {
        let (p, t) = (protocol_id(job.protocol), self.inner.topics.id(&job.topic));
        let outcome = Outcome::of(job.state, how);
        self.inner.settled.add((p, t, how, outcome), 1);
        if outcome != Outcome::Retried {
            // A cancel returns the job as it was: the settlement is now.
            let end = match how {
                Settlement::Cancelled => Utc::now(),
                _ => job.completed_at.unwrap_or_else(Utc::now),
            };
            self.inner
                .end_to_end
                .observe((p, t), secs(job.created_at, end));
        }
    }
}

// === text encoding ===

/// The exposition text being written.
struct Text(String);

impl Text {
    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = write!(self.0, "# HELP {name} ");
        for c in help.chars() {
            match c {
                '\\' => self.0.push_str("\\\\"),
                '\n' => self.0.push_str("\\n"),
                c => self.0.push(c),
            }
        }
        let _ = writeln!(self.0, "\n# TYPE {name} {kind}");
    }

    fn labels(&mut self, labels: &[(&str, &str)], le: Option<f64>) {
        if labels.is_empty() && le.is_none() {
            return;
        }
        self.0.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                self.0.push(',');
            }
            let _ = write!(self.0, "{k}=\"");
            for c in v.chars() {
                match c {
                    '\\' => self.0.push_str("\\\\"),
                    '"' => self.0.push_str("\\\""),
                    '\n' => self.0.push_str("\\n"),
                    c => self.0.push(c),
                }
            }
            self.0.push('"');
        }
        if let Some(le) = le {
            if !labels.is_empty() {
                self.0.push(',');
            }
            self.0.push_str("le=\"");
            self.value(le);
            self.0.push('"');
        }
        self.0.push('}');
    }

    fn value(&mut self, v: impl Into<Value>) {
        let _ = match v.into() {
            Value::Int(n) => write!(self.0, "{n}"),
            Value::Float(f) if f.is_nan() => write!(self.0, "NaN"),
            Value::Float(f) if f == f64::INFINITY => write!(self.0, "+Inf"),
            Value::Float(f) if f == f64::NEG_INFINITY => write!(self.0, "-Inf"),
            Value::Float(f) => write!(self.0, "{f}"),
        };
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], v: impl Into<Value>) {
        self.0.push_str(name);
        self.labels(labels, None);
        self.0.push(' ');
        self.value(v);
        self.0.push('\n');
    }

    fn bucket(&mut self, name: &str, labels: &[(&str, &str)], le: f64, n: u64) {
        let _ = write!(self.0, "{name}_bucket");
        self.labels(labels, Some(le));
        let _ = writeln!(self.0, " {n}");
    }

    fn histogram_tail(&mut self, name: &str, labels: &[(&str, &str)], count: u64, sum: f64) {
        self.bucket(name, labels, f64::INFINITY, count);
        let _ = write!(self.0, "{name}_sum");
        self.labels(labels, None);
        self.0.push(' ');
        self.value(sum);
        let _ = write!(self.0, "\n{name}_count");
        self.labels(labels, None);
        let _ = writeln!(self.0, " {count}");
    }
}

/// A sample value.
enum Value {
    Int(u64),
    Float(f64),
}

impl From<u64> for Value {
    fn from(n: u64) -> Self {
        Self::Int(n)
    }
}

impl From<f64> for Value {
    fn from(f: f64) -> Self {
        Self::Float(f)
    }
}

/// Middleware: counts and times every request by its route template (never
/// the raw path, which would explode label cardinality). Allocation-free once
/// a route and status were seen: the template is shared, the method cloned
/// inline.
pub(crate) async fn track(State(m): State<Metrics>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().cloned();
    let method = req.method().clone();
    let start = Instant::now();
    let res = next.run(req).await;
    m.observe(
        &method,
        route.as_ref().map_or("unmatched", MatchedPath::as_str),
        res.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    res
}

#[cfg(test)]
mod tests;
