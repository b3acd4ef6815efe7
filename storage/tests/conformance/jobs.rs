//! Conformance cases: Jobs and leases.

use super::*;

pub(crate) async fn insert_and_get(s: Store) {
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

pub(crate) async fn claim_complete_roundtrip(s: Store) {
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

pub(crate) async fn claim_any_topic_and_holder_key_proof(s: Store) {
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

pub(crate) async fn concurrent_claims_never_share_a_job(s: Store) {
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

pub(crate) async fn ordering_priority_attempts_age(s: Store) {
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

pub(crate) async fn delay_holds_until_run_at(s: Store) {
    let mut d = new_job("a", "d/t");
    d.delay_ms = 10_000;
    let j = insert_at(&s, d, t0()).await;
    assert_eq!(j.run_at, t0() + Duration::seconds(10));
    // A job due at once was announced by its insert: the due scan leaves it out.
    insert_at(&s, new_job("a", "now/t"), t0() + Duration::seconds(10)).await;
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

pub(crate) async fn lease_expiry_reclaim_and_stale_token(s: Store) {
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

pub(crate) async fn leases_by_holder(s: Store) {
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

pub(crate) async fn expiry_sweep_requeues_then_kills(s: Store) {
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

pub(crate) async fn retry_backoff_then_dead(s: Store) {
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

pub(crate) async fn terminal_fail_and_refund(s: Store) {
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

pub(crate) async fn extend_renews_lease(s: Store) {
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

pub(crate) async fn tenant_and_visibility_filters(s: Store) {
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
pub(crate) async fn claims_read_own_and_public_work_only(s: Store) {
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

pub(crate) async fn target_worker_and_capability_filters(s: Store) {
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

pub(crate) async fn on_behalf_of_filter(s: Store) {
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

pub(crate) async fn cancel_rules(s: Store) {
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

pub(crate) async fn open_cap_per_tenant(s: Store) {
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

pub(crate) async fn idempotency_records(s: Store) {
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

pub(crate) async fn retention_purge(s: Store) {
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

pub(crate) async fn wakeups_on_insert(s: Store) {
    let mut rx = s.notifier().subscribe();
    insert_at(&s, new_job("a", "wake/t"), Utc::now()).await;
    let topic = tokio::time::timeout(StdDuration::from_secs(10), rx.recv())
        .await
        .expect("woken")
        .expect("open");
    // The topic itself, or (behind a transaction pooler without LISTEN) a
    // wake-up of every topic.
    assert!(Notifier::wakes(&topic, "wake/t"), "{topic:?}");
    // A wake-up that names the job (SQLite: this process committed it)
    // names it right; PostgreSQL's come through NOTIFY and name the topic.
    if let Some(hint) = topic.hint() {
        assert_eq!(hint.tenant, "a");
    }
}

/// `JobHint::claimable_by` (which decides whom a wake-up about one job
/// wakes) says yes exactly where the claim takes the job: over jobs of
/// every filter the claim applies and claimants of every kind.
pub(crate) async fn wake_hints_agree_with_the_claim(s: Store) {
    let jobs: Vec<(&str, NewJob)> = vec![
        ("own private", new_job("acme", "")),
        (
            "other ns",
            NewJob {
                namespace: "ops".into(),
                ..new_job("acme", "")
            },
        ),
        ("foreign private", new_job("evil", "")),
        (
            "foreign public",
            NewJob {
                visibility: Visibility::Public,
                namespace: "ops".into(),
                ..new_job("evil", "")
            },
        ),
        (
            "targeted",
            NewJob {
                target_worker: Some("w1".into()),
                ..new_job("acme", "")
            },
        ),
        (
            "needs cap",
            NewJob {
                required_capability: Some("gpu".into()),
                ..new_job("acme", "")
            },
        ),
        (
            "for ann",
            NewJob {
                on_behalf_of: Some("ann".into()),
                ..new_job("acme", "")
            },
        ),
    ];
    let base = claim("acme", Some(""), "w1", t0());
    let claimants: Vec<(&str, JobClaimParams)> = vec![
        ("tenant, public work", base.clone()),
        (
            "tenant, own only, any namespace",
            JobClaimParams {
                public_work: false,
                namespace: None,
                ..base.clone()
            },
        ),
        (
            "other worker with gpu",
            JobClaimParams {
                worker_id: "w2".into(),
                capabilities: vec!["gpu".into(), "cpu".into()],
                ..base.clone()
            },
        ),
        (
            "for ann",
            JobClaimParams {
                on_behalf_of: Some("ann".into()),
                ..base.clone()
            },
        ),
        (
            "for bob",
            JobClaimParams {
                on_behalf_of: Some("bob".into()),
                ..base.clone()
            },
        ),
        (
            "publisher evil",
            JobClaimParams {
                publisher: Some("evil".into()),
                ..base.clone()
            },
        ),
        (
            "admin",
            JobClaimParams {
                scope: Scope::All,
                ..base.clone()
            },
        ),
    ];
    let mut n = 0;
    for (what, job) in &jobs {
        for (who, params) in &claimants {
            n += 1;
            let topic = format!("hint/{n}");
            let job = insert_at(
                &s,
                NewJob {
                    id: new_job_id(),
                    topic: topic.clone(),
                    ..job.clone()
                },
                t0(),
            )
            .await;
            let params = JobClaimParams {
                topic: Some(topic.clone()),
                ..params.clone()
            };
            let hinted = JobHint::of(&job).claimable_by(&topic, &params);
            let claimed = s.job_claim(params).await.expect("claim").is_some();
            assert_eq!(hinted, claimed, "{what} job, {who} claimant");
        }
    }
}

/// Many concurrent publishes of one tenant never pass its cap (also while a
/// driver admits without counting below part of it), and once they are done
/// the cap is exact: publishing one at a time fills it to the last job.
pub(crate) async fn open_cap_holds_under_concurrent_publishes(s: Store) {
    const CAP: i64 = 40;
    let insert = |s: Store| async move {
        s.job_insert(JobInsertParams {
            job: new_job("busy", "cap/t"),
            idempotency: None,
            max_open_per_tenant: Some(CAP),
            now: None,
        })
        .await
    };
    let mut tasks = Vec::new();
    for _ in 0..100 {
        tasks.push(tokio::spawn(insert(s.clone())));
    }
    let mut admitted = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(JobInsertOutcome::Inserted(_)) => admitted += 1,
            Ok(other) => panic!("{other:?}"),
            Err(StoreError::TooManyOpen { limit: CAP }) => {}
            Err(e) => panic!("{e}"),
        }
    }
    let live = s
        .jobs_count_open(&Scope::Tenant("busy".into()))
        .await
        .unwrap();
    assert_eq!(live, admitted);
    assert!(live <= CAP, "{live} open jobs under a cap of {CAP}");
    loop {
        match insert(s.clone()).await {
            Ok(_) => {}
            Err(StoreError::TooManyOpen { limit: CAP }) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(
        s.jobs_count_open(&Scope::Tenant("busy".into()))
            .await
            .unwrap(),
        CAP,
        "one at a time, the cap fills exactly"
    );
}

pub(crate) async fn failing_operation_spares_concurrent_ones(s: Store) {
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

pub(crate) async fn progress_needs_the_live_lease(s: Store) {
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

pub(crate) async fn next_job_event(
    rx: &mut tokio::sync::broadcast::Receiver<std::sync::Arc<JobEvent>>,
) -> JobEvent {
    let ev = tokio::time::timeout(StdDuration::from_secs(10), rx.recv())
        .await
        .expect("job event in time")
        .expect("channel open");
    (*ev).clone()
}

pub(crate) async fn job_events_for_watched_jobs_only(s: Store) {
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

pub(crate) async fn job_stats_by_topic_and_state(s: Store) {
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

/// PostgreSQL: when the `LISTEN` connection drops (here killed with
/// `pg_terminate_backend`), the store listens again and then wakes every
/// waiter (wake-ups sent meanwhile were lost), and later `NOTIFY`s arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_listen_reconnects_and_wakes_every_waiter() {
    use sqlx::Connection as _;
    let t = TestStore::postgres().await;
    let s = t.store.clone();
    let mut rx = s.notifier().subscribe();
    let url = t.pg_url().expect("postgres");
    let mut admin = sqlx::PgConnection::connect(&url).await.expect("connect");
    let killed: Vec<(bool,)> = sqlx::query_as(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid() AND query ILIKE '%LISTEN%'",
    )
    .fetch_all(&mut admin)
    .await
    .expect("terminate");
    assert_eq!(killed.len(), 1, "one LISTEN connection");
    let woke = tokio::time::timeout(StdDuration::from_secs(20), async {
        loop {
            let m = rx.recv().await.expect("wake-up");
            if Notifier::wakes(&m, "no/such-topic") {
                return;
            }
        }
    })
    .await;
    assert!(woke.is_ok(), "every waiter woken after the reconnect");
    sqlx::query("SELECT pg_notify('agw_jobs', 'after/gap')")
        .execute(&mut admin)
        .await
        .expect("notify");
    let heard = tokio::time::timeout(StdDuration::from_secs(20), async {
        loop {
            if rx.recv().await.expect("wake-up").topic() == "after/gap" {
                return;
            }
        }
    })
    .await;
    assert!(heard.is_ok(), "NOTIFY heard on the new LISTEN connection");
    t.cleanup().await;
}

/// Two replicas publishing for one tenant at once stay within its cap
/// (each admits without counting only below half of it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_replicas_stay_within_the_cap() {
    const CAP: i64 = 20;
    let t = TestStore::postgres().await;
    let url = t.pg_url().expect("postgres");
    let other = Store::connect(&url, &ConnectOptions::default())
        .await
        .expect("second replica");
    let mut tasks = Vec::new();
    for i in 0..80 {
        let s = if i % 2 == 0 {
            t.store.clone()
        } else {
            other.clone()
        };
        tasks.push(tokio::spawn(async move {
            s.job_insert(JobInsertParams {
                job: new_job("busy", "cap/t"),
                idempotency: None,
                max_open_per_tenant: Some(CAP),
                now: None,
            })
            .await
        }));
    }
    for t in tasks {
        match t.await.expect("task") {
            Ok(_) | Err(StoreError::TooManyOpen { limit: CAP }) => {}
            Err(e) => panic!("{e}"),
        }
    }
    let live = t
        .store
        .jobs_count_open(&Scope::Tenant("busy".into()))
        .await
        .unwrap();
    assert!(live <= CAP, "{live} open jobs under a cap of {CAP}");
    other.close().await;
    t.cleanup().await;
}

/// A publish on one replica wakes waiters on the other (a `NOTIFY` sent
/// after the commit) and on its own (in process).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_publish_wakes_both_replicas() {
    let t = TestStore::postgres().await;
    let url = t.pg_url().expect("postgres");
    let other = Store::connect(&url, &ConnectOptions::default())
        .await
        .expect("second replica");
    let mut here = t.store.notifier().subscribe();
    let mut there = other.notifier().subscribe();
    insert_at(&t.store, new_job("acme", "wake/both"), Utc::now()).await;
    for (name, rx) in [
        ("publishing replica", &mut here),
        ("other replica", &mut there),
    ] {
        let heard = tokio::time::timeout(StdDuration::from_secs(10), async {
            loop {
                if Notifier::wakes(&rx.recv().await.expect("wake-up"), "wake/both") {
                    return;
                }
            }
        })
        .await;
        assert!(heard.is_ok(), "{name} woken");
    }
    other.close().await;
    t.cleanup().await;
}

/// The console's reads: counts by topic and state (failed apart), a
/// filtered, paginated list, scoped to a tenant.
pub(crate) async fn console_counts_and_list(s: Store) {
    let at = |secs| t0() + Duration::seconds(secs);
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(insert_at(&s, new_job("a", "c/one"), at(i)).await.id);
    }
    insert_at(&s, new_job("b", "c/one"), at(0)).await;
    insert_at(&s, new_job("a", "c/two"), at(9)).await;
    // One of c/one fails once (open again, error set), one is fulfilled.
    let c = claim_one(&s, claim("a", Some("c/one"), "w", at(10)))
        .await
        .expect("claim");
    s.job_fail(fail(&c.id, token(&c), at(11)))
        .await
        .expect("fail");
    let d = claim_one(&s, claim("a", Some("c/one"), "w", at(12)))
        .await
        .expect("claim");
    s.job_complete(complete(&d.id, token(&d), at(13)))
        .await
        .expect("complete");
    let a = Scope::Tenant("a".into());
    let counts = s.jobs_topic_counts(&a).await.expect("counts");
    let get = |topic: &str, state: JobState, failed: bool| {
        counts
            .iter()
            .find(|c| c.topic == topic && c.state == state && c.failed == failed)
            .map(|c| c.count)
    };
    assert_eq!(get("c/one", JobState::Open, false), Some(3));
    assert_eq!(get("c/one", JobState::Open, true), Some(1));
    assert_eq!(get("c/one", JobState::Fulfilled, false), Some(1));
    assert_eq!(get("c/two", JobState::Open, false), Some(1));
    assert_eq!(counts.len(), 4, "tenant b's job is not counted: {counts:?}");
    let all = s.jobs_topic_counts(&Scope::All).await.expect("counts");
    assert_eq!(
        all.iter()
            .filter(|c| c.topic == "c/one" && c.state == JobState::Open && !c.failed)
            .map(|c| c.count)
            .sum::<i64>(),
        4
    );
    // The list: newest first, two per page, keyset cursor.
    let page = |before: Option<(DateTime<Utc>, String)>| JobListParams {
        scope: a.clone(),
        topic: Some("c/one".into()),
        state: None,
        failed_only: false,
        before,
        limit: 2,
    };
    let p1 = s.jobs_list(page(None)).await.expect("list");
    assert_eq!(
        p1.iter().map(|j| j.id.clone()).collect::<Vec<_>>(),
        vec![ids[4].clone(), ids[3].clone()]
    );
    let last = p1.last().expect("page");
    let p2 = s
        .jobs_list(page(Some((last.created_at, last.id.clone()))))
        .await
        .expect("list");
    assert_eq!(
        p2.iter().map(|j| j.id.clone()).collect::<Vec<_>>(),
        vec![ids[2].clone(), ids[1].clone()]
    );
    let failed = s
        .jobs_list(JobListParams {
            failed_only: true,
            state: Some(JobState::Open),
            ..page(None)
        })
        .await
        .expect("list");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].id, c.id);
    let fulfilled = s
        .jobs_list(JobListParams {
            state: Some(JobState::Fulfilled),
            limit: 50,
            ..page(None)
        })
        .await
        .expect("list");
    assert_eq!(fulfilled.len(), 1);
    let foreign = s
        .jobs_list(JobListParams {
            scope: Scope::Tenant("nobody".into()),
            ..page(None)
        })
        .await
        .expect("list");
    assert!(foreign.is_empty());
}

/// Retry: a dead job becomes claimable again with one more attempt, an
/// open job waiting after a failure becomes due now; other states and
/// foreign tenants are refused; the retry writes an event. Purge of a
/// topic deletes only its settled jobs of the tenant.
pub(crate) async fn console_retry_and_topic_purge(s: Store) {
    let at = |secs| t0() + Duration::seconds(secs);
    let mut doomed = new_job("a", "r/t");
    doomed.max_attempts = 1;
    let dead = insert_at(&s, doomed, at(0)).await;
    let c = claim_one(&s, claim("a", Some("r/t"), "w", at(1)))
        .await
        .expect("claim");
    s.job_fail(fail(&c.id, token(&c), at(2)))
        .await
        .expect("fail");
    let a = Scope::Tenant("a".into());
    let retry = |id: &str, scope: &Scope, secs| JobRetryParams {
        id: id.into(),
        scope: scope.clone(),
        by: "operator".into(),
        now: Some(at(secs)),
    };
    assert!(matches!(
        s.job_retry(retry(&dead.id, &Scope::Tenant("b".into()), 3))
            .await,
        Err(StoreError::NotFound)
    ));
    let after = s.job_retry(retry(&dead.id, &a, 3)).await.expect("retry");
    assert_eq!(after.state, JobState::Open);
    assert_eq!(after.error, None);
    assert_eq!(after.run_at, at(3));
    assert_eq!(after.max_attempts, 2);
    assert_eq!(after.completed_at, None);
    assert!(matches!(
        s.job_retry(retry(&dead.id, &a, 4)).await,
        Err(StoreError::InvalidState(JobState::Open))
    ));
    let again = claim_one(&s, claim("a", Some("r/t"), "w", at(4)))
        .await
        .expect("claimable again");
    assert_eq!(again.id, dead.id);
    assert_eq!(again.attempts, 2);
    assert!(matches!(
        s.job_retry(retry(&dead.id, &a, 5)).await,
        Err(StoreError::InvalidState(JobState::Leased))
    ));
    // A failed job waiting for its backoff is due at once.
    s.job_fail(fail(&again.id, token(&again), at(5)))
        .await
        .expect("fail");
    let j2 = insert_at(&s, new_job("a", "r/t"), at(6)).await;
    let c2 = claim_one(&s, claim("a", Some("r/t"), "w", at(7)))
        .await
        .expect("claim");
    assert_eq!(c2.id, j2.id);
    let waiting = s
        .job_fail(fail(&c2.id, token(&c2), at(8)))
        .await
        .expect("fail");
    assert_eq!(waiting.state, JobState::Open);
    assert!(waiting.run_at > at(8));
    let now_due = s.job_retry(retry(&j2.id, &a, 9)).await.expect("retry");
    assert_eq!(now_due.run_at, at(9));
    assert_eq!(now_due.max_attempts, 3, "attempts left: none added");
    // Purge: settled jobs of the topic and tenant only.
    let keep_open = insert_at(&s, new_job("a", "r/t"), at(10)).await;
    let other_topic = insert_at(&s, new_job("a", "r/other"), at(10)).await;
    s.job_cancel(JobCancelParams {
        id: other_topic.id.clone(),
        scope: a.clone(),
        reason: "x".into(),
        now: Some(at(11)),
    })
    .await
    .expect("cancel");
    let foreign = insert_at(&s, new_job("b", "r/t"), at(10)).await;
    s.job_cancel(JobCancelParams {
        id: foreign.id.clone(),
        scope: Scope::Tenant("b".into()),
        reason: "x".into(),
        now: Some(at(11)),
    })
    .await
    .expect("cancel");
    s.job_cancel(JobCancelParams {
        id: keep_open.id.clone(),
        scope: a.clone(),
        reason: "x".into(),
        now: Some(at(11)),
    })
    .await
    .expect("cancel");
    let n = s
        .jobs_purge_topic(TopicPurgeParams {
            scope: a.clone(),
            topic: "r/t".into(),
        })
        .await
        .expect("purge");
    assert_eq!(n, 2, "the dead job (dead again) and the cancelled one");
    assert!(
        s.job_get(&keep_open.id, &Scope::All)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.job_get(&j2.id, &Scope::All).await.unwrap().is_some(),
        "open stays"
    );
    assert!(
        s.job_get(&other_topic.id, &Scope::All)
            .await
            .unwrap()
            .is_some()
    );
    assert!(s.job_get(&foreign.id, &Scope::All).await.unwrap().is_some());
}

/// Activity: jobs created and settled per minute, by topic, per tenant.
pub(crate) async fn console_activity_per_minute(s: Store) {
    let since = t0();
    let at = |secs| t0() + Duration::seconds(secs);
    let j = insert_at(&s, new_job("a", "act/x"), at(5)).await;
    insert_at(&s, new_job("a", "act/x"), at(65)).await;
    insert_at(&s, new_job("b", "act/y"), at(65)).await;
    let c = claim_one(&s, claim("a", Some("act/x"), "w", at(130)))
        .await
        .expect("claim");
    assert_eq!(c.id, j.id);
    s.job_complete(complete(&c.id, token(&c), at(131)))
        .await
        .expect("complete");
    let act = s
        .jobs_activity(&Scope::Tenant("a".into()), since, 60)
        .await
        .expect("activity");
    assert_eq!(act.len(), 1, "{act:?}");
    assert_eq!(act[0].topic, "act/x");
    assert_eq!(act[0].minutes.len(), 60);
    assert_eq!(
        act[0].minutes[0],
        MinuteActivity {
            created: 1,
            settled: 0
        }
    );
    assert_eq!(
        act[0].minutes[1],
        MinuteActivity {
            created: 1,
            settled: 0
        }
    );
    assert_eq!(
        act[0].minutes[2],
        MinuteActivity {
            created: 0,
            settled: 1
        }
    );
    let all = s
        .jobs_activity(&Scope::All, since, 60)
        .await
        .expect("activity");
    assert_eq!(all.len(), 2);
}

/// Recent holders: who leased on each topic since a given instant.
pub(crate) async fn console_recent_holders(s: Store) {
    let at = |secs| t0() + Duration::seconds(secs);
    insert_at(&s, new_job("a", "h/x"), at(0)).await;
    insert_at(&s, new_job("a", "h/x"), at(0)).await;
    insert_at(&s, new_job("b", "h/y"), at(0)).await;
    claim_one(&s, claim("a", Some("h/x"), "w1", at(10)))
        .await
        .expect("claim");
    let mut p = claim("a", Some("h/x"), "n1", at(20));
    p.holder_key = Some(HolderKind::neuron_key("a", "n1"));
    claim_one(&s, p).await.expect("claim");
    claim_one(&s, claim("b", Some("h/y"), "w2", at(30)))
        .await
        .expect("claim");
    let got = s
        .jobs_recent_holders(&Scope::Tenant("a".into()), at(5))
        .await
        .expect("holders");
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].holder, "n1");
    assert_eq!(got[0].kind, HolderKind::Neuron);
    assert_eq!(got[1].holder, "w1");
    assert_eq!(got[1].kind, HolderKind::Worker);
    assert_eq!(got[1].last_leased, at(10));
    assert!(
        s.jobs_recent_holders(&Scope::All, at(25))
            .await
            .unwrap()
            .len()
            == 1
    );
}
