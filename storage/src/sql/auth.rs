//! Statements of auth and keys.

pub(crate) const PURGE_NONCES: &str = "DELETE FROM nonces WHERE expires_at <= $1";
pub(crate) const NONCE_INSERT: &str = "INSERT INTO nonces (key_id, nonce, expires_at)
    VALUES ($1, $2, $3) ON CONFLICT (key_id, nonce) DO NOTHING";

pub(crate) const API_KEY_INSERT: &str =
    "INSERT INTO api_keys (id, key_hash, owner, role, created_at) VALUES ($1, $2, $3, $4, $5)";
pub(crate) const API_KEY_BY_HASH: &str = "SELECT id, key_hash, owner, role, created_at,
    revoked_at, last_used_at FROM api_keys WHERE key_hash = $1";
/// Binds: owner (NULL = all).
pub(crate) const API_KEYS_LIST: &str = "SELECT id, key_hash, owner, role, created_at,
    revoked_at, last_used_at FROM api_keys WHERE ($1 IS NULL OR owner = $1) ORDER BY created_at, id";
/// Binds: id, now. Keeps the first revocation time.
pub(crate) const API_KEY_REVOKE: &str =
    "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1";
/// Binds: id, now.
pub(crate) const API_KEY_TOUCH: &str = "UPDATE api_keys SET last_used_at = $2 WHERE id = $1";
/// Binds: capability, reason, now. A repeat keeps the first time, takes the new reason.
pub(crate) const CAPABILITY_REVOKE: &str = "INSERT INTO capability_revocations
    (capability, reason, revoked_at) VALUES ($1, $2, $3)
    ON CONFLICT (capability) DO UPDATE SET reason = excluded.reason";
pub(crate) const CAPABILITY_REVOCATIONS: &str =
    "SELECT capability, reason FROM capability_revocations ORDER BY capability";

pub(crate) const DEVICE_INSERT: &str = "INSERT INTO device_codes (device_code_hash, user_code,
    client_name, state, expires_at, interval_ms, created_at) VALUES ($1, $2, $3, 'pending', $4, $5, $6)";
/// Binds: user_code, new state, tenant, now.
pub(crate) const DEVICE_DECIDE: &str = "UPDATE device_codes SET state = $2, tenant = $3
    WHERE user_code = $1 AND state = 'pending' AND expires_at > $4";
pub(crate) const DEVICE_BY_USER_CODE: &str =
    "SELECT state, expires_at FROM device_codes WHERE user_code = $1";
pub(crate) const DEVICE_GET: &str = "SELECT state, tenant, expires_at, interval_ms, last_poll_at
    FROM device_codes WHERE device_code_hash = $1";
pub(crate) const DEVICE_POLLED: &str =
    "UPDATE device_codes SET last_poll_at = $2 WHERE device_code_hash = $1";
pub(crate) const DEVICE_REDEEMED: &str =
    "UPDATE device_codes SET state = 'redeemed', last_poll_at = $2 WHERE device_code_hash = $1";
pub(crate) const CLIENT_INSERT: &str =
    "INSERT INTO oauth_clients (client_id, secret_hash, tenant, name, created_at)
    VALUES ($1, $2, $3, $4, $5)";
pub(crate) const CLIENT_GET: &str = "SELECT client_id, secret_hash, tenant, name, created_at,
    revoked_at FROM oauth_clients WHERE client_id = $1";
/// Binds: tenant (NULL = all).
pub(crate) const CLIENTS_LIST: &str = "SELECT client_id, secret_hash, tenant, name, created_at,
    revoked_at FROM oauth_clients WHERE ($1 IS NULL OR tenant = $1) ORDER BY created_at, client_id";
/// Binds: client_id, now.
pub(crate) const CLIENT_REVOKE: &str =
    "UPDATE oauth_clients SET revoked_at = COALESCE(revoked_at, $2) WHERE client_id = $1";
pub(crate) const PURGE_DEVICES: &str = "DELETE FROM device_codes WHERE expires_at <= $1";
