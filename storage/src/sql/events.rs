//! Statements of execution events.

/// Binds: before. The newest event always stays, so `seq` (a SQLite rowid:
/// the largest plus one) never goes back for readers paging by it.
pub(crate) const PURGE_EVENTS: &str = "DELETE FROM events WHERE completed_at < $1
    AND seq < (SELECT MAX(seq) FROM events)";
/// Binds: before.
pub(crate) const PURGE_INGESTED: &str = "DELETE FROM ingested_events WHERE received_at < $1";

/// Binds: correlation_id. The chain's last link.
pub(crate) const EVENT_LAST: &str = "SELECT event_hash, chain_position FROM events
    WHERE correlation_id = $1 ORDER BY chain_position DESC LIMIT 1";
pub(crate) const EVENT_INSERT: &str = "INSERT INTO events (event_id, tenant, correlation_id,
    chain_position, event_hash, protocol, topic, status, completed_at, body)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
/// The event list's filter and order (binds as [`EVENTS_LIST`]): one text for
/// the rows and for their sequence numbers alone.
macro_rules! events_filter {
    () => {
        " FROM events WHERE seq > $1
    AND ($2 IS NULL OR tenant = $2) AND ($3 IS NULL OR correlation_id = $3)
    AND ($4 IS NULL OR topic = $4) AND ($5 IS NULL OR protocol = $5)
    AND ($6 IS NULL OR status = $6) AND ($7 IS NULL OR completed_at >= $7)
    AND ($8 IS NULL OR completed_at < $8) ORDER BY seq LIMIT $9"
    };
}

/// The ingested-event list's filter and order (binds as [`INGEST_LIST`]).
macro_rules! ingested_filter {
    () => {
        " FROM ingested_events WHERE seq > $1
    AND ($2 IS NULL OR tenant = $2) AND ($3 IS NULL OR correlation_id = $3)
    ORDER BY seq LIMIT $4"
    };
}

/// Binds: after seq, tenant, correlation id, topic, protocol, status, since, until, limit.
pub(crate) const EVENTS_LIST: &str = concat!("SELECT seq, body", events_filter!());
/// [`EVENTS_LIST`]'s sequence numbers only (same binds).
pub(crate) const EVENTS_SEQS: &str = concat!("SELECT seq", events_filter!());
pub(crate) const EVENT_KEY_PUT: &str = "INSERT INTO event_keys (key_id, public_key, created_at)
    VALUES ($1, $2, $3) ON CONFLICT (key_id) DO NOTHING";
pub(crate) const EVENT_KEYS: &str =
    "SELECT key_id, public_key, created_at FROM event_keys ORDER BY created_at, key_id";
pub(crate) const INGEST_INSERT: &str = "INSERT INTO ingested_events (event_id, tenant,
    correlation_id, received_at, body) VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (tenant, event_id) DO NOTHING";
/// Binds: after seq, tenant, correlation id, limit.
pub(crate) const INGEST_LIST: &str = concat!("SELECT seq, body", ingested_filter!());
/// [`INGEST_LIST`]'s sequence numbers only (same binds).
pub(crate) const INGEST_SEQS: &str = concat!("SELECT seq", ingested_filter!());
