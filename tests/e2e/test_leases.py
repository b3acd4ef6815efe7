"""Lease expiry, reclaim, late-fulfill refusal and extend_claim (gateway with a 2 s lease)."""

from __future__ import annotations

import time

import pytest

from agw_testkit.responses import describe
from support import sdk
from support.checks import assert_error

LEASE = 2


@pytest.fixture(scope="module")
def short(module_gateway_factory):
    return module_gateway_factory("short-lease", AGW_INTENT_BUS_CLAIM_TIMEOUT_SECS=LEASE,
                                  AGW_STORE_SWEEP_INTERVAL_MS=200)


def _publish(g, key, c, goal, payload, **fields):
    """SDK publish where the SDK can express `fields`, hand-signed otherwise (1.3.2)."""
    if sdk.IS_V2 or not fields:
        return sdk.publish(c, goal, payload, **fields)
    res = g.raw(key).publish(goal, payload, **fields)
    assert res.status_code == 201, describe(res)
    return res.json()["id"]


def test_claim_reports_lease(short, client_for, uniq):
    key = short.new_tenant()
    c = client_for(short, key)
    goal = f"lease-{uniq}"
    iid = sdk.publish(c, goal, {})
    t0 = time.time()
    job = c.claim(goal, worker_id="wA")
    assert job.status_code == 200 and sdk.job_id(job) == iid
    assert job.get("claim_timeout") == LEASE
    lease_expires_at = job.get("lease_expires_at")
    assert lease_expires_at is not None, "claim response lacks lease_expires_at"
    assert t0 + LEASE - 1.0 <= float(lease_expires_at) <= time.time() + LEASE + 1.0


def test_lease_expiry_reclaim_by_other_key_refuses_late_fulfill(short, client_for, uniq):
    """Tenant T has two keys. Worker A (key 1) claims and stalls; after the lease
    expires worker B (key 2) reclaims. A's late fulfill / fail must be refused with 404:
    2.1.2 because its token is stale, 1.3.2 (no token) because claimed_by is now key 2."""
    owner = f"lease-tenant-{uniq}"
    k1, k2 = short.generate_key(owner), short.generate_key(owner)
    assert k1 != k2
    a, b = client_for(short, k1), client_for(short, k2)
    goal = f"acme/lease-{uniq}"
    iid = sdk.publish(a, goal, {"job": 1})

    job_a = a.claim(goal, worker_id="worker-A")
    assert job_a.status_code == 200 and sdk.job_id(job_a) == iid
    t_claim = time.time()
    assert b.claim(goal, worker_id="worker-B").status_code == 204  # leased: invisible to others

    job_b, _ = sdk.claim_until(lambda: b.claim(goal, worker_id="worker-B"), timeout=LEASE + 8)
    assert job_b is not None, "intent never became claimable after its lease expired"
    assert time.time() - t_claim >= LEASE - 0.5, "reclaimed before the lease could have expired"
    assert sdk.job_id(job_b) == iid and job_b.get("claim_attempts") == 2
    if sdk.IS_V2:
        assert job_b.claim_token != job_a.claim_token, "reclaim must issue a fresh claim_token"

    # the expired holder is refused, through its own SDK
    with sdk.expect_lease_lost():
        sdk.fulfill(a, job_a, {"from": "A"})
    with sdk.expect_lease_lost():
        sdk.fail(a, job_a, "A gave up")
    # ... and at the wire level, with and without the stale token
    raw_a = short.raw(k1)
    assert_error(raw_a.fulfill(iid, {"from": "A"}), 404)
    if job_a.get("claim_token"):
        assert_error(raw_a.fulfill(iid, {"claim_token": job_a.get("claim_token"), "result_type": "json",
                                         "result": {"from": "A"}}), 404)
    # the same tenant's status view shows B's lease untouched
    st = short.raw(k1).status(iid).json()
    assert st["status"] == "claimed" and st["claim_attempts"] == 2, st

    ack = sdk.fulfill(b, job_b, {"from": "B"})
    assert ack["ok"] is True
    res = short.raw(k1).result(iid).json()
    assert res["status"] == "fulfilled" and res["result"] == {"from": "B"}, res


def test_public_intent_reclaimed_by_another_tenant(short, client_for, uniq):
    """Public intent: tenant B claims and stalls, tenant C reclaims after expiry; B's late
    fulfill (token-less in 1.3.2, stale token in 2.1.2) is refused; C's counts."""
    kp, kb, kc = short.new_tenant("pub"), short.new_tenant("b"), short.new_tenant("c")
    p, b, c = client_for(short, kp), client_for(short, kb), client_for(short, kc)
    goal = f"public-lease-{uniq}"
    iid = sdk.publish(p, goal, {"open": "to all"}, namespace=f"pubns-{uniq}", visibility="public")

    job_b = b.claim(goal, namespace=f"b-{uniq}")
    assert job_b.status_code == 200 and sdk.job_id(job_b) == iid
    job_c, _ = sdk.claim_until(lambda: c.claim(goal, namespace=f"c-{uniq}"), timeout=LEASE + 8)
    assert job_c is not None and sdk.job_id(job_c) == iid

    with sdk.expect_lease_lost():
        sdk.fulfill(b, job_b, {"by": "B"})
    sdk.fulfill(c, job_c, {"by": "C"})
    res = short.raw(kp).result(iid)
    assert res.status_code == 200, describe(res)
    assert res.json()["result"] == {"by": "C"} and res.json()["status"] == "fulfilled"


def test_lease_expiry_on_last_attempt_is_dead(short, client_for, uniq):
    key = short.new_tenant()
    c = client_for(short, key)
    goal = f"lastlease-{uniq}"
    iid = _publish(short, key, c, goal, {}, max_attempts=1)
    job = c.claim(goal)
    assert job.status_code == 200 and sdk.job_id(job) == iid

    deadline = time.monotonic() + LEASE + 8
    st = None
    while time.monotonic() < deadline:
        st = short.raw(key).status(iid).json()
        if st["status"] != "claimed":
            break
        time.sleep(0.2)
    assert st and st["status"] == "dead", f"lease expired on the last attempt, status is {st}"
    assert c.claim(goal).status_code == 204
    with sdk.expect_lease_lost():
        sdk.fulfill(c, job, {"late": True})


@pytest.mark.skipif(not sdk.IS_V2, reason="extend_claim is a 2.1 API")
def test_extend_claim_keeps_lease_alive(short, client_for, uniq):
    owner = f"extend-{uniq}"
    k1, k2 = short.generate_key(owner), short.generate_key(owner)
    a, b = client_for(short, k1), client_for(short, k2)
    goal = f"extend-{uniq}"
    iid = sdk.publish(a, goal, {})
    job = a.claim(goal, worker_id="holder")
    assert job.status_code == 200 and job.id == iid
    original_expiry = float(job.get("lease_expires_at") or (time.time() + LEASE))

    with sdk.expect_lease_lost():
        a.extend_claim(iid, "not-the-token", seconds=5)

    # keep renewing for ~2x the original lease; a competitor must never get it
    until = original_expiry + LEASE + 0.5
    renewals = 0
    while time.time() < until:
        ack = a.extend_claim(iid, job.claim_token, seconds=LEASE)
        assert ack and ack.get("ok") is True, ack
        assert ack.get("lease_expires_at") is None or float(ack["lease_expires_at"]) > time.time()
        renewals += 1
        assert b.claim(goal, worker_id="thief").status_code == 204, "lease stolen despite extend_claim"
        time.sleep(0.5)
    assert renewals >= 4
    assert time.time() > original_expiry + 1.0
    assert b.claim(goal, worker_id="thief").status_code == 204

    ack = a.fulfill(iid, job.claim_token, result={"kept": True})
    assert ack["ok"] is True
    r = a.get_result(iid)
    assert r.status == "fulfilled" and r.result == {"kept": True} and r.claim_attempts == 1


@pytest.mark.skipif(not sdk.IS_V2, reason="extend_claim is a 2.1 API")
def test_extend_claim_after_reclaim_is_lease_lost(short, client_for, uniq):
    owner = f"extend-lost-{uniq}"
    k1, k2 = short.generate_key(owner), short.generate_key(owner)
    a, b = client_for(short, k1), client_for(short, k2)
    goal = f"extend-lost-{uniq}"
    iid = sdk.publish(a, goal, {})
    job_a = a.claim(goal)
    job_b, _ = sdk.claim_until(lambda: b.claim(goal), timeout=LEASE + 8)
    assert job_b is not None and job_b.id == iid
    with sdk.expect_lease_lost():
        a.extend_claim(iid, job_a.claim_token, seconds=30)
    b.fulfill(iid, job_b.claim_token, result={"ok": 1})
