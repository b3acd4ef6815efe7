//! The SQLite driver's governance: decision traces, admission, tenant secrets
//! ([`crate::GovernanceStore`]).

use super::*;

impl crate::GovernanceStore for SqliteStore {
    async fn trace_insert(&self, t: Trace) -> StoreResult<()> {
        let log = self.events.get();
        let event = self
            .writer
            .run(move |c| insert_trace(c, &t, log.as_deref()))
            .await?;
        self.notifier.publish(event);
        Ok(())
    }

    async fn trace_admit(&self, p: AdmitParams) -> StoreResult<JobInsertOutcome> {
        let out = self
            .writer
            .run(move |c| {
                insert_trace(c, &p.trace, None)?;
                match savepoint(c, |c| super::jobs::insert_job(c, p.job)) {
                    Err(refused @ StoreError::TooManyOpen { .. }) => {
                        let now = now_ms(p.now);
                        exec(
                            c,
                            sql::TRACE_SETTLE,
                            &[
                                &p.trace.id,
                                &"failed",
                                &None::<String>,
                                &p.refused_latency_ms,
                                &now,
                            ],
                        )?;
                        Ok(Err(refused))
                    }
                    other => other.map(Ok),
                }
            })
            .await??;
        self.announce_insert(&out);
        Ok(out)
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
        let rows = self
            .reader
            .run(move |c| {
                query(c, sql::TRACE_COUNTS, &[&tenant, &to_ms(since)], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
            })
            .await?;
        crate::row::decision_counts(rows)
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
}

/// Inserts a trace on the writer's connection, with its execution event when
/// it writes one (a BLOCK) and events are on.
fn insert_trace(
    c: &Connection,
    t: &Trace,
    log: Option<&EventLog>,
) -> StoreResult<Option<CommittedEvent>> {
    let b = TraceBinds::of(t);
    exec(
        c,
        sql::TRACE_INSERT,
        &[
            &t.id,
            &t.tenant,
            &t.kind.as_str(),
            &t.decision.as_str(),
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
    match log {
        Some(log) if t.writes_event() => {
            let link = chain_link(c, &t.id)?;
            insert_event(c, log.block_event(t, t.inputs.as_ref(), link)?).map(Some)
        }
        _ => Ok(None),
    }
}
