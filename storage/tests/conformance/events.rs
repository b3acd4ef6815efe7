//! Conformance cases: Execution events.

use super::governance::trace;
use super::*;

pub(crate) fn enable_events(s: &Store) -> agw_events::EventPublicKey {
    let signer = agw_events::EventSigner::generate("gw-test").expect("signer");
    let public = signer.public_key();
    s.set_event_log(std::sync::Arc::new(EventLog::new(
        signer,
        agw_events::CaptureMode::Redacted,
        agw_events::default_redact_keys(),
    )));
    public
}

pub(crate) async fn all_events(s: &Store, scope: Scope) -> Vec<agw_events::ExecutionEvent> {
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
pub(crate) async fn events_and_ingested_events_expire(s: Store) {
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

pub(crate) async fn settlements_write_signed_chained_events(s: Store) {
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
    let mut blocked = trace("trace-2", "acme", Verdict::Block, now);
    blocked.inputs = Some(json!({"input": "my password is hunter2", "password": "hunter2"}));
    s.trace_insert(blocked).await.expect("trace");
    s.trace_insert(trace("trace-3", "acme", Verdict::Allow, now))
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

pub(crate) async fn event_keys_and_ingest(s: Store) {
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

/// PostgreSQL only (SQLite's one writer serialises settlements): a
/// settlement whose statement waited for its job's row lock while the lock's
/// holder committed an event on the job's chain must link after that event,
/// although its statement's snapshot does not have it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub(crate) async fn postgres_settlement_links_after_an_event_committed_while_it_waited() {
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

/// Calls dropped part-way (a caller timing out at every point of a
/// settlement) leave no half-done work: after every job's settlement is
/// retried until it answers, each job is fulfilled with its result, has
/// exactly one execution event, and every chain verifies.
pub(crate) async fn dropped_calls_leave_no_half_done_work(s: Store) {
    let key = enable_events(&s);
    let now = Utc::now();
    let mut leased = Vec::new();
    for _ in 0..64 {
        insert_at(&s, new_job("acme", "drop/settle"), now).await;
    }
    while let Some(j) = claim_one(&s, claim("acme", Some("drop/settle"), "w1", now)).await {
        leased.push(j);
    }
    assert_eq!(leased.len(), 64);
    // Each settlement is dropped after a different time, from at once to
    // a few milliseconds in, concurrently.
    let calls = leased.iter().enumerate().map(|(i, j)| {
        let s = s.clone();
        let p = complete(&j.id, token(j), now);
        async move {
            let wait = StdDuration::from_micros((i as u64 * 97) % 4_000);
            let _ = tokio::time::timeout(wait, s.job_complete(p)).await;
        }
    });
    futures_util::future::join_all(calls).await;
    // Retry every settlement until it answers: done now, or done before (the
    // lease is then gone).
    for j in &leased {
        match s.job_complete(complete(&j.id, token(j), now)).await {
            Ok(_) | Err(StoreError::LeaseLost) => {}
            Err(e) => panic!("settle {}: {e:?}", j.id),
        }
        let got = s
            .job_get(&j.id, &Scope::All)
            .await
            .expect("get")
            .expect("job");
        assert_eq!(got.state, JobState::Fulfilled, "{}", j.id);
        assert_eq!(got.result, Some(json!({"ok": true})));
    }
    let evs = all_events(&s, Scope::All).await;
    let mut per_job = std::collections::HashMap::<String, usize>::new();
    for e in &evs {
        *per_job.entry(e.correlation_id.clone()).or_default() += 1;
    }
    for j in &leased {
        assert_eq!(per_job.get(&j.id), Some(&1), "events of {}", j.id);
    }
    agw_events::verify_chain(&evs, |_| Some(key)).expect("every chain verifies");
}

/// Concurrent fulfilments (a driver may commit them as a group): of two
/// right-token fulfilments of one job exactly one settles it, a wrong token
/// never does, and each job gets its result and exactly one event.
pub(crate) async fn concurrent_fulfilments_settle_each_lease_once(s: Store) {
    let key = enable_events(&s);
    let now = Utc::now();
    for _ in 0..40 {
        insert_at(&s, new_job("acme", "group/settle"), now).await;
    }
    let mut leased = Vec::new();
    while let Some(j) = claim_one(&s, claim("acme", Some("group/settle"), "w1", now)).await {
        leased.push(j);
    }
    assert_eq!(leased.len(), 40);
    let mut calls = Vec::new();
    for j in &leased {
        for proof in [token(j), token(j), LeaseProof::Token("stale".into())] {
            let s = s.clone();
            let p = complete(&j.id, proof, now);
            calls.push((
                j.id.clone(),
                tokio::spawn(async move { s.job_complete(p).await }),
            ));
        }
    }
    let mut settled = std::collections::HashMap::<String, usize>::new();
    for (id, call) in calls {
        match call.await.expect("task") {
            Ok(job) => {
                assert_eq!(job.id, id);
                assert_eq!(job.state, JobState::Fulfilled);
                *settled.entry(id).or_default() += 1;
            }
            Err(StoreError::LeaseLost) => {}
            Err(e) => panic!("{id}: {e:?}"),
        }
    }
    let evs = all_events(&s, Scope::All).await;
    for j in &leased {
        assert_eq!(settled.get(&j.id), Some(&1), "settled once: {}", j.id);
        let got = s
            .job_get(&j.id, &Scope::All)
            .await
            .expect("get")
            .expect("job");
        assert_eq!(got.result, Some(json!({"ok": true})));
        assert_eq!(
            evs.iter().filter(|e| e.correlation_id == j.id).count(),
            1,
            "one event: {}",
            j.id
        );
    }
    agw_events::verify_chain(&evs, |_| Some(key)).expect("every chain verifies");
}

/// PostgreSQL: a settlement whose caller went away after it started still
/// commits (it runs on a task of its own), instead of being cut off with its
/// transaction half-way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_dropped_settlement_still_commits() {
    let t = TestStore::postgres().await;
    let s = t.store.clone();
    let now = Utc::now();
    let job = insert_at(&s, new_job("acme", "drop/one"), now).await;
    let leased = claim_one(&s, claim("acme", Some("drop/one"), "w1", now))
        .await
        .expect("claimed");
    // Polled once, then dropped.
    let dropped = tokio::time::timeout(
        StdDuration::ZERO,
        s.job_complete(complete(&job.id, token(&leased), now)),
    )
    .await;
    assert!(dropped.is_err(), "the call was not cut short");
    let mut state = JobState::Leased;
    for _ in 0..200 {
        state = s
            .job_get(&job.id, &Scope::All)
            .await
            .expect("get")
            .expect("job")
            .state;
        if state == JobState::Fulfilled {
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
    assert_eq!(state, JobState::Fulfilled);
    t.cleanup().await;
}

/// A console retry writes a signed `retried` event on the job's chain,
/// after the event of the failure that killed it; the chain verifies.
pub(crate) async fn retry_writes_a_chained_event(s: Store) {
    let public = enable_events(&s);
    let now = Utc::now();
    let mut job = new_job("acme", "ev/retry");
    job.max_attempts = 1;
    let job = insert_at(&s, job, now).await;
    let c = claim_one(&s, claim("acme", Some("ev/retry"), "w1", now))
        .await
        .expect("claim");
    s.job_fail(fail(&c.id, token(&c), now)).await.expect("fail");
    s.job_retry(JobRetryParams {
        id: job.id.clone(),
        scope: Scope::Tenant("acme".into()),
        by: "key_op".into(),
        now: Some(now),
    })
    .await
    .expect("retry");
    let events = all_events(&s, Scope::All).await;
    assert_eq!(events.len(), 2);
    let attrs = events[1].attributes.clone().expect("attributes");
    assert_eq!(attrs.get("outcome"), Some(&json!("retried")));
    assert_eq!(attrs.get("retried_by"), Some(&json!("key_op")));
    assert_eq!(events[1].chain_position, 2);
    agw_events::verify_chain(&events, |_| Some(public)).expect("chain verifies");
}
