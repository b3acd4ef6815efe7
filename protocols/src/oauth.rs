//! The OAuth control plane the neuron SDK 0.2.0 auth module expects: RFC 8414
//! discovery, the RFC 8628 device grant (an operator approves the user code
//! for a tenant) and the `client_credentials` grant, answering with RFC 6749
//! JSON — `{access_token, token_type, expires_in}` or `{error, error_description}`.
//! Tokens are the gateway's own HS256 JWTs for the approving tenant.

use agw_storage::AuthStore;
use std::sync::Arc;

use axum::extract::{Form, FromRef, FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{Duration, Utc};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use agw_storage::{
    DeviceCode, DeviceDecideParams, DevicePoll, DevicePollParams, OAuthClient, Store, StoreError,
    new_token, sha256_hex,
};

use crate::http::auth::{Authenticator, Bearer, OAUTH_CLIENT_PREFIX, peer_of};
use crate::http::body::printable;
use crate::http::{ApiError, JsonBody};
use crate::intent_bus::wire::owner_name;

/// The RFC 8628 device grant type.
pub const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// OAuth settings.
#[derive(Debug, Clone)]
pub struct OAuthSettings {
    /// Lifetime of a device code, seconds.
    pub device_ttl_secs: i64,
    /// Minimum polling interval, seconds.
    pub device_interval_secs: i64,
    /// Lifetime of issued access tokens, seconds.
    pub token_ttl_secs: i64,
}

/// Everything the OAuth handlers need.
#[derive(Debug, Clone)]
pub struct OAuthState {
    /// The store (clients, device codes).
    pub store: Store,
    /// Token minting and admin authentication.
    pub auth: Arc<Authenticator>,
    /// Settings.
    pub settings: Arc<OAuthSettings>,
}

impl FromRef<OAuthState> for Arc<Authenticator> {
    fn from_ref(s: &OAuthState) -> Self {
        s.auth.clone()
    }
}

/// The OAuth routes and the operator's device approval.
pub fn router(state: OAuthState) -> Router {
    // Enrollment and token requests come before any credential: each one
    // counts against its client address's pre-authentication budget.
    let unauthenticated = Router::new()
        .route("/api/v1/auth/device", post(device))
        .route("/api/v1/auth/token", post(token))
        .route_layer(axum::middleware::from_fn_with_state(
            state.auth.clone(),
            preauth_limit,
        ));
    Router::new()
        .route("/.well-known/oauth-authorization-server", get(discovery))
        .route("/admin/device/approve", post(approve))
        .merge(unauthenticated)
        .with_state(state)
}

/// Middleware: one pre-authentication token per request from the address.
async fn preauth_limit(
    State(auth): State<Arc<Authenticator>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match auth.preauth_take(peer_of(req.extensions())) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// An RFC 6749 §5.2 error.
#[derive(Debug)]
pub struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: String,
}

impl OAuthError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            error,
            description: description.into(),
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": self.error, "error_description": self.description})),
        )
            .into_response()
    }
}

impl From<StoreError> for OAuthError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "oauth store failure");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "try again",
        )
    }
}

/// A form body (`application/x-www-form-urlencoded`, as RFC 6749 and 8628
/// send them) read into `T`; a wrong content type or a form that does not fit
/// is `400 invalid_request` in the RFC 6749 shape, with axum's reason.
#[derive(Debug, Clone, Copy, Default)]
struct OAuthForm<T>(T);

impl<S, T> FromRequest<S> for OAuthForm<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = OAuthError;

    async fn from_request(req: Request, state: &S) -> Result<Self, OAuthError> {
        Form::<T>::from_request(req, state)
            .await
            .map(|Form(f)| Self(f))
            .map_err(|e| OAuthError::new(StatusCode::BAD_REQUEST, "invalid_request", e.body_text()))
    }
}

/// The base URL the caller used (`X-Forwarded-*` honoured), for the documents we serve.
fn base_url(headers: &HeaderMap) -> String {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let host = h("x-forwarded-host")
        .or_else(|| h("host"))
        .unwrap_or("localhost");
    let proto = h("x-forwarded-proto").unwrap_or("http");
    format!("{proto}://{host}")
}

async fn discovery(headers: HeaderMap) -> Json<Value> {
    let base = base_url(&headers);
    Json(json!({
        "issuer": base,
        "token_endpoint": format!("{base}/api/v1/auth/token"),
        "device_authorization_endpoint": format!("{base}/api/v1/auth/device"),
        "grant_types_supported": ["client_credentials", DEVICE_GRANT],
        "token_endpoint_auth_methods_supported": ["client_secret_post"],
        "response_types_supported": [],
    }))
}

#[derive(Debug, Deserialize)]
struct DeviceForm {
    client_name: Option<String>,
    hostname: Option<String>,
}

/// User codes: 8 letters from an alphabet without look-alikes, as `XXXX-XXXX`.
fn user_code() -> String {
    const ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";
    let raw: [u8; 8] = rand::random();
    let c: String = raw
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect();
    format!("{}-{}", &c[..4], &c[4..])
}

async fn device(
    State(s): State<OAuthState>,
    headers: HeaderMap,
    OAuthForm(f): OAuthForm<DeviceForm>,
) -> Result<Json<Value>, OAuthError> {
    let name = f
        .client_name
        .or(f.hostname)
        .map(|n| {
            n.chars()
                .filter(|c| !c.is_control())
                .take(128)
                .collect::<String>()
        })
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| "neuron".into());
    let device_code = format!("{}{}", new_token(), new_token());
    let user_code = user_code();
    let now = Utc::now();
    s.store
        .device_insert(DeviceCode {
            device_code_hash: sha256_hex(device_code.as_bytes()),
            user_code: user_code.clone(),
            client_name: name,
            expires_at: now + Duration::seconds(s.settings.device_ttl_secs),
            interval_ms: s.settings.device_interval_secs * 1000,
            created_at: now,
        })
        .await?;
    let base = base_url(&headers);
    Ok(Json(json!({
        "device_code": device_code,
        "user_code": user_code,
        "verification_uri": format!("{base}/device"),
        "verification_uri_complete": format!("{base}/device?user_code={user_code}"),
        "expires_in": s.settings.device_ttl_secs,
        "interval": s.settings.device_interval_secs,
    })))
}

#[derive(Debug, Deserialize)]
struct TokenForm {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    device_code: Option<String>,
}

async fn token(
    State(s): State<OAuthState>,
    OAuthForm(f): OAuthForm<TokenForm>,
) -> Result<Json<Value>, OAuthError> {
    let ttl = s.settings.token_ttl_secs;
    match f.grant_type.as_deref() {
        Some("client_credentials") => {
            let invalid = || {
                OAuthError::new(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    "unknown client or bad secret",
                )
            };
            let (Some(id), Some(secret)) = (f.client_id, f.client_secret) else {
                return Err(invalid());
            };
            // No stored id has one, and PostgreSQL refuses a NUL in the lookup.
            if id.chars().any(char::is_control) {
                return Err(invalid());
            }
            let client = s
                .store
                .oauth_client_get(&id)
                .await?
                .filter(|c| c.revoked_at.is_none())
                .ok_or_else(invalid)?;
            let given = sha256_hex(secret.as_bytes());
            if !bool::from(subtle::ConstantTimeEq::ct_eq(
                given.as_bytes(),
                client.secret_hash.as_bytes(),
            )) {
                return Err(invalid());
            }
            let access = s.auth.mint(&client.client_id, &client.tenant, ttl);
            Ok(Json(
                json!({"access_token": access, "token_type": "bearer", "expires_in": ttl}),
            ))
        }
        Some(DEVICE_GRANT) => {
            let code = f.device_code.ok_or_else(|| {
                OAuthError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "device_code is required",
                )
            })?;
            let secret = format!("{}{}", new_token(), new_token());
            let new_client = OAuthClient {
                client_id: format!("{OAUTH_CLIENT_PREFIX}{}", new_token()),
                secret_hash: sha256_hex(secret.as_bytes()),
                tenant: String::new(),
                name: String::new(),
                created_at: Utc::now(),
                revoked_at: None,
            };
            let pending = |e: &'static str, d: &str| OAuthError::new(StatusCode::BAD_REQUEST, e, d);
            match s
                .store
                .device_poll(DevicePollParams {
                    device_code_hash: sha256_hex(code.as_bytes()),
                    new_client,
                    now: None,
                })
                .await?
            {
                DevicePoll::Issued(client) => {
                    let access = s.auth.mint(&client.client_id, &client.tenant, ttl);
                    tracing::info!(client_id = %client.client_id, tenant = %client.tenant, "device enrolled");
                    Ok(Json(json!({
                        "access_token": access,
                        "token_type": "bearer",
                        "expires_in": ttl,
                        "client_id": client.client_id,
                        "client_secret": secret,
                    })))
                }
                DevicePoll::Pending => Err(pending(
                    "authorization_pending",
                    "waiting for operator approval",
                )),
                DevicePoll::SlowDown => {
                    Err(pending("slow_down", "polling faster than the interval"))
                }
                DevicePoll::Denied => {
                    Err(pending("access_denied", "the operator denied this device"))
                }
                DevicePoll::Expired => Err(pending("expired_token", "the device code expired")),
                DevicePoll::Unknown => Err(pending(
                    "invalid_grant",
                    "unknown or already used device code",
                )),
            }
        }
        Some(other) => Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            format!("grant_type {other:?} is not supported"),
        )),
        None => Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "grant_type is required",
        )),
    }
}

#[derive(Debug, Deserialize)]
struct ApproveRequest {
    user_code: String,
    owner: String,
    #[serde(default)]
    deny: bool,
}

/// Approves or denies a device code for a tenant (shared by the admin route and the CLI).
pub async fn decide(
    store: &Store,
    user_code: &str,
    owner: &str,
    deny: bool,
) -> Result<(), ApiError> {
    let tenant = owner_name(owner)?;
    printable("user_code", user_code)?;
    store
        .device_decide(DeviceDecideParams {
            user_code: user_code.trim().to_ascii_uppercase(),
            tenant: (!deny).then_some(tenant),
            now: None,
        })
        .await
        .map_err(|e| match e {
            StoreError::NotFound => {
                ApiError::NotFound(format!("no pending device code {user_code:?}"))
            }
            other => other.into(),
        })
}

async fn approve(
    State(s): State<OAuthState>,
    Bearer(p): Bearer,
    body: Result<JsonBody<ApproveRequest>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    if !p.is_admin() {
        return Err(ApiError::Forbidden(
            "only the admin key may approve devices".into(),
        ));
    }
    let JsonBody(r) = body?;
    decide(&s.store, &r.user_code, &r.owner, r.deny).await?;
    Ok(Json(
        json!({"ok": true, "user_code": r.user_code, "approved": !r.deny}),
    ))
}

#[cfg(test)]
mod tests {
    use super::user_code;

    #[test]
    fn user_codes_are_unambiguous() {
        for _ in 0..100 {
            let c = user_code();
            assert_eq!(c.len(), 9);
            assert_eq!(&c[4..5], "-");
            assert!(
                c.chars()
                    .all(|ch| ch == '-' || "BCDFGHJKLMNPQRSTVWXZ".contains(ch)),
                "{c}"
            );
        }
    }
}
