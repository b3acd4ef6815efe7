//! The PostgreSQL driver's execution events: the signed event list, event keys,
//! ingested events ([`crate::EventStore`]).

use super::*;

impl crate::EventStore for PgStore {
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
}
