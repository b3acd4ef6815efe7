//! The IntentProof v1 core of agent-gateway: signed execution events
//! (`ExecutionEvent` v1), the record each dispatch emits when it settles —
//! its RFC 8785 canonical form, Ed25519 keys and signatures, per-correlation
//! hash chains, payload redaction and the compact shape.
//!
//! Pure: no I/O, no async, no database. Storing events and keys is the
//! store's job: `agw-storage` seals each settlement's event with this crate
//! inside the settlement's transaction; `agw-protocols` serves, renders
//! (compact) and schema-checks events over HTTP; `agw-gateway` loads the
//! instance key, exports events as OTLP logs and runs `events verify`.
//!
//! What is signed and what is chained are the same bytes: the JCS form of the
//! event without `signature`. The signature is Ed25519 over their SHA-256
//! digest, and [`event_hash`] (`sha256:<hex>` of that digest, IntentProof's
//! `event_content_hash`) is the next event's `prev_event_hash`, so the chain
//! does not cover signatures. Byte-compatible with the `intentproof` 0.2.1
//! Python SDK and the spec's golden vectors (`tests/events_vectors.rs`).
//!
//! Layout:
//! - [`jcs`]: RFC 8785 canonical JSON.
//! - `model`: [`ExecutionEvent`] and its parts, constants, [`ChainLink`], ULIDs.
//! - `sign`: [`EventSigner`], [`EventPublicKey`], hashing and signature checks.
//! - `chain`: [`verify_chain`], the streaming [`ChainVerifier`] and [`ChainError`].
//! - `redact`: [`CaptureMode`] and [`redact`].
//! - `compact`: [`to_compact`].

mod chain;
mod compact;
pub mod jcs;
mod model;
mod redact;
mod sign;

pub use chain::{ChainError, ChainErrorKind, ChainSummary, ChainVerifier, verify_chain};
pub use compact::to_compact;
pub use jcs::CanonError;
pub use model::{
    ChainLink, EventParams, EventStatus, ExecutionEvent, PROVENANCE_CLASS, RedactionSummary,
    SCHEMA_ID, SDK_VERSION, SENTINEL_PREV_HASH, SIGNATURE_ALG, SPEC_VERSION, Signature,
    format_timestamp, new_event_id, new_event_id_at,
};
pub use redact::{
    CaptureMode, DEFAULT_REDACT_KEYS, REDACTED, UnknownCaptureMode, default_redact_keys, redact,
    redact_with_paths,
};
pub use sign::{
    EventError, EventPublicKey, EventSigner, Sealed, SignatureError, canonical_event_bytes,
    event_hash, key_id_for, signing_digest, verify_signature,
};
