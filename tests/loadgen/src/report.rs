//! Rendering of a finished run: aligned human-readable lines, or one JSON
//! object (`--json`) with the same figures for BENCHMARKS.md.

use std::time::Duration;

use serde_json::{Value, json};

use crate::stats::{Errors, Summary};

/// The result of one subcommand.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// `agw-loadgen cycles`.
    Cycles(CyclesReport),
    /// `agw-loadgen http`.
    Http(HttpReport),
    /// `agw-loadgen neurons`.
    Neurons(NeuronsReport),
    /// `agw-loadgen gov`.
    Gov(GovReport),
}

impl Outcome {
    /// Whether at least one operation completed in the measured window.
    pub(crate) fn succeeded(&self) -> bool {
        match self {
            Self::Cycles(r) => r.cycles > 0,
            Self::Http(r) => r.latency.count > 0,
            Self::Neurons(r) => r.acks > 0,
            Self::Gov(r) => r.rtt.count > 0,
        }
    }
}

/// Figures of a `cycles` run. Latencies cover requests started in the
/// measured window; errors cover the whole run, warmup included.
#[derive(Debug)]
pub(crate) struct CyclesReport {
    /// Target origin.
    pub(crate) url: String,
    /// Owner of the tenant key created for the run.
    pub(crate) owner: String,
    /// Goal of the published intents.
    pub(crate) goal: String,
    /// Claim → fulfill tasks.
    pub(crate) workers: u32,
    /// Publisher tasks (0 = each worker publishes inline).
    pub(crate) publishers: u32,
    /// Publishes per second offered on a fixed schedule; `None` = as fast
    /// as the gateway answers.
    pub(crate) rate: Option<f64>,
    /// Another tenant's unclaimable open intents on the goal, published first.
    pub(crate) backlog: u32,
    /// Unmeasured run-in.
    pub(crate) warmup: Duration,
    /// Measured window.
    pub(crate) window: Duration,
    /// Fulfills answered 200 in the window.
    pub(crate) cycles: u64,
    /// Claims answered 204 in the window.
    pub(crate) idle_claims: u64,
    /// Successful `POST /intent` latencies.
    pub(crate) publish: Summary,
    /// `POST /claim` latencies of claims answered 200.
    pub(crate) claim: Summary,
    /// Successful `POST /fulfill/<id>` latencies.
    pub(crate) fulfill: Summary,
    /// Failures by operation and status.
    pub(crate) errors: Errors,
}

/// Figures of an `http` run.
#[derive(Debug)]
pub(crate) struct HttpReport {
    /// Target origin.
    pub(crate) url: String,
    /// Path requested.
    pub(crate) path: String,
    /// Concurrent connections.
    pub(crate) connections: u32,
    /// Unmeasured run-in.
    pub(crate) warmup: Duration,
    /// Measured window.
    pub(crate) window: Duration,
    /// Latencies of 2xx responses started in the window.
    pub(crate) latency: Summary,
    /// Non-2xx responses and transport failures, whole run.
    pub(crate) errors: Errors,
}

/// Figures of a `neurons` run. Latencies and rates cover the measured
/// window; the housekeeping counts and errors cover the whole run.
#[derive(Debug)]
pub(crate) struct NeuronsReport {
    /// Target origin.
    pub(crate) url: String,
    /// Tenant of the publishers' key and of the neurons' token.
    pub(crate) tenant: String,
    /// What the neurons presented as bearer: `jwt` or `api-key`.
    pub(crate) auth: &'static str,
    /// Capability offered (and goal published).
    pub(crate) capability: String,
    /// Run marker in the payloads.
    pub(crate) run: String,
    /// Neurons (event streams).
    pub(crate) neurons: u32,
    /// Idle neurons of another tenant on the same capability.
    pub(crate) idle_neurons: u32,
    /// `registered` frames of the idle neurons, whole run.
    pub(crate) idle_registered: u64,
    /// Leases pushed to idle neurons (they can take none: should be 0).
    pub(crate) idle_leases: u64,
    /// Leases in flight per neuron.
    pub(crate) concurrency: u32,
    /// Publisher tasks.
    pub(crate) publishers: u32,
    /// Most intents published but not yet acked.
    pub(crate) max_outstanding: u64,
    /// Unmeasured run-in.
    pub(crate) warmup: Duration,
    /// Measured window.
    pub(crate) window: Duration,
    /// Acks of this run's leases answered 2xx in the window.
    pub(crate) acks: u64,
    /// This run's lease frames received in the window.
    pub(crate) leases: u64,
    /// Measured deliveries whose lease arrived before the publish's 201.
    pub(crate) leased_before_reply: u64,
    /// This run's leases with attempt > 0, in the window.
    pub(crate) redeliveries: u64,
    /// Earlier runs' leftover intents acked (drained), whole run.
    pub(crate) stale: u64,
    /// Tasks not published by a load generator, handed back, whole run.
    pub(crate) foreign: u64,
    /// `cancel` frames, whole run.
    pub(crate) cancels: u64,
    /// Event streams opened, whole run.
    pub(crate) streams: u64,
    /// `registered` frames, whole run.
    pub(crate) registered: u64,
    /// SSE comment lines (keep-alives), whole run.
    pub(crate) comments: u64,
    /// 201 of `POST /intent` read → lease frame arrived.
    pub(crate) publish_to_lease: Summary,
    /// `POST /intent` sent → lease frame arrived.
    pub(crate) submit_to_lease: Summary,
    /// Successful `POST /intent` latencies.
    pub(crate) publish: Summary,
    /// Successful `POST /neuron/ack` latencies.
    pub(crate) ack: Summary,
    /// `GET /neuron/events` until the response head, whole run.
    pub(crate) stream_open: Summary,
    /// Failures by operation and status.
    pub(crate) errors: Errors,
}

/// Figures of a `gov` run. Latencies cover requests started in their
/// phase's measured window; errors cover the whole run, warmup included.
#[derive(Debug)]
pub(crate) struct GovReport {
    /// Target origin.
    pub(crate) url: String,
    /// Owner of the tenant key created for the run.
    pub(crate) owner: String,
    /// Topic the workers served.
    pub(crate) topic: String,
    /// Caller tasks.
    pub(crate) callers: u32,
    /// Worker tasks.
    pub(crate) workers: u32,
    /// Size of each run's input.
    pub(crate) input_bytes: u32,
    /// Unmeasured run-in of the run phase.
    pub(crate) warmup: Duration,
    /// Measured window of the run phase.
    pub(crate) window: Duration,
    /// Measured runs answered THROTTLE (included in `rtt`).
    pub(crate) throttled: u64,
    /// Round trips of runs answered 200 with their own output.
    pub(crate) rtt: Summary,
    /// Claim response arrived → fulfill response arrived, per matched run.
    pub(crate) worker: Summary,
    /// Round trip − worker time, per matched run.
    pub(crate) added: Summary,
    /// Measured runs with no worker time under their trace id.
    pub(crate) unmatched: u64,
    /// Jobs still on the topic once every caller had its answer.
    pub(crate) leftover_jobs: u64,
    /// Measured window of the block phase (0 = skipped).
    pub(crate) block_window: Duration,
    /// Round trips of blocked runs answered 403 with a trace id.
    pub(crate) block_rtt: Summary,
    /// Jobs found on the topic after the block phase (should be 0).
    pub(crate) enqueued_by_blocks: u64,
    /// Failures by operation and status.
    pub(crate) errors: Errors,
}

/// Prints `outcome` to stdout as text or as one JSON line.
pub(crate) fn print(outcome: &Outcome, json: bool) {
    if json {
        println!("{}", to_json(outcome));
    } else {
        print!("{}", to_text(outcome));
    }
}

fn per_sec(count: u64, window: Duration) -> f64 {
    let secs = window.as_secs_f64();
    // Counts stay far below 2^52, so the conversion is exact.
    let rate = if secs > 0.0 { count as f64 / secs } else { 0.0 };
    (rate * 10.0).round() / 10.0
}

fn ms(micros: u32) -> f64 {
    f64::from(micros) / 1000.0
}

fn latency_json(s: &Summary) -> Value {
    json!({
        "count": s.count,
        "p50_ms": ms(s.p50_us),
        "p90_ms": ms(s.p90_us),
        "p99_ms": ms(s.p99_us),
        "max_ms": ms(s.max_us),
        "mean_ms": s.mean_us as f64 / 1000.0,
    })
}

fn errors_json(errors: &Errors) -> Value {
    let by_kind: serde_json::Map<String, Value> = errors
        .iter()
        .map(|(kind, n, detail)| (kind.to_owned(), json!({"count": n, "first": detail})))
        .collect();
    json!({"total": errors.total(), "by_kind": by_kind})
}

/// The `--json` object.
pub(crate) fn to_json(outcome: &Outcome) -> Value {
    match outcome {
        Outcome::Cycles(r) => json!({
            "mode": "cycles",
            "url": r.url,
            "owner": r.owner,
            "goal": r.goal,
            "workers": r.workers,
            "publishers": r.publishers,
            "offered_per_sec": r.rate,
            "backlog": r.backlog,
            "warmup_s": r.warmup.as_secs_f64(),
            "window_s": r.window.as_secs_f64(),
            "cycles": r.cycles,
            "cycles_per_sec": per_sec(r.cycles, r.window),
            "idle_claims": r.idle_claims,
            "claim": latency_json(&r.claim),
            "publish": latency_json(&r.publish),
            "fulfill": latency_json(&r.fulfill),
            "errors": errors_json(&r.errors),
        }),
        Outcome::Http(r) => json!({
            "mode": "http",
            "url": r.url,
            "path": r.path,
            "connections": r.connections,
            "warmup_s": r.warmup.as_secs_f64(),
            "window_s": r.window.as_secs_f64(),
            "requests": r.latency.count,
            "requests_per_sec": per_sec(r.latency.count, r.window),
            "latency": latency_json(&r.latency),
            "errors": errors_json(&r.errors),
        }),
        Outcome::Neurons(r) => json!({
            "mode": "neurons",
            "url": r.url,
            "tenant": r.tenant,
            "auth": r.auth,
            "capability": r.capability,
            "run": r.run,
            "neurons": r.neurons,
            "concurrency": r.concurrency,
            "publishers": r.publishers,
            "max_outstanding": r.max_outstanding,
            "warmup_s": r.warmup.as_secs_f64(),
            "window_s": r.window.as_secs_f64(),
            "acks": r.acks,
            "leases_per_sec": per_sec(r.acks, r.window),
            "leases": r.leases,
            "publish_to_lease": latency_json(&r.publish_to_lease),
            "submit_to_lease": latency_json(&r.submit_to_lease),
            "publish": latency_json(&r.publish),
            "ack": latency_json(&r.ack),
            "stream_open": latency_json(&r.stream_open),
            "leased_before_reply": r.leased_before_reply,
            "redeliveries": r.redeliveries,
            "stale_drained": r.stale,
            "foreign_handed_back": r.foreign,
            "cancels": r.cancels,
            "streams": r.streams,
            "registered": r.registered,
            "idle_neurons": r.idle_neurons,
            "idle_registered": r.idle_registered,
            "idle_leases": r.idle_leases,
            "keepalives": r.comments,
            "errors": errors_json(&r.errors),
        }),
        Outcome::Gov(r) => json!({
            "mode": "gov",
            "url": r.url,
            "owner": r.owner,
            "topic": r.topic,
            "callers": r.callers,
            "workers": r.workers,
            "input_bytes": r.input_bytes,
            "warmup_s": r.warmup.as_secs_f64(),
            "window_s": r.window.as_secs_f64(),
            "runs": r.rtt.count,
            "runs_per_sec": per_sec(r.rtt.count, r.window),
            "throttled": r.throttled,
            "run_rtt": latency_json(&r.rtt),
            "worker_time": latency_json(&r.worker),
            "added": latency_json(&r.added),
            "unmatched": r.unmatched,
            "leftover_jobs": r.leftover_jobs,
            "block": {
                "window_s": r.block_window.as_secs_f64(),
                "blocks": r.block_rtt.count,
                "blocks_per_sec": per_sec(r.block_rtt.count, r.block_window),
                "rtt": latency_json(&r.block_rtt),
                "enqueued": r.enqueued_by_blocks,
            },
            "errors": errors_json(&r.errors),
        }),
    }
}

fn latency_line(label: &str, s: &Summary) -> String {
    format!(
        "{label:<10} ms  p50 {:>8.3}  p90 {:>8.3}  p99 {:>8.3}  max {:>8.3}  (n={})\n",
        ms(s.p50_us),
        ms(s.p90_us),
        ms(s.p99_us),
        ms(s.max_us),
        s.count
    )
}

fn errors_text(errors: &Errors) -> String {
    let mut out = format!(
        "errors        {} (whole run, warmup included)\n",
        errors.total()
    );
    for (kind, n, detail) in errors.iter() {
        out.push_str(&format!("  {kind:<22} {n:>8}  first: {detail}\n"));
    }
    out
}

/// The human-readable report.
pub(crate) fn to_text(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Cycles(r) => {
            let mut out = format!(
                "agw-loadgen cycles  {}  goal={}  tenant={}  workers={}  publishers={}{}\n\
                 window        {:.1}s after {:.1}s warmup\n\
                 cycles/s      {:.1}  ({} cycles)\n",
                r.url,
                r.goal,
                r.owner,
                r.workers,
                r.publishers,
                if r.publishers == 0 { " (inline)" } else { "" },
                r.window.as_secs_f64(),
                r.warmup.as_secs_f64(),
                per_sec(r.cycles, r.window),
                r.cycles,
            );
            if r.backlog > 0 {
                out.push_str(&format!(
                    "backlog       {}  (another tenant's private intents on the goal)\n",
                    r.backlog
                ));
            }
            if let Some(rate) = r.rate {
                out.push_str(&format!(
                    "offered/s     {rate:.1}  (fixed publish schedule)\n"
                ));
            }
            out.push_str(&latency_line("claim", &r.claim));
            out.push_str(&latency_line("publish", &r.publish));
            out.push_str(&latency_line("fulfill", &r.fulfill));
            out.push_str(&format!(
                "idle claims   {} (204 in window)\n",
                r.idle_claims
            ));
            out.push_str(&errors_text(&r.errors));
            out
        }
        Outcome::Http(r) => {
            let mut out = format!(
                "agw-loadgen http  {}{}  connections={}\n\
                 window        {:.1}s after {:.1}s warmup\n\
                 requests/s    {:.1}  ({} requests)\n",
                r.url,
                r.path,
                r.connections,
                r.window.as_secs_f64(),
                r.warmup.as_secs_f64(),
                per_sec(r.latency.count, r.window),
                r.latency.count,
            );
            out.push_str(&latency_line("GET", &r.latency));
            out.push_str(&errors_text(&r.errors));
            out
        }
        Outcome::Neurons(r) => {
            let mut out = format!(
                "agw-loadgen neurons  {}  capability={}  tenant={} ({})  neurons={}x{}  publishers={}  outstanding<={}\n\
                 window        {:.1}s after {:.1}s warmup\n\
                 leases/s      {:.1}  ({} acks, {} leases pushed)\n",
                r.url,
                r.capability,
                r.tenant,
                r.auth,
                r.neurons,
                r.concurrency,
                r.publishers,
                r.max_outstanding,
                r.window.as_secs_f64(),
                r.warmup.as_secs_f64(),
                per_sec(r.acks, r.window),
                r.acks,
                r.leases,
            );
            out.push_str(&latency_line("pub→lease", &r.publish_to_lease));
            out.push_str(&latency_line("req→lease", &r.submit_to_lease));
            out.push_str(&latency_line("publish", &r.publish));
            out.push_str(&latency_line("ack", &r.ack));
            out.push_str(&latency_line("open", &r.stream_open));
            out.push_str(&format!(
                "deliveries    {} leased before the 201 (counted as 0 ms), {} redelivered\n\
                 housekeeping  streams {}  registered {}  keep-alives {}  cancels {}  stale drained {}  foreign handed back {}\n",
                r.leased_before_reply,
                r.redeliveries,
                r.streams,
                r.registered,
                r.comments,
                r.cancels,
                r.stale,
                r.foreign,
            ));
            if r.idle_neurons > 0 {
                out.push_str(&format!(
                    "idle          {} neurons of another tenant, {} registered, {} leases pushed to them\n",
                    r.idle_neurons, r.idle_registered, r.idle_leases,
                ));
            }
            out.push_str(&errors_text(&r.errors));
            out
        }
        Outcome::Gov(r) => {
            let mut out = format!(
                "agw-loadgen gov  {}  topic={}  tenant={}  callers={}  workers={}  input={} B\n\
                 window        {:.1}s after {:.1}s warmup\n\
                 runs/s        {:.1}  ({} runs, {} throttled)\n",
                r.url,
                r.topic,
                r.owner,
                r.callers,
                r.workers,
                r.input_bytes,
                r.window.as_secs_f64(),
                r.warmup.as_secs_f64(),
                per_sec(r.rtt.count, r.window),
                r.rtt.count,
                r.throttled,
            );
            out.push_str(&latency_line("run RTT", &r.rtt));
            out.push_str(&latency_line("worker", &r.worker));
            out.push_str(&latency_line("added", &r.added));
            out.push_str(&format!(
                "matched       {} of {} runs by trace_id; {} jobs left once the callers stopped\n",
                r.rtt.count - r.unmatched,
                r.rtt.count,
                r.leftover_jobs,
            ));
            if !r.block_window.is_zero() {
                out.push_str(&format!(
                    "blocks/s      {:.1}  ({} blocked runs in {:.1}s, {} jobs enqueued)\n",
                    per_sec(r.block_rtt.count, r.block_window),
                    r.block_rtt.count,
                    r.block_window.as_secs_f64(),
                    r.enqueued_by_blocks,
                ));
                out.push_str(&latency_line("block RTT", &r.block_rtt));
            }
            out.push_str(&errors_text(&r.errors));
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> Summary {
        Summary {
            count: 200,
            mean_us: 1500,
            p50_us: 1234,
            p90_us: 2000,
            p99_us: 5000,
            max_us: 9001,
        }
    }

    #[test]
    fn cycles_json_carries_the_figures() {
        let mut errors = Errors::default();
        errors.add("claim 500".to_owned(), || "boom".to_owned());
        let outcome = Outcome::Cycles(CyclesReport {
            url: "http://127.0.0.1:8080".to_owned(),
            owner: "bench-00".to_owned(),
            goal: "bench/echo".to_owned(),
            workers: 8,
            publishers: 4,
            rate: Some(12.5),
            backlog: 0,
            warmup: Duration::from_secs(3),
            window: Duration::from_secs(20),
            cycles: 200,
            idle_claims: 1,
            publish: summary(),
            claim: summary(),
            fulfill: summary(),
            errors,
        });
        assert!(outcome.succeeded());
        let v = to_json(&outcome);
        assert_eq!(v["cycles_per_sec"], 10.0);
        assert_eq!(v["offered_per_sec"], 12.5);
        assert_eq!(v["claim"]["p50_ms"], 1.234);
        assert_eq!(v["claim"]["max_ms"], 9.001);
        assert_eq!(v["errors"]["total"], 1);
        assert_eq!(v["errors"]["by_kind"]["claim 500"]["first"], "boom");
        let text = to_text(&outcome);
        assert!(text.contains("cycles/s      10.0  (200 cycles)"), "{text}");
        assert!(text.contains("offered/s     12.5"), "{text}");
        assert!(text.contains("claim 500"), "{text}");
    }

    #[test]
    fn neurons_report_carries_the_figures() {
        let outcome = Outcome::Neurons(NeuronsReport {
            url: "http://127.0.0.1:8080".to_owned(),
            tenant: "bench".to_owned(),
            auth: "jwt",
            capability: "bench/neuron".to_owned(),
            run: "0a0b0c0d".to_owned(),
            neurons: 4,
            idle_neurons: 0,
            idle_registered: 0,
            idle_leases: 0,
            concurrency: 8,
            publishers: 4,
            max_outstanding: 64,
            warmup: Duration::from_secs(3),
            window: Duration::from_secs(20),
            acks: 200,
            leases: 201,
            leased_before_reply: 3,
            redeliveries: 0,
            stale: 5,
            foreign: 0,
            cancels: 0,
            streams: 4,
            registered: 4,
            comments: 4,
            publish_to_lease: summary(),
            submit_to_lease: summary(),
            publish: summary(),
            ack: summary(),
            stream_open: summary(),
            errors: Errors::default(),
        });
        assert!(outcome.succeeded());
        let v = to_json(&outcome);
        assert_eq!(v["mode"], "neurons");
        assert_eq!(v["leases_per_sec"], 10.0);
        assert_eq!(v["publish_to_lease"]["p99_ms"], 5.0);
        assert_eq!(v["ack"]["p50_ms"], 1.234);
        assert_eq!(v["stale_drained"], 5);
        let text = to_text(&outcome);
        assert!(
            text.contains("leases/s      10.0  (200 acks, 201 leases pushed)"),
            "{text}"
        );
        assert!(text.contains("pub→lease"), "{text}");
        assert!(text.contains("3 leased before the 201"), "{text}");
    }

    #[test]
    fn gov_report_carries_the_figures() {
        let outcome = Outcome::Gov(GovReport {
            url: "http://127.0.0.1:8080".to_owned(),
            owner: "bench-00".to_owned(),
            topic: "gateway/run".to_owned(),
            callers: 8,
            workers: 8,
            input_bytes: 200,
            warmup: Duration::from_secs(3),
            window: Duration::from_secs(20),
            throttled: 0,
            rtt: summary(),
            worker: summary(),
            added: summary(),
            unmatched: 2,
            leftover_jobs: 0,
            block_window: Duration::from_secs(5),
            block_rtt: Summary {
                count: 50,
                ..summary()
            },
            enqueued_by_blocks: 0,
            errors: Errors::default(),
        });
        assert!(outcome.succeeded());
        let v = to_json(&outcome);
        assert_eq!(v["mode"], "gov");
        assert_eq!(v["runs_per_sec"], 10.0);
        assert_eq!(v["added"]["p99_ms"], 5.0);
        assert_eq!(v["block"]["blocks_per_sec"], 10.0);
        assert_eq!(v["block"]["enqueued"], 0);
        let text = to_text(&outcome);
        assert!(
            text.contains("runs/s        10.0  (200 runs, 0 throttled)"),
            "{text}"
        );
        assert!(text.contains("matched       198 of 200"), "{text}");
        assert!(text.contains("block RTT"), "{text}");
    }

    #[test]
    fn http_without_samples_is_a_failure() {
        let outcome = Outcome::Http(HttpReport {
            url: "http://127.0.0.1:8080".to_owned(),
            path: "/healthz".to_owned(),
            connections: 1,
            warmup: Duration::ZERO,
            window: Duration::ZERO,
            latency: Summary::default(),
            errors: Errors::default(),
        });
        assert!(!outcome.succeeded());
        assert_eq!(to_json(&outcome)["requests_per_sec"], 0.0);
    }
}
