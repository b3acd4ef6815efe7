//! [`SettingsStore`]: settings, the Intent Bus KV store and neuron capability schemas.

use super::*;

/// The store's settings, the Intent Bus KV store and neuron capability schemas.
/// Every method is one atomic unit, as for [`crate::JobStore`].
pub trait SettingsStore: Send + Sync {
    /// Sets a KV entry (insert or replace) that expires after `ttl_ms`.
    fn kv_set(&self, params: KvSetParams) -> impl Future<Output = StoreResult<()>> + Send;

    /// Reads a live KV entry of `scope`; expired entries read as `None`.
    fn kv_get(
        &self,
        scope: &str,
        key: &str,
        now: Option<DateTime<Utc>>,
    ) -> impl Future<Output = StoreResult<Option<serde_json::Value>>> + Send;

    /// Stores `value` under `name` unless a value exists; returns the stored value
    /// either way (first writer wins across replicas).
    fn setting_get_or_insert(
        &self,
        name: &str,
        value: &str,
    ) -> impl Future<Output = StoreResult<String>> + Send;

    /// Stores the schemas of a capability, replacing any earlier ones whole
    /// (an absent output schema clears the old one). One statement.
    fn schema_put(&self, schema: CapabilitySchema) -> impl Future<Output = StoreResult<()>> + Send;

    /// Reads the schemas of a capability. Read only.
    fn schema_get(
        &self,
        capability: &str,
    ) -> impl Future<Output = StoreResult<Option<CapabilitySchema>>> + Send;

    /// Deletes the schemas of a capability; `false` when there were none.
    /// One statement.
    fn schema_delete(&self, capability: &str) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Takes or renews the cluster-wide lease on the singleton task `name`
    /// for `holder` until `now + ttl_ms`: `true` when `holder` now leads (the
    /// task was free, its lease had run out, or `holder` already led),
    /// `false` while another holder's lease runs.
    fn leader_lease(
        &self,
        name: &str,
        holder: &str,
        ttl_ms: i64,
        now: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
}
