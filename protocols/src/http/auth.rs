//! API-key authentication with the Intent Bus strict mode: HMAC-SHA256 request
//! signatures over `METHOD\nCANONICAL_PATH\nTIMESTAMP\nNONCE\nBODY`, a ±window
//! on the timestamp, per-key nonce replay records in the store, per-tenant
//! rate limits, and a per-address limit on failed authentications. Runs as a
//! middleware because the signature covers the body.

use agw_storage::AuthStore;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration as StdDuration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use chrono::{Duration, Utc};
use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use sha2::Sha256;

use agw_storage::{ApiKey, NonceParams, Role, Scope, Store, sha256_hex};

use super::error::ApiError;

/// The tenant name the admin key acts as (not a valid owner name, so no tenant can take it).
pub const ADMIN_TENANT: &str = "__admin__";

/// Prefix of the OAuth client ids the device flow mints (and so of the `sub`
/// of the tokens it issues); such tokens stop working when the client is revoked.
pub const OAUTH_CLIENT_PREFIX: &str = "cid_";

/// Who is calling, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Stable id of the API key (not secret).
    pub key_id: String,
    /// The tenant.
    pub tenant: String,
    /// What it may do.
    pub role: Role,
}

impl Principal {
    /// The jobs this caller may read.
    pub fn scope(&self) -> Scope {
        match self.role {
            Role::Admin => Scope::All,
            Role::Tenant => Scope::Tenant(self.tenant.clone()),
        }
    }

    /// Whether this is the admin key.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

/// Authentication settings.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// SHA-256 hex of the admin key.
    pub admin_key_hash: String,
    /// Accepted clock skew, seconds (±).
    pub window_secs: i64,
    /// Requests per minute per tenant; 0 = unlimited.
    pub rate_per_minute: u32,
    /// Failed authentications (and `/api/v1/auth/*` requests) per minute per
    /// client address; 0 = unlimited.
    pub preauth_per_minute: u32,
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// HS256 secret of bearer JWTs.
    pub jwt_secret: Vec<u8>,
    /// Required `aud` of bearer JWTs.
    pub jwt_audience: String,
    /// Public keys of RS256 / EdDSA bearer JWTs (`[jwt]`).
    pub jwt_keys: Vec<agw_config::JwtKey>,
    /// Required `iss` of bearer JWTs (and the `iss` of minted ones).
    pub jwt_issuer: Option<String>,
    /// Longest lifetime of minted and accepted JWTs, seconds (`None`: unbounded).
    pub jwt_max_ttl_secs: Option<i64>,
    /// Clock skew allowed on `exp` / `nbf`, seconds.
    pub jwt_leeway_secs: i64,
}

/// How long a key read from the store is trusted before it is read again: a
/// key revoked on any replica is refused everywhere within this.
const KEY_RECHECK: StdDuration = StdDuration::from_secs(1);
/// How long an unknown key (or OAuth client) is remembered as a miss, so a
/// stream of made-up keys costs one store read per key per this period.
const MISS_TTL: StdDuration = StdDuration::from_secs(2);
/// A key's `last_used_at` is written at most this often (per replica).
const TOUCH_EVERY: chrono::Duration = chrono::Duration::seconds(60);
/// Entries beyond which stale cache entries are swept.
const CACHE_SWEEP_AT: usize = 100_000;

/// A store lookup remembered for a while: `None` is a remembered miss. Read
/// times are tokio's clock, so tests can advance it.
#[derive(Debug, Clone)]
struct Cached<T> {
    value: Option<T>,
    read_at: tokio::time::Instant,
}

impl<T> Cached<T> {
    fn fresh(&self, now: tokio::time::Instant) -> bool {
        let ttl = if self.value.is_some() {
            KEY_RECHECK
        } else {
            MISS_TTL
        };
        now.duration_since(self.read_at) < ttl
    }
}

/// Remembers lookups by key for [`KEY_RECHECK`] / [`MISS_TTL`], in bounded memory.
#[derive(Debug)]
struct LookupCache<T>(RwLock<HashMap<String, Cached<T>>>);

impl<T: Clone> LookupCache<T> {
    /// The remembered lookup of `key`, if still fresh.
    fn get(&self, key: &str, now: tokio::time::Instant) -> Option<Cached<T>> {
        let map = self.0.read().ok()?;
        map.get(key).filter(|c| c.fresh(now)).cloned()
    }

    fn put(&self, key: String, value: Option<T>, now: tokio::time::Instant) {
        if let Ok(mut map) = self.0.write() {
            if map.len() >= CACHE_SWEEP_AT {
                map.retain(|_, c| c.fresh(now));
                if map.len() >= CACHE_SWEEP_AT {
                    map.clear();
                }
            }
            map.insert(
                key,
                Cached {
                    value,
                    read_at: now,
                },
            );
        }
    }

    fn remove(&self, key: &str) {
        if let Ok(mut map) = self.0.write() {
            map.remove(key);
        }
    }

    fn forget(&self, keep: impl Fn(&T) -> bool) {
        if let Ok(mut map) = self.0.write() {
            map.retain(|_, c| c.value.as_ref().is_none_or(&keep));
        }
    }
}

impl<T> Default for LookupCache<T> {
    fn default() -> Self {
        Self(RwLock::default())
    }
}

/// Resolves API keys (re-read from the store at most every [`KEY_RECHECK`], so
/// revocations reach every replica) and checks signatures and limits.
#[derive(Debug)]
pub struct Authenticator {
    store: Store,
    settings: AuthSettings,
    keys: LookupCache<ApiKey>,
    /// OAuth client id → revoked, for tokens the OAuth endpoint minted.
    clients: LookupCache<bool>,
    /// Per tenant.
    limiter: RateLimiter,
    /// Per client address: failed authentications and enrollment requests.
    preauth: RateLimiter,
}

/// Who is asking, as far as the connection tells: the client address
/// (when the server recorded it) and the route, for the limits.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// The peer address of the connection.
    pub peer: Option<IpAddr>,
    /// The request path.
    pub path: &'a str,
}

impl<'a> Caller<'a> {
    /// The caller of a request with these parts.
    pub fn of(parts: &'a axum::http::request::Parts) -> Self {
        Self {
            peer: peer_of(&parts.extensions),
            path: parts.uri.path(),
        }
    }
}

/// The client address the server recorded for this request, if any.
pub fn peer_of(ext: &axum::http::Extensions) -> Option<IpAddr> {
    ext.get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// Lease settlements (Intent Bus fulfill / fail / extend, neuron ack / nack /
/// heartbeat / progress): refusing one wastes the work already done, so the
/// tenant rate limit never applies to them.
pub fn is_settlement(path: &str) -> bool {
    matches!(
        path,
        "/neuron/ack" | "/neuron/nack" | "/neuron/heartbeat" | "/neuron/progress"
    ) || ["/fulfill/", "/fail/", "/extend_claim/"]
        .iter()
        .any(|p| path.starts_with(p))
}

impl Authenticator {
    /// A new authenticator over `store`.
    pub fn new(store: Store, settings: AuthSettings) -> Self {
        let limiter = RateLimiter::new(settings.rate_per_minute);
        let preauth = RateLimiter::new(settings.preauth_per_minute);
        Self {
            store,
            settings,
            keys: LookupCache::default(),
            clients: LookupCache::default(),
            limiter,
            preauth,
        }
    }

    /// Finds the principal of a raw API key: `None` for an unknown key, an
    /// `Unauthorized` error for a revoked one.
    pub async fn resolve_key(&self, raw: &str) -> Result<Option<Principal>, ApiError> {
        self.resolve_key_hash(sha256_hex(raw.as_bytes())).await
    }

    /// [`Self::resolve_key`] by the SHA-256 hex of the key (the console's
    /// sessions keep the hash, never the key, and re-resolve it per request
    /// so a revocation ends them).
    pub async fn resolve_key_hash(&self, hash: String) -> Result<Option<Principal>, ApiError> {
        if constant_time_eq(hash.as_bytes(), self.settings.admin_key_hash.as_bytes()) {
            return Ok(Some(Principal {
                key_id: "admin".into(),
                tenant: ADMIN_TENANT.into(),
                role: Role::Admin,
            }));
        }
        let now = tokio::time::Instant::now();
        let key = match self.keys.get(&hash, now) {
            Some(cached) => cached.value,
            None => {
                let found = self.store.api_key_get_by_hash(&hash).await?;
                self.keys.put(hash, found.clone(), now);
                if let Some(k) = &found {
                    self.touch(k);
                }
                found
            }
        };
        match key {
            Some(k) if k.revoked_at.is_some() => {
                Err(ApiError::Unauthorized("API key revoked".into()))
            }
            Some(k) => Ok(Some(Principal {
                key_id: k.id,
                tenant: k.owner,
                role: k.role,
            })),
            None => Ok(None),
        }
    }

    /// Records the key's use, at most every [`TOUCH_EVERY`], off the request path.
    fn touch(&self, k: &ApiKey) {
        let now = Utc::now();
        if k.revoked_at.is_some() || k.last_used_at.is_some_and(|t| now - t < TOUCH_EVERY) {
            return;
        }
        let (store, id) = (self.store.clone(), k.id.clone());
        tokio::spawn(async move {
            if let Err(e) = store.api_key_touch(&id, now).await {
                tracing::debug!(error = %e, key_id = %id, "cannot record key use");
            }
        });
    }

    /// Drops this replica's cached copy of key `key_id` (after revoking it here;
    /// other replicas re-read it within [`KEY_RECHECK`]).
    pub fn forget_key(&self, key_id: &str) {
        self.keys.forget(|k| k.id != key_id);
    }

    /// Drops this replica's cached state of OAuth client `client_id`.
    pub fn forget_client(&self, client_id: &str) {
        self.clients.remove(client_id);
    }

    /// Refuses an address that has used up its failed-authentication budget,
    /// before any store work is done for it.
    pub fn preauth_gate(&self, peer: Option<IpAddr>) -> Result<(), ApiError> {
        match peer {
            Some(ip) if !self.preauth.has_token(&ip.to_string()) => Err(ApiError::RateLimited {
                retry_after: self.preauth.refill_secs(),
            }),
            _ => Ok(()),
        }
    }

    /// Counts one unauthenticated request (a failed authentication or an
    /// enrollment call) against its address.
    pub fn preauth_take(&self, peer: Option<IpAddr>) -> Result<(), ApiError> {
        match peer {
            Some(ip) => self.preauth.check(&ip.to_string()),
            None => Ok(()),
        }
    }

    /// Turns an authentication failure into the error the caller sees: the
    /// failure itself, or `429` once its address is out of budget.
    fn failed(&self, peer: Option<IpAddr>, e: ApiError) -> ApiError {
        match self.preauth_take(peer) {
            Ok(()) => e,
            Err(limited) => limited,
        }
    }

    /// The tenant rate limit, which neither the admin nor settlements meet.
    fn limit(&self, principal: &Principal, path: &str) -> Result<(), ApiError> {
        if principal.is_admin() || is_settlement(path) {
            return Ok(());
        }
        self.limiter.check(&principal.tenant)
    }

    /// Authenticates one request: key, rate limit, then (when signature headers
    /// are present) timestamp window, HMAC and nonce.
    pub async fn authenticate(
        &self,
        caller: Caller<'_>,
        method: &str,
        raw_query: Option<&str>,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Principal, ApiError> {
        self.preauth_gate(caller.peer)?;
        self.check_signed(caller, method, raw_query, headers, body)
            .await
            .map_err(|e| match e {
                e @ (ApiError::Unauthorized(_) | ApiError::InvalidSignature(_)) => {
                    self.failed(caller.peer, e)
                }
                other => other,
            })
    }

    async fn check_signed(
        &self,
        caller: Caller<'_>,
        method: &str,
        raw_query: Option<&str>,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Principal, ApiError> {
        let raw_path = caller.path;
        let key = header_str(headers, "x-api-key")
            .filter(|k| !k.is_empty())
            .ok_or_else(|| ApiError::Unauthorized("missing X-API-KEY header".into()))?;
        let principal = self
            .resolve_key(key)
            .await?
            .ok_or_else(|| ApiError::Unauthorized("unknown API key".into()))?;
        self.limit(&principal, raw_path)?;
        let (ts, nonce, sig) = (
            header_str(headers, "x-timestamp"),
            header_str(headers, "x-nonce"),
            header_str(headers, "x-signature"),
        );
        if ts.is_none() && nonce.is_none() && sig.is_none() {
            // Standard mode: the key alone.
            return Ok(principal);
        }
        let (Some(ts), Some(nonce), Some(sig)) = (ts, nonce, sig) else {
            return Err(ApiError::InvalidSignature(
                "strict mode needs X-Timestamp, X-Nonce and X-Signature together".into(),
            ));
        };
        let sent: i64 = ts.parse().map_err(|_| {
            ApiError::InvalidSignature("X-Timestamp must be integer Unix seconds".into())
        })?;
        // In i128: `now - sent` overflows an i64 for a timestamp near i64::MIN.
        let skew = i128::from(Utc::now().timestamp()) - i128::from(sent);
        if skew.abs() > i128::from(self.settings.window_secs) {
            return Err(ApiError::InvalidSignature(format!(
                "X-Timestamp is {skew}s from server time (window ±{}s)",
                self.settings.window_secs
            )));
        }
        if nonce.is_empty() || nonce.len() > 128 {
            return Err(ApiError::InvalidSignature(
                "X-Nonce must be 1..=128 characters".into(),
            ));
        }
        let query = raw_query.map(canonical_query);
        // Clients sign the path as they built it; an HTTP library may then
        // percent-encode it on the wire. Accept either spelling.
        let decoded = percent_decode_str(raw_path).decode_utf8_lossy();
        let ok = [raw_path, decoded.as_ref()].iter().any(|p| {
            let path = match &query {
                Some(q) if !q.is_empty() => format!("{p}?{q}"),
                _ => (*p).to_owned(),
            };
            verify_signature(key, method, &path, ts, nonce, body, sig)
        });
        if !ok {
            return Err(ApiError::InvalidSignature(
                "signature does not match the request".into(),
            ));
        }
        let fresh = self
            .store
            .nonce_record(NonceParams {
                key_id: principal.key_id.clone(),
                nonce: nonce.to_owned(),
                expires_at: Utc::now() + Duration::seconds(2 * self.settings.window_secs),
            })
            .await?;
        if !fresh {
            return Err(ApiError::InvalidSignature(
                "nonce already used (replayed request)".into(),
            ));
        }
        Ok(principal)
    }
}

impl Authenticator {
    /// Authenticates `Authorization: Bearer <JWT | API key>` or `X-API-KEY`
    /// (no signatures: bearer callers are the neuron and governance SDKs).
    /// A JWT names its tenant; it sees what that tenant's API keys see.
    pub async fn authenticate_bearer(
        &self,
        caller: Caller<'_>,
        headers: &HeaderMap,
    ) -> Result<Principal, ApiError> {
        self.preauth_gate(caller.peer)?;
        let principal = self.check_bearer(headers).await.map_err(|e| match e {
            e @ ApiError::Unauthorized(_) => self.failed(caller.peer, e),
            other => other,
        })?;
        self.limit(&principal, caller.path)?;
        Ok(principal)
    }

    /// Whether the OAuth client a token was minted for is revoked (re-read
    /// at most every [`KEY_RECHECK`]).
    async fn client_revoked(&self, client_id: &str) -> Result<bool, ApiError> {
        let now = tokio::time::Instant::now();
        if let Some(known) = self.clients.get(client_id, now) {
            return Ok(known.value.unwrap_or(true));
        }
        let found = self.store.oauth_client_get(client_id).await?;
        let revoked = found.as_ref().map(|c| c.revoked_at.is_some());
        self.clients.put(client_id.to_owned(), revoked, now);
        // A client that no longer exists is as good as revoked.
        Ok(revoked.unwrap_or(true))
    }

    async fn check_bearer(&self, headers: &HeaderMap) -> Result<Principal, ApiError> {
        let bearer = header_str(headers, "authorization").and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
                .map(str::trim)
        });
        let principal = match (bearer, header_str(headers, "x-api-key")) {
            (Some(token), _) if token.matches('.').count() == 2 => {
                let rules = super::jwt::Validation {
                    audience: &self.settings.jwt_audience,
                    issuer: self.settings.jwt_issuer.as_deref(),
                    max_ttl_secs: self.settings.jwt_max_ttl_secs,
                    leeway_secs: self.settings.jwt_leeway_secs,
                };
                let claims = super::jwt::decode_validated(
                    &self.settings.jwt_secret,
                    &self.settings.jwt_keys,
                    token,
                    &rules,
                    Utc::now().timestamp(),
                )
                .map_err(|e| ApiError::Unauthorized(e.to_string()))?;
                // A foreign issuer's tenant must be a name an API key owner could
                // have (never empty, never the admin's reserved name).
                crate::intent_bus::wire::owner_name(&claims.tenant).map_err(|_| {
                    ApiError::Unauthorized("token tenant claim is not a valid tenant name".into())
                })?;
                if claims.sub.starts_with(OAUTH_CLIENT_PREFIX)
                    && self.client_revoked(&claims.sub).await?
                {
                    return Err(ApiError::Unauthorized("OAuth client revoked".into()));
                }
                Principal {
                    key_id: format!("jwt:{}", claims.sub),
                    tenant: claims.tenant,
                    role: Role::Tenant,
                }
            }
            (Some(key), _) | (None, Some(key)) if !key.is_empty() => {
                self.resolve_key(key)
                    .await?
                    .ok_or_else(|| ApiError::Unauthorized("unknown API key or token".into()))?
            }
            _ => {
                return Err(ApiError::Unauthorized(
                    "missing Authorization: Bearer token".into(),
                ));
            }
        };
        Ok(principal)
    }

    /// Issues a token for `sub` acting as `tenant`, valid `ttl_secs`.
    pub fn mint(&self, sub: &str, tenant: &str, ttl_secs: i64) -> String {
        mint_token(
            &self.settings.jwt_secret,
            &Minted {
                audience: &self.settings.jwt_audience,
                issuer: self.settings.jwt_issuer.as_deref(),
            },
            sub,
            tenant,
            self.settings
                .jwt_max_ttl_secs
                .map_or(ttl_secs, |max| ttl_secs.min(max)),
        )
    }
}

/// The fixed claims of the tokens this gateway mints.
#[derive(Debug, Clone, Copy)]
pub struct Minted<'a> {
    /// `aud`.
    pub audience: &'a str,
    /// `iss`, when configured.
    pub issuer: Option<&'a str>,
}

/// Issues an HS256 token (shared by the gateway and `agent-gateway token mint`).
pub fn mint_token(
    secret: &[u8],
    minted: &Minted<'_>,
    sub: &str,
    tenant: &str,
    ttl_secs: i64,
) -> String {
    let now = Utc::now().timestamp();
    super::jwt::encode(
        secret,
        &super::jwt::Claims {
            sub: sub.to_owned(),
            tenant: tenant.to_owned(),
            aud: super::jwt::Audience::One(minted.audience.to_owned()),
            iat: now,
            exp: now + ttl_secs,
            iss: minted.issuer.map(str::to_owned),
        },
    )
}

/// Extractor: the caller of a bearer-authenticated route.
#[derive(Debug, Clone)]
pub struct Bearer(pub Principal);

impl<S> axum::extract::FromRequestParts<S> for Bearer
where
    S: Send + Sync,
    Arc<Authenticator>: axum::extract::FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        let auth = <Arc<Authenticator> as axum::extract::FromRef<S>>::from_ref(state);
        auth.authenticate_bearer(Caller::of(parts), &parts.headers)
            .await
            .map(Bearer)
    }
}

/// Middleware: buffers the body (bounded), authenticates, and hands the
/// [`Principal`] to handlers as a request extension.
pub async fn require_api_key(
    State(auth): State<Arc<Authenticator>>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let (mut parts, body) = req.into_parts();
    let limit = auth.settings.max_body_bytes;
    let bytes: Bytes = axum::body::to_bytes(body, limit).await.map_err(|e| {
        if std::error::Error::source(&e)
            .is_some_and(<dyn std::error::Error>::is::<http_body_util::LengthLimitError>)
        {
            ApiError::PayloadTooLarge(format!("request body over {limit} bytes"))
        } else {
            ApiError::InvalidRequest(format!("cannot read request body: {e}"))
        }
    })?;
    let principal = auth
        .authenticate(
            Caller::of(&parts),
            parts.method.as_str(),
            parts.uri.query(),
            &parts.headers,
            &bytes,
        )
        .await?;
    parts.extensions.insert(principal);
    Ok(next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await)
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Characters Python's `quote(v, safe='')` leaves literal: `A-Za-z0-9_.-~`.
const QUOTE_SAFE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'_')
    .remove(b'.')
    .remove(b'-')
    .remove(b'~');

/// Canonical query: each key and value percent-decoded then re-encoded with
/// only unreserved characters literal, sorted by key (stable), `&`-joined.
pub fn canonical_query(raw: &str) -> String {
    let mut pairs: Vec<(String, String)> = raw
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let enc = |s: &str| {
                utf8_percent_encode(&percent_decode_str(s).decode_utf8_lossy(), QUOTE_SAFE)
                    .to_string()
            };
            (enc(k), enc(v))
        })
        .collect();
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Lowercase hex HMAC-SHA256 keyed with the API key.
pub fn sign(key: &str, method: &str, path: &str, ts: &str, nonce: &str, body: &[u8]) -> String {
    hex::encode(
        mac(key, method, path, ts, nonce, body)
            .finalize()
            .into_bytes(),
    )
}

fn mac(key: &str, method: &str, path: &str, ts: &str, nonce: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key.as_bytes()).unwrap_or_else(|_| {
        // HMAC accepts keys of any length; this arm is unreachable.
        <Hmac<Sha256> as Mac>::new_from_slice(b"").unwrap_or_else(|_| unreachable!())
    });
    for (i, part) in [
        method.to_ascii_uppercase().as_bytes(),
        path.as_bytes(),
        ts.as_bytes(),
        nonce.as_bytes(),
        body,
    ]
    .iter()
    .enumerate()
    {
        if i > 0 {
            m.update(b"\n");
        }
        m.update(part);
    }
    m
}

/// Constant-time check of a hex signature.
fn verify_signature(
    key: &str,
    method: &str,
    path: &str,
    ts: &str,
    nonce: &str,
    body: &[u8],
    sig: &str,
) -> bool {
    match hex::decode(sig.trim()) {
        Ok(raw) => mac(key, method, path, ts, nonce, body)
            .verify_slice(&raw)
            .is_ok(),
        Err(_) => false,
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Per-key token buckets: `rate` requests per minute, bursts up to `rate`.
#[derive(Debug)]
pub struct RateLimiter {
    per_minute: u32,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// A limiter; 0 disables it.
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            buckets: Mutex::default(),
        }
    }

    /// Takes one token for `key`, or says how long to wait.
    pub fn check(&self, key: &str) -> Result<(), ApiError> {
        self.check_at(key, Instant::now())
    }

    /// Whether `key` has a token left, without taking it.
    pub fn has_token(&self, key: &str) -> bool {
        self.has_token_at(key, Instant::now())
    }

    fn has_token_at(&self, key: &str, now: Instant) -> bool {
        if self.per_minute == 0 {
            return true;
        }
        let per_sec = f64::from(self.per_minute) / 60.0;
        let Ok(buckets) = self.buckets.lock() else {
            return true;
        };
        buckets.get(key).is_none_or(|(tokens, at)| {
            tokens + now.duration_since(*at).as_secs_f64() * per_sec >= 1.0
        })
    }

    /// Seconds until an empty bucket holds a token again.
    pub fn refill_secs(&self) -> u64 {
        if self.per_minute == 0 {
            return 0;
        }
        (60.0 / f64::from(self.per_minute)).ceil().max(1.0) as u64
    }

    fn check_at(&self, key: &str, now: Instant) -> Result<(), ApiError> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let cap = f64::from(self.per_minute);
        let per_sec = cap / 60.0;
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        if buckets.len() > 100_000 {
            // Bound memory: full buckets carry no state worth keeping.
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * per_sec < cap
            });
        }
        let (tokens, at) = buckets.entry(key.to_owned()).or_insert((cap, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * per_sec).min(cap);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            let wait = ((1.0 - *tokens) / per_sec).ceil().max(1.0);
            Err(ApiError::RateLimited {
                retry_after: wait as u64,
            })
        }
    }
}

/// Creates a tenant API key for `owner`; returns the stored record and the
/// raw secret (shown once, never stored).
pub async fn create_api_key(store: &Store, owner: &str) -> Result<(ApiKey, String), ApiError> {
    let raw = format!(
        "agw_{}{}",
        agw_storage::new_token(),
        agw_storage::new_token()
    );
    let key = ApiKey {
        id: format!("key_{}", &agw_storage::new_token()[..16]),
        key_hash: sha256_hex(raw.as_bytes()),
        owner: owner.to_owned(),
        role: Role::Tenant,
        created_at: Utc::now(),
        revoked_at: None,
        last_used_at: None,
    };
    store.api_key_insert(key.clone()).await?;
    Ok((key, raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_query_matches_python_quote() {
        // Python: quote('acme/echo', safe='') == 'acme%2Fecho'; keys sorted.
        assert_eq!(
            canonical_query("namespace=default&goal=acme%2Fecho"),
            "goal=acme%2Fecho&namespace=default"
        );
        // A client that left '/' literal still canonicalizes the same way.
        assert_eq!(canonical_query("goal=acme/echo"), "goal=acme%2Fecho");
        // Unicode and reserved characters.
        assert_eq!(
            canonical_query("g=caf%C3%A9%20x%2B~"),
            "g=caf%C3%A9%20x%2B~"
        );
        assert_eq!(canonical_query(""), "");
    }

    #[test]
    fn signature_matches_the_sdk_bytes() {
        // Computed independently in Python:
        // hmac.new(b'k', b'POST\n/claim?goal=acme%2Fecho&namespace=default\n1700000000\nn1\n', sha256).hexdigest()
        let sig = sign(
            "k",
            "post",
            "/claim?goal=acme%2Fecho&namespace=default",
            "1700000000",
            "n1",
            b"",
        );
        assert_eq!(
            sig,
            "ac7afd4bafe328791d7288c7095aea8584f394c38852906d52ca0041b7409a50"
        );
        assert!(verify_signature(
            "k",
            "POST",
            "/claim?goal=acme%2Fecho&namespace=default",
            "1700000000",
            "n1",
            b"",
            &sig
        ));
        assert!(!verify_signature(
            "k",
            "POST",
            "/claim?goal=acme%2Fecho&namespace=other",
            "1700000000",
            "n1",
            b"",
            &sig
        ));
        assert!(!verify_signature(
            "k2",
            "POST",
            "/claim?goal=acme%2Fecho&namespace=default",
            "1700000000",
            "n1",
            b"",
            &sig
        ));
        assert!(!verify_signature(
            "k",
            "POST",
            "/claim",
            "1700000000",
            "n1",
            b"",
            "zz"
        ));
    }

    #[test]
    fn signature_covers_raw_utf8_body() {
        // Python: hmac.new(b'key1', 'POST\n/intent\n1700000000\nabc\n{"goal":"café"}'.encode(), sha256)
        let sig = sign(
            "key1",
            "POST",
            "/intent",
            "1700000000",
            "abc",
            "{\"goal\":\"café\"}".as_bytes(),
        );
        assert_eq!(
            sig,
            "6d21536546df778c18d186643060dfd79bd5683bcc89913182748bd73e024631"
        );
    }

    #[test]
    fn rate_limiter_refills() {
        let rl = RateLimiter::new(2);
        let t = Instant::now();
        assert!(rl.check_at("a", t).is_ok());
        assert!(rl.check_at("a", t).is_ok());
        match rl.check_at("a", t) {
            Err(ApiError::RateLimited { retry_after }) => assert_eq!(retry_after, 30),
            other => panic!("{other:?}"),
        }
        assert!(rl.check_at("b", t).is_ok(), "per key");
        assert!(
            rl.check_at("a", t + std::time::Duration::from_secs(30))
                .is_ok(),
            "refilled"
        );
        assert!(RateLimiter::new(0).check_at("a", t).is_ok(), "0 disables");
    }

    // Properties of the strict-mode signature (`verify_signature` is private,
    // so they live here; `canonical_query` is covered in `tests/props.rs`).

    use proptest::prelude::*;

    /// The signed fields other than key and method.
    #[derive(Debug, Clone)]
    struct Signed {
        path: String,
        ts: String,
        nonce: String,
        body: Vec<u8>,
    }

    fn signed() -> impl Strategy<Value = Signed> {
        (
            any::<String>(),
            prop_oneof!["-?[0-9]{1,19}", any::<String>()],
            any::<String>(),
            prop::collection::vec(any::<u8>(), 0..256),
        )
            .prop_map(|(path, ts, nonce, body)| Signed {
                path,
                ts,
                nonce,
                body,
            })
    }

    fn verifies(key: &str, method: &str, s: &Signed, sig: &str) -> bool {
        verify_signature(key, method, &s.path, &s.ts, &s.nonce, &s.body, sig)
    }

    /// `text` with its `at`-th character (mod length) replaced by another
    /// one, or a character appended when it is empty.
    fn change_char(text: &str, at: prop::sample::Index, to: char) -> String {
        let mut chars: Vec<char> = text.chars().collect();
        if chars.is_empty() {
            chars.push(to);
        } else {
            let i = at.index(chars.len());
            chars[i] = [to, 'x', 'y']
                .into_iter()
                .find(|&c| c != chars[i])
                .unwrap_or(to);
        }
        chars.into_iter().collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn what_sign_makes_verifies(
            key in any::<String>(),
            method in "[A-Za-z]{1,10}",
            s in signed(),
        ) {
            let sig = sign(&key, &method, &s.path, &s.ts, &s.nonce, &s.body);
            prop_assert_eq!(sig.len(), 64);
            prop_assert!(sig.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
            prop_assert!(verifies(&key, &method, &s, &sig));
            // The method is compared uppercased; hex in either case, and
            // whitespace around the header value, are accepted.
            prop_assert!(verifies(&key, &method.to_ascii_lowercase(), &s, &sig));
            prop_assert!(verifies(&key, &method.to_ascii_uppercase(), &s, &sig.to_ascii_uppercase()));
            let padded = format!(" {sig}\t");
            prop_assert!(verifies(&key, &method, &s, &padded));
        }

        #[test]
        fn any_changed_byte_breaks_the_signature(
            key in any::<String>(),
            method in "[A-Z]{1,10}",
            s in signed(),
            field in 0..5_usize,
            at in any::<prop::sample::Index>(),
            to in any::<char>(),
            flip in 1..=255_u8,
        ) {
            let sig = sign(&key, &method, &s.path, &s.ts, &s.nonce, &s.body);
            let mut t = s.clone();
            let key = match field {
                0 => {
                    t.path = change_char(&s.path, at, to);
                    key
                }
                1 => {
                    t.ts = change_char(&s.ts, at, to);
                    key
                }
                2 => {
                    t.nonce = change_char(&s.nonce, at, to);
                    key
                }
                3 => {
                    if t.body.is_empty() {
                        t.body.push(flip);
                    } else {
                        let i = at.index(t.body.len());
                        t.body[i] ^= flip;
                    }
                    key
                }
                // HMAC zero-pads short keys, so "" and "\0" are one key.
                _ => change_char(&key, at, if to == '\0' { 'k' } else { to }),
            };
            prop_assert!(!verifies(&key, &method, &t, &sig));
        }

        #[test]
        fn any_other_signature_is_refused(
            key in any::<String>(),
            s in signed(),
            sig in prop_oneof!["[0-9a-fA-F]{0,80}", any::<String>()],
        ) {
            let good = sign(&key, "POST", &s.path, &s.ts, &s.nonce, &s.body);
            prop_assume!(!sig.trim().eq_ignore_ascii_case(&good));
            prop_assert!(!verifies(&key, "POST", &s, &sig));
        }
    }
}
