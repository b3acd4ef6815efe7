//! The SQLite driver: one file in WAL mode, one writer connection (so writes
//! queue in the pool instead of spinning on `SQLITE_BUSY`) and a pool of
//! readers. Wake-ups are in-process.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};

use crate::common::impl_job_store;
use crate::sql::{SQLITE_SQL, Sql};
use crate::{ConnectOptions, Notifier, StoreError, StoreResult};

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Exactly one connection: SQLite allows one writer at a time.
    writer: SqlitePool,
    reader: SqlitePool,
    notifier: Notifier,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file at `url` and migrates it.
    pub async fn connect(url: &str, opts: &ConnectOptions) -> StoreResult<Self> {
        if url.contains(":memory:") || url.contains("mode=memory") {
            return Err(StoreError::InvalidUrl(
                "in-memory SQLite is not supported: give a file path (sqlite://PATH)".into(),
            ));
        }
        let base = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::InvalidUrl(format!("{url}: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL + NORMAL: a committed transaction survives a process crash
            // (kill -9); only an OS crash can lose the last commits.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(base.clone())
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(opts.max_connections.clamp(1, 8))
            .connect_with(base.read_only(true))
            .await?;
        Ok(Self {
            writer,
            reader,
            notifier: Notifier::default(),
        })
    }

    /// Wake-ups of this store.
    pub fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    /// Closes both pools.
    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }

    fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    #[allow(clippy::unused_self)]
    fn sql(&self) -> &'static Sql {
        &SQLITE_SQL
    }

    /// Inserts are already serialised by the single writer connection.
    #[allow(clippy::unused_async)]
    async fn lock_tenant(_tx: &mut Transaction<'_, Sqlite>, _tenant: &str) -> StoreResult<()> {
        Ok(())
    }

    /// Wake-ups are in-process and sent after commit.
    #[allow(clippy::unused_async)]
    async fn wake_in_tx(_tx: &mut Transaction<'_, Sqlite>, _topic: &str) -> StoreResult<()> {
        Ok(())
    }

    fn wake_after_commit(&self, topic: &str) {
        self.notifier.notify(topic);
    }
}

impl_job_store!(SqliteStore);
