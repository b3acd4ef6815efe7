"""Bearer tokens and tenant isolation on the neuron channel and the task API."""

from __future__ import annotations

import secrets
import time
import uuid
from datetime import datetime, timezone

import pytest
import requests

from agw_testkit.neuron import Calls, Gate, capability, ctx_info
from agw_testkit.responses import describe
from agw_testkit.tenants import new_tenant
from agw_testkit.waits import wait_until
from neuron_support import jwt
from neuron_support.raw_sse import RawSse


def _iso() -> str:
    return datetime.now(timezone.utc).isoformat()


def _post(gw, name, token, body):
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return requests.post(f"{gw.base_url}/neuron/{name}", json=body, headers=headers, timeout=10)


def _register_body(neuron_id, cap):
    return {"type": "register", "neuronId": neuron_id, "protocolVersion": "1.0.0",
            "capabilities": [{"type": cap, "scope": "any", "concurrency": 1}]}


def test_minted_token_claims(tenant):
    c = jwt.claims(tenant.token("claims-check"))
    assert c.get("aud") == "bigbrain" or c.get("aud") == ["bigbrain"], f"neuron.md: aud=bigbrain: {c}"
    assert c.get("sub") == "claims-check", c
    assert tenant.owner in [v for v in c.values() if isinstance(v, str)], f"tenant claim missing: {c}"
    assert 3500 <= c["exp"] - time.time() <= 3700, f"--ttl 1h: {c}"


def _bad_tokens(tenant):
    good = tenant.token("victim")
    secret = tenant.gw.jwt_secret
    claims = jwt.claims(good)
    tenant_claim = next((k for k, v in claims.items() if v == tenant.owner), "sub")
    now = int(time.time())
    return {
        "expired": jwt.resign(good, secret, exp=now - 120, iat=now - 3720),
        "wrong-secret": jwt.resign(good, "not-the-gateway-secret"),
        "alg-none": jwt.alg_none(good),
        "tampered-tenant": jwt.tamper(good, **{tenant_claim: "someone-else"}),
        "wrong-audience": jwt.resign(good, secret, aud="not-bigbrain"),
        "no-exp": jwt.resign(good, secret, exp=None),
        "garbage": "not.a.jwt",
    }


BAD_KINDS = ["expired", "wrong-secret", "alg-none", "tampered-tenant", "wrong-audience", "no-exp", "garbage"]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_token_is_refused_everywhere(tenant, cap, kind):
    token = _bad_tokens(tenant)[kind]
    nid = f"forged-{uuid.uuid4().hex[:8]}"
    sse = RawSse(tenant.gw.base_url, nid, token)
    try:
        assert sse.status == 401, f"{kind}: GET /neuron/events -> {sse.status} {sse.body[:200]!r}"
    finally:
        sse.close()
    frames = {
        "register": _register_body(nid, cap),
        "heartbeat": {"type": "heartbeat", "neuronId": nid, "inFlight": [], "sentAt": _iso()},
        "ack": {"type": "ack", "leaseId": "lease-x", "output": {}, "completedAt": _iso()},
        "nack": {"type": "nack", "leaseId": "lease-x", "kind": "terminal", "reason": "x", "failedAt": _iso()},
        "progress": {"type": "progress", "leaseId": "lease-x", "sentAt": _iso()},
        "update-capability": {"type": "update-capability", "neuronId": nid,
                              "capability": {"type": cap, "scope": "any", "concurrency": 1}},
    }
    for name, body in frames.items():
        res = _post(tenant.gw, name, token, body)
        assert res.status_code == 401, f"{kind}: {describe(res)}"
    res = tenant.tasks_as(token).submit(cap, {})
    assert res.status_code == 401, f"{kind}: {describe(res)}"
    res = tenant.tasks_as(token).get("anything")
    assert res.status_code == 401, f"{kind}: {describe(res)}"


def test_missing_token_is_refused(gw, cap):
    sse = RawSse(gw.base_url, "anon", None)
    try:
        assert sse.status == 401, sse.body[:200]
    finally:
        sse.close()
    assert _post(gw, "register", None, _register_body("anon", cap)).status_code == 401


def test_valid_token_control(tenant, cap):
    """The positive control for the refusals above: same routes, good token."""
    token = tenant.token("control")
    sse = RawSse(tenant.gw.base_url, f"control-{uuid.uuid4().hex[:6]}", token)
    try:
        assert sse.status == 200, sse.body[:300]
    finally:
        sse.close()
    assert tenant.tasks_as(token).submit(cap, {}).status_code == 201


def test_sdk_refreshes_its_token_once_on_401(tenant, neurons, cap):
    """transport.py: a 401 on the SSE open calls auth() again and retries once."""
    good = tenant.token("refresh")
    forged = jwt.resign(good, "wrong-secret")
    handed = []

    def auth():
        tok = forged if not handed else good
        handed.append(tok)
        return tok

    async def echo(input, ctx):
        return {"echo": input}

    n = neurons(tenant.gw, auth).add(capability(cap, 1), echo).start()
    assert handed[0] == forged and good in handed
    assert n.count("connection:reconnecting") == 0, "the one 401 retry must succeed without a reconnect"
    tid = tenant.tasks.create(cap, {"r": 1})
    assert tenant.tasks.wait_state(tid, "fulfilled")["output"] == {"echo": {"r": 1}}


def test_sdk_with_forged_token_never_registers(tenant, neurons, cap):
    forged = jwt.resign(tenant.token("forger"), "wrong-secret")

    async def never(input, ctx):
        raise AssertionError("a neuron with a forged token must never get a lease")

    n = neurons(tenant.gw, forged).add(capability(cap, 1), never)
    n.start(wait_registered=False)
    wait_until(lambda: n.count("connection:reconnecting") >= 1, 10, "the SDK to back off after 401, 401")
    _, _, info = next(e for e in n.events if e[1] == "connection:reconnecting")
    assert "401" in info.reason, info
    assert n.auth_calls >= 2, "401 -> auth() called again before giving up"
    assert n.count("connection:open") == 0 and n.count("connection:registered") == 0


def test_tenant_b_never_receives_tenant_a_tasks(gw, neurons, cap):
    a, b = new_tenant(gw, "ta"), new_tenant(gw, "tb")
    seen_b, seen_a = Calls(), Calls()

    async def b_handler(input, ctx):
        seen_b.add(**ctx_info(ctx))
        return {"by": "b"}

    async def a_handler(input, ctx):
        seen_a.add(**ctx_info(ctx))
        return {"by": "a"}

    neurons(gw, b.token()).add(capability(cap, 4), b_handler).start()
    a_task = a.tasks.create(cap, {"secret": "A"})  # same capability type, other tenant
    b_task = b.tasks.create(cap, {"mine": "B"})
    assert b.tasks.wait_state(b_task, "fulfilled")["output"] == {"by": "b"}
    # B's neuron took B's later task; A's earlier one was never offered to it.
    assert [c["task_id"] for c in seen_b.all()] == [b_task], seen_b.all()
    assert a.tasks.task(a_task)["state"] == "open"

    for api in (b.tasks, b.tasks_as(b.token())):
        res = api.get(a_task)
        assert res.status_code == 404, f"tenant B reads tenant A's task: {describe(res)}"
        res = api.cancel(a_task)
        assert res.status_code == 404, f"tenant B cancels tenant A's task: {describe(res)}"
    assert a.tasks.task(a_task)["state"] == "open"

    neurons(gw, a.token()).add(capability(cap, 1), a_handler).start()
    assert a.tasks.wait_state(a_task, "fulfilled")["output"] == {"by": "a"}
    assert [c["task_id"] for c in seen_b.all()] == [b_task]


def test_foreign_lease_frames_are_refused(gw, neurons, cap):
    """ack / nack / progress for someone else's lease -> 404/409, task untouched."""
    a, b = new_tenant(gw, "owner"), new_tenant(gw, "thief")
    calls = Calls()
    gate = Gate()

    async def handler(input, ctx):
        calls.add(**ctx_info(ctx))
        await gate.wait(30)
        return {"by": "owner"}

    neurons(gw, a.token()).add(capability(cap, 1), handler).start()
    tid = a.tasks.create(cap, {}, maxAttempts=1)
    lease_id = calls.wait(1)[0]["lease_id"]
    thief = b.token("thief")
    # the thief needs a session of its own for the refusal to be about the lease
    sse = RawSse(gw.base_url, f"thief-{uuid.uuid4().hex[:6]}", thief)
    try:
        assert sse.status == 200
        for name, body in (
            ("progress", {"type": "progress", "leaseId": lease_id, "percent": 99, "sentAt": _iso()}),
            ("nack", {"type": "nack", "leaseId": lease_id, "kind": "terminal", "reason": "stolen",
                      "failedAt": _iso()}),
            ("ack", {"type": "ack", "leaseId": lease_id, "output": {"by": "thief"}, "completedAt": _iso()}),
        ):
            res = _post(gw, name, thief, body)
            assert res.status_code in (404, 409), f"foreign {name}: {describe(res)}"
            assert res.headers.get("Content-Type", "").startswith("application/json"), describe(res)
    finally:
        sse.close()
    t = a.tasks.task(tid)
    assert t["state"] == "leased" and (t.get("progress") or {}).get("percent") != 99, t
    gate.open()
    t = a.tasks.wait_state(tid, "fulfilled")
    assert t["output"] == {"by": "owner"}, t


def test_unknown_lease_frames_are_refused(tenant):
    token = tenant.token("unknown-lease")
    lease = "lease-" + secrets.token_hex(8)
    for name, body in (
        ("ack", {"type": "ack", "leaseId": lease, "output": 1, "completedAt": _iso()}),
        ("nack", {"type": "nack", "leaseId": lease, "kind": "retryable", "reason": "x", "failedAt": _iso()}),
        ("progress", {"type": "progress", "leaseId": lease, "sentAt": _iso()}),
    ):
        res = _post(tenant.gw, name, token, body)
        assert res.status_code in (404, 409), describe(res)
        assert "error" in res.json(), describe(res)
