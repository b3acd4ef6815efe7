//! [`AuthStore`]: auth and keys: API keys, nonces, OAuth clients, device codes,
//! capability revocations.

use super::*;

/// The store's auth and keys: API keys, nonces, OAuth clients, device codes,
/// capability revocations. Every method is one atomic unit, as for
/// [`crate::JobStore`].
pub trait AuthStore: Send + Sync {
    /// Records a request nonce. `true` when it is new; `false` when the same key
    /// used it before (a replay). One atomic insert.
    fn nonce_record(&self, params: NonceParams) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Stores a new API key (its hash).
    fn api_key_insert(&self, key: ApiKey) -> impl Future<Output = StoreResult<()>> + Send;

    /// Finds an API key by the SHA-256 hex of its secret.
    fn api_key_get_by_hash(
        &self,
        key_hash: &str,
    ) -> impl Future<Output = StoreResult<Option<ApiKey>>> + Send;

    /// Every API key, or those of one owner, oldest first (revoked ones included).
    fn api_keys_list(
        &self,
        owner: Option<&str>,
    ) -> impl Future<Output = StoreResult<Vec<ApiKey>>> + Send;

    /// Revokes an API key by id; `false` when there is no such key. A second
    /// revocation keeps the first time. One statement.
    fn api_key_revoke(
        &self,
        id: &str,
        now: Option<DateTime<Utc>>,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Records that a key was used at `now`. One statement.
    fn api_key_touch(
        &self,
        id: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Every OAuth client, or those of one tenant, oldest first.
    fn oauth_clients_list(
        &self,
        tenant: Option<&str>,
    ) -> impl Future<Output = StoreResult<Vec<OAuthClient>>> + Send;

    /// Revokes an OAuth client; `false` when there is no such client.
    fn oauth_client_revoke(
        &self,
        client_id: &str,
        now: Option<DateTime<Utc>>,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Records that an operator revoked a capability type (with the reason
    /// neurons are told). Idempotent. One statement.
    fn capability_revoke(
        &self,
        capability: &str,
        reason: &str,
        now: Option<DateTime<Utc>>,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Every revoked capability type and its reason.
    fn capability_revocations(
        &self,
    ) -> impl Future<Output = StoreResult<Vec<(String, String)>>> + Send;

    /// Records a new device authorization (pending).
    fn device_insert(&self, code: DeviceCode) -> impl Future<Output = StoreResult<()>> + Send;

    /// Approves (for a tenant) or denies a pending, unexpired device code by
    /// its user code. [`StoreError::NotFound`] when there is none,
    /// [`StoreError::Conflict`] when it was already decided. One statement.
    fn device_decide(
        &self,
        params: DeviceDecideParams,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Polls a device code (RFC 8628 §3.4/3.5). Atomically: records the poll,
    /// and on the first poll after approval creates the client and marks the
    /// code redeemed, so a code yields a client at most once.
    fn device_poll(
        &self,
        params: DevicePollParams,
    ) -> impl Future<Output = StoreResult<DevicePoll>> + Send;

    /// Finds an OAuth client.
    fn oauth_client_get(
        &self,
        client_id: &str,
    ) -> impl Future<Output = StoreResult<Option<OAuthClient>>> + Send;
}
