//! The SQLite driver's settings, the Intent Bus KV store and neuron capability
//! schemas ([`crate::SettingsStore`]).

use super::*;

impl crate::SettingsStore for SqliteStore {
    async fn kv_set(&self, p: KvSetParams) -> StoreResult<()> {
        self.writer
            .run_one(move |c| {
                let expires = now_ms(p.now).saturating_add(p.ttl_ms);
                exec(
                    c,
                    sql::KV_SET,
                    &[&p.scope, &p.key, &p.value.to_string(), &expires],
                )
                .map(drop)
            })
            .await
    }

    async fn kv_get(
        &self,
        scope: &str,
        key: &str,
        now: Option<DateTime<Utc>>,
    ) -> StoreResult<Option<serde_json::Value>> {
        let (scope, key) = (scope.to_owned(), key.to_owned());
        let text: Option<String> = self
            .reader
            .run(move |c| query_one(c, sql::KV_GET, &[&scope, &key, &now_ms(now)], |r| r.get(0)))
            .await?;
        text.map(|v| {
            serde_json::from_str(&v).map_err(|e| StoreError::Corrupt(format!("kv.value: {e}")))
        })
        .transpose()
    }

    async fn setting_get_or_insert(&self, name: &str, value: &str) -> StoreResult<String> {
        let (name, value) = (name.to_owned(), value.to_owned());
        self.writer
            .run(move |c| {
                exec(c, sql::SETTING_INSERT, &[&name, &value])?;
                query_one(c, sql::SETTING_GET, &[&name], |r| r.get(0))?.ok_or(StoreError::NotFound)
            })
            .await
    }

    async fn schema_put(&self, s: crate::CapabilitySchema) -> StoreResult<()> {
        self.writer
            .run_one(move |c| {
                let b = crate::row::SchemaBinds::of(&s);
                exec(
                    c,
                    sql::SCHEMA_PUT,
                    &[
                        &s.capability,
                        &b.input_schema,
                        &b.output_schema,
                        &b.updated_at,
                    ],
                )
                .map(drop)
            })
            .await
    }

    async fn schema_get(&self, capability: &str) -> StoreResult<Option<crate::CapabilitySchema>> {
        let capability = capability.to_owned();
        self.reader
            .run(move |c| {
                query_one(c, sql::SCHEMA_GET, &[&capability], |r| {
                    Ok(crate::row::CapabilitySchemaRow {
                        capability: r.get(0)?,
                        input_schema: r.get(1)?,
                        output_schema: r.get(2)?,
                        updated_at: r.get(3)?,
                    })
                })
            })
            .await?
            .map(TryInto::try_into)
            .transpose()
    }

    async fn schema_delete(&self, capability: &str) -> StoreResult<bool> {
        let capability = capability.to_owned();
        self.writer
            .run_one(move |c| Ok(exec(c, sql::SCHEMA_DELETE, &[&capability])? == 1))
            .await
    }

    async fn leader_lease(
        &self,
        name: &str,
        holder: &str,
        ttl_ms: i64,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let (name, holder, now) = (name.to_owned(), holder.to_owned(), to_ms(now));
        self.writer
            .run_one(move |c| {
                let until = now.saturating_add(ttl_ms);
                Ok(exec(c, sql::LEADER_TRY, &[&name, &holder, &until, &now])? == 1)
            })
            .await
    }
}
