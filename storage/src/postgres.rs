//! The PostgreSQL driver: claims with `FOR UPDATE SKIP LOCKED`, wake-ups with
//! `NOTIFY` inside the writing transaction and one `LISTEN` task per process,
//! so every replica's waiters hear of every replica's jobs.

use std::time::Duration;

use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};

use crate::common::impl_job_store;
use crate::notify::PG_CHANNEL;
use crate::sql::{POSTGRES_SQL, Sql};
use crate::{ConnectOptions, Notifier, StoreResult};

/// The PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    notifier: Notifier,
}

impl PgStore {
    /// Connects, migrates, and starts the `LISTEN` task.
    pub async fn connect(url: &str, opts: &ConnectOptions) -> StoreResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(opts.max_connections.max(2))
            .acquire_timeout(Duration::from_secs(30))
            .connect(url)
            .await?;
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        let notifier = Notifier::default();
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.listen(PG_CHANNEL).await?;
        let fan_out = notifier.clone();
        tokio::spawn(async move {
            loop {
                // `recv` reconnects by itself after a dropped connection;
                // wake-ups sent meanwhile are lost, which waiters tolerate
                // (they re-check on their own deadline).
                match listener.recv().await {
                    Ok(n) => fan_out.notify(n.payload()),
                    Err(sqlx::Error::PoolClosed) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "postgres LISTEN failed; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        });
        Ok(Self { pool, notifier })
    }

    /// Wake-ups of this store (fed by `LISTEN`).
    pub fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    /// Closes the pool (which also ends the `LISTEN` task).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    fn writer(&self) -> &PgPool {
        &self.pool
    }

    fn reader(&self) -> &PgPool {
        &self.pool
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

    /// Delivered by PostgreSQL at commit, to every replica (this one included).
    async fn wake_in_tx(tx: &mut Transaction<'_, Postgres>, topic: &str) -> StoreResult<()> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(PG_CHANNEL)
            .bind(topic)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Nothing to do: the `LISTEN` task relays the commit-time notification.
    #[allow(clippy::unused_self)]
    fn wake_after_commit(&self, _topic: &str) {}
}

impl_job_store!(PgStore);
