//! Auth and keys: API keys, OAuth clients, device codes, nonces ([`crate::AuthStore`]).

use super::*;

/// Parameters of [`crate::AuthStore::nonce_record`].
#[derive(Debug, Clone)]
pub struct NonceParams {
    /// The API key id the nonce belongs to.
    pub key_id: String,
    /// The nonce.
    pub nonce: String,
    /// Keep the record until then (≥ the signature window).
    pub expires_at: DateTime<Utc>,
}

/// The role an API key grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Full access: key creation, every tenant's jobs, no rate limit.
    Admin,
    /// One tenant's jobs, rate limited.
    Tenant,
}

impl Role {
    /// The name stored in the `role` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Tenant => "tenant",
        }
    }

    /// Parses a stored role; anything unknown is a tenant (fail closed).
    pub fn parse(s: &str) -> Self {
        if s == "admin" {
            Self::Admin
        } else {
            Self::Tenant
        }
    }
}

/// A stored API key (only its hash is kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// Stable id (not secret), used for nonces and lease holders.
    pub id: String,
    /// SHA-256 hex of the key.
    pub key_hash: String,
    /// The owner, which names the tenant.
    pub owner: String,
    /// What it may do.
    pub role: Role,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was revoked; a revoked key authenticates nothing.
    pub revoked_at: Option<DateTime<Utc>>,
    /// When it was last seen authenticating (to the minute, roughly).
    pub last_used_at: Option<DateTime<Utc>>,
}

/// An OAuth client (a neuron host's durable credential).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthClient {
    /// Public id.
    pub client_id: String,
    /// SHA-256 hex of the secret (the secret itself is shown once).
    pub secret_hash: String,
    /// The tenant its tokens act for.
    pub tenant: String,
    /// Human name given at enrollment.
    pub name: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was revoked; a revoked client gets no more tokens.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A pending RFC 8628 device authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCode {
    /// SHA-256 hex of the device code (the code itself is the poller's secret).
    pub device_code_hash: String,
    /// What the operator types to approve.
    pub user_code: String,
    /// Who asked.
    pub client_name: String,
    /// Void after this instant.
    pub expires_at: DateTime<Utc>,
    /// Minimum polling interval, milliseconds.
    pub interval_ms: i64,
    /// When it was requested.
    pub created_at: DateTime<Utc>,
}

/// Parameters of [`crate::AuthStore::device_decide`].
#[derive(Debug, Clone)]
pub struct DeviceDecideParams {
    /// The code the operator read.
    pub user_code: String,
    /// `Some(tenant)`: approve for that tenant; `None`: deny.
    pub tenant: Option<String>,
    /// The clock.
    pub now: Option<DateTime<Utc>>,
}

/// Parameters of [`crate::AuthStore::device_poll`].
#[derive(Debug, Clone)]
pub struct DevicePollParams {
    /// SHA-256 hex of the presented device code.
    pub device_code_hash: String,
    /// The client to create if the code was approved (its tenant is filled in
    /// from the approval).
    pub new_client: OAuthClient,
    /// The clock.
    pub now: Option<DateTime<Utc>>,
}

/// What polling a device code found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DevicePoll {
    /// No such code, or already redeemed.
    Unknown,
    /// Past its lifetime.
    Expired,
    /// Not yet decided.
    Pending,
    /// Polled faster than its interval.
    SlowDown,
    /// The operator denied it.
    Denied,
    /// Approved: this client now exists (redeemed, single use).
    Issued(OAuthClient),
}

/// What a device poll does, decided from the stored row (pure, shared by both drivers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PollStep {
    /// Answer without writing.
    Answer(DevicePoll),
    /// Record the poll time, then answer.
    Record(DevicePoll),
    /// Create the client for this tenant and mark the code redeemed.
    Redeem(String),
}

/// The stored state of a device code: (state, tenant, expires_at, interval_ms, last_poll_at).
pub(crate) type DeviceRow = (String, Option<String>, i64, i64, Option<i64>);

pub(crate) fn poll_step(row: Option<DeviceRow>, now_ms: i64) -> PollStep {
    let Some((state, tenant, expires_at, interval_ms, last_poll)) = row else {
        return PollStep::Answer(DevicePoll::Unknown);
    };
    if state == "redeemed" {
        return PollStep::Answer(DevicePoll::Unknown);
    }
    if expires_at <= now_ms {
        return PollStep::Answer(DevicePoll::Expired);
    }
    match (state.as_str(), tenant) {
        ("denied", _) => PollStep::Answer(DevicePoll::Denied),
        ("approved", Some(t)) => PollStep::Redeem(t),
        _ if last_poll.is_some_and(|at| now_ms - at < interval_ms) => {
            PollStep::Record(DevicePoll::SlowDown)
        }
        _ => PollStep::Record(DevicePoll::Pending),
    }
}

/// The state an operator's decision gives a pending device code: approved
/// for a tenant, denied without one (pure, shared by both drivers).
pub(crate) fn device_decision_state(tenant: Option<&str>) -> &'static str {
    if tenant.is_some() {
        "approved"
    } else {
        "denied"
    }
}

/// Why a device decision changed no row, from the code's stored
/// `(state, expires_at)` if it exists (pure, shared by both drivers).
pub(crate) fn device_decide_refusal(row: Option<(String, i64)>, now_ms: i64) -> crate::StoreError {
    match row {
        Some((state, expires_at)) if state != "pending" || expires_at <= now_ms => {
            crate::StoreError::Conflict(format!(
                "device code is {}",
                if expires_at <= now_ms {
                    "expired"
                } else {
                    &state
                }
            ))
        }
        _ => crate::StoreError::NotFound,
    }
}

#[cfg(test)]
mod poll_tests {
    use super::*;

    #[test]
    fn poll_steps() {
        let row = |state: &str, tenant: Option<&str>, last: Option<i64>| {
            Some((
                state.to_owned(),
                tenant.map(str::to_owned),
                10_000,
                1_000,
                last,
            ))
        };
        assert_eq!(poll_step(None, 0), PollStep::Answer(DevicePoll::Unknown));
        assert_eq!(
            poll_step(row("pending", None, None), 10_000),
            PollStep::Answer(DevicePoll::Expired)
        );
        assert_eq!(
            poll_step(row("pending", None, None), 5_000),
            PollStep::Record(DevicePoll::Pending)
        );
        assert_eq!(
            poll_step(row("pending", None, Some(4_500)), 5_000),
            PollStep::Record(DevicePoll::SlowDown)
        );
        assert_eq!(
            poll_step(row("pending", None, Some(4_000)), 5_000),
            PollStep::Record(DevicePoll::Pending)
        );
        assert_eq!(
            poll_step(row("denied", None, None), 5_000),
            PollStep::Answer(DevicePoll::Denied)
        );
        assert_eq!(
            poll_step(row("approved", Some("t"), None), 5_000),
            PollStep::Redeem("t".into())
        );
        assert_eq!(
            poll_step(row("redeemed", Some("t"), None), 5_000),
            PollStep::Answer(DevicePoll::Unknown)
        );
    }
}
