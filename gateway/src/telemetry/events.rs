//! Execution events as OTLP log records: every event this process commits
//! (`Notifier::subscribe_events`) becomes one record whose body is the event
//! JSON as stored, whose attributes are its identifying fields, and whose
//! trace context is the dispatch's `traceparent` (the event attribute of that
//! name).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use chrono::DateTime;
use opentelemetry::Key;
use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::trace::SpanContext;
use opentelemetry_sdk::logs::{SdkLogger, SdkLoggerProvider};
use serde_json::Value;
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio_util::sync::CancellationToken;

use agw_events::ExecutionEvent;
use agw_protocols::http::trace::TRACEPARENT;
use agw_storage::CommittedEvent;

use crate::metrics::TELEMETRY_DROPPED;

/// The records' event name (the OTel log `event_name`).
const EVENT_NAME: &str = "intentproof.execution_event";

/// Emits a log record per event from `events` until `stop` fires (then drains
/// what is already queued) or the store closes. Never blocks a producer: a
/// lagging receiver loses events, counted as dropped logs.
pub(super) async fn run(
    provider: SdkLoggerProvider,
    mut events: Receiver<Arc<CommittedEvent>>,
    stop: CancellationToken,
) {
    let logger = provider.logger("agent-gateway");
    loop {
        tokio::select! {
            biased;
            received = events.recv() => match received {
                Ok(event) => emit(&logger, &event),
                Err(RecvError::Lagged(n)) => lagged(n),
                Err(RecvError::Closed) => return,
            },
            () = stop.cancelled() => break,
        }
    }
    loop {
        match events.try_recv() {
            Ok(event) => emit(&logger, &event),
            Err(TryRecvError::Lagged(n)) => lagged(n),
            Err(TryRecvError::Empty | TryRecvError::Closed) => return,
        }
    }
}

fn lagged(n: u64) {
    TELEMETRY_DROPPED.logs.fetch_add(n, Ordering::Relaxed);
    tracing::warn!(
        skipped = n,
        "execution event export fell behind; events skipped (they stay in the store)"
    );
}

fn emit(logger: &SdkLogger, committed: &CommittedEvent) {
    let record = LogFields::of(&committed.event);
    let mut r = logger.create_log_record();
    r.set_event_name(EVENT_NAME);
    r.set_severity_number(record.severity);
    r.set_severity_text(record.severity.name());
    r.set_body(AnyValue::String(committed.json.clone().into()));
    if let Some(t) = record.timestamp {
        r.set_timestamp(t);
    }
    r.set_observed_timestamp(SystemTime::now());
    r.add_attributes(record.attributes);
    if let Some(cx) = record.trace {
        r.set_trace_context(cx.trace_id(), cx.span_id(), Some(cx.trace_flags()));
    }
    logger.emit(r);
}

/// What a record carries for one event.
#[derive(Debug)]
struct LogFields {
    severity: Severity,
    timestamp: Option<SystemTime>,
    attributes: Vec<(Key, AnyValue)>,
    trace: Option<SpanContext>,
}

impl LogFields {
    fn of(e: &ExecutionEvent) -> Self {
        let mut attributes: Vec<(Key, AnyValue)> = vec![
            ("event_id".into(), e.event_id.clone().into()),
            ("correlation_id".into(), e.correlation_id.clone().into()),
            ("intent".into(), e.intent.clone().into()),
            ("action".into(), e.action.clone().into()),
            ("status".into(), e.status.as_str().into()),
            ("tenant_id".into(), e.tenant_id.clone().into()),
            ("instance_id".into(), e.instance_id.clone().into()),
            ("chain_position".into(), int(e.chain_position).into()),
            ("duration_ms".into(), int(e.duration_ms).into()),
        ];
        let mut traceparent = None;
        for (k, v) in e.attributes.iter().flatten() {
            if k == TRACEPARENT {
                traceparent = v.as_str();
            }
            if let Some(v) = scalar(v) {
                attributes.push((attribute_key(k), v));
            }
        }
        Self {
            severity: match e.status {
                agw_events::EventStatus::Ok => Severity::Info,
                agw_events::EventStatus::Error => Severity::Warn,
            },
            timestamp: DateTime::parse_from_rfc3339(&e.completed_at)
                .ok()
                .map(SystemTime::from),
            attributes,
            trace: traceparent.and_then(super::remote_context),
        }
    }
}

/// The names the gateway's own events carry, as record keys.
const KNOWN_KEYS: &[&str] = &[
    "attributes.protocol",
    "attributes.job.protocol",
    "attributes.topic",
    "attributes.namespace",
    "attributes.tenant",
    "attributes.job_id",
    "attributes.attempt",
    "attributes.outcome",
    "attributes.worker",
    "attributes.traceparent",
    "attributes.decision",
    "attributes.policy",
];

/// `attributes.<name>`, without an allocation for the gateway's own names.
fn attribute_key(name: &str) -> Key {
    KNOWN_KEYS
        .iter()
        .find(|known| known.strip_prefix("attributes.") == Some(name))
        .map_or_else(
            || format!("attributes.{name}").into(),
            |known| Key::from_static_str(known),
        )
}

fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// An event attribute as a log attribute (they are flat: string, number, bool).
fn scalar(v: &Value) -> Option<AnyValue> {
    Some(match v {
        Value::String(s) => AnyValue::String(s.clone().into()),
        Value::Bool(b) => AnyValue::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => AnyValue::Int(i),
            None => AnyValue::Double(n.as_f64()?),
        },
        Value::Null | Value::Array(_) | Value::Object(_) => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn event(attributes: Value) -> ExecutionEvent {
        serde_json::from_value(json!({
            "schema": "intentproof.event.v1", "event_id": "01JMR9F0X4M9V0K2YH8M0X3D9N",
            "tenant_id": "acme", "instance_id": "gw1", "correlation_id": "job-1",
            "provenance_class": "sdk_attested_evidence", "prev_event_hash": "sha256:00",
            "chain_position": 2, "intent": "summarize", "action": "intent_bus.summarize",
            "status": "error", "started_at": "2026-05-11T14:32:17.000Z",
            "completed_at": "2026-05-11T14:32:17.421Z", "duration_ms": 421,
            "attributes": attributes, "untrusted_payload": false,
            "spec_version": "1.0.0", "sdk_version": "agent-gateway@0.1.0"
        }))
        .expect("event")
    }

    fn attr<'a>(f: &'a LogFields, key: &str) -> Option<&'a AnyValue> {
        f.attributes
            .iter()
            .find(|(k, _)| k.as_str() == key)
            .map(|(_, v)| v)
    }

    #[test]
    fn event_fields_become_attributes_and_traceparent_the_trace_context() {
        let f = LogFields::of(&event(json!({
            "protocol": "intent_bus", "attempt": 1, "traceparent": TP, "ok": true
        })));
        assert_eq!(
            attr(&f, "event_id"),
            Some(&AnyValue::from("01JMR9F0X4M9V0K2YH8M0X3D9N"))
        );
        assert_eq!(attr(&f, "correlation_id"), Some(&AnyValue::from("job-1")));
        assert_eq!(
            attr(&f, "action"),
            Some(&AnyValue::from("intent_bus.summarize"))
        );
        assert_eq!(attr(&f, "status"), Some(&AnyValue::from("error")));
        assert_eq!(attr(&f, "tenant_id"), Some(&AnyValue::from("acme")));
        assert_eq!(attr(&f, "chain_position"), Some(&AnyValue::Int(2)));
        assert_eq!(attr(&f, "attributes.attempt"), Some(&AnyValue::Int(1)));
        assert_eq!(attr(&f, "attributes.ok"), Some(&AnyValue::Boolean(true)));
        assert_eq!(
            attr(&f, "attributes.protocol"),
            Some(&AnyValue::from("intent_bus"))
        );
        assert_eq!(f.severity, Severity::Warn);
        let cx = f.trace.expect("trace context");
        assert_eq!(
            cx.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(cx.span_id().to_string(), "00f067aa0ba902b7");
        assert!(cx.is_sampled());
        assert!(f.timestamp.is_some());
    }

    #[test]
    fn attribute_keys_are_prefixed_known_or_not() {
        assert_eq!(attribute_key("topic").as_str(), "attributes.topic");
        assert_eq!(
            attribute_key("job.protocol").as_str(),
            "attributes.job.protocol"
        );
        assert_eq!(attribute_key("custom").as_str(), "attributes.custom");
        assert_eq!(attribute_key("").as_str(), "attributes.");
    }

    #[test]
    fn no_or_bad_traceparent_means_no_trace_context() {
        assert!(LogFields::of(&event(json!({}))).trace.is_none());
        assert!(
            LogFields::of(&event(json!({"traceparent": "00-zz-00-01"})))
                .trace
                .is_none()
        );
    }
}
