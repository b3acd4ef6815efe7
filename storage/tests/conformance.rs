//! The store conformance suite: every case runs against SQLite and against
//! PostgreSQL (a fresh database per case on `AGW_TEST_PG_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`). A store change extends it.

#![allow(missing_docs)]

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

async fn insert_and_get(s: Store) {
    s.ping().await.expect("ping");
    let j = insert_at(&s, new_job("a", "acme/echo"), t0()).await;
    assert_eq!(j.state, JobState::Open);
    assert_eq!(j.attempts, 0);
    assert_eq!(j.run_at, t0());
    let got = s
        .job_get(&j.id, &Scope::Tenant("a".into()))
        .await
        .unwrap()
        .expect("own job visible");
    assert_eq!(got, j);
    assert!(
        s.job_get(&j.id, &Scope::Tenant("b".into()))
            .await
            .unwrap()
            .is_none(),
        "foreign tenant"
    );
    assert!(
        s.job_get(&j.id, &Scope::All).await.unwrap().is_some(),
        "admin sees all"
    );
    assert!(s.job_get("nope", &Scope::All).await.unwrap().is_none());
    assert_eq!(
        s.jobs_count_open(&Scope::Tenant("a".into())).await.unwrap(),
        1
    );
}

async fn claim_complete_roundtrip(s: Store) {
    let j = insert_at(&s, new_job("a", "acme/echo"), t0()).await;
    assert!(
        claim_one(&s, claim("a", Some("other/topic"), "w1", t0()))
            .await
            .is_none()
    );
    let c = claim_one(&s, claim("a", Some("acme/echo"), "w1", t0()))
        .await
        .expect("claimable");
    assert_eq!(c.id, j.id);
    assert_eq!(c.state, JobState::Leased);
    assert_eq!(c.attempts, 1);
    let lease = c.lease.clone().expect("lease");
    assert_eq!(lease.holder, "w1");
    assert_eq!(lease.expires_at, t0() + Duration::seconds(30));
    assert!(
        claim_one(&s, claim("a", None, "w2", t0())).await.is_none(),
        "one live lease"
    );
    let done = s
        .job_complete(complete(&j.id, token(&c), t0() + Duration::seconds(1)))
        .await
        .unwrap();
    assert_eq!(done.state, JobState::Fulfilled);
    assert_eq!(done.result, Some(json!({"ok": true})));
    assert_eq!(done.completed_at, Some(t0() + Duration::seconds(1)));
    assert!(done.lease.is_none());
    // Settling twice is refused.
    let again = s
        .job_complete(complete(&j.id, token(&c), t0() + Duration::seconds(2)))
        .await;
    assert!(matches!(again, Err(StoreError::LeaseLost)), "{again:?}");
}

async fn claim_any_topic_and_holder_key_proof(s: Store) {
    let j = insert_at(&s, new_job("a", "x/y"), t0()).await;
    let c = claim_one(&s, claim("a", None, "w1", t0()))
        .await
        .expect("any topic");
    assert_eq!(c.id, j.id);
    // Another key cannot settle by holder key; the claiming key can.
    let wrong = s
        .job_complete(complete(
            &j.id,
            LeaseProof::HolderKey("key-w2".into()),
            t0(),
        ))
        .await;
    assert!(matches!(wrong, Err(StoreError::LeaseLost)));
    // Token and key together: both must match (a leaked token is not enough).
    let leaked = LeaseProof::TokenAndKey {
        token: claim_token_of(&c),
        holder_key: "key-w2".into(),
    };
    let r = s.job_complete(complete(&j.id, leaked, t0())).await;
    assert!(matches!(r, Err(StoreError::LeaseLost)), "{r:?}");
    let guessed = LeaseProof::TokenAndKey {
        token: "0".repeat(32),
        holder_key: "key-w1".into(),
    };
    let r = s.job_complete(complete(&j.id, guessed, t0())).await;
    assert!(matches!(r, Err(StoreError::LeaseLost)), "{r:?}");
    let ok = s
        .job_complete(complete(
            &j.id,
            LeaseProof::HolderKey("key-w1".into()),
            t0(),
        ))
        .await
        .unwrap();
    assert_eq!(ok.state, JobState::Fulfilled);
}

async fn concurrent_claims_never_share_a_job(s: Store) {
    const JOBS: usize = 40;
    const WORKERS: usize = 8;
    for _ in 0..JOBS {
        insert_at(&s, new_job("a", "race/t"), t0()).await;
    }
    let mut tasks = Vec::new();
    for w in 0..WORKERS {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(j) =
                claim_one(&s, claim("a", Some("race/t"), &format!("w{w}"), t0())).await
            {
                got.push(j.id);
            }
            got
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), JOBS, "every job claimed exactly once");
    assert_eq!(unique.len(), JOBS);
}

async fn ordering_priority_attempts_age(s: Store) {
    let low = insert_at(&s, new_job("a", "o/t"), t0()).await;
    let mut hi = new_job("a", "o/t");
    hi.priority = 900;
    let hi = insert_at(&s, hi, t0() + Duration::milliseconds(1)).await;
    let later = insert_at(&s, new_job("a", "o/t"), t0() + Duration::milliseconds(2)).await;
    let now = t0() + Duration::seconds(1);
    let c1 = claim_one(&s, claim("a", Some("o/t"), "w", now))
        .await
        .unwrap();
    assert_eq!(c1.id, hi.id, "priority first");
    s.job_complete(complete(&hi.id, token(&c1), now))
        .await
        .unwrap();
    let c2 = claim_one(&s, claim("a", Some("o/t"), "w", now))
        .await
        .unwrap();
    assert_eq!(c2.id, low.id, "then age");
    // Fail `low` with a zero backoff: it comes back with attempts = 1 and
    // must now sort after `later` (attempts 0) at equal priority.
    s.job_fail(fail(&low.id, token(&c2), now)).await.unwrap();
    let far = now + Duration::hours(1);
    let c3 = claim_one(&s, claim("a", Some("o/t"), "w", far))
        .await
        .unwrap();
    assert_eq!(c3.id, later.id, "fewer attempts first");
    let c4 = claim_one(&s, claim("a", Some("o/t"), "w", far))
        .await
        .unwrap();
    assert_eq!(c4.id, low.id);
}

async fn delay_holds_until_run_at(s: Store) {
    let mut d = new_job("a", "d/t");
    d.delay_ms = 10_000;
    let j = insert_at(&s, d, t0()).await;
    assert_eq!(j.run_at, t0() + Duration::seconds(10));
    assert!(
        claim_one(
            &s,
            claim("a", Some("d/t"), "w", t0() + Duration::seconds(9))
        )
        .await
        .is_none()
    );
    let due = s
        .jobs_due_topics(t0() + Duration::seconds(9), t0() + Duration::seconds(10))
        .await
        .unwrap();
    assert_eq!(due, vec!["d/t".to_owned()]);
    let none = s
        .jobs_due_topics(t0() + Duration::seconds(10), t0() + Duration::seconds(11))
        .await
        .unwrap();
    assert!(none.is_empty());
    assert!(
        claim_one(
            &s,
            claim("a", Some("d/t"), "w", t0() + Duration::seconds(10))
        )
        .await
        .is_some()
    );
}

async fn lease_expiry_reclaim_and_stale_token(s: Store) {
    let j = insert_at(&s, new_job("a", "e/t"), t0()).await;
    let first = claim_one(&s, claim("a", Some("e/t"), "w1", t0()))
        .await
        .unwrap();
    let after = t0() + Duration::seconds(31);
    // Expired lease: the holder can no longer settle or extend.
    let late = s.job_complete(complete(&j.id, token(&first), after)).await;
    assert!(matches!(late, Err(StoreError::LeaseLost)));
    let ext = s
        .job_extend(JobExtendParams {
            id: j.id.clone(),
            proof: token(&first),
            lease_ms: 1000,
            now: Some(after),
        })
        .await;
    assert!(matches!(ext, Err(StoreError::LeaseLost)));
    // A second worker reclaims directly (no sweep needed).
    let second = claim_one(&s, claim("a", Some("e/t"), "w2", after))
        .await
        .expect("reclaim");
    assert_eq!(second.attempts, 2);
    assert_ne!(token(&second), token(&first));
    let stale = s.job_complete(complete(&j.id, token(&first), after)).await;
    assert!(
        matches!(stale, Err(StoreError::LeaseLost)),
        "stale token refused"
    );
    let stale_fail = s.job_fail(fail(&j.id, token(&first), after)).await;
    assert!(matches!(stale_fail, Err(StoreError::LeaseLost)));
    let ok = s
        .job_complete(complete(&j.id, token(&second), after))
        .await
        .unwrap();
    assert_eq!(ok.state, JobState::Fulfilled);
}

async fn leases_by_holder(s: Store) {
    let a = insert_at(&s, new_job("a", "h/t"), t0()).await;
    insert_at(&s, new_job("a", "h/t"), t0()).await;
    let c1 = claim_one(&s, claim("a", Some("h/t"), "w1", t0()))
        .await
        .unwrap();
    claim_one(&s, claim("a", Some("h/t"), "w2", t0()))
        .await
        .unwrap();
    let mine = s.jobs_leased_by("key-w1", Some(t0())).await.unwrap();
    assert_eq!(
        mine.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(),
        vec![c1.id.as_str()]
    );
    assert_eq!(mine[0].id, a.id);
    assert!(
        s.jobs_leased_by("key-w1", Some(t0() + Duration::seconds(31)))
            .await
            .unwrap()
            .is_empty(),
        "expired leases are not held"
    );
    s.job_complete(complete(&a.id, token(&c1), t0()))
        .await
        .unwrap();
    assert!(
        s.jobs_leased_by("key-w1", Some(t0()))
            .await
            .unwrap()
            .is_empty(),
        "settled leases are not held"
    );
}

async fn expiry_sweep_requeues_then_kills(s: Store) {
    let mut n = new_job("a", "s/t");
    n.max_attempts = 2;
    let j = insert_at(&s, n, t0()).await;
    let mut now = t0();
    for attempt in 1..=2 {
        let c = claim_one(&s, claim("a", Some("s/t"), "w", now))
            .await
            .expect("claim");
        assert_eq!(c.attempts, attempt);
        now += Duration::seconds(31);
        let swept = s.jobs_expire_leases(now).await.unwrap();
        assert_eq!(swept.len(), 1);
        assert_eq!(swept[0].job_id, j.id);
        assert_eq!(swept[0].holder, "w");
        assert_eq!(LeaseProof::Token(swept[0].token.clone()), token(&c));
        let expected = if attempt < 2 {
            JobState::Open
        } else {
            JobState::Dead
        };
        assert_eq!(swept[0].new_state, expected);
    }
    let dead = s.job_get(&j.id, &Scope::All).await.unwrap().unwrap();
    assert_eq!(dead.state, JobState::Dead);
    assert_eq!(dead.error.as_deref(), Some("lease expired"));
    assert!(dead.completed_at.is_some());
    assert!(
        s.jobs_expire_leases(now).await.unwrap().is_empty(),
        "sweep is idempotent"
    );
}

async fn retry_backoff_then_dead(s: Store) {
    let mut n = new_job("a", "r/t");
    n.backoff_base_ms = 2000;
    let j = insert_at(&s, n, t0()).await;
    let c1 = claim_one(&s, claim("a", Some("r/t"), "w", t0()))
        .await
        .unwrap();
    let f1 = s.job_fail(fail(&j.id, token(&c1), t0())).await.unwrap();
    assert_eq!(f1.state, JobState::Open);
    assert_eq!(f1.run_at, t0() + Duration::seconds(2), "base * 2^0");
    assert_eq!(f1.error.as_deref(), Some("boom"));
    assert!(
        claim_one(
            &s,
            claim("a", Some("r/t"), "w", t0() + Duration::milliseconds(1999))
        )
        .await
        .is_none()
    );
    let t1 = t0() + Duration::seconds(2);
    let c2 = claim_one(&s, claim("a", Some("r/t"), "w", t1))
        .await
        .expect("due again");
    let f2 = s.job_fail(fail(&j.id, token(&c2), t1)).await.unwrap();
    assert_eq!(f2.run_at, t1 + Duration::seconds(4), "base * 2^1");
    let t2 = t1 + Duration::seconds(4);
    let c3 = claim_one(&s, claim("a", Some("r/t"), "w", t2))
        .await
        .unwrap();
    assert_eq!(c3.attempts, 3);
    let f3 = s.job_fail(fail(&j.id, token(&c3), t2)).await.unwrap();
    assert_eq!(f3.state, JobState::Dead, "out of attempts");
    assert_eq!(f3.completed_at, Some(t2));
    assert!(
        claim_one(&s, claim("a", Some("r/t"), "w", t2 + Duration::hours(1)))
            .await
            .is_none()
    );
}

async fn terminal_fail_and_refund(s: Store) {
    let j = insert_at(&s, new_job("a", "f/t"), t0()).await;
    let c = claim_one(&s, claim("a", Some("f/t"), "w", t0()))
        .await
        .unwrap();
    let mut refund = fail(&j.id, token(&c), t0());
    refund.refund_attempt = true;
    let r = s.job_fail(refund).await.unwrap();
    assert_eq!(
        (r.state, r.attempts, r.run_at),
        (JobState::Open, 0, t0()),
        "refunded, due now"
    );
    let c = claim_one(&s, claim("a", Some("f/t"), "w", t0()))
        .await
        .unwrap();
    let mut term = fail(&j.id, token(&c), t0());
    term.terminal = true;
    let d = s.job_fail(term).await.unwrap();
    assert_eq!(d.state, JobState::Dead, "terminal despite attempts left");
}

async fn extend_renews_lease(s: Store) {
    let j = insert_at(&s, new_job("a", "x/t"), t0()).await;
    let c = claim_one(&s, claim("a", Some("x/t"), "w", t0()))
        .await
        .unwrap();
    let now = t0() + Duration::seconds(20);
    let e = s
        .job_extend(JobExtendParams {
            id: j.id.clone(),
            proof: token(&c),
            lease_ms: 60_000,
            now: Some(now),
        })
        .await
        .unwrap();
    assert_eq!(e.lease.unwrap().expires_at, now + Duration::seconds(60));
    // Past the original 30 s the lease still holds.
    let later = t0() + Duration::seconds(45);
    assert!(s.jobs_expire_leases(later).await.unwrap().is_empty());
    assert!(
        claim_one(&s, claim("a", Some("x/t"), "w2", later))
            .await
            .is_none()
    );
    assert!(
        s.job_complete(complete(&j.id, token(&c), later))
            .await
            .is_ok()
    );
}

async fn tenant_and_visibility_filters(s: Store) {
    let private = insert_at(&s, new_job("a", "v/t"), t0()).await;
    let mut p = new_job("a", "v/t");
    p.visibility = Visibility::Public;
    p.namespace = "elsewhere".into();
    let public = insert_at(&s, p, t0()).await;
    let mut other_ns = new_job("a", "v/t");
    other_ns.namespace = "ns2".into();
    let other_ns = insert_at(&s, other_ns, t0()).await;
    // Tenant b sees only the public job, from any namespace.
    let b = claim_one(&s, claim("b", Some("v/t"), "wb", t0()))
        .await
        .expect("public claimable");
    assert_eq!(b.id, public.id);
    assert!(
        claim_one(&s, claim("b", Some("v/t"), "wb", t0()))
            .await
            .is_none(),
        "private hidden"
    );
    // Tenant a in namespace default gets its private job, not the ns2 one.
    let a = claim_one(&s, claim("a", Some("v/t"), "wa", t0()))
        .await
        .unwrap();
    assert_eq!(a.id, private.id);
    assert!(
        claim_one(&s, claim("a", Some("v/t"), "wa", t0()))
            .await
            .is_none()
    );
    let mut ns2 = claim("a", Some("v/t"), "wa", t0());
    ns2.namespace = Some("ns2".into());
    assert_eq!(claim_one(&s, ns2).await.unwrap().id, other_ns.id);
    // publisher= filter.
    insert_at(&s, new_job("c", "v/t"), t0()).await;
    let mut pf = claim("a", Some("v/t"), "wa", t0());
    pf.scope = Scope::All;
    pf.publisher = Some("a".into());
    assert!(claim_one(&s, pf).await.is_none(), "only c's job left");
}

/// A tenant's claim takes the best of its own jobs and other tenants' public
/// jobs in one claim order, never another tenant's private job however many
/// wait ahead of it, and without `public_work` only its own jobs (its own
/// public ones from any namespace included).
async fn claims_read_own_and_public_work_only(s: Store) {
    // Tenant n's private backlog, older and higher priority than anything else.
    for _ in 0..50 {
        let mut j = new_job("n", "q/t");
        j.priority = 500;
        insert_at(&s, j, t0() - Duration::seconds(60)).await;
    }
    let mut p = new_job("n", "q/t");
    p.visibility = Visibility::Public;
    p.priority = 200;
    let others_public = insert_at(&s, p, t0()).await;
    let own_low = insert_at(&s, new_job("m", "q/t"), t0() - Duration::seconds(30)).await;
    let mut own_pub = new_job("m", "q/t");
    own_pub.visibility = Visibility::Public;
    own_pub.namespace = "elsewhere".into();
    own_pub.priority = 150;
    let own_public = insert_at(&s, own_pub, t0()).await;

    // Without public work: own jobs in claim order (the own public one first,
    // by priority, though it is in another namespace), nothing of n's.
    let mut own_only = claim("m", Some("q/t"), "wm", t0());
    own_only.public_work = false;
    assert_eq!(
        claim_one(&s, own_only.clone()).await.unwrap().id,
        own_public.id
    );
    assert_eq!(
        claim_one(&s, own_only.clone()).await.unwrap().id,
        own_low.id
    );
    assert!(
        claim_one(&s, own_only).await.is_none(),
        "n's public job needs public_work"
    );

    // With public work, n's public job; its private backlog stays.
    let got = claim_one(&s, claim("m", Some("q/t"), "wm", t0()))
        .await
        .unwrap();
    assert_eq!(got.id, others_public.id);
    assert!(
        claim_one(&s, claim("m", Some("q/t"), "wm", t0()))
            .await
            .is_none()
    );

    // Priority decides between the two sources.
    let mut hi = new_job("n", "q/t");
    hi.visibility = Visibility::Public;
    hi.priority = 300;
    let hi = insert_at(&s, hi, t0()).await;
    let mine = insert_at(&s, new_job("m", "q/t"), t0() - Duration::seconds(90)).await;
    assert_eq!(
        claim_one(&s, claim("m", Some("q/t"), "wm", t0()))
            .await
            .unwrap()
            .id,
        hi.id
    );
    assert_eq!(
        claim_one(&s, claim("m", Some("q/t"), "wm", t0()))
            .await
            .unwrap()
            .id,
        mine.id
    );
    // The admin scope still sees n's backlog.
    let mut all = claim("m", Some("q/t"), "wadmin", t0());
    all.scope = Scope::All;
    assert_eq!(claim_one(&s, all).await.unwrap().tenant, "n");
}

async fn target_worker_and_capability_filters(s: Store) {
    let mut t = new_job("a", "c/t");
    t.target_worker = Some("w-special".into());
    let targeted = insert_at(&s, t, t0()).await;
    let mut c = new_job("a", "c/t");
    c.required_capability = Some("gpu_a".into());
    let capable = insert_at(&s, c, t0()).await;
    assert!(
        claim_one(&s, claim("a", Some("c/t"), "w-other", t0()))
            .await
            .is_none()
    );
    let mut near_miss = claim("a", Some("c/t"), "w-other", t0());
    near_miss.capabilities = vec!["gpu_ab".into(), "gpuxa".into()];
    assert!(
        claim_one(&s, near_miss).await.is_none(),
        "capabilities match exactly"
    );
    let mut gpu = claim("a", Some("c/t"), "w-other", t0());
    gpu.capabilities = vec!["cpu".into(), "gpu_a".into()];
    assert_eq!(claim_one(&s, gpu).await.unwrap().id, capable.id);
    assert_eq!(
        claim_one(&s, claim("a", Some("c/t"), "w-special", t0()))
            .await
            .unwrap()
            .id,
        targeted.id
    );
}

async fn on_behalf_of_filter(s: Store) {
    let mut u = new_job("a", "u/t");
    u.on_behalf_of = Some("alice".into());
    let alice = insert_at(&s, u, t0()).await;
    let mut bob_claim = claim("a", Some("u/t"), "w", t0());
    bob_claim.on_behalf_of = Some("bob".into());
    assert!(claim_one(&s, bob_claim).await.is_none());
    let mut alice_claim = claim("a", Some("u/t"), "w", t0());
    alice_claim.on_behalf_of = Some("alice".into());
    assert_eq!(claim_one(&s, alice_claim).await.unwrap().id, alice.id);
}

async fn cancel_rules(s: Store) {
    let j = insert_at(&s, new_job("a", "k/t"), t0()).await;
    let c = claim_one(&s, claim("a", Some("k/t"), "w", t0()))
        .await
        .unwrap();
    let foreign = s
        .job_cancel(JobCancelParams {
            id: j.id.clone(),
            scope: Scope::Tenant("b".into()),
            reason: "x".into(),
            now: Some(t0()),
        })
        .await;
    assert!(matches!(foreign, Err(StoreError::NotFound)));
    let before = s
        .job_cancel(JobCancelParams {
            id: j.id.clone(),
            scope: Scope::Tenant("a".into()),
            reason: "stop".into(),
            now: Some(t0()),
        })
        .await
        .unwrap();
    assert_eq!(
        before.lease.unwrap().holder,
        "w",
        "caller learns the holder"
    );
    let now = s.job_get(&j.id, &Scope::All).await.unwrap().unwrap();
    assert_eq!(now.state, JobState::Cancelled);
    assert!(matches!(
        s.job_complete(complete(&j.id, token(&c), t0())).await,
        Err(StoreError::LeaseLost)
    ));
    let again = s
        .job_cancel(JobCancelParams {
            id: j.id.clone(),
            scope: Scope::All,
            reason: "x".into(),
            now: Some(t0()),
        })
        .await;
    assert!(matches!(
        again,
        Err(StoreError::InvalidState(JobState::Cancelled))
    ));
}

async fn open_cap_per_tenant(s: Store) {
    let p = |tenant: &str| JobInsertParams {
        job: new_job(tenant, "cap/t"),
        idempotency: None,
        max_open_per_tenant: Some(2),
        now: Some(t0()),
    };
    s.job_insert(p("a")).await.unwrap();
    s.job_insert(p("a")).await.unwrap();
    assert!(matches!(
        s.job_insert(p("a")).await,
        Err(StoreError::TooManyOpen { limit: 2 })
    ));
    s.job_insert(p("b")).await.expect("other tenant unaffected");
    assert_eq!(
        s.jobs_count_open(&Scope::Tenant("a".into())).await.unwrap(),
        2
    );
}

async fn idempotency_records(s: Store) {
    let idem = |hash: &str, body: &str, exp: DateTime<Utc>| IdempotencyKey {
        key: "k1".into(),
        request_hash: hash.into(),
        response_status: 201,
        response_body: body.into(),
        expires_at: exp,
    };
    let exp = t0() + Duration::hours(24);
    let first = s
        .job_insert(JobInsertParams {
            job: new_job("a", "i/t"),
            idempotency: Some(idem("h1", "{\"id\":1}", exp)),
            max_open_per_tenant: None,
            now: Some(t0()),
        })
        .await
        .unwrap();
    assert!(matches!(first, JobInsertOutcome::Inserted(_)));
    let replay = s
        .job_insert(JobInsertParams {
            job: new_job("a", "i/t"),
            idempotency: Some(idem("h2", "{\"id\":2}", exp)),
            max_open_per_tenant: None,
            now: Some(t0()),
        })
        .await
        .unwrap();
    assert_eq!(
        replay,
        JobInsertOutcome::Replayed {
            request_hash: "h1".into(),
            response_status: 201,
            response_body: "{\"id\":1}".into()
        }
    );
    assert_eq!(
        s.jobs_count_open(&Scope::All).await.unwrap(),
        1,
        "replay inserted nothing"
    );
    // Another tenant's same key is independent.
    let other = s
        .job_insert(JobInsertParams {
            job: new_job("b", "i/t"),
            idempotency: Some(idem("h1", "x", exp)),
            max_open_per_tenant: None,
            now: Some(t0()),
        })
        .await
        .unwrap();
    assert!(matches!(other, JobInsertOutcome::Inserted(_)));
    // After expiry the key is free again.
    let later = exp + Duration::seconds(1);
    let fresh = s
        .job_insert(JobInsertParams {
            job: new_job("a", "i/t"),
            idempotency: Some(idem("h3", "y", later + Duration::hours(1))),
            max_open_per_tenant: None,
            now: Some(later),
        })
        .await
        .unwrap();
    assert!(matches!(fresh, JobInsertOutcome::Inserted(_)));
    // A refused insert (cap) does not keep the key.
    let capped = s
        .job_insert(JobInsertParams {
            job: new_job("a", "i/t"),
            idempotency: Some(IdempotencyKey {
                key: "k2".into(),
                ..idem("h", "z", exp)
            }),
            max_open_per_tenant: Some(1),
            now: Some(t0()),
        })
        .await;
    assert!(matches!(capped, Err(StoreError::TooManyOpen { .. })));
    let retry = s
        .job_insert(JobInsertParams {
            job: new_job("a", "i/t"),
            idempotency: Some(IdempotencyKey {
                key: "k2".into(),
                ..idem("h", "z", exp)
            }),
            max_open_per_tenant: None,
            now: Some(t0()),
        })
        .await
        .unwrap();
    assert!(
        matches!(retry, JobInsertOutcome::Inserted(_)),
        "key was rolled back with the refusal"
    );
}

async fn kv_with_ttl(s: Store) {
    let set = |scope: &str, v: serde_json::Value, ttl_ms: i64, now| KvSetParams {
        scope: scope.into(),
        key: "k".into(),
        value: v,
        ttl_ms,
        now: Some(now),
    };
    s.kv_set(set("a", json!("v1"), 10_000, t0())).await.unwrap();
    assert_eq!(
        s.kv_get("a", "k", Some(t0())).await.unwrap(),
        Some(json!("v1"))
    );
    assert_eq!(
        s.kv_get("b", "k", Some(t0())).await.unwrap(),
        None,
        "scoped"
    );
    s.kv_set(set("a", json!({"x": [1, 2]}), 10_000, t0()))
        .await
        .unwrap();
    assert_eq!(
        s.kv_get("a", "k", Some(t0())).await.unwrap(),
        Some(json!({"x": [1, 2]})),
        "replaced"
    );
    assert_eq!(
        s.kv_get("a", "k", Some(t0() + Duration::seconds(10)))
            .await
            .unwrap(),
        None,
        "expired"
    );
}

async fn nonce_replay_records(s: Store) {
    let n = |key: &str, nonce: &str| NonceParams {
        key_id: key.into(),
        nonce: nonce.into(),
        expires_at: t0() + Duration::minutes(10),
    };
    assert!(s.nonce_record(n("k1", "abc")).await.unwrap());
    assert!(!s.nonce_record(n("k1", "abc")).await.unwrap(), "replay");
    assert!(s.nonce_record(n("k2", "abc")).await.unwrap(), "per key");
}

async fn retention_purge(s: Store) {
    let done = insert_at(&s, new_job("a", "p/t"), t0()).await;
    let c = claim_one(&s, claim("a", Some("p/t"), "w", t0()))
        .await
        .unwrap();
    s.job_complete(complete(&done.id, token(&c), t0()))
        .await
        .unwrap();
    let open = insert_at(&s, new_job("a", "p/t"), t0()).await;
    s.kv_set(KvSetParams {
        scope: "a".into(),
        key: "k".into(),
        value: json!(1),
        ttl_ms: 1000,
        now: Some(t0()),
    })
    .await
    .unwrap();
    s.nonce_record(NonceParams {
        key_id: "k".into(),
        nonce: "n".into(),
        expires_at: t0() + Duration::seconds(1),
    })
    .await
    .unwrap();
    let kept = s
        .jobs_purge(PurgeParams {
            completed_before: t0(),
            events_before: None,
            now: Some(t0()),
        })
        .await
        .unwrap();
    assert_eq!(kept, PurgeReport::default(), "nothing past retention yet");
    let r = s
        .jobs_purge(PurgeParams {
            completed_before: t0() + Duration::seconds(1),
            events_before: None,
            now: Some(t0() + Duration::seconds(5)),
        })
        .await
        .unwrap();
    assert_eq!((r.jobs, r.kv, r.nonces), (1, 1, 1));
    assert!(s.job_get(&done.id, &Scope::All).await.unwrap().is_none());
    assert!(
        s.job_get(&open.id, &Scope::All).await.unwrap().is_some(),
        "live jobs are never purged"
    );
}

/// Keys and OAuth clients list by owner and revoke by id: the revocation time
/// reads back through every lookup, a repeat keeps the first time, an unknown
/// id is `false`; revoked capability types read back with their reason.
async fn credentials_list_and_revoke(s: Store) {
    let key = |id: &str, owner: &str, at| ApiKey {
        id: id.into(),
        key_hash: sha256_hex(id.as_bytes()),
        owner: owner.into(),
        role: Role::Tenant,
        created_at: at,
        revoked_at: None,
        last_used_at: None,
    };
    s.api_key_insert(key("k2", "acme", t0() + Duration::seconds(1)))
        .await
        .unwrap();
    s.api_key_insert(key("k1", "acme", t0())).await.unwrap();
    s.api_key_insert(key("k3", "other", t0())).await.unwrap();
    let ids = |keys: Vec<ApiKey>| keys.into_iter().map(|k| k.id).collect::<Vec<_>>();
    assert_eq!(
        ids(s.api_keys_list(Some("acme")).await.unwrap()),
        ["k1", "k2"]
    );
    assert_eq!(s.api_keys_list(None).await.unwrap().len(), 3);

    let at = t0() + Duration::seconds(5);
    assert!(s.api_key_revoke("k1", Some(at)).await.unwrap());
    assert!(
        s.api_key_revoke("k1", Some(at + Duration::seconds(9)))
            .await
            .unwrap()
    );
    assert!(!s.api_key_revoke("nope", Some(at)).await.unwrap());
    let k1 = s
        .api_key_get_by_hash(&sha256_hex(b"k1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(k1.revoked_at, Some(at), "the first revocation time is kept");
    let k2 = s
        .api_key_get_by_hash(&sha256_hex(b"k2"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(k2.revoked_at, None);
    s.api_key_touch("k2", at).await.unwrap();
    let listed = s.api_keys_list(Some("acme")).await.unwrap();
    assert_eq!(listed[0].revoked_at, Some(at));
    assert_eq!(listed[1].last_used_at, Some(at));

    assert!(s.oauth_clients_list(None).await.unwrap().is_empty());
    assert!(!s.oauth_client_revoke("c-none", Some(at)).await.unwrap());

    s.capability_revoke("acme/x", "first", Some(at))
        .await
        .unwrap();
    s.capability_revoke("acme/x", "second", Some(at))
        .await
        .unwrap();
    s.capability_revoke("acme/a", "r", Some(at)).await.unwrap();
    assert_eq!(
        s.capability_revocations().await.unwrap(),
        vec![
            ("acme/a".to_owned(), "r".to_owned()),
            ("acme/x".to_owned(), "second".to_owned())
        ]
    );
}

async fn api_keys_and_settings(s: Store) {
    let k = ApiKey {
        id: "id1".into(),
        key_hash: sha256_hex(b"secret"),
        owner: "acme".into(),
        role: Role::Tenant,
        created_at: t0(),
        revoked_at: None,
        last_used_at: None,
    };
    s.api_key_insert(k.clone()).await.unwrap();
    assert_eq!(
        s.api_key_get_by_hash(&sha256_hex(b"secret")).await.unwrap(),
        Some(k)
    );
    assert_eq!(
        s.api_key_get_by_hash(&sha256_hex(b"other")).await.unwrap(),
        None
    );
    assert_eq!(
        s.setting_get_or_insert("jwt", "first").await.unwrap(),
        "first"
    );
    assert_eq!(
        s.setting_get_or_insert("jwt", "second").await.unwrap(),
        "first",
        "first writer wins"
    );
}

async fn wakeups_on_insert(s: Store) {
    let mut rx = s.notifier().subscribe();
    insert_at(&s, new_job("a", "wake/t"), Utc::now()).await;
    let topic = tokio::time::timeout(StdDuration::from_secs(10), rx.recv())
        .await
        .expect("woken")
        .expect("open");
    assert_eq!(&*topic, "wake/t");
}

async fn failing_operation_spares_concurrent_ones(s: Store) {
    // Inserts racing a refused one (cap reached) all land; the refused one
    // leaves nothing behind — also when the driver commits them as a group.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let tenant = if i % 2 == 0 { "capped" } else { "free" };
            s.job_insert(JobInsertParams {
                job: new_job(tenant, "g/t"),
                idempotency: None,
                max_open_per_tenant: Some(if tenant == "capped" { 3 } else { 1000 }),
                now: Some(t0()),
            })
            .await
        }));
    }
    let mut refused = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(_) => {}
            Err(StoreError::TooManyOpen { limit: 3 }) => refused += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(refused, 7);
    assert_eq!(
        s.jobs_count_open(&Scope::Tenant("capped".into()))
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        s.jobs_count_open(&Scope::Tenant("free".into()))
            .await
            .unwrap(),
        10
    );
}

async fn progress_needs_the_live_lease(s: Store) {
    let j = insert_at(&s, new_job("a", "pr/t"), t0()).await;
    let report = json!({"percent": 50, "message": "half"});
    let early = s
        .job_progress(JobProgressParams {
            id: j.id.clone(),
            proof: LeaseProof::Token("x".into()),
            progress: report.clone(),
            now: Some(t0()),
        })
        .await;
    assert!(
        matches!(early, Err(StoreError::LeaseLost)),
        "not leased yet"
    );
    let c = claim_one(&s, claim("a", Some("pr/t"), "w", t0()))
        .await
        .unwrap();
    let p = s
        .job_progress(JobProgressParams {
            id: j.id.clone(),
            proof: token(&c),
            progress: report.clone(),
            now: Some(t0()),
        })
        .await
        .unwrap();
    assert_eq!(p.progress, Some(report.clone()));
    assert_eq!(
        s.job_get(&j.id, &Scope::All)
            .await
            .unwrap()
            .unwrap()
            .progress,
        Some(report)
    );
    let late = s
        .job_progress(JobProgressParams {
            id: j.id.clone(),
            proof: token(&c),
            progress: json!({}),
            now: Some(t0() + Duration::seconds(31)),
        })
        .await;
    assert!(matches!(late, Err(StoreError::LeaseLost)), "expired lease");
}

async fn device_flow(s: Store) {
    let code = |hash: &str, user: &str| DeviceCode {
        device_code_hash: hash.into(),
        user_code: user.into(),
        client_name: "host-1".into(),
        expires_at: t0() + Duration::minutes(10),
        interval_ms: 5000,
        created_at: t0(),
    };
    let client = |id: &str| OAuthClient {
        client_id: id.into(),
        secret_hash: sha256_hex(b"s"),
        tenant: String::new(),
        name: "host-1".into(),
        created_at: t0(),
        revoked_at: None,
    };
    let poll = |hash: &str, id: &str, at| DevicePollParams {
        device_code_hash: hash.into(),
        new_client: client(id),
        now: Some(at),
    };
    s.device_insert(code("h1", "ABCD-EFGH")).await.unwrap();
    assert_eq!(
        s.device_poll(poll("h1", "c1", t0())).await.unwrap(),
        DevicePoll::Pending
    );
    assert_eq!(
        s.device_poll(poll("h1", "c1", t0() + Duration::seconds(1)))
            .await
            .unwrap(),
        DevicePoll::SlowDown
    );
    assert_eq!(
        s.device_poll(poll("nope", "c1", t0())).await.unwrap(),
        DevicePoll::Unknown
    );
    let unknown = s
        .device_decide(DeviceDecideParams {
            user_code: "ZZZZ-ZZZZ".into(),
            tenant: Some("acme".into()),
            now: Some(t0()),
        })
        .await;
    assert!(matches!(unknown, Err(StoreError::NotFound)));
    s.device_decide(DeviceDecideParams {
        user_code: "ABCD-EFGH".into(),
        tenant: Some("acme".into()),
        now: Some(t0()),
    })
    .await
    .unwrap();
    let twice = s
        .device_decide(DeviceDecideParams {
            user_code: "ABCD-EFGH".into(),
            tenant: None,
            now: Some(t0()),
        })
        .await;
    assert!(
        matches!(twice, Err(StoreError::Conflict(_))),
        "decided once"
    );
    match s
        .device_poll(poll("h1", "c1", t0() + Duration::seconds(10)))
        .await
        .unwrap()
    {
        DevicePoll::Issued(c) => {
            assert_eq!((c.client_id.as_str(), c.tenant.as_str()), ("c1", "acme"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        s.device_poll(poll("h1", "c2", t0() + Duration::seconds(20)))
            .await
            .unwrap(),
        DevicePoll::Unknown,
        "single use"
    );
    let stored = s
        .oauth_client_get("c1")
        .await
        .unwrap()
        .expect("client stored");
    assert_eq!(stored.tenant, "acme");
    assert!(s.oauth_client_get("c2").await.unwrap().is_none());
    // Listed per tenant, revocable.
    let listed = s.oauth_clients_list(Some("acme")).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(
        s.oauth_clients_list(Some("other"))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(s.oauth_client_revoke("c1", Some(t0())).await.unwrap());
    let revoked = s.oauth_client_get("c1").await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(t0()));
    // Denied and expired codes.
    s.device_insert(code("h2", "DENY-DENY")).await.unwrap();
    s.device_decide(DeviceDecideParams {
        user_code: "DENY-DENY".into(),
        tenant: None,
        now: Some(t0()),
    })
    .await
    .unwrap();
    assert_eq!(
        s.device_poll(poll("h2", "c3", t0())).await.unwrap(),
        DevicePoll::Denied
    );
    s.device_insert(code("h3", "LATE-LATE")).await.unwrap();
    assert_eq!(
        s.device_poll(poll("h3", "c4", t0() + Duration::minutes(11)))
            .await
            .unwrap(),
        DevicePoll::Expired
    );
    let late = s
        .device_decide(DeviceDecideParams {
            user_code: "LATE-LATE".into(),
            tenant: Some("acme".into()),
            now: Some(t0() + Duration::minutes(11)),
        })
        .await;
    assert!(matches!(late, Err(StoreError::Conflict(_))));
}

async fn next_job_event(
    rx: &mut tokio::sync::broadcast::Receiver<std::sync::Arc<JobEvent>>,
) -> JobEvent {
    let ev = tokio::time::timeout(StdDuration::from_secs(10), rx.recv())
        .await
        .expect("job event in time")
        .expect("channel open");
    (*ev).clone()
}

async fn job_events_for_watched_jobs_only(s: Store) {
    let mut rx = s.notifier().subscribe_jobs();
    let now = Utc::now();
    // An Intent Bus job settles silently on this channel.
    let plain = insert_at(&s, new_job("a", "ev/plain"), now).await;
    let leased = claim_one(&s, claim("a", Some("ev/plain"), "w1", now))
        .await
        .expect("claim");
    s.job_complete(JobCompleteParams {
        id: plain.id.clone(),
        proof: LeaseProof::Token(claim_token_of(&leased)),
        result: json!("x"),
        result_type: ResultType::Json,
        now: Some(now),
    })
    .await
    .expect("complete");
    // A governance run announces progress (with the report) then settlement,
    // in order, and keeps who answered.
    let mut run = new_job("a", "ev/run");
    run.protocol = Protocol::Governance;
    let run = insert_at(&s, run, now).await;
    let leased = claim_one(&s, claim("a", Some("ev/run"), "w2", now))
        .await
        .expect("claim");
    let token = claim_token_of(&leased);
    for n in 1..=3 {
        s.job_progress(JobProgressParams {
            id: run.id.clone(),
            proof: LeaseProof::Token(token.clone()),
            progress: json!({"message": format!("step {n}")}),
            now: Some(now),
        })
        .await
        .expect("progress");
    }
    let done = s
        .job_complete(JobCompleteParams {
            id: run.id.clone(),
            proof: LeaseProof::Token(token),
            result: json!({"output": "ok"}),
            result_type: ResultType::Json,
            now: Some(now),
        })
        .await
        .expect("complete");
    assert_eq!(done.last_holder.as_deref(), Some("w2"));
    for n in 1..=3 {
        let ev = next_job_event(&mut rx).await;
        assert_eq!(ev.id, run.id, "only the watched job is announced");
        assert_eq!(
            ev.change,
            JobChange::Progress(Some(json!({"message": format!("step {n}")})))
        );
    }
    let ev = next_job_event(&mut rx).await;
    assert_eq!(
        (ev.id.as_str(), ev.change),
        (run.id.as_str(), JobChange::Settled(JobState::Fulfilled))
    );

    // Cancel and a terminal failure are settlements too; a retry is not.
    let mut other = new_job("a", "ev/run");
    other.protocol = Protocol::Governance;
    let other = insert_at(&s, other, now).await;
    s.job_cancel(JobCancelParams {
        id: other.id.clone(),
        scope: Scope::Tenant("a".into()),
        reason: "timeout".into(),
        now: Some(now),
    })
    .await
    .expect("cancel");
    let ev = next_job_event(&mut rx).await;
    assert_eq!(
        (ev.id.as_str(), ev.change),
        (other.id.as_str(), JobChange::Settled(JobState::Cancelled))
    );

    let mut failing = new_job("a", "ev/run");
    failing.protocol = Protocol::Governance;
    failing.max_attempts = 2;
    let failing = insert_at(&s, failing, now).await;
    for (attempt, state) in [(1, JobState::Open), (2, JobState::Dead)] {
        let at = now + Duration::hours(attempt);
        let l = claim_one(&s, claim("a", Some("ev/run"), "w3", at))
            .await
            .expect("claim");
        assert_eq!(l.id, failing.id);
        let j = s
            .job_fail(JobFailParams {
                id: failing.id.clone(),
                proof: LeaseProof::Token(claim_token_of(&l)),
                error: "boom".into(),
                terminal: false,
                refund_attempt: false,
                max_backoff_ms: 1000,
                now: Some(at),
            })
            .await
            .expect("fail");
        assert_eq!(j.state, state);
    }
    let ev = next_job_event(&mut rx).await;
    assert_eq!(
        (ev.id.as_str(), ev.change),
        (failing.id.as_str(), JobChange::Settled(JobState::Dead))
    );
    assert!(rx.try_recv().is_err(), "nothing else was announced");
}

fn trace(id: &str, tenant: &str, decision: &str, at: DateTime<Utc>) -> Trace {
    Trace {
        id: id.into(),
        tenant: tenant.into(),
        kind: "run".into(),
        decision: decision.into(),
        reason: "within policy".into(),
        risk_score: 0.25,
        policy: "default@abc".into(),
        matched_rules: vec!["r1".into(), "r2".into()],
        violations: json!([{"rule": "r1", "kind": "deny_pattern", "message": "m"}]),
        mode: "balanced".into(),
        budget: 0.5,
        status: if decision == "BLOCK" {
            "blocked"
        } else {
            "pending"
        }
        .into(),
        job_id: (decision != "BLOCK").then(|| format!("job-{id}")),
        topic: Some("gateway/run".into()),
        worker: None,
        latency_ms: 0.0,
        created_at: at,
        settled_at: None,
        inputs: None,
    }
}

async fn traces_settle_scope_and_count(s: Store) {
    let t = t0();
    s.trace_insert(trace("t1", "acme", "ALLOW", t))
        .await
        .expect("insert");
    s.trace_insert(trace("t2", "acme", "BLOCK", t + Duration::minutes(1)))
        .await
        .expect("insert");
    s.trace_insert(trace("t3", "acme", "ALLOW", t + Duration::minutes(2)))
        .await
        .expect("insert");
    s.trace_insert(trace("t4", "other", "THROTTLE", t + Duration::minutes(2)))
        .await
        .expect("insert");
    assert!(
        s.trace_insert(trace("t1", "acme", "ALLOW", t))
            .await
            .is_err(),
        "ids are unique"
    );

    let got = s
        .trace_get("t1", &Scope::Tenant("acme".into()))
        .await
        .expect("get")
        .expect("found");
    assert_eq!(got, trace("t1", "acme", "ALLOW", t), "round trip");
    assert_eq!(
        s.trace_get("t1", &Scope::Tenant("other".into()))
            .await
            .expect("get"),
        None
    );
    assert!(s.trace_get("t1", &Scope::All).await.expect("get").is_some());
    assert_eq!(s.trace_get("nope", &Scope::All).await.expect("get"), None);

    let settle = |status: &str| TraceSettleParams {
        id: "t1".into(),
        status: status.into(),
        worker: Some("w-9".into()),
        latency_ms: 12.5,
        now: Some(t + Duration::seconds(3)),
    };
    assert!(s.trace_settle(settle("completed")).await.expect("settle"));
    assert!(
        !s.trace_settle(settle("timeout")).await.expect("settle"),
        "settles once"
    );
    let got = s
        .trace_get("t1", &Scope::All)
        .await
        .expect("get")
        .expect("found");
    assert_eq!(
        (
            got.status.as_str(),
            got.worker.as_deref(),
            got.latency_ms,
            got.settled_at
        ),
        (
            "completed",
            Some("w-9"),
            12.5,
            Some(t + Duration::seconds(3))
        )
    );

    let counts = s
        .trace_counts(&Scope::Tenant("acme".into()), t - Duration::seconds(1))
        .await
        .expect("counts");
    let pairs: Vec<(String, i64)> = counts.into_iter().map(|c| (c.decision, c.count)).collect();
    assert_eq!(pairs, vec![("ALLOW".into(), 2), ("BLOCK".into(), 1)]);
    let recent = s
        .trace_counts(&Scope::Tenant("acme".into()), t + Duration::seconds(90))
        .await
        .expect("counts");
    assert_eq!(
        recent,
        vec![DecisionCount {
            decision: "ALLOW".into(),
            count: 1
        }]
    );
    let all = s
        .trace_counts(&Scope::All, t - Duration::seconds(1))
        .await
        .expect("counts");
    assert_eq!(all.iter().map(|c| c.count).sum::<i64>(), 4);

    // Retention: traces older than the cutoff go with the jobs.
    let report = s
        .jobs_purge(PurgeParams {
            completed_before: t + Duration::seconds(90),
            events_before: None,
            now: Some(t + Duration::days(30)),
        })
        .await
        .expect("purge");
    assert_eq!(report.traces, 2);
    assert_eq!(s.trace_get("t1", &Scope::All).await.expect("get"), None);
    assert!(s.trace_get("t3", &Scope::All).await.expect("get").is_some());
}

async fn secrets_per_tenant(s: Store) {
    let t = t0();
    let secret = |tenant: &str, value: &str, at| Secret {
        tenant: tenant.into(),
        name: "db".into(),
        provider: "custom".into(),
        allowed_tools: vec!["*".into()],
        ciphertext: value.into(),
        created_at: at,
        updated_at: at,
    };
    s.secret_put(secret("acme", "c1", t)).await.expect("put");
    s.secret_put(secret("other", "c2", t)).await.expect("put");
    assert_eq!(
        s.secret_get("acme", "db").await.expect("get"),
        Some(secret("acme", "c1", t))
    );
    // Replacing keeps the creation time.
    let later = t + Duration::hours(1);
    s.secret_put(secret("acme", "c3", later))
        .await
        .expect("put");
    let got = s
        .secret_get("acme", "db")
        .await
        .expect("get")
        .expect("found");
    assert_eq!(
        (got.ciphertext.as_str(), got.created_at, got.updated_at),
        ("c3", t, later)
    );
    assert!(s.secret_delete("acme", "db").await.expect("delete"));
    assert!(
        !s.secret_delete("acme", "db").await.expect("delete"),
        "gone"
    );
    assert_eq!(s.secret_get("acme", "db").await.expect("get"), None);
    assert_eq!(
        s.secret_get("other", "db")
            .await
            .expect("get")
            .map(|x| x.ciphertext),
        Some("c2".into())
    );
    assert_eq!(s.secret_get("acme", "missing").await.expect("get"), None);
}

async fn capability_schemas_put_get_delete(s: Store) {
    let t = t0();
    let schema =
        |input: serde_json::Value, output: Option<serde_json::Value>, at| CapabilitySchema {
            capability: "acme/echo".into(),
            input_schema: input,
            output_schema: output,
            updated_at: at,
        };
    assert_eq!(s.schema_get("acme/echo").await.expect("get"), None);
    assert!(
        !s.schema_delete("acme/echo").await.expect("delete"),
        "nothing to delete"
    );
    // Documents round-trip exactly (nesting, unicode, numbers).
    let first = schema(
        json!({"type": "object", "required": ["x"], "properties": {"x": {"type": "integer", "maximum": 1.5e3}, "é": {"const": "✓"}}}),
        Some(json!({"type": "object"})),
        t,
    );
    s.schema_put(first.clone()).await.expect("put");
    assert_eq!(s.schema_get("acme/echo").await.expect("get"), Some(first));
    assert_eq!(s.schema_get("acme/other").await.expect("get"), None);
    // A put replaces the whole row: no output schema clears the old one.
    let later = t + Duration::minutes(5);
    let second = schema(json!(true), None, later);
    s.schema_put(second.clone()).await.expect("replace");
    assert_eq!(s.schema_get("acme/echo").await.expect("get"), Some(second));
    assert!(s.schema_delete("acme/echo").await.expect("delete"));
    assert!(!s.schema_delete("acme/echo").await.expect("delete"), "gone");
    assert_eq!(s.schema_get("acme/echo").await.expect("get"), None);
    // Concurrent puts of distinct capabilities all land.
    let puts = (0..8).map(|i| {
        let s = s.clone();
        async move {
            s.schema_put(CapabilitySchema {
                capability: format!("acme/c{i}"),
                input_schema: json!({"const": i}),
                output_schema: None,
                updated_at: t,
            })
            .await
        }
    });
    for r in futures_util::future::join_all(puts).await {
        r.expect("put");
    }
    for i in 0..8 {
        let got = s.schema_get(&format!("acme/c{i}")).await.expect("get");
        assert_eq!(got.map(|g| g.input_schema), Some(json!({"const": i})));
    }
}

async fn job_stats_by_topic_and_state(s: Store) {
    let t = t0();
    let at = |secs| t + Duration::seconds(secs);
    assert!(
        s.jobs_stats().await.expect("stats").is_empty(),
        "empty store"
    );
    // q/a: four jobs, one of them delayed a minute; q/b: one that dies; q/c: one open.
    let first = insert_at(&s, new_job("a", "q/a"), at(0)).await;
    let second = insert_at(&s, new_job("a", "q/a"), at(1)).await;
    let mut delayed = new_job("a", "q/a");
    delayed.delay_ms = 60_000;
    insert_at(&s, delayed, at(2)).await;
    insert_at(&s, new_job("a", "q/a"), at(3)).await;
    let mut doomed = new_job("b", "q/b");
    doomed.max_attempts = 1;
    insert_at(&s, doomed, at(0)).await;
    insert_at(&s, new_job("c", "q/c"), at(4)).await;
    // Settled jobs leave the figures: the oldest q/a job is fulfilled, q/b dies.
    let c1 = claim_one(&s, claim("a", Some("q/a"), "w", at(5)))
        .await
        .expect("claim");
    assert_eq!(c1.id, first.id);
    s.job_complete(complete(&c1.id, token(&c1), at(6)))
        .await
        .expect("complete");
    let c2 = claim_one(&s, claim("a", Some("q/a"), "w", at(10)))
        .await
        .expect("claim");
    assert_eq!(c2.id, second.id);
    let cb = claim_one(&s, claim("b", Some("q/b"), "w", at(10)))
        .await
        .expect("claim");
    let mut terminal = fail(&cb.id, token(&cb), at(11));
    terminal.terminal = true;
    s.job_fail(terminal).await.expect("fail");
    let stats = |topic: &str, state, count, oldest| JobStats {
        topic: topic.into(),
        state,
        count,
        oldest,
    };
    // Open: the earliest run_at (the delayed job's lies ahead); leased: the
    // earliest grant. Ordered by topic, then state.
    assert_eq!(
        s.jobs_stats().await.expect("stats"),
        vec![
            stats("q/a", JobState::Leased, 1, at(10)),
            stats("q/a", JobState::Open, 2, at(3)),
            stats("q/c", JobState::Open, 1, at(4)),
        ]
    );
    // A renewal does not make a lease younger.
    s.job_extend(JobExtendParams {
        id: c2.id.clone(),
        proof: token(&c2),
        lease_ms: 30_000,
        now: Some(at(20)),
    })
    .await
    .expect("extend");
    let leased = s.jobs_stats().await.expect("stats");
    assert_eq!(leased[0], stats("q/a", JobState::Leased, 1, at(10)));
}

fn enable_events(s: &Store) -> agw_events::EventPublicKey {
    let signer = agw_events::EventSigner::generate("gw-test").expect("signer");
    let public = signer.public_key();
    s.set_event_log(std::sync::Arc::new(EventLog::new(
        signer,
        agw_events::CaptureMode::Redacted,
        agw_events::default_redact_keys(),
    )));
    public
}

async fn all_events(s: &Store, scope: Scope) -> Vec<agw_events::ExecutionEvent> {
    s.events_list(EventQuery {
        scope,
        correlation_id: None,
        topic: None,
        protocol: None,
        status: None,
        since: None,
        until: None,
        after_seq: 0,
        limit: 1000,
    })
    .await
    .expect("list")
    .into_iter()
    .map(|e| e.event)
    .collect()
}

/// Events past their retention are purged with the jobs' purge, by the time
/// they completed, except the newest (so `seq` never goes back); ingested
/// events by the time they arrived.
async fn events_and_ingested_events_expire(s: Store) {
    enable_events(&s);
    let t = t0();
    for hour in 0..3 {
        let at = t + Duration::hours(hour);
        let j = insert_at(&s, new_job("acme", "ev/purge"), at).await;
        let c = claim_one(&s, claim("acme", Some("ev/purge"), "w", at))
            .await
            .expect("claim");
        assert_eq!(c.id, j.id);
        s.job_complete(complete(&j.id, token(&c), at))
            .await
            .expect("complete");
    }
    let before = all_events(&s, Scope::All).await;
    assert_eq!(before.len(), 3);
    let ingest = |id: &str, at| IngestedEvent {
        tenant: "acme".into(),
        event_id: id.into(),
        correlation_id: "c".into(),
        body: json!({"event_id": id}),
        received_at: at,
    };
    assert!(s.event_ingest(ingest("old", t)).await.unwrap());
    assert!(
        s.event_ingest(ingest("new", t + Duration::hours(2)))
            .await
            .unwrap()
    );
    let purge = |before| PurgeParams {
        completed_before: t - Duration::days(1),
        events_before: Some(before),
        now: Some(t),
    };
    let r = s
        .jobs_purge(purge(t + Duration::minutes(90)))
        .await
        .unwrap();
    assert_eq!((r.events, r.ingested), (2, 1));
    let left = all_events(&s, Scope::All).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].event_id, before[2].event_id, "the newest stays");
    let ingested = s.events_ingested(&Scope::All, None, 0, 10).await.unwrap();
    assert_eq!(ingested.len(), 1);
    // Past retention, but the newest event stays.
    let r = s.jobs_purge(purge(t + Duration::days(9))).await.unwrap();
    assert_eq!((r.events, r.ingested), (0, 1));
    assert_eq!(all_events(&s, Scope::All).await.len(), 1);
    // Without an event cutoff nothing of them goes.
    let r = s
        .jobs_purge(PurgeParams {
            events_before: None,
            ..purge(t)
        })
        .await
        .unwrap();
    assert_eq!((r.events, r.ingested), (0, 0));
}

async fn settlements_write_signed_chained_events(s: Store) {
    let public = enable_events(&s);
    let mut announced = s.notifier().subscribe_events();
    let now = Utc::now();
    // Fail (retry) then fulfil: one chain of two events on the job id.
    let mut job = new_job("acme", "ev/chain");
    job.input = json!({"q": 1, "api_key": "sk-live"});
    let job = insert_at(&s, job, now).await;
    let first = claim_one(&s, claim("acme", Some("ev/chain"), "w1", now))
        .await
        .expect("claim");
    // A settlement that does not happen writes nothing.
    let lost = s
        .job_complete(JobCompleteParams {
            id: job.id.clone(),
            proof: LeaseProof::Token("wrong".into()),
            result: json!("x"),
            result_type: ResultType::Json,
            now: Some(now),
        })
        .await;
    assert!(matches!(lost, Err(StoreError::LeaseLost)));
    assert!(
        all_events(&s, Scope::All).await.is_empty(),
        "no event without a settlement"
    );
    s.job_fail(JobFailParams {
        id: job.id.clone(),
        proof: LeaseProof::Token(claim_token_of(&first)),
        error: "boom".into(),
        terminal: false,
        refund_attempt: false,
        max_backoff_ms: 0,
        now: Some(now),
    })
    .await
    .expect("fail");
    let later = now + Duration::seconds(5);
    let second = claim_one(&s, claim("acme", Some("ev/chain"), "w2", later))
        .await
        .expect("reclaim");
    s.job_complete(JobCompleteParams {
        id: job.id.clone(),
        proof: LeaseProof::Token(claim_token_of(&second)),
        result: json!({"answer": 42, "token": "t-secret"}),
        result_type: ResultType::Json,
        now: Some(later),
    })
    .await
    .expect("complete");
    let evs = all_events(&s, Scope::Tenant("acme".into())).await;
    assert_eq!(evs.len(), 2);
    assert_eq!(
        evs.iter()
            .map(|e| (e.correlation_id.as_str(), e.chain_position))
            .collect::<Vec<_>>(),
        [(job.id.as_str(), 1), (job.id.as_str(), 2)]
    );
    assert_eq!(
        (evs[0].status, evs[1].status),
        (agw_events::EventStatus::Error, agw_events::EventStatus::Ok)
    );
    assert_eq!(evs[1].action, "intent_bus.ev/chain");
    assert_eq!(
        evs[1].prev_event_hash,
        agw_events::event_hash(&evs[0]).unwrap()
    );
    let attrs = evs[1].attributes.as_ref().unwrap();
    assert_eq!(
        (attrs["worker"].as_str(), attrs["attempt"].as_i64()),
        (Some("w2"), Some(2))
    );
    // Redaction: secrets in inputs and output never reach the event.
    let text = serde_json::to_string(&evs).unwrap();
    assert!(
        !text.contains("sk-live") && !text.contains("t-secret"),
        "{text}"
    );
    assert_eq!(evs[1].output.as_ref().unwrap()["answer"], 42);
    let key = public;
    let summary = agw_events::verify_chain(&evs, |_| Some(key)).expect("chain verifies");
    assert_eq!(summary.events, 2);
    // Each committed event is announced once, with the JSON as stored.
    for stored in &evs {
        let committed = announced.try_recv().expect("announced");
        assert_eq!(&committed.event, stored);
        let parsed: agw_events::ExecutionEvent =
            serde_json::from_str(&committed.json).expect("announced JSON");
        assert_eq!(&parsed, stored);
    }
    assert!(announced.try_recv().is_err(), "announced once");
    assert!(
        all_events(&s, Scope::Tenant("other".into()))
            .await
            .is_empty(),
        "tenant-scoped"
    );

    // Expiry and cancel of a leased job end dispatches; cancelling an open
    // (never dispatched) Intent Bus job does not.
    let exp = insert_at(&s, new_job("acme", "ev/exp"), now).await;
    claim_one(&s, claim("acme", Some("ev/exp"), "w3", now))
        .await
        .expect("claim");
    s.jobs_expire_leases(now + Duration::minutes(5))
        .await
        .expect("expire");
    let idle = insert_at(&s, new_job("acme", "ev/idle"), now).await;
    s.job_cancel(JobCancelParams {
        id: idle.id.clone(),
        scope: Scope::All,
        reason: "r".into(),
        now: Some(now),
    })
    .await
    .expect("cancel");
    let mut gov = new_job("acme", "ev/gov");
    gov.protocol = Protocol::Governance;
    gov.metadata = Some(json!({"trace_id": "trace-1", "kind": "chat"}));
    let gov = insert_at(&s, gov, now).await;
    s.job_cancel(JobCancelParams {
        id: gov.id.clone(),
        scope: Scope::All,
        reason: "run timed out".into(),
        now: Some(now),
    })
    .await
    .expect("cancel");
    let mut blocked = trace("trace-2", "acme", "BLOCK", now);
    blocked.inputs = Some(json!({"input": "my password is hunter2", "password": "hunter2"}));
    s.trace_insert(blocked).await.expect("trace");
    s.trace_insert(trace("trace-3", "acme", "ALLOW", now))
        .await
        .expect("trace");
    let evs = all_events(&s, Scope::All).await;
    let by_corr = |c: &str| {
        evs.iter()
            .filter(|e| e.correlation_id == c)
            .collect::<Vec<_>>()
    };
    let e = by_corr(&exp.id);
    assert_eq!(
        (e.len(), e[0].error.as_ref().unwrap()["message"].as_str()),
        (1, Some("lease_expired"))
    );
    assert!(by_corr(&idle.id).is_empty(), "no dispatch, no event");
    let g = by_corr("trace-1");
    assert_eq!((g.len(), g[0].action.as_str()), (1, "governance.chat"));
    let b = by_corr("trace-2");
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].error.as_ref().unwrap()["name"], "GovernanceBlock");
    assert!(
        !serde_json::to_string(b[0]).unwrap().contains("\"hunter2\""),
        "redacted key"
    );
    assert!(
        by_corr("trace-3").is_empty(),
        "allowed runs get their event when the job settles"
    );
    let key = public;
    agw_events::verify_chain(&evs, |_| Some(key)).expect("every chain verifies");

    // Filters and the cursor.
    let q = |corr: Option<&str>, status: Option<&str>, after: i64, limit: i64| EventQuery {
        scope: Scope::Tenant("acme".into()),
        correlation_id: corr.map(Into::into),
        topic: None,
        protocol: None,
        status: status.map(Into::into),
        since: None,
        until: None,
        after_seq: after,
        limit,
    };
    let ok = s.events_list(q(None, Some("ok"), 0, 100)).await.unwrap();
    assert_eq!(ok.len(), 1);
    let page1 = s.events_list(q(None, None, 0, 2)).await.unwrap();
    let page2 = s
        .events_list(q(None, None, page1[1].seq, 100))
        .await
        .unwrap();
    assert_eq!(page1.len() + page2.len(), evs.len());
    assert!(page2.iter().all(|e| e.seq > page1[1].seq));
    assert_eq!(
        s.events_list(q(Some(&job.id), None, 0, 100))
            .await
            .unwrap()
            .len(),
        2
    );
}

async fn event_keys_and_ingest(s: Store) {
    let t = t0();
    let key = |id: &str, pk: &str| EventKey {
        key_id: id.into(),
        public_key: pk.into(),
        created_at: t,
    };
    s.event_key_put(key("gw-a:k1", "AAA")).await.unwrap();
    s.event_key_put(key("gw-a:k1", "BBB")).await.unwrap();
    s.event_key_put(key("gw-b:k1", "CCC")).await.unwrap();
    assert_eq!(
        s.event_keys().await.unwrap(),
        vec![key("gw-a:k1", "AAA"), key("gw-b:k1", "CCC")],
        "first key wins"
    );
    let ev = |id: &str, tenant: &str| IngestedEvent {
        tenant: tenant.into(),
        event_id: id.into(),
        correlation_id: "c1".into(),
        body: json!({"event_id": id}),
        received_at: t,
    };
    assert!(s.event_ingest(ev("e1", "acme")).await.unwrap());
    assert!(
        s.event_ingest(ev("e1", "zeta")).await.unwrap(),
        "ids are unique per tenant: another tenant's e1 is its own"
    );
    assert!(
        !s.event_ingest(ev("e1", "acme")).await.unwrap(),
        "duplicates ignored"
    );
    assert!(s.event_ingest(ev("e2", "other")).await.unwrap());
    let mine = s
        .events_ingested(&Scope::Tenant("acme".into()), Some("c1"), 0, 10)
        .await
        .unwrap();
    assert_eq!(
        mine.iter()
            .map(|(_, v)| v["event_id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["e1"]
    );
    assert_eq!(
        s.events_ingested(&Scope::All, None, 0, 10)
            .await
            .unwrap()
            .len(),
        3
    );
}

// === stamping ===

macro_rules! conformance {
    ($driver:ident, $make:expr) => {
        mod $driver {
            use super::*;
            conformance!(@cases $make;
                insert_and_get, claim_complete_roundtrip, claim_any_topic_and_holder_key_proof,
                concurrent_claims_never_share_a_job, ordering_priority_attempts_age,
                delay_holds_until_run_at, lease_expiry_reclaim_and_stale_token,
                expiry_sweep_requeues_then_kills, retry_backoff_then_dead, terminal_fail_and_refund,
                extend_renews_lease, tenant_and_visibility_filters,
                claims_read_own_and_public_work_only,
                target_worker_and_capability_filters, on_behalf_of_filter, cancel_rules,
                open_cap_per_tenant, idempotency_records, kv_with_ttl, nonce_replay_records,
                retention_purge, api_keys_and_settings, credentials_list_and_revoke, wakeups_on_insert,
                failing_operation_spares_concurrent_ones, progress_needs_the_live_lease, device_flow,
                leases_by_holder, job_events_for_watched_jobs_only,
                traces_settle_scope_and_count, secrets_per_tenant,
                settlements_write_signed_chained_events, events_and_ingested_events_expire, event_keys_and_ingest,
                capability_schemas_put_get_delete, job_stats_by_topic_and_state);
        }
    };
    (@cases $make:expr; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let t: TestStore = $make.await;
                super::$case(t.store.clone()).await;
                t.cleanup().await;
            }
        )*
    };
}

conformance!(sqlite, TestStore::sqlite());
conformance!(postgres, TestStore::postgres());

/// PostgreSQL only (SQLite's one writer serialises settlements): a
/// settlement whose statement waited for its job's row lock while the lock's
/// holder committed an event on the job's chain must link after that event,
/// although its statement's snapshot does not have it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_settlement_links_after_an_event_committed_while_it_waited() {
    use sqlx::Connection as _;
    let t = TestStore::postgres().await;
    let s = t.store.clone();
    let public = enable_events(&s);
    let now = Utc::now();
    let job = insert_at(&s, new_job("acme", "ev/race"), now).await;
    let leased = claim_one(&s, claim("acme", Some("ev/race"), "w1", now))
        .await
        .expect("claimed");
    let url = t.pg_url().expect("postgres");
    let mut holder = sqlx::PgConnection::connect(&url).await.expect("connect");
    let mut watch = sqlx::PgConnection::connect(&url).await.expect("connect");
    // Another transaction holds the job's row lock and appends to its chain.
    let other_hash = format!("sha256:{}", "ab".repeat(32));
    sqlx::query("BEGIN")
        .execute(&mut holder)
        .await
        .expect("begin");
    sqlx::query("UPDATE jobs SET updated_at = updated_at WHERE id = $1")
        .bind(&job.id)
        .execute(&mut holder)
        .await
        .expect("lock the job");
    sqlx::query(
        "INSERT INTO events (event_id, tenant, correlation_id, chain_position, event_hash,
            protocol, topic, status, completed_at, body)
         VALUES ('other', 'acme', $1, 1, $2, 'intent_bus', 'ev/race', 'error', 0, '{}')",
    )
    .bind(&job.id)
    .bind(&other_hash)
    .execute(&mut holder)
    .await
    .expect("other event");
    let settle = tokio::spawn({
        let s = s.clone();
        let p = complete(&job.id, token(&leased), Utc::now());
        async move { s.job_complete(p).await }
    });
    // Commit only once the settlement is waiting for the lock (polled from a
    // third connection: a transaction sees one snapshot of the activity view).
    let mut waited = false;
    for _ in 0..1000 {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&mut watch)
        .await
        .expect("activity");
        if waiting > 0 {
            waited = true;
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(10)).await;
    }
    assert!(waited, "the settlement never waited for the row lock");
    sqlx::query("COMMIT")
        .execute(&mut holder)
        .await
        .expect("commit");
    let done = settle
        .await
        .expect("task")
        .expect("the settlement succeeds");
    assert_eq!(done.state, JobState::Fulfilled);
    let chain: Vec<(i64, String)> = sqlx::query_as(
        "SELECT chain_position, body FROM events WHERE correlation_id = $1 ORDER BY chain_position",
    )
    .bind(&job.id)
    .fetch_all(&mut watch)
    .await
    .expect("chain");
    assert_eq!(
        chain.iter().map(|(p, _)| *p).collect::<Vec<_>>(),
        [1, 2],
        "the settlement's event follows the other one"
    );
    let event: agw_events::ExecutionEvent = serde_json::from_str(&chain[1].1).expect("event");
    assert_eq!(event.prev_event_hash, other_hash);
    assert_eq!(event.chain_position, 2);
    agw_events::verify_signature(&event, &public).expect("signed after relinking");
    drop((holder, watch));
    t.cleanup().await;
}

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
