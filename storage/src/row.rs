//! Row decoding shared by both drivers: every column is TEXT, a 64-bit integer
//! or (traces only) a double. PostgreSQL rows decode with `sqlx::FromRow`;
//! SQLite rows by position or column name in `sqlite`.

use crate::model::{from_ms, to_ms};
use crate::{
    ApiKey, Job, JobState, Lease, Protocol, ResultType, Role, Secret, StoreError, Trace, Visibility,
};

/// One `jobs` row as stored.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct JobRow {
    pub(crate) id: String,
    pub(crate) tenant: String,
    pub(crate) protocol: String,
    pub(crate) topic: String,
    pub(crate) namespace: String,
    pub(crate) visibility: String,
    pub(crate) priority: i64,
    pub(crate) run_at: i64,
    pub(crate) state: String,
    pub(crate) attempts: i64,
    pub(crate) max_attempts: i64,
    pub(crate) backoff_base_ms: i64,
    pub(crate) target_worker: Option<String>,
    pub(crate) required_capability: Option<String>,
    pub(crate) on_behalf_of: Option<String>,
    pub(crate) input: String,
    pub(crate) metadata: Option<String>,
    pub(crate) result: Option<String>,
    pub(crate) result_type: String,
    pub(crate) error: Option<String>,
    pub(crate) lease_holder: Option<String>,
    pub(crate) lease_key: Option<String>,
    pub(crate) lease_token: Option<String>,
    pub(crate) lease_expires_at: Option<i64>,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
    pub(crate) completed_at: Option<i64>,
    pub(crate) progress: Option<String>,
    pub(crate) leased_at: Option<i64>,
}

fn json(column: &str, text: &str) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("jobs.{column}: {e}")))
}

/// `sql::JOBS_STATS` rows (topic, state, count, oldest ms), as both drivers read them.
pub(crate) fn job_stats(
    rows: Vec<(String, String, i64, i64)>,
) -> Result<Vec<crate::JobStats>, StoreError> {
    rows.into_iter()
        .map(|(topic, state, count, oldest)| {
            let state = JobState::parse(&state)
                .ok_or_else(|| StoreError::Corrupt(format!("jobs.state: {state}")))?;
            Ok(crate::JobStats {
                topic,
                state,
                count,
                oldest: from_ms(oldest),
            })
        })
        .collect()
}

impl TryFrom<JobRow> for Job {
    type Error = StoreError;

    fn try_from(r: JobRow) -> Result<Self, StoreError> {
        let state = JobState::parse(&r.state)
            .ok_or_else(|| StoreError::Corrupt(format!("jobs.state: {}", r.state)))?;
        // The lease columns are kept after settlement as history; a lease is
        // live only while the job is leased.
        let last_holder = r.lease_holder.clone();
        let last_holder_key = r.lease_key.clone();
        let lease = match (state, r.lease_holder, r.lease_token, r.lease_expires_at) {
            (JobState::Leased, Some(holder), Some(token), Some(exp)) => Some(Lease {
                holder,
                holder_key: r.lease_key,
                token,
                expires_at: from_ms(exp),
            }),
            _ => None,
        };
        Ok(Self {
            input: json("input", &r.input)?,
            metadata: r
                .metadata
                .as_deref()
                .map(|m| json("metadata", m))
                .transpose()?,
            result: r.result.as_deref().map(|m| json("result", m)).transpose()?,
            id: r.id,
            tenant: r.tenant,
            protocol: Protocol::parse(&r.protocol)
                .ok_or_else(|| StoreError::Corrupt(format!("jobs.protocol: {}", r.protocol)))?,
            topic: r.topic,
            namespace: r.namespace,
            visibility: Visibility::parse(&r.visibility),
            priority: r.priority as i32,
            run_at: from_ms(r.run_at),
            state,
            attempts: r.attempts as i32,
            max_attempts: r.max_attempts as i32,
            backoff_base_ms: r.backoff_base_ms,
            target_worker: r.target_worker,
            required_capability: r.required_capability,
            on_behalf_of: r.on_behalf_of,
            result_type: ResultType::parse(&r.result_type),
            error: r.error,
            lease,
            last_holder,
            last_holder_key,
            leased_at: r.leased_at.map(from_ms),
            created_at: from_ms(r.created_at),
            updated_at: from_ms(r.updated_at),
            completed_at: r.completed_at.map(from_ms),
            progress: r
                .progress
                .as_deref()
                .map(|m| json("progress", m))
                .transpose()?,
        })
    }
}

/// One `api_keys` row.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ApiKeyRow {
    pub(crate) id: String,
    pub(crate) key_hash: String,
    pub(crate) owner: String,
    pub(crate) role: String,
    pub(crate) created_at: i64,
    pub(crate) revoked_at: Option<i64>,
    pub(crate) last_used_at: Option<i64>,
}

impl From<ApiKeyRow> for ApiKey {
    fn from(r: ApiKeyRow) -> Self {
        Self {
            id: r.id,
            key_hash: r.key_hash,
            owner: r.owner,
            role: Role::parse(&r.role),
            created_at: from_ms(r.created_at),
            revoked_at: r.revoked_at.map(from_ms),
            last_used_at: r.last_used_at.map(from_ms),
        }
    }
}

/// One `oauth_clients` row.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct OAuthClientRow {
    pub(crate) client_id: String,
    pub(crate) secret_hash: String,
    pub(crate) tenant: String,
    pub(crate) name: String,
    pub(crate) created_at: i64,
    pub(crate) revoked_at: Option<i64>,
}

impl From<OAuthClientRow> for crate::OAuthClient {
    fn from(r: OAuthClientRow) -> Self {
        Self {
            client_id: r.client_id,
            secret_hash: r.secret_hash,
            tenant: r.tenant,
            name: r.name,
            created_at: from_ms(r.created_at),
            revoked_at: r.revoked_at.map(from_ms),
        }
    }
}

/// One idempotency record.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct IdempotencyRow {
    pub(crate) request_hash: String,
    pub(crate) response_status: i64,
    pub(crate) response_body: String,
}

/// One `gov_traces` row, in `sql::TRACE_GET` column order.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct TraceRow {
    pub(crate) id: String,
    pub(crate) tenant: String,
    pub(crate) kind: String,
    pub(crate) decision: String,
    pub(crate) reason: String,
    pub(crate) risk_score: f64,
    pub(crate) policy: String,
    pub(crate) matched_rules: String,
    pub(crate) violations: String,
    pub(crate) mode: String,
    pub(crate) budget: f64,
    pub(crate) status: String,
    pub(crate) job_id: Option<String>,
    pub(crate) topic: Option<String>,
    pub(crate) worker: Option<String>,
    pub(crate) latency_ms: f64,
    pub(crate) created_at: i64,
    pub(crate) settled_at: Option<i64>,
}

impl TryFrom<TraceRow> for Trace {
    type Error = StoreError;

    fn try_from(r: TraceRow) -> Result<Self, StoreError> {
        let corrupt =
            |col: &str, e: serde_json::Error| StoreError::Corrupt(format!("gov_traces.{col}: {e}"));
        Ok(Self {
            matched_rules: serde_json::from_str(&r.matched_rules)
                .map_err(|e| corrupt("matched_rules", e))?,
            violations: serde_json::from_str(&r.violations)
                .map_err(|e| corrupt("violations", e))?,
            id: r.id,
            tenant: r.tenant,
            kind: crate::RunKind::parse(&r.kind)
                .ok_or_else(|| StoreError::Corrupt(format!("gov_traces.kind: {}", r.kind)))?,
            decision: crate::Verdict::parse(&r.decision).ok_or_else(|| {
                StoreError::Corrupt(format!("gov_traces.decision: {}", r.decision))
            })?,
            reason: r.reason,
            risk_score: r.risk_score,
            policy: r.policy,
            mode: r.mode,
            budget: r.budget,
            status: r.status,
            job_id: r.job_id,
            topic: r.topic,
            worker: r.worker,
            latency_ms: r.latency_ms,
            created_at: from_ms(r.created_at),
            settled_at: r.settled_at.map(from_ms),
            inputs: None,
        })
    }
}

/// One `secrets` row, in `sql::SECRET_GET` column order.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct SecretRow {
    pub(crate) tenant: String,
    pub(crate) name: String,
    pub(crate) provider: String,
    pub(crate) allowed_tools: String,
    pub(crate) ciphertext: String,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
}

impl TryFrom<SecretRow> for Secret {
    type Error = StoreError;

    fn try_from(r: SecretRow) -> Result<Self, StoreError> {
        Ok(Self {
            allowed_tools: serde_json::from_str(&r.allowed_tools)
                .map_err(|e| StoreError::Corrupt(format!("secrets.allowed_tools: {e}")))?,
            tenant: r.tenant,
            name: r.name,
            provider: r.provider,
            ciphertext: r.ciphertext,
            created_at: from_ms(r.created_at),
            updated_at: from_ms(r.updated_at),
        })
    }
}

/// The bind values of `sql::TRACE_INSERT`, shared by both drivers.
pub(crate) struct TraceBinds {
    pub(crate) matched_rules: String,
    pub(crate) violations: String,
    pub(crate) created_at: i64,
    pub(crate) settled_at: Option<i64>,
}

impl TraceBinds {
    pub(crate) fn of(t: &Trace) -> Self {
        Self {
            matched_rules: serde_json::to_string(&t.matched_rules).unwrap_or_else(|_| "[]".into()),
            violations: t.violations.to_string(),
            created_at: to_ms(t.created_at),
            settled_at: t.settled_at.map(to_ms),
        }
    }
}

/// One `capability_schemas` row, in `sql::SCHEMA_GET` column order.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct CapabilitySchemaRow {
    pub(crate) capability: String,
    pub(crate) input_schema: String,
    pub(crate) output_schema: Option<String>,
    pub(crate) updated_at: i64,
}

impl TryFrom<CapabilitySchemaRow> for crate::CapabilitySchema {
    type Error = StoreError;

    fn try_from(r: CapabilitySchemaRow) -> Result<Self, StoreError> {
        let corrupt = |col: &str, e: serde_json::Error| {
            StoreError::Corrupt(format!("capability_schemas.{col}: {e}"))
        };
        Ok(Self {
            input_schema: serde_json::from_str(&r.input_schema)
                .map_err(|e| corrupt("input_schema", e))?,
            output_schema: r
                .output_schema
                .map(|s| serde_json::from_str(&s))
                .transpose()
                .map_err(|e| corrupt("output_schema", e))?,
            capability: r.capability,
            updated_at: from_ms(r.updated_at),
        })
    }
}

/// The bind values of `sql::SCHEMA_PUT` after the capability, shared by both drivers.
pub(crate) struct SchemaBinds {
    pub(crate) input_schema: String,
    pub(crate) output_schema: Option<String>,
    pub(crate) updated_at: i64,
}

impl SchemaBinds {
    pub(crate) fn of(s: &crate::CapabilitySchema) -> Self {
        Self {
            input_schema: s.input_schema.to_string(),
            output_schema: s.output_schema.as_ref().map(serde_json::Value::to_string),
            updated_at: to_ms(s.updated_at),
        }
    }
}

/// Decodes a stored event body with its sequence number.
pub(crate) fn stored_event((seq, body): (i64, String)) -> Result<crate::StoredEvent, StoreError> {
    let event = serde_json::from_str(&body)
        .map_err(|e| StoreError::Corrupt(format!("events.body: {e}")))?;
    Ok(crate::StoredEvent { seq, event })
}

/// Decodes a posted event with its sequence number.
pub(crate) fn ingested_event(
    (seq, body): (i64, String),
) -> Result<(i64, serde_json::Value), StoreError> {
    serde_json::from_str(&body)
        .map(|v| (seq, v))
        .map_err(|e| StoreError::Corrupt(format!("ingested_events.body: {e}")))
}

/// `sql::TRACE_COUNTS` rows (decision, count), as both drivers read them.
pub(crate) fn decision_counts(
    rows: Vec<(String, i64)>,
) -> Result<Vec<crate::DecisionCount>, StoreError> {
    rows.into_iter()
        .map(|(decision, count)| {
            Ok(crate::DecisionCount {
                decision: crate::Verdict::parse(&decision).ok_or_else(|| {
                    StoreError::Corrupt(format!("gov_traces.decision: {decision}"))
                })?,
                count,
            })
        })
        .collect()
}

/// `jobs_topic_counts` rows (topic, state, failed 0/1, count, oldest ms).
pub(crate) fn topic_counts(
    rows: Vec<(String, String, i64, i64, i64)>,
) -> Result<Vec<crate::TopicCount>, StoreError> {
    rows.into_iter()
        .map(|(topic, state, failed, count, oldest)| {
            let state = JobState::parse(&state)
                .ok_or_else(|| StoreError::Corrupt(format!("jobs.state: {state}")))?;
            Ok(crate::TopicCount {
                topic,
                state,
                failed: failed != 0,
                count,
                oldest: from_ms(oldest),
            })
        })
        .collect()
}

/// Folds `jobs_activity`'s two aggregates ((topic, minute, count) rows of
/// created and of settled jobs) into one series per topic, ordered by topic;
/// minutes outside `0..minutes` are dropped.
pub(crate) fn topic_activity(
    created: Vec<(String, i64, i64)>,
    settled: Vec<(String, i64, i64)>,
    minutes: usize,
) -> Vec<crate::TopicActivity> {
    let mut by_topic: std::collections::BTreeMap<String, Vec<crate::MinuteActivity>> =
        std::collections::BTreeMap::new();
    for (rows, is_created) in [(created, true), (settled, false)] {
        for (topic, minute, n) in rows {
            let Some(i) = usize::try_from(minute).ok().filter(|i| *i < minutes) else {
                continue;
            };
            let series = by_topic
                .entry(topic)
                .or_insert_with(|| vec![crate::MinuteActivity::default(); minutes]);
            if is_created {
                series[i].created += n;
            } else {
                series[i].settled += n;
            }
        }
    }
    by_topic
        .into_iter()
        .map(|(topic, minutes)| crate::TopicActivity { topic, minutes })
        .collect()
}

/// The `(created_at ms, id)` keyset cursor of a job list page.
pub(crate) fn list_cursor(p: &crate::JobListParams) -> (Option<i64>, Option<String>) {
    match &p.before {
        Some((at, id)) => (Some(to_ms(*at)), Some(id.clone())),
        None => (None, None),
    }
}

/// `jobs_recent_holders` rows (topic, holder, holder key, latest grant ms),
/// one per (topic, holder).
pub(crate) fn topic_holders(rows: Vec<(String, String, String, i64)>) -> Vec<crate::TopicHolder> {
    let mut out: Vec<crate::TopicHolder> = Vec::with_capacity(rows.len());
    for (topic, holder, key, at) in rows {
        let at = from_ms(at);
        match out.last_mut() {
            Some(h) if h.topic == topic && h.holder == holder => {
                h.last_leased = h.last_leased.max(at);
            }
            _ => out.push(crate::TopicHolder {
                topic,
                holder,
                kind: crate::HolderKind::of(&key),
                last_leased: at,
            }),
        }
    }
    out
}
