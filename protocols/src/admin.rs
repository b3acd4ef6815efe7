//! The credential admin API (admin key only): list and revoke tenant API keys
//! and OAuth clients. A revocation made here is refused on this replica at
//! once and on every other within the key cache's recheck period (1 s).

use agw_storage::AuthStore;
use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{FromRef, Path, State};
use axum::routing::{delete, get};
use axum::{Json, Router};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use agw_storage::Store;

use crate::http::auth::{Authenticator, Bearer, Principal};
use crate::http::body::{path_segment, printable};
use crate::http::{ApiError, Query};

/// What the admin routes need.
#[derive(Debug, Clone)]
pub struct AdminState {
    /// The job store.
    pub store: Store,
    /// Authentication (and its key cache, dropped on revocation).
    pub auth: Arc<Authenticator>,
}

impl FromRef<AdminState> for Arc<Authenticator> {
    fn from_ref(s: &AdminState) -> Self {
        s.auth.clone()
    }
}

/// `GET /admin/keys`, `DELETE /admin/keys/{key_id}`, `GET /admin/oauth-clients`,
/// `DELETE /admin/oauth-clients/{client_id}`.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/admin/keys", get(keys_list))
        .route("/admin/keys/{key_id}", delete(key_revoke))
        .route("/admin/oauth-clients", get(clients_list))
        .route("/admin/oauth-clients/{client_id}", delete(client_revoke))
        .with_state(state)
}

fn admin_only(p: &Principal) -> Result<(), ApiError> {
    if p.is_admin() {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "only the admin key may manage credentials".into(),
        ))
    }
}

fn iso(t: Option<DateTime<Utc>>) -> Value {
    t.map_or(Value::Null, |t| {
        t.to_rfc3339_opts(SecondsFormat::Millis, true).into()
    })
}

/// `?owner=` / `?tenant=` filter.
#[derive(Debug, Deserialize)]
struct Filter {
    owner: Option<String>,
    tenant: Option<String>,
}

impl Filter {
    /// The admin's list filter, or the 400 / 403 to answer instead; `used`
    /// names the one field the route filters by (the other is ignored).
    fn of(
        p: &Principal,
        query: Result<Query<Self>, ApiError>,
        used: &str,
    ) -> Result<Self, ApiError> {
        admin_only(p)?;
        let Query(f) = query?;
        let value = if used == "owner" { &f.owner } else { &f.tenant };
        if let Some(v) = value {
            printable(used, v)?;
        }
        Ok(f)
    }
}

async fn keys_list(
    State(s): State<AdminState>,
    Bearer(p): Bearer,
    query: Result<Query<Filter>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    let f = Filter::of(&p, query, "owner")?;
    let keys = s.store.api_keys_list(f.owner.as_deref()).await?;
    let keys: Vec<Value> = keys
        .into_iter()
        .map(|k| {
            json!({
                "key_id": k.id,
                "owner": k.owner,
                "role": k.role.as_str(),
                "created_at": iso(Some(k.created_at)),
                "last_used_at": iso(k.last_used_at),
                "revoked_at": iso(k.revoked_at),
            })
        })
        .collect();
    Ok(Json(json!({ "keys": keys })))
}

async fn key_revoke(
    State(s): State<AdminState>,
    Bearer(p): Bearer,
    key_id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    admin_only(&p)?;
    let key_id = path_segment(key_id, "key id")?;
    if !s.store.api_key_revoke(&key_id, None).await? {
        return Err(ApiError::NotFound(format!("no API key with id {key_id:?}")));
    }
    s.auth.forget_key(&key_id);
    tracing::info!(key_id = %key_id, "API key revoked");
    Ok(Json(json!({"ok": true, "key_id": key_id})))
}

async fn clients_list(
    State(s): State<AdminState>,
    Bearer(p): Bearer,
    query: Result<Query<Filter>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    let f = Filter::of(&p, query, "tenant")?;
    let clients = s.store.oauth_clients_list(f.tenant.as_deref()).await?;
    let clients: Vec<Value> = clients
        .into_iter()
        .map(|c| {
            json!({
                "client_id": c.client_id,
                "tenant": c.tenant,
                "name": c.name,
                "created_at": iso(Some(c.created_at)),
                "revoked_at": iso(c.revoked_at),
            })
        })
        .collect();
    Ok(Json(json!({ "clients": clients })))
}

async fn client_revoke(
    State(s): State<AdminState>,
    Bearer(p): Bearer,
    client_id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    admin_only(&p)?;
    let client_id = path_segment(client_id, "client id")?;
    if !s.store.oauth_client_revoke(&client_id, None).await? {
        return Err(ApiError::NotFound(format!(
            "no OAuth client with id {client_id:?}"
        )));
    }
    s.auth.forget_client(&client_id);
    tracing::info!(client_id = %client_id, "OAuth client revoked");
    Ok(Json(json!({"ok": true, "client_id": client_id})))
}
