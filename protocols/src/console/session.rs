//! Console sign-in: server-side sessions named by an `HttpOnly`,
//! `SameSite=Strict` cookie, each with its CSRF token; the [`Operator`]
//! extractor re-resolves the session's key on every request, so a revoked
//! key ends its sessions at once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};

use super::{ConsoleError, ConsoleState};
use crate::http::auth::Principal;

/// The session cookie's name.
pub(crate) const COOKIE: &str = "agw_console";
/// A session ends this long after sign-in.
const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// Sessions kept at most (the oldest go first beyond it).
const MAX_SESSIONS: usize = 10_000;

/// One signed-in browser.
#[derive(Debug, Clone)]
struct Session {
    /// SHA-256 hex of the key it signed in with (never the key).
    key_hash: String,
    /// Echoed by every form; compared in constant time.
    csrf: String,
    expires: Instant,
}

/// This replica's console sessions (a load balancer in front of several
/// replicas needs session affinity for `/console/`).
#[derive(Debug, Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// Opens a session for the key with this hash; returns (session id, CSRF token).
    pub(crate) fn open(&self, key_hash: String) -> (String, String) {
        let id = format!("{}{}", agw_storage::new_token(), agw_storage::new_token());
        let csrf = agw_storage::new_token();
        let now = Instant::now();
        if let Ok(mut m) = self.map.lock() {
            m.retain(|_, s| s.expires > now);
            if m.len() >= MAX_SESSIONS
                && let Some(oldest) = m
                    .iter()
                    .min_by_key(|(_, s)| s.expires)
                    .map(|(k, _)| k.clone())
            {
                m.remove(&oldest);
            }
            m.insert(
                id.clone(),
                Session {
                    key_hash,
                    csrf: csrf.clone(),
                    expires: now + SESSION_TTL,
                },
            );
        }
        (id, csrf)
    }

    fn get(&self, id: &str) -> Option<Session> {
        let mut m = self.map.lock().ok()?;
        match m.get(id) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                m.remove(id);
                None
            }
            None => None,
        }
    }

    /// Ends a session.
    pub(crate) fn close(&self, id: &str) {
        if let Ok(mut m) = self.map.lock() {
            m.remove(id);
        }
    }
}

/// The session id the request's cookie names, if any.
pub(crate) fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

/// The `Set-Cookie` value of a new session (`Secure` when the request came
/// over HTTPS through a proxy that says so).
pub(crate) fn set_cookie(id: &str, headers: &HeaderMap) -> String {
    let secure = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"));
    format!(
        "{COOKIE}={id}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={}{}",
        SESSION_TTL.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that ends the session in the browser.
pub(crate) fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// A signed-in operator: the admin, or one tenant.
#[derive(Debug, Clone)]
pub struct Operator {
    /// Who the session's key resolves to now.
    pub principal: Principal,
    /// The session's CSRF token (every form carries it).
    pub csrf: String,
    /// The session id.
    pub(crate) session: String,
}

impl Operator {
    /// Refuses a form whose CSRF token is not the session's, or whose
    /// `Origin` (when the browser sends one) is not this host.
    pub(crate) fn check_form(&self, headers: &HeaderMap, csrf: &str) -> Result<(), ConsoleError> {
        use subtle::ConstantTimeEq;
        if !same_origin(headers) {
            return Err(ConsoleError::Forbidden("cross-origin form refused".into()));
        }
        if csrf.len() != self.csrf.len() || !bool::from(csrf.as_bytes().ct_eq(self.csrf.as_bytes()))
        {
            return Err(ConsoleError::Forbidden(
                "the form's CSRF token is not this session's (reload the page and try again)"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Who the operator is, for display and event records.
    pub(crate) fn name(&self) -> String {
        if self.principal.is_admin() {
            "admin".into()
        } else {
            format!("tenant {}", self.principal.tenant)
        }
    }
}

/// Whether the request's `Origin`, when present, names the `Host` it was sent to.
pub(crate) fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    origin
        .split_once("://")
        .is_some_and(|(_, rest)| !host.is_empty() && rest == host)
}

impl FromRequestParts<ConsoleState> for Operator {
    type Rejection = ConsoleError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ConsoleState,
    ) -> Result<Self, Self::Rejection> {
        let id = session_id(&parts.headers).ok_or(ConsoleError::SignIn)?;
        let session = state.sessions.get(&id).ok_or(ConsoleError::SignIn)?;
        match state.auth.resolve_key_hash(session.key_hash.clone()).await {
            Ok(Some(principal)) => Ok(Self {
                principal,
                csrf: session.csrf,
                session: id,
            }),
            Ok(None) | Err(crate::http::ApiError::Unauthorized(_)) => {
                // Revoked or deleted since sign-in: the session is over.
                state.sessions.close(&id);
                Err(ConsoleError::SignIn)
            }
            Err(other) => Err(ConsoleError::Api(other)),
        }
    }
}

/// Whether `op`'s session is still open and its key still resolves to the
/// same principal (a live stream checks before each update). A store hiccup
/// does not end it.
pub(crate) async fn still_signed_in(state: &ConsoleState, op: &Operator) -> bool {
    let Some(session) = state.sessions.get(&op.session) else {
        return false;
    };
    match state.auth.resolve_key_hash(session.key_hash).await {
        Ok(Some(p)) => p == op.principal,
        Ok(None) | Err(crate::http::ApiError::Unauthorized(_)) => false,
        Err(_) => true,
    }
}
