-- OAuth clients (minted by the device flow) and pending device authorizations.
CREATE TABLE oauth_clients (
    client_id   TEXT PRIMARY KEY NOT NULL,
    secret_hash TEXT NOT NULL,
    tenant      TEXT NOT NULL,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE device_codes (
    device_code_hash TEXT PRIMARY KEY NOT NULL,
    user_code        TEXT NOT NULL UNIQUE,
    client_name      TEXT NOT NULL,
    state            TEXT NOT NULL,
    tenant           TEXT,
    expires_at       BIGINT NOT NULL,
    interval_ms      BIGINT NOT NULL,
    last_poll_at     BIGINT,
    created_at       BIGINT NOT NULL
);
