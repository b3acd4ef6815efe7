//! The SQLite driver: one file in WAL mode, owned by two threads.
//!
//! - The **writer** thread owns the only write connection. Callers queue
//!   operations; the thread takes everything queued, runs it in one
//!   `BEGIN IMMEDIATE … COMMIT` (each operation inside its own savepoint, so a
//!   failing one never undoes its neighbours), and answers every caller only
//!   after the commit. Group commit turns N commits into one, and nothing
//!   ever waits on `SQLITE_BUSY` inside the process.
//! - The **reader** thread owns a read-only connection for plain reads, which
//!   WAL lets proceed while the writer writes.
//!
//! Each statement is a cached prepared statement on a connection the thread
//! owns: no pool and no async hand-off per statement (a pooled sqlx
//! round trip measured ~75 µs of overhead; see BENCHMARKS.md).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use agw_events::ChainLink;
use chrono::{DateTime, Utc};
use rusqlite::types::ToSql;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row};
use tokio::sync::{mpsc, oneshot};

use crate::CommittedEvent;
use crate::eventlog::{
    Ending, EventLog, EventRow, EventSlot, cancel_ends_dispatch, correlation_id, next_link,
};
use crate::model::{PollStep, poll_step, to_ms};
use crate::row::{ApiKeyRow, JobRow, SecretRow, TraceBinds, TraceRow};
use crate::sql::{self, SQLITE_SQL};
use crate::{
    ApiKey, ConnectOptions, DeviceCode, DeviceDecideParams, DevicePoll, DevicePollParams,
    ExpiredLease, Job, JobCancelParams, JobChange, JobClaimParams, JobCompleteParams, JobEvent,
    JobExtendParams, JobFailParams, JobInsertOutcome, JobInsertParams, JobProgressParams, JobState,
    JobStore, KvSetParams, NonceParams, Notifier, OAuthClient, PurgeParams, PurgeReport, Scope,
    StoreError, StoreResult,
};
use crate::{DecisionCount, Secret, Trace, TraceSettleParams};
use crate::{EventKey, EventQuery, IngestedEvent, StoredEvent};

/// Schema migrations, applied in order, each once.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/sqlite/0001_init.sql")),
    (2, include_str!("../migrations/sqlite/0002_progress.sql")),
    (3, include_str!("../migrations/sqlite/0003_oauth.sql")),
    (4, include_str!("../migrations/sqlite/0004_governance.sql")),
    (
        5,
        include_str!("../migrations/sqlite/0005_capability_schemas.sql"),
    ),
    (6, include_str!("../migrations/sqlite/0006_events.sql")),
    (
        7,
        include_str!("../migrations/sqlite/0007_events_rowid.sql"),
    ),
    (
        8,
        include_str!("../migrations/sqlite/0008_claim_by_tenant.sql"),
    ),
    (9, include_str!("../migrations/sqlite/0009_revocation.sql")),
    (
        10,
        include_str!("../migrations/sqlite/0010_event_retention.sql"),
    ),
];

/// Most operations one group commit takes.
const MAX_BATCH: usize = 256;

/// Operations waiting for a thread at most; beyond, callers get
/// [`StoreError::Unavailable`] (a `503`) instead of an ever longer queue.
const MAX_QUEUED: usize = 8192;

type Task = Box<dyn FnOnce(&Connection) -> Box<dyn FnOnce(Result<(), String>) + Send> + Send>;

/// A thread owning one connection, fed by a queue.
#[derive(Debug, Clone)]
struct Worker {
    tx: mpsc::Sender<Task>,
}

impl Worker {
    /// Starts the thread. `batched`: wrap each drained batch in one transaction.
    fn spawn(name: &str, conn: Connection, batched: bool) -> StoreResult<Self> {
        let (tx, mut rx) = mpsc::channel::<Task>(MAX_QUEUED);
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let mut batch = Vec::with_capacity(MAX_BATCH);
                while let Some(first) = rx.blocking_recv() {
                    batch.push(first);
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(t) => batch.push(t),
                            Err(_) => break,
                        }
                    }
                    if !batched {
                        for task in batch.drain(..) {
                            task(&conn)(Ok(()));
                        }
                        continue;
                    }
                    // If BEGIN fails (another process holds the lock past the
                    // busy timeout), the tasks are dropped unrun: their callers
                    // get an error and nothing was written.
                    let begun = conn.execute_batch("BEGIN IMMEDIATE").map_err(|e| e.to_string());
                    let replies: Vec<_> = match &begun {
                        Ok(()) => batch.drain(..).map(|task| task(&conn)).collect(),
                        Err(e) => {
                            tracing::error!(error = %e, dropped = batch.len(), "sqlite BEGIN failed");
                            batch.clear();
                            Vec::new()
                        }
                    };
                    let committed = begun.and_then(|()| {
                        conn.execute_batch("COMMIT").map_err(|e| {
                            let _ = conn.execute_batch("ROLLBACK");
                            e.to_string()
                        })
                    });
                    for reply in replies {
                        reply(committed.clone());
                    }
                }
            })
            .map_err(|e| StoreError::InvalidUrl(format!("cannot start the SQLite {name} thread: {e}")))?;
        Ok(Self { tx })
    }

    /// Runs `f` on the thread and resolves once its transaction committed. On
    /// the writer, `f` runs inside a savepoint so its partial writes vanish if
    /// it fails without touching its neighbours in the group commit.
    async fn run<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.submit(f, true).await
    }

    /// [`Worker::run`] for an `f` that executes exactly one writing
    /// statement: a statement is atomic by itself, so no savepoint is needed.
    async fn run_one<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.submit(f, false).await
    }

    async fn submit<T, F>(&self, f: F, isolate: bool) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (reply_tx, reply_rx) = oneshot::channel::<StoreResult<T>>();
        let task: Task = Box::new(move |conn: &Connection| {
            let result = if isolate && !conn.is_autocommit() {
                savepoint(conn, f)
            } else {
                f(conn)
            };
            Box::new(move |committed: Result<(), String>| {
                let out = match committed {
                    Ok(()) => result,
                    Err(e) => Err(StoreError::Unavailable(format!("commit failed: {e}"))),
                };
                let _ = reply_tx.send(out);
            })
        });
        self.tx.try_send(task).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                StoreError::Unavailable(format!("{MAX_QUEUED} store operations already queued"))
            }
            mpsc::error::TrySendError::Closed(_) => {
                StoreError::Unavailable("the SQLite thread has stopped".into())
            }
        })?;
        reply_rx.await.map_err(|_| {
            StoreError::Unavailable("the SQLite thread dropped the request (BEGIN failed)".into())
        })?
    }
}

/// Runs `f` in a savepoint: its writes are kept only if it succeeds.
fn savepoint<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> StoreResult<T>,
) -> StoreResult<T> {
    exec(conn, "SAVEPOINT op", &[])?;
    let r = f(conn);
    if r.is_err() {
        exec(conn, "ROLLBACK TO op", &[])?;
    }
    exec(conn, "RELEASE op", &[])?;
    r
}

/// Binds `$N` placeholders by number (SQLite numbers `$N` by first
/// appearance, not by N, so binding by position would be wrong).
fn bind(stmt: &mut rusqlite::CachedStatement<'_>, params: &[&dyn ToSql]) -> StoreResult<()> {
    for i in 1..=stmt.parameter_count() {
        let n: usize = stmt
            .parameter_name(i)
            .and_then(|name| name.strip_prefix('$'))
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| StoreError::Sqlite(format!("parameter {i} is not of the form $N")))?;
        let value = params
            .get(n - 1)
            .ok_or_else(|| StoreError::Sqlite(format!("no value for ${n}")))?;
        stmt.raw_bind_parameter(i, value)?;
    }
    Ok(())
}

fn exec(conn: &Connection, sql: &str, params: &[&dyn ToSql]) -> StoreResult<usize> {
    let mut stmt = conn.prepare_cached(sql)?;
    bind(&mut stmt, params)?;
    Ok(stmt.raw_execute()?)
}

fn query<T>(
    conn: &Connection,
    sql: &str,
    params: &[&dyn ToSql],
    map: impl Fn(&Row<'_>) -> rusqlite::Result<T>,
) -> StoreResult<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql)?;
    bind(&mut stmt, params)?;
    let mut rows = stmt.raw_query();
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(map(row)?);
    }
    Ok(out)
}

fn query_one<T>(
    conn: &Connection,
    sql: &str,
    params: &[&dyn ToSql],
    map: impl Fn(&Row<'_>) -> rusqlite::Result<T>,
) -> StoreResult<Option<T>> {
    Ok(query(conn, sql, params, map)?.into_iter().next())
}

/// Decodes a `jobs` row selected with `*` / `RETURNING *`: columns by
/// position, in the order of `CREATE TABLE jobs` (by-name lookup costs a string
/// compare per column per row). `jobs_row_columns_are_in_table_order` guards it.
/// Runs an event-list statement (`sql::EVENTS_LIST` or `EVENTS_SEQS`) with
/// the binds of `q`.
fn event_query<T>(
    c: &Connection,
    sql: &str,
    q: &EventQuery,
    row: impl Fn(&Row<'_>) -> rusqlite::Result<T>,
) -> StoreResult<Vec<T>> {
    let ms = |t: Option<DateTime<Utc>>| t.map(to_ms);
    query(
        c,
        sql,
        &[
            &q.after_seq,
            &q.scope.tenant(),
            &q.correlation_id,
            &q.topic,
            &q.protocol,
            &q.status,
            &ms(q.since),
            &ms(q.until),
            &q.limit,
        ],
        row,
    )
}

/// An `api_keys` row in `sql::API_KEY_BY_HASH` column order.
fn api_key_row(r: &Row<'_>) -> rusqlite::Result<ApiKeyRow> {
    Ok(ApiKeyRow {
        id: r.get(0)?,
        key_hash: r.get(1)?,
        owner: r.get(2)?,
        role: r.get(3)?,
        created_at: r.get(4)?,
        revoked_at: r.get(5)?,
        last_used_at: r.get(6)?,
    })
}

/// An `oauth_clients` row in `sql::CLIENT_GET` column order.
fn oauth_client_row(r: &Row<'_>) -> rusqlite::Result<crate::row::OAuthClientRow> {
    Ok(crate::row::OAuthClientRow {
        client_id: r.get(0)?,
        secret_hash: r.get(1)?,
        tenant: r.get(2)?,
        name: r.get(3)?,
        created_at: r.get(4)?,
        revoked_at: r.get(5)?,
    })
}

fn job_row(r: &Row<'_>) -> rusqlite::Result<JobRow> {
    Ok(JobRow {
        id: r.get(0)?,
        tenant: r.get(1)?,
        protocol: r.get(2)?,
        topic: r.get(3)?,
        namespace: r.get(4)?,
        visibility: r.get(5)?,
        priority: r.get(6)?,
        run_at: r.get(7)?,
        state: r.get(8)?,
        attempts: r.get(9)?,
        max_attempts: r.get(10)?,
        backoff_base_ms: r.get(11)?,
        target_worker: r.get(12)?,
        required_capability: r.get(13)?,
        on_behalf_of: r.get(14)?,
        input: r.get(15)?,
        metadata: r.get(16)?,
        result: r.get(17)?,
        result_type: r.get(18)?,
        error: r.get(19)?,
        lease_holder: r.get(20)?,
        lease_key: r.get(21)?,
        lease_token: r.get(22)?,
        lease_expires_at: r.get(23)?,
        created_at: r.get(24)?,
        updated_at: r.get(25)?,
        completed_at: r.get(26)?,
        progress: r.get(27)?,
        leased_at: r.get(28)?,
    })
}

fn query_job(conn: &Connection, sql: &str, params: &[&dyn ToSql]) -> StoreResult<Option<Job>> {
    query_one(conn, sql, params, job_row)?
        .map(TryInto::try_into)
        .transpose()
}

/// The decision whose trace also writes an event (no job will).
const BLOCK: &str = "BLOCK";

/// The last event (hash, position) of `correlation_id`'s chain.
fn chain_head(c: &Connection, correlation_id: &str) -> StoreResult<Option<(String, i64)>> {
    query_one(c, sql::EVENT_LAST, &[&correlation_id], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
    })
}

/// The link after the last event of `correlation_id`'s chain.
fn chain_link(c: &Connection, correlation_id: &str) -> StoreResult<ChainLink> {
    Ok(next_link(chain_head(c, correlation_id)?))
}

/// A settlement's event built and signed ahead of the settlement.
struct Presigned {
    row: EventRow,
    /// The chain head it links to.
    head: Option<(String, i64)>,
    /// The job as predicted after the settlement, which it was built from.
    job: Job,
}

impl Presigned {
    /// Whether the settlement came out as predicted and the chain did not
    /// move since (then the event is exactly what the writer would build).
    fn still_valid(&self, c: &Connection, job: &Job) -> StoreResult<bool> {
        if !same_event_inputs(&self.job, job) {
            return Ok(false);
        }
        Ok(chain_head(c, &self.row.correlation_id)? == self.head)
    }
}

/// Whether two versions of a job give the same event: every field
/// [`EventLog::job_event`] reads.
fn same_event_inputs(a: &Job, b: &Job) -> bool {
    a.id == b.id
        && a.state == b.state
        && a.attempts == b.attempts
        && a.tenant == b.tenant
        && a.protocol == b.protocol
        && a.topic == b.topic
        && a.namespace == b.namespace
        && a.last_holder == b.last_holder
        && a.last_holder_key == b.last_holder_key
        && a.leased_at == b.leased_at
        && a.created_at == b.created_at
        && a.metadata == b.metadata
        && a.input == b.input
}

/// A job as its claim left it, with its chain head then: what a settlement's
/// event is built from without reading the job back (see
/// [`SqliteStore::presign`]). Only a hint: the writer checks the settled job
/// and the chain head against it before using an event built from it.
#[derive(Debug)]
struct LeaseSnapshot {
    job: Job,
    head: Option<(String, i64)>,
}

/// Most lease snapshots kept; past it they are dropped (leases that ended
/// without a settlement here, by expiry or cancel, leave theirs behind).
const MAX_SNAPSHOTS: usize = 65_536;

/// Claimed jobs by id, while events are on.
#[derive(Debug, Default)]
struct LeaseSnapshots(std::sync::Mutex<std::collections::HashMap<String, LeaseSnapshot>>);

impl LeaseSnapshots {
    fn put(&self, snapshot: LeaseSnapshot) {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= MAX_SNAPSHOTS {
            map.clear();
        }
        map.insert(snapshot.job.id.clone(), snapshot);
    }

    fn take(&self, id: &str) -> Option<LeaseSnapshot> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(id)
    }
}

fn insert_event(c: &Connection, row: EventRow) -> StoreResult<CommittedEvent> {
    exec(
        c,
        sql::EVENT_INSERT,
        &[
            &row.event_id,
            &row.tenant,
            &row.correlation_id,
            &row.chain_position,
            &row.event_hash,
            &row.protocol,
            &row.topic,
            &row.status,
            &row.completed_at,
            &row.event.json,
        ],
    )?;
    Ok(row.event)
}

/// Writes the event of a job's dispatch ending, in the caller's transaction.
fn job_event(
    c: &Connection,
    log: Option<&EventLog>,
    job: &Job,
    ending: Ending<'_>,
    result: Option<&serde_json::Value>,
    now: i64,
) -> StoreResult<Option<CommittedEvent>> {
    let Some(log) = log else { return Ok(None) };
    let link = chain_link(c, &correlation_id(job))?;
    let row = log.job_event(job, ending, result, crate::model::from_ms(now), link)?;
    insert_event(c, row).map(Some)
}

fn now_ms(now: Option<DateTime<Utc>>) -> i64 {
    to_ms(now.unwrap_or_else(Utc::now))
}

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: Worker,
    reader: Worker,
    notifier: Notifier,
    events: EventSlot,
    leases: Arc<LeaseSnapshots>,
    path: Arc<PathBuf>,
    /// Dropping the last clone disconnects this and ends the checkpointer.
    _checkpointer: Arc<std::sync::mpsc::SyncSender<()>>,
}

/// Period of the background WAL checkpoint.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// Copies committed WAL frames into the database file from its own
/// connection and thread, so the fsyncs of a checkpoint never stall the writer
/// (SQLite's automatic checkpoint runs inside the committing connection).
/// PASSIVE checkpoints never block the writer or readers.
fn spawn_checkpointer(conn: Connection) -> StoreResult<std::sync::mpsc::SyncSender<()>> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
    std::thread::Builder::new()
        .name("agw-sqlite-checkpoint".into())
        .spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                rx.recv_timeout(CHECKPOINT_EVERY)
            {
                if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE)") {
                    tracing::warn!(error = %e, "sqlite checkpoint failed");
                }
            }
        })
        .map_err(|e| StoreError::Sqlite(format!("cannot start the checkpoint thread: {e}")))?;
    Ok(tx)
}

fn open(path: &std::path::Path, flags: OpenFlags, full_sync: bool) -> StoreResult<Connection> {
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    // WAL + FULL (the default): each commit's WAL frames reach the disk
    // before the commit returns, so an acknowledged job survives a power
    // loss too; the writer's group commit shares one sync among every
    // request of a batch. WAL + NORMAL survives a process crash (kill -9)
    // but an OS crash can lose the last commits.
    conn.execute_batch(if full_sync {
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;"
    } else {
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;"
    })?;
    conn.set_prepared_statement_cache_capacity(64);
    // 8 MiB page cache (default 2 MiB): the hot claim index stays in memory.
    // 64 MiB was slower, not faster (3-5 % fewer job cycles/s, BENCHMARKS.md):
    // the page-cache truncation SQLite runs after each commit cost more with
    // the larger cache.
    conn.execute_batch("PRAGMA cache_size = -8192;")?;
    Ok(conn)
}

fn migrate(conn: &Connection) -> StoreResult<()> {
    migrate_with(conn, MIGRATIONS)
}

fn migrate_with(conn: &Connection, migrations: &[(i64, &str)]) -> StoreResult<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS agw_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )?;
    for (version, text) in migrations {
        let done: Option<i64> = conn
            .query_row(
                "SELECT version FROM agw_migrations WHERE version = ?1",
                [version],
                |r| r.get(0),
            )
            .optional()?;
        if done.is_none() {
            conn.execute_batch("BEGIN IMMEDIATE")?;
            let applied = conn.execute_batch(text).and_then(|()| {
                conn.execute(
                    "INSERT INTO agw_migrations (version, applied_at) VALUES (?1, ?2)",
                    [*version, Utc::now().timestamp_millis()],
                )
            });
            match applied {
                Ok(_) => conn.execute_batch("COMMIT")?,
                Err(e) => {
                    let _ = conn.execute_batch("ROLLBACK");
                    return Err(StoreError::Sqlite(format!(
                        "migration {version} failed: {e}"
                    )));
                }
            }
        }
    }
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if missing) the database file named by `url`
    /// (`sqlite://PATH` or `sqlite:PATH`) and migrates it.
    pub async fn connect(url: &str, opts: &ConnectOptions) -> StoreResult<Self> {
        let full_sync = opts.sqlite_full_sync;
        let raw = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        let raw = raw.split('?').next().unwrap_or_default();
        if raw.is_empty() || raw.contains(":memory:") {
            return Err(StoreError::InvalidUrl(
                "SQLite needs a file path (sqlite://PATH); in-memory databases are not supported"
                    .into(),
            ));
        }
        let path = PathBuf::from(raw);
        let p = path.clone();
        let (writer, reader, checkpointer) = tokio::task::spawn_blocking(
            move || -> StoreResult<(Connection, Connection, Connection)> {
                let w = open(
                    &p,
                    OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
                    full_sync,
                )?;
                migrate(&w)?;
                // Checkpoints are the checkpointer's job; this high mark is
                // only a safety net should it ever fall behind.
                w.execute_batch("PRAGMA wal_autocheckpoint = 100000;")?;
                let r = open(&p, OpenFlags::SQLITE_OPEN_READ_ONLY, full_sync)?;
                let c = open(&p, OpenFlags::SQLITE_OPEN_READ_WRITE, full_sync)?;
                Ok((w, r, c))
            },
        )
        .await
        .map_err(|e| StoreError::Sqlite(e.to_string()))??;
        Ok(Self {
            writer: Worker::spawn("agw-sqlite-writer", writer, true)?,
            reader: Worker::spawn("agw-sqlite-reader", reader, false)?,
            notifier: Notifier::default(),
            events: EventSlot::default(),
            leases: Arc::default(),
            path: Arc::new(path),
            _checkpointer: Arc::new(spawn_checkpointer(checkpointer)?),
        })
    }

    /// Wake-ups of this store.
    pub fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    /// Turns on execution events (see [`crate::Store::set_event_log`]).
    pub fn set_event_log(&self, log: Arc<EventLog>) {
        self.events.set(log);
    }

    /// Builds and signs a settlement's event before the settlement, on the
    /// caller's thread, from the job as its lease holder sees it and the
    /// chain head as committed: as the claim left them when this store made
    /// it (no read at all), else read back on the reader thread. `predict`
    /// gives the job as the settlement will leave it. `None` when the proof
    /// does not name the live lease (the settlement will fail, or fall back
    /// to building in the writer).
    async fn presign<'e>(
        &self,
        log: &EventLog,
        id: &str,
        proof: &crate::LeaseProof,
        now: i64,
        result: Option<&serde_json::Value>,
        predict: impl FnOnce(&Job) -> (Job, Ending<'e>),
    ) -> StoreResult<Option<Presigned>> {
        let read = match self.leases.take(id) {
            Some(s) => Some((s.job, s.head)),
            None => {
                let id = id.to_owned();
                self.reader
                    .run(move |c| {
                        let Some(job) = query_job(c, sql::GET, &[&id, &None::<String>])? else {
                            return Ok(None);
                        };
                        let head = chain_head(c, &correlation_id(&job))?;
                        Ok(Some((job, head)))
                    })
                    .await?
            }
        };
        let Some((job, head)) = read else {
            return Ok(None);
        };
        let Some(lease) = &job.lease else {
            return Ok(None);
        };
        let (token, key) = proof.split();
        if token.is_some_and(|t| t != lease.token)
            || key.is_some_and(|k| Some(k) != lease.holder_key.as_deref())
        {
            return Ok(None);
        }
        let (after, ending) = predict(&job);
        let row = log.job_event(
            &after,
            ending,
            result,
            crate::model::from_ms(now),
            next_link(head.clone()),
        )?;
        Ok(Some(Presigned {
            row,
            head,
            job: after,
        }))
    }

    /// Tells waiters of a watched job what happened to it (after the commit).
    fn announce(&self, job: &Job, change: JobChange) {
        if JobEvent::watched(job) {
            self.notifier.job_event(JobEvent {
                id: job.id.clone(),
                change,
            });
        }
    }

    /// Checkpoints the WAL into the main file. The threads end when the last
    /// clone of the store is dropped.
    pub async fn close(&self) {
        let _ = self
            .writer
            .run(|c| Ok(c.execute_batch("PRAGMA wal_checkpoint(PASSIVE)")?))
            .await;
        tracing::debug!(path = %self.path.display(), "sqlite store closed");
    }
}

// === impl JobStore ===

impl JobStore for SqliteStore {
    /// Both threads answer: the reader, and the writer through a group
    /// commit (so a writer that cannot begin or commit fails readiness).
    async fn ping(&self) -> StoreResult<()> {
        self.reader
            .run(|c| query_one(c, sql::PING, &[], |r| r.get::<_, i64>(0)).map(drop))
            .await?;
        self.writer
            .run_one(|c| query_one(c, sql::PING, &[], |r| r.get::<_, i64>(0)).map(drop))
            .await
    }

    async fn job_insert(&self, p: JobInsertParams) -> StoreResult<JobInsertOutcome> {
        let topic = p.job.topic.clone();
        let out = self
            .writer
            .run(move |c| {
                let now = now_ms(p.now);
                let job = p.job;
                if let Some(idem) = &p.idempotency {
                    let claimed = exec(
                        c,
                        sql::IDEMPOTENCY_CLAIM,
                        &[
                            &job.tenant,
                            &idem.key,
                            &idem.request_hash,
                            &i64::from(idem.response_status),
                            &idem.response_body,
                            &to_ms(idem.expires_at),
                            &now,
                        ],
                    )?;
                    if claimed == 0 {
                        let first =
                            query_one(c, sql::IDEMPOTENCY_GET, &[&job.tenant, &idem.key], |r| {
                                Ok((
                                    r.get::<_, String>(0)?,
                                    r.get::<_, i64>(1)?,
                                    r.get::<_, String>(2)?,
                                ))
                            })?
                            .ok_or(StoreError::NotFound)?;
                        return Ok(JobInsertOutcome::Replayed {
                            request_hash: first.0,
                            response_status: u16::try_from(first.1).unwrap_or(200),
                            response_body: first.2,
                        });
                    }
                }
                if let Some(limit) = p.max_open_per_tenant {
                    let live = query_one(c, sql::COUNT_LIVE_TENANT, &[&job.tenant], |r| {
                        r.get::<_, i64>(0)
                    })?
                    .unwrap_or(0);
                    if live >= limit {
                        return Err(StoreError::TooManyOpen { limit });
                    }
                }
                let run_at = now.saturating_add(job.delay_ms.max(0));
                let inserted = query_job(
                    c,
                    sql::INSERT_JOB,
                    &[
                        &job.id,
                        &job.tenant,
                        &job.protocol.as_str(),
                        &job.topic,
                        &job.namespace,
                        &job.visibility.as_str(),
                        &i64::from(job.priority),
                        &run_at,
                        &i64::from(job.max_attempts),
                        &job.backoff_base_ms,
                        &job.target_worker,
                        &job.required_capability,
                        &job.on_behalf_of,
                        &job.input.to_string(),
                        &job.metadata.as_ref().map(ToString::to_string),
                        &now,
                    ],
                )?
                .ok_or_else(|| StoreError::Corrupt("insert returned no row".into()))?;
                Ok(JobInsertOutcome::Inserted(Box::new(inserted)))
            })
            .await?;
        if let JobInsertOutcome::Inserted(j) = &out
            && j.run_at <= Utc::now()
        {
            self.notifier.notify(&topic);
        }
        Ok(out)
    }

    async fn job_claim(&self, p: JobClaimParams) -> StoreResult<Option<Job>> {
        let events = self.events.get().is_some();
        let claimed = self
            .writer
            .run_one(move |c| {
                let now = now_ms(p.now);
                let sql = SQLITE_SQL.claim_for(&p);
                let caps = format!(",{},", p.capabilities.join(","));
                let Some(job) = query_job(
                    c,
                    sql,
                    &[
                        &p.worker_id,
                        &p.holder_key,
                        &crate::new_token(),
                        &now.saturating_add(p.lease_ms),
                        &now,
                        &p.topic,
                        &p.scope.tenant(),
                        &p.namespace,
                        &p.publisher,
                        &p.worker_id,
                        &caps,
                        &p.on_behalf_of,
                    ],
                )?
                else {
                    return Ok(None);
                };
                // With events on, the settlement's event will be built from
                // the job as claimed and its chain head, read here while
                // the writer's pages are hot (a read on the reader thread
                // would find its cache reset by every commit since).
                let head = if events {
                    Some(chain_head(c, &correlation_id(&job))?)
                } else {
                    None
                };
                Ok(Some((job, head)))
            })
            .await?;
        Ok(claimed.map(|(job, head)| {
            if let Some(head) = head {
                self.leases.put(LeaseSnapshot {
                    job: job.clone(),
                    head,
                });
            }
            job
        }))
    }

    async fn job_complete(&self, p: JobCompleteParams) -> StoreResult<Job> {
        let log = self.events.get();
        let now = now_ms(p.now);
        // The event is built and signed here, off the writer thread, from the
        // job as the lease holder sees it; the writer only checks the chain
        // head is unchanged and inserts it (else rebuilds it in place).
        let pre = match &log {
            Some(log) => {
                self.presign(log, &p.id, &p.proof, now, Some(&p.result), |job| {
                    let mut after = job.clone();
                    after.state = JobState::Fulfilled;
                    (after, Ending::Fulfilled)
                })
                .await?
            }
            None => None,
        };
        let (job, event) = self
            .writer
            .run(move |c| {
                let (token, key) = p.proof.split();
                let job = query_job(
                    c,
                    sql::COMPLETE,
                    &[
                        &p.id,
                        &token,
                        &key,
                        &p.result.to_string(),
                        &p.result_type.as_str(),
                        &now,
                    ],
                )?
                .ok_or(StoreError::LeaseLost)?;
                let event = match pre {
                    Some(pre) if pre.still_valid(c, &job)? => Some(insert_event(c, pre.row)?),
                    _ => job_event(
                        c,
                        log.as_deref(),
                        &job,
                        Ending::Fulfilled,
                        Some(&p.result),
                        now,
                    )?,
                };
                Ok((job, event))
            })
            .await?;
        self.announce(&job, JobChange::Settled(job.state));
        self.notifier.publish(event);
        Ok(job)
    }

    async fn job_fail(&self, p: JobFailParams) -> StoreResult<Job> {
        let now = now_ms(p.now);
        let log = self.events.get();
        let pre = match &log {
            Some(log) => {
                let (terminal, refund) = (p.terminal, p.refund_attempt);
                self.presign(log, &p.id, &p.proof, now, None, |job| {
                    // What the fail statement will make of it.
                    let mut after = job.clone();
                    after.attempts -= i32::from(refund);
                    let dead = terminal || after.attempts >= after.max_attempts;
                    after.state = if dead { JobState::Dead } else { JobState::Open };
                    (
                        after,
                        Ending::Failed {
                            error: &p.error,
                            dead,
                        },
                    )
                })
                .await?
            }
            None => None,
        };
        let (job, event) = self
            .writer
            .run(move |c| {
                let (token, key) = p.proof.split();
                let job = query_job(
                    c,
                    &SQLITE_SQL.fail,
                    &[
                        &p.id,
                        &token,
                        &key,
                        &p.error,
                        &now,
                        &i64::from(p.terminal),
                        &i64::from(p.refund_attempt),
                        &p.max_backoff_ms,
                    ],
                )?
                .ok_or(StoreError::LeaseLost)?;
                let event = match pre {
                    Some(pre) if pre.still_valid(c, &job)? => Some(insert_event(c, pre.row)?),
                    _ => {
                        let ending = Ending::Failed {
                            error: &p.error,
                            dead: job.state == JobState::Dead,
                        };
                        job_event(c, log.as_deref(), &job, ending, None, now)?
                    }
                };
                Ok((job, event))
            })
            .await?;
        // A retry due at once (refunded attempt) wakes waiters now; a delayed
        // one is found by the due-topics scan.
        if job.state == JobState::Open && to_ms(job.run_at) <= now {
            self.notifier.notify(&job.topic);
        }
        if job.state.is_terminal() {
            self.announce(&job, JobChange::Settled(job.state));
        }
        self.notifier.publish(event);
        Ok(job)
    }

    async fn job_progress(&self, p: JobProgressParams) -> StoreResult<Job> {
        self.writer
            .run_one(move |c| {
                let (token, key) = p.proof.split();
                let progress = p.progress.to_string();
                query_job(
                    c,
                    sql::PROGRESS,
                    &[&p.id, &token, &key, &progress, &now_ms(p.now)],
                )?
                .ok_or(StoreError::LeaseLost)
            })
            .await
            .inspect(|job| self.announce(job, JobChange::Progress(job.progress.clone())))
    }

    async fn job_extend(&self, p: JobExtendParams) -> StoreResult<Job> {
        self.writer
            .run_one(move |c| {
                let now = now_ms(p.now);
                let (token, key) = p.proof.split();
                query_job(
                    c,
                    sql::EXTEND,
                    &[&p.id, &token, &key, &now.saturating_add(p.lease_ms), &now],
                )?
                .ok_or(StoreError::LeaseLost)
            })
            .await
    }

    async fn job_cancel(&self, p: JobCancelParams) -> StoreResult<Job> {
        let log = self.events.get();
        let (before, event) = self
            .writer
            .run(move |c| {
                let before = query_job(c, &SQLITE_SQL.get_for_update, &[&p.id, &p.scope.tenant()])?
                    .ok_or(StoreError::NotFound)?;
                if before.state.is_terminal() {
                    return Err(StoreError::InvalidState(before.state));
                }
                let now = now_ms(p.now);
                exec(c, sql::CANCEL, &[&p.id, &p.reason, &now])?;
                let event = if cancel_ends_dispatch(&before) {
                    let ending = Ending::Cancelled { reason: &p.reason };
                    job_event(c, log.as_deref(), &before, ending, None, now)?
                } else {
                    None
                };
                Ok((before, event))
            })
            .await?;
        self.announce(&before, JobChange::Settled(JobState::Cancelled));
        self.notifier.publish(event);
        Ok(before)
    }

    async fn job_get(&self, id: &str, scope: &Scope) -> StoreResult<Option<Job>> {
        let (id, tenant) = (id.to_owned(), scope.tenant().map(str::to_owned));
        self.reader
            .run(move |c| query_job(c, sql::GET, &[&id, &tenant]))
            .await
    }

    async fn jobs_leased_by(
        &self,
        holder_key: &str,
        now: Option<DateTime<Utc>>,
    ) -> StoreResult<Vec<Job>> {
        let key = holder_key.to_owned();
        self.reader
            .run(move |c| {
                query(c, sql::LEASED_BY, &[&key, &now_ms(now)], job_row)?
                    .into_iter()
                    .map(TryInto::try_into)
                    .collect()
            })
            .await
    }

    async fn jobs_expire_leases(&self, now: DateTime<Utc>) -> StoreResult<Vec<ExpiredLease>> {
        let log = self.events.get();
        let (expired, events) = self
            .writer
            .run(move |c| {
                let now = to_ms(now);
                let rows = query(c, sql::EXPIRE_LEASES, &[&now], job_row)?;
                let mut expired = Vec::with_capacity(rows.len());
                let mut events = Vec::new();
                for row in rows {
                    let (holder, token) = (row.lease_holder.clone(), row.lease_token.clone());
                    let job = Job::try_from(row)?;
                    let ending = Ending::Expired {
                        dead: job.state == JobState::Dead,
                    };
                    events.extend(job_event(c, log.as_deref(), &job, ending, None, now)?);
                    expired.push(ExpiredLease {
                        job_id: job.id,
                        topic: job.topic,
                        holder: holder.unwrap_or_default(),
                        token: token.unwrap_or_default(),
                        new_state: job.state,
                    });
                }
                Ok((expired, events))
            })
            .await?;
        for e in expired.iter().filter(|e| e.new_state == JobState::Open) {
            self.notifier.notify(&e.topic);
        }
        for e in events {
            self.notifier.execution_event(e);
        }
        Ok(expired)
    }

    async fn jobs_due_topics(
        &self,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<String>> {
        self.reader
            .run(move |c| {
                query(c, sql::DUE_TOPICS, &[&to_ms(since), &to_ms(now)], |r| {
                    r.get(0)
                })
            })
            .await
    }

    async fn jobs_purge(&self, p: PurgeParams) -> StoreResult<PurgeReport> {
        self.writer
            .run(move |c| {
                let now = now_ms(p.now);
                Ok(PurgeReport {
                    devices: exec(c, sql::PURGE_DEVICES, &[&now])? as u64,
                    jobs: exec(c, sql::PURGE_JOBS, &[&to_ms(p.completed_before)])? as u64,
                    kv: exec(c, sql::PURGE_KV, &[&now])? as u64,
                    nonces: exec(c, sql::PURGE_NONCES, &[&now])? as u64,
                    idempotency: exec(c, sql::PURGE_IDEMPOTENCY, &[&now])? as u64,
                    traces: exec(c, sql::PURGE_TRACES, &[&to_ms(p.completed_before)])? as u64,
                    events: match p.events_before {
                        Some(t) => exec(c, sql::PURGE_EVENTS, &[&to_ms(t)])? as u64,
                        None => 0,
                    },
                    ingested: match p.events_before {
                        Some(t) => exec(c, sql::PURGE_INGESTED, &[&to_ms(t)])? as u64,
                        None => 0,
                    },
                })
            })
            .await
    }

    async fn jobs_stats(&self) -> StoreResult<Vec<crate::JobStats>> {
        let rows: Vec<(String, String, i64, i64)> = self
            .reader
            .run(|c| {
                query(c, sql::JOBS_STATS, &[], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
            })
            .await?;
        crate::row::job_stats(rows)
    }

    async fn jobs_count_open(&self, scope: &Scope) -> StoreResult<i64> {
        let tenant = scope.tenant().map(str::to_owned);
        self.reader
            .run(move |c| {
                let n = match &tenant {
                    Some(t) => query_one(c, sql::COUNT_LIVE_TENANT, &[t], |r| r.get(0))?,
                    None => query_one(c, sql::COUNT_LIVE_ALL, &[], |r| r.get(0))?,
                };
                Ok(n.unwrap_or(0))
            })
            .await
    }

    async fn kv_set(&self, p: KvSetParams) -> StoreResult<()> {
        self.writer
            .run_one(move |c| {
                let expires = now_ms(p.now).saturating_add(p.ttl_ms);
                exec(
                    c,
                    sql::KV_SET,
                    &[&p.scope, &p.key, &p.value.to_string(), &expires],
                )
                .map(drop)
            })
            .await
    }

    async fn kv_get(
        &self,
        scope: &str,
        key: &str,
        now: Option<DateTime<Utc>>,
    ) -> StoreResult<Option<serde_json::Value>> {
        let (scope, key) = (scope.to_owned(), key.to_owned());
        let text: Option<String> = self
            .reader
            .run(move |c| query_one(c, sql::KV_GET, &[&scope, &key, &now_ms(now)], |r| r.get(0)))
            .await?;
        text.map(|v| {
            serde_json::from_str(&v).map_err(|e| StoreError::Corrupt(format!("kv.value: {e}")))
        })
        .transpose()
    }

    async fn nonce_record(&self, p: NonceParams) -> StoreResult<bool> {
        self.writer
            .run_one(move |c| {
                Ok(exec(
                    c,
                    sql::NONCE_INSERT,
                    &[&p.key_id, &p.nonce, &to_ms(p.expires_at)],
                )? == 1)
            })
            .await
    }

    async fn api_key_insert(&self, k: ApiKey) -> StoreResult<()> {
        self.writer
            .run_one(move |c| {
                exec(
                    c,
                    sql::API_KEY_INSERT,
                    &[
                        &k.id,
                        &k.key_hash,
                        &k.owner,
                        &k.role.as_str(),
                        &to_ms(k.created_at),
                    ],
                )
                .map(drop)
            })
            .await
    }

    async fn api_key_get_by_hash(&self, key_hash: &str) -> StoreResult<Option<ApiKey>> {
        let h = key_hash.to_owned();
        self.reader
            .run(move |c| query_one(c, sql::API_KEY_BY_HASH, &[&h], api_key_row))
            .await
            .map(|row| row.map(Into::into))
    }

    async fn api_keys_list(&self, owner: Option<&str>) -> StoreResult<Vec<ApiKey>> {
        let owner = owner.map(str::to_owned);
        self.reader
            .run(move |c| query(c, sql::API_KEYS_LIST, &[&owner], api_key_row))
            .await
            .map(|rows| rows.into_iter().map(Into::into).collect())
    }

    async fn api_key_revoke(&self, id: &str, now: Option<DateTime<Utc>>) -> StoreResult<bool> {
        let id = id.to_owned();
        self.writer
            .run_one(move |c| Ok(exec(c, sql::API_KEY_REVOKE, &[&id, &now_ms(now)])? == 1))
            .await
    }

    async fn api_key_touch(&self, id: &str, now: DateTime<Utc>) -> StoreResult<()> {
        let id = id.to_owned();
        self.writer
            .run_one(move |c| exec(c, sql::API_KEY_TOUCH, &[&id, &to_ms(now)]).map(drop))
            .await
    }

    async fn oauth_clients_list(&self, tenant: Option<&str>) -> StoreResult<Vec<OAuthClient>> {
        let tenant = tenant.map(str::to_owned);
        self.reader
            .run(move |c| query(c, sql::CLIENTS_LIST, &[&tenant], oauth_client_row))
            .await
            .map(|rows| rows.into_iter().map(Into::into).collect())
    }

    async fn oauth_client_revoke(
        &self,
        client_id: &str,
        now: Option<DateTime<Utc>>,
    ) -> StoreResult<bool> {
        let id = client_id.to_owned();
        self.writer
            .run_one(move |c| Ok(exec(c, sql::CLIENT_REVOKE, &[&id, &now_ms(now)])? == 1))
            .await
    }

    async fn capability_revoke(
        &self,
        capability: &str,
        reason: &str,
        now: Option<DateTime<Utc>>,
    ) -> StoreResult<()> {
        let (capability, reason) = (capability.to_owned(), reason.to_owned());
        self.writer
            .run_one(move |c| {
                exec(
                    c,
                    sql::CAPABILITY_REVOKE,
                    &[&capability, &reason, &now_ms(now)],
                )
                .map(drop)
            })
            .await
    }

    async fn capability_revocations(&self) -> StoreResult<Vec<(String, String)>> {
        self.reader
            .run(|c| {
                query(c, sql::CAPABILITY_REVOCATIONS, &[], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
            })
            .await
    }

    async fn setting_get_or_insert(&self, name: &str, value: &str) -> StoreResult<String> {
        let (name, value) = (name.to_owned(), value.to_owned());
        self.writer
            .run(move |c| {
                exec(c, sql::SETTING_INSERT, &[&name, &value])?;
                query_one(c, sql::SETTING_GET, &[&name], |r| r.get(0))?.ok_or(StoreError::NotFound)
            })
            .await
    }

    async fn trace_insert(&self, t: Trace) -> StoreResult<()> {
        let log = self.events.get();
        let event = self
            .writer
            .run(move |c| {
                let b = TraceBinds::of(&t);
                exec(
                    c,
                    sql::TRACE_INSERT,
                    &[
                        &t.id,
                        &t.tenant,
                        &t.kind,
                        &t.decision,
                        &t.reason,
                        &t.risk_score,
                        &t.policy,
                        &b.matched_rules,
                        &b.violations,
                        &t.mode,
                        &t.budget,
                        &t.status,
                        &t.job_id,
                        &t.topic,
                        &t.worker,
                        &t.latency_ms,
                        &b.created_at,
                        &b.settled_at,
                    ],
                )?;
                match log.as_deref() {
                    Some(log) if t.decision == BLOCK => {
                        let link = chain_link(c, &t.id)?;
                        insert_event(c, log.block_event(&t, t.inputs.as_ref(), link)?).map(Some)
                    }
                    _ => Ok(None),
                }
            })
            .await?;
        self.notifier.publish(event);
        Ok(())
    }

    async fn trace_settle(&self, p: TraceSettleParams) -> StoreResult<bool> {
        self.writer
            .run_one(move |c| {
                let n = exec(
                    c,
                    sql::TRACE_SETTLE,
                    &[&p.id, &p.status, &p.worker, &p.latency_ms, &now_ms(p.now)],
                )?;
                Ok(n == 1)
            })
            .await
    }

    async fn trace_get(&self, id: &str, scope: &Scope) -> StoreResult<Option<Trace>> {
        let (id, tenant) = (id.to_owned(), scope.tenant().map(str::to_owned));
        self.reader
            .run(move |c| {
                query_one(c, sql::TRACE_GET, &[&id, &tenant], |r| {
                    Ok(TraceRow {
                        id: r.get(0)?,
                        tenant: r.get(1)?,
                        kind: r.get(2)?,
                        decision: r.get(3)?,
                        reason: r.get(4)?,
                        risk_score: r.get(5)?,
                        policy: r.get(6)?,
                        matched_rules: r.get(7)?,
                        violations: r.get(8)?,
                        mode: r.get(9)?,
                        budget: r.get(10)?,
                        status: r.get(11)?,
                        job_id: r.get(12)?,
                        topic: r.get(13)?,
                        worker: r.get(14)?,
                        latency_ms: r.get(15)?,
                        created_at: r.get(16)?,
                        settled_at: r.get(17)?,
                    })
                })
            })
            .await?
            .map(TryInto::try_into)
            .transpose()
    }

    async fn trace_counts(
        &self,
        scope: &Scope,
        since: DateTime<Utc>,
    ) -> StoreResult<Vec<DecisionCount>> {
        let tenant = scope.tenant().map(str::to_owned);
        self.reader
            .run(move |c| {
                query(c, sql::TRACE_COUNTS, &[&tenant, &to_ms(since)], |r| {
                    Ok(DecisionCount {
                        decision: r.get(0)?,
                        count: r.get(1)?,
                    })
                })
            })
            .await
    }

    async fn secret_put(&self, s: Secret) -> StoreResult<()> {
        self.writer
            .run_one(move |c| {
                let tools = serde_json::to_string(&s.allowed_tools).unwrap_or_else(|_| "[]".into());
                exec(
                    c,
                    sql::SECRET_PUT,
                    &[
                        &s.tenant,
                        &s.name,
                        &s.provider,
                        &tools,
                        &s.ciphertext,
                        &to_ms(s.updated_at),
                    ],
                )
                .map(drop)
            })
            .await
    }

    async fn secret_get(&self, tenant: &str, name: &str) -> StoreResult<Option<Secret>> {
        let (tenant, name) = (tenant.to_owned(), name.to_owned());
        self.reader
            .run(move |c| {
                query_one(c, sql::SECRET_GET, &[&tenant, &name], |r| {
                    Ok(SecretRow {
                        tenant: r.get(0)?,
                        name: r.get(1)?,
                        provider: r.get(2)?,
                        allowed_tools: r.get(3)?,
                        ciphertext: r.get(4)?,
                        created_at: r.get(5)?,
                        updated_at: r.get(6)?,
                    })
                })
            })
            .await?
            .map(TryInto::try_into)
            .transpose()
    }

    async fn secret_delete(&self, tenant: &str, name: &str) -> StoreResult<bool> {
        let (tenant, name) = (tenant.to_owned(), name.to_owned());
        self.writer
            .run_one(move |c| Ok(exec(c, sql::SECRET_DELETE, &[&tenant, &name])? == 1))
            .await
    }

    async fn schema_put(&self, s: crate::CapabilitySchema) -> StoreResult<()> {
        self.writer
            .run_one(move |c| {
                let b = crate::row::SchemaBinds::of(&s);
                exec(
                    c,
                    sql::SCHEMA_PUT,
                    &[
                        &s.capability,
                        &b.input_schema,
                        &b.output_schema,
                        &b.updated_at,
                    ],
                )
                .map(drop)
            })
            .await
    }

    async fn schema_get(&self, capability: &str) -> StoreResult<Option<crate::CapabilitySchema>> {
        let capability = capability.to_owned();
        self.reader
            .run(move |c| {
                query_one(c, sql::SCHEMA_GET, &[&capability], |r| {
                    Ok(crate::row::CapabilitySchemaRow {
                        capability: r.get(0)?,
                        input_schema: r.get(1)?,
                        output_schema: r.get(2)?,
                        updated_at: r.get(3)?,
                    })
                })
            })
            .await?
            .map(TryInto::try_into)
            .transpose()
    }

    async fn schema_delete(&self, capability: &str) -> StoreResult<bool> {
        let capability = capability.to_owned();
        self.writer
            .run_one(move |c| Ok(exec(c, sql::SCHEMA_DELETE, &[&capability])? == 1))
            .await
    }

    async fn events_list(&self, q: EventQuery) -> StoreResult<Vec<StoredEvent>> {
        let rows: Vec<(i64, String)> = self
            .reader
            .run(move |c| event_query(c, sql::EVENTS_LIST, &q, |r| Ok((r.get(0)?, r.get(1)?))))
            .await?;
        rows.into_iter().map(crate::row::stored_event).collect()
    }

    async fn events_seqs(&self, q: EventQuery) -> StoreResult<Vec<i64>> {
        self.reader
            .run(move |c| event_query(c, sql::EVENTS_SEQS, &q, |r| r.get(0)))
            .await
    }

    async fn events_ingested_seqs(
        &self,
        scope: &Scope,
        correlation_id: Option<&str>,
        after_seq: i64,
        limit: i64,
    ) -> StoreResult<Vec<i64>> {
        let (tenant, corr) = (
            scope.tenant().map(str::to_owned),
            correlation_id.map(str::to_owned),
        );
        self.reader
            .run(move |c| {
                query(
                    c,
                    sql::INGEST_SEQS,
                    &[&after_seq, &tenant, &corr, &limit],
                    |r| r.get(0),
                )
            })
            .await
    }

    async fn event_key_put(&self, k: EventKey) -> StoreResult<()> {
        self.writer
            .run_one(move |c| {
                exec(
                    c,
                    sql::EVENT_KEY_PUT,
                    &[&k.key_id, &k.public_key, &to_ms(k.created_at)],
                )
                .map(drop)
            })
            .await
    }

    async fn event_keys(&self) -> StoreResult<Vec<EventKey>> {
        self.reader
            .run(|c| {
                query(c, sql::EVENT_KEYS, &[], |r| {
                    Ok(EventKey {
                        key_id: r.get(0)?,
                        public_key: r.get(1)?,
                        created_at: crate::model::from_ms(r.get(2)?),
                    })
                })
            })
            .await
    }

    async fn event_ingest(&self, e: IngestedEvent) -> StoreResult<bool> {
        self.writer
            .run_one(move |c| {
                let n = exec(
                    c,
                    sql::INGEST_INSERT,
                    &[
                        &e.event_id,
                        &e.tenant,
                        &e.correlation_id,
                        &to_ms(e.received_at),
                        &e.body.to_string(),
                    ],
                )?;
                Ok(n == 1)
            })
            .await
    }

    async fn events_ingested(
        &self,
        scope: &Scope,
        correlation_id: Option<&str>,
        after_seq: i64,
        limit: i64,
    ) -> StoreResult<Vec<(i64, serde_json::Value)>> {
        let (tenant, corr) = (
            scope.tenant().map(str::to_owned),
            correlation_id.map(str::to_owned),
        );
        let rows: Vec<(i64, String)> = self
            .reader
            .run(move |c| {
                query(
                    c,
                    sql::INGEST_LIST,
                    &[&after_seq, &tenant, &corr, &limit],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
            })
            .await?;
        rows.into_iter().map(crate::row::ingested_event).collect()
    }

    async fn device_insert(&self, d: DeviceCode) -> StoreResult<()> {
        self.writer
            .run_one(move |c| {
                exec(
                    c,
                    sql::DEVICE_INSERT,
                    &[
                        &d.device_code_hash,
                        &d.user_code,
                        &d.client_name,
                        &to_ms(d.expires_at),
                        &d.interval_ms,
                        &to_ms(d.created_at),
                    ],
                )
                .map(drop)
            })
            .await
    }

    async fn device_decide(&self, p: DeviceDecideParams) -> StoreResult<()> {
        self.writer
            .run(move |c| {
                let now = now_ms(p.now);
                let state = if p.tenant.is_some() {
                    "approved"
                } else {
                    "denied"
                };
                if exec(
                    c,
                    sql::DEVICE_DECIDE,
                    &[&p.user_code, &state, &p.tenant, &now],
                )? == 1
                {
                    return Ok(());
                }
                match query_one(c, sql::DEVICE_BY_USER_CODE, &[&p.user_code], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
                })? {
                    Some((st, exp)) if st != "pending" || exp <= now => {
                        Err(StoreError::Conflict(format!(
                            "device code is {}",
                            if exp <= now { "expired" } else { &st }
                        )))
                    }
                    _ => Err(StoreError::NotFound),
                }
            })
            .await
    }

    async fn device_poll(&self, p: DevicePollParams) -> StoreResult<DevicePoll> {
        self.writer
            .run(move |c| {
                let now = now_ms(p.now);
                let row = query_one(c, sql::DEVICE_GET, &[&p.device_code_hash], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })?;
                match poll_step(row, now) {
                    PollStep::Answer(a) => Ok(a),
                    PollStep::Record(a) => {
                        exec(c, sql::DEVICE_POLLED, &[&p.device_code_hash, &now])?;
                        Ok(a)
                    }
                    PollStep::Redeem(tenant) => {
                        let client = OAuthClient {
                            tenant,
                            ..p.new_client
                        };
                        exec(
                            c,
                            sql::CLIENT_INSERT,
                            &[
                                &client.client_id,
                                &client.secret_hash,
                                &client.tenant,
                                &client.name,
                                &to_ms(client.created_at),
                            ],
                        )?;
                        exec(c, sql::DEVICE_REDEEMED, &[&p.device_code_hash, &now])?;
                        Ok(DevicePoll::Issued(client))
                    }
                }
            })
            .await
    }

    async fn oauth_client_get(&self, client_id: &str) -> StoreResult<Option<OAuthClient>> {
        let id = client_id.to_owned();
        self.reader
            .run(move |c| query_one(c, sql::CLIENT_GET, &[&id], oauth_client_row))
            .await
            .map(|row| row.map(Into::into))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `job_row` reads by position: the table's column order must match it.
    #[test]
    fn jobs_row_columns_are_in_table_order() {
        let conn = Connection::open_in_memory().unwrap();
        migrate(&conn).unwrap();
        let cols: Vec<String> = conn
            .prepare("SELECT name FROM pragma_table_info('jobs') ORDER BY cid")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let expected = [
            "id",
            "tenant",
            "protocol",
            "topic",
            "namespace",
            "visibility",
            "priority",
            "run_at",
            "state",
            "attempts",
            "max_attempts",
            "backoff_base_ms",
            "target_worker",
            "required_capability",
            "on_behalf_of",
            "input",
            "metadata",
            "result",
            "result_type",
            "error",
            "lease_holder",
            "lease_key",
            "lease_token",
            "lease_expires_at",
            "created_at",
            "updated_at",
            "completed_at",
            "progress",
            "leased_at",
        ];
        assert_eq!(cols, expected);
    }

    /// Migration 7 rebuilds `events` without `AUTOINCREMENT`, keeping every
    /// row and its `seq`; later inserts continue above the largest.
    #[test]
    fn events_rowid_migration_keeps_rows_and_order() {
        let conn = Connection::open_in_memory().unwrap();
        let before_7 = MIGRATIONS.iter().position(|(v, _)| *v == 7).unwrap();
        migrate_with(&conn, &MIGRATIONS[..before_7]).unwrap();
        let insert = |c: &Connection, seq: Option<i64>, corr: &str| {
            c.execute(
                "INSERT INTO events (seq, event_id, tenant, correlation_id, chain_position,
                 event_hash, protocol, topic, status, completed_at, body)
                 VALUES (?1, ?2, 't', ?3, 1, 'h', 'intent_bus', 'x', 'ok', 0, '{}')",
                rusqlite::params![seq, format!("ev-{corr}"), corr],
            )
            .unwrap();
        };
        for (seq, corr) in [(3, "a"), (10, "b"), (11, "c")] {
            insert(&conn, Some(seq), corr);
        }
        migrate(&conn).unwrap();
        let table_sql: String = conn
            .query_row(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'events'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(!table_sql.contains("AUTOINCREMENT"), "{table_sql}");
        insert(&conn, None, "d");
        let rows: Vec<(i64, String)> = conn
            .prepare("SELECT seq, correlation_id FROM events ORDER BY seq")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let expected = [(3, "a"), (10, "b"), (11, "c"), (12, "d")]
            .map(|(s, c)| (s, c.to_owned()))
            .to_vec();
        assert_eq!(rows, expected);
        let indexes: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(
            indexes, 3,
            "the unique (correlation_id, chain_position), (tenant, seq) and (completed_at)"
        );
    }
}
