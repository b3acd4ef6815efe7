//! Operator-registered JSON Schemas per capability type (the SDK's register
//! frame carries none): the admin routes that store them, and a per-replica
//! cache of compiled validators used by the Task API and the dispatcher.

use agw_storage::SettingsStore;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};

use agw_storage::{CapabilitySchema, Store};

use super::NeuronState;
use super::wire::{iso, valid_capability_type};
use crate::http::auth::{Bearer, Principal};
use crate::http::error::SchemaViolation;
use crate::http::{ApiError, JsonBody, Query};

/// How long a replica trusts its cached view of a capability's schema
/// (including "none") before re-reading the store. A put or delete is seen at
/// once by the replica that served it, and by every other one within this.
pub const CACHE_TTL: Duration = Duration::from_secs(5);

/// Most violations listed in one `schema_mismatch` error.
const MAX_REPORTED: usize = 20;

/// A stored schema with its input validator compiled.
#[derive(Debug)]
pub struct Compiled {
    /// The stored documents (lease frames carry them).
    pub schema: CapabilitySchema,
    input: jsonschema::Validator,
}

impl Compiled {
    /// Compiles the input schema, and checks the output schema compiles too.
    pub fn new(schema: CapabilitySchema) -> Result<Self, String> {
        let input = jsonschema::validator_for(&schema.input_schema)
            .map_err(|e| format!("inputSchema does not compile: {e}"))?;
        if let Some(out) = &schema.output_schema {
            jsonschema::validator_for(out)
                .map_err(|e| format!("outputSchema does not compile: {e}"))?;
        }
        Ok(Self { schema, input })
    }

    /// Checks a task input: 400 `schema_mismatch` listing the violations.
    pub fn check_input(&self, input: &Value) -> Result<(), ApiError> {
        if self.input.is_valid(input) {
            return Ok(());
        }
        let mut errors: Vec<SchemaViolation> = Vec::new();
        let mut total = 0usize;
        for e in self.input.iter_errors(input) {
            total += 1;
            if errors.len() < MAX_REPORTED {
                errors.push(SchemaViolation {
                    path: e.instance_path().as_str().to_owned(),
                    message: e.to_string(),
                });
            }
        }
        let first = errors.first().map_or_else(String::new, |v| {
            let at = if v.path.is_empty() { "input" } else { &v.path };
            format!(": {at}: {}", v.message)
        });
        let more = match total {
            0 | 1 => String::new(),
            n => format!(" (and {} more)", n - 1),
        };
        Err(ApiError::SchemaMismatch {
            message: format!(
                "input does not match the input schema registered for {}{first}{more}",
                self.schema.capability
            ),
            errors,
        })
    }
}

#[derive(Debug)]
struct Entry {
    fetched: Instant,
    compiled: Option<Arc<Compiled>>,
}

#[derive(Debug, Default)]
struct Cache {
    entries: HashMap<String, Entry>,
    /// Bumped by every local put/delete, so a store read that started before
    /// one never overwrites its fresher entry.
    generation: u64,
}

/// The schemas of this replica's capabilities, compiled and cached per
/// capability for [`CACHE_TTL`]. A refresh recompiles only when the stored
/// row changed.
#[derive(Debug)]
pub struct SchemaRegistry {
    cache: Mutex<Cache>,
    ttl: Duration,
}

impl Default for SchemaRegistry {
    fn default() -> Self {
        Self::with_ttl(CACHE_TTL)
    }
}

impl SchemaRegistry {
    /// A registry that re-reads the store after `ttl`.
    pub fn with_ttl(ttl: Duration) -> Self {
        Self {
            cache: Mutex::default(),
            ttl,
        }
    }

    /// The compiled schema of `capability`, or `None` when none is registered.
    /// A stored schema that no longer compiles is an internal error (fail
    /// closed: the Task API refuses rather than skipping validation).
    pub async fn get(
        &self,
        store: &Store,
        capability: &str,
    ) -> Result<Option<Arc<Compiled>>, ApiError> {
        let (generation, cached) = {
            let c = self.lock();
            match c.entries.get(capability) {
                Some(e) if e.fetched.elapsed() < self.ttl => return Ok(e.compiled.clone()),
                e => (c.generation, e.and_then(|e| e.compiled.clone())),
            }
        };
        let compiled = match store.schema_get(capability).await? {
            None => None,
            Some(row) if cached.as_ref().is_some_and(|c| c.schema == row) => cached,
            Some(row) => Some(Arc::new(Compiled::new(row).map_err(|e| {
                ApiError::Internal(format!("stored schema of {capability}: {e}"))
            })?)),
        };
        let mut c = self.lock();
        if c.generation == generation {
            c.entries.insert(
                capability.to_owned(),
                Entry {
                    fetched: Instant::now(),
                    compiled: compiled.clone(),
                },
            );
        }
        Ok(compiled)
    }

    /// Compiles and stores a schema; this replica uses it at once.
    pub async fn put(
        &self,
        store: &Store,
        schema: CapabilitySchema,
    ) -> Result<Arc<Compiled>, ApiError> {
        let compiled = Arc::new(Compiled::new(schema).map_err(ApiError::InvalidRequest)?);
        store.schema_put(compiled.schema.clone()).await?;
        self.remember(&compiled.schema.capability, Some(compiled.clone()));
        Ok(compiled)
    }

    /// Deletes a schema; `false` when there was none.
    pub async fn delete(&self, store: &Store, capability: &str) -> Result<bool, ApiError> {
        let deleted = store.schema_delete(capability).await?;
        self.remember(capability, None);
        Ok(deleted)
    }

    fn remember(&self, capability: &str, compiled: Option<Arc<Compiled>>) {
        let mut c = self.lock();
        c.generation += 1;
        c.entries.insert(
            capability.to_owned(),
            Entry {
                fetched: Instant::now(),
                compiled,
            },
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        // The cache holds no invariant a panicking holder could break.
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

// === admin routes ===

/// `PUT /admin/capabilities/schema` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct PutSchema {
    capability: String,
    input_schema: Option<Value>,
    output_schema: Option<Value>,
}

/// `?capability=` of `GET` / `DELETE /admin/capabilities/schema`.
#[derive(Debug, Deserialize)]
pub(crate) struct CapabilityQuery {
    capability: Option<String>,
}

fn admin_only(p: &Principal) -> Result<(), ApiError> {
    if p.is_admin() {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "only the admin key may manage capability schemas".into(),
        ))
    }
}

fn capability(c: Option<String>) -> Result<String, ApiError> {
    match c {
        Some(c) if valid_capability_type(&c) => Ok(c),
        _ => Err(ApiError::InvalidRequest(
            "capability must be a namespaced type like owner/package".into(),
        )),
    }
}

fn queried(q: Result<Query<CapabilityQuery>, ApiError>) -> Result<String, ApiError> {
    let Query(q) = q?;
    capability(q.capability)
}

fn view(s: &CapabilitySchema) -> Json<Value> {
    Json(json!({
        "capability": s.capability,
        "inputSchema": s.input_schema,
        "outputSchema": s.output_schema,
        "updatedAt": iso(s.updated_at),
    }))
}

pub(crate) async fn put(
    State(s): State<NeuronState>,
    Bearer(p): Bearer,
    body: Result<JsonBody<PutSchema>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    admin_only(&p)?;
    let JsonBody(r) = body?;
    let capability = capability(Some(r.capability))?;
    let input_schema = r
        .input_schema
        .ok_or_else(|| ApiError::InvalidRequest("inputSchema is required".into()))?;
    let compiled = s
        .schemas
        .put(
            &s.store,
            CapabilitySchema {
                capability,
                input_schema,
                output_schema: r.output_schema,
                updated_at: Utc::now(),
            },
        )
        .await?;
    Ok(view(&compiled.schema))
}

pub(crate) async fn get(
    State(s): State<NeuronState>,
    Bearer(p): Bearer,
    q: Result<Query<CapabilityQuery>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    admin_only(&p)?;
    let capability = queried(q)?;
    // The store, not the cache: the operator sees what every replica will.
    match s.store.schema_get(&capability).await? {
        Some(schema) => Ok(view(&schema)),
        None => Err(ApiError::NotFound(format!(
            "no schema registered for {capability}"
        ))),
    }
}

pub(crate) async fn delete(
    State(s): State<NeuronState>,
    Bearer(p): Bearer,
    q: Result<Query<CapabilityQuery>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    admin_only(&p)?;
    let capability = queried(q)?;
    if !s.schemas.delete(&s.store, &capability).await? {
        return Err(ApiError::NotFound(format!(
            "no schema registered for {capability}"
        )));
    }
    Ok(Json(json!({"ok": true, "capability": capability})))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compiled(input: Value, output: Option<Value>) -> Result<Compiled, String> {
        Compiled::new(CapabilitySchema {
            capability: "acme/echo".into(),
            input_schema: input,
            output_schema: output,
            updated_at: Utc::now(),
        })
    }

    #[test]
    fn violations_name_their_paths() {
        let c = compiled(
            json!({"type": "object", "required": ["x"],
                   "properties": {"x": {"type": "integer"}, "tags": {"items": {"type": "string"}}}}),
            None,
        )
        .unwrap();
        c.check_input(&json!({"x": 1, "tags": ["a"]})).unwrap();
        let Err(ApiError::SchemaMismatch { message, errors }) =
            c.check_input(&json!({"x": "one", "tags": ["a", 2]}))
        else {
            panic!("expected a schema mismatch");
        };
        let mut paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        paths.sort_unstable();
        assert_eq!(paths, ["/tags/1", "/x"]);
        assert!(
            message.contains("acme/echo") && message.contains("(and 1 more)"),
            "{message}"
        );
        let Err(ApiError::SchemaMismatch { errors, .. }) = c.check_input(&json!({})) else {
            panic!("expected a schema mismatch");
        };
        assert_eq!(errors[0].path, "", "the root is the empty pointer");
    }

    #[test]
    fn bad_schemas_do_not_compile() {
        let e = compiled(json!({"type": "nope"}), None).unwrap_err();
        assert!(e.starts_with("inputSchema does not compile"), "{e}");
        let e = compiled(json!(true), Some(json!({"minimum": "x"}))).unwrap_err();
        assert!(e.starts_with("outputSchema does not compile"), "{e}");
        // No HTTP or file resolver is built in: remote references are refused,
        // never fetched.
        assert!(compiled(json!({"$ref": "https://example.com/s.json"}), None).is_err());
        assert!(compiled(json!({"$ref": "file:///etc/passwd"}), None).is_err());
    }

    #[tokio::test]
    async fn replicas_see_changes_after_their_ttl() {
        let dir = std::env::temp_dir().join(format!("agw-schemas-{}", agw_storage::new_token()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}", dir.join("s.db").display());
        let store = Store::connect(&url, &agw_storage::ConnectOptions::default())
            .await
            .unwrap();
        // `a` serves the admin route; `fresh` re-reads on every call; `slow`
        // trusts its cache for an hour.
        let a = SchemaRegistry::default();
        let fresh = SchemaRegistry::with_ttl(Duration::ZERO);
        let slow = SchemaRegistry::with_ttl(Duration::from_secs(3600));
        assert!(slow.get(&store, "acme/x").await.unwrap().is_none());
        let schema = |input: Value| CapabilitySchema {
            capability: "acme/x".into(),
            input_schema: input,
            output_schema: None,
            updated_at: Utc::now(),
        };
        a.put(&store, schema(json!({"type": "string"})))
            .await
            .unwrap();
        assert!(a.get(&store, "acme/x").await.unwrap().is_some(), "at once");
        let first = fresh.get(&store, "acme/x").await.unwrap().unwrap();
        assert!(
            slow.get(&store, "acme/x").await.unwrap().is_none(),
            "a cached \"none\" holds until the TTL"
        );
        // An unchanged row is not recompiled; a changed one is.
        let again = fresh.get(&store, "acme/x").await.unwrap().unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        a.put(&store, schema(json!({"type": "integer"})))
            .await
            .unwrap();
        let changed = fresh.get(&store, "acme/x").await.unwrap().unwrap();
        assert!(changed.check_input(&json!(3)).is_ok());
        assert!(a.delete(&store, "acme/x").await.unwrap());
        assert!(fresh.get(&store, "acme/x").await.unwrap().is_none());
        assert!(a.get(&store, "acme/x").await.unwrap().is_none());
        store.close().await;
        std::fs::remove_dir_all(&dir).ok();
    }
}
