//! [`GovernanceStore`]: governance: decision traces, admission, tenant secrets.

use super::*;

/// The store's governance: decision traces, admission, tenant secrets. Every
/// method is one atomic unit, as for [`crate::JobStore`].
pub trait GovernanceStore: Send + Sync {
    /// Records a governance trace. One insert.
    fn trace_insert(&self, trace: Trace) -> impl Future<Output = StoreResult<()>> + Send;

    /// Admits a governance run in one transaction: its `pending` trace and
    /// its job are written together or not at all, so no trace is left
    /// pending without a job. When the job is refused
    /// ([`StoreError::TooManyOpen`]) the trace is kept as `failed` and the
    /// refusal returned.
    fn trace_admit(
        &self,
        params: AdmitParams,
    ) -> impl Future<Output = StoreResult<JobInsertOutcome>> + Send;

    /// Settles a pending trace (final status, worker, latency). One statement:
    /// `false`, and nothing changed, when the trace is unknown or already settled.
    fn trace_settle(
        &self,
        params: TraceSettleParams,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Reads a trace visible to `scope` (a tenant sees only its own).
    fn trace_get(
        &self,
        id: &str,
        scope: &Scope,
    ) -> impl Future<Output = StoreResult<Option<Trace>>> + Send;

    /// Counts the traces of `scope` created after `since`, by decision. Read only.
    fn trace_counts(
        &self,
        scope: &Scope,
        since: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<Vec<DecisionCount>>> + Send;

    /// Stores a secret, replacing one of the same tenant and name. One statement.
    fn secret_put(&self, secret: Secret) -> impl Future<Output = StoreResult<()>> + Send;

    /// Reads a tenant's secret.
    fn secret_get(
        &self,
        tenant: &str,
        name: &str,
    ) -> impl Future<Output = StoreResult<Option<Secret>>> + Send;

    /// Deletes a tenant's secret; `false` when there was none. One statement.
    fn secret_delete(
        &self,
        tenant: &str,
        name: &str,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
}
