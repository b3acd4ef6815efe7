//! Every SQL statement of the store, in one place. Both drivers share the text;
//! the few dialect differences (row locking, `MIN`/`LEAST`, substring search)
//! are filled in from a [`Dialect`].

use std::sync::LazyLock;

/// The fragments in which SQLite and PostgreSQL differ.
struct Dialect {
    /// Two-argument minimum / maximum.
    least: &'static str,
    greatest: &'static str,
    /// `haystack, needle` position function (> 0 when found).
    instr: &'static str,
    /// Row lock taken by a claim's candidate scan.
    skip_locked: &'static str,
    /// Row lock taken before a read-then-write.
    for_update: &'static str,
    /// Cast of the shift amount (PostgreSQL shifts take `int`).
    shift_cast: &'static str,
}

const SQLITE: Dialect = Dialect {
    least: "MIN",
    greatest: "MAX",
    instr: "instr",
    // One writer connection serialises SQLite writes: no row locks needed.
    skip_locked: "",
    for_update: "",
    shift_cast: "",
};

const POSTGRES: Dialect = Dialect {
    least: "LEAST",
    greatest: "GREATEST",
    instr: "strpos",
    skip_locked: "FOR UPDATE SKIP LOCKED",
    for_update: "FOR UPDATE",
    shift_cast: "::int",
};

/// The statements of one driver.
#[derive(Debug)]
pub(crate) struct Sql {
    /// Claim on one topic for one tenant: its own jobs plus other tenants'
    /// public ones. Binds: holder, holder_key, token, expires, now, topic,
    /// tenant, namespace, publisher, worker, `,caps,`, on_behalf_of.
    pub(crate) claim_topic: String,
    /// Claim on one topic for one tenant, its own jobs only; same binds.
    pub(crate) claim_topic_own: String,
    /// Claim on one topic for every tenant (admin); same binds, $7 NULL.
    pub(crate) claim_topic_all: String,
    /// Claim on any topic; same binds, with $6 bound to NULL.
    pub(crate) claim_any: String,
    /// Fail. Binds: id, token, key, error, now, terminal(0/1), refund(0/1), max_backoff.
    pub(crate) fail: String,
    /// Read a job for update. Binds: id, tenant.
    pub(crate) get_for_update: String,
}

/// Claim order: highest priority, fewest attempts, oldest first.
const CLAIM_ORDER: &str = "ORDER BY priority DESC, attempts ASC, created_at ASC";

fn build(d: &Dialect) -> Sql {
    // What every claim asks of a candidate besides topic and tenant.
    let due = format!(
        "state IN ('open', 'leased')
                  AND ((state = 'open' AND run_at <= $5) OR (state = 'leased' AND lease_expires_at <= $5))
                  AND attempts < max_attempts
                  AND ($9 IS NULL OR tenant = $9)
                  AND (target_worker IS NULL OR target_worker = $10)
                  AND (required_capability IS NULL OR {instr}($11, ',' || required_capability || ',') > 0)
                  AND ($12 IS NULL OR on_behalf_of = $12)",
        instr = d.instr,
    );
    let skip_locked = d.skip_locked;
    // Takes the job `next` names.
    let take = "UPDATE jobs SET state = 'leased', attempts = attempts + 1,
                lease_holder = $1, lease_key = $2, lease_token = $3, lease_expires_at = $4,
                updated_at = $5, leased_at = $5
            WHERE id = (SELECT id FROM next)
            RETURNING *";
    // One scan over every live job matching `filter`, in claim order.
    let one_scan = |filter: &str| {
        format!(
            "WITH next AS (
                SELECT id FROM jobs
                WHERE {due} {filter}
                  AND (visibility = 'public'
                       OR (($7 IS NULL OR tenant = $7) AND ($8 IS NULL OR namespace = $8)))
                {CLAIM_ORDER}
                LIMIT 1 {skip_locked}
            )
            {take}"
        )
    };
    // A tenant's claim walks its own live jobs of the topic
    // (`jobs_claim_tenant`) and, when it takes public work, the topic's public
    // jobs (`jobs_claim_public`); it never reads another tenant's private
    // backlog, so that backlog costs it nothing.
    let own = format!(
        "SELECT id, priority, attempts, created_at FROM jobs
                WHERE topic = $6 AND tenant = $7 AND {due}
                  AND (visibility = 'public' OR $8 IS NULL OR namespace = $8)
                {CLAIM_ORDER}
                LIMIT 1 {skip_locked}"
    );
    let public = format!(
        "SELECT id, priority, attempts, created_at FROM jobs
                WHERE topic = $6 AND visibility = 'public' AND {due} AND tenant <> $7
                {CLAIM_ORDER}
                LIMIT 1 {skip_locked}"
    );
    let claim_topic = format!(
        "WITH own AS ({own}), pub AS ({public}),
            next AS (
                SELECT id FROM (SELECT * FROM own UNION ALL SELECT * FROM pub) AS candidates
                {CLAIM_ORDER} LIMIT 1
            )
            {take}"
    );
    let claim_topic_own = format!("WITH next AS (SELECT id FROM ({own}) AS candidates) {take}");
    let (least, greatest) = (d.least, d.greatest);
    Sql {
        claim_topic,
        claim_topic_own,
        claim_topic_all: one_scan("AND topic = $6"),
        claim_any: one_scan("AND $6 IS NULL"),
        fail: format!(
            "UPDATE jobs SET
                attempts = attempts - $7,
                state = CASE WHEN $6 = 0 AND attempts - $7 < max_attempts THEN 'open' ELSE 'dead' END,
                run_at = CASE WHEN $6 = 0 AND attempts - $7 < max_attempts
                    THEN $5 + CASE WHEN $7 = 1 THEN 0 ELSE {least}(
                        backoff_base_ms * (1 << {least}({greatest}(attempts - 1, 0), 30){cast}), $8) END
                    ELSE run_at END,
                completed_at = CASE WHEN $6 = 0 AND attempts - $7 < max_attempts THEN NULL ELSE $5 END,
                error = $4, updated_at = $5
            WHERE id = $1 AND state = 'leased' AND lease_expires_at > $5
              AND ($2 IS NOT NULL OR $3 IS NOT NULL)
      AND ($2 IS NULL OR lease_token = $2) AND ($3 IS NULL OR lease_key = $3)
            RETURNING *",
            cast = d.shift_cast,
        ),
        get_for_update: format!(
            "SELECT * FROM jobs WHERE id = $1 AND ($2 IS NULL OR tenant = $2) {}",
            d.for_update
        ),
    }
}

impl Sql {
    /// The claim statement for `p`: a tenant's claim on a topic reads only
    /// its own jobs and (when it takes public work) the public ones.
    pub(crate) fn claim_for(&self, p: &crate::JobClaimParams) -> &str {
        match (&p.topic, &p.scope) {
            (None, _) => &self.claim_any,
            (Some(_), crate::Scope::All) => &self.claim_topic_all,
            (Some(_), crate::Scope::Tenant(_)) if p.public_work => &self.claim_topic,
            (Some(_), crate::Scope::Tenant(_)) => &self.claim_topic_own,
        }
    }
}

/// SQLite statements.
pub(crate) static SQLITE_SQL: LazyLock<Sql> = LazyLock::new(|| build(&SQLITE));
/// PostgreSQL statements.
pub(crate) static POSTGRES_SQL: LazyLock<Sql> = LazyLock::new(|| build(&POSTGRES));

pub(crate) const PING: &str = "SELECT 1";

pub(crate) const IDEMPOTENCY_CLAIM: &str = "INSERT INTO idempotency
    (tenant, key, request_hash, response_status, response_body, expires_at)
    VALUES ($1, $2, $3, $4, $5, $6)
    ON CONFLICT (tenant, key) DO UPDATE SET request_hash = excluded.request_hash,
        response_status = excluded.response_status, response_body = excluded.response_body,
        expires_at = excluded.expires_at
    WHERE idempotency.expires_at <= $7";

pub(crate) const IDEMPOTENCY_GET: &str = "SELECT request_hash, response_status, response_body
    FROM idempotency WHERE tenant = $1 AND key = $2";

/// Binds: tenant. Its live jobs, counted on `jobs_tenant_live` alone (an
/// `$1 IS NULL OR tenant = $1` form would count every tenant's live jobs on
/// each publish, so one tenant's backlog would slow every other's publish).
pub(crate) const COUNT_LIVE_TENANT: &str =
    "SELECT COUNT(*) FROM jobs WHERE state IN ('open', 'leased') AND tenant = $1";
/// Every tenant's live jobs.
pub(crate) const COUNT_LIVE_ALL: &str =
    "SELECT COUNT(*) FROM jobs WHERE state IN ('open', 'leased')";

/// Live jobs by topic and state, with the earliest `run_at` (open) or lease
/// grant (leased; `updated_at` for leases granted before `leased_at` existed).
pub(crate) const JOBS_STATS: &str = "SELECT topic, state, COUNT(*),
        MIN(CASE WHEN state = 'open' THEN run_at ELSE COALESCE(leased_at, updated_at) END)
    FROM jobs WHERE state IN ('open', 'leased') GROUP BY topic, state ORDER BY topic, state";

pub(crate) const INSERT_JOB: &str = "INSERT INTO jobs (id, tenant, protocol, topic, namespace,
        visibility, priority, run_at, state, attempts, max_attempts, backoff_base_ms,
        target_worker, required_capability, on_behalf_of, input, metadata, result_type,
        created_at, updated_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'open', 0, $9, $10, $11, $12, $13, $14, $15, 'json', $16, $16)
    RETURNING *";

/// Binds: id, token, key, result, result_type, now.
pub(crate) const COMPLETE: &str = "UPDATE jobs SET state = 'fulfilled', result = $4,
        result_type = $5, updated_at = $6, completed_at = $6
    WHERE id = $1 AND state = 'leased' AND lease_expires_at > $6
      AND ($2 IS NOT NULL OR $3 IS NOT NULL)
      AND ($2 IS NULL OR lease_token = $2) AND ($3 IS NULL OR lease_key = $3)
    RETURNING *";

/// Binds: id, token, key, expires, now.
pub(crate) const EXTEND: &str = "UPDATE jobs SET lease_expires_at = $4, updated_at = $5
    WHERE id = $1 AND state = 'leased' AND lease_expires_at > $5
      AND ($2 IS NOT NULL OR $3 IS NOT NULL)
      AND ($2 IS NULL OR lease_token = $2) AND ($3 IS NULL OR lease_key = $3)
    RETURNING *";

/// Binds: id, token, key, progress, now.
pub(crate) const PROGRESS: &str = "UPDATE jobs SET progress = $4, updated_at = $5
    WHERE id = $1 AND state = 'leased' AND lease_expires_at > $5
      AND ($2 IS NOT NULL OR $3 IS NOT NULL)
      AND ($2 IS NULL OR lease_token = $2) AND ($3 IS NULL OR lease_key = $3)
    RETURNING *";

/// Binds: id, reason, now.
pub(crate) const CANCEL: &str = "UPDATE jobs SET state = 'cancelled', error = $2,
        updated_at = $3, completed_at = $3
    WHERE id = $1 AND state IN ('open', 'leased')";

pub(crate) const GET: &str = "SELECT * FROM jobs WHERE id = $1 AND ($2 IS NULL OR tenant = $2)";

/// Binds: holder key, now.
pub(crate) const LEASED_BY: &str =
    "SELECT * FROM jobs WHERE state = 'leased' AND lease_key = $1 AND lease_expires_at > $2";

pub(crate) const EXPIRE_LEASES: &str = "UPDATE jobs SET
        state = CASE WHEN attempts < max_attempts THEN 'open' ELSE 'dead' END,
        completed_at = CASE WHEN attempts < max_attempts THEN NULL ELSE $1 END,
        error = 'lease expired', run_at = $1, updated_at = $1
    WHERE state = 'leased' AND lease_expires_at <= $1
    RETURNING *";

pub(crate) const DUE_TOPICS: &str =
    "SELECT DISTINCT topic FROM jobs WHERE state = 'open' AND run_at > $1 AND run_at <= $2";

pub(crate) const PURGE_JOBS: &str = "DELETE FROM jobs WHERE completed_at IS NOT NULL
    AND completed_at < $1 AND state IN ('fulfilled', 'dead', 'cancelled')";
pub(crate) const PURGE_KV: &str = "DELETE FROM kv WHERE expires_at <= $1";
pub(crate) const PURGE_NONCES: &str = "DELETE FROM nonces WHERE expires_at <= $1";
pub(crate) const PURGE_IDEMPOTENCY: &str = "DELETE FROM idempotency WHERE expires_at <= $1";

pub(crate) const KV_SET: &str = "INSERT INTO kv (scope, key, value, expires_at) VALUES ($1, $2, $3, $4)
    ON CONFLICT (scope, key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at";
pub(crate) const KV_GET: &str =
    "SELECT value FROM kv WHERE scope = $1 AND key = $2 AND expires_at > $3";

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

pub(crate) const SETTING_INSERT: &str =
    "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING";
pub(crate) const SETTING_GET: &str = "SELECT value FROM settings WHERE name = $1";

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

pub(crate) const TRACE_INSERT: &str = "INSERT INTO gov_traces (id, tenant, kind, decision,
    reason, risk_score, policy, matched_rules, violations, mode, budget, status, job_id, topic,
    worker, latency_ms, created_at, settled_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)";
/// Binds: id, status, worker, latency_ms, now. Only a pending trace settles.
pub(crate) const TRACE_SETTLE: &str = "UPDATE gov_traces SET status = $2, worker = $3,
    latency_ms = $4, settled_at = $5 WHERE id = $1 AND status = 'pending'";
/// Binds: id, tenant (NULL = any).
pub(crate) const TRACE_GET: &str = "SELECT id, tenant, kind, decision, reason, risk_score,
    policy, matched_rules, violations, mode, budget, status, job_id, topic, worker, latency_ms,
    created_at, settled_at FROM gov_traces WHERE id = $1 AND ($2 IS NULL OR tenant = $2)";
/// Binds: tenant (NULL = all), since.
pub(crate) const TRACE_COUNTS: &str = "SELECT decision, COUNT(*) FROM gov_traces
    WHERE ($1 IS NULL OR tenant = $1) AND created_at > $2 GROUP BY decision ORDER BY decision";
pub(crate) const PURGE_TRACES: &str = "DELETE FROM gov_traces WHERE created_at < $1";
/// Binds: before. The newest event always stays, so `seq` (a SQLite rowid:
/// the largest plus one) never goes back for readers paging by it.
pub(crate) const PURGE_EVENTS: &str = "DELETE FROM events WHERE completed_at < $1
    AND seq < (SELECT MAX(seq) FROM events)";
/// Binds: before.
pub(crate) const PURGE_INGESTED: &str = "DELETE FROM ingested_events WHERE received_at < $1";

pub(crate) const SECRET_PUT: &str = "INSERT INTO secrets (tenant, name, provider,
    allowed_tools, ciphertext, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6)
    ON CONFLICT (tenant, name) DO UPDATE SET provider = excluded.provider,
    allowed_tools = excluded.allowed_tools, ciphertext = excluded.ciphertext,
    updated_at = excluded.updated_at";
pub(crate) const SECRET_GET: &str = "SELECT tenant, name, provider, allowed_tools, ciphertext,
    created_at, updated_at FROM secrets WHERE tenant = $1 AND name = $2";
pub(crate) const SECRET_DELETE: &str = "DELETE FROM secrets WHERE tenant = $1 AND name = $2";

/// Binds: capability, input_schema, output_schema, updated_at.
pub(crate) const SCHEMA_PUT: &str = "INSERT INTO capability_schemas (capability, input_schema,
    output_schema, updated_at) VALUES ($1, $2, $3, $4)
    ON CONFLICT (capability) DO UPDATE SET input_schema = excluded.input_schema,
    output_schema = excluded.output_schema, updated_at = excluded.updated_at";
pub(crate) const SCHEMA_GET: &str = "SELECT capability, input_schema, output_schema, updated_at
    FROM capability_schemas WHERE capability = $1";
pub(crate) const SCHEMA_DELETE: &str = "DELETE FROM capability_schemas WHERE capability = $1";

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
