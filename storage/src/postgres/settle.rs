//! Fulfilments, group-committed. Concurrent `job_complete` calls queue here;
//! one task settles everything queued while the previous group was being
//! committed, in one transaction: one multi-row `UPDATE` (returning each
//! job's chain head), one multi-row event `INSERT`, one commit — four round
//! trips for the group instead of four per fulfilment (the anchors: River's
//! batch completer, graphile-worker's batched `complete_jobs`). Each caller
//! is answered after the group's commit, so an acknowledged fulfilment is
//! durable. A group that fails as a whole is retried one call at a time, so
//! one call's failure is its own.

use std::collections::HashSet;

use sqlx::postgres::PgRow;
use tokio::sync::{mpsc, oneshot};

use super::{PgStore, settled};
use crate::eventlog::{Ending, EventRow, next_link};
use crate::{CommittedEvent, JobCompleteParams, StoreError, StoreResult};

/// Most fulfilments one group carries.
const MAX_GROUP: usize = 128;

type Reply = oneshot::Sender<StoreResult<crate::Job>>;

/// The callers' side.
#[derive(Debug, Clone)]
pub(super) struct Settler {
    tx: mpsc::UnboundedSender<(JobCompleteParams, Reply)>,
}

impl Settler {
    /// Starts the settling task on `store` (a clone without a settler).
    pub(super) fn start(store: PgStore) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(settle_groups(store, rx));
        Self { tx }
    }

    /// Queues a fulfilment and waits for its group's commit.
    pub(super) async fn complete(&self, p: JobCompleteParams) -> StoreResult<crate::Job> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((p, reply))
            .map_err(|_| StoreError::Unavailable("settlement writer stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("settlement writer stopped".into()))?
    }
}

async fn settle_groups(
    store: PgStore,
    mut rx: mpsc::UnboundedReceiver<(JobCompleteParams, Reply)>,
) {
    let mut later: Vec<(JobCompleteParams, Reply)> = Vec::new();
    loop {
        let mut group = std::mem::take(&mut later);
        if group.is_empty() {
            match rx.recv().await {
                Some(first) => group.push(first),
                None => return,
            }
        }
        super::take_queued(&mut rx, &mut group, MAX_GROUP);
        // One fulfilment per job in a group: a second one of the same job
        // waits for the next group (where it finds the lease settled).
        let mut ids = HashSet::new();
        let (now, next): (Vec<_>, Vec<_>) = group
            .into_iter()
            .partition(|(p, _)| ids.insert(p.id.clone()));
        later = next;
        if now.len() == 1 {
            let Some((p, reply)) = now.into_iter().next() else {
                continue;
            };
            let _ = reply.send(store.complete_one(p).await);
            continue;
        }
        let params: Vec<JobCompleteParams> = now.iter().map(|(p, _)| p.clone()).collect();
        match store.complete_group(&params).await {
            Ok(outcomes) => {
                for ((_, reply), out) in now.into_iter().zip(outcomes) {
                    let _ = reply.send(out);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, size = now.len(), "group settlement failed; settling one at a time");
                for (p, reply) in now {
                    let _ = reply.send(store.complete_one(p).await);
                }
            }
        }
    }
}

/// Binds: ids, tokens, keys, results, result types, nows (arrays, one
/// element per fulfilment, in order); each row also carries its element's
/// ordinal (`ord`). Conditions as `sql::COMPLETE`.
const COMPLETE_GROUP: &str = "UPDATE jobs SET state = 'fulfilled', result = x.result,
        result_type = x.result_type, updated_at = x.now, completed_at = x.now
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[])
        WITH ORDINALITY AS x(id, token, key, result, result_type, now, ord)
    WHERE jobs.id = x.id AND jobs.state = 'leased' AND jobs.lease_expires_at > x.now
      AND (x.token IS NOT NULL OR x.key IS NOT NULL)
      AND (x.token IS NULL OR jobs.lease_token = x.token) AND (x.key IS NULL OR jobs.lease_key = x.key)
    RETURNING jobs.*, x.ord";

/// Events of a group, skipping any whose chain position was taken by a
/// commit the group's statement did not see (those are relinked one by one).
const EVENTS_INSERT_GROUP: &str = "INSERT INTO events (event_id, tenant, correlation_id,
        chain_position, event_hash, protocol, topic, status, completed_at, body)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[],
        $6::text[], $7::text[], $8::text[], $9::bigint[], $10::text[])
    ON CONFLICT (correlation_id, chain_position) DO NOTHING
    RETURNING event_id";

impl PgStore {
    /// Settles a group of fulfilments of distinct jobs in one transaction;
    /// one outcome per fulfilment, in order (`LeaseLost` where the lease was
    /// not live). `Err` only when the group as a whole failed (nothing of it
    /// committed).
    async fn complete_group(
        &self,
        group: &[JobCompleteParams],
    ) -> StoreResult<Vec<StoreResult<crate::Job>>> {
        let log = self.events.get();
        let nows: Vec<i64> = group
            .iter()
            .map(|p| crate::model::to_ms(p.now.unwrap_or_else(chrono::Utc::now)))
            .collect();
        let (mut tokens, mut keys) = (Vec::new(), Vec::new());
        for p in group {
            let (token, key) = p.proof.split();
            tokens.push(token);
            keys.push(key);
        }
        let ids: Vec<&str> = group.iter().map(|p| p.id.as_str()).collect();
        let results: Vec<String> = group.iter().map(|p| p.result.to_string()).collect();
        let types: Vec<&str> = group.iter().map(|p| p.result_type.as_str()).collect();
        let sql = super::with_head(COMPLETE_GROUP);
        let mut tx = self.writer()?.begin().await?;
        let rows: Vec<PgRow> = sqlx::query(&sql)
            .bind(ids)
            .bind(tokens)
            .bind(keys)
            .bind(results)
            .bind(types)
            .bind(&nows)
            .fetch_all(&mut *tx)
            .await?;
        let mut jobs: Vec<Option<(crate::Job, super::KnownHead)>> = Vec::new();
        jobs.resize_with(group.len(), || None);
        for row in rows {
            let ord: i64 = sqlx::Row::try_get(&row, "ord")?;
            let (job, head) = settled(Some(row), true)?;
            let i = usize::try_from(ord - 1)
                .ok()
                .filter(|i| *i < group.len())
                .ok_or_else(|| StoreError::Corrupt(format!("group ordinal {ord}")))?;
            jobs[i] = Some((job, head));
        }
        // The events: chained on the heads the statement returned, written
        // in one statement; a taken position (or a governance run's chain,
        // which is the trace's) is linked one by one after.
        let mut events: Vec<Option<CommittedEvent>> = vec![None; group.len()];
        if let Some(log) = log.as_deref() {
            let mut rows: Vec<(usize, EventRow)> = Vec::new();
            let mut one_by_one: Vec<usize> = Vec::new();
            for (i, slot) in jobs.iter().enumerate() {
                let Some((job, head)) = slot else { continue };
                match head
                    .clone()
                    .filter(|_| crate::eventlog::correlation_id(job) == job.id)
                {
                    Some(head) => {
                        let row = log.job_event(
                            job,
                            Ending::Fulfilled,
                            Some(&group[i].result),
                            crate::model::from_ms(nows[i]),
                            next_link(head),
                        )?;
                        rows.push((i, row));
                    }
                    None => one_by_one.push(i),
                }
            }
            if !rows.is_empty() {
                let col =
                    |f: fn(&EventRow) -> String| rows.iter().map(|(_, r)| f(r)).collect::<Vec<_>>();
                let written: Vec<(String,)> = sqlx::query_as(EVENTS_INSERT_GROUP)
                    .bind(col(|r| r.event_id.clone()))
                    .bind(col(|r| r.tenant.clone()))
                    .bind(col(|r| r.correlation_id.clone()))
                    .bind(
                        rows.iter()
                            .map(|(_, r)| r.chain_position)
                            .collect::<Vec<_>>(),
                    )
                    .bind(col(|r| r.event_hash.clone()))
                    .bind(col(|r| r.protocol.clone()))
                    .bind(col(|r| r.topic.clone()))
                    .bind(col(|r| r.status.clone()))
                    .bind(rows.iter().map(|(_, r)| r.completed_at).collect::<Vec<_>>())
                    .bind(col(|r| r.event.json.clone()))
                    .fetch_all(&mut *tx)
                    .await?;
                let written: HashSet<String> = written.into_iter().map(|(id,)| id).collect();
                for (i, row) in rows {
                    if written.contains(&row.event_id) {
                        events[i] = Some(row.event);
                    } else {
                        one_by_one.push(i);
                    }
                }
            }
            for i in one_by_one {
                let Some((job, _)) = &jobs[i] else { continue };
                events[i] = Self::job_event_at(
                    &mut tx,
                    Some(log),
                    job,
                    Ending::Fulfilled,
                    Some(&group[i].result),
                    nows[i],
                    None,
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(jobs
            .into_iter()
            .zip(events)
            .map(|(slot, event)| {
                let (job, _) = slot.ok_or(StoreError::LeaseLost)?;
                self.announce(&job, crate::notify::JobChange::Settled(job.state));
                self.notifier.publish(event);
                Ok(job)
            })
            .collect())
    }
}
