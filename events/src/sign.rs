//! Ed25519 signing and event hashing, byte-compatible with the IntentProof SDKs.
//!
//! Both the signature and the chain hash cover the same bytes: the JCS form of
//! the event without its `signature` member. The signature is over the 32-byte
//! SHA-256 digest of those bytes (not the bytes themselves), and
//! [`event_hash`] is that digest as `sha256:<hex>`.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use rand::TryRngCore as _;
use rand::rngs::OsRng;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::jcs::{self, CanonError};
use super::model::{ChainLink, EventParams, ExecutionEvent, SIGNATURE_ALG, Signature};

/// Why an event could not be signed or hashed, or a key not loaded.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// The event has no canonical form.
    #[error("canonicalizing event: {0}")]
    Canon(#[from] CanonError),
    /// The event did not serialize to JSON.
    #[error("serializing event: {0}")]
    Json(#[from] serde_json::Error),
    /// A seed or public key is not valid base64 or not 32 bytes.
    #[error("invalid event key: {0}")]
    InvalidKey(&'static str),
    /// The system random source failed.
    #[error("no randomness for a new event key")]
    Random,
}

/// Why a signature does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The event carries no `signature`.
    #[error("event is not signed")]
    Missing,
    /// `signature.alg` is not `ed25519`.
    #[error("unsupported signature algorithm {0:?}")]
    UnsupportedAlg(String),
    /// `signature.value` is not base64.
    #[error("signature value is not base64")]
    Encoding,
    /// The event has no canonical form.
    #[error("canonicalizing event: {0}")]
    Canon(String),
    /// The signature does not match the event under this key.
    #[error("signature does not match")]
    Mismatch,
}

/// The signing key id of an instance: `<instance_id>:k1`.
pub fn key_id_for(instance_id: &str) -> String {
    format!("{instance_id}:k1")
}

/// The JCS bytes of `event` without its `signature`: what is hashed and signed.
pub fn canonical_event_bytes(event: &ExecutionEvent) -> Result<Vec<u8>, EventError> {
    canonical_event_string(event).map(String::into_bytes)
}

fn canonical_event_string(event: &ExecutionEvent) -> Result<String, EventError> {
    Ok(jcs::to_canonical_string_of(event, Some("signature"))?)
}

/// SHA-256 of [`canonical_event_bytes`]: the message Ed25519 signs.
pub fn signing_digest(event: &ExecutionEvent) -> Result<[u8; 32], EventError> {
    Ok(Sha256::digest(canonical_event_bytes(event)?).into())
}

/// `sha256:<lowercase hex>` of [`canonical_event_bytes`].
///
/// The next event of the chain carries it as `prev_event_hash`. As in
/// IntentProof's `event_content_hash`, the signature is not part of it: the
/// chain links event contents, and each content is bound to its signer by its
/// own signature.
pub fn event_hash(event: &ExecutionEvent) -> Result<String, EventError> {
    Ok(digest_hash(&signing_digest(event)?))
}

/// `sha256:<lowercase hex>` of a digest.
fn digest_hash(digest: &[u8; 32]) -> String {
    format!("sha256:{}", hex::encode(digest))
}

/// Checks `event.signature` against `key` (its `key_id` is not looked at;
/// [`verify_chain`](super::verify_chain) resolves keys by id).
pub fn verify_signature(
    event: &ExecutionEvent,
    key: &EventPublicKey,
) -> Result<(), SignatureError> {
    let signature = event.signature.as_ref().ok_or(SignatureError::Missing)?;
    if signature.alg != SIGNATURE_ALG {
        return Err(SignatureError::UnsupportedAlg(signature.alg.clone()));
    }
    let raw = STANDARD
        .decode(&signature.value)
        .map_err(|_| SignatureError::Encoding)?;
    let raw: [u8; 64] = raw.try_into().map_err(|_| SignatureError::Mismatch)?;
    let digest = signing_digest(event).map_err(|e| SignatureError::Canon(e.to_string()))?;
    // Strict: a small-order key or a non-canonical signature never verifies.
    VerifyingKey::from_bytes(key.as_bytes())
        .and_then(|k| k.verify_strict(&digest, &ed25519_dalek::Signature::from_bytes(&raw)))
        .map_err(|_| SignatureError::Mismatch)
}

// === impl EventSigner ===

/// An instance's Ed25519 event key.
///
/// The seed is what gets stored; `Debug` never prints it.
pub struct EventSigner {
    instance_id: String,
    key_id: String,
    key: SigningKey,
}

impl EventSigner {
    /// The signer of `instance_id` from a stored 32-byte seed.
    pub fn from_seed(instance_id: impl Into<String>, seed: [u8; 32]) -> Self {
        let instance_id = instance_id.into();
        Self {
            key_id: key_id_for(&instance_id),
            instance_id,
            key: SigningKey::from_bytes(&seed),
        }
    }

    /// The signer of `instance_id` from a base64 seed (as [`Self::seed_b64`]
    /// and the SDKs' `privateKey` write it).
    pub fn from_seed_b64(
        instance_id: impl Into<String>,
        seed_b64: &str,
    ) -> Result<Self, EventError> {
        let raw = STANDARD
            .decode(seed_b64.trim())
            .map_err(|_| EventError::InvalidKey("seed is not base64"))?;
        let seed: [u8; 32] = raw
            .try_into()
            .map_err(|_| EventError::InvalidKey("seed is not 32 bytes"))?;
        Ok(Self::from_seed(instance_id, seed))
    }

    /// A signer with a fresh random key.
    pub fn generate(instance_id: impl Into<String>) -> Result<Self, EventError> {
        let mut seed = [0u8; 32];
        OsRng
            .try_fill_bytes(&mut seed)
            .map_err(|_| EventError::Random)?;
        Ok(Self::from_seed(instance_id, seed))
    }

    /// The instance this key signs for.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// `<instance_id>:k1`.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The 32-byte seed, for storage. Secret.
    pub fn seed(&self) -> &[u8; 32] {
        self.key.as_bytes()
    }

    /// The seed as standard base64, for storage. Secret.
    pub fn seed_b64(&self) -> String {
        STANDARD.encode(self.key.as_bytes())
    }

    /// The public half.
    pub fn public_key(&self) -> EventPublicKey {
        EventPublicKey(self.key.verifying_key().to_bytes())
    }

    /// The signature of `event` (its current `signature` is ignored).
    pub fn signature(&self, event: &ExecutionEvent) -> Result<Signature, EventError> {
        Ok(self.signature_over(&signing_digest(event)?))
    }

    /// The `signature` member for a [`signing_digest`].
    fn signature_over(&self, digest: &[u8; 32]) -> Signature {
        Signature {
            alg: SIGNATURE_ALG.to_owned(),
            key_id: self.key_id.clone(),
            value: STANDARD.encode(self.key.sign(digest).to_bytes()),
        }
    }

    /// Signs `event` in place.
    pub fn sign(&self, event: &mut ExecutionEvent) -> Result<(), EventError> {
        event.signature = Some(self.signature(event)?);
        Ok(())
    }

    /// A new signed event of this instance from `params` at `link`.
    pub fn seal(&self, params: EventParams, link: ChainLink) -> Result<ExecutionEvent, EventError> {
        self.sealed(params, link).map(|s| s.event)
    }

    /// [`EventSigner::seal`], also returning the event's [`event_hash`] and
    /// its JSON, both from the one canonical serialization the signature
    /// covers.
    pub fn sealed(&self, params: EventParams, link: ChainLink) -> Result<Sealed, EventError> {
        let mut event = ExecutionEvent::unsigned(params, &self.instance_id, link);
        let canonical = canonical_event_string(&event)?;
        let digest: [u8; 32] = Sha256::digest(canonical.as_bytes()).into();
        let signature = self.signature_over(&digest);
        let json = with_member(canonical, "signature", &serde_json::to_string(&signature)?);
        event.signature = Some(signature);
        Ok(Sealed {
            event,
            hash: digest_hash(&digest),
            json,
        })
    }
}

/// A signed event with what its store row needs, computed once.
#[derive(Debug)]
pub struct Sealed {
    /// The event.
    pub event: ExecutionEvent,
    /// Its [`event_hash`].
    pub hash: String,
    /// The event as JSON: its canonical form with the `signature` member
    /// appended (members otherwise in canonical order).
    pub json: String,
}

/// `object` (a non-empty JSON object) with `"name":value_json` added as its
/// last member.
fn with_member(mut object: String, name: &str, value_json: &str) -> String {
    debug_assert!(object.len() > 2 && object.ends_with('}'));
    object.pop();
    object.reserve(name.len() + value_json.len() + 5);
    object.push_str(",\"");
    object.push_str(name);
    object.push_str("\":");
    object.push_str(value_json);
    object.push('}');
    object
}

impl fmt::Debug for EventSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventSigner")
            .field("key_id", &self.key_id)
            .field("public_key", &self.public_key().to_b64())
            .finish_non_exhaustive()
    }
}

// === impl EventPublicKey ===

/// A raw 32-byte Ed25519 public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventPublicKey([u8; 32]);

impl EventPublicKey {
    /// From the raw 32 bytes.
    pub fn from_bytes(raw: [u8; 32]) -> Self {
        Self(raw)
    }

    /// From standard base64 of the raw 32 bytes.
    pub fn from_b64(text: &str) -> Result<Self, EventError> {
        let raw = STANDARD
            .decode(text.trim())
            .map_err(|_| EventError::InvalidKey("public key is not base64"))?;
        let raw: [u8; 32] = raw
            .try_into()
            .map_err(|_| EventError::InvalidKey("public key is not 32 bytes"))?;
        Ok(Self(raw))
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Standard base64 of the raw bytes.
    pub fn to_b64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// The key as an RFC 8037 JWK (`kty OKP`, `crv Ed25519`, `x` base64url)
    /// named `key_id`, for `GET /api/v1/events/keys`.
    pub fn to_jwk(&self, key_id: &str) -> Value {
        json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "alg": "EdDSA",
            "use": "sig",
            "kid": key_id,
            "x": URL_SAFE_NO_PAD.encode(self.0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_round_trips_and_debug_hides_it() {
        let signer = EventSigner::generate("inst_a").expect("key");
        let again = EventSigner::from_seed_b64("inst_a", &signer.seed_b64()).expect("key");
        assert_eq!(again.public_key(), signer.public_key());
        assert_eq!(signer.key_id(), "inst_a:k1");
        let debug = format!("{signer:?}");
        assert!(!debug.contains(&signer.seed_b64()), "{debug}");
        assert_ne!(
            EventSigner::generate("inst_a").expect("key").public_key(),
            signer.public_key()
        );
    }

    #[test]
    fn sealed_json_is_the_signed_event_and_the_hash_its_content_hash() {
        use crate::model::EventStatus;
        let signer = EventSigner::generate("inst_a").expect("key");
        let at = chrono::DateTime::from_timestamp_millis(1_700_000_000_000).expect("time");
        let mut attributes = serde_json::Map::new();
        attributes.insert("topic".into(), "résumé \u{1F600}".into());
        let params = EventParams {
            tenant_id: "acme".into(),
            correlation_id: "job-1".into(),
            intent: "summarize".into(),
            action: "intent_bus.summarize".into(),
            status: EventStatus::Ok,
            started_at: at,
            completed_at: at,
            inputs: Some(json!({"b": 1.5, "a": [null, "x\"y"]})),
            output: None,
            error: None,
            attributes,
            untrusted_payload: true,
            redaction_summary: None,
        };
        let sealed = signer.sealed(params, ChainLink::first()).expect("seal");
        let parsed: ExecutionEvent = serde_json::from_str(&sealed.json).expect("json");
        assert_eq!(parsed, sealed.event);
        assert_eq!(sealed.hash, event_hash(&parsed).expect("hash"));
        verify_signature(&parsed, &signer.public_key()).expect("verifies");
    }

    #[test]
    fn bad_keys_are_refused() {
        assert!(EventSigner::from_seed_b64("i", "not base64!").is_err());
        assert!(EventSigner::from_seed_b64("i", "AAAA").is_err());
        assert!(EventPublicKey::from_b64("AAAA").is_err());
    }

    #[test]
    fn jwk_shape() {
        let key = EventPublicKey::from_bytes([0xfb; 32]);
        let jwk = key.to_jwk("inst_a:k1");
        assert_eq!(jwk["kty"], "OKP");
        assert_eq!(jwk["crv"], "Ed25519");
        assert_eq!(jwk["kid"], "inst_a:k1");
        let x = jwk["x"].as_str().expect("x");
        assert!(!x.contains('=') && !x.contains('+') && !x.contains('/'));
        assert_eq!(URL_SAFE_NO_PAD.decode(x).expect("b64url"), [0xfb; 32]);
        assert_eq!(EventPublicKey::from_b64(&key.to_b64()).expect("b64"), key);
    }
}
