-- Execution events and ingested events have a retention period: their purge
-- reads by time. Ingested event ids are unique per tenant (one tenant can no
-- longer shadow another's ids); SQLite needs a table rebuild for that. seq
-- keeps AUTOINCREMENT so that it never goes back after a purge.
CREATE INDEX events_completed ON events (completed_at);
CREATE TABLE ingested_events_new (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id       TEXT NOT NULL,
    tenant         TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    received_at    INTEGER NOT NULL,
    body           TEXT NOT NULL,
    UNIQUE (tenant, event_id)
);
INSERT INTO ingested_events_new (seq, event_id, tenant, correlation_id, received_at, body)
    SELECT seq, event_id, tenant, correlation_id, received_at, body FROM ingested_events ORDER BY seq;
DROP TABLE ingested_events;
ALTER TABLE ingested_events_new RENAME TO ingested_events;
CREATE INDEX ingested_events_corr ON ingested_events (tenant, correlation_id);
CREATE INDEX ingested_events_received ON ingested_events (received_at);
