//! `agw-loadgen gov`: governance runs end to end, and blocked runs.
//!
//! Run phase: callers loop `POST /api/v1/run` (bearer API key) while
//! workers serve the run topic over the signed Intent Bus protocol
//! (long-poll claim, fulfill at once with `{"output": <trace_id>}`). Each
//! worker times its share, from its claim response arriving to its fulfill
//! response arriving; each caller times the run's round trip. The two are
//! matched by the `trace_id` in the job payload and in the 200 answer, and
//! the gateway's **added latency** of a run is round trip − worker time
//! (authentication, policy, trace and job writes, the wake-up of the
//! claim, the settlement notice, the trace close, both HTTP exchanges).
//!
//! Block phase: the same callers send an input a deny rule matches and
//! expect 403 with a `trace_id`. Before and after it one claim checks that
//! nothing was left on the topic, i.e. that blocked runs enqueue nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until};

use crate::cli::GovArgs;
use crate::client::{CallError, Client, Reply};
use crate::cycles::{create_tenant, json_bytes};
use crate::report::{GovReport, Outcome};
use crate::stats::{Errors, Recorder};

/// Pause after a failed request, so a refused connection is not spun on.
const BACKOFF: Duration = Duration::from_millis(2);
/// Most jobs a leftover check takes off the topic.
const DRAIN_LIMIT: u64 = 10_000;

/// What the callers of one phase send and expect.
#[derive(Debug)]
struct Phase {
    /// The request body, the same for every call.
    body: Bytes,
    /// `true`: expect 403 with a trace id; `false`: 200 with the run's output.
    blocked: bool,
    /// Requests started before this are not measured.
    measure_start: Instant,
    /// No request is started past this instant.
    end: Instant,
}

/// What one caller saw.
#[derive(Debug, Default)]
struct CallerTally {
    /// `(trace_id, round trip)` of measured runs answered as expected.
    samples: Vec<(String, Duration)>,
    /// Measured 200 answers whose result was THROTTLE.
    throttled: u64,
    errors: Errors,
}

/// What one worker saw: worker time per fulfilled run, by trace id.
#[derive(Debug, Default)]
struct WorkerTally {
    times: HashMap<String, Duration>,
    errors: Errors,
}

fn failed_call(errors: &mut Errors, op: &str, err: &CallError) {
    errors.add(format!("{op} {}", err.kind()), || err.to_string());
}

fn failed_reply(errors: &mut Errors, op: &str, reply: &Reply) {
    errors.add(format!("{op} {}", reply.status.as_u16()), || {
        reply.snippet()
    });
}

/// `POST /api/v1/run` body with `input`, no context, and `timeout_ms`.
fn run_body(input: &str, timeout_ms: u64) -> Bytes {
    json_bytes(&json!({
        "input": input,
        "context": {"session_id": null, "agent_id": null, "mode_hint": null},
        "options": {"timeout_ms": timeout_ms, "stream": false},
    }))
}

/// `len` bytes of plain text that no reasonable deny rule matches.
fn plain_input(len: usize) -> String {
    const TEXT: &str = "Summarize the quarterly sales report: revenue by region, the three \
largest deals, churn against last quarter, and two follow-up questions for the review. ";
    TEXT.chars().cycle().take(len).collect()
}

/// Runs the `gov` benchmark and returns its report.
pub(crate) async fn run(args: GovArgs) -> anyhow::Result<Outcome> {
    if Duration::from_secs(u64::from(args.claim_wait)) >= args.timeout {
        bail!("--claim-wait must be shorter than --timeout");
    }
    if Duration::from_millis(args.run_timeout_ms) >= args.timeout {
        bail!("--run-timeout-ms must be shorter than --timeout");
    }
    let admin = Client::new(&args.url, Some(&args.admin_key), args.timeout);
    let owner = format!("bench-{}", hex::encode(rand::random::<[u8; 4]>()));
    let api_key: Arc<str> = Arc::from(create_tenant(&admin, &owner).await?);
    let input = plain_input(args.input_bytes as usize);
    let topic: Arc<str> = Arc::from(args.topic.as_str());
    let mut errors = Errors::default();

    // Run phase.
    let measure_start = Instant::now() + args.warmup;
    let runs = Arc::new(Phase {
        body: run_body(&input, args.run_timeout_ms),
        blocked: false,
        measure_start,
        end: measure_start + args.duration,
    });
    let (stop, stopped) = watch::channel(false);
    let mut workers = JoinSet::new();
    for i in 0..args.workers {
        let client = Client::new(&args.url, Some(&api_key), args.timeout);
        let query = claim_query(&topic, Some(args.claim_wait));
        workers.spawn(worker(i, client, query, stopped.clone()));
    }
    let mut callers = JoinSet::new();
    for _ in 0..args.callers {
        let client = Client::new(&args.url, Some(&api_key), args.timeout);
        callers.spawn(caller(client, Arc::clone(&api_key), Arc::clone(&runs)));
    }
    let (clients, run_tally) = join_callers(callers).await?;
    // Every caller has its answer, so no run is waiting for a worker.
    let _ = stop.send(true);
    let mut times = HashMap::new();
    while let Some(joined) = workers.join_next().await {
        let w = joined.context("a worker task panicked")?;
        times.extend(w.times);
        errors.merge(w.errors);
    }
    errors.merge(run_tally.errors);
    let checker = Client::new(&args.url, Some(&api_key), args.timeout);
    let leftover_jobs = drain(&checker, &topic, &mut errors).await;

    let mut rtt = Recorder::default();
    let mut worker_time = Recorder::default();
    let mut added = Recorder::default();
    let mut unmatched = 0;
    for (trace_id, round_trip) in &run_tally.samples {
        rtt.record(*round_trip);
        match times.get(trace_id) {
            Some(w) => {
                worker_time.record(*w);
                added.record(round_trip.saturating_sub(*w));
            }
            None => unmatched += 1,
        }
    }

    // Block phase, on the callers' warm connections.
    let mut block_rtt = Recorder::default();
    let mut enqueued_by_blocks = 0;
    if !args.block_duration.is_zero() {
        let start = Instant::now();
        let blocks = Arc::new(Phase {
            body: run_body(&args.block_input, args.run_timeout_ms),
            blocked: true,
            measure_start: start,
            end: start + args.block_duration,
        });
        let mut callers = JoinSet::new();
        for client in clients {
            callers.spawn(caller(client, Arc::clone(&api_key), Arc::clone(&blocks)));
        }
        let (_, block_tally) = join_callers(callers).await?;
        errors.merge(block_tally.errors);
        for (_, round_trip) in &block_tally.samples {
            block_rtt.record(*round_trip);
        }
        enqueued_by_blocks = drain(&checker, &topic, &mut errors).await;
    }

    Ok(Outcome::Gov(GovReport {
        url: args.url.as_str().to_owned(),
        owner,
        topic: args.topic,
        callers: args.callers,
        workers: args.workers,
        input_bytes: args.input_bytes,
        warmup: args.warmup,
        window: args.duration,
        throttled: run_tally.throttled,
        rtt: rtt.summary(),
        worker: worker_time.summary(),
        added: added.summary(),
        unmatched,
        leftover_jobs,
        block_window: args.block_duration,
        block_rtt: block_rtt.summary(),
        enqueued_by_blocks,
        errors,
    }))
}

/// Claim query on `topic` in the default namespace, long-polling `wait` seconds.
fn claim_query(topic: &str, wait: Option<u32>) -> Vec<(String, String)> {
    let mut q = vec![
        ("goal".to_owned(), topic.to_owned()),
        ("namespace".to_owned(), "default".to_owned()),
    ];
    if let Some(w) = wait {
        q.push(("wait".to_owned(), w.to_string()));
    }
    q
}

/// Joins the callers, keeping their clients (warm connections) for the next phase.
async fn join_callers(
    mut callers: JoinSet<(Client, CallerTally)>,
) -> anyhow::Result<(Vec<Client>, CallerTally)> {
    let mut clients = Vec::new();
    let mut total = CallerTally::default();
    while let Some(joined) = callers.join_next().await {
        let (client, t) = joined.context("a caller task panicked")?;
        clients.push(client);
        total.samples.extend(t.samples);
        total.throttled += t.throttled;
        total.errors.merge(t.errors);
    }
    Ok((clients, total))
}

/// Issues the phase's request until its end; a request in flight at the end
/// is awaited (its answer is not measured), so no run is left waiting.
async fn caller(client: Client, api_key: Arc<str>, phase: Arc<Phase>) -> (Client, CallerTally) {
    let mut tally = CallerTally::default();
    let op = if phase.blocked { "block" } else { "run" };
    while Instant::now() < phase.end {
        let reply = match client
            .post_bearer("/api/v1/run", &api_key, phase.body.clone())
            .await
        {
            Ok(reply) => reply,
            Err(err) => {
                failed_call(&mut tally.errors, op, &err);
                sleep_until((Instant::now() + BACKOFF).min(phase.end)).await;
                continue;
            }
        };
        let want = if phase.blocked {
            StatusCode::FORBIDDEN
        } else {
            StatusCode::OK
        };
        if reply.status != want {
            failed_reply(&mut tally.errors, op, &reply);
            let pause = reply.retry_after.unwrap_or(BACKOFF).max(BACKOFF);
            sleep_until((Instant::now() + pause).min(phase.end)).await;
            continue;
        }
        let Some(answer) = RunAnswer::parse(&reply.body) else {
            tally
                .errors
                .add(format!("{op} {}-unparsable", want.as_u16()), || {
                    reply.snippet()
                });
            continue;
        };
        // Workers answer with the trace id: a mismatch is a crossed result.
        if !phase.blocked && answer.output.as_deref() != Some(answer.trace_id.as_str()) {
            tally
                .errors
                .add("run 200-wrong-output".to_owned(), || reply.snippet());
            continue;
        }
        if reply.started >= phase.measure_start && reply.started < phase.end {
            if answer.throttled {
                tally.throttled += 1;
            }
            tally.samples.push((answer.trace_id, reply.latency));
        }
    }
    (client, tally)
}

/// The fields of a run answer (200) or block answer (403) checked here.
#[derive(Debug, PartialEq)]
struct RunAnswer {
    trace_id: String,
    output: Option<String>,
    throttled: bool,
}

impl RunAnswer {
    fn parse(body: &[u8]) -> Option<Self> {
        let v: Value = serde_json::from_slice(body).ok()?;
        let trace_id = v.get("trace_id")?.as_str().filter(|t| !t.is_empty())?;
        Some(Self {
            trace_id: trace_id.to_owned(),
            output: v.get("output").and_then(Value::as_str).map(str::to_owned),
            throttled: v.get("result").and_then(Value::as_str) == Some("THROTTLE"),
        })
    }
}

/// A claimed run: lease id and token, and the trace id from its payload.
#[derive(Debug, PartialEq)]
struct ClaimedRun {
    id: String,
    token: String,
    trace_id: String,
}

impl ClaimedRun {
    fn parse(body: &[u8]) -> Option<Self> {
        let v: Value = serde_json::from_slice(body).ok()?;
        let id = match v.get("id")? {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => return None,
        };
        Some(Self {
            id,
            token: v.get("claim_token")?.as_str()?.to_owned(),
            trace_id: v.get("payload")?.get("trace_id")?.as_str()?.to_owned(),
        })
    }

    /// The fulfill body: the run's output is its trace id.
    fn fulfill_body(&self) -> Bytes {
        json_bytes(&json!({
            "claim_token": self.token,
            "result_type": "json",
            "result": {"output": self.trace_id},
        }))
    }
}

/// Claims (long-poll) and fulfills at once until told to stop; a claim
/// waiting when the stop comes is dropped, a fulfill is finished.
async fn worker(
    index: u32,
    client: Client,
    query: Vec<(String, String)>,
    mut stop: watch::Receiver<bool>,
) -> WorkerTally {
    let mut tally = WorkerTally::default();
    let worker_id = format!("agw-loadgen-gov-{index}");
    let query: Vec<(&str, &str)> = query
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    while !*stop.borrow() {
        let claim = client.signed_with(Method::POST, "/claim", &query, Bytes::new(), &worker_id);
        let result = tokio::select! {
            r = claim => r,
            _ = stop.changed() => break,
        };
        let reply = match result {
            Ok(reply) if reply.status == StatusCode::OK => reply,
            // The long poll ran out: claim again.
            Ok(reply) if reply.status == StatusCode::NO_CONTENT => continue,
            Ok(reply) => {
                failed_reply(&mut tally.errors, "claim", &reply);
                tokio::time::sleep(BACKOFF).await;
                continue;
            }
            Err(err) => {
                failed_call(&mut tally.errors, "claim", &err);
                tokio::time::sleep(BACKOFF).await;
                continue;
            }
        };
        let claimed_at = reply.started + reply.latency;
        let Some(run) = ClaimedRun::parse(&reply.body) else {
            tally
                .errors
                .add("claim 200-unparsable".to_owned(), || reply.snippet());
            continue;
        };
        let path = format!("/fulfill/{}", crate::sign::quote(&run.id));
        match client
            .signed(Method::POST, &path, &[], run.fulfill_body())
            .await
        {
            Ok(f) if f.status == StatusCode::OK => {
                let done = f.started + f.latency;
                tally
                    .times
                    .insert(run.trace_id, done.saturating_duration_since(claimed_at));
            }
            Ok(f) => failed_reply(&mut tally.errors, "fulfill", &f),
            Err(err) => failed_call(&mut tally.errors, "fulfill", &err),
        }
    }
    tally
}

/// Claims (without waiting) and fulfills what is left on `topic`; returns
/// how many jobs there were. Failures count as errors and end the check.
async fn drain(client: &Client, topic: &str, errors: &mut Errors) -> u64 {
    let query = claim_query(topic, None);
    let query: Vec<(&str, &str)> = query
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut found = 0;
    while found < DRAIN_LIMIT {
        let reply = match client
            .signed_with(
                Method::POST,
                "/claim",
                &query,
                Bytes::new(),
                "agw-loadgen-check",
            )
            .await
        {
            Ok(r) if r.status == StatusCode::OK => r,
            Ok(r) if r.status == StatusCode::NO_CONTENT => break,
            Ok(r) => {
                failed_reply(errors, "check-claim", &r);
                break;
            }
            Err(err) => {
                failed_call(errors, "check-claim", &err);
                break;
            }
        };
        found += 1;
        if let Some(run) = ClaimedRun::parse(&reply.body) {
            let path = format!("/fulfill/{}", crate::sign::quote(&run.id));
            let _ = client
                .signed(Method::POST, &path, &[], run.fulfill_body())
                .await;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_and_inputs() {
        let body: Value = serde_json::from_slice(&run_body("hi", 5000)).unwrap();
        assert_eq!(
            body,
            json!({
                "input": "hi",
                "context": {"session_id": null, "agent_id": null, "mode_hint": null},
                "options": {"timeout_ms": 5000, "stream": false},
            })
        );
        assert_eq!(plain_input(200).len(), 200);
        assert_eq!(plain_input(1000).len(), 1000);
    }

    #[test]
    fn claimed_run_and_answers() {
        let claim = br#"{"id":"j1","claim_token":"t","goal":"gateway/run",
            "payload":{"kind":"run","input":"x","trace_id":"tr-1","mode":"balanced"}}"#;
        let run = ClaimedRun::parse(claim).unwrap();
        assert_eq!(
            run,
            ClaimedRun {
                id: "j1".to_owned(),
                token: "t".to_owned(),
                trace_id: "tr-1".to_owned(),
            }
        );
        let f: Value = serde_json::from_slice(&run.fulfill_body()).unwrap();
        assert_eq!(f["result"], json!({"output": "tr-1"}));
        assert_eq!(ClaimedRun::parse(br#"{"id":"j","claim_token":"t"}"#), None);

        let ok = br#"{"result":"THROTTLE","output":"tr-1","mode":"fast","budget":0.1,"trace_id":"tr-1","latency_ms":1.0}"#;
        assert_eq!(
            RunAnswer::parse(ok),
            Some(RunAnswer {
                trace_id: "tr-1".to_owned(),
                output: Some("tr-1".to_owned()),
                throttled: true,
            })
        );
        let blocked = br#"{"error":"governance_block","message":"m","trace_id":"tr-2"}"#;
        assert_eq!(RunAnswer::parse(blocked).unwrap().output, None);
        assert_eq!(RunAnswer::parse(br#"{"trace_id":""}"#), None);
    }
}
