-- `events.seq` becomes a plain rowid alias: `AUTOINCREMENT` made every event
-- insert also update `sqlite_sequence` (one more page, and WAL frame, per
-- commit that writes an event). Events are never deleted, so the largest
-- rowid plus one keeps `seq` strictly increasing, as readers paging by `seq`
-- rely on.
CREATE TABLE events_new (
    seq            INTEGER PRIMARY KEY,
    event_id       TEXT NOT NULL,
    tenant         TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    chain_position INTEGER NOT NULL,
    event_hash     TEXT NOT NULL,
    protocol       TEXT NOT NULL,
    topic          TEXT NOT NULL,
    status         TEXT NOT NULL,
    completed_at   INTEGER NOT NULL,
    body           TEXT NOT NULL,
    UNIQUE (correlation_id, chain_position)
);
INSERT INTO events_new (seq, event_id, tenant, correlation_id, chain_position, event_hash,
                        protocol, topic, status, completed_at, body)
    SELECT seq, event_id, tenant, correlation_id, chain_position, event_hash,
           protocol, topic, status, completed_at, body
    FROM events ORDER BY seq;
DROP TABLE events;
ALTER TABLE events_new RENAME TO events;
CREATE INDEX events_tenant_seq ON events (tenant, seq);
DELETE FROM sqlite_sequence WHERE name = 'events';
