//! The IntentProof `ExecutionEvent` v1 record (`execution_event.v1.schema.json`),
//! its constants, the chain link of a new event and ULID event ids.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// The `schema` value of every v1 event.
pub const SCHEMA_ID: &str = "intentproof.event.v1";
/// The IntentProof specification version the events follow.
pub const SPEC_VERSION: &str = "1.0.0";
/// The only `provenance_class` v1 knows.
pub const PROVENANCE_CLASS: &str = "sdk_attested_evidence";
/// The `sdk_version` of events this gateway emits (`<sdk>@<version>`, as the
/// IntentProof SDKs write `python@0.1.0`).
pub const SDK_VERSION: &str = concat!("agent-gateway@", env!("CARGO_PKG_VERSION"));
/// The `prev_event_hash` of the first event of a chain (`chain_position` 1).
pub const SENTINEL_PREV_HASH: &str =
    "sha256:0000000000000000000000000000000000000000000000000000000000000000";
/// The only signature algorithm v1 knows.
pub const SIGNATURE_ALG: &str = "ed25519";

/// One signed execution event, field for field as the v1 schema has it.
///
/// Optional members are left out when `None`, and a member given as JSON
/// `null` deserializes to `Some(Value::Null)`, so that an event read from
/// JSON serializes back to the same members and its signature still checks.
/// Unknown members are refused, as the schema's `additionalProperties: false`
/// does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutionEvent {
    /// Always [`SCHEMA_ID`].
    pub schema: String,
    /// A ULID, unique across all events.
    pub event_id: String,
    /// The tenant the dispatch ran for.
    pub tenant_id: String,
    /// The emitting instance; the signing key id is `<instance_id>:k1`.
    pub instance_id: String,
    /// The chain this event belongs to (one hash chain per correlation id).
    pub correlation_id: String,
    /// Always [`PROVENANCE_CLASS`].
    pub provenance_class: String,
    /// `sha256:<hex>` of the previous event of the chain (see
    /// [`event_hash`](super::event_hash)), or [`SENTINEL_PREV_HASH`] at position 1.
    pub prev_event_hash: String,
    /// 1-based place in the chain.
    pub chain_position: u64,
    /// What the dispatch was meant to achieve.
    pub intent: String,
    /// The stable operation id (`intent_bus.<goal>`, `neuron.<capability>`, …).
    pub action: String,
    /// How the dispatch settled.
    pub status: EventStatus,
    /// RFC 3339 UTC start time (see [`format_timestamp`]).
    pub started_at: String,
    /// RFC 3339 UTC completion time.
    pub completed_at: String,
    /// Milliseconds between start and completion.
    pub duration_ms: u64,
    /// What went in (object, array or null); `None` leaves the member out.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub inputs: Option<Value>,
    /// What came out; `None` leaves the member out.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub output: Option<Value>,
    /// The error of a failed dispatch (object or null); `None` leaves the member out.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub error: Option<Value>,
    /// Flat string / number / boolean attributes (protocol, namespace, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<Map<String, Value>>,
    /// True when any non-redacted inputs or output payload is captured.
    pub untrusted_payload: bool,
    /// What redaction did to the payloads, when it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redaction_summary: Option<RedactionSummary>,
    /// Always [`SPEC_VERSION`] for events this gateway emits.
    pub spec_version: String,
    /// The emitter, `<sdk>@<version>`.
    pub sdk_version: String,
    /// The Ed25519 signature; `None` only before signing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<Signature>,
}

/// How a dispatch settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventStatus {
    /// It produced an output.
    Ok,
    /// It failed, was refused or expired.
    Error,
}

impl EventStatus {
    /// The wire name, `ok` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
        }
    }
}

/// The `signature` member of a v1 event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    /// Always [`SIGNATURE_ALG`].
    pub alg: String,
    /// `<instance_id>:k1`.
    pub key_id: String,
    /// Standard base64 of the 64-byte Ed25519 signature.
    pub value: String,
}

/// The `redaction_summary` member of a v1 event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RedactionSummary {
    /// Names of the redaction rules that ran (for this gateway: the keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules_applied: Option<Vec<String>>,
    /// How many values were replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields_redacted_count: Option<i64>,
    /// Where they were (JSON Pointers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields_redacted_paths: Option<Vec<String>>,
    /// The tenant's redaction profile, if one applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_redaction_profile_id: Option<String>,
    /// Members the schema does not name (it allows them here), kept so that
    /// signatures over foreign events still check.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Where a new event goes in its chain: taken from the chain's last event
/// (or [`ChainLink::first`]) and stored with the chain head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainLink {
    /// The new event's `chain_position`.
    pub position: u64,
    /// The new event's `prev_event_hash`.
    pub prev_event_hash: String,
}

impl ChainLink {
    /// The link of a chain's first event: position 1 and the zero sentinel.
    pub fn first() -> Self {
        Self {
            position: 1,
            prev_event_hash: SENTINEL_PREV_HASH.to_owned(),
        }
    }

    /// The link of the event that follows `previous` in its chain.
    pub fn after(previous: &ExecutionEvent) -> Result<Self, super::EventError> {
        Ok(Self {
            position: previous.chain_position + 1,
            prev_event_hash: super::event_hash(previous)?,
        })
    }
}

/// What the caller knows of a settled dispatch; the signer adds the rest
/// (schema constants, instance, event id, chain link, signature).
#[derive(Debug, Clone, PartialEq)]
pub struct EventParams {
    /// The tenant the dispatch ran for.
    pub tenant_id: String,
    /// The chain the event joins.
    pub correlation_id: String,
    /// What the dispatch was meant to achieve.
    pub intent: String,
    /// The stable operation id.
    pub action: String,
    /// How it settled.
    pub status: EventStatus,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it settled; also the time part of the event's ULID.
    pub completed_at: DateTime<Utc>,
    /// Captured inputs (already redacted as configured).
    pub inputs: Option<Value>,
    /// Captured output (already redacted as configured).
    pub output: Option<Value>,
    /// The error object of a failed dispatch.
    pub error: Option<Value>,
    /// Flat attributes; never secrets.
    pub attributes: Map<String, Value>,
    /// Whether unredacted payload was captured.
    pub untrusted_payload: bool,
    /// What redaction did, if it ran.
    pub redaction_summary: Option<RedactionSummary>,
}

impl ExecutionEvent {
    /// An unsigned event from `params` at `link`, emitted by `instance_id`.
    pub fn unsigned(params: EventParams, instance_id: &str, link: ChainLink) -> Self {
        let duration_ms = (params.completed_at - params.started_at)
            .num_milliseconds()
            .max(0)
            .unsigned_abs();
        Self {
            schema: SCHEMA_ID.to_owned(),
            event_id: new_event_id_at(params.completed_at),
            tenant_id: params.tenant_id,
            instance_id: instance_id.to_owned(),
            correlation_id: params.correlation_id,
            provenance_class: PROVENANCE_CLASS.to_owned(),
            prev_event_hash: link.prev_event_hash,
            chain_position: link.position,
            intent: params.intent,
            action: params.action,
            status: params.status,
            started_at: format_timestamp(params.started_at),
            completed_at: format_timestamp(params.completed_at),
            duration_ms,
            inputs: params.inputs,
            output: params.output,
            error: params.error,
            attributes: Some(params.attributes),
            untrusted_payload: params.untrusted_payload,
            redaction_summary: params.redaction_summary,
            spec_version: SPEC_VERSION.to_owned(),
            sdk_version: SDK_VERSION.to_owned(),
            signature: None,
        }
    }
}

/// A timestamp as the SDKs write it: UTC, milliseconds, `Z`
/// (`2026-05-11T14:32:17.421Z`).
pub fn format_timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Crockford base32, the ULID alphabet.
const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A new ULID for the current time.
pub fn new_event_id() -> String {
    new_event_id_at(Utc::now())
}

/// A new ULID whose time part is `at` (48 bits of Unix milliseconds, then 80
/// random bits), as 26 Crockford base32 characters.
pub fn new_event_id_at(at: DateTime<Utc>) -> String {
    let millis = u128::from(at.timestamp_millis().max(0).unsigned_abs()) & ((1 << 48) - 1);
    let random = rand::random::<u128>() & ((1 << 80) - 1);
    let bits = (millis << 80) | random;
    (0..26)
        .map(|i| {
            // 26 × 5 = 130 bits: the first character carries the top 3 bits.
            let shift = 125 - 5 * i;
            char::from(CROCKFORD[((bits >> shift) & 0x1f) as usize])
        })
        .collect()
}

/// Deserializes a member that is present (possibly `null`) to `Some`.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulid_shape_and_time() {
        let at = DateTime::parse_from_rfc3339("2026-05-11T14:32:17.421Z")
            .expect("time")
            .with_timezone(&Utc);
        let id = new_event_id_at(at);
        assert_eq!(id.len(), 26);
        assert!(id.bytes().all(|b| CROCKFORD.contains(&b)));
        assert!(id.as_bytes()[0] <= b'7');
        // The time part is the first ten characters and sorts by time.
        let later = new_event_id_at(at + chrono::Duration::milliseconds(1));
        assert!(later[..10] > id[..10]);
        assert_ne!(new_event_id_at(at), id);
    }

    const MINIMAL: &str = r#"{"schema":"intentproof.event.v1","event_id":"01JMR9F0X4M9V0K2YH8M0X3D9N",
        "tenant_id":"t","instance_id":"i","correlation_id":"c",
        "provenance_class":"sdk_attested_evidence","prev_event_hash":"sha256:00",
        "chain_position":1,"intent":"x","action":"a","status":"ok",
        "started_at":"s","completed_at":"c","duration_ms":0,"output":null,
        "untrusted_payload":false,"spec_version":"1.0.0","sdk_version":"v"}"#;

    #[test]
    fn null_and_absent_members_round_trip() {
        let event: ExecutionEvent = serde_json::from_str(MINIMAL).expect("parses");
        assert_eq!(event.output, Some(Value::Null));
        assert_eq!(event.inputs, None);
        let back = serde_json::to_value(&event).expect("serializes");
        assert_eq!(back.get("output"), Some(&Value::Null));
        assert!(back.get("inputs").is_none());
        assert!(back.get("signature").is_none());
    }

    #[test]
    fn unknown_members_are_refused() {
        let mut value: Value = serde_json::from_str(MINIMAL).expect("parses");
        value["extra"] = Value::from(1);
        let err = serde_json::from_value::<ExecutionEvent>(value).expect_err("refused");
        assert!(err.to_string().contains("extra"), "{err}");
    }
}
