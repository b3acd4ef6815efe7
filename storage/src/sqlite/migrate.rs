//! Opening the database file (pragmas), schema migrations, and the background WAL checkpointer.

use super::*;

/// Schema migrations, applied in order, each once.
pub(super) const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/sqlite/0001_init.sql")),
    (2, include_str!("../../migrations/sqlite/0002_progress.sql")),
    (3, include_str!("../../migrations/sqlite/0003_oauth.sql")),
    (
        4,
        include_str!("../../migrations/sqlite/0004_governance.sql"),
    ),
    (
        5,
        include_str!("../../migrations/sqlite/0005_capability_schemas.sql"),
    ),
    (6, include_str!("../../migrations/sqlite/0006_events.sql")),
    (
        7,
        include_str!("../../migrations/sqlite/0007_events_rowid.sql"),
    ),
    (
        8,
        include_str!("../../migrations/sqlite/0008_claim_by_tenant.sql"),
    ),
    (
        9,
        include_str!("../../migrations/sqlite/0009_revocation.sql"),
    ),
    (
        10,
        include_str!("../../migrations/sqlite/0010_event_retention.sql"),
    ),
    (11, include_str!("../../migrations/sqlite/0011_leaders.sql")),
];

/// Period of the background WAL checkpoint.
pub(super) const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// Copies committed WAL frames into the database file from its own
/// connection and thread, so the fsyncs of a checkpoint never stall the writer
/// (SQLite's automatic checkpoint runs inside the committing connection).
/// PASSIVE checkpoints never block the writer or readers.
pub(super) fn spawn_checkpointer(conn: Connection) -> StoreResult<std::sync::mpsc::SyncSender<()>> {
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

pub(super) fn open(
    path: &std::path::Path,
    flags: OpenFlags,
    full_sync: bool,
) -> StoreResult<Connection> {
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

pub(super) fn migrate(conn: &Connection) -> StoreResult<()> {
    migrate_with(conn, MIGRATIONS)
}

pub(super) fn migrate_with(conn: &Connection, migrations: &[(i64, &str)]) -> StoreResult<()> {
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
