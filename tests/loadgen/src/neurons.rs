//! `agw-loadgen neurons`: neurons on the SSE lease channel, fed through the
//! signed Intent Bus.
//!
//! Each neuron opens `GET /neuron/events`, registers one capability once the
//! response head arrives, and acks every `lease` pushed to it (up to its
//! `concurrency` acks in flight, each on its own keep-alive connection).
//! Publishers `POST /intent` with the capability as the goal, keeping at most
//! 2×neurons×concurrency intents published but not yet acked (a semaphore
//! slot is taken per publish and returned per successful ack).
//!
//! Publish → lease latency runs from the instant the publish's 201 was read
//! to the arrival of the chunk holding the lease frame whose `taskId` is the
//! intent id. The gateway may push the lease before the 201 reaches the
//! publisher; such deliveries count as 0 and are reported separately, and
//! the latency from the start of the publish request is reported as well.
//!
//! With `--frame-connections N` the neurons' POSTed frames share one pool of
//! about N connections, so a run of 10,000 neurons needs about one
//! connection per neuron; the open-file limit is raised to its hard limit
//! at start, and connections are spread over 127.0.0.2, 127.0.0.3, … when
//! one source address would run short of ephemeral ports.
//!
//! Every published payload carries a run marker, so leases of intents left
//! open by an earlier run of the same tenant are acked (drained) without
//! being measured, and tasks the load generator did not publish are handed
//! back with a refunded `retryable` nack.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until, timeout_at};

use crate::cli::NeuronsArgs;
use crate::client::{CallError, Client, Reply};
use crate::cycles::{create_tenant, json_bytes};
use crate::report::{NeuronsReport, Outcome};
use crate::sockets;
use crate::sse::{self, RUN_MARKER, SseEvent, SseParser};
use crate::stats::{Errors, Recorder};

/// Pause before a neuron reopens a failed or closed stream.
const RECONNECT_PAUSE: Duration = Duration::from_millis(250);

/// Pause after a failed publish without a `Retry-After`.
const PUBLISH_BACKOFF: Duration = Duration::from_millis(50);

/// Protocol version the neurons announce.
const PROTOCOL_VERSION: &str = "1.0.0";

/// Settings and shared state of one run.
#[derive(Debug)]
struct Plan {
    capability: String,
    /// Random id written into every payload of this run.
    run: String,
    /// Bearer token of the neurons.
    token: String,
    concurrency: u32,
    /// Work before this is warmup and not measured.
    measure_start: Instant,
    /// No request is started or awaited past this instant.
    end: Instant,
    /// Source of `payload.n`, unique across the run.
    seq: AtomicU64,
    /// Intents that may still be published before one is acked.
    slots: Semaphore,
    /// Pairs each publish reply with its first lease.
    matcher: Matcher,
}

impl Plan {
    fn publish_body(&self) -> Bytes {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        json_bytes(&json!({
            "goal": self.capability,
            "payload": {RUN_MARKER: self.run, "n": n},
            "namespace": "default",
            "visibility": "private",
            "priority": 100,
            "max_attempts": 3,
            "backoff_base": 5,
        }))
    }

    fn register_body(&self, neuron_id: &str) -> Bytes {
        json_bytes(&json!({
            "type": "register",
            "neuronId": neuron_id,
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": [{
                "type": self.capability,
                "scope": "any",
                "concurrency": self.concurrency,
            }],
        }))
    }

    /// Sleeps for `pause`, never past the end.
    async fn pause(&self, pause: Duration) {
        sleep_until((Instant::now() + pause).min(self.end)).await;
    }
}

/// Where a neuron POSTs its frames (register, ack, nack): its own client, or
/// a pool shared by every neuron whose calls in flight are capped (so are
/// its connections).
#[derive(Debug, Clone)]
struct Frames {
    client: Client,
    /// Permits for calls in flight on a shared pool; `None` for a neuron's own.
    gate: Option<Arc<Semaphore>>,
}

impl Frames {
    async fn post(&self, path: &str, token: &str, body: Bytes) -> Result<Reply, CallError> {
        // The gate is never closed, so a permit always comes.
        let _permit = match &self.gate {
            Some(gate) => gate.acquire().await.ok(),
            None => None,
        };
        self.client.post_bearer(path, token, body).await
    }
}

/// Connections a run opens at most: one stream per neuron, the frame
/// connections (a neuron's own pool opens one per ack in flight), one per
/// publisher and the admin call's.
fn connections(neurons: u32, concurrency: u32, publishers: u32, frames: Option<u32>) -> u64 {
    let frames = frames.map_or(u64::from(neurons) * u64::from(concurrency), u64::from);
    u64::from(neurons) + frames + u64::from(publishers) + 1
}

/// One side of a delivery seen before the other.
#[derive(Debug, Clone, Copy)]
enum Half {
    /// The publish was answered; its lease has not arrived yet.
    Published { started: Instant, replied: Instant },
    /// The lease arrived before the publisher read the 201.
    Leased { arrived: Instant },
}

/// A publish and the first lease of its intent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Delivery {
    /// The publish request was sent.
    started: Instant,
    /// Its 201 was read to the end.
    replied: Instant,
    /// The chunk holding the lease frame arrived.
    arrived: Instant,
}

impl Delivery {
    /// Records the latencies when the publish started in the window.
    fn record(self, tally: &mut Tally, measure_start: Instant) {
        if self.started < measure_start {
            return;
        }
        tally
            .publish_to_lease
            .record(self.arrived.saturating_duration_since(self.replied));
        tally
            .submit_to_lease
            .record(self.arrived.saturating_duration_since(self.started));
        if self.arrived < self.replied {
            tally.leased_before_reply += 1;
        }
    }
}

/// Publish replies and first leases keyed by intent id, whichever comes
/// first; the second side takes the entry and gets the [`Delivery`].
#[derive(Debug, Default)]
struct Matcher {
    halves: Mutex<HashMap<String, Half>>,
}

impl Matcher {
    fn published(&self, id: String, started: Instant, replied: Instant) -> Option<Delivery> {
        self.meet(id, Half::Published { started, replied })
    }

    fn leased(&self, id: String, arrived: Instant) -> Option<Delivery> {
        self.meet(id, Half::Leased { arrived })
    }

    fn meet(&self, id: String, half: Half) -> Option<Delivery> {
        // A poisoned lock only means another task panicked; the map is fine.
        let mut halves = self
            .halves
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match (halves.remove(&id), half) {
            (Some(Half::Published { started, replied }), Half::Leased { arrived })
            | (Some(Half::Leased { arrived }), Half::Published { started, replied }) => {
                Some(Delivery {
                    started,
                    replied,
                    arrived,
                })
            }
            // Nothing yet, or the same side twice: keep the newest.
            _ => {
                halves.insert(id, half);
                None
            }
        }
    }
}

/// What one task saw; merged across tasks at the end.
#[derive(Debug, Default)]
struct Tally {
    publish: Recorder,
    publish_to_lease: Recorder,
    submit_to_lease: Recorder,
    ack: Recorder,
    stream_open: Recorder,
    /// Acks of this run's leases answered 2xx in the window.
    acks: u64,
    /// This run's lease frames that arrived in the window.
    leases: u64,
    /// Measured deliveries whose lease beat the publish's 201.
    leased_before_reply: u64,
    /// This run's leases with `attempt > 0`, in the window.
    redeliveries: u64,
    /// Leases of earlier runs' intents, acked without measuring (whole run).
    stale: u64,
    /// Leases of tasks no load generator published, nacked (whole run).
    foreign: u64,
    /// `cancel` frames (whole run).
    cancels: u64,
    /// Streams opened with 200 (whole run, reconnects included).
    streams: u64,
    /// `registered` frames (whole run).
    registered: u64,
    /// SSE comment lines: `: connected` and keep-alives (whole run).
    comments: u64,
    /// Failures over the whole run, warmup included.
    errors: Errors,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.publish.merge(other.publish);
        self.publish_to_lease.merge(other.publish_to_lease);
        self.submit_to_lease.merge(other.submit_to_lease);
        self.ack.merge(other.ack);
        self.stream_open.merge(other.stream_open);
        self.acks += other.acks;
        self.leases += other.leases;
        self.leased_before_reply += other.leased_before_reply;
        self.redeliveries += other.redeliveries;
        self.stale += other.stale;
        self.foreign += other.foreign;
        self.cancels += other.cancels;
        self.streams += other.streams;
        self.registered += other.registered;
        self.comments += other.comments;
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

/// Runs the `neurons` benchmark and returns its report.
pub(crate) async fn run(args: NeuronsArgs) -> anyhow::Result<Outcome> {
    if let Some(token) = &args.token
        && let Some(claimed) = sse::jwt_tenant(token)
        && claimed != args.tenant
    {
        bail!(
            "--token acts for tenant {claimed:?} but --tenant is {:?}: pass --tenant {claimed} \
             or mint the token with --tenant {}",
            args.tenant,
            args.tenant
        );
    }
    let neurons = args.neurons;
    let idle = args.idle_neurons;
    let publishers = args.publishers.unwrap_or(neurons);
    let needed = connections(
        neurons,
        args.concurrency,
        publishers,
        args.frame_connections,
    ) + connections(idle, 1, 0, args.frame_connections.map(|_| 0));
    let hint = if args.frame_connections.is_none() {
        "; or pass --frame-connections (e.g. 64) and fewer --publishers"
    } else {
        "; or pass fewer --publishers"
    };
    sockets::ensure_fds(needed, hint)?;
    let sources = sockets::source_addresses(args.url.ip(), needed, sockets::ephemeral_ports())?;
    if !sources.is_empty() {
        eprintln!(
            "agw-loadgen: spreading about {needed} connections over {} source addresses from {}",
            sources.len(),
            sources[0]
        );
    }

    let admin = Client::new(&args.url, Some(&args.admin_key), args.timeout);
    let api_key = create_tenant(&admin, &args.tenant).await?;
    let (token, auth) = match args.token {
        Some(token) => (token, "jwt"),
        // The gateway also takes a tenant API key as a bearer token.
        None => (api_key.clone(), "api-key"),
    };

    let max_outstanding = 2 * neurons as usize * args.concurrency as usize;
    let measure_start = Instant::now() + args.warmup;
    let plan = Arc::new(Plan {
        capability: args.capability,
        run: hex::encode(rand::random::<[u8; 4]>()),
        token,
        concurrency: args.concurrency,
        measure_start,
        end: measure_start + args.duration,
        seq: AtomicU64::new(0),
        slots: Semaphore::new(max_outstanding),
        matcher: Matcher::default(),
    });

    let shared = args.frame_connections.map(|n| Frames {
        client: Client::bound(
            &args.url,
            None,
            args.timeout,
            sockets::source_for(&sources, 0),
        ),
        gate: Some(Arc::new(Semaphore::new(n as usize))),
    });
    let mut tasks = JoinSet::new();
    let mut idle_tasks = JoinSet::new();
    if idle > 0 {
        let idle_tenant = format!("{}-idle", args.tenant);
        let idle_key = create_tenant(&admin, &idle_tenant).await?;
        let idle_plan = Arc::new(Plan {
            capability: plan.capability.clone(),
            run: plan.run.clone(),
            token: idle_key,
            concurrency: 1,
            measure_start,
            end: plan.end,
            seq: AtomicU64::new(0),
            slots: Semaphore::new(0),
            matcher: Matcher::default(),
        });
        for i in 0..idle {
            // After the working neurons' and publishers' addresses.
            let source = sockets::source_for(&sources, (neurons + publishers + i) as usize);
            let client = Client::bound(&args.url, None, args.timeout, source);
            let frames = shared.clone().unwrap_or_else(|| Frames {
                client: client.clone(),
                gate: None,
            });
            let id = format!("agw-loadgen-idle-{}-{i}", plan.run);
            idle_tasks.spawn(neuron(id, client, frames, Arc::clone(&idle_plan)));
        }
    }
    for i in 0..neurons {
        let source = sockets::source_for(&sources, i as usize);
        let client = Client::bound(&args.url, None, args.timeout, source);
        let frames = shared.clone().unwrap_or_else(|| Frames {
            client: client.clone(),
            gate: None,
        });
        let id = format!("agw-loadgen-{}-{i}", plan.run);
        tasks.spawn(neuron(id, client, frames, Arc::clone(&plan)));
    }
    for i in 0..publishers {
        // Offset so that publishers do not pile onto the first addresses.
        let source = sockets::source_for(&sources, (neurons + i) as usize);
        let client = Client::bound(&args.url, Some(&api_key), args.timeout, source);
        tasks.spawn(publisher(client, Arc::clone(&plan)));
    }
    let mut total = Tally::default();
    while let Some(joined) = tasks.join_next().await {
        total.merge(joined.context("a load task panicked")?);
    }
    let mut idle_total = Tally::default();
    while let Some(joined) = idle_tasks.join_next().await {
        idle_total.merge(joined.context("an idle neuron panicked")?);
    }
    // An idle neuron's failures are the run's; a lease pushed to one (it
    // can take none) would be a dispatch bug.
    total.errors.merge(idle_total.errors);
    let idle_leases = idle_total.leases + idle_total.stale + idle_total.foreign;

    Ok(Outcome::Neurons(NeuronsReport {
        url: args.url.as_str().to_owned(),
        tenant: args.tenant,
        auth,
        capability: plan.capability.clone(),
        run: plan.run.clone(),
        neurons,
        idle_neurons: idle,
        idle_registered: idle_total.registered,
        idle_leases,
        concurrency: args.concurrency,
        publishers,
        max_outstanding: max_outstanding as u64,
        warmup: args.warmup,
        window: args.duration,
        acks: total.acks,
        leases: total.leases,
        leased_before_reply: total.leased_before_reply,
        redeliveries: total.redeliveries,
        stale: total.stale,
        foreign: total.foreign,
        cancels: total.cancels,
        streams: total.streams,
        registered: total.registered,
        comments: total.comments,
        publish_to_lease: total.publish_to_lease.summary(),
        submit_to_lease: total.submit_to_lease.summary(),
        publish: total.publish.summary(),
        ack: total.ack.summary(),
        stream_open: total.stream_open.summary(),
        errors: total.errors,
    }))
}

/// Publishes whenever an outstanding-intent slot is free, until the end.
async fn publisher(client: Client, plan: Arc<Plan>) -> Tally {
    let mut tally = Tally::default();
    loop {
        // The semaphore is never closed, so an error only means "stop".
        let Ok(Ok(permit)) = timeout_at(plan.end, plan.slots.acquire()).await else {
            break;
        };
        // The slot comes back when a neuron acks the intent.
        permit.forget();
        let call = client.signed(Method::POST, "/intent", &[], plan.publish_body());
        let Ok(result) = timeout_at(plan.end, call).await else {
            break;
        };
        let retry_after = match result {
            Ok(reply) if reply.status.is_success() => {
                let replied = reply.started + reply.latency;
                if reply.started >= plan.measure_start {
                    tally.publish.record(reply.latency);
                }
                match intent_id(&reply.body) {
                    Some(id) => {
                        if let Some(delivery) = plan.matcher.published(id, reply.started, replied) {
                            delivery.record(&mut tally, plan.measure_start);
                        }
                    }
                    // Published but unmatchable: its ack still frees the slot.
                    None => tally
                        .errors
                        .add("publish 2xx-without-id".to_owned(), || reply.snippet()),
                }
                continue;
            }
            Ok(reply) => {
                tally.failed_reply("publish", &reply);
                reply.retry_after
            }
            Err(err) => {
                tally.failed_call("publish", &err);
                None
            }
        };
        plan.slots.add_permits(1);
        plan.pause(retry_after.map_or(PUBLISH_BACKOFF, |r| r.max(PUBLISH_BACKOFF)))
            .await;
    }
    tally
}

/// The `id` of a publish reply; a numeric id is accepted too.
fn intent_id(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    match value.get("id")? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// How a neuron settles a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settle {
    /// This run's task: ack, measure, free a publisher slot.
    Ack,
    /// An earlier run's task: ack to drain it, measure nothing.
    Drain,
    /// Not a load-generator task: hand it back untouched (refunded nack).
    HandBack,
}

/// One neuron: (re)opens its stream on `client`, registers, and settles
/// every lease through `frames` until the end; then closes the stream and
/// waits for its settling calls.
async fn neuron(id: String, client: Client, frames: Frames, plan: Arc<Plan>) -> Tally {
    let mut tally = Tally::default();
    let mut settling: JoinSet<Tally> = JoinSet::new();
    let path = format!("/neuron/events?neuronId={}", crate::sign::quote(&id));
    while Instant::now() < plan.end {
        let open = client.open_stream(&path, &plan.token);
        let Ok(opened) = timeout_at(plan.end, open).await else {
            break;
        };
        let mut stream = match opened {
            Ok(stream) if stream.status == StatusCode::OK && stream.event_stream => stream,
            Ok(stream) => {
                let kind = format!("events {}", stream.status.as_u16());
                let status = stream.status;
                let body = timeout_at(plan.end, client.stream_snippet(stream)).await;
                let detail = match body {
                    Ok(text) if status == StatusCode::OK => {
                        format!("not text/event-stream: {text}")
                    }
                    Ok(text) => text,
                    Err(_) => String::new(),
                };
                tally.errors.add(kind, || detail);
                plan.pause(RECONNECT_PAUSE).await;
                continue;
            }
            Err(err) => {
                tally.failed_call("events", &err);
                plan.pause(RECONNECT_PAUSE).await;
                continue;
            }
        };
        tally.streams += 1;
        tally.stream_open.record(stream.latency);

        // The stream is open: register (the gateway queues frames meanwhile).
        let register = frames.post("/neuron/register", &plan.token, plan.register_body(&id));
        let Ok(registered) = timeout_at(plan.end, register).await else {
            break;
        };
        match registered {
            Ok(reply) if reply.status.is_success() => {}
            Ok(reply) => {
                tally.failed_reply("register", &reply);
                plan.pause(RECONNECT_PAUSE).await;
                continue;
            }
            Err(err) => {
                tally.failed_call("register", &err);
                plan.pause(RECONNECT_PAUSE).await;
                continue;
            }
        }

        let mut parser = SseParser::default();
        let mut events = Vec::new();
        let mut comments_before = 0;
        loop {
            let Ok(frame) = timeout_at(plan.end, stream.body.frame()).await else {
                break;
            };
            let chunk = match frame {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(chunk) => chunk,
                    // Trailers: nothing to parse.
                    Err(_) => continue,
                },
                Some(Err(err)) => {
                    tally
                        .errors
                        .add("events body".to_owned(), || err.to_string());
                    break;
                }
                None => {
                    tally.errors.add("events closed".to_owned(), || {
                        "the gateway ended the stream".to_owned()
                    });
                    break;
                }
            };
            let arrived = Instant::now();
            if let Err(err) = parser.feed(&chunk, &mut events) {
                tally
                    .errors
                    .add("events framing".to_owned(), || err.to_string());
                break;
            }
            tally.comments += parser.comments() - comments_before;
            comments_before = parser.comments();
            let mut disconnected = false;
            for event in events.drain(..) {
                disconnected |=
                    on_event(&event, arrived, &frames, &plan, &mut tally, &mut settling);
            }
            while let Some(done) = settling.try_join_next() {
                merge_settled(&mut tally, done);
            }
            if disconnected {
                break;
            }
        }
        // Dropping the body closes this stream's connection.
        drop(stream);
        plan.pause(RECONNECT_PAUSE).await;
    }
    while let Some(done) = settling.join_next().await {
        merge_settled(&mut tally, done);
    }
    tally
}

fn merge_settled(tally: &mut Tally, done: Result<Tally, tokio::task::JoinError>) {
    match done {
        Ok(settled) => tally.merge(settled),
        Err(err) => tally
            .errors
            .add("settle panicked".to_owned(), || err.to_string()),
    }
}

/// Handles one server frame; `true` when the gateway said it disconnects.
fn on_event(
    event: &SseEvent,
    arrived: Instant,
    frames: &Frames,
    plan: &Arc<Plan>,
    tally: &mut Tally,
    settling: &mut JoinSet<Tally>,
) -> bool {
    match event.event.as_str() {
        "lease" => {
            let Some(lease) = sse::parse_lease(&event.data) else {
                tally
                    .errors
                    .add("lease unparsable".to_owned(), || event.data.clone());
                return false;
            };
            let how = match lease.run.as_deref() {
                Some(run) if run == plan.run => {
                    if arrived >= plan.measure_start {
                        tally.leases += 1;
                        if lease.attempt > 0 {
                            tally.redeliveries += 1;
                        }
                    }
                    if lease.attempt == 0
                        && let Some(delivery) = plan.matcher.leased(lease.task_id, arrived)
                    {
                        delivery.record(tally, plan.measure_start);
                    }
                    Settle::Ack
                }
                Some(_) => {
                    tally.stale += 1;
                    Settle::Drain
                }
                None => {
                    tally.foreign += 1;
                    Settle::HandBack
                }
            };
            settling.spawn(settle(
                frames.clone(),
                Arc::clone(plan),
                lease.lease_id,
                how,
            ));
            false
        }
        "registered" => {
            tally.registered += 1;
            false
        }
        "cancel" => {
            tally.cancels += 1;
            false
        }
        "disconnect" => {
            tally
                .errors
                .add("events disconnect".to_owned(), || event.data.clone());
            true
        }
        other => {
            tally
                .errors
                .add(format!("events {other}"), || event.data.clone());
            false
        }
    }
}

/// Acks (or hands back) one lease.
async fn settle(frames: Frames, plan: Arc<Plan>, lease_id: String, how: Settle) -> Tally {
    let mut tally = Tally::default();
    let now = sse::iso8601(SystemTime::now());
    let (path, op, body) = match how {
        Settle::Ack | Settle::Drain => (
            "/neuron/ack",
            "ack",
            json!({
                "type": "ack",
                "leaseId": lease_id,
                "output": {"ok": true},
                "completedAt": now,
            }),
        ),
        Settle::HandBack => (
            "/neuron/nack",
            "nack",
            json!({
                "type": "nack",
                "leaseId": lease_id,
                "kind": "retryable",
                "reason": "no handler registered for capability",
                "failedAt": now,
            }),
        ),
    };
    let call = frames.post(path, &plan.token, json_bytes(&body));
    let Ok(result) = timeout_at(plan.end, call).await else {
        return tally;
    };
    match result {
        Ok(reply) if reply.status.is_success() => {
            if how == Settle::Ack {
                plan.slots.add_permits(1);
                if reply.started + reply.latency >= plan.measure_start {
                    tally.ack.record(reply.latency);
                    tally.acks += 1;
                }
            }
        }
        Ok(reply) => tally.failed_reply(op, &reply),
        Err(err) => tally.failed_call(op, &err),
    }
    tally
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        let now = Instant::now();
        Plan {
            capability: "bench/neuron".to_owned(),
            run: "r1".to_owned(),
            token: "t".to_owned(),
            concurrency: 8,
            measure_start: now,
            end: now,
            seq: AtomicU64::new(3),
            slots: Semaphore::new(1),
            matcher: Matcher::default(),
        }
    }

    #[test]
    fn bodies_match_the_protocols() {
        let plan = plan();
        let publish: Value = serde_json::from_slice(&plan.publish_body()).unwrap();
        assert_eq!(
            publish,
            json!({
                "goal": "bench/neuron",
                "payload": {"agw_loadgen_run": "r1", "n": 3},
                "namespace": "default",
                "visibility": "private",
                "priority": 100,
                "max_attempts": 3,
                "backoff_base": 5,
            })
        );
        let register: Value = serde_json::from_slice(&plan.register_body("n-0")).unwrap();
        assert_eq!(
            register,
            json!({
                "type": "register",
                "neuronId": "n-0",
                "protocolVersion": "1.0.0",
                "capabilities": [{"type": "bench/neuron", "scope": "any", "concurrency": 8}],
            })
        );
    }

    #[test]
    fn connection_counts() {
        // The issue's run: 1,024 neurons, their own frame pools, one
        // publisher each.
        assert_eq!(connections(1024, 1, 1024, None), 3 * 1024 + 1);
        assert_eq!(connections(4, 8, 4, None), 4 + 32 + 4 + 1);
        // 10,000 neurons over 64 shared frame connections.
        assert_eq!(connections(10_000, 1, 64, Some(64)), 10_000 + 64 + 64 + 1);
    }

    /// A shared pool holds its calls in flight to its permits.
    #[tokio::test]
    async fn shared_frames_wait_for_a_permit() {
        let origin = crate::cli::parse_origin("http://127.0.0.1:9").unwrap();
        let gate = Arc::new(Semaphore::new(1));
        let frames = Frames {
            client: Client::new(&origin, None, Duration::from_secs(1)),
            gate: Some(Arc::clone(&gate)),
        };
        let held = gate.acquire().await.unwrap();
        let call = frames.post("/neuron/ack", "t", Bytes::new());
        tokio::pin!(call);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), call.as_mut())
                .await
                .is_err(),
            "no permit: the call has not started"
        );
        drop(held);
        // Port 9 (discard) refuses: the call ran and failed, it did not wait.
        assert!(call.await.is_err());
        assert_eq!(gate.available_permits(), 1);
    }

    #[test]
    fn intent_ids() {
        assert_eq!(
            intent_id(br#"{"id":"0190-ab","status":"open"}"#),
            Some("0190-ab".to_owned())
        );
        assert_eq!(intent_id(br#"{"id":7}"#), Some("7".to_owned()));
        assert_eq!(intent_id(br#"{"id":""}"#), None);
        assert_eq!(intent_id(br#"{"status":"open"}"#), None);
        assert_eq!(intent_id(b"<html>"), None);
    }

    #[test]
    fn matcher_pairs_either_order() {
        let m = Matcher::default();
        let t0 = Instant::now();
        let (t1, t2) = (t0 + Duration::from_millis(1), t0 + Duration::from_millis(3));
        // Reply first, then the lease.
        assert_eq!(m.published("a".to_owned(), t0, t1), None);
        assert_eq!(
            m.leased("a".to_owned(), t2),
            Some(Delivery {
                started: t0,
                replied: t1,
                arrived: t2
            })
        );
        // Lease first (it beat the 201), then the reply.
        assert_eq!(m.leased("b".to_owned(), t1), None);
        assert_eq!(
            m.published("b".to_owned(), t0, t2),
            Some(Delivery {
                started: t0,
                replied: t2,
                arrived: t1
            })
        );
        // Matched entries are gone; unrelated ids do not pair.
        assert_eq!(m.leased("a".to_owned(), t2), None);
        assert_eq!(m.published("c".to_owned(), t0, t1), None);
        assert_eq!(m.halves.lock().unwrap().len(), 2);
    }

    #[test]
    fn deliveries_record_in_the_window_only() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut tally = Tally::default();
        // Normal: 201 at +1ms, lease at +3ms → 2ms and 3ms.
        Delivery {
            started: t0,
            replied: t0 + ms(1),
            arrived: t0 + ms(3),
        }
        .record(&mut tally, t0);
        // Early lease: arrived before the 201 → 0 and counted.
        Delivery {
            started: t0,
            replied: t0 + ms(2),
            arrived: t0 + ms(1),
        }
        .record(&mut tally, t0);
        // Published during the warmup: not measured.
        Delivery {
            started: t0,
            replied: t0 + ms(1),
            arrived: t0 + ms(9),
        }
        .record(&mut tally, t0 + ms(1));
        let p2l = tally.publish_to_lease.summary();
        assert_eq!((p2l.count, p2l.p50_us, p2l.max_us), (2, 0, 2000));
        let s2l = tally.submit_to_lease.summary();
        assert_eq!((s2l.count, s2l.p50_us, s2l.max_us), (2, 1000, 3000));
        assert_eq!(tally.leased_before_reply, 1);
    }
}
