use chrono::{Duration, TimeZone};

use agw_storage::{ResultType, Visibility};

use super::*;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default()
}

fn job(protocol: Protocol, topic: &str, tenant: &str) -> Job {
    Job {
        id: "j1".into(),
        tenant: tenant.into(),
        protocol,
        topic: topic.into(),
        namespace: "default".into(),
        visibility: Visibility::Private,
        priority: 100,
        run_at: t0(),
        state: JobState::Open,
        attempts: 0,
        max_attempts: 3,
        backoff_base_ms: 1000,
        target_worker: None,
        required_capability: None,
        on_behalf_of: None,
        input: serde_json::Value::Null,
        metadata: None,
        result: None,
        result_type: ResultType::Json,
        error: None,
        lease: None,
        last_holder: None,
        last_holder_key: None,
        leased_at: None,
        created_at: t0(),
        updated_at: t0(),
        completed_at: None,
        progress: None,
    }
}

/// One parsed sample: name, labels, value.
type Sample = (String, Vec<(String, String)>, f64);

fn scrape<'a>(queues: Option<&'a [JobStats]>, decisions: &'a [(&'a str, u64)]) -> Scrape<'a> {
    Scrape {
        now: t0() + Duration::seconds(100),
        queues,
        decisions,
        neuron_sessions: 2,
        neuron_dispatch: super::NeuronDispatch::default(),
        governance_streams: 1,
    }
}

fn render(m: &Metrics) -> String {
    m.render(&scrape(Some(&[]), &[]))
}

/// Checks the text format line by line: `# HELP`/`# TYPE` once per family,
/// before its samples; samples `name{k="v",...} value` with valid names,
/// escaped values and a float value; histogram buckets cumulative and ending
/// with `+Inf` equal to `_count`. Returns (name, labels, value) per sample.
fn parse(text: &str) -> Vec<Sample> {
    let mut typed: HashMap<String, String> = HashMap::new();
    let mut helped = std::collections::HashSet::new();
    let mut samples = Vec::new();
    let valid_name = |n: &str| {
        !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            && !n.starts_with(|c: char| c.is_ascii_digit())
    };
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or_default();
            assert!(helped.insert(name.to_owned()), "HELP twice: {line}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split(' ');
            let (name, kind) = (it.next().unwrap_or_default(), it.next().unwrap_or_default());
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert!(
                typed.insert(name.to_owned(), kind.to_owned()).is_none(),
                "TYPE twice: {line}"
            );
            continue;
        }
        assert!(!line.starts_with('#'), "stray comment: {line}");
        let (series, value) = line.rsplit_once(' ').expect("sample has a value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series, Vec::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("labels close");
                (name, parse_labels(body))
            }
        };
        assert!(valid_name(name), "bad name in {line}");
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| typed.get(*f).is_some_and(|k| k == "histogram"))
            })
            .unwrap_or(name);
        assert!(typed.contains_key(family), "sample before its TYPE: {line}");
        assert!(helped.contains(family), "sample without HELP: {line}");
        samples.push((name.to_owned(), labels, value));
    }
    samples
}

fn parse_labels(body: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = body.chars().peekable();
    while chars.peek().is_some() {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        assert_eq!(chars.next(), Some('"'), "label value opens with a quote");
        let mut value = String::new();
        loop {
            match chars.next().expect("label value closes") {
                '\\' => match chars.next() {
                    Some('\\') => value.push('\\'),
                    Some('"') => value.push('"'),
                    Some('n') => value.push('\n'),
                    other => panic!("bad escape {other:?} in {body}"),
                },
                '"' => break,
                '\n' => panic!("raw newline in {body}"),
                c => value.push(c),
            }
        }
        out.push((key, value));
        match chars.next() {
            None | Some(',') => {}
            Some(c) => panic!("unexpected {c:?} after a label in {body}"),
        }
    }
    out
}

fn value_of(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|(n, labels, _)| {
            n == name
                && labels.len() == want.len()
                && want
                    .iter()
                    .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|s| s.2)
}

#[test]
fn renders_http_counters_and_cumulative_buckets() {
    let m = Metrics::default();
    m.observe(&Method::POST, "/claim", 204, 0.002);
    m.observe(&Method::POST, "/claim", 204, 0.2);
    m.observe(&Method::GET, "/status/{id}", 404, 0.001);
    m.leases_expired(3);
    let text = m.render(&scrape(None, &[("BLOCK", 2)]));
    let s = parse(&text);
    assert_eq!(m.totals().0, 3);
    let get = |name, labels: &[(&str, &str)]| value_of(&s, name, labels);
    assert_eq!(
        get(
            "agw_http_requests_total",
            &[("method", "POST"), ("route", "/claim"), ("status", "204")]
        ),
        Some(2.0)
    );
    assert_eq!(
        get(
            "agw_http_request_duration_seconds_bucket",
            &[("route", "/claim"), ("le", "0.0025")]
        ),
        Some(1.0)
    );
    assert_eq!(
        get(
            "agw_http_request_duration_seconds_bucket",
            &[("route", "/claim"), ("le", "+Inf")]
        ),
        Some(2.0)
    );
    assert_eq!(
        get("agw_policy_decisions_total", &[("decision", "BLOCK")]),
        Some(2.0)
    );
    assert_eq!(get("agw_leases_expired_total", &[]), Some(3.0));
    assert_eq!(
        get("agw_sse_sessions", &[("protocol", "neuron")]),
        Some(2.0)
    );
    assert_eq!(
        get("agw_sse_sessions", &[("protocol", "governance")]),
        Some(1.0)
    );
    assert_eq!(
        get("agw_telemetry_dropped_total", &[("signal", "traces")]).map(|v| v >= 0.0),
        Some(true)
    );
    // The store did not answer: live jobs unknown, no queue series.
    assert!(get("agw_jobs_live", &[]).is_some_and(f64::is_nan));
    assert!(!text.contains("agw_queue_depth{"), "{text}");
}

#[test]
fn job_lifecycle_counters_and_latencies() {
    let m = Metrics::default();
    let mut j = job(Protocol::IntentBus, "acme/a", "t1");
    m.published(&j);
    // First lease 2 s after publish: one claim-latency observation.
    j.state = JobState::Leased;
    j.attempts = 1;
    j.leased_at = Some(t0() + Duration::seconds(2));
    m.leased(&j);
    // A failure that will be retried, then a second lease (no claim latency).
    j.state = JobState::Open;
    m.settled(&j, Settlement::Failed);
    j.state = JobState::Leased;
    j.attempts = 2;
    j.leased_at = Some(t0() + Duration::seconds(30));
    m.leased(&j);
    j.state = JobState::Fulfilled;
    j.completed_at = Some(t0() + Duration::seconds(40));
    m.settled(&j, Settlement::Fulfilled);
    // A neuron task cancelled (the store returns the job as it was).
    let n = job(Protocol::Neuron, "acme/b", "t2");
    m.published(&n);
    m.settled(&n, Settlement::Cancelled);
    // Expired leases: one requeued, one dead (job read back), one unread.
    let expired = |state| ExpiredLease {
        job_id: "j1".into(),
        topic: "acme/a".into(),
        holder: "w".into(),
        token: "t".into(),
        new_state: state,
    };
    m.lease_expired(&expired(JobState::Open), Some(&j));
    let mut dead = j.clone();
    dead.state = JobState::Dead;
    m.lease_expired(&expired(JobState::Dead), Some(&dead));
    m.lease_expired(&expired(JobState::Dead), None);

    let s = parse(&render(&m));
    let get = |name, labels: &[(&str, &str)]| value_of(&s, name, labels);
    let ib = [("protocol", "intent_bus"), ("topic", "acme/a")];
    assert_eq!(
        get(
            "agw_jobs_published_total",
            &[
                ("protocol", "intent_bus"),
                ("topic", "acme/a"),
                ("tenant", "t1")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(get("agw_jobs_leased_total", &ib), Some(2.0));
    let settled = |p, kind, outcome| {
        get(
            "agw_jobs_settled_total",
            &[
                ("protocol", p),
                ("topic", "acme/a"),
                ("kind", kind),
                ("outcome", outcome),
            ],
        )
    };
    assert_eq!(settled("intent_bus", "failed", "retried"), Some(1.0));
    assert_eq!(settled("intent_bus", "fulfilled", "fulfilled"), Some(1.0));
    assert_eq!(settled("intent_bus", "expired", "retried"), Some(1.0));
    assert_eq!(settled("intent_bus", "expired", "dead"), Some(1.0));
    assert_eq!(settled("unknown", "expired", "dead"), Some(1.0));
    assert_eq!(
        get(
            "agw_jobs_settled_total",
            &[
                ("protocol", "neuron"),
                ("topic", "acme/b"),
                ("kind", "cancelled"),
                ("outcome", "cancelled")
            ]
        ),
        Some(1.0)
    );
    // Claim latency: the first lease only, 2 s.
    let claim = |le| {
        get(
            "agw_job_claim_latency_seconds_bucket",
            &[ib[0], ib[1], ("le", le)],
        )
    };
    assert_eq!(claim("1"), Some(0.0));
    assert_eq!(claim("2.5"), Some(1.0));
    assert_eq!(get("agw_job_claim_latency_seconds_count", &ib), Some(1.0));
    assert_eq!(get("agw_job_claim_latency_seconds_sum", &ib), Some(2.0));
    // End to end: fulfilled at 40 s and dead (expired) at 40 s; retries not counted.
    assert_eq!(
        get("agw_job_end_to_end_latency_seconds_count", &ib),
        Some(2.0)
    );
    assert_eq!(
        get("agw_job_end_to_end_latency_seconds_sum", &ib),
        Some(80.0)
    );
    assert_eq!(
        get(
            "agw_job_end_to_end_latency_seconds_count",
            &[("protocol", "neuron"), ("topic", "acme/b")]
        ),
        Some(1.0)
    );
}

#[test]
fn label_values_are_escaped() {
    let m = Metrics::default();
    let nasty = "a\"b\\c\nd}{=,";
    m.published(&job(Protocol::Governance, nasty, "ten\"ant"));
    m.observe(&Method::GET, "/x/\"{id}\"", 200, 0.01);
    let text = render(&m);
    assert!(
        text.contains(r#"topic="a\"b\\c\nd}{=,",tenant="ten\"ant"}"#),
        "{text}"
    );
    let s = parse(&text);
    assert_eq!(
        value_of(
            &s,
            "agw_jobs_published_total",
            &[
                ("protocol", "governance"),
                ("topic", nasty),
                ("tenant", "ten\"ant")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        value_of(
            &s,
            "agw_queue_depth",
            &[("topic", nasty), ("state", "open")]
        ),
        Some(0.0)
    );
    assert!(
        value_of(
            &s,
            "agw_http_requests_total",
            &[
                ("method", "GET"),
                ("route", "/x/\"{id}\""),
                ("status", "200")
            ]
        )
        .is_some()
    );
}

#[test]
fn topic_and_tenant_labels_are_capped() {
    let m = Metrics::with_caps(2, 1);
    for (topic, tenant) in [
        ("t/1", "a"),
        ("t/2", "b"),
        ("t/3", "c"),
        ("t/4", "a"),
        ("other", "a"),
    ] {
        m.published(&job(Protocol::IntentBus, topic, tenant));
    }
    // A value seen before keeps its label after the cap is reached.
    m.published(&job(Protocol::IntentBus, "t/1", "a"));
    let s = parse(&render(&m));
    let mut published: Vec<(String, String, f64)> = s
        .iter()
        .filter(|(n, ..)| n == "agw_jobs_published_total")
        .map(|(_, l, v)| (l[1].1.clone(), l[2].1.clone(), *v))
        .collect();
    published.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    assert_eq!(
        published,
        vec![
            (OTHER.into(), "a".into(), 2.0),
            (OTHER.into(), OTHER.into(), 1.0),
            ("t/1".into(), "a".into(), 2.0),
            ("t/2".into(), OTHER.into(), 1.0),
        ]
    );
    // Queue figures of topics past the cap add up under `other`.
    let stats = |topic: &str, state, count, secs_ago: i64| JobStats {
        topic: topic.into(),
        state,
        count,
        oldest: t0() + Duration::seconds(100 - secs_ago),
    };
    let q = [
        stats("t/1", JobState::Open, 4, 10),
        stats("t/9", JobState::Open, 5, 30),
        stats("t/8", JobState::Open, 6, 20),
        stats("t/8", JobState::Leased, 1, 7),
    ];
    let s = parse(&m.render(&scrape(Some(&q), &[])));
    let get = |name, labels: &[(&str, &str)]| value_of(&s, name, labels);
    assert_eq!(
        get("agw_queue_depth", &[("topic", OTHER), ("state", "open")]),
        Some(11.0)
    );
    assert_eq!(
        get("agw_queue_depth", &[("topic", OTHER), ("state", "leased")]),
        Some(1.0)
    );
    assert_eq!(
        get("agw_queue_oldest_age_seconds", &[("topic", OTHER)]),
        Some(30.0)
    );
    assert_eq!(
        get("agw_queue_lease_age_seconds", &[("topic", OTHER)]),
        Some(7.0)
    );
    assert_eq!(
        get("agw_queue_depth", &[("topic", "t/1"), ("state", "open")]),
        Some(4.0)
    );
    assert_eq!(get("agw_jobs_live", &[]), Some(16.0));
    let topics: std::collections::BTreeSet<_> = s
        .iter()
        .flat_map(|(_, l, _)| {
            l.iter()
                .filter(|(k, _)| k == "topic")
                .map(|(_, v)| v.clone())
        })
        .collect();
    assert_eq!(topics.len(), 3, "two named topics and other: {topics:?}");
}

#[test]
fn queue_gauges_read_zero_when_idle_and_ages_never_go_negative() {
    let m = Metrics::default();
    m.published(&job(Protocol::Neuron, "n/idle", "t"));
    // A delayed job (run_at in the future) has not waited yet.
    let q = [JobStats {
        topic: "n/later".into(),
        state: JobState::Open,
        count: 1,
        oldest: t0() + Duration::seconds(500),
    }];
    let s = parse(&m.render(&scrape(Some(&q), &[])));
    let get = |name, labels: &[(&str, &str)]| value_of(&s, name, labels);
    for (topic, open) in [("n/idle", 0.0), ("n/later", 1.0)] {
        assert_eq!(
            get("agw_queue_depth", &[("topic", topic), ("state", "open")]),
            Some(open)
        );
        assert_eq!(
            get("agw_queue_depth", &[("topic", topic), ("state", "leased")]),
            Some(0.0)
        );
        assert_eq!(
            get("agw_queue_oldest_age_seconds", &[("topic", topic)]),
            Some(0.0)
        );
        assert_eq!(
            get("agw_queue_lease_age_seconds", &[("topic", topic)]),
            Some(0.0)
        );
    }
    assert!(get("agw_queue_depth", &[("topic", OTHER), ("state", "open")]).is_none());
}

#[test]
fn help_text_is_escaped_and_values_are_prometheus_floats() {
    let mut t = Text(String::new());
    t.header("x_total", "counter", "a \\ b\nc");
    t.sample("x_total", &[], f64::NAN);
    t.sample("x_total", &[("k", "v")], f64::INFINITY);
    t.sample("x_total", &[("k", "w")], 0.25);
    t.sample("x_total", &[("k", "u")], 7_u64);
    assert_eq!(
        t.0,
        "# HELP x_total a \\\\ b\\nc\n# TYPE x_total counter\nx_total NaN\nx_total{k=\"v\"} +Inf\nx_total{k=\"w\"} 0.25\nx_total{k=\"u\"} 7\n"
    );
}
