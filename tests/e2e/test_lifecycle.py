"""Publish -> claim -> fulfill/fail -> status/result, driven by the installed SDK."""

from __future__ import annotations

import time

import pytest

from agw_testkit.responses import describe
from support import sdk
from support.checks import assert_error, assert_retry_after, assert_std_headers

UNICODE_PAYLOAD = {"text": "héllo wörld ✓ 日本", "n": 3, "nested": {"list": [1, 2, {"deep": True}]}}


def _status(gw, key, iid):
    res = gw.raw(key).status(iid)
    assert res.status_code == 200, describe(res)
    return res.json()


def _result(gw, key, iid):
    res = gw.raw(key).result(iid)
    assert res.status_code == 200, describe(res)
    return res.json()


def test_publish_claim_fulfill_json_result(gw, tenant, client_for, uniq):
    c = client_for(gw, tenant)
    goal, ns = f"acme/echo-{uniq}", f"ns-{uniq}"  # '/' in the goal exercises query canonicalisation

    iid = sdk.publish(c, goal, UNICODE_PAYLOAD, namespace=ns)
    st = _status(gw, tenant, iid)
    assert st["id"] == iid and st["status"] == "open", st
    assert st["goal"] == goal and st["namespace"] == ns, st
    assert st["claim_attempts"] == 0, st

    job = c.claim(goal, namespace=ns, worker_id="worker-1")
    assert job.status_code == 200 and sdk.job_id(job) == iid
    assert job.get("payload") == UNICODE_PAYLOAD
    assert job.get("goal") == goal and job.get("namespace") == ns
    assert job.get("claim_attempts") == 1
    assert isinstance(sdk.job_token(job), str) and sdk.job_token(job)
    assert _status(gw, tenant, iid)["status"] == "claimed"

    result = {"answer": 42, "echo": UNICODE_PAYLOAD}
    ack = sdk.fulfill(c, job, result)
    assert ack and ack.get("ok") is True and ack.get("id") == iid and ack.get("status") == "fulfilled", ack

    res = _result(gw, tenant, iid)
    assert res["status"] == "fulfilled", res
    assert res["result"] == result, res
    assert res["result_type"] == "json", res
    assert res.get("completed_at") is not None, res
    if sdk.IS_V2:
        r = c.get_result(iid)
        assert (r.status, r.result, r.result_type) == ("fulfilled", result, "json")
        assert r.completed_at is not None
        s = c.get_status(iid)
        assert s.status == "fulfilled" and s.claim_attempts == 1

    # nothing left: 204 with the configured idle Retry-After (1 s)
    again = c.claim(goal, namespace=ns)
    assert again.status_code == 204
    assert again.retry_after is not None and float(again.retry_after) == 1.0

    # a second fulfill of a finished intent is refused as a lost lease
    with sdk.expect_lease_lost():
        sdk.fulfill(c, job, {"again": True})
    assert _result(gw, tenant, iid)["result"] == result


@pytest.mark.skipif(not sdk.IS_V2, reason="text results are a 2.1 feature")
def test_text_result_v2(gw, tenant, client_for, uniq):
    c = client_for(gw, tenant)
    goal = f"text-{uniq}"
    iid = sdk.publish(c, goal, {"q": "say hi"})
    job = c.claim(goal)
    assert job.status_code == 200 and job.id == iid
    c.fulfill(job.id, job.claim_token, result="hi there ✓", result_type="text")
    r = c.get_result(iid)
    assert r.status == "fulfilled" and r.result == "hi there ✓" and r.result_type == "text"


@pytest.mark.skipif(not sdk.IS_V2, reason="token fulfill without result is 2.1.2 WorkerRuntime behaviour")
def test_fulfill_without_result_stores_null_v2(gw, tenant, client_for, uniq):
    c = client_for(gw, tenant)
    goal = f"noresult-{uniq}"
    iid = sdk.publish(c, goal, {})
    job = c.claim(goal)
    assert job.status_code == 200
    ack = c.fulfill(job.id, job.claim_token)  # body {claim_token, result_type: json}, no result
    assert ack["ok"] is True
    r = c.get_result(iid)
    assert r.status == "fulfilled" and r.result is None and r.result_type == "json"


@pytest.mark.skipif(sdk.IS_V2, reason="1.3.2 kwargs-less fulfill sends no body")
def test_fulfill_without_body_v1(gw, tenant, client_for, uniq):
    c = client_for(gw, tenant)
    goal = f"nobody-{uniq}"
    iid = sdk.publish(c, goal, {"x": 1})
    job = c.claim(goal)
    assert job.status_code == 200
    ack = c.fulfill(iid)  # no kwargs -> no request body at all, no token
    assert ack and ack["ok"] is True
    res = _result(gw, tenant, iid)
    assert res["status"] == "fulfilled" and res["result"] in (None, {}), res


def test_fail_with_retry_then_dead(gw, tenant, client_for, uniq):
    """fail with attempts left -> open + error + run_at in the future (not claimable before);
    fail on the last attempt -> dead."""
    c = client_for(gw, tenant)
    goal = f"flaky-{uniq}"
    if sdk.IS_V2:
        iid = sdk.publish(c, goal, {"k": 1}, max_attempts=3, backoff_base=1.0)
        max_attempts = 3
    else:  # 1.3.2 cannot send max_attempts/backoff_base: publish by hand, work with the SDK
        res = gw.raw(tenant).publish(goal, {"k": 1}, max_attempts=2, backoff_base=1)
        assert res.status_code == 201, describe(res)
        iid = res.json()["id"]
        max_attempts = 2

    for attempt in range(1, max_attempts + 1):
        job, _ = sdk.claim_until(lambda: c.claim(goal), timeout=10)
        t_claimed = time.time()
        assert job is not None, f"attempt {attempt}: intent never became claimable again"
        assert sdk.job_id(job) == iid and job.get("claim_attempts") == attempt
        if attempt > 1:
            # the claim succeeded, and not before the run_at the failure reported
            assert t_claimed >= run_at - 0.05, (t_claimed, run_at)

        err = f"boom {attempt}"
        t_fail = time.time()
        ack = sdk.fail(c, job, err)
        assert ack and ack.get("ok") is True and ack.get("id") == iid, ack
        st = _status(gw, tenant, iid)
        assert st["error"] == err, st
        assert st["claim_attempts"] == attempt, st
        if attempt < max_attempts:
            assert st["status"] == "open", st
            run_at = float(st["run_at"])
            backoff = 1.0 * 2 ** (attempt - 1)
            assert t_fail + backoff - 0.6 <= run_at <= t_fail + backoff + 1.5, (t_fail, backoff, st)
            if sdk.IS_V2:
                s = c.get_status(iid)
                assert s.status == "open" and s.error == err and s.run_at == pytest.approx(run_at)
            # not claimable before run_at
            if time.time() < run_at - 0.3:
                assert c.claim(goal).status_code == 204, "claimable before its retry run_at"
        else:
            assert st["status"] == "dead", st

    assert c.claim(goal).status_code == 204
    with sdk.expect_lease_lost():
        sdk.fulfill(c, job, {"late": True})


def test_fail_error_is_truncated(gw, tenant, client_for, uniq):
    c = client_for(gw, tenant)
    goal = f"longerr-{uniq}"
    iid = sdk.publish(c, goal, {})
    job = c.claim(goal)
    assert job.status_code == 200
    long_err = "E" * 450 + "x" * 300
    sdk.fail(c, job, long_err)
    st = _status(gw, tenant, iid)
    assert st["error"] and long_err.startswith(st["error"][:450]), st
    assert len(st["error"]) <= 503, f"error not truncated to ~500 chars: {len(st['error'])}"


def test_delay(gw, tenant, client_for, uniq):
    c = client_for(gw, tenant)
    goal = f"later-{uniq}"
    t0 = time.time()
    if sdk.IS_V2:
        iid = sdk.publish(c, goal, {"d": 1}, delay=2.0)
    else:
        res = gw.raw(tenant).publish(goal, {"d": 1}, delay=2)
        assert res.status_code == 201, describe(res)
        iid = res.json()["id"]
    st = _status(gw, tenant, iid)
    assert st["status"] == "open"
    assert t0 + 1.4 <= float(st["run_at"]) <= time.time() + 2.6, (t0, st)
    if time.time() < float(st["run_at"]) - 0.3:
        assert c.claim(goal).status_code == 204, "a delayed intent was claimable before run_at"
    job, _ = sdk.claim_until(lambda: c.claim(goal), timeout=8)
    assert job is not None and sdk.job_id(job) == iid
    assert time.time() >= float(st["run_at"]) - 0.05
    assert time.time() - t0 >= 1.5, "delay=2 intent was claimed well before 2 s"


def test_priority_order(gw, tenant, client_for, uniq):
    c = client_for(gw, tenant)
    goal = f"prio-{uniq}"
    raw = gw.raw(tenant)
    ids = {}
    for label, prio in [("low", 10), ("high-a", 500), ("mid", 100), ("high-b", 500), ("top", 1000), ("zero", 0)]:  # noqa: E501
        if sdk.IS_V2:
            ids[label] = sdk.publish(c, goal, {"label": label}, priority=prio)
        else:
            res = raw.publish(goal, {"label": label}, priority=prio)
            assert res.status_code == 201, describe(res)
            ids[label] = res.json()["id"]
    prios = {"low": 10, "high-a": 500, "mid": 100, "high-b": 500, "top": 1000, "zero": 0}
    order = []
    for _ in range(6):
        job = c.claim(goal)
        assert job.status_code == 200
        order.append(job.get("payload")["label"])
        assert job.get("priority") == prios[order[-1]]
    assert order == ["top", "high-a", "high-b", "mid", "low", "zero"]
    assert c.claim(goal).status_code == 204


def test_idempotent_publish(gw, tenant, client_for, uniq):
    c = client_for(gw, tenant)
    goal = f"idem-{uniq}"
    key = f"idem-key-{uniq}"
    id1 = sdk.publish(c, goal, {"a": 1}, idempotency_key=key)
    id2 = sdk.publish(c, goal, {"a": 1}, idempotency_key=key)
    assert id1 == id2
    with pytest.raises(sdk.IntentBusError) as ei:
        sdk.publish(c, goal, {"a": 2}, idempotency_key=key)
    assert not isinstance(ei.value, (sdk.IntentBusAuthError, sdk.IntentBusRateLimitError))
    assert "conflict" in str(ei.value)
    # same at the wire level: 409 conflict with the contract body
    raw = gw.raw(tenant)
    body = {"goal": goal, "payload": {"a": 3}, "namespace": "default", "visibility": "private"}
    res = raw.request("POST", "/intent", body=body, headers={"Idempotency-Key": key})
    assert_error(res, 409, "conflict")
    assert_std_headers(res)
    # exactly one intent exists
    job = c.claim(goal)
    assert job.status_code == 200 and sdk.job_id(job) == id1 and job.get("payload") == {"a": 1}
    assert c.claim(goal).status_code == 204


def test_idempotency_key_is_per_tenant(gw, tenant, other_tenant, uniq):
    key = f"shared-key-{uniq}"
    r1 = gw.raw(tenant).publish(f"g-{uniq}", {"a": 1}, idempotency_key=key)
    r2 = gw.raw(other_tenant).publish(f"g-{uniq}", {"a": 1}, idempotency_key=key)
    assert r1.status_code == 201 and r2.status_code == 201, (describe(r1), describe(r2))
    assert r1.json()["id"] != r2.json()["id"], "one tenant's Idempotency-Key replayed another tenant's intent"


def test_publish_response_shape(gw, tenant, uniq):
    res = gw.raw(tenant).publish(f"shape-{uniq}", {"a": 1}, namespace=f"ns-{uniq}")
    assert res.status_code == 201, describe(res)
    assert_std_headers(res)
    data = res.json()
    assert isinstance(data["id"], str) and data["id"]
    assert data["status"] in ("open", "published")
    assert data.get("goal") == f"shape-{uniq}" and data.get("namespace") == f"ns-{uniq}"


def test_idle_claim_has_retry_after(gw, tenant, uniq):
    res = gw.raw(tenant).claim(f"nothing-{uniq}")
    assert res.status_code == 204, describe(res)
    assert assert_retry_after(res) == 1
    assert_std_headers(res)
    assert res.content == b""


def test_concurrent_claims_are_exclusive(gw, tenant, client_for, uniq):
    """4 workers race for 24 intents: every intent is handed out exactly once."""
    import threading

    goal = f"race-{uniq}"
    raw = gw.raw(tenant)
    ids = set()
    for i in range(24):
        res = raw.publish(goal, {"i": i})
        assert res.status_code == 201, describe(res)
        ids.add(res.json()["id"])
    got, errors = [], []
    lock = threading.Lock()
    start = threading.Barrier(4)

    def worker(n):
        c = client_for(gw, tenant)
        try:
            start.wait(10)
            for _ in range(40):  # bounded
                job = c.claim(goal, worker_id=f"racer-{n}")
                if job.status_code == 204:
                    return
                with lock:
                    got.append(sdk.job_id(job))
                sdk.fulfill(c, job, {"by": n})
        except Exception as e:  # surfaced below
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert sorted(got) == sorted(ids), f"{len(got)} claims for {len(ids)} intents; duplicates: " \
        f"{sorted({i for i in got if got.count(i) > 1})}"


def test_fresh_intents_before_retried_ones_at_equal_priority(gw, tenant, client_for, uniq):
    """Order is priority desc, then claim_attempts asc, then created_at asc."""
    c = client_for(gw, tenant)
    goal = f"order-{uniq}"
    raw = gw.raw(tenant)
    old = raw.publish(goal, {"which": "retried"}, backoff_base=0.1, max_attempts=5).json()["id"]
    job = c.claim(goal)
    assert sdk.job_id(job) == old
    sdk.fail(c, job, "transient")
    fresh = raw.publish(goal, {"which": "fresh"}).json()["id"]
    run_at = float(raw.status(old).json()["run_at"])
    deadline = time.time() + 5
    while time.time() < run_at + 0.05:  # wait until the retried one is eligible again
        assert time.time() < deadline
        time.sleep(0.05)
    first, second = c.claim(goal), c.claim(goal)
    assert (sdk.job_id(first), sdk.job_id(second)) == (fresh, old)
    assert (first.get("claim_attempts"), second.get("claim_attempts")) == (1, 2)
