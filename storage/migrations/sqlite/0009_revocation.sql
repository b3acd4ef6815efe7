-- Credentials can be revoked (a revoked key or client is refused on every
-- replica once its cached copy is re-read), and keys record when they were
-- last used (coarsely: at most once a minute per replica).
ALTER TABLE api_keys ADD COLUMN revoked_at INTEGER;
ALTER TABLE api_keys ADD COLUMN last_used_at INTEGER;
ALTER TABLE oauth_clients ADD COLUMN revoked_at INTEGER;
-- Capability types an operator revoked: no neuron may register them again.
CREATE TABLE capability_revocations (
    capability TEXT PRIMARY KEY NOT NULL,
    reason     TEXT NOT NULL,
    revoked_at INTEGER NOT NULL
) STRICT;
