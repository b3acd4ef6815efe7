"""Happy paths: tasks in through the task API, a real SDK neuron executes them,
the output comes back on GET /api/v1/tasks/{id}."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import requests

from agw_testkit.neuron import Calls, Gate, capability, ctx_info
from agw_testkit.responses import describe
from agw_testkit.tenants import new_tenant

OBJECT = {"type": "object"}
ECHO_OUT = {"type": "object", "required": ["echo"]}


def test_echo_round_trip(tenant, neurons, cap):
    calls = Calls()

    async def echo(input, ctx):
        calls.add(**ctx_info(ctx, seen_at=datetime.now(timezone.utc)))
        return {"echo": input}

    neurons(tenant.gw, tenant.token()).add(capability(cap, 2), echo, OBJECT, ECHO_OUT).start()

    payload = {"text": "hi ✓", "n": 3, "nested": {"list": [1, None, "x"]}}
    tid = tenant.tasks.create(cap, payload, metadata={"trace": "t-1"})
    t = tenant.tasks.wait_state(tid, "fulfilled")

    assert t["output"] == {"echo": payload}, t
    assert t["taskId"] == tid and t["capability"] == cap, t
    assert t["attempts"] == 1, f"one lease, one ack: attempts must be 1: {t}"
    assert t.get("error") is None, t
    for k in ("createdAt", "updatedAt", "maxAttempts"):
        assert k in t, f"task view lacks {k}: {t}"

    [c] = calls.all()
    assert c["task_id"] == tid and c["capability"] == cap, c
    assert c["input"] == payload, c
    assert c["metadata"] == {"trace": "t-1"}, c
    assert c["on_behalf_of"] is None, c
    assert c["attempt"] in (0, 1), f"first lease must carry attempt 0 (or 1 if 1-based): {c}"
    assert c["workflow_id"], c
    ttl = (c["expires_at"] - c["seen_at"]).total_seconds()
    assert 5 < ttl <= 31, f"lease expiresAt should be ~30 s ahead (default TTL), got {ttl:.1f}s: {c}"


def test_many_tasks_each_handled_once(tenant, neurons, cap):
    calls = Calls()

    async def double(input, ctx):
        calls.add(task_id=ctx.task.task_id)
        return {"doubled": input["n"] * 2}

    neurons(tenant.gw, tenant.token()).add(capability(cap, 4), double).start()
    ids = {n: tenant.tasks.create(cap, {"n": n}) for n in range(12)}
    for n, tid in ids.items():
        t = tenant.tasks.wait_state(tid, "fulfilled")
        assert t["output"] == {"doubled": n * 2}, t
    seen = [c["task_id"] for c in calls.all()]
    assert sorted(seen) == sorted(ids.values()), f"every task exactly once: {seen}"


def test_task_submitted_before_any_neuron_is_leased_on_registration(tenant, neurons, cap):
    tid = tenant.tasks.create(cap, {"early": True})
    assert tenant.tasks.task(tid)["state"] == "open"

    async def echo(input, ctx):
        return {"echo": input}

    neurons(tenant.gw, tenant.token()).add(capability(cap, 1), echo).start()
    assert tenant.tasks.wait_state(tid, "fulfilled")["output"] == {"echo": {"early": True}}


def test_progress_is_visible_and_ack_without_output(tenant, neurons, cap):
    gate = Gate()
    calls = Calls()

    async def slow(input, ctx):
        calls.add(task_id=ctx.task.task_id)
        await ctx.progress(percent=40, message="fetching", data={"step": 2})
        await gate.wait()
        await ctx.progress()  # only leaseId + sentAt on the wire (exclude_none)
        return None  # the SDK sends an ack with NO `output` key

    n = neurons(tenant.gw, tenant.token()).add(capability(cap, 1), slow).start()
    tid = tenant.tasks.create(cap, {"x": 1})
    t = tenant.tasks.wait(
        tid, lambda t: t["state"] == "leased" and (t.get("progress") or {}).get("percent") == 40,
        "state leased with progress.percent == 40")
    assert t["progress"].get("message") == "fetching", t
    assert t["progress"].get("data") == {"step": 2}, t
    gate.open()
    t = tenant.tasks.wait_state(tid, "fulfilled")
    assert t.get("output") is None, f"an ack without output stores null: {t}"
    assert not n.records("progress POST failed"), n.log_lines()
    assert not n.records("ack POST rejected"), n.log_lines()


def test_two_capabilities_on_one_neuron(tenant, neurons, uniq):
    up, rev = f"e2e-{uniq}/upper", f"e2e-{uniq}/text.reverse"

    async def upper(input, ctx):
        return {"s": input["s"].upper(), "cap": ctx.task.capability}

    async def reverse(input, ctx):
        return {"s": input["s"][::-1], "cap": ctx.task.capability}

    (neurons(tenant.gw, tenant.token())
     .add(capability(up, 1), upper)
     .add(capability(rev, 1), reverse)
     .start())
    a = tenant.tasks.create(up, {"s": "abc"})
    b = tenant.tasks.create(rev, {"s": "abc"})
    assert tenant.tasks.wait_state(a, "fulfilled")["output"] == {"s": "ABC", "cap": up}
    assert tenant.tasks.wait_state(b, "fulfilled")["output"] == {"s": "cba", "cap": rev}


def test_priority_orders_waiting_tasks(tenant, neurons, cap):
    order = Calls()

    async def record(input, ctx):
        order.add(name=input["name"])
        return {}

    low = tenant.tasks.create(cap, {"name": "low"}, priority=10)
    mid = tenant.tasks.create(cap, {"name": "default"})
    high = tenant.tasks.create(cap, {"name": "high"}, priority=900)
    neurons(tenant.gw, tenant.token()).add(capability(cap, 1), record).start()
    for tid in (low, mid, high):
        tenant.tasks.wait_state(tid, "fulfilled")
    assert [c["name"] for c in order.all()] == ["high", "default", "low"], order.all()


def test_on_behalf_of_scope(tenant, neurons, cap):
    seen_alice, seen_any = Calls(), Calls()

    async def as_alice(input, ctx):
        seen_alice.add(**ctx_info(ctx))
        return {"by": "alice-neuron"}

    async def as_any(input, ctx):
        seen_any.add(**ctx_info(ctx))
        return {"by": "any-neuron"}

    neurons(tenant.gw, tenant.token()).add(capability(cap, 1, on_behalf_of="alice"), as_alice).start()
    bob = tenant.tasks.create(cap, {"who": "bob"}, onBehalfOf="bob")
    plain = tenant.tasks.create(cap, {"who": None})
    alice = tenant.tasks.create(cap, {"who": "alice"}, onBehalfOf="alice")

    t = tenant.tasks.wait_state(alice, "fulfilled")
    assert t["output"] == {"by": "alice-neuron"}
    [c] = seen_alice.all()
    assert c["on_behalf_of"] == "alice", c
    # The alice-scoped neuron took a task submitted after these two: they were
    # never eligible for it (neuron.md: {onBehalfOf: u} receives only u's tasks).
    assert tenant.tasks.task(bob)["state"] == "open"
    assert tenant.tasks.task(plain)["state"] == "open"

    neurons(tenant.gw, tenant.token()).add(capability(cap, 2), as_any).start()
    assert tenant.tasks.wait_state(bob, "fulfilled")["output"] == {"by": "any-neuron"}
    assert tenant.tasks.wait_state(plain, "fulfilled")["output"] == {"by": "any-neuron"}
    got = {c["task_id"]: c["on_behalf_of"] for c in seen_any.all()}
    assert got == {bob: "bob", plain: None}, got
    assert len(seen_alice.all()) == 1


def test_task_api_credentials(gw, tenant, cap):
    """JWT and API key (Bearer or X-API-KEY) of one owner see the same tasks; no credential -> 401."""
    by_jwt = tenant.tasks_as(tenant.token())
    tid = by_jwt.create(cap, {"k": 1})
    for api in (tenant.tasks, tenant.tasks_as(tenant.api_key, style="x-api-key"),
                tenant.tasks_as(gw.generate_key(tenant.owner))):  # a second key of the same owner
        t = api.task(tid)
        assert t["taskId"] == tid and t["state"] == "open" and t["capability"] == cap, t
    assert tenant.tasks_as(None).submit(cap, {}).status_code == 401
    assert tenant.tasks_as(None).get(tid).status_code == 401
    res = tenant.tasks_as("agw_not_a_key").get(tid)
    assert res.status_code == 401, describe(res)
    other = new_tenant(gw, "other")
    res = other.tasks.get(tid)
    assert res.status_code == 404, f"another tenant must not see the task: {describe(res)}"


def test_task_api_rejects_bad_submissions(tenant, cap):
    api = tenant.tasks
    for body_fields, why in (
        ({"capability": "no-namespace", "input": {}}, "capability type must be namespaced"),
        ({"capability": cap, "input": {}, "maxAttempts": 0}, "maxAttempts must be >= 1"),
    ):
        res = requests.post(api.base_url + "/api/v1/tasks", headers=api.headers(),
                            data=json.dumps(body_fields), timeout=10)
        assert res.status_code == 400, f"{why}: {describe(res)}"
    res = api.get("task_does_not_exist")
    assert res.status_code == 404, describe(res)
