//! Statements of jobs and leases (the dialect-dependent ones are built in `mod.rs`).

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

/// Only jobs that fell due after their last change (`run_at > updated_at`:
/// a delayed insert, a retry after backoff): the others were announced by
/// the commit that made them claimable (insert, expiry, refunded retry),
/// and a second, topic-wide wake-up per sweep for every job still queued
/// would wake every waiter of a busy topic again.
pub(crate) const DUE_TOPICS: &str = "SELECT DISTINCT topic FROM jobs
    WHERE state = 'open' AND run_at > $1 AND run_at <= $2 AND run_at > updated_at";

pub(crate) const PURGE_JOBS: &str = "DELETE FROM jobs WHERE completed_at IS NOT NULL
    AND completed_at < $1 AND state IN ('fulfilled', 'dead', 'cancelled')";
pub(crate) const PURGE_IDEMPOTENCY: &str = "DELETE FROM idempotency WHERE expires_at <= $1";

/// Binds: tenant (NULL = all). Jobs by topic and state; open jobs awaiting a
/// retry (error set) apart.
pub(crate) const TOPIC_COUNTS: &str = "SELECT topic, state,
        CAST(CASE WHEN state = 'open' AND error IS NOT NULL THEN 1 ELSE 0 END AS BIGINT) AS failed,
        COUNT(*), MIN(CASE WHEN state = 'open' THEN run_at ELSE created_at END)
    FROM jobs WHERE ($1 IS NULL OR tenant = $1)
    GROUP BY topic, state, failed ORDER BY topic, state, failed";

/// Binds: tenant, topic, state (each NULL = any), failed only (0/1),
/// cursor created_at and id (NULL = first page), limit. Newest first.
pub(crate) const LIST: &str = "SELECT * FROM jobs
    WHERE ($1 IS NULL OR tenant = $1) AND ($2 IS NULL OR topic = $2)
      AND ($3 IS NULL OR state = $3)
      AND ($4 = 0 OR (state = 'open' AND error IS NOT NULL))
      AND ($5 IS NULL OR created_at < $5 OR (created_at = $5 AND id < $6))
    ORDER BY created_at DESC, id DESC LIMIT $7";

/// Binds: id, now. Open now, one more attempt when they are spent.
pub(crate) const RETRY: &str = "UPDATE jobs SET state = 'open', run_at = $2, error = NULL,
        completed_at = NULL, updated_at = $2,
        max_attempts = CASE WHEN attempts >= max_attempts THEN attempts + 1 ELSE max_attempts END
    WHERE id = $1 AND (state = 'dead' OR (state = 'open' AND error IS NOT NULL))
    RETURNING *";

/// Binds: topic, tenant (NULL = all).
pub(crate) const PURGE_TOPIC: &str = "DELETE FROM jobs WHERE topic = $1
    AND ($2 IS NULL OR tenant = $2) AND state IN ('fulfilled', 'dead', 'cancelled')";

/// Binds: since, tenant (NULL = all). Jobs created per topic and minute.
pub(crate) const ACTIVITY_CREATED: &str =
    "SELECT topic, (created_at - $1) / 60000 AS minute, COUNT(*)
    FROM jobs WHERE created_at >= $1 AND ($2 IS NULL OR tenant = $2)
    GROUP BY topic, minute";

/// Binds: since, tenant (NULL = all). Jobs settled per topic and minute.
pub(crate) const ACTIVITY_SETTLED: &str =
    "SELECT topic, (completed_at - $1) / 60000 AS minute, COUNT(*)
    FROM jobs WHERE completed_at >= $1 AND ($2 IS NULL OR tenant = $2)
    GROUP BY topic, minute";

/// Binds: since, tenant (NULL = all). Lease holders by topic, latest grant.
pub(crate) const RECENT_HOLDERS: &str =
    "SELECT topic, lease_holder, COALESCE(lease_key, ''), MAX(leased_at)
    FROM jobs WHERE leased_at >= $1 AND lease_holder IS NOT NULL AND ($2 IS NULL OR tenant = $2)
    GROUP BY topic, lease_holder, lease_key ORDER BY topic, lease_holder";
