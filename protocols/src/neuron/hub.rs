//! Live neuron sessions: one per (tenant, neuronId), each with its SSE sender,
//! its registered capabilities and its in-flight leases, and one dispatcher
//! task that leases jobs to it whenever a slot is free and work may be
//! waiting.
//!
//! The hub, not each dispatcher, listens to the store's wake-ups
//! ([`Hub::route`]): a wake-up for topic T reaches only the sessions that
//! registered T; one that names its job (SQLite: this process committed it)
//! wakes a single session that could take the job and has a free slot, which
//! passes it on if it fills up before its claims come back empty. So a
//! publish costs one claim, not one per connected neuron.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use agw_storage::{
    CapabilitySchema, ExpiredLease, Job, JobClaimParams, JobStore, Notifier, Scope, Store, Wake,
};

use super::schemas::SchemaRegistry;
use super::wire::{Capability, LeasePayload, ServerFrame, TaskPayload, iso, lease_id};
use crate::observe::Observer;

/// One connected neuron.
#[derive(Debug)]
pub struct Session {
    /// Random id of this stream.
    pub id: String,
    /// The token's tenant.
    pub tenant: String,
    /// The neuron's own id.
    pub neuron_id: String,
    /// The credential that opened it (API key id, or `jwt:<sub>`): a neuron
    /// id is bound to it while the neuron is connected.
    pub owner: String,
    tx: mpsc::Sender<ServerFrame>,
    /// Registered capabilities by type, each with the claim that leases to it.
    caps: Mutex<HashMap<String, Registered>>,
    /// Wake-ups the hub routed here (each about one job), not yet acted on.
    hints: Mutex<Vec<Arc<Wake>>>,
    /// Set when the dispatcher should fill every free slot (a slot freed
    /// while work may wait, capabilities changed, a wake-up that does not
    /// name its job); without it a pass claims once per routed wake-up.
    look: AtomicBool,
    /// Per capability type, what the last pass that filled every free slot
    /// left: see [`Looked`].
    looked: Mutex<HashMap<String, Looked>>,
    /// job id → (capability type, lease id): what counts against concurrency.
    in_flight: Mutex<HashMap<String, (String, String)>>,
    wake: Notify,
    /// Fires when the stream ends or a newer session replaces this one.
    pub closed: CancellationToken,
    /// The hub's job → (tenant, neuron) index, kept in step with `in_flight`.
    index: Arc<Mutex<HashMap<String, (String, String)>>>,
    /// When the stream opened.
    pub connected_at: DateTime<Utc>,
    /// The last heartbeat (the stream's opening until the first one).
    last_seen: Mutex<DateTime<Utc>>,
    /// The hub's topic → sessions index, kept in step with `caps`.
    routes: Arc<Routes>,
}

/// What a session knows about work waiting for one of its capabilities
/// beyond the wake-ups routed to it.
#[derive(Debug, Clone, Copy)]
struct Looked {
    /// Its last full look came back empty, and no wake-up about a job of the
    /// topic has been dropped since (the topic's drop count was `drops`
    /// then): a freed slot need not claim, as any job that arrives is
    /// routed to someone. Otherwise a freed slot looks.
    drops: Option<u64>,
}

/// A registered capability and the claim that leases its jobs to the session
/// (built once per registration; `lease_ms` is the capability's TTL or 0 for
/// the gateway's default, which the dispatcher fills in).
#[derive(Debug, Clone)]
struct Registered {
    cap: Capability,
    claim: JobClaimParams,
}

/// The lease-holder key of a neuron: stable across its reconnects, distinct per tenant.
pub fn holder_key(tenant: &str, neuron_id: &str) -> String {
    agw_storage::HolderKind::neuron_key(tenant, neuron_id)
}

impl Session {
    /// This neuron's lease-holder key.
    pub fn holder_key(&self) -> String {
        holder_key(&self.tenant, &self.neuron_id)
    }

    /// Queues a frame without waiting; `false` when the stream is gone or its
    /// queue is full (a client that stopped reading). For notices (cancel,
    /// revocation) that may be dropped: the lease state they describe is in
    /// the store either way.
    pub fn send(&self, frame: ServerFrame) -> bool {
        self.tx.try_send(frame).is_ok()
    }

    /// Queues a frame, waiting for room while the client is slow to read;
    /// `false` only once the session is closed. Leases go this way: a full
    /// queue holds the dispatcher back instead of ending it.
    pub async fn send_waiting(&self, frame: ServerFrame) -> bool {
        tokio::select! {
            sent = self.tx.send(frame) => sent.is_ok(),
            () = self.closed.cancelled() => false,
        }
    }

    /// Replaces the capability set and wakes the dispatcher.
    pub fn set_capabilities(self: &Arc<Self>, caps: &[Capability]) {
        let kinds: Vec<String> = caps.iter().map(|c| c.kind.clone()).collect();
        let old: Vec<String> = self.caps.lock().map_or_else(
            |_| Vec::new(),
            |mut c| {
                let old = c.keys().cloned().collect();
                *c = caps
                    .iter()
                    .map(|cap| (cap.kind.clone(), self.registered(cap, &kinds)))
                    .collect();
                old
            },
        );
        self.routes.set(self, &old, &kinds);
        self.look();
    }

    fn registered(&self, cap: &Capability, all_types: &[String]) -> Registered {
        Registered {
            cap: cap.clone(),
            claim: JobClaimParams {
                scope: Scope::Tenant(self.tenant.clone()),
                public_work: cap.accept_public,
                topic: Some(cap.kind.clone()),
                namespace: None,
                publisher: None,
                worker_id: self.neuron_id.clone(),
                holder_key: Some(self.holder_key()),
                capabilities: all_types.to_vec(),
                on_behalf_of: cap.on_behalf_of(),
                lease_ms: cap.lease_ttl_ms.unwrap_or(0),
                now: None,
            },
        }
    }

    /// The registered definition of `kind`, if any.
    pub fn capability(&self, kind: &str) -> Option<Capability> {
        self.caps
            .lock()
            .ok()
            .and_then(|c| c.get(kind).map(|r| r.cap.clone()))
    }

    /// Replaces one registered capability; `false` when it was not registered.
    pub fn update_capability(&self, cap: Capability) -> bool {
        let updated = self.caps.lock().ok().is_some_and(|mut c| {
            let kinds: Vec<String> = c.keys().cloned().collect();
            let fresh = self.registered(&cap, &kinds);
            c.get_mut(&cap.kind).map(|slot| *slot = fresh).is_some()
        });
        self.routes.slot_freed(&cap.kind);
        self.look();
        updated
    }

    /// Whether this session has a free slot for `topic`, and whether the
    /// hub should wake it for `hint`'s job there: it also has room in its
    /// queue (a client that stopped reading would hold the job back), and
    /// its claim could take the job.
    fn could_take(&self, topic: &str, hint: &agw_storage::JobHint) -> (bool, bool) {
        if self.closed.is_cancelled() {
            return (false, false);
        }
        let Some((limit, eligible)) = self.caps.lock().ok().and_then(|c| {
            c.get(topic).map(|r| {
                (
                    usize::try_from(r.cap.concurrency).unwrap_or(0),
                    hint.claimable_by(topic, &r.claim),
                )
            })
        }) else {
            return (false, false);
        };
        let free = self.in_flight_for(topic) < limit;
        (free, free && eligible && self.tx.capacity() > 0)
    }

    /// Wakes the dispatcher to fill every free slot.
    fn look(&self) {
        self.look.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// Hands this session a wake-up about one job and wakes its dispatcher.
    fn hint(&self, wake: Arc<Wake>) {
        if let Ok(mut h) = self.hints.lock() {
            h.push(wake);
        }
        self.wake.notify_one();
    }

    /// Records a lease as in flight (also for leases adopted after a restart).
    pub fn track(&self, job_id: &str, kind: &str, lease: &str) {
        if let Ok(mut f) = self.in_flight.lock() {
            f.insert(job_id.to_owned(), (kind.to_owned(), lease.to_owned()));
        }
        if let Ok(mut i) = self.index.lock() {
            i.insert(
                job_id.to_owned(),
                (self.tenant.clone(), self.neuron_id.clone()),
            );
        }
    }

    /// Frees a lease's slot; returns its lease id when it was in flight here.
    ///
    /// The dispatcher then looks for work only when some may wait that no
    /// routed wake-up covers: its last look filled every slot (or failed), or
    /// a wake-up about a job of the topic was dropped since (no session
    /// could take it then).
    pub fn release(&self, job_id: &str) -> Option<String> {
        let gone = self
            .in_flight
            .lock()
            .ok()
            .and_then(|mut f| f.remove(job_id));
        if let Some((kind, _)) = &gone {
            if let Ok(mut i) = self.index.lock() {
                i.remove(job_id);
            }
            let drops = self.routes.slot_freed(kind);
            let quiet = self
                .looked
                .lock()
                .ok()
                .and_then(|l| l.get(kind).and_then(|l| l.drops))
                .is_some_and(|seen| seen == drops);
            if !quiet {
                self.look();
            }
        }
        gone.map(|(_, l)| l)
    }

    fn in_flight_for(&self, kind: &str) -> usize {
        self.in_flight.lock().map_or(usize::MAX, |f| {
            f.values().filter(|(k, _)| k == kind).count()
        })
    }

    /// The registered capability of an in-flight lease.
    pub fn capability_of(&self, job_id: &str) -> Option<Capability> {
        let kind = self.in_flight.lock().ok()?.get(job_id)?.0.clone();
        self.capability(&kind)
    }

    /// Whether `job_id` is in flight here.
    pub fn holds(&self, job_id: &str) -> bool {
        self.in_flight.lock().is_ok_and(|f| f.contains_key(job_id))
    }

    // Read-only views for the operator console.

    /// Records a heartbeat.
    pub fn touch(&self) {
        if let Ok(mut t) = self.last_seen.lock() {
            *t = Utc::now();
        }
    }

    /// The last heartbeat, or the stream's opening before the first.
    pub fn last_seen(&self) -> DateTime<Utc> {
        self.last_seen.lock().map_or(self.connected_at, |t| *t)
    }

    /// The registered capabilities, by type.
    pub fn capabilities(&self) -> Vec<Capability> {
        let mut caps: Vec<Capability> = self
            .caps
            .lock()
            .map(|c| c.values().map(|r| r.cap.clone()).collect())
            .unwrap_or_default();
        caps.sort_by(|a, b| a.kind.cmp(&b.kind));
        caps
    }

    /// The leases in flight: (job id, capability type), by job id.
    pub fn leases(&self) -> Vec<(String, String)> {
        let mut leases: Vec<(String, String)> = self
            .in_flight
            .lock()
            .map(|f| f.iter().map(|(j, (k, _))| (j.clone(), k.clone())).collect())
            .unwrap_or_default();
        leases.sort();
        leases
    }
}

/// topic → the open sessions that registered it, in a ring the hub's
/// routing walks round-robin.
#[derive(Default)]
struct Routes {
    by_topic: Mutex<HashMap<String, Ring>>,
}

// Sessions point back at the routes: print counts, not the sessions.
impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `try_lock`: a session printed while the routes are held must not deadlock.
        let topics: Vec<(String, usize)> = self.by_topic.try_lock().map_or_else(
            |_| Vec::new(),
            |t| {
                t.iter()
                    .map(|(k, r)| (k.clone(), r.sessions.len()))
                    .collect()
            },
        );
        f.debug_struct("Routes")
            .field("sessions_by_topic", &topics)
            .finish()
    }
}

#[derive(Default)]
struct Ring {
    sessions: Vec<Arc<Session>>,
    /// Where the next search for a session to wake starts.
    next: usize,
    /// No session had a free slot for the topic at the last search: until a
    /// slot frees (or a session joins), a wake-up about a job wakes nobody
    /// without a search — with every slot of 10,000 sessions taken, a
    /// publish must not walk them all.
    saturated: bool,
    /// Wake-ups about a job that woke nobody (no session could take the job
    /// then): their jobs wait for a freed slot to look (see [`Looked`]).
    drops: u64,
}

impl Routes {
    /// Moves `session` from the rings of `old` to those of `new`; a closed
    /// session joins none (so `close`, which cancels first and then removes,
    /// cannot race a registration into leaving it behind).
    fn set(&self, session: &Arc<Session>, old: &[String], new: &[String]) {
        let Ok(mut by_topic) = self.by_topic.lock() else {
            return;
        };
        for kind in old {
            Self::leave(&mut by_topic, kind, session);
        }
        if session.closed.is_cancelled() {
            return;
        }
        for kind in new {
            let ring = by_topic.entry(kind.clone()).or_default();
            ring.sessions.push(session.clone());
            ring.saturated = false;
        }
    }

    /// A slot for `kind` freed (or its concurrency grew): searches resume.
    /// Returns the topic's count of dropped wake-ups.
    fn slot_freed(&self, kind: &str) -> u64 {
        let Ok(mut by_topic) = self.by_topic.lock() else {
            return u64::MAX;
        };
        by_topic.get_mut(kind).map_or(0, |ring| {
            ring.saturated = false;
            ring.drops
        })
    }

    /// The count of dropped wake-ups of `kind`.
    fn drops(&self, kind: &str) -> u64 {
        self.by_topic
            .lock()
            .map_or(u64::MAX, |t| t.get(kind).map_or(0, |r| r.drops))
    }

    fn leave(by_topic: &mut HashMap<String, Ring>, kind: &str, session: &Session) {
        if let Some(ring) = by_topic.get_mut(kind) {
            ring.sessions.retain(|s| !std::ptr::eq(&**s, session));
            if ring.sessions.is_empty() {
                by_topic.remove(kind);
            }
        }
    }

    /// Takes `session` out of every ring.
    fn remove(&self, session: &Session) {
        let kinds: Vec<String> = session
            .caps
            .lock()
            .map(|c| c.keys().cloned().collect())
            .unwrap_or_default();
        if let Ok(mut by_topic) = self.by_topic.lock() {
            for kind in &kinds {
                Self::leave(&mut by_topic, kind, session);
            }
        }
    }

    /// Forgets `kind` (revoked).
    fn drop_topic(&self, kind: &str) {
        if let Ok(mut by_topic) = self.by_topic.lock() {
            by_topic.remove(kind);
        }
    }
}

/// What the hub's dispatch did, for metrics: wake-ups it delivered to
/// sessions and the claims the dispatchers ran.
#[derive(Debug, Default)]
pub struct DispatchCounts {
    /// Store wake-ups the hub received.
    pub wakeups: AtomicU64,
    /// Sessions woken by them (one per wake-up that names its job, when a
    /// session could take it; every session of the topic otherwise).
    pub sessions_woken: AtomicU64,
    /// Wake-ups a session passed on because it filled up first.
    pub passed_on: AtomicU64,
    /// Claims that leased a job.
    pub claims_leased: AtomicU64,
    /// Claims that found nothing.
    pub claims_empty: AtomicU64,
}

/// Every live session of this replica, plus revoked capability types.
#[derive(Debug, Default)]
pub struct Hub {
    sessions: Mutex<HashMap<(String, String), Arc<Session>>>,
    revoked: Mutex<HashSet<String>>,
    /// job id → (tenant, neuron) of every in-flight lease, so settling a lease
    /// finds its holder without scanning sessions. Entries follow the neuron
    /// across reconnects (the key names the neuron, not the stream).
    index: Arc<Mutex<HashMap<String, (String, String)>>>,
    /// topic → sessions that registered it.
    routes: Arc<Routes>,
    /// Set once the wake-up router runs.
    router: OnceLock<()>,
    /// Dispatch counters.
    pub counts: DispatchCounts,
}

impl Hub {
    /// Opens a session for (tenant, neuron). A previous session of the same
    /// neuron is closed; its in-flight leases carry over (they are still the
    /// neuron's until they settle or expire).
    ///
    /// A neuron id belongs to the credential connected under it: another
    /// credential of the tenant (another token subject or key) cannot replace
    /// the session, and gets the owner back as `Err`.
    pub fn open(
        &self,
        tenant: &str,
        neuron_id: &str,
        owner: &str,
        tx: mpsc::Sender<ServerFrame>,
    ) -> Result<Arc<Session>, String> {
        if let Some(current) = self.get(tenant, neuron_id)
            && current.owner != owner
        {
            return Err(current.owner.clone());
        }
        let session = Arc::new(Session {
            id: agw_storage::new_job_id(),
            tenant: tenant.to_owned(),
            neuron_id: neuron_id.to_owned(),
            owner: owner.to_owned(),
            tx,
            caps: Mutex::default(),
            hints: Mutex::default(),
            look: AtomicBool::new(false),
            looked: Mutex::default(),
            in_flight: Mutex::default(),
            wake: Notify::new(),
            closed: CancellationToken::new(),
            index: self.index.clone(),
            connected_at: Utc::now(),
            last_seen: Mutex::new(Utc::now()),
            routes: self.routes.clone(),
        });
        let old =
            self.sessions.lock().ok().and_then(|mut s| {
                s.insert((tenant.to_owned(), neuron_id.to_owned()), session.clone())
            });
        if let Some(old) = old {
            if let (Ok(from), Ok(mut to)) = (old.in_flight.lock(), session.in_flight.lock()) {
                to.extend(from.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            old.closed.cancel();
            self.routes.remove(&old);
        }
        Ok(session)
    }

    /// Forgets `session` if it is still the current one of its neuron.
    pub fn close(&self, session: &Session) {
        session.closed.cancel();
        self.routes.remove(session);
        if let Ok(mut s) = self.sessions.lock() {
            let key = (session.tenant.clone(), session.neuron_id.clone());
            if s.get(&key).is_some_and(|cur| cur.id == session.id) {
                s.remove(&key);
                // No successor adopts its leases: unindex them (a later
                // reconnect re-adopts live ones through its heartbeats).
                if let (Ok(f), Ok(mut i)) = (session.in_flight.lock(), self.index.lock()) {
                    for job_id in f.keys() {
                        i.remove(job_id);
                    }
                }
            }
        }
    }

    /// The current session of (tenant, neuron).
    pub fn get(&self, tenant: &str, neuron_id: &str) -> Option<Arc<Session>> {
        self.sessions
            .lock()
            .ok()?
            .get(&(tenant.to_owned(), neuron_id.to_owned()))
            .cloned()
    }

    /// Number of live sessions.
    pub fn len(&self) -> usize {
        self.sessions.lock().map_or(0, |s| s.len())
    }

    /// Whether there are no sessions.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The session holding `job_id`, if any.
    pub fn holder_of(&self, job_id: &str) -> Option<Arc<Session>> {
        let (tenant, neuron) = self.index.lock().ok()?.get(job_id).cloned()?;
        self.get(&tenant, &neuron).filter(|s| s.holds(job_id))
    }

    /// Tells the holder of `job_id` to stop (task cancelled, lease expired).
    pub fn revoke_lease(&self, job_id: &str, reason: &str) {
        if let Some(s) = self.holder_of(job_id)
            && let Some(lease) = s.release(job_id)
        {
            s.send(ServerFrame::Cancel {
                lease_id: lease,
                reason: reason.to_owned(),
                cancelled_at: iso(Utc::now()),
            });
        }
    }

    /// Pushes `cancel` for every lease the expiry sweep voided.
    pub fn leases_expired(&self, expired: &[ExpiredLease]) {
        for e in expired {
            if let Some(s) = self.holder_of(&e.job_id) {
                s.release(&e.job_id);
                s.send(ServerFrame::Cancel {
                    lease_id: lease_id(&e.job_id, &e.token),
                    reason: "lease expired".into(),
                    cancelled_at: iso(Utc::now()),
                });
            }
        }
    }

    /// Disables a capability type: connected neurons drop it and are told so;
    /// later registrations of it are refused. Returns how many sessions had it.
    pub fn revoke_capability(&self, kind: &str, reason: &str) -> usize {
        if let Ok(mut r) = self.revoked.lock() {
            r.insert(kind.to_owned());
        }
        self.routes.drop_topic(kind);
        let sessions: Vec<_> = self
            .sessions
            .lock()
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default();
        let mut n = 0;
        for s in sessions {
            let had = s.caps.lock().is_ok_and(|mut c| c.remove(kind).is_some());
            if had {
                n += 1;
                s.send(ServerFrame::CapabilityRevoked {
                    capability: kind.to_owned(),
                    reason: reason.to_owned(),
                    revoked_at: iso(Utc::now()),
                });
            }
        }
        n
    }

    /// Every live session of this replica (for the operator console).
    pub fn sessions(&self) -> Vec<Arc<Session>> {
        self.sessions
            .lock()
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether an operator revoked `kind`.
    pub fn is_revoked(&self, kind: &str) -> bool {
        self.revoked.lock().is_ok_and(|r| r.contains(kind))
    }

    /// Starts routing `notifier`'s wake-ups to the sessions (once; later
    /// calls do nothing). Subscribes before returning, so no wake-up sent
    /// after this call is missed; the task ends with the hub.
    pub fn start_routing(self: &Arc<Self>, notifier: &Notifier) {
        if self.router.set(()).is_err() {
            return;
        }
        let mut wakeups = notifier.subscribe();
        let hub = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let wake = wakeups.recv().await;
                let Some(hub) = Weak::upgrade(&hub) else {
                    return;
                };
                hub.counts.wakeups.fetch_add(1, Ordering::Relaxed);
                match wake {
                    Ok(wake) => hub.route(&wake, None),
                    // Missed some: every session looks again.
                    Err(RecvError::Lagged(_)) => hub.wake_every_session(),
                    Err(RecvError::Closed) => return,
                }
            }
        });
    }

    /// Delivers one store wake-up: to every session when it stands for
    /// every topic; to every session of its topic when it does not say which
    /// job it is about; otherwise to one session of the topic (round-robin,
    /// skipping `except`) that could take the job and has a free slot — or
    /// to none, when every such session is full: each of them claims again
    /// when a slot frees.
    pub fn route(&self, wake: &Arc<Wake>, except: Option<&Session>) {
        if wake.is_all() {
            self.wake_every_session();
            return;
        }
        let Ok(mut by_topic) = self.routes.by_topic.lock() else {
            return;
        };
        let Some(ring) = by_topic.get_mut(wake.topic()) else {
            return;
        };
        let Some(hint) = wake.hint() else {
            for s in &ring.sessions {
                s.look();
            }
            self.counts
                .sessions_woken
                .fetch_add(ring.sessions.len() as u64, Ordering::Relaxed);
            return;
        };
        if ring.saturated {
            ring.drops += 1;
            return;
        }
        let n = ring.sessions.len();
        let mut any_free = false;
        for i in 0..n {
            let at = (ring.next + i) % n;
            let s = &ring.sessions[at];
            let (free, take) = s.could_take(wake.topic(), hint);
            any_free |= free;
            if !take || except.is_some_and(|e| std::ptr::eq(e, &**s)) {
                continue;
            }
            ring.next = (at + 1) % n;
            s.hint(wake.clone());
            self.counts.sessions_woken.fetch_add(1, Ordering::Relaxed);
            return;
        }
        ring.saturated = !any_free;
        ring.drops += 1;
    }

    fn wake_every_session(&self) {
        if let Ok(s) = self.sessions.lock() {
            for session in s.values() {
                session.look();
            }
            self.counts
                .sessions_woken
                .fetch_add(s.len() as u64, Ordering::Relaxed);
        }
    }
}

/// The lease frame for a freshly claimed job, with its capability's
/// registered schemas when there are any.
pub fn lease_frame(job: &Job, schema: Option<&CapabilitySchema>) -> Option<ServerFrame> {
    let lease = job.lease.as_ref()?;
    let workflow_id = job
        .metadata
        .as_ref()
        .and_then(|m| m.get("workflowId"))
        .and_then(|w| w.as_str())
        .map_or_else(|| job.id.clone(), str::to_owned);
    Some(ServerFrame::Lease {
        lease: Box::new(LeasePayload {
            lease_id: lease_id(&job.id, &lease.token),
            expires_at: iso(lease.expires_at),
            task: TaskPayload {
                task_id: job.id.clone(),
                workflow_id,
                capability: job.topic.clone(),
                on_behalf_of: job.on_behalf_of.clone(),
                input: job.input.clone(),
                attempt: (job.attempts - 1).max(0),
                metadata: job.metadata.clone().filter(serde_json::Value::is_object),
            },
            input_schema: schema.map(|s| s.input_schema.clone()),
            output_schema: schema.and_then(|s| s.output_schema.clone()),
        }),
        sent_at: iso(Utc::now()),
    })
}

/// How a dispatcher's pass over one capability ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// Every slot is taken; work may still wait.
    Full,
    /// As many claims as wake-ups about a job were routed here, all leased.
    Done,
    /// The claim came back empty: nothing this session can take.
    Empty,
    /// The store failed; look again later.
    Failed,
}

/// Wake-ups handed to a dispatcher and not yet settled: when it ends they
/// go to another session, so none is lost with it.
struct Held<'a> {
    hub: &'a Hub,
    session: &'a Session,
    wakes: Vec<Arc<Wake>>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let mut rest = std::mem::take(&mut self.wakes);
        if let Ok(mut h) = self.session.hints.lock() {
            rest.append(&mut h);
        }
        for wake in &rest {
            self.hub.route(wake, Some(self.session));
        }
    }
}

/// Leases work to `session` until it closes: fills every capability's free
/// slots, then sleeps until the hub wakes it (a wake-up for one of its
/// topics, see [`Hub::route`]) or a slot frees. Never more leases in flight
/// per capability than its concurrency.
///
/// A wake-up about one job is settled by the pass over its topic: consumed
/// when the claims came back empty (the job is taken, or not due yet); passed
/// on to another session when this one filled up first; kept for the next
/// pass when the store failed.
pub async fn dispatch(
    store: Store,
    schemas: Arc<SchemaRegistry>,
    hub: Arc<Hub>,
    session: Arc<Session>,
    default_ttl_ms: i64,
    observer: Arc<dyn Observer>,
) {
    let mut held = Held {
        hub: &hub,
        session: &session,
        wakes: Vec::new(),
    };
    loop {
        if let Ok(mut h) = session.hints.lock() {
            held.wakes.append(&mut h);
        }
        let looking = session.look.swap(false, Ordering::AcqRel);
        let regs: Vec<Registered> = session
            .caps
            .lock()
            .map(|c| c.values().cloned().collect())
            .unwrap_or_default();
        let mut passes: HashMap<String, Pass> = HashMap::with_capacity(regs.len());
        // Jobs leased in this pass: the wake-ups about them are settled.
        let mut taken: HashSet<String> = HashSet::new();
        for reg in regs {
            let kind = reg.cap.kind.as_str();
            let limit = usize::try_from(reg.cap.concurrency).unwrap_or(0);
            // One claim per routed wake-up, unless every free slot is to be filled.
            let budget = if looking {
                usize::MAX
            } else {
                held.wakes.iter().filter(|w| w.topic() == kind).count()
            };
            // Read before the first claim: a wake-up dropped after this may
            // be about a job that claim did not see.
            let drops = looking.then(|| hub.routes.drops(kind));
            let mut leased = 0;
            let pass = loop {
                if session.in_flight_for(kind) >= limit {
                    break Pass::Full;
                }
                if leased >= budget {
                    break Pass::Done;
                }
                if session.closed.is_cancelled() {
                    return;
                }
                let mut params = reg.claim.clone();
                if reg.cap.lease_ttl_ms.is_none() {
                    params.lease_ms = default_ttl_ms;
                }
                match store.job_claim(params).await {
                    Ok(Some(job)) => {
                        hub.counts.claims_leased.fetch_add(1, Ordering::Relaxed);
                        leased += 1;
                        taken.insert(job.id.clone());
                        observer.leased(&job);
                        // Without its schema the lease still goes out: the
                        // neuron falls back to the schemas it registered itself.
                        let schema = schemas.get(&store, &job.topic).await.unwrap_or_else(|e| {
                            tracing::warn!(error = %e, capability = %job.topic, "schema lookup failed");
                            None
                        });
                        let Some(frame) = lease_frame(&job, schema.as_ref().map(|c| &c.schema))
                        else {
                            break Pass::Done;
                        };
                        if let ServerFrame::Lease { lease, .. } = &frame {
                            session.track(&job.id, kind, &lease.lease_id);
                        }
                        if !session.send_waiting(frame).await {
                            // The stream is gone; the lease lapses after its TTL.
                            return;
                        }
                    }
                    Ok(None) => {
                        hub.counts.claims_empty.fetch_add(1, Ordering::Relaxed);
                        break Pass::Empty;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, neuron = %session.neuron_id, "lease claim failed");
                        tokio::select! {
                            () = session.closed.cancelled() => return,
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                        session.look();
                        break Pass::Failed;
                    }
                }
            };
            if let Some(drops) = drops
                && let Ok(mut l) = session.looked.lock()
            {
                let drops = (pass == Pass::Empty).then_some(drops);
                l.insert(reg.cap.kind.clone(), Looked { drops });
            }
            passes.insert(reg.cap.kind, pass);
        }
        let mut retry = Vec::new();
        for wake in held.wakes.drain(..) {
            if wake.hint().is_some_and(|h| taken.contains(&h.id)) {
                continue;
            }
            match passes.get(wake.topic()) {
                // Its job is gone (or not due: the due sweep wakes the topic).
                Some(Pass::Empty) => {}
                Some(Pass::Failed) => retry.push(wake),
                // This session took other work instead, or had no room, or
                // no longer offers the topic: another session may take it.
                Some(Pass::Done | Pass::Full) | None => {
                    hub.counts.passed_on.fetch_add(1, Ordering::Relaxed);
                    hub.route(&wake, Some(&*session));
                }
            }
        }
        if !retry.is_empty() {
            held.wakes = retry;
            session.wake.notify_one();
        }
        tokio::select! {
            () = session.closed.cancelled() => return,
            () = session.wake.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agw_storage::{JobHint, JobInsertParams, NewJob, Protocol, Visibility};
    use futures_util::FutureExt as _;
    use serde_json::json;

    fn cap(kind: &str, concurrency: i64, accept_public: bool) -> Capability {
        serde_json::from_value(json!({
            "type": kind, "scope": "any", "concurrency": concurrency, "acceptPublic": accept_public,
        }))
        .unwrap()
    }

    fn open(hub: &Hub, tenant: &str, neuron: &str, caps: &[Capability]) -> Arc<Session> {
        let (tx, rx) = mpsc::channel(64);
        // Kept open for the test's lifetime (no frame is read: tests that
        // read the stream use `connect`).
        Box::leak(Box::new(rx));
        let s = hub.open(tenant, neuron, "k", tx).unwrap();
        s.set_capabilities(caps);
        s
    }

    fn wake(topic: &str, tenant: &str, public: bool, target: Option<&str>) -> Arc<Wake> {
        Arc::new(Wake::new(
            topic,
            Some(JobHint {
                id: agw_storage::new_job_id(),
                tenant: tenant.into(),
                namespace: "default".into(),
                public,
                target_worker: target.map(str::to_owned),
                required_capability: None,
                on_behalf_of: None,
            }),
        ))
    }

    /// Takes the wake-ups routed to `s`.
    fn hinted(s: &Session) -> usize {
        s.hints.lock().unwrap().drain(..).count()
    }

    /// Whether `s`'s dispatcher was woken (takes the wake-up).
    fn woken(s: &Session) -> bool {
        s.wake.notified().now_or_never().is_some()
    }

    #[test]
    fn a_job_wakes_one_session_that_could_take_it() {
        let hub = Hub::default();
        let t = |n| cap("t/x", n, false);
        let a1 = open(&hub, "acme", "n1", &[t(1)]);
        let a2 = open(&hub, "acme", "n2", &[t(1)]);
        let evil = open(&hub, "evil", "n1", &[t(1)]);
        let public = open(&hub, "evil", "np", &[cap("t/x", 1, true)]);
        let other = open(&hub, "acme", "n3", &[cap("t/y", 1, false)]);
        let all = [&a1, &a2, &evil, &public, &other];
        for s in all {
            assert!(woken(s), "registering looks for work");
        }
        // A private job of acme: one acme session, round-robin.
        hub.route(&wake("t/x", "acme", false, None), None);
        hub.route(&wake("t/x", "acme", false, None), None);
        assert_eq!(all.map(|s| hinted(s)), [1, 1, 0, 0, 0]);
        // Full sessions are skipped; with every one full, nobody is woken
        // (each claims again when a slot frees).
        a1.track("j1", "t/x", "j1.t");
        hub.route(&wake("t/x", "acme", false, None), None);
        assert_eq!(all.map(|s| hinted(s)), [0, 1, 0, 0, 0]);
        a2.track("j2", "t/x", "j2.t");
        hub.route(&wake("t/x", "acme", false, None), None);
        assert_eq!(all.map(|s| hinted(s)), [0; 5]);
        a1.release("j1");
        assert!(
            woken(&a1) && a1.look.load(Ordering::Acquire),
            "a freed slot looks"
        );
        // Targeted work goes to its worker, of the job's tenant.
        a2.release("j2");
        hub.route(&wake("t/x", "acme", false, Some("n2")), None);
        hub.route(&wake("t/x", "acme", false, Some("n2")), None);
        assert_eq!(all.map(|s| hinted(s)), [0, 2, 0, 0, 0]);
        // Another tenant's public job: only the session that takes public work.
        hub.route(&wake("t/x", "other", true, None), None);
        assert_eq!(all.map(|s| hinted(s)), [0, 0, 0, 1, 0]);
        // ...and its own tenant's sessions, which take own public jobs.
        hub.route(&wake("t/x", "evil", true, None), None);
        hub.route(&wake("t/x", "evil", true, None), None);
        assert_eq!(all.map(|s| hinted(s)), [0, 0, 1, 1, 0]);
        // Passing on skips the session that passes.
        hub.route(&wake("t/x", "other", true, None), Some(&*public));
        assert_eq!(all.map(|s| hinted(s)), [0; 5]);
        // A wake-up that does not name its job wakes every session of its topic.
        for s in all {
            woken(s);
        }
        hub.route(&Arc::new(Wake::topic_only("t/x")), None);
        assert_eq!(all.map(|s| woken(s)), [true, true, true, true, false]);
        // A closed session leaves the routes; a revoked topic has none.
        hub.close(&a1);
        for _ in 0..2 {
            hub.route(&wake("t/x", "acme", false, None), None);
        }
        assert_eq!(all.map(|s| hinted(s)), [0, 2, 0, 0, 0]);
        for s in all {
            woken(s);
        }
        hub.revoke_capability("t/x", "test");
        hub.route(&Arc::new(Wake::topic_only("t/x")), None);
        hub.route(&wake("t/x", "acme", false, None), None);
        assert_eq!(all.map(|s| woken(s) || hinted(s) > 0), [false; 5]);
        assert!(hub.routes.by_topic.lock().unwrap().keys().eq(["t/y"]));
    }

    /// With every slot of a topic taken, a wake-up about a job searches
    /// once; later ones wake nobody without a search until a slot frees.
    #[test]
    fn a_topic_with_every_slot_taken_is_not_searched_again() {
        let hub = Hub::default();
        let a = open(&hub, "acme", "a", &[cap("t/x", 1, false)]);
        let b = open(&hub, "evil", "b", &[cap("t/x", 1, false)]);
        let saturated = || hub.routes.by_topic.lock().unwrap()["t/x"].saturated;
        // b is free but cannot take acme's job: a search, no saturation.
        a.track("j1", "t/x", "j1.t");
        hub.route(&wake("t/x", "acme", false, None), None);
        assert!(!saturated());
        b.track("j2", "t/x", "j2.t");
        hub.route(&wake("t/x", "acme", false, None), None);
        assert!(saturated());
        assert_eq!((hinted(&a), hinted(&b)), (0, 0));
        // A freed slot (here b's: of no use to acme's job) resumes searches.
        b.release("j2");
        assert!(!saturated());
        hub.route(&wake("t/x", "evil", false, None), None);
        assert_eq!((hinted(&a), hinted(&b)), (0, 1));
        // So does a session joining the topic.
        b.track("j3", "t/x", "j3.t");
        hub.route(&wake("t/x", "acme", false, None), None);
        assert!(saturated());
        let c = open(&hub, "acme", "c", &[cap("t/x", 1, false)]);
        assert!(!saturated());
        hub.route(&wake("t/x", "acme", false, None), None);
        assert_eq!(hinted(&c), 1);
    }

    /// A SQLite store in a fresh directory.
    async fn sqlite() -> Store {
        let dir = std::env::temp_dir().join(format!("agw-hub-{}", agw_storage::new_token()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}", dir.join("s.db").display());
        Store::connect(&url, &agw_storage::ConnectOptions::default())
            .await
            .unwrap()
    }

    async fn publish(store: &Store, tenant: &str, topic: &str) -> String {
        let id = agw_storage::new_job_id();
        store
            .job_insert(JobInsertParams {
                job: NewJob {
                    id: id.clone(),
                    tenant: tenant.into(),
                    protocol: Protocol::Neuron,
                    topic: topic.into(),
                    namespace: "default".into(),
                    visibility: Visibility::Private,
                    priority: 100,
                    delay_ms: 0,
                    max_attempts: 3,
                    backoff_base_ms: 1000,
                    target_worker: None,
                    required_capability: None,
                    on_behalf_of: None,
                    input: json!({}),
                    metadata: None,
                },
                idempotency: None,
                max_open_per_tenant: None,
                now: None,
            })
            .await
            .unwrap();
        id
    }

    /// A session with its dispatcher running, and its stream.
    fn connect(
        store: &Store,
        hub: &Arc<Hub>,
        tenant: &str,
        neuron: &str,
        caps: &[Capability],
    ) -> (Arc<Session>, mpsc::Receiver<ServerFrame>) {
        let (tx, rx) = mpsc::channel(64);
        let s = hub.open(tenant, neuron, "k", tx).unwrap();
        hub.start_routing(store.notifier());
        start(store, hub, &s);
        s.set_capabilities(caps);
        (s, rx)
    }

    /// The task id of the next lease frame on `rx`.
    async fn next_lease(rx: &mut mpsc::Receiver<ServerFrame>) -> String {
        let frame = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .expect("a lease within 20 s")
            .expect("stream open");
        match frame {
            ServerFrame::Lease { lease, .. } => lease.task.task_id,
            other => panic!("not a lease: {other:?}"),
        }
    }

    /// Waits (bounded) until `done` holds.
    async fn until(what: &str, done: impl Fn() -> bool) {
        tokio::time::timeout(Duration::from_secs(20), async {
            while !done() {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{what}"));
    }

    /// Fifty idle neurons of one capability: each publish costs one claim
    /// and wakes one dispatcher, and every job is leased once.
    #[tokio::test]
    async fn a_publish_costs_one_claim_however_many_sessions_wait() {
        let store = sqlite().await;
        let hub = Arc::new(Hub::default());
        let mut streams = Vec::new();
        for i in 0..50 {
            streams.push(connect(
                &store,
                &hub,
                "acme",
                &format!("n{i}"),
                &[cap("t/x", 1, false)],
            ));
        }
        // Another tenant's neuron of the same topic is never woken for acme's jobs.
        let (evil, mut evil_rx) = connect(&store, &hub, "evil", "n0", &[cap("t/x", 1, false)]);
        // Registration: every dispatcher looks once, finds nothing.
        until("every dispatcher looked", || {
            hub.counts.claims_empty.load(Ordering::Relaxed) == 51
        })
        .await;
        let mut leased = HashSet::new();
        for round in 0..5 {
            let id = publish(&store, "acme", "t/x").await;
            let got = futures_util::future::select_all(
                streams.iter_mut().map(|(_, rx)| Box::pin(next_lease(rx))),
            )
            .await
            .0;
            assert_eq!(got, id);
            assert!(leased.insert(got));
            assert_eq!(hub.counts.claims_leased.load(Ordering::Relaxed), round + 1);
            assert_eq!(
                hub.counts.claims_empty.load(Ordering::Relaxed),
                51,
                "no empty claim"
            );
            assert_eq!(hub.counts.sessions_woken.load(Ordering::Relaxed), round + 1);
        }
        // Each went to a different neuron (a full one is not woken).
        let holders: HashSet<_> = leased
            .iter()
            .map(|j| hub.holder_of(j).unwrap().id.clone())
            .collect();
        assert_eq!(holders.len(), 5);
        assert!(evil.in_flight.lock().unwrap().is_empty());
        assert!(evil_rx.try_recv().is_err());
    }

    /// Concurrency holds under routed wake-ups; freed slots take what
    /// waited; a session closing with a wake-up in hand passes it on.
    #[tokio::test]
    async fn leases_respect_concurrency_and_none_are_lost() {
        let store = sqlite().await;
        let hub = Arc::new(Hub::default());
        let (a, mut a_rx) = connect(&store, &hub, "acme", "a", &[cap("t/x", 2, false)]);
        let (b, mut b_rx) = connect(&store, &hub, "acme", "b", &[cap("t/x", 2, false)]);
        until("registered", || {
            hub.counts.claims_empty.load(Ordering::Relaxed) >= 2
        })
        .await;
        let mut ids = HashSet::new();
        for _ in 0..6 {
            ids.insert(publish(&store, "acme", "t/x").await);
        }
        // Four slots: four leases, two per session.
        let mut got = HashSet::new();
        for _ in 0..2 {
            got.insert(next_lease(&mut a_rx).await);
            got.insert(next_lease(&mut b_rx).await);
        }
        assert_eq!(got.len(), 4);
        assert_eq!((a.in_flight_for("t/x"), b.in_flight_for("t/x")), (2, 2));
        // A freed slot takes one of the two that waited, then the other.
        let first = got.iter().find(|j| a.holds(j)).unwrap().clone();
        a.release(&first);
        got.insert(next_lease(&mut a_rx).await);
        let second = got.iter().find(|j| b.holds(j)).unwrap().clone();
        b.release(&second);
        got.insert(next_lease(&mut b_rx).await);
        assert_eq!(got, ids, "every job leased once");
    }

    /// A freed slot claims only when work may wait that no routed wake-up
    /// covers: after a job's wake-up found every slot taken.
    #[tokio::test]
    async fn a_freed_slot_looks_only_when_work_may_wait() {
        let store = sqlite().await;
        let hub = Arc::new(Hub::default());
        let (a, mut rx) = connect(&store, &hub, "acme", "a", &[cap("t/x", 1, false)]);
        let empty = || hub.counts.claims_empty.load(Ordering::Relaxed);
        until("registered", || empty() == 1).await;
        let first = publish(&store, "acme", "t/x").await;
        assert_eq!(next_lease(&mut rx).await, first);
        // Nothing waits: the ack frees the slot without a claim.
        assert_eq!(
            a.release(&first).as_deref().map(|l| l.starts_with(&first)),
            Some(true)
        );
        assert!(!a.look.load(Ordering::Acquire));
        // Full: the next job's wake-up wakes nobody; the freed slot takes it.
        let second = publish(&store, "acme", "t/x").await;
        assert_eq!(next_lease(&mut rx).await, second);
        let third = publish(&store, "acme", "t/x").await;
        until("dropped", || hub.routes.drops("t/x") == 1).await;
        a.release(&second);
        assert_eq!(next_lease(&mut rx).await, third);
        assert_eq!(empty(), 1, "no claim came back empty");
        assert_eq!(hub.counts.claims_leased.load(Ordering::Relaxed), 3);
    }

    /// A session with no dispatcher yet (the test starts it), and its stream.
    fn parked(hub: &Hub, neuron: &str) -> (Arc<Session>, mpsc::Receiver<ServerFrame>) {
        let (tx, rx) = mpsc::channel(64);
        let s = hub.open("acme", neuron, "k", tx).unwrap();
        s.set_capabilities(&[cap("t/x", 1, false)]);
        (s, rx)
    }

    fn start(store: &Store, hub: &Arc<Hub>, s: &Arc<Session>) {
        tokio::spawn(dispatch(
            store.clone(),
            Arc::new(SchemaRegistry::default()),
            hub.clone(),
            s.clone(),
            30_000,
            Arc::new(crate::observe::NoObserver),
        ));
    }

    /// A wake-up routed to a session that fills up, or closes, before it
    /// acts on it goes to another session that can take the job.
    #[tokio::test]
    async fn a_wake_up_is_passed_on_not_lost() {
        for closes in [false, true] {
            let store = sqlite().await;
            let hub = Arc::new(Hub::default());
            hub.start_routing(store.notifier());
            let (x, _x_rx) = parked(&hub, "x");
            let (y, mut y_rx) = parked(&hub, "y");
            start(&store, &hub, &y);
            until("y looked", || {
                hub.counts.claims_empty.load(Ordering::Relaxed) == 1
            })
            .await;
            y.in_flight
                .lock()
                .unwrap()
                .insert("busy".into(), ("t/x".into(), "b.t".into()));
            // y is full: the job's wake-up goes to x, the only one with room.
            let id = publish(&store, "acme", "t/x").await;
            until("x hinted", || x.hints.lock().unwrap().len() == 1).await;
            // y frees its slot without looking; x fills up, or goes away.
            y.in_flight.lock().unwrap().clear();
            if closes {
                hub.close(&x);
            } else {
                x.track("other", "t/x", "o.t");
            }
            start(&store, &hub, &x);
            assert_eq!(next_lease(&mut y_rx).await, id, "closes: {closes}");
            assert!(x.hints.lock().unwrap().is_empty());
            assert_eq!(
                hub.counts.passed_on.load(Ordering::Relaxed),
                u64::from(!closes)
            );
        }
    }

    fn notice() -> ServerFrame {
        ServerFrame::Cancel {
            lease_id: "j.t".into(),
            reason: "test".into(),
            cancelled_at: "2026-01-01T00:00:00.000Z".into(),
        }
    }

    /// A full queue (a client that stopped reading) makes a lease wait for
    /// room, not fail; only a closed session ends the wait.
    #[tokio::test]
    async fn a_full_queue_holds_a_lease_back_until_room_or_close() {
        let hub = Hub::default();
        let (tx, mut rx) = mpsc::channel(1);
        let s = hub.open("acme", "n1", "k1", tx).unwrap();
        assert!(s.send(notice()));
        assert!(!s.send(notice()), "full: a notice is dropped");
        let waiting = {
            let s = s.clone();
            tokio::spawn(async move { s.send_waiting(notice()).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "waits while full");
        assert!(rx.recv().await.is_some());
        assert!(waiting.await.unwrap(), "delivered once there is room");
        // Full again, then the session closes: the wait ends with false.
        let blocked = {
            let s = s.clone();
            tokio::spawn(async move { s.send_waiting(notice()).await })
        };
        tokio::task::yield_now().await;
        s.closed.cancel();
        assert!(!blocked.await.unwrap());
    }

    #[test]
    fn holder_index_follows_leases_across_reconnects() {
        let hub = Hub::default();
        let (tx, _rx) = mpsc::channel(8);
        let first = hub.open("acme", "n1", "k1", tx.clone()).unwrap();
        first.track("job-1", "a/b", "job-1.tok");
        assert_eq!(
            hub.holder_of("job-1").map(|s| s.id.clone()),
            Some(first.id.clone())
        );
        // A reconnect replaces the session and inherits its lease.
        // Another credential of the tenant cannot take the neuron id over.
        assert_eq!(
            hub.open("acme", "n1", "jwt:mallory", tx.clone()).err(),
            Some("k1".to_owned())
        );
        assert!(!first.closed.is_cancelled());
        let second = hub.open("acme", "n1", "k1", tx.clone()).unwrap();
        assert!(first.closed.is_cancelled());
        assert_eq!(
            hub.holder_of("job-1").map(|s| s.id.clone()),
            Some(second.id.clone())
        );
        // Closing the replaced session does not unindex the successor's lease.
        hub.close(&first);
        assert!(hub.holder_of("job-1").is_some());
        assert_eq!(second.release("job-1").as_deref(), Some("job-1.tok"));
        assert!(hub.holder_of("job-1").is_none());
        // A session that ends for good takes its index entries with it.
        second.track("job-2", "a/b", "job-2.tok");
        hub.close(&second);
        assert!(hub.holder_of("job-2").is_none());
        assert!(hub.index.lock().unwrap().is_empty());
        // Another tenant's neuron with the same id is a different holder.
        let other = hub.open("evil", "n1", "k9", tx).unwrap();
        other.track("job-3", "a/b", "job-3.tok");
        assert_eq!(
            hub.holder_of("job-3").map(|s| s.tenant.clone()),
            Some("evil".into())
        );
    }
}
