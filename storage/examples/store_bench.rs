//! Store-level cycle benchmark (no HTTP): W tasks each loop insert → claim →
//! complete against one store; prints cycles per second.
//!
//! `cargo run --release -p agw-storage --example store_bench -- [sqlite|postgres] [workers] [secs] [events]`
//! (`events`: every settlement also writes its signed execution event.)
//! (PostgreSQL: database from `AGW_BENCH_PG_URL`, default `postgres://postgres@127.0.0.1:5432/test`.)

#![allow(missing_docs)]

use std::time::{Duration, Instant};

use agw_storage::*;
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), StoreError> {
    let args: Vec<String> = std::env::args().collect();
    let driver = args.get(1).map_or("sqlite", String::as_str);
    let workers: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(8);
    let secs: u64 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(5);
    let url = if driver == "postgres" {
        std::env::var("AGW_BENCH_PG_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
    } else {
        let dir = std::env::temp_dir().join(format!("agw-bench-{}", new_token()));
        std::fs::create_dir_all(&dir).map_err(|e| StoreError::InvalidUrl(e.to_string()))?;
        format!("sqlite://{}", dir.join("b.db").display())
    };
    let store = Store::connect(&url, &ConnectOptions::default()).await?;
    if args.get(4).is_some_and(|a| a == "events") {
        let signer = agw_events::EventSigner::generate("bench")
            .map_err(|e| StoreError::InvalidUrl(e.to_string()))?;
        store.set_event_log(std::sync::Arc::new(EventLog::new(
            signer,
            agw_events::CaptureMode::Redacted,
            agw_events::default_redact_keys(),
        )));
    }
    let topic = format!("bench/{}", new_token());
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (store, topic) = (store.clone(), topic.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                let job = NewJob {
                    id: new_job_id(),
                    tenant: "bench".into(),
                    protocol: Protocol::IntentBus,
                    topic: topic.clone(),
                    namespace: "default".into(),
                    visibility: Visibility::Private,
                    priority: 100,
                    delay_ms: 0,
                    max_attempts: 3,
                    backoff_base_ms: 1000,
                    target_worker: None,
                    required_capability: None,
                    on_behalf_of: None,
                    input: json!({"n": n}),
                    metadata: None,
                };
                store
                    .job_insert(JobInsertParams {
                        job,
                        idempotency: None,
                        max_open_per_tenant: Some(1_000_000),
                        now: None,
                    })
                    .await?;
                store
                    .nonce_record(NonceParams {
                        key_id: format!("w{w}"),
                        nonce: new_token(),
                        expires_at: chrono::Utc::now(),
                    })
                    .await?;
                let claimed = store
                    .job_claim(JobClaimParams {
                        scope: Scope::Tenant("bench".into()),
                        public_work: true,
                        topic: Some(topic.clone()),
                        namespace: Some("default".into()),
                        publisher: None,
                        worker_id: format!("w{w}"),
                        holder_key: None,
                        capabilities: vec![],
                        on_behalf_of: None,
                        lease_ms: 60_000,
                        now: None,
                    })
                    .await?;
                if let Some(j) = claimed {
                    let token = j.lease.map(|l| l.token).unwrap_or_default();
                    store
                        .job_complete(JobCompleteParams {
                            id: j.id,
                            proof: LeaseProof::Token(token),
                            result: json!({"ok": true}),
                            result_type: ResultType::Json,
                            now: None,
                        })
                        .await?;
                    n += 1;
                }
            }
            Ok::<u64, StoreError>(n)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.map_err(|e| StoreError::Corrupt(e.to_string()))??;
    }
    println!(
        "{driver} workers={workers} cycles/s={:.0} (insert+nonce+claim+complete)",
        total as f64 / secs as f64
    );
    Ok(())
}
