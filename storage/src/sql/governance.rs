//! Statements of governance traces and secrets.

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
pub(crate) const SECRET_PUT: &str = "INSERT INTO secrets (tenant, name, provider,
    allowed_tools, ciphertext, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6)
    ON CONFLICT (tenant, name) DO UPDATE SET provider = excluded.provider,
    allowed_tools = excluded.allowed_tools, ciphertext = excluded.ciphertext,
    updated_at = excluded.updated_at";
pub(crate) const SECRET_GET: &str = "SELECT tenant, name, provider, allowed_tools, ciphertext,
    created_at, updated_at FROM secrets WHERE tenant = $1 AND name = $2";
pub(crate) const SECRET_DELETE: &str = "DELETE FROM secrets WHERE tenant = $1 AND name = $2";
