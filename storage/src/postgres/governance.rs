//! The PostgreSQL driver's governance: decision traces, admission, tenant
//! secrets ([`crate::GovernanceStore`]).

use super::*;

impl crate::GovernanceStore for PgStore {
    async fn trace_insert(&self, t: crate::Trace) -> crate::StoreResult<()> {
        self.to_completion(move |s| async move {
            let mut tx = s.writer()?.begin().await?;
            let event = s.insert_trace_tx(&mut tx, &t).await?;
            tx.commit().await?;
            s.notifier.publish(event);
            Ok(())
        })
        .await
    }

    async fn trace_admit(
        &self,
        p: crate::AdmitParams,
    ) -> crate::StoreResult<crate::JobInsertOutcome> {
        self.to_completion(move |s| async move {
            let mut tx = s.writer()?.begin().await?;
            s.insert_trace_tx(&mut tx, &p.trace).await?;
            // The job in a savepoint: a refusal undoes it alone.
            let mut job_tx = sqlx::Connection::begin(&mut *tx).await?;
            let due = p.job.job.delay_ms <= 0;
            match Self::insert_job_tx(&mut job_tx, p.job, &s.open_jobs).await {
                Ok(out) => {
                    job_tx.commit().await?;
                    tx.commit().await?;
                    if let crate::JobInsertOutcome::Inserted(job) = &out
                        && due
                    {
                        s.wake_job(job);
                    }
                    Ok(out)
                }
                Err(refused @ crate::StoreError::TooManyOpen { .. }) => {
                    job_tx.rollback().await?;
                    sqlx::query(crate::sql::TRACE_SETTLE)
                        .bind(&p.trace.id)
                        .bind("failed")
                        .bind(None::<String>)
                        .bind(p.refused_latency_ms)
                        .bind(crate::model::to_ms(p.now.unwrap_or_else(chrono::Utc::now)))
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Err(refused)
                }
                Err(e) => Err(e),
            }
        })
        .await
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
        crate::row::decision_counts(rows)
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
}

impl PgStore {
    /// Inserts a trace in `tx`, with its execution event when it writes one
    /// (a BLOCK) and events are on.
    async fn insert_trace_tx(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        t: &crate::Trace,
    ) -> crate::StoreResult<Option<CommittedEvent>> {
        let b = crate::row::TraceBinds::of(t);
        sqlx::query(crate::sql::TRACE_INSERT)
            .bind(&t.id)
            .bind(&t.tenant)
            .bind(t.kind.as_str())
            .bind(t.decision.as_str())
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
            .execute(&mut **tx)
            .await?;
        match self.events.get() {
            Some(log) if t.writes_event() => {
                let link = Self::chain_link(tx, &t.id).await?;
                let row = log.block_event(t, t.inputs.as_ref(), link)?;
                Ok(Some(Self::insert_event(tx, row).await?))
            }
            _ => Ok(None),
        }
    }
}
