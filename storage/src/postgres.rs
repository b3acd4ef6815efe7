//! The PostgreSQL driver: claims with `FOR UPDATE SKIP LOCKED`, wake-ups with
//! `NOTIFY` inside the writing transaction and one `LISTEN` task per process,
//! so every replica's waiters hear of every replica's jobs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use agw_events::ChainLink;
use sqlx::postgres::{PgListener, PgPoolOptions, PgRow};
use sqlx::{FromRow as _, PgPool, Postgres, Row as _, Transaction};

use crate::CommittedEvent;
use crate::eventlog::{
    Ending, EventLog, EventRow, EventSlot, cancel_ends_dispatch, correlation_id, next_link,
};
use crate::notify::{JobChange, JobEvent, PG_CHANNEL, PG_JOB_CHANNEL};
use crate::sql::{POSTGRES_SQL, Sql};
use crate::{ConnectOptions, Notifier, StoreResult};

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
    pool: PgPool,
    notifier: Notifier,
    events: EventSlot,
    /// Set while the database is known to be unreachable: every call then
    /// fails at once with [`crate::StoreError::Unavailable`] (a `503`)
    /// instead of waiting for the pool's acquire timeout.
    down: Arc<AtomicBool>,
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

/// Longest wait for a pooled connection before a call fails with `503`.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a probe asks a database that went away whether it is back.
const PROBE_EVERY: Duration = Duration::from_millis(250);

/// Clears `down` once `SELECT 1` answers again (each try bounded by one second).
async fn probe_until_up(pool: PgPool, down: Arc<AtomicBool>) {
    loop {
        tokio::time::sleep(PROBE_EVERY).await;
        if pool.is_closed() {
            return;
        }
        let ping = sqlx::query(crate::sql::PING).execute(&pool);
        if matches!(
            tokio::time::timeout(Duration::from_secs(1), ping).await,
            Ok(Ok(_))
        ) {
            down.store(false, Ordering::Relaxed);
            tracing::info!("postgres answers again");
            return;
        }
    }
}

impl PgStore {
    /// Connects, migrates, and starts the `LISTEN` task.
    pub async fn connect(url: &str, opts: &ConnectOptions) -> StoreResult<Self> {
        // No ping before each acquire (a round trip per store call): a
        // connection that died with the server fails its statement instead,
        // which is `Unavailable` (503, worth a retry), and the pool replaces it.
        let pool = PgPoolOptions::new()
            .max_connections(opts.max_connections.max(2))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .test_before_acquire(false)
            .connect(url)
            .await?;
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        let notifier = Notifier::default();
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.listen_all([PG_CHANNEL, PG_JOB_CHANNEL]).await?;
        let fan_out = notifier.clone();
        let down = Arc::new(AtomicBool::new(false));
        let (health, probe_pool) = (down.clone(), pool.clone());
        tokio::spawn(async move {
            loop {
                // `recv` reconnects by itself after a dropped connection;
                // wake-ups sent meanwhile are lost, which waiters tolerate
                // (they re-check on their own deadline).
                match listener.recv().await {
                    Ok(n) if n.channel() == PG_JOB_CHANNEL => {
                        if let Some(ev) = JobEvent::from_payload(n.payload()) {
                            fan_out.job_event(ev);
                        }
                    }
                    Ok(n) => fan_out.notify(n.payload()),
                    Err(sqlx::Error::PoolClosed) => break,
                    Err(e) => {
                        // The LISTEN connection is the first to see the
                        // server go: fail fast until a probe gets through.
                        tracing::warn!(error = %e, "postgres LISTEN failed; failing fast until it answers again");
                        if !health.swap(true, Ordering::Relaxed) {
                            tokio::spawn(probe_until_up(probe_pool.clone(), health.clone()));
                        }
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        });
        Ok(Self {
            pool,
            notifier,
            events: EventSlot::default(),
            down,
        })
    }

    /// Wake-ups of this store (fed by `LISTEN`).
    pub fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    /// Closes the pool (which also ends the `LISTEN` task).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The pool for writes, unless the database is known to be down.
    fn writer(&self) -> crate::StoreResult<&PgPool> {
        self.pool_if_up()
    }

    /// The pool for reads, unless the database is known to be down.
    fn reader(&self) -> crate::StoreResult<&PgPool> {
        self.pool_if_up()
    }

    fn pool_if_up(&self) -> crate::StoreResult<&PgPool> {
        if self.down.load(Ordering::Relaxed) {
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

    /// Tells every replica's waiters of a watched job what happened to it.
    /// Sent after the settlement committed; a lost hint costs a waiter only
    /// its periodic re-check, so a failure here is logged, not returned.
    async fn announce(&self, job: &crate::Job, change: JobChange) {
        if !JobEvent::watched(job) {
            return;
        }
        let payload = JobEvent {
            id: job.id.clone(),
            change,
        }
        .to_payload();
        let Ok(pool) = self.writer() else {
            return;
        };
        if let Err(e) = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(PG_JOB_CHANNEL)
            .bind(payload)
            .execute(pool)
            .await
        {
            tracing::warn!(job = %job.id, error = %e, "job event NOTIFY failed");
        }
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
}

// === impl JobStore ===

impl crate::JobStore for PgStore {
    async fn ping(&self) -> crate::StoreResult<()> {
        sqlx::query(crate::sql::PING)
            .execute(self.reader()?)
            .await?;
        Ok(())
    }

    async fn job_insert(
        &self,
        p: crate::JobInsertParams,
    ) -> crate::StoreResult<crate::JobInsertOutcome> {
        use crate::model::to_ms;
        let now = p.now.unwrap_or_else(chrono::Utc::now);
        let now_ms = to_ms(now);
        let job = p.job;
        let mut tx = self.writer()?.begin().await?;
        if let Some(idem) = &p.idempotency {
            let claimed = sqlx::query(crate::sql::IDEMPOTENCY_CLAIM)
                .bind(&job.tenant)
                .bind(&idem.key)
                .bind(&idem.request_hash)
                .bind(i64::from(idem.response_status))
                .bind(&idem.response_body)
                .bind(to_ms(idem.expires_at))
                .bind(now_ms)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if claimed == 0 {
                let row: crate::row::IdempotencyRow = sqlx::query_as(crate::sql::IDEMPOTENCY_GET)
                    .bind(&job.tenant)
                    .bind(&idem.key)
                    .fetch_one(&mut *tx)
                    .await?;
                tx.rollback().await?;
                return Ok(crate::JobInsertOutcome::Replayed {
                    request_hash: row.request_hash,
                    response_status: u16::try_from(row.response_status).unwrap_or(200),
                    response_body: row.response_body,
                });
            }
        }
        if let Some(limit) = p.max_open_per_tenant {
            Self::lock_tenant(&mut tx, &job.tenant).await?;
            let (live,): (i64,) = sqlx::query_as(crate::sql::COUNT_LIVE_TENANT)
                .bind(&job.tenant)
                .fetch_one(&mut *tx)
                .await?;
            if live >= limit {
                return Err(crate::StoreError::TooManyOpen { limit });
            }
        }
        let run_at = now_ms.saturating_add(job.delay_ms.max(0));
        let row: crate::row::JobRow = sqlx::query_as(crate::sql::INSERT_JOB)
            .bind(&job.id)
            .bind(&job.tenant)
            .bind(job.protocol.as_str())
            .bind(&job.topic)
            .bind(&job.namespace)
            .bind(job.visibility.as_str())
            .bind(i64::from(job.priority))
            .bind(run_at)
            .bind(i64::from(job.max_attempts))
            .bind(job.backoff_base_ms)
            .bind(&job.target_worker)
            .bind(&job.required_capability)
            .bind(&job.on_behalf_of)
            .bind(job.input.to_string())
            .bind(job.metadata.as_ref().map(ToString::to_string))
            .bind(now_ms)
            .fetch_one(&mut *tx)
            .await?;
        let due = run_at <= now_ms;
        if due {
            Self::wake_in_tx(&mut tx, &job.topic).await?;
        }
        tx.commit().await?;
        Ok(crate::JobInsertOutcome::Inserted(Box::new(row.try_into()?)))
    }

    async fn job_claim(&self, p: crate::JobClaimParams) -> crate::StoreResult<Option<crate::Job>> {
        use crate::model::to_ms;
        let now_ms = to_ms(p.now.unwrap_or_else(chrono::Utc::now));
        let sql = self.sql().claim_for(&p);
        let tenant = match &p.scope {
            crate::Scope::All => None,
            crate::Scope::Tenant(t) => Some(t.as_str()),
        };
        let caps = format!(",{},", p.capabilities.join(","));
        let row: Option<crate::row::JobRow> = sqlx::query_as(sql)
            .bind(&p.worker_id)
            .bind(&p.holder_key)
            .bind(crate::new_token())
            .bind(now_ms.saturating_add(p.lease_ms))
            .bind(now_ms)
            .bind(&p.topic)
            .bind(tenant)
            .bind(&p.namespace)
            .bind(&p.publisher)
            .bind(&p.worker_id)
            .bind(caps)
            .bind(&p.on_behalf_of)
            .fetch_optional(self.writer()?)
            .await?;
        row.map(TryInto::try_into).transpose()
    }

    async fn job_complete(&self, p: crate::JobCompleteParams) -> crate::StoreResult<crate::Job> {
        let now_ms = crate::model::to_ms(p.now.unwrap_or_else(chrono::Utc::now));
        let (token, key) = p.proof.split();
        let log = self.events.get();
        let sql: &str = if log.is_some() {
            &COMPLETE_WITH_HEAD
        } else {
            crate::sql::COMPLETE
        };
        let mut tx = self.writer()?.begin().await?;
        let row = sqlx::query(sql)
            .bind(&p.id)
            .bind(token)
            .bind(key)
            .bind(p.result.to_string())
            .bind(p.result_type.as_str())
            .bind(now_ms)
            .fetch_optional(&mut *tx)
            .await?;
        let (job, head) = settled(row, log.is_some())?;
        let event = Self::job_event_at(
            &mut tx,
            log.as_deref(),
            &job,
            Ending::Fulfilled,
            Some(&p.result),
            now_ms,
            head,
        )
        .await?;
        tx.commit().await?;
        self.announce(&job, JobChange::Settled(job.state)).await;
        self.notifier.publish(event);
        Ok(job)
    }

    async fn job_fail(&self, p: crate::JobFailParams) -> crate::StoreResult<crate::Job> {
        let now_ms = crate::model::to_ms(p.now.unwrap_or_else(chrono::Utc::now));
        let (token, key) = p.proof.split();
        let log = self.events.get();
        let sql: &str = if log.is_some() {
            &FAIL_WITH_HEAD
        } else {
            &self.sql().fail
        };
        let mut tx = self.writer()?.begin().await?;
        let row = sqlx::query(sql)
            .bind(&p.id)
            .bind(token)
            .bind(key)
            .bind(&p.error)
            .bind(now_ms)
            .bind(i64::from(p.terminal))
            .bind(i64::from(p.refund_attempt))
            .bind(p.max_backoff_ms)
            .fetch_optional(&mut *tx)
            .await?;
        let (job, head) = settled(row, log.is_some())?;
        let ending = Ending::Failed {
            error: &p.error,
            dead: job.state == crate::JobState::Dead,
        };
        let event =
            Self::job_event_at(&mut tx, log.as_deref(), &job, ending, None, now_ms, head).await?;
        // A retry that is due at once (refunded attempt) wakes waiters at
        // commit; a delayed one is picked up by the due-topics scan.
        if job.state == crate::JobState::Open && job.run_at.timestamp_millis() <= now_ms {
            Self::wake_in_tx(&mut tx, &job.topic).await?;
        }
        tx.commit().await?;
        if job.state.is_terminal() {
            self.announce(&job, JobChange::Settled(job.state)).await;
        }
        self.notifier.publish(event);
        Ok(job)
    }

    async fn job_progress(&self, p: crate::JobProgressParams) -> crate::StoreResult<crate::Job> {
        let now_ms = crate::model::to_ms(p.now.unwrap_or_else(chrono::Utc::now));
        let (token, key) = p.proof.split();
        let row: Option<crate::row::JobRow> = sqlx::query_as(crate::sql::PROGRESS)
            .bind(&p.id)
            .bind(token)
            .bind(key)
            .bind(p.progress.to_string())
            .bind(now_ms)
            .fetch_optional(self.writer()?)
            .await?;
        let job: crate::Job = row.ok_or(crate::StoreError::LeaseLost)?.try_into()?;
        self.announce(&job, JobChange::Progress(job.progress.clone()))
            .await;
        Ok(job)
    }

    async fn job_extend(&self, p: crate::JobExtendParams) -> crate::StoreResult<crate::Job> {
        let now_ms = crate::model::to_ms(p.now.unwrap_or_else(chrono::Utc::now));
        let (token, key) = p.proof.split();
        let row: Option<crate::row::JobRow> = sqlx::query_as(crate::sql::EXTEND)
            .bind(&p.id)
            .bind(token)
            .bind(key)
            .bind(now_ms.saturating_add(p.lease_ms))
            .bind(now_ms)
            .fetch_optional(self.writer()?)
            .await?;
        row.ok_or(crate::StoreError::LeaseLost)?.try_into()
    }

    async fn job_cancel(&self, p: crate::JobCancelParams) -> crate::StoreResult<crate::Job> {
        let now_ms = crate::model::to_ms(p.now.unwrap_or_else(chrono::Utc::now));
        let tenant = p.scope.tenant();
        let mut tx = self.writer()?.begin().await?;
        let before: Option<crate::row::JobRow> = sqlx::query_as(&self.sql().get_for_update)
            .bind(&p.id)
            .bind(tenant)
            .fetch_optional(&mut *tx)
            .await?;
        let before: crate::Job = before.ok_or(crate::StoreError::NotFound)?.try_into()?;
        if before.state.is_terminal() {
            return Err(crate::StoreError::InvalidState(before.state));
        }
        sqlx::query(crate::sql::CANCEL)
            .bind(&p.id)
            .bind(&p.reason)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        let event = if cancel_ends_dispatch(&before) {
            let ending = Ending::Cancelled { reason: &p.reason };
            self.job_event(&mut tx, &before, ending, None, now_ms)
                .await?
        } else {
            None
        };
        tx.commit().await?;
        self.announce(&before, JobChange::Settled(crate::JobState::Cancelled))
            .await;
        self.notifier.publish(event);
        Ok(before)
    }

    async fn job_get(
        &self,
        id: &str,
        scope: &crate::Scope,
    ) -> crate::StoreResult<Option<crate::Job>> {
        let row: Option<crate::row::JobRow> = sqlx::query_as(crate::sql::GET)
            .bind(id)
            .bind(scope.tenant())
            .fetch_optional(self.reader()?)
            .await?;
        row.map(TryInto::try_into).transpose()
    }

    async fn jobs_leased_by(
        &self,
        holder_key: &str,
        now: Option<chrono::DateTime<chrono::Utc>>,
    ) -> crate::StoreResult<Vec<crate::Job>> {
        let now_ms = crate::model::to_ms(now.unwrap_or_else(chrono::Utc::now));
        let rows: Vec<crate::row::JobRow> = sqlx::query_as(crate::sql::LEASED_BY)
            .bind(holder_key)
            .bind(now_ms)
            .fetch_all(self.reader()?)
            .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn jobs_expire_leases(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> crate::StoreResult<Vec<crate::ExpiredLease>> {
        let now_ms = crate::model::to_ms(now);
        let mut tx = self.writer()?.begin().await?;
        let rows: Vec<crate::row::JobRow> = sqlx::query_as(crate::sql::EXPIRE_LEASES)
            .bind(now_ms)
            .fetch_all(&mut *tx)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        let mut events = Vec::new();
        for r in rows {
            let (holder, token) = (r.lease_holder.clone(), r.lease_token.clone());
            let job = crate::Job::try_from(r)?;
            if job.state == crate::JobState::Open {
                Self::wake_in_tx(&mut tx, &job.topic).await?;
            }
            let ending = Ending::Expired {
                dead: job.state == crate::JobState::Dead,
            };
            events.extend(self.job_event(&mut tx, &job, ending, None, now_ms).await?);
            out.push(crate::ExpiredLease {
                job_id: job.id,
                topic: job.topic,
                holder: holder.unwrap_or_default(),
                token: token.unwrap_or_default(),
                new_state: job.state,
            });
        }
        tx.commit().await?;
        for e in events {
            self.notifier.execution_event(e);
        }
        Ok(out)
    }

    async fn jobs_due_topics(
        &self,
        since: chrono::DateTime<chrono::Utc>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> crate::StoreResult<Vec<String>> {
        let rows: Vec<(String,)> = sqlx::query_as(crate::sql::DUE_TOPICS)
            .bind(crate::model::to_ms(since))
            .bind(crate::model::to_ms(now))
            .fetch_all(self.reader()?)
            .await?;
        Ok(rows.into_iter().map(|(t,)| t).collect())
    }

    async fn jobs_purge(&self, p: crate::PurgeParams) -> crate::StoreResult<crate::PurgeReport> {
        use crate::model::to_ms;
        let now_ms = to_ms(p.now.unwrap_or_else(chrono::Utc::now));
        let pool = self.writer()?;
        let run = |sql: &'static str, at: i64| async move {
            sqlx::query(sql)
                .bind(at)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        };
        Ok(crate::PurgeReport {
            jobs: run(crate::sql::PURGE_JOBS, to_ms(p.completed_before)).await?,
            kv: run(crate::sql::PURGE_KV, now_ms).await?,
            nonces: run(crate::sql::PURGE_NONCES, now_ms).await?,
            idempotency: run(crate::sql::PURGE_IDEMPOTENCY, now_ms).await?,
            devices: run(crate::sql::PURGE_DEVICES, now_ms).await?,
            traces: run(crate::sql::PURGE_TRACES, to_ms(p.completed_before)).await?,
            events: match p.events_before {
                Some(t) => run(crate::sql::PURGE_EVENTS, to_ms(t)).await?,
                None => 0,
            },
            ingested: match p.events_before {
                Some(t) => run(crate::sql::PURGE_INGESTED, to_ms(t)).await?,
                None => 0,
            },
        })
    }

    async fn jobs_stats(&self) -> crate::StoreResult<Vec<crate::JobStats>> {
        let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(crate::sql::JOBS_STATS)
            .fetch_all(self.reader()?)
            .await?;
        crate::row::job_stats(rows)
    }

    async fn jobs_count_open(&self, scope: &crate::Scope) -> crate::StoreResult<i64> {
        let (n,): (i64,) = match scope.tenant() {
            Some(t) => {
                sqlx::query_as(crate::sql::COUNT_LIVE_TENANT)
                    .bind(t)
                    .fetch_one(self.reader()?)
                    .await?
            }
            None => {
                sqlx::query_as(crate::sql::COUNT_LIVE_ALL)
                    .fetch_one(self.reader()?)
                    .await?
            }
        };
        Ok(n)
    }

    async fn kv_set(&self, p: crate::KvSetParams) -> crate::StoreResult<()> {
        let now_ms = crate::model::to_ms(p.now.unwrap_or_else(chrono::Utc::now));
        sqlx::query(crate::sql::KV_SET)
            .bind(&p.scope)
            .bind(&p.key)
            .bind(p.value.to_string())
            .bind(now_ms.saturating_add(p.ttl_ms))
            .execute(self.writer()?)
            .await?;
        Ok(())
    }

    async fn kv_get(
        &self,
        scope: &str,
        key: &str,
        now: Option<chrono::DateTime<chrono::Utc>>,
    ) -> crate::StoreResult<Option<serde_json::Value>> {
        let now_ms = crate::model::to_ms(now.unwrap_or_else(chrono::Utc::now));
        let row: Option<(String,)> = sqlx::query_as(crate::sql::KV_GET)
            .bind(scope)
            .bind(key)
            .bind(now_ms)
            .fetch_optional(self.reader()?)
            .await?;
        row.map(|(v,)| {
            serde_json::from_str(&v)
                .map_err(|e| crate::StoreError::Corrupt(format!("kv.value: {e}")))
        })
        .transpose()
    }

    async fn nonce_record(&self, p: crate::NonceParams) -> crate::StoreResult<bool> {
        let n = sqlx::query(crate::sql::NONCE_INSERT)
            .bind(&p.key_id)
            .bind(&p.nonce)
            .bind(crate::model::to_ms(p.expires_at))
            .execute(self.writer()?)
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    async fn api_key_insert(&self, k: crate::ApiKey) -> crate::StoreResult<()> {
        sqlx::query(crate::sql::API_KEY_INSERT)
            .bind(&k.id)
            .bind(&k.key_hash)
            .bind(&k.owner)
            .bind(k.role.as_str())
            .bind(crate::model::to_ms(k.created_at))
            .execute(self.writer()?)
            .await?;
        Ok(())
    }

    async fn api_key_get_by_hash(
        &self,
        key_hash: &str,
    ) -> crate::StoreResult<Option<crate::ApiKey>> {
        let row: Option<crate::row::ApiKeyRow> = sqlx::query_as(crate::sql::API_KEY_BY_HASH)
            .bind(key_hash)
            .fetch_optional(self.reader()?)
            .await?;
        Ok(row.map(Into::into))
    }

    async fn api_keys_list(&self, owner: Option<&str>) -> crate::StoreResult<Vec<crate::ApiKey>> {
        let rows: Vec<crate::row::ApiKeyRow> = sqlx::query_as(crate::sql::API_KEYS_LIST)
            .bind(owner)
            .fetch_all(self.reader()?)
            .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn api_key_revoke(
        &self,
        id: &str,
        now: Option<chrono::DateTime<chrono::Utc>>,
    ) -> crate::StoreResult<bool> {
        let n = sqlx::query(crate::sql::API_KEY_REVOKE)
            .bind(id)
            .bind(crate::model::to_ms(now.unwrap_or_else(chrono::Utc::now)))
            .execute(self.writer()?)
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    async fn api_key_touch(
        &self,
        id: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> crate::StoreResult<()> {
        sqlx::query(crate::sql::API_KEY_TOUCH)
            .bind(id)
            .bind(crate::model::to_ms(now))
            .execute(self.writer()?)
            .await?;
        Ok(())
    }

    async fn oauth_clients_list(
        &self,
        tenant: Option<&str>,
    ) -> crate::StoreResult<Vec<crate::OAuthClient>> {
        let rows: Vec<crate::row::OAuthClientRow> = sqlx::query_as(crate::sql::CLIENTS_LIST)
            .bind(tenant)
            .fetch_all(self.reader()?)
            .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn oauth_client_revoke(
        &self,
        client_id: &str,
        now: Option<chrono::DateTime<chrono::Utc>>,
    ) -> crate::StoreResult<bool> {
        let n = sqlx::query(crate::sql::CLIENT_REVOKE)
            .bind(client_id)
            .bind(crate::model::to_ms(now.unwrap_or_else(chrono::Utc::now)))
            .execute(self.writer()?)
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    async fn capability_revoke(
        &self,
        capability: &str,
        reason: &str,
        now: Option<chrono::DateTime<chrono::Utc>>,
    ) -> crate::StoreResult<()> {
        sqlx::query(crate::sql::CAPABILITY_REVOKE)
            .bind(capability)
            .bind(reason)
            .bind(crate::model::to_ms(now.unwrap_or_else(chrono::Utc::now)))
            .execute(self.writer()?)
            .await?;
        Ok(())
    }

    async fn capability_revocations(&self) -> crate::StoreResult<Vec<(String, String)>> {
        Ok(sqlx::query_as(crate::sql::CAPABILITY_REVOCATIONS)
            .fetch_all(self.reader()?)
            .await?)
    }

    async fn setting_get_or_insert(&self, name: &str, value: &str) -> crate::StoreResult<String> {
        sqlx::query(crate::sql::SETTING_INSERT)
            .bind(name)
            .bind(value)
            .execute(self.writer()?)
            .await?;
        let (v,): (String,) = sqlx::query_as(crate::sql::SETTING_GET)
            .bind(name)
            .fetch_one(self.writer()?)
            .await?;
        Ok(v)
    }

    async fn trace_insert(&self, t: crate::Trace) -> crate::StoreResult<()> {
        let b = crate::row::TraceBinds::of(&t);
        let mut tx = self.writer()?.begin().await?;
        sqlx::query(crate::sql::TRACE_INSERT)
            .bind(&t.id)
            .bind(&t.tenant)
            .bind(&t.kind)
            .bind(&t.decision)
            .bind(&t.reason)
            .bind(t.risk_score)
            .bind(&t.policy)
            .bind(&b.matched_rules)
            .bind(&b.violations)
            .bind(&t.mode)
            .bind(t.budget)
            .bind(&t.status)
            .bind(&t.job_id)
            .bind(&t.topic)
            .bind(&t.worker)
            .bind(t.latency_ms)
            .bind(b.created_at)
            .bind(b.settled_at)
            .execute(&mut *tx)
            .await?;
        let event = match self.events.get() {
            Some(log) if t.decision == "BLOCK" => {
                let link = Self::chain_link(&mut tx, &t.id).await?;
                let row = log.block_event(&t, t.inputs.as_ref(), link)?;
                Some(Self::insert_event(&mut tx, row).await?)
            }
            _ => None,
        };
        tx.commit().await?;
        self.notifier.publish(event);
        Ok(())
    }

    async fn trace_settle(&self, p: crate::TraceSettleParams) -> crate::StoreResult<bool> {
        let now_ms = crate::model::to_ms(p.now.unwrap_or_else(chrono::Utc::now));
        let n = sqlx::query(crate::sql::TRACE_SETTLE)
            .bind(&p.id)
            .bind(&p.status)
            .bind(&p.worker)
            .bind(p.latency_ms)
            .bind(now_ms)
            .execute(self.writer()?)
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    async fn trace_get(
        &self,
        id: &str,
        scope: &crate::Scope,
    ) -> crate::StoreResult<Option<crate::Trace>> {
        let row: Option<crate::row::TraceRow> = sqlx::query_as(crate::sql::TRACE_GET)
            .bind(id)
            .bind(scope.tenant())
            .fetch_optional(self.reader()?)
            .await?;
        row.map(TryInto::try_into).transpose()
    }

    async fn trace_counts(
        &self,
        scope: &crate::Scope,
        since: chrono::DateTime<chrono::Utc>,
    ) -> crate::StoreResult<Vec<crate::DecisionCount>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(crate::sql::TRACE_COUNTS)
            .bind(scope.tenant())
            .bind(crate::model::to_ms(since))
            .fetch_all(self.reader()?)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(decision, count)| crate::DecisionCount { decision, count })
            .collect())
    }

    async fn secret_put(&self, s: crate::Secret) -> crate::StoreResult<()> {
        let tools = serde_json::to_string(&s.allowed_tools).unwrap_or_else(|_| "[]".into());
        sqlx::query(crate::sql::SECRET_PUT)
            .bind(&s.tenant)
            .bind(&s.name)
            .bind(&s.provider)
            .bind(tools)
            .bind(&s.ciphertext)
            .bind(crate::model::to_ms(s.updated_at))
            .execute(self.writer()?)
            .await?;
        Ok(())
    }

    async fn secret_get(
        &self,
        tenant: &str,
        name: &str,
    ) -> crate::StoreResult<Option<crate::Secret>> {
        let row: Option<crate::row::SecretRow> = sqlx::query_as(crate::sql::SECRET_GET)
            .bind(tenant)
            .bind(name)
            .fetch_optional(self.reader()?)
            .await?;
        row.map(TryInto::try_into).transpose()
    }

    async fn secret_delete(&self, tenant: &str, name: &str) -> crate::StoreResult<bool> {
        let n = sqlx::query(crate::sql::SECRET_DELETE)
            .bind(tenant)
            .bind(name)
            .execute(self.writer()?)
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    async fn schema_put(&self, s: crate::CapabilitySchema) -> crate::StoreResult<()> {
        let b = crate::row::SchemaBinds::of(&s);
        sqlx::query(crate::sql::SCHEMA_PUT)
            .bind(&s.capability)
            .bind(b.input_schema)
            .bind(b.output_schema)
            .bind(b.updated_at)
            .execute(self.writer()?)
            .await?;
        Ok(())
    }

    async fn schema_get(
        &self,
        capability: &str,
    ) -> crate::StoreResult<Option<crate::CapabilitySchema>> {
        let row: Option<crate::row::CapabilitySchemaRow> = sqlx::query_as(crate::sql::SCHEMA_GET)
            .bind(capability)
            .fetch_optional(self.reader()?)
            .await?;
        row.map(TryInto::try_into).transpose()
    }

    async fn schema_delete(&self, capability: &str) -> crate::StoreResult<bool> {
        let n = sqlx::query(crate::sql::SCHEMA_DELETE)
            .bind(capability)
            .execute(self.writer()?)
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    async fn events_list(
        &self,
        q: crate::EventQuery,
    ) -> crate::StoreResult<Vec<crate::StoredEvent>> {
        let rows: Vec<(i64, String)> =
            bind_event_query(sqlx::query_as(crate::sql::EVENTS_LIST), &q)
                .fetch_all(self.reader()?)
                .await?;
        rows.into_iter().map(crate::row::stored_event).collect()
    }

    async fn events_seqs(&self, q: crate::EventQuery) -> crate::StoreResult<Vec<i64>> {
        let rows: Vec<(i64,)> = bind_event_query(sqlx::query_as(crate::sql::EVENTS_SEQS), &q)
            .fetch_all(self.reader()?)
            .await?;
        Ok(rows.into_iter().map(|(s,)| s).collect())
    }

    async fn events_ingested_seqs(
        &self,
        scope: &crate::Scope,
        correlation_id: Option<&str>,
        after_seq: i64,
        limit: i64,
    ) -> crate::StoreResult<Vec<i64>> {
        let rows: Vec<(i64,)> = sqlx::query_as(crate::sql::INGEST_SEQS)
            .bind(after_seq)
            .bind(scope.tenant())
            .bind(correlation_id)
            .bind(limit)
            .fetch_all(self.reader()?)
            .await?;
        Ok(rows.into_iter().map(|(s,)| s).collect())
    }

    async fn event_key_put(&self, k: crate::EventKey) -> crate::StoreResult<()> {
        sqlx::query(crate::sql::EVENT_KEY_PUT)
            .bind(&k.key_id)
            .bind(&k.public_key)
            .bind(crate::model::to_ms(k.created_at))
            .execute(self.writer()?)
            .await?;
        Ok(())
    }

    async fn event_keys(&self) -> crate::StoreResult<Vec<crate::EventKey>> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(crate::sql::EVENT_KEYS)
            .fetch_all(self.reader()?)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(key_id, public_key, at)| crate::EventKey {
                key_id,
                public_key,
                created_at: crate::model::from_ms(at),
            })
            .collect())
    }

    async fn event_ingest(&self, e: crate::IngestedEvent) -> crate::StoreResult<bool> {
        let n = sqlx::query(crate::sql::INGEST_INSERT)
            .bind(&e.event_id)
            .bind(&e.tenant)
            .bind(&e.correlation_id)
            .bind(crate::model::to_ms(e.received_at))
            .bind(e.body.to_string())
            .execute(self.writer()?)
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    async fn events_ingested(
        &self,
        scope: &crate::Scope,
        correlation_id: Option<&str>,
        after_seq: i64,
        limit: i64,
    ) -> crate::StoreResult<Vec<(i64, serde_json::Value)>> {
        let rows: Vec<(i64, String)> = sqlx::query_as(crate::sql::INGEST_LIST)
            .bind(after_seq)
            .bind(scope.tenant())
            .bind(correlation_id)
            .bind(limit)
            .fetch_all(self.reader()?)
            .await?;
        rows.into_iter().map(crate::row::ingested_event).collect()
    }

    async fn device_insert(&self, d: crate::DeviceCode) -> crate::StoreResult<()> {
        use crate::model::to_ms;
        sqlx::query(crate::sql::DEVICE_INSERT)
            .bind(&d.device_code_hash)
            .bind(&d.user_code)
            .bind(&d.client_name)
            .bind(to_ms(d.expires_at))
            .bind(d.interval_ms)
            .bind(to_ms(d.created_at))
            .execute(self.writer()?)
            .await?;
        Ok(())
    }

    async fn device_decide(&self, p: crate::DeviceDecideParams) -> crate::StoreResult<()> {
        let now = crate::model::to_ms(p.now.unwrap_or_else(chrono::Utc::now));
        let state = if p.tenant.is_some() {
            "approved"
        } else {
            "denied"
        };
        let n = sqlx::query(crate::sql::DEVICE_DECIDE)
            .bind(&p.user_code)
            .bind(state)
            .bind(&p.tenant)
            .bind(now)
            .execute(self.writer()?)
            .await?
            .rows_affected();
        if n == 1 {
            return Ok(());
        }
        let row: Option<(String, i64)> = sqlx::query_as(crate::sql::DEVICE_BY_USER_CODE)
            .bind(&p.user_code)
            .fetch_optional(self.reader()?)
            .await?;
        match row {
            Some((st, exp)) if st != "pending" || exp <= now => {
                Err(crate::StoreError::Conflict(format!(
                    "device code is {}",
                    if exp <= now { "expired" } else { &st }
                )))
            }
            _ => Err(crate::StoreError::NotFound),
        }
    }

    async fn device_poll(
        &self,
        p: crate::DevicePollParams,
    ) -> crate::StoreResult<crate::DevicePoll> {
        use crate::model::{PollStep, poll_step, to_ms};
        let now = to_ms(p.now.unwrap_or_else(chrono::Utc::now));
        let mut tx = self.writer()?.begin().await?;
        let row: Option<crate::model::DeviceRow> =
            sqlx::query_as(&format!("{} FOR UPDATE", crate::sql::DEVICE_GET))
                .bind(&p.device_code_hash)
                .fetch_optional(&mut *tx)
                .await?;
        let out = match poll_step(row, now) {
            PollStep::Answer(a) => a,
            PollStep::Record(a) => {
                sqlx::query(crate::sql::DEVICE_POLLED)
                    .bind(&p.device_code_hash)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                a
            }
            PollStep::Redeem(tenant) => {
                let client = crate::OAuthClient {
                    tenant,
                    ..p.new_client
                };
                sqlx::query(crate::sql::CLIENT_INSERT)
                    .bind(&client.client_id)
                    .bind(&client.secret_hash)
                    .bind(&client.tenant)
                    .bind(&client.name)
                    .bind(to_ms(client.created_at))
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(crate::sql::DEVICE_REDEEMED)
                    .bind(&p.device_code_hash)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                crate::DevicePoll::Issued(client)
            }
        };
        tx.commit().await?;
        Ok(out)
    }

    async fn oauth_client_get(
        &self,
        client_id: &str,
    ) -> crate::StoreResult<Option<crate::OAuthClient>> {
        let row: Option<crate::row::OAuthClientRow> = sqlx::query_as(crate::sql::CLIENT_GET)
            .bind(client_id)
            .fetch_optional(self.reader()?)
            .await?;
        Ok(row.map(Into::into))
    }
}
