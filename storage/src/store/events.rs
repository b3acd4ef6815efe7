//! [`EventStore`]: execution events: the signed event list, event keys, ingested events.

use super::*;

/// The store's execution events: the signed event list, event keys, ingested
/// events. Every method is one atomic unit, as for [`crate::JobStore`].
pub trait EventStore: Send + Sync {
    /// Lists stored execution events in storage order, filtered. Read only.
    fn events_list(
        &self,
        query: EventQuery,
    ) -> impl Future<Output = StoreResult<Vec<StoredEvent>>> + Send;

    /// The sequence numbers [`EventStore::events_list`] would return for `query`
    /// (to learn a page's extent without loading its bodies).
    fn events_seqs(&self, query: EventQuery) -> impl Future<Output = StoreResult<Vec<i64>>> + Send;

    /// The sequence numbers [`EventStore::events_ingested`] would return.
    fn events_ingested_seqs(
        &self,
        scope: &Scope,
        correlation_id: Option<&str>,
        after_seq: i64,
        limit: i64,
    ) -> impl Future<Output = StoreResult<Vec<i64>>> + Send;

    /// Publishes a public key that verifies events (kept if the id exists).
    fn event_key_put(&self, key: EventKey) -> impl Future<Output = StoreResult<()>> + Send;

    /// Every published event key.
    fn event_keys(&self) -> impl Future<Output = StoreResult<Vec<EventKey>>> + Send;

    /// Stores an event a worker posted; `false` when its `event_id` was
    /// stored before (nothing changed). One statement.
    fn event_ingest(&self, event: IngestedEvent) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Lists posted events of `scope` (one correlation id, or all), after a
    /// sequence number, in storage order. Read only.
    fn events_ingested(
        &self,
        scope: &Scope,
        correlation_id: Option<&str>,
        after_seq: i64,
        limit: i64,
    ) -> impl Future<Output = StoreResult<Vec<(i64, serde_json::Value)>>> + Send;
}
