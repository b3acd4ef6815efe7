//! The SQLite driver's jobs and leases: insert, claim, settle, extend, cancel,
//! expire, purge ([`crate::JobStore`]).

use super::*;

impl crate::JobStore for SqliteStore {
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
        let out = self.writer.run(move |c| insert_job(c, p)).await?;
        self.announce_insert(&out);
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
                    let after = job.after_failure(terminal, refund);
                    let dead = after.state == JobState::Dead;
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
            self.notifier.notify_job(&job);
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
        let (expired, reopened, events) = self
            .writer
            .run(move |c| {
                let now = to_ms(now);
                let rows = query(c, sql::EXPIRE_LEASES, &[&now], job_row)?;
                let mut expired = Vec::with_capacity(rows.len());
                let mut reopened = Vec::new();
                let mut events = Vec::new();
                for row in rows {
                    let (holder, token) = (row.lease_holder.clone(), row.lease_token.clone());
                    let job = Job::try_from(row)?;
                    let ending = Ending::Expired {
                        dead: job.state == JobState::Dead,
                    };
                    events.extend(job_event(c, log.as_deref(), &job, ending, None, now)?);
                    if job.state == JobState::Open {
                        reopened.push(crate::Wake::job(&job));
                    }
                    expired.push(ExpiredLease {
                        job_id: job.id,
                        topic: job.topic,
                        holder: holder.unwrap_or_default(),
                        token: token.unwrap_or_default(),
                        new_state: job.state,
                    });
                }
                Ok((expired, reopened, events))
            })
            .await?;
        // Each names its job, so a neuron hub wakes one session per job, not
        // every session of the topic.
        for wake in reopened {
            self.notifier.wake(wake);
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

    async fn jobs_topic_counts(&self, scope: &Scope) -> StoreResult<Vec<crate::TopicCount>> {
        let tenant = scope.tenant().map(str::to_owned);
        let rows = self
            .reader
            .run(move |c| {
                query(c, sql::TOPIC_COUNTS, &[&tenant], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
            })
            .await?;
        crate::row::topic_counts(rows)
    }

    async fn jobs_list(&self, p: crate::JobListParams) -> StoreResult<Vec<Job>> {
        let (at, id) = crate::row::list_cursor(&p);
        let tenant = p.scope.tenant().map(str::to_owned);
        let state = p.state.map(JobState::as_str);
        self.reader
            .run(move |c| {
                query(
                    c,
                    sql::LIST,
                    &[
                        &tenant,
                        &p.topic,
                        &state,
                        &i64::from(p.failed_only),
                        &at,
                        &id,
                        &p.limit,
                    ],
                    job_row,
                )?
                .into_iter()
                .map(TryInto::try_into)
                .collect()
            })
            .await
    }

    async fn job_retry(&self, p: crate::JobRetryParams) -> StoreResult<Job> {
        let log = self.events.get();
        let (after, event) = self
            .writer
            .run(move |c| {
                let before = query_job(c, &SQLITE_SQL.get_for_update, &[&p.id, &p.scope.tenant()])?
                    .ok_or(StoreError::NotFound)?;
                let now = now_ms(p.now);
                let after = query_job(c, sql::RETRY, &[&p.id, &now])?
                    .ok_or(StoreError::InvalidState(before.state))?;
                let ending = Ending::Retried { by: &p.by };
                let event = job_event(c, log.as_deref(), &after, ending, None, now)?;
                Ok((after, event))
            })
            .await?;
        self.notifier.notify(&after.topic);
        self.notifier.publish(event);
        Ok(after)
    }

    async fn jobs_purge_topic(&self, p: crate::TopicPurgeParams) -> StoreResult<u64> {
        self.writer
            .run(move |c| Ok(exec(c, sql::PURGE_TOPIC, &[&p.topic, &p.scope.tenant()])? as u64))
            .await
    }

    async fn jobs_activity(
        &self,
        scope: &Scope,
        since: DateTime<Utc>,
        minutes: usize,
    ) -> StoreResult<Vec<crate::TopicActivity>> {
        let tenant = scope.tenant().map(str::to_owned);
        let since = to_ms(since);
        let (created, settled) = self
            .reader
            .run(move |c| {
                let row = |r: &rusqlite::Row<'_>| Ok((r.get(0)?, r.get(1)?, r.get(2)?));
                Ok((
                    query(c, sql::ACTIVITY_CREATED, &[&since, &tenant], row)?,
                    query(c, sql::ACTIVITY_SETTLED, &[&since, &tenant], row)?,
                ))
            })
            .await?;
        Ok(crate::row::topic_activity(created, settled, minutes))
    }

    async fn jobs_recent_holders(
        &self,
        scope: &Scope,
        since: DateTime<Utc>,
    ) -> StoreResult<Vec<crate::TopicHolder>> {
        let tenant = scope.tenant().map(str::to_owned);
        let since = to_ms(since);
        let rows = self
            .reader
            .run(move |c| {
                query(c, sql::RECENT_HOLDERS, &[&since, &tenant], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
            })
            .await?;
        Ok(crate::row::topic_holders(rows))
    }
}

/// Inserts a job on the writer's connection (the body of
/// [`crate::JobStore::job_insert`], shared with governance admission).
pub(super) fn insert_job(c: &Connection, p: JobInsertParams) -> StoreResult<JobInsertOutcome> {
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
            let first = query_one(c, sql::IDEMPOTENCY_GET, &[&job.tenant, &idem.key], |r| {
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
}

impl SqliteStore {
    /// Wakes waiters on a freshly inserted job's topic when it is due now
    /// (after the commit).
    pub(super) fn announce_insert(&self, out: &JobInsertOutcome) {
        if let JobInsertOutcome::Inserted(j) = out
            && j.run_at <= Utc::now()
        {
            self.notifier.notify_job(j);
        }
    }
}
