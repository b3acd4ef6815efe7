//! The store conformance suite: every case runs against SQLite and against
//! PostgreSQL (a fresh database per case on `AGW_TEST_PG_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`), and against PostgreSQL in
//! transaction-pooler mode through a real PgBouncer (`postgres_pooled`). A
//! store change extends it.

#![allow(missing_docs)]

mod auth;
mod events;
mod governance;
mod jobs;
mod settings;

#[path = "../support/mod.rs"]
mod support;

use std::collections::HashSet;
use std::time::Duration as StdDuration;

use agw_storage::*;
use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::json;
use support::TestStore;

/// A fixed clock so every case controls time.
fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default()
}

fn new_job(tenant: &str, topic: &str) -> NewJob {
    NewJob {
        id: new_job_id(),
        tenant: tenant.into(),
        protocol: Protocol::IntentBus,
        topic: topic.into(),
        namespace: "default".into(),
        visibility: Visibility::Private,
        priority: 100,
        delay_ms: 0,
        max_attempts: 3,
        backoff_base_ms: 1000,
        target_worker: None,
        required_capability: None,
        on_behalf_of: None,
        input: json!({"n": 1}),
        metadata: None,
    }
}

async fn insert_at(s: &Store, job: NewJob, now: DateTime<Utc>) -> Job {
    match s
        .job_insert(JobInsertParams {
            job,
            idempotency: None,
            max_open_per_tenant: None,
            now: Some(now),
        })
        .await
        .expect("insert")
    {
        JobInsertOutcome::Inserted(j) => *j,
        other @ JobInsertOutcome::Replayed { .. } => panic!("expected insert, got {other:?}"),
    }
}

fn claim(tenant: &str, topic: Option<&str>, worker: &str, now: DateTime<Utc>) -> JobClaimParams {
    JobClaimParams {
        scope: Scope::Tenant(tenant.into()),
        public_work: true,
        topic: topic.map(Into::into),
        namespace: Some("default".into()),
        publisher: None,
        worker_id: worker.into(),
        holder_key: Some(format!("key-{worker}")),
        capabilities: vec![],
        on_behalf_of: None,
        lease_ms: 30_000,
        now: Some(now),
    }
}

async fn claim_one(s: &Store, p: JobClaimParams) -> Option<Job> {
    s.job_claim(p).await.expect("claim")
}

fn claim_token_of(j: &Job) -> String {
    j.lease.as_ref().expect("leased").token.clone()
}

fn token(j: &Job) -> LeaseProof {
    LeaseProof::Token(j.lease.as_ref().expect("leased").token.clone())
}

fn complete(id: &str, proof: LeaseProof, now: DateTime<Utc>) -> JobCompleteParams {
    JobCompleteParams {
        id: id.into(),
        proof,
        result: json!({"ok": true}),
        result_type: ResultType::Json,
        now: Some(now),
    }
}

fn fail(id: &str, proof: LeaseProof, now: DateTime<Utc>) -> JobFailParams {
    JobFailParams {
        id: id.into(),
        proof,
        error: "boom".into(),
        terminal: false,
        refund_attempt: false,
        max_backoff_ms: 3_600_000,
        now: Some(now),
    }
}

// === cases ===

/// `sslmode=require` in the URL gives a TLS connection (the server here
/// serves Debian's snakeoil certificate), the store works over it, and
/// `verify-full` refuses that self-signed certificate: verification is real.
#[tokio::test]
async fn postgres_over_tls() {
    use sqlx::{Connection, Row};
    let t = TestStore::postgres().await;
    let url = t.pg_url().expect("a PostgreSQL url");
    let tls = format!("{url}?sslmode=require");
    let mut conn = sqlx::PgConnection::connect(&tls)
        .await
        .expect("TLS connect");
    let ssl: bool = sqlx::query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&mut conn)
        .await
        .expect("pg_stat_ssl")
        .get(0);
    assert!(ssl, "the connection is encrypted");
    conn.close().await.ok();
    let store = Store::connect(&tls, &ConnectOptions::default())
        .await
        .expect("store over TLS");
    store.ping().await.expect("ping");
    let j = insert_at(&store, new_job("acme", "tls/t"), t0()).await;
    assert!(store.job_get(&j.id, &Scope::All).await.unwrap().is_some());
    store.close().await;
    assert!(
        sqlx::PgConnection::connect(&format!("{url}?sslmode=verify-full"))
            .await
            .is_err(),
        "an untrusted certificate is refused under verify-full"
    );
    t.cleanup().await;
}

// === stamping ===

macro_rules! conformance {
    ($driver:ident, $make:expr) => {
        mod $driver {
            use super::*;
            conformance!(@cases $make;
                jobs::insert_and_get, jobs::claim_complete_roundtrip, jobs::claim_any_topic_and_holder_key_proof, jobs::concurrent_claims_never_share_a_job, jobs::ordering_priority_attempts_age, jobs::delay_holds_until_run_at, jobs::lease_expiry_reclaim_and_stale_token, jobs::expiry_sweep_requeues_then_kills, jobs::retry_backoff_then_dead, jobs::terminal_fail_and_refund, jobs::extend_renews_lease, jobs::tenant_and_visibility_filters, jobs::claims_read_own_and_public_work_only, jobs::target_worker_and_capability_filters, jobs::on_behalf_of_filter, jobs::cancel_rules, jobs::open_cap_per_tenant, jobs::open_cap_holds_under_concurrent_publishes, jobs::idempotency_records, settings::kv_with_ttl, auth::nonce_replay_records, auth::concurrent_nonces_one_new_each, jobs::retention_purge, auth::api_keys_and_settings, auth::credentials_list_and_revoke, jobs::wakeups_on_insert, jobs::failing_operation_spares_concurrent_ones, jobs::progress_needs_the_live_lease, auth::device_flow, jobs::leases_by_holder, jobs::job_events_for_watched_jobs_only, governance::traces_settle_scope_and_count, governance::secrets_per_tenant, governance::admission_is_atomic, events::settlements_write_signed_chained_events, events::events_and_ingested_events_expire, events::event_keys_and_ingest, events::dropped_calls_leave_no_half_done_work, events::concurrent_fulfilments_settle_each_lease_once, settings::capability_schemas_put_get_delete, settings::leader_lease_one_holder_at_a_time, jobs::job_stats_by_topic_and_state, jobs::console_counts_and_list, jobs::console_retry_and_topic_purge, jobs::console_activity_per_minute, events::retry_writes_a_chained_event, jobs::console_recent_holders, jobs::wake_hints_agree_with_the_claim);
        }
    };
    (@cases $make:expr; $($area:ident::$case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let t: TestStore = $make.await;
                super::$area::$case(t.store.clone()).await;
                t.cleanup().await;
            }
        )*
    };
}

conformance!(sqlite, TestStore::sqlite());
conformance!(postgres, TestStore::postgres());
// The PostgreSQL driver behind a transaction pooler: through a real PgBouncer
// when one is installed (see `support`).
conformance!(postgres_pooled, TestStore::postgres_pooled());
