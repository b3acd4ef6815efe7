//! `agw-loadgen cycles`: publish → claim → fulfill through a fresh tenant.
//!
//! Workers loop claim → fulfill; publishers keep at most 2×workers intents
//! open (a semaphore slot is taken per publish and returned per claim), or,
//! with `--publishers 0`, each worker publishes its own intent before it
//! claims. With `--rate`, publishes start on a fixed schedule instead of
//! as fast as the gateway answers. Only requests started after the warmup
//! are measured.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until, timeout_at};

use crate::cli::CyclesArgs;
use crate::client::{CallError, Client, Reply};
use crate::report::{CyclesReport, Outcome};
use crate::stats::{Errors, Recorder};

/// Settings shared by every task of one run.
#[derive(Debug)]
struct Plan {
    goal: String,
    /// `wait` query value for long-polling claims, if asked for.
    claim_wait: Option<String>,
    idle_backoff: Duration,
    /// Requests started before this are warmup and not measured.
    measure_start: Instant,
    /// No request is started or awaited past this instant.
    end: Instant,
    /// Source of `payload.n`, unique across the run.
    seq: AtomicU64,
    /// The publish schedule of a fixed offered load, if asked for.
    pacer: Option<Pacer>,
}

/// Hands out the start times of a fixed-rate schedule, one per publish, in
/// order across all tasks. A slot already past starts at once, so a run
/// that fell behind catches up as fast as its tasks allow.
#[derive(Debug)]
struct Pacer {
    start: Instant,
    per_sec: f64,
    taken: AtomicU64,
}

impl Pacer {
    fn new(start: Instant, per_sec: f64) -> Self {
        Self {
            start,
            per_sec,
            taken: AtomicU64::new(0),
        }
    }

    /// When the next slot is due; `None` once slots reach `end`.
    fn next_slot(&self, end: Instant) -> Option<Instant> {
        let k = self.taken.fetch_add(1, Ordering::Relaxed);
        // Slot numbers stay far below 2^52, so the conversion is exact.
        let due = self.start + Duration::from_secs_f64(k as f64 / self.per_sec);
        (due < end).then_some(due)
    }
}

impl Plan {
    fn measured(&self, reply: &Reply) -> bool {
        reply.started >= self.measure_start
    }

    /// Sleeps for `pause` (or the idle backoff if longer), never past the end.
    async fn pause(&self, pause: Option<Duration>) {
        let pause = pause.map_or(self.idle_backoff, |p| p.max(self.idle_backoff));
        sleep_until((Instant::now() + pause).min(self.end)).await;
    }

    fn publish_body(&self) -> Bytes {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        json_bytes(&json!({
            "goal": self.goal,
            "payload": {"n": n},
            "namespace": "default",
            "visibility": "private",
            "priority": 100,
            "max_attempts": 3,
            "backoff_base": 5,
        }))
    }
}

/// What one task saw; merged across tasks at the end.
#[derive(Debug, Default)]
struct Tally {
    publish: Recorder,
    claim: Recorder,
    fulfill: Recorder,
    /// Fulfills answered 200 in the measured window.
    cycles: u64,
    /// Claims answered 204 in the measured window.
    idle_claims: u64,
    /// Failures over the whole run, warmup included.
    errors: Errors,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.publish.merge(other.publish);
        self.claim.merge(other.claim);
        self.fulfill.merge(other.fulfill);
        self.cycles += other.cycles;
        self.idle_claims += other.idle_claims;
        self.errors.merge(other.errors);
    }

    fn failed_call(&mut self, op: &str, err: &CallError) {
        self.errors
            .add(format!("{op} {}", err.kind()), || err.to_string());
    }

    fn failed_reply(&mut self, op: &str, reply: &Reply) {
        self.errors
            .add(format!("{op} {}", reply.status.as_u16()), || {
                reply.snippet()
            });
    }
}

/// Runs the `cycles` benchmark and returns its report.
pub(crate) async fn run(args: CyclesArgs) -> anyhow::Result<Outcome> {
    let admin = Client::new(&args.url, Some(&args.admin_key), args.timeout);
    let owner = format!("bench-{}", hex::encode(rand::random::<[u8; 4]>()));
    let api_key = create_tenant(&admin, &owner).await?;
    if args.backlog > 0 {
        let noisy = create_tenant(&admin, &format!("{owner}-noisy")).await?;
        let client = Client::new(&args.url, Some(&noisy), args.timeout);
        publish_backlog(&client, &args.goal, args.backlog).await?;
    }

    let workers = args.workers;
    let publishers = args.publishers.unwrap_or_else(|| workers.div_ceil(2));
    let now = Instant::now();
    let measure_start = now + args.warmup;
    let plan = Arc::new(Plan {
        goal: args.goal,
        claim_wait: args.claim_wait.map(|w| w.to_string()),
        idle_backoff: args.idle_backoff,
        measure_start,
        end: measure_start + args.duration,
        seq: AtomicU64::new(0),
        pacer: args.rate.map(|rate| Pacer::new(now, rate)),
    });
    // Open-intent budget for the publisher pool; None means inline publishing.
    let slots = (publishers > 0).then(|| Arc::new(Semaphore::new(2 * workers as usize)));

    let mut tasks = JoinSet::new();
    for i in 0..workers {
        let client = Client::new(&args.url, Some(&api_key), args.timeout);
        tasks.spawn(worker(i, client, Arc::clone(&plan), slots.clone()));
    }
    if let Some(slots) = &slots {
        for _ in 0..publishers {
            let client = Client::new(&args.url, Some(&api_key), args.timeout);
            tasks.spawn(publisher(client, Arc::clone(&plan), Arc::clone(slots)));
        }
    }
    let mut total = Tally::default();
    while let Some(joined) = tasks.join_next().await {
        total.merge(joined.context("a load task panicked")?);
    }

    Ok(Outcome::Cycles(CyclesReport {
        url: args.url.as_str().to_owned(),
        owner,
        goal: plan.goal.clone(),
        workers,
        publishers,
        rate: args.rate,
        backlog: args.backlog,
        warmup: args.warmup,
        window: args.duration,
        cycles: total.cycles,
        idle_claims: total.idle_claims,
        publish: total.publish.summary(),
        claim: total.claim.summary(),
        fulfill: total.fulfill.summary(),
        errors: total.errors,
    }))
}

/// Publishes `count` private intents on `goal`, 16 at a time, and fails on the
/// first refusal (the gateway's open-job cap must allow them).
async fn publish_backlog(client: &Client, goal: &str, count: u32) -> anyhow::Result<()> {
    let mut pending = JoinSet::new();
    for n in 0..count {
        if pending.len() >= 16
            && let Some(done) = pending.join_next().await
        {
            done.context("a backlog publish panicked")??;
        }
        let client = client.clone();
        let body = json_bytes(&json!({"goal": goal, "payload": {"backlog": n}}));
        pending.spawn(async move {
            let reply = client
                .signed(Method::POST, "/intent", &[], body)
                .await
                .context("backlog publish")?;
            if !reply.status.is_success() {
                bail!(
                    "backlog publish answered {}: {} (raise AGW_LIMITS_MAX_OPEN_JOBS_PER_TENANT?)",
                    reply.status,
                    reply.snippet()
                );
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = pending.join_next().await {
        done.context("a backlog publish panicked")??;
    }
    Ok(())
}

/// `POST /admin/generate_key` with the admin key; returns the new tenant key.
pub(crate) async fn create_tenant(admin: &Client, owner: &str) -> anyhow::Result<String> {
    let body = json_bytes(&json!({ "owner": owner }));
    let reply = admin
        .signed(Method::POST, "/admin/generate_key", &[], body)
        .await
        .context("POST /admin/generate_key (is the gateway running?)")?;
    if !reply.status.is_success() {
        bail!(
            "POST /admin/generate_key answered {}: {} (is --admin-key the gateway's AGW_ADMIN_KEY?)",
            reply.status,
            reply.snippet()
        );
    }
    let parsed: Value = serde_json::from_slice(&reply.body)
        .context("POST /admin/generate_key returned invalid JSON")?;
    match parsed.get("api_key").and_then(Value::as_str) {
        Some(key) if !key.is_empty() => Ok(key.to_owned()),
        _ => bail!(
            "POST /admin/generate_key returned no api_key: {}",
            reply.snippet()
        ),
    }
}

/// Publishes whenever an open-intent slot is free, until the end.
async fn publisher(client: Client, plan: Arc<Plan>, slots: Arc<Semaphore>) -> Tally {
    let mut tally = Tally::default();
    loop {
        // The semaphore is never closed, so an error only means "stop".
        let Ok(Ok(permit)) = timeout_at(plan.end, slots.acquire()).await else {
            break;
        };
        // The slot comes back when a worker claims the intent.
        permit.forget();
        let Some(outcome) = publish(&client, &plan, &mut tally).await else {
            break;
        };
        if let Err(retry_after) = outcome {
            slots.add_permits(1);
            plan.pause(retry_after).await;
        }
    }
    tally
}

/// One `POST /intent`. `None` when the run ended first; `Err` carries the
/// server's `Retry-After`, if any, after a failure.
async fn publish(
    client: &Client,
    plan: &Plan,
    tally: &mut Tally,
) -> Option<Result<(), Option<Duration>>> {
    if let Some(pacer) = &plan.pacer {
        sleep_until(pacer.next_slot(plan.end)?).await;
    }
    let call = client.signed(Method::POST, "/intent", &[], plan.publish_body());
    let result = timeout_at(plan.end, call).await.ok()?;
    Some(match result {
        Ok(reply) if reply.status.is_success() => {
            if plan.measured(&reply) {
                tally.publish.record(reply.latency);
            }
            Ok(())
        }
        Ok(reply) => {
            tally.failed_reply("publish", &reply);
            Err(reply.retry_after)
        }
        Err(err) => {
            tally.failed_call("publish", &err);
            Err(None)
        }
    })
}

/// Claims and fulfills until the end; with no publisher pool (`slots` is
/// `None`) it first publishes the intent it is about to claim.
async fn worker(
    index: u32,
    client: Client,
    plan: Arc<Plan>,
    slots: Option<Arc<Semaphore>>,
) -> Tally {
    let mut tally = Tally::default();
    let worker_id = format!("agw-loadgen-{index}");
    let mut query = vec![("goal", plan.goal.as_str()), ("namespace", "default")];
    if let Some(wait) = &plan.claim_wait {
        query.push(("wait", wait.as_str()));
    }
    // Inline mode keeps at most one own intent open: publish again only once
    // the previous claim succeeded.
    let mut owes_publish = slots.is_none();
    while Instant::now() < plan.end {
        if owes_publish {
            match publish(&client, &plan, &mut tally).await {
                None => break,
                Some(Ok(())) => owes_publish = false,
                Some(Err(retry_after)) => {
                    plan.pause(retry_after).await;
                    continue;
                }
            }
        }

        let claim = client.signed_with(Method::POST, "/claim", &query, Bytes::new(), &worker_id);
        let Ok(result) = timeout_at(plan.end, claim).await else {
            break;
        };
        let reply = match result {
            Ok(reply) if reply.status == StatusCode::OK => reply,
            Ok(reply) if reply.status == StatusCode::NO_CONTENT => {
                // Publishers refill within milliseconds; the server's idle
                // Retry-After (seconds) is meant for idle fleets, not this.
                if plan.measured(&reply) {
                    tally.idle_claims += 1;
                }
                plan.pause(None).await;
                continue;
            }
            Ok(reply) => {
                tally.failed_reply("claim", &reply);
                plan.pause(reply.retry_after).await;
                continue;
            }
            Err(err) => {
                tally.failed_call("claim", &err);
                plan.pause(None).await;
                continue;
            }
        };
        if plan.measured(&reply) {
            tally.claim.record(reply.latency);
        }
        owes_publish = slots.is_none();
        if let Some(slots) = &slots {
            slots.add_permits(1);
        }
        let Some((id, token)) = claimed_lease(&reply.body) else {
            tally
                .errors
                .add("claim 200-unparsable".to_owned(), || reply.snippet());
            continue;
        };

        let body = json_bytes(&json!({
            "claim_token": token,
            "result_type": "json",
            "result": {"ok": true},
        }));
        let path = format!("/fulfill/{}", crate::sign::quote(&id));
        let fulfill = client.signed(Method::POST, &path, &[], body);
        let Ok(result) = timeout_at(plan.end, fulfill).await else {
            break;
        };
        match result {
            Ok(reply) if reply.status == StatusCode::OK => {
                if plan.measured(&reply) {
                    tally.fulfill.record(reply.latency);
                    tally.cycles += 1;
                }
            }
            Ok(reply) => {
                tally.failed_reply("fulfill", &reply);
                plan.pause(reply.retry_after).await;
            }
            Err(err) => {
                tally.failed_call("fulfill", &err);
                plan.pause(None).await;
            }
        }
    }
    tally
}

/// `(id, claim_token)` of a 200 claim body; a numeric id is accepted too.
fn claimed_lease(body: &[u8]) -> Option<(String, String)> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let id = match value.get("id")? {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let token = value.get("claim_token")?.as_str()?.to_owned();
    Some((id, token))
}

/// Compact JSON bytes; serializing a `Value` cannot fail.
pub(crate) fn json_bytes(value: &Value) -> Bytes {
    Bytes::from(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_from_claim_body() {
        let body =
            br#"{"id":"0190abcd","goal":"bench/echo","claim_token":"t0k","payload":{"n":1}}"#;
        assert_eq!(
            claimed_lease(body),
            Some(("0190abcd".to_owned(), "t0k".to_owned()))
        );
        assert_eq!(
            claimed_lease(br#"{"id":42,"claim_token":"t"}"#),
            Some(("42".to_owned(), "t".to_owned()))
        );
        assert_eq!(claimed_lease(br#"{"id":"x"}"#), None);
        assert_eq!(claimed_lease(b"not json"), None);
    }

    #[test]
    fn pacer_spaces_slots_by_the_rate_and_stops_at_the_end() {
        let start = Instant::now();
        let pacer = Pacer::new(start, 4.0);
        let end = start + Duration::from_secs(1);
        let slots: Vec<_> = std::iter::from_fn(|| pacer.next_slot(end)).collect();
        let offsets: Vec<_> = slots.iter().map(|t| *t - start).collect();
        assert_eq!(
            offsets,
            [0, 250, 500, 750].map(Duration::from_millis).to_vec()
        );
        // Once past the end, every later call says stop too.
        assert_eq!(pacer.next_slot(end), None);
    }

    #[test]
    fn publish_body_matches_the_brief() {
        let plan = Plan {
            goal: "bench/echo".to_owned(),
            claim_wait: None,
            idle_backoff: Duration::ZERO,
            measure_start: Instant::now(),
            end: Instant::now(),
            seq: AtomicU64::new(7),
            pacer: None,
        };
        let body: Value = serde_json::from_slice(&plan.publish_body()).unwrap();
        assert_eq!(
            body,
            json!({
                "goal": "bench/echo",
                "payload": {"n": 7},
                "namespace": "default",
                "visibility": "private",
                "priority": 100,
                "max_attempts": 3,
                "backoff_base": 5,
            })
        );
        let next: Value = serde_json::from_slice(&plan.publish_body()).unwrap();
        assert_eq!(next["payload"]["n"], 8);
    }
}
