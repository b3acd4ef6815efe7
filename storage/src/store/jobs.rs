//! [`JobStore`]: jobs and leases: insert, claim, settle, extend, cancel, expire, purge;
//! the console's counts, lists, retries and topic purges.

use super::*;

/// The job store. Every method is one atomic unit: it commits entirely or not
/// at all, and two concurrent calls never observe each other half-done.
///
/// Methods that take a `now` use it as the clock (tests pin it); `None` means
/// the wall clock.
pub trait JobStore: Send + Sync {
    /// Checks the database answers (readiness probe).
    fn ping(&self) -> impl Future<Output = StoreResult<()>> + Send;

    /// Inserts a job. Atomically: refuses with [`StoreError::TooManyOpen`] when the
    /// tenant is at its cap; with an idempotency key, either records the key and
    /// inserts, or returns the earlier record and inserts nothing.
    fn job_insert(
        &self,
        params: JobInsertParams,
    ) -> impl Future<Output = StoreResult<JobInsertOutcome>> + Send;

    /// Leases the best eligible job (priority desc, attempts asc, age asc) to the
    /// caller, or returns `None`. Atomic under any concurrency: a job has at most
    /// one live lease. Eligible: open and due, or leased with an expired lease;
    /// attempts below max; matching topic, namespace, visibility, target worker,
    /// required capability and on-behalf-of filters. Increments attempts and
    /// issues a fresh random token.
    fn job_claim(
        &self,
        params: JobClaimParams,
    ) -> impl Future<Output = StoreResult<Option<Job>>> + Send;

    /// Settles a leased job as fulfilled, if the proof matches the live,
    /// unexpired lease; otherwise [`StoreError::LeaseLost`] and nothing changes.
    fn job_complete(
        &self,
        params: JobCompleteParams,
    ) -> impl Future<Output = StoreResult<Job>> + Send;

    /// Settles a leased job as failed, under the same lease check as
    /// [`JobStore::job_complete`]: back to open with exponential backoff when
    /// attempts remain and the failure is not terminal, dead otherwise.
    fn job_fail(&self, params: JobFailParams) -> impl Future<Output = StoreResult<Job>> + Send;

    /// Renews a live lease for `lease_ms` from now, under the same lease check.
    fn job_extend(&self, params: JobExtendParams) -> impl Future<Output = StoreResult<Job>> + Send;

    /// Records the latest progress report of a leased job, under the same
    /// lease check as [`JobStore::job_complete`]. One statement.
    fn job_progress(
        &self,
        params: JobProgressParams,
    ) -> impl Future<Output = StoreResult<Job>> + Send;

    /// Cancels a job that is not yet terminal. Returns the job as it was before
    /// (so the caller can tell a lease holder). Foreign tenants get
    /// [`StoreError::NotFound`]; terminal jobs [`StoreError::InvalidState`].
    fn job_cancel(&self, params: JobCancelParams) -> impl Future<Output = StoreResult<Job>> + Send;

    /// Reads a job visible to `scope` (own jobs only; public jobs are claimable
    /// by others but not readable).
    fn job_get(
        &self,
        id: &str,
        scope: &Scope,
    ) -> impl Future<Output = StoreResult<Option<Job>>> + Send;

    /// Every live lease held under `holder_key` (a neuron's identity), e.g. to
    /// count them against its concurrency after a reconnect. Read only.
    fn jobs_leased_by(
        &self,
        holder_key: &str,
        now: Option<DateTime<Utc>>,
    ) -> impl Future<Output = StoreResult<Vec<Job>>> + Send;

    /// Voids every lease that expired at or before `now`: back to open when
    /// attempts remain, dead otherwise. One atomic statement; returns what it did.
    fn jobs_expire_leases(
        &self,
        now: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<Vec<ExpiredLease>>> + Send;

    /// Topics of open jobs whose `run_at` fell in `(since, now]` after their
    /// last change: delayed and retried jobs that just became due, so their
    /// waiters can be woken. Jobs claimable from the moment they were
    /// committed (a plain insert, an expired lease, a refunded retry) are
    /// not reported: that commit announced them. Read only.
    fn jobs_due_topics(
        &self,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<Vec<String>>> + Send;

    /// Deletes terminal jobs completed before the cutoff and every expired KV
    /// entry, nonce and idempotency record. Each kind is one statement.
    fn jobs_purge(
        &self,
        params: PurgeParams,
    ) -> impl Future<Output = StoreResult<PurgeReport>> + Send;

    /// Counts jobs by state for one tenant or all (`Scope::All`). Read only.
    fn jobs_count_open(&self, scope: &Scope) -> impl Future<Output = StoreResult<i64>> + Send;

    /// Live (open and leased) jobs counted by topic and state, with the
    /// oldest of each (see [`JobStats`]), for queue gauges. Read only; one
    /// statement.
    fn jobs_stats(&self) -> impl Future<Output = StoreResult<Vec<JobStats>>> + Send;

    /// Every job of `scope` counted by topic and state (open jobs awaiting a
    /// retry counted apart, see [`TopicCount::failed`]), ordered by topic.
    /// Read only; one statement.
    fn jobs_topic_counts(
        &self,
        scope: &Scope,
    ) -> impl Future<Output = StoreResult<Vec<TopicCount>>> + Send;

    /// One page of jobs, newest first (`created_at`, then `id`, descending),
    /// filtered by topic and state. Read only; one statement.
    fn jobs_list(
        &self,
        params: JobListParams,
    ) -> impl Future<Output = StoreResult<Vec<Job>>> + Send;

    /// Makes a dead job, or an open one waiting for a retry after a failure,
    /// claimable now: open, due now, error cleared, and one more attempt
    /// allowed when its attempts are spent (as River's `JobRetry`). Writes
    /// the job's `retried` event in the same transaction. Foreign tenants get
    /// [`StoreError::NotFound`]; other states [`StoreError::InvalidState`].
    /// Returns the job after.
    fn job_retry(&self, params: JobRetryParams) -> impl Future<Output = StoreResult<Job>> + Send;

    /// Deletes the settled (fulfilled, dead, cancelled) jobs of one topic of
    /// `scope`; returns how many. One statement. Their execution events stay.
    fn jobs_purge_topic(
        &self,
        params: TopicPurgeParams,
    ) -> impl Future<Output = StoreResult<u64>> + Send;

    /// Jobs of `scope` created and settled per minute since `since` (up to
    /// `minutes` minutes), by topic. Read only; one transaction-free pair of
    /// aggregate statements (a purge between them may skew one minute).
    fn jobs_activity(
        &self,
        scope: &Scope,
        since: DateTime<Utc>,
        minutes: usize,
    ) -> impl Future<Output = StoreResult<Vec<TopicActivity>>> + Send;

    /// Who was granted a lease on each topic of `scope` since `since`
    /// (the consumers seen recently), with their latest grant. Read only; one
    /// statement.
    fn jobs_recent_holders(
        &self,
        scope: &Scope,
        since: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<Vec<TopicHolder>>> + Send;
}
