//! Row decoding shared by both drivers: every column is TEXT or a 64-bit integer.
//! PostgreSQL rows decode with `sqlx::FromRow`; SQLite rows by column name in `sqlite`.

use crate::model::from_ms;
use crate::{ApiKey, Job, JobState, Lease, Protocol, ResultType, Role, StoreError, Visibility};

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
}

fn json(column: &str, text: &str) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("jobs.{column}: {e}")))
}

impl TryFrom<JobRow> for Job {
    type Error = StoreError;

    fn try_from(r: JobRow) -> Result<Self, StoreError> {
        let state = JobState::parse(&r.state)
            .ok_or_else(|| StoreError::Corrupt(format!("jobs.state: {}", r.state)))?;
        // The lease columns are kept after settlement as history; a lease is
        // live only while the job is leased.
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
            protocol: Protocol::parse(&r.protocol),
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
}

impl From<ApiKeyRow> for ApiKey {
    fn from(r: ApiKeyRow) -> Self {
        Self {
            id: r.id,
            key_hash: r.key_hash,
            owner: r.owner,
            role: Role::parse(&r.role),
            created_at: from_ms(r.created_at),
        }
    }
}

/// One row of the lease-expiry sweep.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ExpiredRow {
    pub(crate) id: String,
    pub(crate) topic: String,
    pub(crate) lease_holder: Option<String>,
    pub(crate) lease_token: Option<String>,
    pub(crate) state: String,
}

/// One idempotency record.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct IdempotencyRow {
    pub(crate) request_hash: String,
    pub(crate) response_status: i64,
    pub(crate) response_body: String,
}
