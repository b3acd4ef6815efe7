//! W3C trace context handed to workers: the gateway's request layer scopes
//! the request's `traceparent` around the handler ([`scope`]); job inserts
//! copy it into the job's metadata ([`with_traceparent`]), from where lease
//! frames (`task.metadata`) and claim responses ([`from_metadata`]) carry it
//! to the worker, whose spans then join the caller's trace.

use std::future::Future;
use std::sync::Arc;

use serde_json::{Map, Value};

/// The metadata key (and claim response member) that carries the context.
pub const TRACEPARENT: &str = "traceparent";

tokio::task_local! {
    static CURRENT: Option<Arc<str>>;
}

/// Runs `f` with `traceparent` as the current request's trace context.
pub async fn scope<F: Future>(traceparent: Option<Arc<str>>, f: F) -> F::Output {
    CURRENT.scope(traceparent, f).await
}

/// The current request's `traceparent`, if the request layer set one.
pub fn current() -> Option<Arc<str>> {
    CURRENT.try_with(Clone::clone).ok().flatten()
}

/// Job metadata with the current `traceparent` added. A `traceparent` the
/// caller put there itself wins; metadata that is not an object is left as is.
pub fn with_traceparent(metadata: Option<Value>) -> Option<Value> {
    let Some(tp) = current() else {
        return metadata;
    };
    match metadata {
        None => Some(Value::Object(Map::from_iter([(
            TRACEPARENT.to_owned(),
            Value::from(&*tp),
        )]))),
        Some(Value::Object(mut m)) => {
            m.entry(TRACEPARENT).or_insert_with(|| Value::from(&*tp));
            Some(Value::Object(m))
        }
        other => other,
    }
}

/// The `traceparent` stored in a job's metadata.
pub fn from_metadata(metadata: Option<&Value>) -> Option<String> {
    metadata?.get(TRACEPARENT)?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[tokio::test]
    async fn metadata_gains_the_scoped_traceparent() {
        assert_eq!(with_traceparent(None), None);
        scope(Some(Arc::from(TP)), async {
            assert_eq!(with_traceparent(None), Some(json!({"traceparent": TP})));
            assert_eq!(
                with_traceparent(Some(json!({"a": 1}))),
                Some(json!({"a": 1, "traceparent": TP}))
            );
            // The caller's own context wins; non-objects are not touched.
            let own = json!({"traceparent": "00-own"});
            assert_eq!(with_traceparent(Some(own.clone())), Some(own));
            assert_eq!(with_traceparent(Some(json!([1]))), Some(json!([1])));
        })
        .await;
        assert_eq!(
            from_metadata(Some(&json!({"traceparent": TP}))).as_deref(),
            Some(TP)
        );
        assert_eq!(from_metadata(Some(&json!({"traceparent": 1}))), None);
        assert_eq!(from_metadata(None), None);
    }
}
