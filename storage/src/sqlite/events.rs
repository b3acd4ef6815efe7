//! The SQLite driver's execution events: the signed event list, event keys,
//! ingested events ([`crate::EventStore`]).

use super::*;

impl crate::EventStore for SqliteStore {
    async fn events_list(&self, q: EventQuery) -> StoreResult<Vec<StoredEvent>> {
        let rows: Vec<(i64, String)> = self
            .reader
            .run(move |c| event_query(c, sql::EVENTS_LIST, &q, |r| Ok((r.get(0)?, r.get(1)?))))
            .await?;
        rows.into_iter().map(crate::row::stored_event).collect()
    }

    async fn events_seqs(&self, q: EventQuery) -> StoreResult<Vec<i64>> {
        self.reader
            .run(move |c| event_query(c, sql::EVENTS_SEQS, &q, |r| r.get(0)))
            .await
    }

    async fn events_ingested_seqs(
        &self,
        scope: &Scope,
        correlation_id: Option<&str>,
        after_seq: i64,
        limit: i64,
    ) -> StoreResult<Vec<i64>> {
        let (tenant, corr) = (
            scope.tenant().map(str::to_owned),
            correlation_id.map(str::to_owned),
        );
        self.reader
            .run(move |c| {
                query(
                    c,
                    sql::INGEST_SEQS,
                    &[&after_seq, &tenant, &corr, &limit],
                    |r| r.get(0),
                )
            })
            .await
    }

    async fn event_key_put(&self, k: EventKey) -> StoreResult<()> {
        self.writer
            .run_one(move |c| {
                exec(
                    c,
                    sql::EVENT_KEY_PUT,
                    &[&k.key_id, &k.public_key, &to_ms(k.created_at)],
                )
                .map(drop)
            })
            .await
    }

    async fn event_keys(&self) -> StoreResult<Vec<EventKey>> {
        self.reader
            .run(|c| {
                query(c, sql::EVENT_KEYS, &[], |r| {
                    Ok(EventKey {
                        key_id: r.get(0)?,
                        public_key: r.get(1)?,
                        created_at: crate::model::from_ms(r.get(2)?),
                    })
                })
            })
            .await
    }

    async fn event_ingest(&self, e: IngestedEvent) -> StoreResult<bool> {
        self.writer
            .run_one(move |c| {
                let n = exec(
                    c,
                    sql::INGEST_INSERT,
                    &[
                        &e.event_id,
                        &e.tenant,
                        &e.correlation_id,
                        &to_ms(e.received_at),
                        &e.body.to_string(),
                    ],
                )?;
                Ok(n == 1)
            })
            .await
    }

    async fn events_ingested(
        &self,
        scope: &Scope,
        correlation_id: Option<&str>,
        after_seq: i64,
        limit: i64,
    ) -> StoreResult<Vec<(i64, serde_json::Value)>> {
        let (tenant, corr) = (
            scope.tenant().map(str::to_owned),
            correlation_id.map(str::to_owned),
        );
        let rows: Vec<(i64, String)> = self
            .reader
            .run(move |c| {
                query(
                    c,
                    sql::INGEST_LIST,
                    &[&after_seq, &tenant, &corr, &limit],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
            })
            .await?;
        rows.into_iter().map(crate::row::ingested_event).collect()
    }
}
