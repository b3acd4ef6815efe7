//! The PostgreSQL driver's auth and keys: API keys, nonces, OAuth clients,
//! device codes, capability revocations ([`crate::AuthStore`]).

use super::*;

impl crate::AuthStore for PgStore {
    async fn nonce_record(&self, p: crate::NonceParams) -> crate::StoreResult<bool> {
        // Fail fast while the database is known to be down.
        self.nonce_writer()?;
        let expires_at_ms = crate::model::to_ms(p.expires_at);
        self.nonce_batches
            .record(p.key_id, p.nonce, expires_at_ms)
            .await
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
        let state = crate::model::device_decision_state(p.tenant.as_deref());
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
        Err(crate::model::device_decide_refusal(row, now))
    }

    async fn device_poll(
        &self,
        p: crate::DevicePollParams,
    ) -> crate::StoreResult<crate::DevicePoll> {
        self.to_completion(move |s| async move {
            use crate::model::{PollStep, poll_step, to_ms};
            let now = to_ms(p.now.unwrap_or_else(chrono::Utc::now));
            let mut tx = s.writer()?.begin().await?;
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
        })
        .await
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
