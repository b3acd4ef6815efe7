//! [`Db`], the pool every statement of the driver goes through, and what a
//! transaction pooler (PgBouncer `pool_mode = transaction`) needs of it.
//!
//! Behind a transaction pooler a client keeps its server connection only
//! while a transaction is open: between two `Sync`s outside one the pooler
//! may hand it another server. sqlx runs a statement with arguments as
//! Parse/Describe/Sync, then Bind/Execute/Sync, and names the statements it
//! prepares (`sqlx_s_N`, per client connection, never closed without a
//! statement cache). So in pooler mode [`Db`] runs each statement alone in a
//! transaction of its own, as an unnamed statement, and every transaction
//! (the driver's own included) starts with `DEALLOCATE ALL`: named statements
//! a transaction leaves on its server (sqlx names the ones run on a
//! transaction's connection) are dropped by the next transaction there, so
//! no two clients' `sqlx_s_N` ever meet on one server.
//!
//! [`Health`] is the store's view of whether the database answers: a
//! connection-level failure anywhere marks it down, which fails every store
//! call at once (`503`) — acquires already waiting included — until a probe
//! on a fresh connection gets an answer.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt as _, TryStreamExt as _};
use sqlx::error::BoxDynError;
use sqlx::pool::{PoolConnection, PoolConnectionMetadata};
use sqlx::postgres::{
    PgArguments, PgConnectOptions, PgConnection, PgQueryResult, PgRow, PgStatement, PgTypeInfo,
};
use sqlx::{Connection as _, Either, Execute, Executor, PgPool, Postgres, Transaction};
use tokio::sync::Notify;

/// How often a probe asks a database that went away whether it is back.
const PROBE_EVERY: Duration = Duration::from_millis(250);

/// Whether the database answers, shared by the store's pools and tasks.
#[derive(Debug)]
pub(super) struct Health {
    down: AtomicBool,
    /// Fired when `down` is set: acquires waiting for a connection give up.
    went_down: Notify,
    /// When the database last went down: a pooled connection idle since
    /// before then is checked before its next use (it likely died with it).
    outage: Mutex<Option<Instant>>,
    /// Set when the store closes: the probe stops.
    closed: AtomicBool,
    /// Where the probe connects (a fresh connection each try, so no pooled
    /// connection that died with the outage stands in its way).
    probe: PgConnectOptions,
}

impl Health {
    pub(super) fn new(probe: PgConnectOptions) -> Arc<Self> {
        Arc::new(Self {
            down: AtomicBool::new(false),
            went_down: Notify::new(),
            outage: Mutex::new(None),
            closed: AtomicBool::new(false),
            probe,
        })
    }

    /// Whether the database is known to be unreachable.
    pub(super) fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    /// Marks the database down (every store call then fails at once with
    /// `503`) and starts a probe that clears it, unless one runs already.
    pub(super) fn mark_down(self: &Arc<Self>, why: &dyn std::fmt::Display) {
        if self.down.swap(true, Ordering::Relaxed) {
            return;
        }
        tracing::warn!(error = %why, "postgres unreachable; failing fast until it answers again");
        if let Ok(mut at) = self.outage.lock() {
            *at = Some(Instant::now());
        }
        self.went_down.notify_waiters();
        tokio::spawn(probe_until_up(self.clone()));
    }

    /// Marks the database down if `e` says the connection or the server is
    /// gone (rather than the statement being wrong).
    pub(super) fn note(self: &Arc<Self>, e: &sqlx::Error) {
        if connection_lost(e) {
            self.mark_down(e);
        }
    }

    /// Stops the probe (the store closed).
    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }

    /// Whether a pooled connection idle for `idle_for` went idle before the
    /// last outage began (so should be checked before use).
    fn idle_since_outage(&self, idle_for: Duration) -> bool {
        let at = self.outage.lock().ok().and_then(|at| *at);
        at.is_some_and(|at| idle_for >= at.elapsed())
    }

    /// The pool's `before_acquire` check: a connection idle since before the
    /// last outage is pinged once; a dead one is dropped (sqlx opens another)
    /// instead of failing the request that would have drawn it.
    pub(super) async fn check_idle(
        &self,
        conn: &mut PgConnection,
        meta: PoolConnectionMetadata,
    ) -> sqlx::Result<bool> {
        if !self.idle_since_outage(meta.idle_for) {
            return Ok(true);
        }
        Ok(conn.ping().await.is_ok())
    }
}

/// A failure of the connection or of the server's availability: I/O, TLS,
/// SQLSTATE class 08 (connection exception, also what PgBouncer answers when
/// it cannot reach the server), or an operator-ended backend (57P01–57P03).
fn connection_lost(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| {
            c.starts_with("08") || matches!(c.as_ref(), "57P01" | "57P02" | "57P03")
        }),
        _ => false,
    }
}

/// Clears `down` once `SELECT 1` answers on a fresh connection (each try
/// bounded by one second; the first at once, so a false alarm — one killed
/// connection — costs next to nothing).
async fn probe_until_up(health: Arc<Health>) {
    loop {
        if health.closed.load(Ordering::Relaxed) {
            return;
        }
        let ping = async {
            let mut conn = PgConnection::connect_with(&health.probe).await?;
            // A simple-protocol query: fine through a transaction pooler too.
            conn.execute(crate::sql::PING).await?;
            conn.close().await
        };
        if matches!(
            tokio::time::timeout(Duration::from_secs(1), ping).await,
            Ok(Ok(()))
        ) {
            health.down.store(false, Ordering::Relaxed);
            tracing::info!("postgres answers again");
            return;
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

/// The error of a store call refused because the database is down.
fn unreachable() -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::NotConnected,
        "PostgreSQL is unreachable; retrying in the background",
    ))
}

/// The `BEGIN` of every transaction through a transaction pooler.
pub(super) const POOLED_BEGIN: &str = "BEGIN; DEALLOCATE ALL";

/// The `BEGIN` of a nonce record's transaction through a transaction pooler:
/// `synchronous_commit = off` for this transaction only (a pooler refuses it
/// as a startup option, and a session `SET` would leak to other clients).
pub(super) const POOLED_NONCE_BEGIN: &str =
    "BEGIN; DEALLOCATE ALL; SET LOCAL synchronous_commit = off";

/// A connection pool, direct or behind a transaction pooler.
#[derive(Debug, Clone)]
pub(super) struct Db {
    pool: PgPool,
    health: Arc<Health>,
    /// Behind a transaction pooler: the `BEGIN` of every transaction, and
    /// every statement runs in one. `None`: direct (or a session pooler).
    pooled_begin: Option<&'static str>,
}

impl Db {
    /// Statements run on `pool` as they are.
    pub(super) fn direct(pool: PgPool, health: Arc<Health>) -> Self {
        Self {
            pool,
            health,
            pooled_begin: None,
        }
    }

    /// Behind a transaction pooler: every statement in a transaction that
    /// starts with `begin` (see [`POOLED_BEGIN`]).
    pub(super) fn pooled(pool: PgPool, health: Arc<Health>, begin: &'static str) -> Self {
        Self {
            pool,
            health,
            pooled_begin: Some(begin),
        }
    }

    /// A pooled connection, unless the database is (or goes) down meanwhile:
    /// a wait for a connection that cannot be opened ends when any other
    /// call sees the database gone, not at the pool's acquire timeout.
    async fn acquire(&self) -> sqlx::Result<PoolConnection<Postgres>> {
        let went_down = self.health.went_down.notified();
        tokio::pin!(went_down);
        went_down.as_mut().enable();
        if self.health.is_down() {
            return Err(unreachable());
        }
        tokio::select! {
            conn = self.pool.acquire() => conn.inspect_err(|e| self.health.note(e)),
            () = went_down => Err(unreachable()),
        }
    }

    /// The underlying pool.
    pub(super) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Starts a transaction (with the pooler's `BEGIN` when behind one).
    pub(super) async fn begin(&self) -> sqlx::Result<Transaction<'static, Postgres>> {
        let conn = self.acquire().await?;
        // `Transaction::begin` on a connection we acquired (the pool's own
        // `begin` would acquire without heeding `Health`).
        Transaction::begin(conn, self.pooled_begin.map(Cow::Borrowed))
            .await
            .inspect_err(|e| self.health.note(e))
    }

    /// Runs `query` alone: on a pooled connection, or behind a transaction
    /// pooler in a transaction of its own, unnamed.
    async fn run_alone<'q, E>(&self, query: E) -> sqlx::Result<Vec<Either<PgQueryResult, PgRow>>>
    where
        E: 'q + Execute<'q, Postgres>,
    {
        let out = if self.pooled_begin.is_none() {
            let mut conn = self.acquire().await?;
            (&mut *conn).fetch_many(query).try_collect().await
        } else {
            match self.begin().await {
                Ok(mut tx) => match (&mut *tx).fetch_many(Unnamed(query)).try_collect().await {
                    Ok(all) => tx.commit().await.map(|()| all),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            }
        };
        out.inspect_err(|e| self.health.note(e))
    }
}

/// A statement run unnamed (`persistent = false`): nothing outlives its
/// transaction on the server.
struct Unnamed<E>(E);

impl<'q, E: Execute<'q, Postgres>> Execute<'q, Postgres> for Unnamed<E> {
    fn sql(&self) -> &'q str {
        self.0.sql()
    }

    fn statement(&self) -> Option<&PgStatement<'q>> {
        self.0.statement()
    }

    fn take_arguments(&mut self) -> Result<Option<PgArguments>, BoxDynError> {
        self.0.take_arguments()
    }

    fn persistent(&self) -> bool {
        false
    }
}

/// Behind a transaction pooler, preparing on a pool would leave a named
/// statement on whichever server the pooler picked.
fn not_behind_pooler() -> sqlx::Error {
    sqlx::Error::Configuration(
        "preparing statements on the pool is not supported behind a transaction pooler".into(),
    )
}

impl<'p> Executor<'p> for &'p Db {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<PgQueryResult, PgRow>, sqlx::Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        // The whole answer is read before it is handed out (every caller
        // collects it anyway): no connection, and behind a pooler no open
        // transaction, waits on the reader.
        futures_util::stream::once(async move {
            let all = self.run_alone(query).await?;
            Ok::<_, sqlx::Error>(futures_util::stream::iter(all.into_iter().map(Ok)))
        })
        .try_flatten()
        .boxed()
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<PgRow>, sqlx::Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        Box::pin(async move {
            let all = self.run_alone(query).await?;
            Ok(all.into_iter().find_map(|step| match step {
                Either::Right(row) => Some(row),
                Either::Left(_) => None,
            }))
        })
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, Result<PgStatement<'q>, sqlx::Error>>
    where
        'p: 'e,
    {
        if self.pooled_begin.is_some() {
            return Box::pin(async { Err(not_behind_pooler()) });
        }
        self.pool.prepare_with(sql, parameters)
    }

    fn describe<'e, 'q: 'e>(
        self,
        sql: &'q str,
    ) -> BoxFuture<'e, Result<sqlx::Describe<Postgres>, sqlx::Error>>
    where
        'p: 'e,
    {
        if self.pooled_begin.is_some() {
            return Box::pin(async { Err(not_behind_pooler()) });
        }
        self.pool.describe(sql)
    }
}
