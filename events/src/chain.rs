//! Verification of hash chains: every event signed by its instance's key,
//! positions counting from 1 per correlation id, and each `prev_event_hash`
//! equal to the [`event_hash`] of the event before it.

use std::collections::HashMap;
use std::fmt;

use super::model::{ExecutionEvent, SENTINEL_PREV_HASH};
use super::sign::{EventPublicKey, SignatureError, event_hash, verify_signature};

/// What [`verify_chain`] checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainSummary {
    /// Events verified.
    pub events: usize,
    /// Distinct correlation ids (chains) among them.
    pub chains: usize,
}

/// The first place a chain fails to verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("chain {correlation_id:?} position {position} (event {event_id}): {kind}")]
pub struct ChainError {
    /// The chain that fails.
    pub correlation_id: String,
    /// The 1-based place of the failing event in its chain as given, which is
    /// the `chain_position` it should carry.
    pub position: u64,
    /// The failing event's `event_id`.
    pub event_id: String,
    /// 0-based index of the failing event in the input sequence.
    pub index: usize,
    /// What is wrong.
    pub kind: ChainErrorKind,
}

/// What is wrong at a [`ChainError`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainErrorKind {
    /// The event carries no signature.
    MissingSignature,
    /// `signature.key_id` is not `<instance_id>:…` of the event's own instance.
    ForeignKey {
        /// The event's `signature.key_id`.
        key_id: String,
        /// The event's `instance_id`.
        instance_id: String,
    },
    /// No public key is known for `signature.key_id`.
    UnknownKey {
        /// The unknown key id.
        key_id: String,
    },
    /// The signature does not verify (altered content, wrong key, bad encoding).
    BadSignature(SignatureError),
    /// `chain_position` is not the event's place in the chain (a gap, a
    /// duplicate or reordered events).
    BadPosition {
        /// The place the event is at.
        expected: u64,
        /// Its `chain_position`.
        found: u64,
    },
    /// `prev_event_hash` is not the hash of the previous event (or the
    /// sentinel at position 1).
    BadPrevHash {
        /// The previous event's hash or the sentinel.
        expected: String,
        /// The event's `prev_event_hash`.
        found: String,
    },
    /// The event could not be hashed.
    Unhashable(String),
}

impl fmt::Display for ChainErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingSignature => f.write_str("event is not signed"),
            Self::ForeignKey {
                key_id,
                instance_id,
            } => write!(
                f,
                "key {key_id:?} does not belong to instance {instance_id:?}"
            ),
            Self::UnknownKey { key_id } => write!(f, "unknown key {key_id:?}"),
            Self::BadSignature(e) => write!(f, "bad signature: {e}"),
            Self::BadPosition { expected, found } => {
                write!(f, "chain_position is {found}, expected {expected}")
            }
            Self::BadPrevHash { expected, found } => {
                write!(f, "prev_event_hash is {found}, expected {expected}")
            }
            Self::Unhashable(e) => write!(f, "cannot hash event: {e}"),
        }
    }
}

/// Verifies `events`, given in chain order (chains of several correlation ids
/// may interleave; each must start at position 1), resolving signing keys by
/// `signature.key_id` through `keys`.
///
/// Per event, in this order: signature present, key id of the event's
/// instance, key known, signature valid, position, previous hash. Stops at the
/// first failure.
pub fn verify_chain<'a, I, K>(events: I, keys: K) -> Result<ChainSummary, ChainError>
where
    I: IntoIterator<Item = &'a ExecutionEvent>,
    K: Fn(&str) -> Option<EventPublicKey>,
{
    let mut v = ChainVerifier::new(keys, false);
    for event in events {
        v.push(event)?;
    }
    Ok(v.summary())
}

/// [`verify_chain`] one event at a time, for stores too large to load: it
/// keeps one head (position and hash) per chain, not the events.
///
/// With `checkpoints`, a chain may begin after position 1 — its earlier
/// events were purged by retention — and its first kept event is taken as
/// the chain's checkpoint: its signature is checked, its position and
/// previous hash are trusted, and every later event must link to it.
#[derive(Debug)]
pub struct ChainVerifier<K> {
    keys: K,
    checkpoints: bool,
    heads: HashMap<String, (u64, String)>,
    events: usize,
    started_at_checkpoint: usize,
}

impl<K: Fn(&str) -> Option<EventPublicKey>> ChainVerifier<K> {
    /// A verifier resolving keys through `keys`.
    pub fn new(keys: K, checkpoints: bool) -> Self {
        Self {
            keys,
            checkpoints,
            heads: HashMap::new(),
            events: 0,
            started_at_checkpoint: 0,
        }
    }

    /// Checks the next event (in chain order).
    pub fn push(&mut self, event: &ExecutionEvent) -> Result<(), ChainError> {
        let index = self.events;
        self.events += 1;
        let head = self.heads.get(event.correlation_id.as_str());
        let checkpoint = head.is_none() && self.checkpoints && event.chain_position > 1;
        let (seen, expected_prev) = head.map_or((0, SENTINEL_PREV_HASH), |(n, h)| (*n, h.as_str()));
        let position = if checkpoint {
            event.chain_position
        } else {
            seen + 1
        };
        let fail = |kind| ChainError {
            correlation_id: event.correlation_id.clone(),
            position,
            event_id: event.event_id.clone(),
            index,
            kind,
        };

        let signature = event
            .signature
            .as_ref()
            .ok_or_else(|| fail(ChainErrorKind::MissingSignature))?;
        let owner = signature
            .key_id
            .rsplit_once(':')
            .map_or("", |(instance, _)| instance);
        if owner != event.instance_id {
            return Err(fail(ChainErrorKind::ForeignKey {
                key_id: signature.key_id.clone(),
                instance_id: event.instance_id.clone(),
            }));
        }
        let key = (self.keys)(&signature.key_id).ok_or_else(|| {
            fail(ChainErrorKind::UnknownKey {
                key_id: signature.key_id.clone(),
            })
        })?;
        verify_signature(event, &key).map_err(|e| fail(ChainErrorKind::BadSignature(e)))?;
        if event.chain_position != position {
            return Err(fail(ChainErrorKind::BadPosition {
                expected: position,
                found: event.chain_position,
            }));
        }
        if !checkpoint && event.prev_event_hash != expected_prev {
            return Err(fail(ChainErrorKind::BadPrevHash {
                expected: expected_prev.to_owned(),
                found: event.prev_event_hash.clone(),
            }));
        }
        let hash =
            event_hash(event).map_err(|e| fail(ChainErrorKind::Unhashable(e.to_string())))?;
        if checkpoint {
            self.started_at_checkpoint += 1;
        }
        self.heads
            .insert(event.correlation_id.clone(), (position, hash));
        Ok(())
    }

    /// What was checked so far.
    pub fn summary(&self) -> ChainSummary {
        ChainSummary {
            events: self.events,
            chains: self.heads.len(),
        }
    }

    /// How many chains began at a retention checkpoint (after position 1).
    pub fn checkpoint_chains(&self) -> usize {
        self.started_at_checkpoint
    }
}
