//! Live neuron sessions: one per (tenant, neuronId), each with its SSE sender,
//! its registered capabilities and its in-flight leases, and one dispatcher
//! task that leases jobs to it whenever a slot is free and the store says
//! work may be waiting.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use agw_storage::{
    CapabilitySchema, ExpiredLease, Job, JobClaimParams, JobStore, Notifier, Scope, Store,
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
    /// Registered capabilities by type.
    caps: Mutex<HashMap<String, Capability>>,
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
    pub fn set_capabilities(&self, caps: &[Capability]) {
        if let Ok(mut c) = self.caps.lock() {
            *c = caps.iter().map(|c| (c.kind.clone(), c.clone())).collect();
        }
        self.wake.notify_one();
    }

    /// The registered definition of `kind`, if any.
    pub fn capability(&self, kind: &str) -> Option<Capability> {
        self.caps.lock().ok().and_then(|c| c.get(kind).cloned())
    }

    /// Replaces one registered capability; `false` when it was not registered.
    pub fn update_capability(&self, cap: Capability) -> bool {
        let updated = self
            .caps
            .lock()
            .ok()
            .is_some_and(|mut c| c.get_mut(&cap.kind).map(|slot| *slot = cap).is_some());
        self.wake.notify_one();
        updated
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
    pub fn release(&self, job_id: &str) -> Option<String> {
        let gone = self
            .in_flight
            .lock()
            .ok()
            .and_then(|mut f| f.remove(job_id))
            .map(|(_, l)| l);
        if gone.is_some()
            && let Ok(mut i) = self.index.lock()
        {
            i.remove(job_id);
        }
        self.wake.notify_one();
        gone
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
            .map(|c| c.values().cloned().collect())
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

/// Every live session of this replica, plus revoked capability types.
#[derive(Debug, Default)]
pub struct Hub {
    sessions: Mutex<HashMap<(String, String), Arc<Session>>>,
    revoked: Mutex<HashSet<String>>,
    /// job id → (tenant, neuron) of every in-flight lease, so settling a lease
    /// finds its holder without scanning sessions. Entries follow the neuron
    /// across reconnects (the key names the neuron, not the stream).
    index: Arc<Mutex<HashMap<String, (String, String)>>>,
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
            in_flight: Mutex::default(),
            wake: Notify::new(),
            closed: CancellationToken::new(),
            index: self.index.clone(),
            connected_at: Utc::now(),
            last_seen: Mutex::new(Utc::now()),
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
        }
        Ok(session)
    }

    /// Forgets `session` if it is still the current one of its neuron.
    pub fn close(&self, session: &Session) {
        session.closed.cancel();
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

/// Leases work to `session` until it closes: fills every capability's free
/// slots, then sleeps until a store wake-up for one of its topics or a freed
/// slot. Never more leases in flight per capability than its concurrency.
pub async fn dispatch(
    store: Store,
    schemas: Arc<SchemaRegistry>,
    session: Arc<Session>,
    default_ttl_ms: i64,
    observer: Arc<dyn Observer>,
) {
    let mut wakeups = store.notifier().subscribe();
    loop {
        let caps: Vec<Capability> = session
            .caps
            .lock()
            .map(|c| c.values().cloned().collect())
            .unwrap_or_default();
        let all_types: Vec<String> = caps.iter().map(|c| c.kind.clone()).collect();
        for cap in &caps {
            while session.in_flight_for(&cap.kind) < usize::try_from(cap.concurrency).unwrap_or(0) {
                if session.closed.is_cancelled() {
                    return;
                }
                let claimed = store
                    .job_claim(JobClaimParams {
                        scope: Scope::Tenant(session.tenant.clone()),
                        public_work: cap.accept_public,
                        topic: Some(cap.kind.clone()),
                        namespace: None,
                        publisher: None,
                        worker_id: session.neuron_id.clone(),
                        holder_key: Some(session.holder_key()),
                        capabilities: all_types.clone(),
                        on_behalf_of: cap.on_behalf_of(),
                        lease_ms: cap.lease_ttl_ms.unwrap_or(default_ttl_ms),
                        now: None,
                    })
                    .await;
                match claimed {
                    Ok(Some(job)) => {
                        observer.leased(&job);
                        // Without its schema the lease still goes out: the
                        // neuron falls back to the schemas it registered itself.
                        let schema = schemas.get(&store, &job.topic).await.unwrap_or_else(|e| {
                            tracing::warn!(error = %e, capability = %job.topic, "schema lookup failed");
                            None
                        });
                        let Some(frame) = lease_frame(&job, schema.as_ref().map(|c| &c.schema))
                        else {
                            break;
                        };
                        if let ServerFrame::Lease { lease, .. } = &frame {
                            session.track(&job.id, &cap.kind, &lease.lease_id);
                        }
                        if !session.send_waiting(frame).await {
                            // The stream is gone; the lease lapses after its TTL.
                            return;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, neuron = %session.neuron_id, "lease claim failed");
                        tokio::select! {
                            () = session.closed.cancelled() => return,
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                        break;
                    }
                }
            }
        }
        // Sleep until something relevant happens.
        loop {
            tokio::select! {
                () = session.closed.cancelled() => return,
                () = session.wake.notified() => break,
                r = wakeups.recv() => match r {
                    Ok(topic) if all_types.iter().any(|t| Notifier::wakes(&topic, t)) => break,
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => break,
                    Err(RecvError::Closed) => return,
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
