//! The maintenance task: each tick voids expired leases, wakes waiters of
//! delayed or retried jobs that just became due, and now and then purges
//! rows past retention. Every replica runs one. The cluster-wide work (lease
//! expiry, purge) is done by one replica at a time, the holder of the
//! store's `sweeper` leader lease (renewed every tick, taken over by another
//! replica within [`leader_ttl`] of its holder stopping); the per-replica
//! work (waking this replica's waiters, applying capability revocations to
//! its neurons) by every replica.

use agw_storage::{AuthStore, SettingsStore};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use agw_config::StoreSettings;
use std::sync::Arc;

use agw_protocols::neuron::hub::Hub;
use agw_storage::{JobStore, PurgeParams, Scope, Store};

use crate::metrics::Metrics;

/// Expired leases per tick whose job is read back for its metric labels.
const EXPIRED_LOOKUPS_PER_TICK: usize = 64;

/// The singleton task name of the sweeper's leader lease.
const LEADER_TASK: &str = "sweeper";

/// How long a sweeper's leadership lasts without renewal: three ticks, at
/// least two seconds.
fn leader_ttl(sweep_interval_ms: u64) -> i64 {
    i64::try_from(sweep_interval_ms.saturating_mul(3))
        .unwrap_or(i64::MAX)
        .max(2_000)
}

/// Runs until `shutdown` fires.
pub(crate) async fn run(
    store: Store,
    cfg: StoreSettings,
    metrics: Metrics,
    hub: Arc<Hub>,
    events_retention_hours: u64,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(cfg.sweep_interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut since = Utc::now();
    let mut last_purge = std::time::Instant::now();
    let replica = agw_storage::new_token();
    let ttl = leader_ttl(cfg.sweep_interval_ms);
    let mut leading = false;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = Utc::now();
        let leads = match store.leader_lease(LEADER_TASK, &replica, ttl, now).await {
            Ok(leads) => leads,
            Err(e) => {
                tracing::warn!(error = %e, "sweeper leader lease failed");
                false
            }
        };
        if leads != leading {
            leading = leads;
            tracing::info!(replica = %replica, leading, "sweeper leadership changed");
        }
        if leads {
            expire_leases(&store, &metrics, &hub, now).await;
            if last_purge.elapsed() >= Duration::from_secs(60) {
                last_purge = std::time::Instant::now();
                purge(&store, &cfg, events_retention_hours, now).await;
            }
        }
        // Capability revocations made on other replicas (or before a
        // restart) reach this replica's connected neurons.
        match store.capability_revocations().await {
            Ok(revoked) => {
                for (kind, reason) in revoked {
                    if !hub.is_revoked(&kind) {
                        let n = hub.revoke_capability(&kind, &reason);
                        tracing::info!(capability = %kind, sessions = n, "capability revoked");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "capability revocation sync failed"),
        }
        match store.jobs_due_topics(since, now).await {
            Ok(topics) => {
                for t in topics {
                    store.notifier().notify(&t);
                }
                since = now;
            }
            Err(e) => tracing::warn!(error = %e, "due-job scan failed"),
        }
    }
}

/// Voids expired leases (the leader's work).
async fn expire_leases(store: &Store, metrics: &Metrics, hub: &Hub, now: DateTime<Utc>) {
    match store.jobs_expire_leases(now).await {
        Ok(expired) => {
            for e in &expired {
                tracing::info!(job_id = %e.job_id, topic = %e.topic, holder = %e.holder,
                    new_state = e.new_state.as_str(), "lease expired");
            }
            metrics.leases_expired(expired.len() as u64);
            // The protocol and age of a job come from reading it back
            // (rare: expiries mean crashed or stalled workers); past a
            // bound per tick they are counted without.
            for (i, e) in expired.iter().enumerate() {
                let job = if i < EXPIRED_LOOKUPS_PER_TICK {
                    store.job_get(&e.job_id, &Scope::All).await.ok().flatten()
                } else {
                    None
                };
                metrics.lease_expired(e, job.as_ref());
            }
            // Tell connected neurons to stop work they no longer hold.
            hub.leases_expired(&expired);
        }
        Err(e) => tracing::warn!(error = %e, "lease expiry sweep failed"),
    }
}

/// Purges rows past retention (the leader's work, once a minute).
async fn purge(
    store: &Store,
    cfg: &StoreSettings,
    events_retention_hours: u64,
    now: DateTime<Utc>,
) {
    let cutoff = now - chrono::Duration::hours(cfg.retention_hours as i64);
    match store
        .jobs_purge(PurgeParams {
            completed_before: cutoff,
            events_before: (events_retention_hours > 0).then(|| {
                now - chrono::Duration::hours(
                    i64::try_from(events_retention_hours).unwrap_or(i64::MAX / 7200),
                )
            }),
            now: Some(now),
        })
        .await
    {
        Ok(r) if r.jobs + r.kv + r.nonces + r.idempotency + r.events + r.ingested > 0 => {
            tracing::info!(
                jobs = r.jobs,
                kv = r.kv,
                nonces = r.nonces,
                idempotency = r.idempotency,
                events = r.events,
                ingested = r.ingested,
                "purged"
            );
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "purge failed"),
    }
}
