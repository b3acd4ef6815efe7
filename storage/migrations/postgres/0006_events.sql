-- Execution events: one signed IntentProof v1 event per settled dispatch,
-- written in the settlement's own transaction and hash-chained per
-- correlation id; the public keys that verify them; events that workers
-- post themselves (their own chains and keys); and when a lease began.
ALTER TABLE jobs ADD COLUMN leased_at BIGINT;

CREATE TABLE events (
    seq            BIGSERIAL PRIMARY KEY,
    event_id       TEXT NOT NULL,
    tenant         TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    chain_position BIGINT NOT NULL,
    event_hash     TEXT NOT NULL,
    protocol       TEXT NOT NULL,
    topic          TEXT NOT NULL,
    status         TEXT NOT NULL,
    completed_at   BIGINT NOT NULL,
    body           TEXT NOT NULL,
    UNIQUE (correlation_id, chain_position)
);
CREATE INDEX events_tenant_seq ON events (tenant, seq);

CREATE TABLE event_keys (
    key_id     TEXT PRIMARY KEY NOT NULL,
    public_key TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE ingested_events (
    seq            BIGSERIAL PRIMARY KEY,
    event_id       TEXT NOT NULL UNIQUE,
    tenant         TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    received_at    BIGINT NOT NULL,
    body           TEXT NOT NULL
);
CREATE INDEX ingested_events_corr ON ingested_events (tenant, correlation_id);
