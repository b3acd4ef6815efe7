//! The SQLite driver's auth and keys: API keys, nonces, OAuth clients, device
//! codes, capability revocations ([`crate::AuthStore`]).

use super::*;

impl crate::AuthStore for SqliteStore {
    async fn nonce_record(&self, p: NonceParams) -> StoreResult<bool> {
        self.writer
            .run_one(move |c| {
                Ok(exec(
                    c,
                    sql::NONCE_INSERT,
                    &[&p.key_id, &p.nonce, &to_ms(p.expires_at)],
                )? == 1)
            })
            .await
    }

    async fn api_key_insert(&self, k: ApiKey) -> StoreResult<()> {
        self.writer
            .run_one(move |c| {
                exec(
                    c,
                    sql::API_KEY_INSERT,
                    &[
                        &k.id,
                        &k.key_hash,
                        &k.owner,
                        &k.role.as_str(),
                        &to_ms(k.created_at),
                    ],
                )
                .map(drop)
            })
            .await
    }

    async fn api_key_get_by_hash(&self, key_hash: &str) -> StoreResult<Option<ApiKey>> {
        let h = key_hash.to_owned();
        self.reader
            .run(move |c| query_one(c, sql::API_KEY_BY_HASH, &[&h], api_key_row))
            .await
            .map(|row| row.map(Into::into))
    }

    async fn api_keys_list(&self, owner: Option<&str>) -> StoreResult<Vec<ApiKey>> {
        let owner = owner.map(str::to_owned);
        self.reader
            .run(move |c| query(c, sql::API_KEYS_LIST, &[&owner], api_key_row))
            .await
            .map(|rows| rows.into_iter().map(Into::into).collect())
    }

    async fn api_key_revoke(&self, id: &str, now: Option<DateTime<Utc>>) -> StoreResult<bool> {
        let id = id.to_owned();
        self.writer
            .run_one(move |c| Ok(exec(c, sql::API_KEY_REVOKE, &[&id, &now_ms(now)])? == 1))
            .await
    }

    async fn api_key_touch(&self, id: &str, now: DateTime<Utc>) -> StoreResult<()> {
        let id = id.to_owned();
        self.writer
            .run_one(move |c| exec(c, sql::API_KEY_TOUCH, &[&id, &to_ms(now)]).map(drop))
            .await
    }

    async fn oauth_clients_list(&self, tenant: Option<&str>) -> StoreResult<Vec<OAuthClient>> {
        let tenant = tenant.map(str::to_owned);
        self.reader
            .run(move |c| query(c, sql::CLIENTS_LIST, &[&tenant], oauth_client_row))
            .await
            .map(|rows| rows.into_iter().map(Into::into).collect())
    }

    async fn oauth_client_revoke(
        &self,
        client_id: &str,
        now: Option<DateTime<Utc>>,
    ) -> StoreResult<bool> {
        let id = client_id.to_owned();
        self.writer
            .run_one(move |c| Ok(exec(c, sql::CLIENT_REVOKE, &[&id, &now_ms(now)])? == 1))
            .await
    }

    async fn capability_revoke(
        &self,
        capability: &str,
        reason: &str,
        now: Option<DateTime<Utc>>,
    ) -> StoreResult<()> {
        let (capability, reason) = (capability.to_owned(), reason.to_owned());
        self.writer
            .run_one(move |c| {
                exec(
                    c,
                    sql::CAPABILITY_REVOKE,
                    &[&capability, &reason, &now_ms(now)],
                )
                .map(drop)
            })
            .await
    }

    async fn capability_revocations(&self) -> StoreResult<Vec<(String, String)>> {
        self.reader
            .run(|c| {
                query(c, sql::CAPABILITY_REVOCATIONS, &[], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
            })
            .await
    }

    async fn device_insert(&self, d: DeviceCode) -> StoreResult<()> {
        self.writer
            .run_one(move |c| {
                exec(
                    c,
                    sql::DEVICE_INSERT,
                    &[
                        &d.device_code_hash,
                        &d.user_code,
                        &d.client_name,
                        &to_ms(d.expires_at),
                        &d.interval_ms,
                        &to_ms(d.created_at),
                    ],
                )
                .map(drop)
            })
            .await
    }

    async fn device_decide(&self, p: DeviceDecideParams) -> StoreResult<()> {
        self.writer
            .run(move |c| {
                let now = now_ms(p.now);
                let state = device_decision_state(p.tenant.as_deref());
                if exec(
                    c,
                    sql::DEVICE_DECIDE,
                    &[&p.user_code, &state, &p.tenant, &now],
                )? == 1
                {
                    return Ok(());
                }
                let row = query_one(c, sql::DEVICE_BY_USER_CODE, &[&p.user_code], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
                })?;
                Err(device_decide_refusal(row, now))
            })
            .await
    }

    async fn device_poll(&self, p: DevicePollParams) -> StoreResult<DevicePoll> {
        self.writer
            .run(move |c| {
                let now = now_ms(p.now);
                let row = query_one(c, sql::DEVICE_GET, &[&p.device_code_hash], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })?;
                match poll_step(row, now) {
                    PollStep::Answer(a) => Ok(a),
                    PollStep::Record(a) => {
                        exec(c, sql::DEVICE_POLLED, &[&p.device_code_hash, &now])?;
                        Ok(a)
                    }
                    PollStep::Redeem(tenant) => {
                        let client = OAuthClient {
                            tenant,
                            ..p.new_client
                        };
                        exec(
                            c,
                            sql::CLIENT_INSERT,
                            &[
                                &client.client_id,
                                &client.secret_hash,
                                &client.tenant,
                                &client.name,
                                &to_ms(client.created_at),
                            ],
                        )?;
                        exec(c, sql::DEVICE_REDEEMED, &[&p.device_code_hash, &now])?;
                        Ok(DevicePoll::Issued(client))
                    }
                }
            })
            .await
    }

    async fn oauth_client_get(&self, client_id: &str) -> StoreResult<Option<OAuthClient>> {
        let id = client_id.to_owned();
        self.reader
            .run(move |c| query_one(c, sql::CLIENT_GET, &[&id], oauth_client_row))
            .await
            .map(|row| row.map(Into::into))
    }
}
