//! Wake-ups sent after commit. This replica's own waiters are woken in
//! process at once; the other replicas hear of it through `NOTIFY`, sent by
//! one task per process on a connection of its own, one statement for every
//! wake-up queued while the previous statement was on its way (coalesced:
//! a topic woken by ten commits in that time is one notification).
//!
//! `NOTIFY` is not sent inside the writing transaction: PostgreSQL takes a
//! cluster-wide lock at the commit of every transaction that notified, so
//! commits that notify queue one behind another. Sent after the commit, a
//! wake-up can be lost only if this process dies between the commit and its
//! `NOTIFY` (a few milliseconds); the job itself is committed, polling
//! workers find it, and every replica's sweeper wakes the topics of jobs that
//! became claimable since its last tick (`jobs_due_topics`), which covers a
//! newly inserted job too. Our own notifications come back to our `LISTEN`
//! connection: they are recognised by the sending connection's backend pid
//! and skipped, having already been delivered in process.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection as _, PgConnection};
use tokio::sync::mpsc;

use crate::Notifier;
use crate::notify::{JobEvent, PG_CHANNEL, PG_JOB_CHANNEL};

/// Most notifications one statement carries.
const MAX_BATCH: usize = 512;

/// One statement for a batch of (channel, payload) pairs.
const NOTIFY_MANY: &str = "SELECT pg_notify(c, p) FROM unnest($1::text[], $2::text[]) AS n(c, p)";

/// The sending side: cheap to clone, never waits.
#[derive(Debug, Clone)]
pub(super) struct Wakes {
    local: Notifier,
    /// `None` where no replica listens (behind a transaction pooler without
    /// a listen URL: waiters elsewhere poll).
    remote: Option<mpsc::UnboundedSender<(&'static str, String)>>,
    /// Backend pid of the sending connection (0 while none).
    sender_pid: Arc<AtomicU32>,
}

impl Wakes {
    /// Starts the sending task on connections made with `options` (the
    /// `LISTEN` side's); `None`: in process only.
    pub(super) fn start(local: Notifier, options: Option<PgConnectOptions>) -> Self {
        let sender_pid = Arc::new(AtomicU32::new(0));
        let remote = options.map(|options| {
            let (remote, rx) = mpsc::unbounded_channel();
            tokio::spawn(send_batches(options, rx, sender_pid.clone()));
            remote
        });
        Self {
            local,
            remote,
            sender_pid,
        }
    }

    fn send(&self, channel: &'static str, payload: String) {
        if let Some(remote) = &self.remote {
            let _ = remote.send((channel, payload));
        }
    }

    /// `job` may be claimable: wakes this replica's waiters now, naming the
    /// job (so the neuron hub wakes one session that can take it), and
    /// queues the `NOTIFY` (of its topic) for the others.
    pub(super) fn job(&self, job: &crate::Job) {
        self.local.notify_job(job);
        self.send(PG_CHANNEL, job.topic.clone());
    }

    /// A watched job changed: tells this replica's waiters now and queues the
    /// `NOTIFY` for the others.
    pub(super) fn job_event(&self, event: JobEvent) {
        let payload = event.to_payload();
        self.local.job_event(event);
        self.send(PG_JOB_CHANNEL, payload);
    }

    /// Whether a notification came from this process's sender (and was
    /// therefore delivered in process already).
    pub(super) fn is_own(&self, process_id: u32) -> bool {
        process_id != 0 && process_id == self.sender_pid.load(Ordering::Relaxed)
    }
}

/// Sends queued notifications until every [`Wakes`] is dropped. A failed
/// statement drops its batch (waiters re-check on the sweeper's tick and on
/// the `LISTEN` task's reconnect) and the connection, made again for the
/// next batch.
async fn send_batches(
    options: PgConnectOptions,
    mut rx: mpsc::UnboundedReceiver<(&'static str, String)>,
    sender_pid: Arc<AtomicU32>,
) {
    let mut conn: Option<PgConnection> = None;
    let mut batch: Vec<(&'static str, String)> = Vec::new();
    while let Some(first) = rx.recv().await {
        batch.clear();
        batch.push(first);
        super::take_queued(&mut rx, &mut batch, MAX_BATCH);
        batch.sort_unstable();
        batch.dedup();
        if conn.is_none() {
            match connect(&options).await {
                Ok((c, pid)) => {
                    sender_pid.store(pid, Ordering::Relaxed);
                    conn = Some(c);
                }
                Err(e) => {
                    tracing::warn!(error = %e, dropped = batch.len(), "postgres NOTIFY connection failed");
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let (channels, payloads): (Vec<&str>, Vec<&str>) =
            batch.iter().map(|(c, p)| (*c, p.as_str())).unzip();
        let sent = sqlx::query(NOTIFY_MANY)
            .bind(channels)
            .bind(payloads)
            .execute(&mut *c);
        match tokio::time::timeout(Duration::from_secs(5), sent).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, dropped = batch.len(), "postgres NOTIFY failed");
                conn = None;
                sender_pid.store(0, Ordering::Relaxed);
            }
            Err(_) => {
                tracing::warn!(dropped = batch.len(), "postgres NOTIFY timed out");
                conn = None;
                sender_pid.store(0, Ordering::Relaxed);
            }
        }
    }
}

async fn connect(options: &PgConnectOptions) -> sqlx::Result<(PgConnection, u32)> {
    let mut c = tokio::time::timeout(Duration::from_secs(5), PgConnection::connect_with(options))
        .await
        .map_err(|_| sqlx::Error::PoolTimedOut)??;
    let (pid,): (i32,) = sqlx::query_as("SELECT pg_backend_pid()")
        .fetch_one(&mut c)
        .await?;
    Ok((c, u32::try_from(pid).unwrap_or(0)))
}
