//! The PostgreSQL driver's jobs and leases: insert, claim, settle, extend,
//! cancel, expire, purge ([`crate::JobStore`]).

use super::*;

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
        self.to_completion(move |s| async move {
            let due = p.job.delay_ms <= 0;
            let admitted = match p.max_open_per_tenant {
                _ if p.idempotency.is_some() => None,
                None => Some(None),
                Some(limit) => s.open_jobs.admit(&p.job.tenant, limit).map(Some),
            };
            let out = if let Some(_admitted) = admitted {
                // One statement committing on its own: no transaction, no
                // lock, no count (no cap, or the cap's estimate admitted it).
                let now_ms = crate::model::to_ms(p.now.unwrap_or_else(chrono::Utc::now));
                Self::insert_row(s.writer()?, &p.job, now_ms).await?
            } else {
                let mut tx = s.writer()?.begin().await?;
                let out = Self::insert_job_tx(&mut tx, p, &s.open_jobs).await?;
                tx.commit().await?;
                out
            };
            if let crate::JobInsertOutcome::Inserted(job) = &out
                && due
            {
                s.wake_job(job);
            }
            Ok(out)
        })
        .await
    }

    async fn job_claim(&self, p: crate::JobClaimParams) -> crate::StoreResult<Option<crate::Job>> {
        use crate::model::to_ms;
        // The same claimant's same claim found nothing and nothing woke its
        // topic since: answer without a query (see `super::empty`).
        let known = super::empty::key(&p);
        if known
            .as_deref()
            .is_some_and(|k| self.empty_claims.still_empty(k))
        {
            return Ok(None);
        }
        let wakeups = known.as_ref().map(|_| self.notifier.subscribe());
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
        if let (Some(k), Some(wakeups)) = (known, wakeups) {
            if row.is_some() {
                self.empty_claims.found_work(&k);
            } else {
                self.empty_claims.found_nothing(k, p.topic.clone(), wakeups);
            }
        }
        row.map(TryInto::try_into).transpose()
    }

    async fn job_complete(&self, p: crate::JobCompleteParams) -> crate::StoreResult<crate::Job> {
        // Group-committed with concurrent fulfilments (see `super::settle`);
        // queued, it runs to its end whatever happens to this call.
        match &self.settler {
            Some(settler) => settler.complete(p).await,
            None => {
                self.to_completion(move |s| async move { s.complete_one(p).await })
                    .await
            }
        }
    }

    async fn job_fail(&self, p: crate::JobFailParams) -> crate::StoreResult<crate::Job> {
        self.to_completion(move |s| async move {
            let now_ms = crate::model::to_ms(p.now.unwrap_or_else(chrono::Utc::now));
            let (token, key) = p.proof.split();
            let log = s.events.get();
            let sql: &str = if log.is_some() {
                &FAIL_WITH_HEAD
            } else {
                &s.sql().fail
            };
            let mut tx = s.writer()?.begin().await?;
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
                Self::job_event_at(&mut tx, log.as_deref(), &job, ending, None, now_ms, head)
                    .await?;
            tx.commit().await?;
            // A retry that is due at once (refunded attempt) wakes waiters
            // now; a delayed one is picked up by the due-topics scan.
            if job.state == crate::JobState::Open && job.run_at.timestamp_millis() <= now_ms {
                s.wake_job(&job);
            }
            if job.state.is_terminal() {
                s.announce(&job, JobChange::Settled(job.state));
            }
            s.notifier.publish(event);
            Ok(job)
        })
        .await
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
        self.announce(&job, JobChange::Progress(job.progress.clone()));
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
        self.to_completion(move |s| async move {
            let now_ms = crate::model::to_ms(p.now.unwrap_or_else(chrono::Utc::now));
            let tenant = p.scope.tenant();
            let mut tx = s.writer()?.begin().await?;
            let before: Option<crate::row::JobRow> = sqlx::query_as(&s.sql().get_for_update)
                .bind(&p.id)
                .bind(tenant)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(before) = before else {
                return refuse(tx, crate::StoreError::NotFound).await;
            };
            let before: crate::Job = before.try_into()?;
            if before.state.is_terminal() {
                return refuse(tx, crate::StoreError::InvalidState(before.state)).await;
            }
            sqlx::query(crate::sql::CANCEL)
                .bind(&p.id)
                .bind(&p.reason)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
            let event = if cancel_ends_dispatch(&before) {
                let ending = Ending::Cancelled { reason: &p.reason };
                s.job_event(&mut tx, &before, ending, None, now_ms).await?
            } else {
                None
            };
            tx.commit().await?;
            s.announce(&before, JobChange::Settled(crate::JobState::Cancelled));
            s.notifier.publish(event);
            Ok(before)
        })
        .await
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
        self.to_completion(move |s| async move {
            let now_ms = crate::model::to_ms(now);
            let mut tx = s.writer()?.begin().await?;
            let rows: Vec<crate::row::JobRow> = sqlx::query_as(crate::sql::EXPIRE_LEASES)
                .bind(now_ms)
                .fetch_all(&mut *tx)
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            let mut events = Vec::new();
            let mut reopened = Vec::new();
            for r in rows {
                let (holder, token) = (r.lease_holder.clone(), r.lease_token.clone());
                let job = crate::Job::try_from(r)?;
                if job.state == crate::JobState::Open {
                    reopened.push(job.clone());
                }
                let ending = Ending::Expired {
                    dead: job.state == crate::JobState::Dead,
                };
                events.extend(s.job_event(&mut tx, &job, ending, None, now_ms).await?);
                out.push(crate::ExpiredLease {
                    job_id: job.id,
                    topic: job.topic,
                    holder: holder.unwrap_or_default(),
                    token: token.unwrap_or_default(),
                    new_state: job.state,
                });
            }
            tx.commit().await?;
            for job in &reopened {
                s.wake_job(job);
            }
            for e in events {
                s.notifier.execution_event(e);
            }
            Ok(out)
        })
        .await
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

    async fn jobs_topic_counts(
        &self,
        scope: &crate::Scope,
    ) -> crate::StoreResult<Vec<crate::TopicCount>> {
        let rows: Vec<(String, String, i64, i64, i64)> = sqlx::query_as(crate::sql::TOPIC_COUNTS)
            .bind(scope.tenant())
            .fetch_all(self.reader()?)
            .await?;
        crate::row::topic_counts(rows)
    }

    async fn jobs_list(&self, p: crate::JobListParams) -> crate::StoreResult<Vec<crate::Job>> {
        let (at, id) = crate::row::list_cursor(&p);
        let rows: Vec<crate::row::JobRow> = sqlx::query_as(crate::sql::LIST)
            .bind(p.scope.tenant())
            .bind(&p.topic)
            .bind(p.state.map(crate::JobState::as_str))
            .bind(i64::from(p.failed_only))
            .bind(at)
            .bind(id)
            .bind(p.limit)
            .fetch_all(self.reader()?)
            .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn job_retry(&self, p: crate::JobRetryParams) -> crate::StoreResult<crate::Job> {
        self.to_completion(move |s| async move {
            let now_ms = crate::model::to_ms(p.now.unwrap_or_else(chrono::Utc::now));
            let mut tx = s.writer()?.begin().await?;
            let before: Option<crate::row::JobRow> = sqlx::query_as(&s.sql().get_for_update)
                .bind(&p.id)
                .bind(p.scope.tenant())
                .fetch_optional(&mut *tx)
                .await?;
            let Some(before) = before else {
                return refuse(tx, crate::StoreError::NotFound).await;
            };
            let before: crate::Job = before.try_into()?;
            let after: Option<crate::row::JobRow> = sqlx::query_as(crate::sql::RETRY)
                .bind(&p.id)
                .bind(now_ms)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(after) = after else {
                return refuse(tx, crate::StoreError::InvalidState(before.state)).await;
            };
            let after: crate::Job = after.try_into()?;
            let ending = Ending::Retried { by: &p.by };
            let event = s.job_event(&mut tx, &after, ending, None, now_ms).await?;
            tx.commit().await?;
            s.wake_job(&after);
            s.notifier.publish(event);
            Ok(after)
        })
        .await
    }

    async fn jobs_purge_topic(&self, p: crate::TopicPurgeParams) -> crate::StoreResult<u64> {
        let done = sqlx::query(crate::sql::PURGE_TOPIC)
            .bind(&p.topic)
            .bind(p.scope.tenant())
            .execute(self.writer()?)
            .await?;
        Ok(done.rows_affected())
    }

    async fn jobs_activity(
        &self,
        scope: &crate::Scope,
        since: chrono::DateTime<chrono::Utc>,
        minutes: usize,
    ) -> crate::StoreResult<Vec<crate::TopicActivity>> {
        let since = crate::model::to_ms(since);
        let created: Vec<(String, i64, i64)> = sqlx::query_as(crate::sql::ACTIVITY_CREATED)
            .bind(since)
            .bind(scope.tenant())
            .fetch_all(self.reader()?)
            .await?;
        let settled: Vec<(String, i64, i64)> = sqlx::query_as(crate::sql::ACTIVITY_SETTLED)
            .bind(since)
            .bind(scope.tenant())
            .fetch_all(self.reader()?)
            .await?;
        Ok(crate::row::topic_activity(created, settled, minutes))
    }

    async fn jobs_recent_holders(
        &self,
        scope: &crate::Scope,
        since: chrono::DateTime<chrono::Utc>,
    ) -> crate::StoreResult<Vec<crate::TopicHolder>> {
        let rows: Vec<(String, String, String, i64)> = sqlx::query_as(crate::sql::RECENT_HOLDERS)
            .bind(crate::model::to_ms(since))
            .bind(scope.tenant())
            .fetch_all(self.reader()?)
            .await?;
        Ok(crate::row::topic_holders(rows))
    }
}

/// Rolls `tx` back, then answers `e`. A transaction dropped on an early
/// return only queues its rollback; until that reaches the server the rows
/// it locked (`SELECT … FOR UPDATE`) stay locked, and a claim right after
/// skips them.
async fn refuse<T>(
    tx: Transaction<'static, Postgres>,
    e: crate::StoreError,
) -> crate::StoreResult<T> {
    tx.rollback().await?;
    Err(e)
}

impl PgStore {
    /// Inserts a job in `tx` (the body of [`crate::JobStore::job_insert`],
    /// shared with governance admission); the caller commits, then wakes the
    /// topic's waiters if the job is due. A replayed idempotency key answers
    /// what it answered first; the tenant cap is an exact count under the
    /// tenant's lock, which also resets `open_jobs`' estimate (see
    /// [`super::cap`]).
    pub(super) async fn insert_job_tx(
        tx: &mut Transaction<'_, Postgres>,
        p: crate::JobInsertParams,
        open_jobs: &super::cap::OpenJobs,
    ) -> crate::StoreResult<crate::JobInsertOutcome> {
        use crate::model::to_ms;
        let now = p.now.unwrap_or_else(chrono::Utc::now);
        let now_ms = to_ms(now);
        let job = p.job;
        if let Some(idem) = &p.idempotency {
            let claimed = sqlx::query(crate::sql::IDEMPOTENCY_CLAIM)
                .bind(&job.tenant)
                .bind(&idem.key)
                .bind(&idem.request_hash)
                .bind(i64::from(idem.response_status))
                .bind(&idem.response_body)
                .bind(to_ms(idem.expires_at))
                .bind(now_ms)
                .execute(&mut **tx)
                .await?
                .rows_affected();
            if claimed == 0 {
                let row: crate::row::IdempotencyRow = sqlx::query_as(crate::sql::IDEMPOTENCY_GET)
                    .bind(&job.tenant)
                    .bind(&idem.key)
                    .fetch_one(&mut **tx)
                    .await?;
                return Ok(crate::JobInsertOutcome::Replayed {
                    request_hash: row.request_hash,
                    response_status: u16::try_from(row.response_status).unwrap_or(200),
                    response_body: row.response_body,
                });
            }
        }
        if let Some(limit) = p.max_open_per_tenant {
            Self::lock_tenant(tx, &job.tenant).await?;
            let before = open_jobs.before_count(&job.tenant);
            let (live,): (i64,) = sqlx::query_as(crate::sql::COUNT_LIVE_TENANT)
                .bind(&job.tenant)
                .fetch_one(&mut **tx)
                .await?;
            if live + before.unseen() >= limit {
                return Err(crate::StoreError::TooManyOpen { limit });
            }
            open_jobs.counted(&job.tenant, before, live);
        }
        Self::insert_row(&mut **tx, &job, now_ms).await
    }

    /// The job's `INSERT`, on a transaction or on its own.
    async fn insert_row<'e>(
        executor: impl sqlx::PgExecutor<'e>,
        job: &crate::NewJob,
        now_ms: i64,
    ) -> crate::StoreResult<crate::JobInsertOutcome> {
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
            .fetch_one(executor)
            .await?;
        Ok(crate::JobInsertOutcome::Inserted(Box::new(row.try_into()?)))
    }

    /// One fulfilment in a transaction of its own (the body of
    /// [`crate::JobStore::job_complete`] for a group of one).
    pub(super) async fn complete_one(
        &self,
        p: crate::JobCompleteParams,
    ) -> crate::StoreResult<crate::Job> {
        let s = self;
        let now_ms = crate::model::to_ms(p.now.unwrap_or_else(chrono::Utc::now));
        let (token, key) = p.proof.split();
        let log = s.events.get();
        let sql: &str = if log.is_some() {
            &COMPLETE_WITH_HEAD
        } else {
            crate::sql::COMPLETE
        };
        let mut tx = s.writer()?.begin().await?;
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
        s.announce(&job, JobChange::Settled(job.state));
        s.notifier.publish(event);
        Ok(job)
    }
}
