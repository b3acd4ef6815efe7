//! The event log: turns a settlement into its signed execution event, inside
//! the settlement's own transaction (the drivers call [`EventLog::job_event`]
//! or [`EventLog::block_event`] and insert the row before committing), so an
//! event exists if and only if its settlement committed.
//!
//! Mapping (shared/protocols/execution-events.md): correlation id = the job id
//! (Intent Bus intent, neuron task) or the trace id (governance run); intent =
//! the topic; action = `intent_bus.<topic>`, `neuron.<topic>` (by who held the
//! lease) or `governance.<kind>`; inputs = the job input, output = its result,
//! captured per [`CaptureMode`]. Attributes carry protocol, namespace, tenant,
//! worker, attempt, outcome and the job's `traceparent`; never lease tokens,
//! keys or secrets.

use std::sync::{Arc, PoisonError, RwLock};

use agw_events::{
    CaptureMode, ChainLink, EventParams, EventSigner, EventStatus, RedactionSummary,
    redact_with_paths,
};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::{CommittedEvent, Job, Protocol, StoreError, Trace};

/// Where a driver keeps its event log: empty (no events) until
/// [`crate::Store::set_event_log`].
#[derive(Debug, Clone, Default)]
pub(crate) struct EventSlot(Arc<RwLock<Option<Arc<EventLog>>>>);

impl EventSlot {
    pub(crate) fn set(&self, log: Arc<EventLog>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Some(log);
    }

    pub(crate) fn get(&self) -> Option<Arc<EventLog>> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// How events are signed and what of the payloads they keep.
#[derive(Debug)]
pub struct EventLog {
    signer: EventSigner,
    capture: CaptureMode,
    redact_keys: Vec<String>,
}

/// How a dispatch ended.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ending<'a> {
    /// Fulfilled / acked.
    Fulfilled,
    /// Failed / nacked: retried (`dead == false`) or dead.
    Failed {
        /// The worker's error.
        error: &'a str,
        /// Whether the job is dead now.
        dead: bool,
    },
    /// The lease expired (re-queued or dead).
    Expired {
        /// Whether the job is dead now.
        dead: bool,
    },
    /// Cancelled by its submitter, an operator, or a run timeout.
    Cancelled {
        /// Why.
        reason: &'a str,
    },
    /// Made claimable again by an operator (console Retry) after it failed
    /// or died: the dispatch that ended it is over, a new one may start.
    Retried {
        /// Who retried it (an operator's key id).
        by: &'a str,
    },
}

/// An event ready to insert, with the columns the store indexes.
#[derive(Debug)]
pub(crate) struct EventRow {
    pub(crate) event_id: String,
    pub(crate) tenant: String,
    pub(crate) correlation_id: String,
    pub(crate) chain_position: i64,
    pub(crate) event_hash: String,
    pub(crate) protocol: String,
    pub(crate) topic: String,
    pub(crate) status: String,
    pub(crate) completed_at: i64,
    /// The event and its JSON (the `body` column), announced after the commit.
    pub(crate) event: CommittedEvent,
}

impl EventLog {
    /// A log signing with `signer`, capturing payloads per `capture` with
    /// `redact_keys` redacted (case-insensitive).
    pub fn new(signer: EventSigner, capture: CaptureMode, redact_keys: Vec<String>) -> Self {
        Self {
            signer,
            capture,
            redact_keys,
        }
    }

    /// The signer (its key id and public key are published).
    pub fn signer(&self) -> &EventSigner {
        &self.signer
    }

    /// Captures a payload per the mode; returns it with a redaction summary.
    /// A payload over [`MAX_CAPTURE_BYTES`] is replaced by a marker naming
    /// its size and SHA-256, so one large result cannot bloat the audit log.
    fn capture(&self, v: &Value) -> (Option<Value>, Option<Vec<String>>) {
        if self.capture != CaptureMode::Off && !within(v, MAX_CAPTURE_BYTES) {
            let bytes = serde_json::to_vec(v).unwrap_or_default();
            let marker = serde_json::json!({
                "truncated": true,
                "bytes": bytes.len(),
                "sha256": crate::sha256_hex(&bytes),
            });
            return (Some(marker), None);
        }
        match self.capture {
            CaptureMode::Off => (None, None),
            CaptureMode::Full => (Some(v.clone()), None),
            CaptureMode::Redacted => {
                let (out, paths) = redact_with_paths(v, &self.redact_keys);
                (Some(out), Some(paths))
            }
        }
    }

    fn finish(
        &self,
        mut params: EventParams,
        redacted: Vec<String>,
        link: ChainLink,
        protocol: &str,
        topic: &str,
    ) -> Result<EventRow, StoreError> {
        params.untrusted_payload = self.capture == CaptureMode::Full;
        if self.capture == CaptureMode::Redacted {
            params.redaction_summary = Some(RedactionSummary {
                rules_applied: Some(self.redact_keys.clone()),
                fields_redacted_count: Some(redacted.len() as i64),
                fields_redacted_paths: (!redacted.is_empty()).then_some(redacted),
                tenant_redaction_profile_id: None,
                ..RedactionSummary::default()
            });
        }
        let completed_at = params.completed_at.timestamp_millis();
        let sealed = self
            .signer
            .sealed(params, link)
            .map_err(|e| StoreError::Corrupt(format!("cannot sign event: {e}")))?;
        let event = sealed.event;
        Ok(EventRow {
            event_id: event.event_id.clone(),
            tenant: event.tenant_id.clone(),
            correlation_id: event.correlation_id.clone(),
            chain_position: event.chain_position as i64,
            event_hash: sealed.hash,
            protocol: protocol.to_owned(),
            topic: topic.to_owned(),
            status: if event.status == EventStatus::Ok {
                "ok"
            } else {
                "error"
            }
            .to_owned(),
            completed_at,
            event: CommittedEvent {
                event,
                json: sealed.json,
            },
        })
    }

    /// The event of a job's dispatch ending (`job` as settled, or as it was
    /// before a cancel; either names the last lease holder), chained at the
    /// link `link` finds for the correlation id.
    pub(crate) fn job_event(
        &self,
        job: &Job,
        ending: Ending<'_>,
        result: Option<&Value>,
        now: DateTime<Utc>,
        link: ChainLink,
    ) -> Result<EventRow, StoreError> {
        let meta = job.metadata.as_ref();
        let meta_str = |k: &str| meta.and_then(|m| m.get(k)).and_then(Value::as_str);
        let holder_key = job.last_holder_key.as_deref();
        let correlation_id = correlation_id(job);
        let (protocol, action) = if job.protocol == Protocol::Governance {
            let kind = crate::RunKind::of_job(job).as_str();
            ("governance", format!("governance.{kind}"))
        } else if holder_key.map(crate::HolderKind::of) == Some(crate::HolderKind::Neuron) {
            ("neuron", format!("neuron.{}", job.topic))
        } else {
            ("intent_bus", format!("intent_bus.{}", job.topic))
        };
        let (inputs, mut redacted) = self.capture(&job.input);
        let retried_by = match &ending {
            Ending::Retried { by } => Some(*by),
            _ => None,
        };
        let (output, error, status, outcome) = match ending {
            Ending::Fulfilled => {
                let (out, paths) = result.map_or((None, None), |r| self.capture(r));
                redacted = merge(redacted, paths.map(|p| prefix("/output", p)));
                (out.map(output_shape), None, EventStatus::Ok, "fulfilled")
            }
            Ending::Failed { error, dead } => (
                None,
                Some(json!({"name": "WorkerFailed", "message": error})),
                EventStatus::Error,
                if dead { "dead" } else { "retry" },
            ),
            Ending::Expired { dead } => (
                None,
                Some(json!({"name": "LeaseExpired", "message": "lease_expired"})),
                EventStatus::Error,
                if dead { "dead" } else { "expired" },
            ),
            Ending::Cancelled { reason } => (
                None,
                Some(json!({"name": "Cancelled", "message": reason})),
                EventStatus::Error,
                "cancelled",
            ),
            Ending::Retried { .. } => (None, None, EventStatus::Ok, "retried"),
        };
        let mut attributes = Map::new();
        attributes.insert("protocol".into(), protocol.into());
        attributes.insert("job.protocol".into(), job.protocol.as_str().into());
        attributes.insert("topic".into(), job.topic.clone().into());
        attributes.insert("namespace".into(), job.namespace.clone().into());
        attributes.insert("tenant".into(), job.tenant.clone().into());
        attributes.insert("job_id".into(), job.id.clone().into());
        attributes.insert("attempt".into(), job.attempts.into());
        attributes.insert("outcome".into(), outcome.into());
        if let Some(holder) = job.last_holder.clone() {
            attributes.insert("worker".into(), holder.into());
        }
        if let Some(by) = retried_by {
            attributes.insert("retried_by".into(), by.into());
        }
        for k in ["traceparent", "decision", "policy"] {
            if let Some(v) = meta_str(k) {
                attributes.insert(k.into(), v.into());
            }
        }
        let params = EventParams {
            tenant_id: job.tenant.clone(),
            correlation_id: correlation_id.clone(),
            intent: job.topic.clone(),
            action,
            status,
            started_at: job.leased_at.unwrap_or(job.created_at),
            completed_at: now,
            inputs: inputs.map(inputs_shape),
            output,
            error,
            attributes,
            untrusted_payload: false,
            redaction_summary: None,
        };
        self.finish(
            params,
            redacted.unwrap_or_default(),
            link,
            protocol,
            &job.topic,
        )
    }

    /// The event of a governance run blocked by policy (no job).
    pub(crate) fn block_event(
        &self,
        trace: &Trace,
        inputs: Option<&Value>,
        link: ChainLink,
    ) -> Result<EventRow, StoreError> {
        let (inputs, redacted) = inputs.map_or((None, None), |v| self.capture(v));
        let mut attributes = Map::new();
        attributes.insert("protocol".into(), "governance".into());
        attributes.insert("tenant".into(), trace.tenant.clone().into());
        attributes.insert("decision".into(), trace.decision.as_str().into());
        attributes.insert("policy".into(), trace.policy.clone().into());
        attributes.insert("outcome".into(), "blocked".into());
        let topic = trace.topic.clone().unwrap_or_default();
        let params = EventParams {
            tenant_id: trace.tenant.clone(),
            correlation_id: trace.id.clone(),
            intent: topic.clone(),
            action: format!("governance.{}", trace.kind.as_str()),
            status: EventStatus::Error,
            started_at: trace.created_at,
            completed_at: trace.settled_at.unwrap_or(trace.created_at),
            inputs: inputs.map(inputs_shape),
            output: None,
            error: Some(json!({"name": "GovernanceBlock", "message": trace.reason})),
            attributes,
            untrusted_payload: false,
            redaction_summary: None,
        };
        self.finish(
            params,
            redacted.unwrap_or_default(),
            link,
            "governance",
            &topic,
        )
    }
}

/// The chain a job's events join: its governance trace, else the job itself.
pub fn correlation_id(job: &Job) -> String {
    job.metadata
        .as_ref()
        .filter(|_| job.protocol == Protocol::Governance)
        .and_then(|m| m.get("trace_id"))
        .and_then(Value::as_str)
        .map_or_else(|| job.id.clone(), str::to_owned)
}

/// Whether cancelling `before` ends a dispatch (and so writes an event): a
/// live lease ends, or a governance run ends whether or not it was leased.
pub(crate) fn cancel_ends_dispatch(before: &Job) -> bool {
    before.state == crate::JobState::Leased || before.protocol == Protocol::Governance
}

fn merge(a: Option<Vec<String>>, b: Option<Vec<String>>) -> Option<Vec<String>> {
    match (a, b) {
        (None, None) => None,
        (a, b) => Some(a.into_iter().chain(b).flatten().collect()),
    }
}

fn prefix(p: &str, paths: Vec<String>) -> Vec<String> {
    paths.into_iter().map(|x| format!("{p}{x}")).collect()
}

/// The schema allows objects, arrays or null as inputs: scalars are wrapped.
fn inputs_shape(v: Value) -> Value {
    match v {
        Value::Object(_) | Value::Array(_) | Value::Null => v,
        other => json!({"value": other}),
    }
}

/// The schema allows no arrays as output: they are wrapped.
fn output_shape(v: Value) -> Value {
    match v {
        Value::Array(_) => json!({"items": v}),
        other => other,
    }
}

/// The next link of a chain whose last event is `last` (hash, position).
pub(crate) fn next_link(last: Option<(String, i64)>) -> ChainLink {
    match last {
        None => ChainLink::first(),
        Some((hash, pos)) => ChainLink {
            position: pos as u64 + 1,
            prev_event_hash: hash,
        },
    }
}

/// Largest payload an event captures; larger ones become a size-and-hash marker.
pub(crate) const MAX_CAPTURE_BYTES: usize = 16 * 1024;

/// Whether `v` serializes to at most about `budget` bytes: a walk that adds
/// each string's and key's length plus a little per value, and stops as soon
/// as the budget is spent (no serialization, no allocation).
fn within(v: &Value, budget: usize) -> bool {
    fn cost(v: &Value, left: &mut isize) -> bool {
        *left -= 8;
        match v {
            Value::String(s) => *left -= s.len() as isize,
            Value::Array(items) => {
                for item in items {
                    if !cost(item, left) {
                        return false;
                    }
                }
            }
            Value::Object(map) => {
                for (k, item) in map {
                    *left -= k.len() as isize;
                    if !cost(item, left) {
                        return false;
                    }
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => *left -= 16,
        }
        *left >= 0
    }
    let mut left = isize::try_from(budget).unwrap_or(isize::MAX);
    cost(v, &mut left)
}

#[cfg(test)]
mod tests {
    use super::*;
    use agw_events::default_redact_keys;

    #[test]
    fn sizes_are_bounded_without_serializing() {
        assert!(within(&serde_json::json!({"a": "x".repeat(100)}), 200));
        assert!(!within(&serde_json::json!({"a": "x".repeat(300)}), 200));
        let wide: Vec<Value> = (0..1000).map(Value::from).collect();
        assert!(!within(&Value::Array(wide), 1000));
    }

    #[test]
    fn large_payloads_are_captured_as_a_size_and_hash() {
        let log = EventLog::new(
            EventSigner::generate("t").expect("key"),
            CaptureMode::Redacted,
            default_redact_keys(),
        );
        let small = serde_json::json!({"token": "s3cret", "n": 1});
        let (got, paths) = log.capture(&small);
        assert_eq!(
            got,
            Some(serde_json::json!({"token": "[REDACTED]", "n": 1}))
        );
        assert_eq!(paths, Some(vec!["/token".to_owned()]));
        let big = serde_json::json!({"blob": "x".repeat(MAX_CAPTURE_BYTES)});
        let bytes = serde_json::to_vec(&big).unwrap();
        let (got, _) = log.capture(&big);
        assert_eq!(
            got,
            Some(serde_json::json!({
                "truncated": true,
                "bytes": bytes.len(),
                "sha256": crate::sha256_hex(&bytes),
            }))
        );
    }
}
