//! The compact camelCase event shape of the `intentproof-sdk` 0.1 README,
//! rendered from a v1 event.

use serde_json::{Map, Value, json};

use super::model::ExecutionEvent;

/// `event` in the compact shape: `id, correlationId, intent, action, inputs,
/// output, error{name,message,stack?}, status, startedAt, completedAt,
/// durationMs, attributes`.
///
/// `inputs` and `output` are `null` when not captured; `error` is left out
/// when the event has none; `attributes` keeps only string, number and
/// boolean values, as the compact shape allows.
pub fn to_compact(event: &ExecutionEvent) -> Value {
    let mut out = json!({
        "id": event.event_id,
        "correlationId": event.correlation_id,
        "intent": event.intent,
        "action": event.action,
        "inputs": event.inputs.clone().unwrap_or(Value::Null),
        "output": event.output.clone().unwrap_or(Value::Null),
        "status": event.status.as_str(),
        "startedAt": event.started_at,
        "completedAt": event.completed_at,
        "durationMs": event.duration_ms,
        "attributes": compact_attributes(event.attributes.as_ref()),
    });
    if let (Some(error), Value::Object(map)) = (compact_error(event.error.as_ref()), &mut out) {
        map.insert("error".to_owned(), error);
    }
    out
}

fn compact_attributes(attributes: Option<&Map<String, Value>>) -> Value {
    let kept = attributes
        .into_iter()
        .flatten()
        .filter(|(_, v)| matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Value::Object(kept)
}

/// `{name, message, stack?}` from a v1 error, whatever its shape.
fn compact_error(error: Option<&Value>) -> Option<Value> {
    let (name, message, stack) = match error? {
        Value::Null => return None,
        Value::Object(map) => {
            let text = |key: &str| map.get(key).and_then(Value::as_str).map(str::to_owned);
            let message = text("message")
                .or_else(|| text("reason"))
                .unwrap_or_else(|| Value::Object(map.clone()).to_string());
            let name = text("name")
                .or_else(|| text("kind"))
                .or_else(|| text("code"))
                .unwrap_or_else(|| "Error".to_owned());
            (name, message, text("stack"))
        }
        Value::String(s) => ("Error".to_owned(), s.clone(), None),
        other => ("Error".to_owned(), other.to_string(), None),
    };
    let mut out = json!({ "name": name, "message": message });
    if let (Some(stack), Value::Object(map)) = (stack, &mut out) {
        map.insert("stack".to_owned(), Value::String(stack));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ChainLink, EventParams, EventStatus};
    use chrono::{TimeZone, Utc};

    fn event(status: EventStatus, error: Option<Value>) -> ExecutionEvent {
        let started_at = Utc
            .with_ymd_and_hms(2026, 5, 11, 14, 32, 17)
            .single()
            .expect("time");
        let params = EventParams {
            tenant_id: "tnt".to_owned(),
            correlation_id: "corr".to_owned(),
            intent: "summarize".to_owned(),
            action: "neuron.summarize".to_owned(),
            status,
            started_at,
            completed_at: started_at + chrono::Duration::milliseconds(42),
            inputs: Some(json!({"text": "hi"})),
            output: None,
            error,
            attributes: json!({"protocol": "neuron", "attempt": 2, "nested": {"x": 1}})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            untrusted_payload: true,
            redaction_summary: None,
        };
        ExecutionEvent::unsigned(params, "inst", ChainLink::first())
    }

    #[test]
    fn compact_shape() {
        let e = event(
            EventStatus::Error,
            Some(json!({"kind": "permanent", "reason": "bad input"})),
        );
        let compact = to_compact(&e);
        assert_eq!(
            compact,
            json!({
                "id": e.event_id,
                "correlationId": "corr",
                "intent": "summarize",
                "action": "neuron.summarize",
                "inputs": {"text": "hi"},
                "output": null,
                "error": {"name": "permanent", "message": "bad input"},
                "status": "error",
                "startedAt": "2026-05-11T14:32:17.000Z",
                "completedAt": "2026-05-11T14:32:17.042Z",
                "durationMs": 42,
                "attributes": {"protocol": "neuron", "attempt": 2},
            })
        );
    }

    #[test]
    fn compact_error_variants() {
        assert!(
            to_compact(&event(EventStatus::Ok, None))
                .get("error")
                .is_none()
        );
        assert!(
            to_compact(&event(EventStatus::Ok, Some(Value::Null)))
                .get("error")
                .is_none()
        );
        let e = to_compact(&event(
            EventStatus::Error,
            Some(json!({"name": "TypeError", "message": "m", "stack": "at x"})),
        ));
        assert_eq!(
            e["error"],
            json!({"name": "TypeError", "message": "m", "stack": "at x"})
        );
        let e = to_compact(&event(EventStatus::Error, Some(json!("lease_expired"))));
        assert_eq!(
            e["error"],
            json!({"name": "Error", "message": "lease_expired"})
        );
    }
}
