-- agent-gateway store, PostgreSQL. Times are Unix milliseconds (BIGINT).
CREATE TABLE jobs (
    id                  TEXT PRIMARY KEY NOT NULL,
    tenant              TEXT NOT NULL,
    protocol            TEXT NOT NULL,
    topic               TEXT NOT NULL,
    namespace           TEXT NOT NULL,
    visibility          TEXT NOT NULL,
    priority            BIGINT NOT NULL,
    run_at              BIGINT NOT NULL,
    state               TEXT NOT NULL,
    attempts            BIGINT NOT NULL DEFAULT 0,
    max_attempts        BIGINT NOT NULL,
    backoff_base_ms     BIGINT NOT NULL,
    target_worker       TEXT,
    required_capability TEXT,
    on_behalf_of        TEXT,
    input               TEXT NOT NULL,
    metadata            TEXT,
    result              TEXT,
    result_type         TEXT NOT NULL DEFAULT 'json',
    error               TEXT,
    lease_holder        TEXT,
    lease_key           TEXT,
    lease_token         TEXT,
    lease_expires_at    BIGINT,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    completed_at        BIGINT
);

-- The claim scan: live jobs of a topic in claim order.
CREATE INDEX jobs_claim ON jobs (topic, priority DESC, attempts, created_at)
    WHERE state IN ('open', 'leased');
CREATE INDEX jobs_lease_expiry ON jobs (lease_expires_at) WHERE state = 'leased';
CREATE INDEX jobs_open_run_at ON jobs (run_at) WHERE state = 'open';
CREATE INDEX jobs_tenant_live ON jobs (tenant) WHERE state IN ('open', 'leased');
CREATE INDEX jobs_completed ON jobs (completed_at) WHERE completed_at IS NOT NULL;

CREATE TABLE idempotency (
    tenant          TEXT NOT NULL,
    key             TEXT NOT NULL,
    request_hash    TEXT NOT NULL,
    response_status BIGINT NOT NULL,
    response_body   TEXT NOT NULL,
    expires_at      BIGINT NOT NULL,
    PRIMARY KEY (tenant, key)
);

CREATE TABLE kv (
    scope      TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (scope, key)
);

CREATE TABLE nonces (
    key_id     TEXT NOT NULL,
    nonce      TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (key_id, nonce)
);
CREATE INDEX nonces_expiry ON nonces (expires_at);

CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY NOT NULL,
    key_hash   TEXT NOT NULL UNIQUE,
    owner      TEXT NOT NULL,
    role       TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE settings (
    name  TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
