//! The PostgreSQL driver's settings, the Intent Bus KV store and neuron
//! capability schemas ([`crate::SettingsStore`]).

use super::*;

impl crate::SettingsStore for PgStore {
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

    async fn leader_lease(
        &self,
        name: &str,
        holder: &str,
        ttl_ms: i64,
        now: chrono::DateTime<chrono::Utc>,
    ) -> crate::StoreResult<bool> {
        let now = crate::model::to_ms(now);
        let n = sqlx::query(crate::sql::LEADER_TRY)
            .bind(name)
            .bind(holder)
            .bind(now.saturating_add(ttl_ms))
            .bind(now)
            .execute(self.writer()?)
            .await?
            .rows_affected();
        Ok(n == 1)
    }
}
