//! The PostgreSQL driver: claims with `FOR UPDATE SKIP LOCKED`, wake-ups
//! sent after commit (in process, and by a coalesced `NOTIFY` to the other
//! replicas: [`wake`]) and one `LISTEN` task per process, so every replica's
//! waiters hear of every replica's jobs. Behind a
//! transaction pooler (`pool`) `LISTEN` goes over a direct connection, or
//! waiters are woken by a poll of the database's commits (`poll_wakeups`).

mod auth;
mod cap;
mod empty;
mod events;
mod governance;
mod jobs;
mod nonces;
mod pool;
mod settings;
mod settle;
mod wake;

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions, PgRow};
use sqlx::{Executor as _, FromRow as _, PgPool, Postgres, Row as _, Transaction};

use pool::{Db, Health};

use crate::CommittedEvent;
use crate::eventlog::{
    Ending, EventLog, EventRow, EventSlot, cancel_ends_dispatch, correlation_id, next_link,
};
use crate::notify::{JobChange, JobEvent, PG_CHANNEL, PG_JOB_CHANNEL};
use crate::sql::{POSTGRES_SQL, Sql};
use crate::{ConnectOptions, Notifier, StoreResult};
use agw_events::ChainLink;
use cap::OpenJobs;
use wake::Wakes;

/// A settlement statement (`UPDATE jobs … RETURNING *`) that also returns
/// the head of the settled job's own event chain (`head_hash`,
/// `head_position`; NULL while the chain is empty), so the settlement's
/// event needs no head read of its own: one round trip less per settlement.
///
/// The head is read in the statement's snapshot. If the statement waited for
/// the job's row lock, an event committed meanwhile by the lock's holder is
/// not in it: [`PgStore::job_event_at`] then finds its position taken and
/// relinks to the head as committed.
fn with_head(update: &str) -> String {
    format!(
        "WITH done AS ({update})
        SELECT done.*, head.event_hash AS head_hash, head.chain_position AS head_position
        FROM done LEFT JOIN LATERAL (
            SELECT event_hash, chain_position FROM events
            WHERE correlation_id = done.id ORDER BY chain_position DESC LIMIT 1
        ) head ON true"
    )
}

/// `sql::COMPLETE` returning the chain head (see [`with_head`]).
static COMPLETE_WITH_HEAD: LazyLock<String> = LazyLock::new(|| with_head(crate::sql::COMPLETE));
/// The fail statement returning the chain head (see [`with_head`]).
static FAIL_WITH_HEAD: LazyLock<String> = LazyLock::new(|| with_head(&POSTGRES_SQL.fail));
/// `sql::EVENT_INSERT` that writes nothing if the chain position is taken.
static EVENT_INSERT_IF_FREE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{} ON CONFLICT (correlation_id, chain_position) DO NOTHING",
        crate::sql::EVENT_INSERT
    )
});

/// The chain head a settlement statement returned: `Some(head)` (`head`
/// being `None` for an empty chain) when the statement was made by
/// [`with_head`], else `None` (not asked for).
type KnownHead = Option<Option<(String, i64)>>;

/// The job a settlement statement returned (no row: the lease is not live)
/// and, if `with_head`, the chain head it returned too.
fn settled(row: Option<PgRow>, with_head: bool) -> StoreResult<(crate::Job, KnownHead)> {
    let row = row.ok_or(crate::StoreError::LeaseLost)?;
    let head = if with_head {
        let hash: Option<String> = row.try_get("head_hash")?;
        let position: Option<i64> = row.try_get("head_position")?;
        Some(hash.zip(position))
    } else {
        None
    };
    Ok((crate::row::JobRow::from_row(&row)?.try_into()?, head))
}

/// The PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: Db,
    /// Connections with `synchronous_commit = off`, for nonce records only
    /// (behind a transaction pooler: `pool`'s, with `SET LOCAL` per record).
    nonces: Db,
    /// Nonce records, group-committed on `nonces`.
    nonce_batches: nonces::Nonces,
    /// The pool `LISTEN` connects through, when it is not `pool`'s (a direct
    /// `listen_url` beside a transaction pooler); closed with the store.
    listen: Option<PgPool>,
    notifier: Notifier,
    /// Wake-ups after commit: here at once, elsewhere by `NOTIFY`.
    wakes: Wakes,
    /// Per-tenant estimates of live jobs for the open-job cap.
    open_jobs: Arc<OpenJobs>,
    /// Claims that found nothing and need not ask again yet.
    empty_claims: Arc<empty::EmptyClaims>,
    /// Fulfilments, group-committed (`None` in the settling task's own copy).
    settler: Option<settle::Settler>,
    events: EventSlot,
    /// Whether the database answers: while it is known to be unreachable
    /// every call fails at once with [`crate::StoreError::Unavailable`] (a
    /// `503`) instead of waiting for the pool's acquire timeout.
    health: Arc<Health>,
}

/// Binds `q` to an event-list statement (`sql::EVENTS_LIST` or `EVENTS_SEQS`).
fn bind_event_query<'q, O>(
    statement: sqlx::query::QueryAs<'q, Postgres, O, sqlx::postgres::PgArguments>,
    q: &'q crate::EventQuery,
) -> sqlx::query::QueryAs<'q, Postgres, O, sqlx::postgres::PgArguments> {
    let ms = |t: Option<chrono::DateTime<chrono::Utc>>| t.map(crate::model::to_ms);
    statement
        .bind(q.after_seq)
        .bind(q.scope.tenant())
        .bind(&q.correlation_id)
        .bind(&q.topic)
        .bind(&q.protocol)
        .bind(&q.status)
        .bind(ms(q.since))
        .bind(ms(q.until))
        .bind(q.limit)
}

/// Connections of the nonce pool at most.
const NONCE_CONNECTIONS: u32 = 4;

/// Longest wait for a pooled connection before a call fails with `503`.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// A `LISTEN` connection on both wake-up channels.
async fn listen(pool: &PgPool) -> sqlx::Result<PgListener> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen_all([PG_CHANNEL, PG_JOB_CHANNEL]).await?;
    Ok(listener)
}

/// Period of [`poll_wakeups`].
const POLL_EVERY: Duration = Duration::from_millis(250);

/// The database's commit horizon: equal texts mean no transaction committed
/// in between (any commit of a writing transaction changes its `xmax` or
/// in-progress list). Cluster-wide, so any server behind a pooler answers it.
const SNAPSHOT: &str = "SELECT pg_current_snapshot()::text";

/// Behind a transaction pooler: every [`POLL_EVERY`], reads the commit
/// horizon through the pooler (one simple-protocol round trip). A failure
/// marks the database down (the pooler or the server is gone), as the
/// `LISTEN` connection does when there is one. With no `LISTEN` (`wake` set),
/// a horizon that moved wakes every waiter to re-check the store, so work
/// committed by any replica is found within one period plus a re-check; an
/// idle database costs one query per period and wakes no one.
async fn poll_wakeups(pool: PgPool, fan_out: Notifier, health: Arc<Health>, wake: bool) {
    let mut seen: Option<String> = None;
    loop {
        tokio::time::sleep(POLL_EVERY).await;
        if pool.is_closed() {
            return;
        }
        // A `&str` runs as a simple-protocol query: one message, no
        // prepared statement, so nothing for the pooler to lose.
        let read = pool.fetch_one(SNAPSHOT);
        match tokio::time::timeout(Duration::from_secs(1), read).await {
            Ok(Ok(row)) => {
                let now: String = row.try_get(0).unwrap_or_default();
                if wake && seen.as_deref() != Some(now.as_str()) {
                    fan_out.wake_all();
                }
                seen = Some(now);
            }
            Ok(Err(sqlx::Error::PoolClosed)) => return,
            Ok(Err(e)) => health.mark_down(&format_args!("postgres poll failed: {e}")),
            Err(_) => health.mark_down(&"postgres poll timed out"),
        }
    }
}

/// Relays `NOTIFY`s to this process's waiters until the pool `listen`
/// connects through closes. When the `LISTEN` connection drops, wake-ups sent
/// until it listens again are lost: it reconnects, and once it listens again
/// wakes every waiter so each re-checks the store (anything published before
/// that re-check is found by it, anything after is heard). The `LISTEN`
/// connection is the first to see the server go: a failure there, or a
/// reconnect that fails, marks the database down.
async fn relay_wakeups(
    listen_pool: PgPool,
    listener: PgListener,
    fan_out: Notifier,
    own: Wakes,
    health: Arc<Health>,
) {
    let mut listener = Some(listener);
    loop {
        let Some(l) = listener.as_mut() else {
            match listen(&listen_pool).await {
                Ok(l) => {
                    tracing::info!("postgres LISTEN connected again; waking every waiter");
                    listener = Some(l);
                    fan_out.wake_all();
                }
                Err(sqlx::Error::PoolClosed) => return,
                Err(e) => {
                    health.mark_down(&format_args!("postgres LISTEN reconnect failed: {e}"));
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
            continue;
        };
        match l.try_recv().await {
            // Ours: delivered in process when it was sent.
            Ok(Some(n)) if own.is_own(n.process_id()) => {}
            Ok(Some(n)) if n.channel() == PG_JOB_CHANNEL => {
                if let Some(ev) = JobEvent::from_payload(n.payload()) {
                    fan_out.job_event(ev);
                }
            }
            Ok(Some(n)) => fan_out.notify(n.payload()),
            Ok(None) => {
                tracing::warn!("postgres LISTEN connection lost; reconnecting");
                listener = None;
            }
            Err(sqlx::Error::PoolClosed) => return,
            Err(e) => {
                health.mark_down(&format_args!("postgres LISTEN failed: {e}"));
                listener = None;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// A pooler (PgBouncer) refuses startup parameters it does not know; the
/// gateway sends none, so such a refusal names one from the URL.
fn startup_parameter_hint(e: sqlx::Error) -> crate::StoreError {
    let text = e.to_string();
    if text.contains("unsupported startup parameter") {
        return crate::StoreError::InvalidUrl(format!(
            "{text} (a pooler such as PgBouncer refuses startup parameters it does not know: \
             drop it from the URL, e.g. options=..., or list it in the pooler's ignore_startup_parameters)"
        ));
    }
    e.into()
}

/// Applies pending migrations through a transaction pooler: all in one
/// transaction holding a transaction-scoped advisory lock (sqlx's own lock is
/// session-scoped, which a pooler would leave held on some server), so
/// replicas starting together apply each migration once. A migration that
/// fails rolls every one back.
async fn migrate_in_one_transaction(db: &Db) -> StoreResult<()> {
    let mut tx = db.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('agent-gateway migrations'))")
        .execute(&mut *tx)
        .await?;
    let mut migrator = sqlx::migrate!("migrations/postgres");
    migrator.set_locking(false);
    migrator.run(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

/// Moves what is queued on `rx` now into `batch`, up to `max` in all (the
/// group-committing tasks' batches: whatever arrived while the previous
/// batch was on its way).
fn take_queued<T>(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<T>,
    batch: &mut Vec<T>,
    max: usize,
) {
    while batch.len() < max {
        match rx.try_recv() {
            Ok(more) => batch.push(more),
            Err(_) => break,
        }
    }
}

impl PgStore {
    /// Runs a store operation on a task of its own, so that once started it
    /// reaches its commit or rollback whatever happens to the request that
    /// started it: a caller that goes away (a client disconnecting, a timeout)
    /// drops only the wait for the answer, never a transaction half-way, and
    /// no connection goes back to the pool inside a transaction. (The SQLite
    /// driver needs none: its threads run every queued operation to its end.)
    async fn to_completion<T, F>(&self, op: impl FnOnce(PgStore) -> F) -> crate::StoreResult<T>
    where
        F: std::future::Future<Output = crate::StoreResult<T>> + Send + 'static,
        T: Send + 'static,
    {
        tokio::spawn(op(self.clone()))
            .await
            .map_err(|e| crate::StoreError::Unavailable(format!("store task ended: {e}")))?
    }

    /// Connects, migrates, and starts the `LISTEN` task (and, behind a
    /// transaction pooler, the poll task: see [`poll_wakeups`]).
    pub async fn connect(url: &str, opts: &ConnectOptions) -> StoreResult<Self> {
        let pooled = opts.pg_transaction_pooler;
        // No `extra_float_digits` startup parameter, which PgBouncer (in
        // either pool mode) refuses unless told to ignore it: it only
        // affects floats sent as text, and every statement here reads binary.
        let mut options: PgConnectOptions =
            url.parse::<PgConnectOptions>()?.extra_float_digits(None);
        if pooled {
            // No statement cache: a named statement must not outlive its
            // transaction (see `pool`).
            options = options.statement_cache_capacity(0);
        }
        let health = Health::new(options.clone());
        // No ping before each acquire (a round trip per store call): a
        // connection that died with the server fails its statement instead,
        // which is `Unavailable` (503, worth a retry), marks the database
        // down, and is replaced. Only connections idle since before the last
        // outage are pinged (once) before use.
        let check = health.clone();
        let pg = PgPoolOptions::new()
            .max_connections(opts.max_connections.max(2))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .test_before_acquire(false)
            .before_acquire(move |conn, meta| {
                let check = check.clone();
                Box::pin(async move { check.check_idle(conn, meta).await })
            })
            .connect_with(options.clone())
            .await
            .map_err(startup_parameter_hint)?;
        let listen_pool = match &opts.pg_listen_url {
            Some(direct) => Some(
                PgPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect_lazy_with(direct.parse::<PgConnectOptions>().map_err(|e| {
                        crate::StoreError::InvalidUrl(format!(
                            "listen URL {}: {e}",
                            crate::redact_url(direct)
                        ))
                    })?),
            ),
            None => None,
        };
        let (pool, nonces) = if pooled {
            let db = Db::pooled(pg.clone(), health.clone(), pool::POOLED_BEGIN);
            migrate_in_one_transaction(&db).await?;
            let nonces = Db::pooled(pg.clone(), health.clone(), pool::POOLED_NONCE_BEGIN);
            (db, nonces)
        } else {
            sqlx::migrate!("migrations/postgres").run(&pg).await?;
            // Nonce records commit without waiting for their WAL flush: one
            // durable commit less per signed request. A nonce is lost only if
            // PostgreSQL itself crashes before its WAL writer flushes (within
            // 3 × `wal_writer_delay`, 600 ms by default); a request signed in
            // that instant could then be replayed while its timestamp is still
            // in the signature window. Everything else commits durably.
            // Set per connection rather than as a startup `options`, which
            // PgBouncer refuses (in session pooling its reset query undoes it
            // between clients, and the next connect sets it again).
            let check = health.clone();
            let nonces = PgPoolOptions::new()
                .max_connections(opts.max_connections.clamp(1, NONCE_CONNECTIONS))
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .test_before_acquire(false)
                .after_connect(|conn, _| {
                    Box::pin(
                        async move { conn.execute("SET synchronous_commit = off").await.map(drop) },
                    )
                })
                .before_acquire(move |conn, meta| {
                    let check = check.clone();
                    Box::pin(async move { check.check_idle(conn, meta).await })
                })
                .connect_lazy_with(options.clone());
            (
                Db::direct(pg.clone(), health.clone()),
                Db::direct(nonces, health.clone()),
            )
        };
        let notifier = Notifier::default();
        // `LISTEN` over the direct URL if given, else over the pool unless
        // it goes through a transaction pooler (which cannot hold one).
        let listens_on = listen_pool.clone().or((!pooled).then(|| pg.clone()));
        // `NOTIFY` goes where `LISTEN` is (a direct connection); with no
        // `LISTEN` anywhere (a pooler and no listen URL) only this replica's
        // waiters are woken, the others poll.
        let wakes = Wakes::start(
            notifier.clone(),
            listens_on
                .as_ref()
                .map(|on| (*on.connect_options()).clone()),
        );
        if let Some(on) = &listens_on {
            let listener = listen(on).await.map_err(|e| match &opts.pg_listen_url {
                Some(direct) => crate::StoreError::Unavailable(format!(
                    "cannot LISTEN over the listen URL {}: {e}",
                    crate::redact_url(direct)
                )),
                None => e.into(),
            })?;
            tokio::spawn(relay_wakeups(
                on.clone(),
                listener,
                notifier.clone(),
                wakes.clone(),
                health.clone(),
            ));
        }
        if pooled {
            tokio::spawn(poll_wakeups(
                pg.clone(),
                notifier.clone(),
                health.clone(),
                listens_on.is_none(),
            ));
        }
        let mut store = Self {
            pool,
            nonce_batches: nonces::Nonces::start(nonces.clone()),
            nonces,
            listen: listen_pool,
            notifier,
            wakes,
            open_jobs: Arc::default(),
            empty_claims: Arc::default(),
            settler: None,
            events: EventSlot::default(),
            health,
        };
        store.settler = Some(settle::Settler::start(store.clone()));
        Ok(store)
    }

    /// Wake-ups of this store (fed by `LISTEN`).
    pub fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    /// Closes the pools (which also ends the `LISTEN` and poll tasks).
    pub async fn close(&self) {
        self.health.close();
        self.nonces.pool().close().await;
        self.pool.pool().close().await;
        if let Some(l) = &self.listen {
            l.close().await;
        }
    }

    /// The pool for nonce records (commits without waiting for the WAL
    /// flush), unless the database is known to be down.
    fn nonce_writer(&self) -> crate::StoreResult<&Db> {
        self.pool_if_up()?;
        Ok(&self.nonces)
    }

    /// The pool for writes, unless the database is known to be down.
    fn writer(&self) -> crate::StoreResult<&Db> {
        self.pool_if_up()
    }

    /// The pool for reads, unless the database is known to be down.
    fn reader(&self) -> crate::StoreResult<&Db> {
        self.pool_if_up()
    }

    fn pool_if_up(&self) -> crate::StoreResult<&Db> {
        if self.health.is_down() {
            return Err(crate::StoreError::Unavailable(
                "PostgreSQL is unreachable; retrying in the background".into(),
            ));
        }
        Ok(&self.pool)
    }

    #[allow(clippy::unused_self)]
    fn sql(&self) -> &'static Sql {
        &POSTGRES_SQL
    }

    /// Serialises the cap check of one tenant's concurrent inserts.
    async fn lock_tenant(tx: &mut Transaction<'_, Postgres>, tenant: &str) -> StoreResult<()> {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(tenant)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Turns on execution events (see [`crate::Store::set_event_log`]).
    pub fn set_event_log(&self, log: Arc<EventLog>) {
        self.events.set(log);
    }

    /// The link after the last event of `correlation_id`'s chain.
    async fn chain_link(
        tx: &mut Transaction<'_, Postgres>,
        correlation_id: &str,
    ) -> StoreResult<ChainLink> {
        let last: Option<(String, i64)> = sqlx::query_as(crate::sql::EVENT_LAST)
            .bind(correlation_id)
            .fetch_optional(&mut **tx)
            .await?;
        Ok(next_link(last))
    }

    async fn insert_event(
        tx: &mut Transaction<'_, Postgres>,
        row: EventRow,
    ) -> StoreResult<CommittedEvent> {
        Self::write_event(tx, row, crate::sql::EVENT_INSERT)
            .await?
            .ok_or_else(|| crate::StoreError::Corrupt("an event insert wrote no row".into()))
    }

    /// Inserts `row` with `sql` (an `EVENT_INSERT`); `None` if it wrote no
    /// row (the `ON CONFLICT DO NOTHING` form, on a taken position).
    async fn write_event(
        tx: &mut Transaction<'_, Postgres>,
        row: EventRow,
        sql: &str,
    ) -> StoreResult<Option<CommittedEvent>> {
        let written = sqlx::query(sql)
            .bind(&row.event_id)
            .bind(&row.tenant)
            .bind(&row.correlation_id)
            .bind(row.chain_position)
            .bind(&row.event_hash)
            .bind(&row.protocol)
            .bind(&row.topic)
            .bind(&row.status)
            .bind(row.completed_at)
            .bind(&row.event.json)
            .execute(&mut **tx)
            .await?
            .rows_affected();
        Ok((written == 1).then_some(row.event))
    }

    /// Writes the event of a job's dispatch ending, in `tx`.
    async fn job_event(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        job: &crate::Job,
        ending: Ending<'_>,
        result: Option<&serde_json::Value>,
        now_ms: i64,
    ) -> StoreResult<Option<CommittedEvent>> {
        let log = self.events.get();
        Self::job_event_at(tx, log.as_deref(), job, ending, result, now_ms, None).await
    }

    /// [`Self::job_event`] with `log` and the chain head the settlement
    /// statement returned, if it did (see [`with_head`]).
    async fn job_event_at(
        tx: &mut Transaction<'_, Postgres>,
        log: Option<&EventLog>,
        job: &crate::Job,
        ending: Ending<'_>,
        result: Option<&serde_json::Value>,
        now_ms: i64,
        head: KnownHead,
    ) -> StoreResult<Option<CommittedEvent>> {
        let Some(log) = log else {
            return Ok(None);
        };
        let now = crate::model::from_ms(now_ms);
        let correlation = correlation_id(job);
        // The returned head is the job's own chain's; a governance run's
        // events chain on its trace id instead.
        if let Some(head) = head.filter(|_| correlation == job.id) {
            let row = log.job_event(job, ending, result, now, next_link(head))?;
            if let Some(event) = Self::write_event(tx, row, &EVENT_INSERT_IF_FREE).await? {
                return Ok(Some(event));
            }
            // Taken by a commit the statement's snapshot missed: relink.
        }
        let link = Self::chain_link(tx, &correlation).await?;
        let row = log.job_event(job, ending, result, now, link)?;
        Self::insert_event(tx, row).await.map(Some)
    }

    /// Tells every replica's waiters of a watched job what happened to it
    /// (after the settlement committed; see [`wake`]).
    fn announce(&self, job: &crate::Job, change: JobChange) {
        if JobEvent::watched(job) {
            self.wakes.job_event(JobEvent {
                id: job.id.clone(),
                change,
            });
        }
    }

    /// Wakes every replica's waiters of `job`'s topic after the commit that
    /// made it claimable (see [`wake`]); this replica's learn which job (see
    /// [`crate::Wake`]).
    fn wake_job(&self, job: &crate::Job) {
        self.wakes.job(job);
    }
}
