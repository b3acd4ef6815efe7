//! Settings: the Intent Bus KV store and capability schemas ([`crate::SettingsStore`]).

use super::*;

/// Parameters of [`crate::SettingsStore::kv_set`].
#[derive(Debug, Clone)]
pub struct KvSetParams {
    /// Whose key space (a tenant).
    pub scope: String,
    /// The key.
    pub key: String,
    /// The value, as given (any JSON value).
    pub value: serde_json::Value,
    /// Lifetime in milliseconds.
    pub ttl_ms: i64,
    /// The clock.
    pub now: Option<DateTime<Utc>>,
}

/// The JSON Schemas an operator registered for one capability type. The
/// store keeps the documents opaque; callers compile and apply them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapabilitySchema {
    /// The capability type (a topic), e.g. `acme/echo`.
    pub capability: String,
    /// Schema every task input must match.
    pub input_schema: serde_json::Value,
    /// Schema the neuron checks its output against, if any.
    pub output_schema: Option<serde_json::Value>,
    /// When it was last stored (the caller's clock).
    pub updated_at: DateTime<Utc>,
}
