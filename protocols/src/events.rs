//! The execution event API: list and export the events the gateway wrote
//! (tenant-scoped, filtered, paginated, v1 or compact, JSON or JSONL), the
//! public keys that verify them, and `POST /v1/events`, the IntentProof
//! ingest route for workers that emit events themselves (schema-validated,
//! stored beside the gateway's chains, linked by correlation id).

use agw_storage::EventStore;
use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{FromRef, FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use agw_events::{EventPublicKey, to_compact};
use agw_storage::{EventQuery, IngestedEvent, Store};

use crate::http::auth::{Authenticator, Bearer};
use crate::http::{ApiError, Query};

/// The IntentProof v1 event schema (MIT, IntentProof/intentproof-spec).
const SCHEMA: &str =
    include_str!("../../events/tests/data/intentproof/execution_event.v1.schema.json");

/// Largest page.
const MAX_LIMIT: i64 = 1000;
/// Largest JSONL export (streamed in chunks of [`EXPORT_CHUNK`]).
const MAX_EXPORT: i64 = 10_000;
/// Largest posted event, bytes.
const MAX_INGEST_BYTES: usize = 256 * 1024;

/// What the event routes need.
#[derive(Debug, Clone)]
pub struct EventsState {
    /// The store.
    pub store: Store,
    /// Bearer authentication.
    pub auth: Arc<Authenticator>,
    /// The v1 schema, compiled once.
    pub schema: Arc<jsonschema::Validator>,
}

impl FromRef<EventsState> for Arc<Authenticator> {
    fn from_ref(s: &EventsState) -> Self {
        s.auth.clone()
    }
}

/// Compiles the bundled schema.
pub fn compile_schema() -> Result<jsonschema::Validator, String> {
    let schema: Value = serde_json::from_str(SCHEMA).map_err(|e| format!("event schema: {e}"))?;
    jsonschema::validator_for(&schema).map_err(|e| format!("event schema: {e}"))
}

/// The event routes.
pub fn router(state: EventsState) -> Router {
    Router::new()
        .route("/api/v1/events", get(list))
        .route("/api/v1/events/keys", get(keys))
        .route("/v1/events", post(ingest))
        .with_state(state)
}

fn time_param(key: &str, v: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    v.map(|v| {
        DateTime::parse_from_rfc3339(v)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| ApiError::InvalidRequest(format!("{key} must be an RFC 3339 time: {e}")))
    })
    .transpose()
}

fn int_param(key: &str, v: Option<&str>, default: i64, max: i64) -> Result<i64, ApiError> {
    match v {
        None => Ok(default),
        Some(v) => match v.parse::<i64>() {
            Ok(n) if (0..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::InvalidRequest(format!(
                "{key} must be an integer in 0..={max}, got {v:?}"
            ))),
        },
    }
}

const KNOWN_PARAMS: [&str; 11] = [
    "correlation_id",
    "topic",
    "protocol",
    "status",
    "since",
    "until",
    "after",
    "limit",
    "format",
    "export",
    "source",
];

/// `GET /api/v1/events` query: every parameter as sent, validated by the
/// handler (its errors name the parameter). Read from the query's map, so a
/// repeated parameter counts once, with its last value.
#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    correlation_id: Option<String>,
    topic: Option<String>,
    protocol: Option<String>,
    status: Option<String>,
    since: Option<String>,
    until: Option<String>,
    after: Option<String>,
    limit: Option<String>,
    format: Option<String>,
    export: Option<String>,
    source: Option<String>,
    /// Parameters not in [`KNOWN_PARAMS`]: refused by name.
    #[serde(flatten)]
    unknown: HashMap<String, String>,
}

impl ListQuery {
    /// Read from the query's map as a JSON object of strings: straight from
    /// the query string, a repeated parameter would be a duplicate-field error.
    fn of(q: HashMap<String, String>) -> Result<Self, ApiError> {
        let v = Value::Object(q.into_iter().map(|(k, v)| (k, Value::String(v))).collect());
        Self::deserialize(v).map_err(|e| ApiError::InvalidRequest(format!("bad query: {e}")))
    }
}

async fn list(
    State(s): State<EventsState>,
    Bearer(p): Bearer,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let q = ListQuery::of(q)?;
    if let Some(k) = q.unknown.keys().next() {
        return Err(ApiError::InvalidRequest(format!(
            "unknown parameter {k:?}; known: {}",
            KNOWN_PARAMS.join(", ")
        )));
    }
    let compact = match q.format.as_deref() {
        None | Some("v1") => false,
        Some("compact") => true,
        Some(other) => {
            return Err(ApiError::InvalidRequest(format!(
                "format must be v1 or compact, got {other:?}"
            )));
        }
    };
    let jsonl = q.export.as_deref() == Some("jsonl")
        || headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("application/x-ndjson"));
    if let Some(st) = &q.status
        && !matches!(st.as_str(), "ok" | "error")
    {
        return Err(ApiError::InvalidRequest(format!(
            "status must be ok or error, got {st:?}"
        )));
    }
    if let Some(pr) = &q.protocol
        && !matches!(pr.as_str(), "intent_bus" | "neuron" | "governance")
    {
        return Err(ApiError::InvalidRequest(format!(
            "protocol must be intent_bus, neuron or governance, got {pr:?}"
        )));
    }
    let after = int_param("after", q.after.as_deref(), 0, i64::MAX)?;
    let max = if jsonl { MAX_EXPORT } else { MAX_LIMIT };
    let limit = int_param("limit", q.limit.as_deref(), 100, max)?.max(1);
    let source = match q.source.as_deref() {
        None | Some("gateway") => Source::Gateway(EventQuery {
            scope: p.scope(),
            since: time_param("since", q.since.as_deref())?,
            until: time_param("until", q.until.as_deref())?,
            correlation_id: q.correlation_id,
            topic: q.topic,
            protocol: q.protocol,
            status: q.status,
            after_seq: after,
            limit,
        }),
        Some("ingested") => Source::Ingested {
            scope: p.scope(),
            correlation_id: q.correlation_id,
        },
        Some(src) => {
            return Err(ApiError::InvalidRequest(format!(
                "source must be gateway or ingested, got {src:?}"
            )));
        }
    };
    if jsonl {
        // The extent of the export first (sequence numbers only), so its
        // `x-next-after` can lead the body; then the bodies stream out in
        // chunks, never more than one chunk in memory.
        let seqs = source.seqs(&s.store, after, limit).await?;
        let next = (seqs.len() as i64 == limit)
            .then(|| seqs.last().copied())
            .flatten();
        let body = match seqs.last().copied() {
            Some(last) => {
                Body::from_stream(export_stream(s.store.clone(), source, compact, after, last))
            }
            None => Body::empty(),
        };
        let mut res = ([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response();
        if let Some(n) = next {
            res.headers_mut()
                .insert("x-next-after", HeaderValue::from(n));
        }
        return Ok(res);
    }
    let (seqs, bodies): (Vec<i64>, Vec<Value>) = source
        .page(&s.store, compact, after, limit)
        .await?
        .into_iter()
        .unzip();
    // A full page may have more after it.
    let next = (seqs.len() as i64 == limit)
        .then(|| seqs.last().copied())
        .flatten();
    Ok(Json(json!({"events": bodies, "next_after": next})).into_response())
}

/// Events read per store round trip of a JSONL export.
const EXPORT_CHUNK: i64 = 500;

/// Which events a list or export reads.
#[derive(Debug, Clone)]
enum Source {
    /// The gateway's own, filtered.
    Gateway(EventQuery),
    /// Those workers posted to `/v1/events`.
    Ingested {
        scope: agw_storage::Scope,
        correlation_id: Option<String>,
    },
}

impl Source {
    /// Up to `limit` events after `after`, as (seq, JSON).
    async fn page(
        &self,
        store: &Store,
        compact: bool,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, Value)>, ApiError> {
        Ok(match self {
            Self::Gateway(q) => store
                .events_list(EventQuery {
                    after_seq: after,
                    limit,
                    ..q.clone()
                })
                .await?
                .into_iter()
                .map(|e| {
                    let v = if compact {
                        to_compact(&e.event)
                    } else {
                        serde_json::to_value(&e.event).unwrap_or(Value::Null)
                    };
                    (e.seq, v)
                })
                .collect(),
            Self::Ingested {
                scope,
                correlation_id,
            } => {
                store
                    .events_ingested(scope, correlation_id.as_deref(), after, limit)
                    .await?
            }
        })
    }

    /// The sequence numbers of [`Source::page`].
    async fn seqs(&self, store: &Store, after: i64, limit: i64) -> Result<Vec<i64>, ApiError> {
        Ok(match self {
            Self::Gateway(q) => {
                store
                    .events_seqs(EventQuery {
                        after_seq: after,
                        limit,
                        ..q.clone()
                    })
                    .await?
            }
            Self::Ingested {
                scope,
                correlation_id,
            } => {
                store
                    .events_ingested_seqs(scope, correlation_id.as_deref(), after, limit)
                    .await?
            }
        })
    }
}

/// The JSONL lines of the events after `after` up to `last`, a chunk at a
/// time. A store failure mid-way ends the body with an error (the client
/// sees a cut response, not a short one that looks whole).
fn export_stream(
    store: Store,
    source: Source,
    compact: bool,
    after: i64,
    last: i64,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    futures_util::stream::unfold(Some(after), move |cursor| {
        let (store, source) = (store.clone(), source.clone());
        async move {
            let after = cursor?;
            let page = match source.page(&store, compact, after, EXPORT_CHUNK).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "event export cut short");
                    return Some((Err(std::io::Error::other(e.to_string())), None));
                }
            };
            let mut out = String::new();
            let mut reached = after;
            for (seq, v) in page.iter().take_while(|(seq, _)| *seq <= last) {
                out.push_str(&v.to_string());
                out.push('\n');
                reached = *seq;
            }
            if out.is_empty() {
                return None;
            }
            let more = reached < last && page.len() as i64 == EXPORT_CHUNK;
            Some((Ok(Bytes::from(out)), more.then_some(reached)))
        }
    })
}

async fn keys(State(s): State<EventsState>) -> Result<Json<Value>, ApiError> {
    let keys = s.store.event_keys().await?;
    let out: Vec<Value> = keys
        .iter()
        .map(|k| {
            let jwk = EventPublicKey::from_b64(&k.public_key)
                .map(|pk| pk.to_jwk(&k.key_id))
                .unwrap_or(Value::Null);
            json!({
                "key_id": k.key_id,
                "alg": "Ed25519",
                "public_key": k.public_key,
                "jwk": jwk,
                "created_at": k.created_at.to_rfc3339(),
            })
        })
        .collect();
    Ok(Json(json!({"keys": out})))
}

/// `POST /v1/events` body: any JSON value (the schema judges it), within
/// [`MAX_INGEST_BYTES`].
#[derive(Debug)]
struct EventBody(Value);

impl<S: Send + Sync> FromRequest<S> for EventBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let b = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::InvalidRequest(format!("cannot read body: {e}")))?;
        if b.len() > MAX_INGEST_BYTES {
            return Err(ApiError::PayloadTooLarge(format!(
                "event is {} bytes; the limit is {MAX_INGEST_BYTES}",
                b.len()
            )));
        }
        serde_json::from_slice(&b)
            .map(Self)
            .map_err(|e| ApiError::InvalidJson(format!("body is not JSON: {e}")))
    }
}

/// The members of a valid event the ingest route reads (the schema makes
/// both required strings).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct EventIds {
    event_id: String,
    correlation_id: String,
}

async fn ingest(
    State(s): State<EventsState>,
    Bearer(p): Bearer,
    EventBody(event): EventBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let errors: Vec<String> = s
        .schema
        .iter_errors(&event)
        .take(10)
        .map(|e| {
            let at = e.instance_path().as_str().to_owned();
            format!("{}: {e}", if at.is_empty() { "/" } else { &at })
        })
        .collect();
    if !errors.is_empty() {
        return Err(ApiError::InvalidRequest(format!(
            "not an IntentProof v1 event: {}",
            errors.join("; ")
        )));
    }
    let EventIds {
        event_id,
        correlation_id,
    } = EventIds::deserialize(&event).unwrap_or_default();
    let stored = s
        .store
        .event_ingest(IngestedEvent {
            tenant: p.tenant.clone(),
            event_id: event_id.clone(),
            correlation_id: correlation_id.clone(),
            body: event,
            received_at: Utc::now(),
        })
        .await?;
    let linked = !s
        .store
        .events_list(EventQuery {
            scope: p.scope(),
            correlation_id: Some(correlation_id.clone()),
            topic: None,
            protocol: None,
            status: None,
            since: None,
            until: None,
            after_seq: 0,
            limit: 1,
        })
        .await?
        .is_empty();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "accepted": true,
            "duplicate": !stored,
            "event_id": event_id,
            "correlation_id": correlation_id,
            "linked": linked,
        })),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_schema_compiles() {
        compile_schema().unwrap();
    }

    #[test]
    fn list_queries_keep_unknown_parameters_for_the_error() {
        let q = ListQuery::of(HashMap::from([
            ("limit".to_owned(), "5".to_owned()),
            ("source".to_owned(), "ingested".to_owned()),
            ("colour".to_owned(), "red".to_owned()),
        ]))
        .unwrap();
        assert_eq!(q.limit.as_deref(), Some("5"));
        assert_eq!(q.source.as_deref(), Some("ingested"));
        assert_eq!(q.topic, None);
        assert_eq!(q.unknown.keys().collect::<Vec<_>>(), ["colour"]);
    }
}
