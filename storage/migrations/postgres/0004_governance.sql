-- Governance: one trace per decided run (chat, agent run), and per-tenant
-- secrets (AEAD ciphertext only; the key never reaches the store).
CREATE TABLE gov_traces (
    id            TEXT PRIMARY KEY NOT NULL,
    tenant        TEXT NOT NULL,
    kind          TEXT NOT NULL,
    decision      TEXT NOT NULL,
    reason        TEXT NOT NULL,
    risk_score    DOUBLE PRECISION NOT NULL,
    policy        TEXT NOT NULL,
    matched_rules TEXT NOT NULL,
    violations    TEXT NOT NULL,
    mode          TEXT NOT NULL,
    budget        DOUBLE PRECISION NOT NULL,
    status        TEXT NOT NULL,
    job_id        TEXT,
    topic         TEXT,
    worker        TEXT,
    latency_ms    DOUBLE PRECISION NOT NULL,
    created_at    BIGINT NOT NULL,
    settled_at    BIGINT
);
CREATE INDEX gov_traces_tenant_time ON gov_traces (tenant, created_at);
CREATE INDEX gov_traces_time ON gov_traces (created_at);

CREATE TABLE secrets (
    tenant        TEXT NOT NULL,
    name          TEXT NOT NULL,
    provider      TEXT NOT NULL,
    allowed_tools TEXT NOT NULL,
    ciphertext    TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (tenant, name)
);
