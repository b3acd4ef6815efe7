"""Capability / target-worker routing, visibility and tenant isolation."""

from __future__ import annotations

import pytest

from agw_testkit.responses import describe
from support import sdk
from support.checks import assert_error


def _publish(gw, key, c, goal, payload, **fields):
    if sdk.IS_V2 or not fields:
        return sdk.publish(c, goal, payload, **fields)
    body_fields = dict(fields)
    res = gw.raw(key).publish(goal, payload, **body_fields)
    assert res.status_code == 201, describe(res)
    return res.json()["id"]


def _caps(*caps):
    """2.1.2 accepts a list, 1.3.2 a comma string."""
    return list(caps) if sdk.IS_V2 else ",".join(caps)


def test_capability_routing(gw, tenant, client_for, uniq):
    c = client_for(gw, tenant)
    goal, cap = f"render-{uniq}", f"gpu-{uniq}"
    iid = _publish(gw, tenant, c, goal, {"frame": 1}, required_capability=cap)
    plain = _publish(gw, tenant, c, f"{goal}-plain", {"frame": 2})

    assert c.claim(goal, worker_id="cpu-1").status_code == 204
    assert c.claim(goal, worker_id="cpu-1", capabilities=_caps("cpu")).status_code == 204
    assert c.claim(goal, worker_id="cpu-1", capabilities=_caps(f"{cap}x", "gpu")).status_code == 204

    job = c.claim(goal, worker_id="gpu-1", capabilities=_caps("cpu", cap))
    assert job.status_code == 200 and sdk.job_id(job) == iid
    assert job.get("required_capability") == cap
    sdk.fulfill(c, job, {"ok": 1})

    # an intent without a requirement goes to any worker, capable or not
    job = c.claim(f"{goal}-plain", worker_id="gpu-1", capabilities=_caps(cap))
    assert job.status_code == 200 and sdk.job_id(job) == plain


def test_target_worker_routing(gw, tenant, client_for, uniq):
    c = client_for(gw, tenant)
    goal = f"pinned-{uniq}"
    target = f"worker-{uniq}-1"
    iid = _publish(gw, tenant, c, goal, {"x": 1}, target_worker=target)

    assert c.claim(goal).status_code == 204  # no worker id at all
    assert c.claim(goal, worker_id=f"worker-{uniq}-2").status_code == 204
    assert c.claim(goal, worker_id=f"worker-{uniq}-10").status_code == 204
    job = c.claim(goal, worker_id=target)
    assert job.status_code == 200 and sdk.job_id(job) == iid
    assert job.get("target_worker") == target


def test_private_intent_isolated_between_tenants(gw, tenant, other_tenant, client_for, uniq):
    a, b = client_for(gw, tenant), client_for(gw, other_tenant)
    goal, ns_a = f"private-{uniq}", f"ns-a-{uniq}"
    iid = sdk.publish(a, goal, {"secret": "A"}, namespace=ns_a)

    # B sees nothing, in A's namespace or its own
    assert b.claim(goal, namespace=ns_a).status_code == 204
    assert b.claim(goal, namespace="default").status_code == 204
    # private intents are only claimable in their own namespace, even by their tenant
    assert a.claim(goal, namespace=f"elsewhere-{uniq}").status_code == 204

    # B gets 404 on A's status / result, exactly like an unknown id
    rb = gw.raw(other_tenant)
    assert_error(rb.status(iid), 404)
    assert_error(rb.result(iid), 404)
    if sdk.IS_V2:
        for call in (b.get_status, b.get_result):
            with pytest.raises(sdk.IntentBusError) as ei:
                call(iid)
            assert not isinstance(ei.value, (sdk.IntentBusAuthError, sdk.LeaseLost))

    job = a.claim(goal, namespace=ns_a)
    assert job.status_code == 200 and sdk.job_id(job) == iid
    # B cannot complete or fail A's claimed intent
    assert_error(rb.fulfill(iid, {"claim_token": sdk.job_token(job) or "x", "result_type": "json",
                                  "result": {"stolen": True}}), 404)
    assert_error(rb.fulfill(iid, {"stolen": True}), 404)
    assert_error(rb.fail(iid, {"claim_token": sdk.job_token(job) or "x", "error": "sabotage"}), 404)
    assert_error(rb.request("POST", f"/extend_claim/{iid}",
                            body={"claim_token": sdk.job_token(job) or "x", "seconds": 30}), 404)
    sdk.fulfill(a, job, {"mine": True})
    st = gw.raw(tenant).result(iid).json()
    assert st["status"] == "fulfilled" and st["result"] == {"mine": True}, st


def test_public_intent_claimable_cross_tenant_any_namespace(gw, tenant, other_tenant, client_for, uniq):
    a, b = client_for(gw, tenant), client_for(gw, other_tenant)
    goal = f"shared-{uniq}"
    iid = sdk.publish(a, goal, {"for": "anyone"}, namespace=f"ns-a-{uniq}", visibility="public")

    job = b.claim(goal, namespace=f"ns-b-{uniq}")  # a namespace A never used
    assert job.status_code == 200 and sdk.job_id(job) == iid
    assert job.get("payload") == {"for": "anyone"}
    sdk.fulfill(b, job, {"done_by": "B"})

    # the publisher reads the result; the worker tenant still cannot read status/result
    res = gw.raw(tenant).result(iid).json()
    assert res["status"] == "fulfilled" and res["result"] == {"done_by": "B"}, res
    assert_error(gw.raw(other_tenant).status(iid), 404)
    assert_error(gw.raw(other_tenant).result(iid), 404)


def test_keys_of_one_owner_share_intents(gw, client_for, uniq):
    owner = f"org-{uniq}"
    k1, k2 = gw.generate_key(owner), gw.generate_key(owner)
    c1, c2 = client_for(gw, k1), client_for(gw, k2)
    iid = sdk.publish(c1, f"team-{uniq}", {"t": 1})
    assert gw.raw(k2).status(iid).status_code == 200
    job = c2.claim(f"team-{uniq}")
    assert job.status_code == 200 and sdk.job_id(job) == iid


def test_publisher_filter_is_restricted(gw, tenant, other_tenant, client_for, uniq):
    a, b = client_for(gw, tenant), client_for(gw, other_tenant)
    goal = f"byme-{uniq}"
    iid = sdk.publish(a, goal, {}, visibility="public")
    # another tenant may not filter by A's key
    res = gw.raw(other_tenant).claim(goal, publisher=tenant)
    assert_error(res, 403, "forbidden")
    with pytest.raises(sdk.IntentBusAuthError):
        b.claim(goal, publisher=tenant)
    # the publisher itself may
    job = a.claim(goal, publisher=tenant)
    assert job.status_code == 200 and sdk.job_id(job) == iid
    sdk.fulfill(a, job, {})
