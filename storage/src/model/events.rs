//! Execution events as stored: list queries, stored and ingested events, keys
//! ([`crate::EventStore`]).

use super::*;

/// Filters of [`crate::EventStore::events_list`]; every `Some` must match.
#[derive(Debug, Clone)]
pub struct EventQuery {
    /// Whose events (a tenant sees only its own).
    pub scope: Scope,
    /// One chain.
    pub correlation_id: Option<String>,
    /// One topic.
    pub topic: Option<String>,
    /// `intent_bus`, `neuron` or `governance`.
    pub protocol: Option<String>,
    /// `ok` or `error`.
    pub status: Option<String>,
    /// Completed at or after.
    pub since: Option<DateTime<Utc>>,
    /// Completed before.
    pub until: Option<DateTime<Utc>>,
    /// Only events stored after this sequence number (pagination cursor).
    pub after_seq: i64,
    /// At most this many.
    pub limit: i64,
}

/// An event with its storage sequence number (the pagination cursor).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Increases with every stored event.
    pub seq: i64,
    /// The signed event.
    pub event: agw_events::ExecutionEvent,
}

/// A public key that verifies events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventKey {
    /// `<instance_id>:k1`.
    pub key_id: String,
    /// Raw Ed25519 public key, base64.
    pub public_key: String,
    /// When it was first published.
    pub created_at: DateTime<Utc>,
}

/// An event a worker posted itself (`POST /v1/events`): kept as received,
/// linked to dispatches by correlation id, never part of the gateway's chains.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestedEvent {
    /// The posting tenant.
    pub tenant: String,
    /// The event's `event_id` (a repeated post is ignored).
    pub event_id: String,
    /// Its `correlation_id`.
    pub correlation_id: String,
    /// The event as posted.
    pub body: serde_json::Value,
    /// When it arrived.
    pub received_at: DateTime<Utc>,
}
