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

mod auth;
mod events;
mod governance;
mod jobs;
mod migrate;
mod settings;
mod worker;

use migrate::*;
use worker::*;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::types::ToSql;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row};
use tokio::sync::{mpsc, oneshot};

use crate::CommittedEvent;
use crate::eventlog::{
    Ending, EventLog, EventRow, EventSlot, cancel_ends_dispatch, correlation_id, next_link,
};
use crate::model::{PollStep, device_decide_refusal, device_decision_state, poll_step, to_ms};
use crate::row::{ApiKeyRow, JobRow, SecretRow, TraceBinds, TraceRow};
use crate::sql::{self, SQLITE_SQL};
use crate::{AdmitParams, DecisionCount, Secret, Trace, TraceSettleParams};
use crate::{
    ApiKey, ConnectOptions, DeviceCode, DeviceDecideParams, DevicePoll, DevicePollParams,
    ExpiredLease, Job, JobCancelParams, JobChange, JobClaimParams, JobCompleteParams, JobEvent,
    JobExtendParams, JobFailParams, JobInsertOutcome, JobInsertParams, JobProgressParams, JobState,
    KvSetParams, NonceParams, Notifier, OAuthClient, PurgeParams, PurgeReport, Scope, StoreError,
    StoreResult,
};
use crate::{EventKey, EventQuery, IngestedEvent, StoredEvent};
use agw_events::ChainLink;

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
