//! Conformance cases: Governance traces and secrets.

use super::*;

pub(crate) fn trace(id: &str, tenant: &str, decision: Verdict, at: DateTime<Utc>) -> Trace {
    Trace {
        id: id.into(),
        tenant: tenant.into(),
        kind: RunKind::Run,
        decision,
        reason: "within policy".into(),
        risk_score: 0.25,
        policy: "default@abc".into(),
        matched_rules: vec!["r1".into(), "r2".into()],
        violations: json!([{"rule": "r1", "kind": "deny_pattern", "message": "m"}]),
        mode: "balanced".into(),
        budget: 0.5,
        status: if decision == Verdict::Block {
            "blocked"
        } else {
            "pending"
        }
        .into(),
        job_id: (decision != Verdict::Block).then(|| format!("job-{id}")),
        topic: Some("gateway/run".into()),
        worker: None,
        latency_ms: 0.0,
        created_at: at,
        settled_at: None,
        inputs: None,
    }
}

pub(crate) async fn traces_settle_scope_and_count(s: Store) {
    let t = t0();
    s.trace_insert(trace("t1", "acme", Verdict::Allow, t))
        .await
        .expect("insert");
    s.trace_insert(trace(
        "t2",
        "acme",
        Verdict::Block,
        t + Duration::minutes(1),
    ))
    .await
    .expect("insert");
    s.trace_insert(trace(
        "t3",
        "acme",
        Verdict::Allow,
        t + Duration::minutes(2),
    ))
    .await
    .expect("insert");
    s.trace_insert(trace(
        "t4",
        "other",
        Verdict::Throttle,
        t + Duration::minutes(2),
    ))
    .await
    .expect("insert");
    assert!(
        s.trace_insert(trace("t1", "acme", Verdict::Allow, t))
            .await
            .is_err(),
        "ids are unique"
    );

    let got = s
        .trace_get("t1", &Scope::Tenant("acme".into()))
        .await
        .expect("get")
        .expect("found");
    assert_eq!(got, trace("t1", "acme", Verdict::Allow, t), "round trip");
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
    let pairs: Vec<(Verdict, i64)> = counts.into_iter().map(|c| (c.decision, c.count)).collect();
    assert_eq!(pairs, vec![(Verdict::Allow, 2), (Verdict::Block, 1)]);
    let recent = s
        .trace_counts(&Scope::Tenant("acme".into()), t + Duration::seconds(90))
        .await
        .expect("counts");
    assert_eq!(
        recent,
        vec![DecisionCount {
            decision: Verdict::Allow,
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

pub(crate) async fn secrets_per_tenant(s: Store) {
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

/// Admission writes a run's trace and its job in one transaction: both or
/// neither. A refused job (the tenant's open-job cap) keeps the trace as
/// `failed`; a job that cannot be written at all (here a duplicate id) leaves
/// no trace behind, never one `pending` without its job.
pub(crate) async fn admission_is_atomic(s: Store) {
    let t = t0();
    let admit = |id: &str, job: NewJob, cap: Option<i64>| {
        let mut tr = trace(id, "acme", Verdict::Allow, t);
        tr.job_id = Some(job.id.clone());
        AdmitParams {
            trace: tr,
            job: JobInsertParams {
                job,
                idempotency: None,
                max_open_per_tenant: cap,
                now: Some(t),
            },
            refused_latency_ms: 7.0,
            now: Some(t),
        }
    };
    let scope = Scope::Tenant("acme".into());

    // Admitted: the trace is pending and names the job, which is open.
    let job = new_job("acme", "gateway/run");
    let job_id = job.id.clone();
    let out = s
        .trace_admit(admit("a1", job, Some(2)))
        .await
        .expect("admit");
    assert!(matches!(out, JobInsertOutcome::Inserted(ref j) if j.id == job_id));
    let tr = s
        .trace_get("a1", &scope)
        .await
        .expect("get")
        .expect("trace");
    assert_eq!(
        (tr.status.as_str(), tr.job_id.as_deref()),
        ("pending", Some(job_id.as_str()))
    );
    let j = s.job_get(&job_id, &scope).await.expect("get").expect("job");
    assert_eq!(j.state, JobState::Open);

    // Refused by the cap: no job, the trace kept as failed with its latency.
    insert_at(&s, new_job("acme", "other"), t).await;
    let job = new_job("acme", "gateway/run");
    let refused_id = job.id.clone();
    let err = s
        .trace_admit(admit("a2", job, Some(2)))
        .await
        .expect_err("cap");
    assert!(
        matches!(err, StoreError::TooManyOpen { limit: 2 }),
        "{err:?}"
    );
    assert!(s.job_get(&refused_id, &scope).await.expect("get").is_none());
    let tr = s
        .trace_get("a2", &scope)
        .await
        .expect("get")
        .expect("trace");
    assert_eq!(tr.status, "failed");
    assert_eq!(tr.latency_ms, 7.0);
    assert!(tr.settled_at.is_some());

    // The job cannot be written (its id is taken): nothing is kept.
    let mut dup = new_job("acme", "gateway/run");
    dup.id = job_id.clone();
    s.trace_admit(admit("a3", dup, None))
        .await
        .expect_err("duplicate id");
    assert!(s.trace_get("a3", &scope).await.expect("get").is_none());
    let j = s.job_get(&job_id, &scope).await.expect("get").expect("job");
    assert_eq!(j.topic, "gateway/run");
}
