"""One job store, two protocols: Intent Bus intents (intent-bus 2.1.2) reach
neurons of the same tenant, and tasks reach Intent Bus workers."""

from __future__ import annotations

import json

from intent_bus import IntentClient

from agw_testkit.neuron import Calls, capability, ctx_info
from agw_testkit.waits import wait_until


def _client(tenant) -> IntentClient:
    return IntentClient(base_url=tenant.gw.base_url, api_key=tenant.api_key, timeout=15.0)


def _wait_intent(c: IntentClient, intent_id: str, statuses, timeout: float = 20.0):
    box = {}

    def probe():
        box["s"] = c.get_status(intent_id)
        return box["s"] is not None and box["s"].status in statuses

    wait_until(probe, timeout, f"intent {intent_id} to reach {statuses}",
               detail=lambda: box.get("s") and box["s"].to_dict())
    return box["s"]


def test_intent_is_leased_to_a_neuron(tenant, neurons, uniq):
    goal = f"acme-{uniq}/echo"
    calls = Calls()

    async def echo(input, ctx):
        calls.add(**ctx_info(ctx))
        return {"echo": input, "by": "neuron"}

    neurons(tenant.gw, tenant.token()).add(capability(goal, 1), echo).start()
    c = _client(tenant)
    try:
        published = c.publish(goal, {"text": "from intent-bus"}, namespace="default")
        _wait_intent(c, published.id, ("fulfilled",))
        res = c.get_result(published.id)
    finally:
        c.close()
    assert res is not None and res.status == "fulfilled", res
    assert res.result_type == "json", res
    assert res.result == {"echo": {"text": "from intent-bus"}, "by": "neuron"}, res
    [call] = calls.all()
    assert call["input"] == {"text": "from intent-bus"} and call["capability"] == goal, call


def test_intent_nack_becomes_a_failure(tenant, neurons, uniq):
    goal = f"acme-{uniq}/echo"

    async def refuse(input, ctx):
        ctx.fail("cannot echo that", code="E_REFUSED")

    neurons(tenant.gw, tenant.token()).add(capability(goal, 1), refuse).start()
    c = _client(tenant)
    try:
        published = c.publish(goal, {"x": 1}, namespace="default", max_attempts=3)
        st = _wait_intent(c, published.id, ("dead", "failed"))
    finally:
        c.close()
    assert st.claim_attempts == 1, f"a terminal nack must not be retried: {st.to_dict()}"
    assert "cannot echo that" in (st.error or ""), f"the nack reason becomes the intent's error: {st.to_dict()}"


def test_other_tenant_neuron_never_gets_the_intent(gw, neurons, uniq):
    from agw_testkit.tenants import new_tenant

    goal = f"acme-{uniq}/echo"
    pub, other = new_tenant(gw, "pub"), new_tenant(gw, "other")
    seen = Calls()

    async def record(input, ctx):
        seen.add(**ctx_info(ctx))
        return {"by": "other"}

    neurons(gw, other.token()).add(capability(goal, 1), record).start()
    c = _client(pub)
    try:
        mine = c.publish(goal, {"private": True}, namespace="default")
        sentinel = other.tasks.create(goal, {"sentinel": True})
        other.tasks.wait_state(sentinel, "fulfilled")
        assert [s["task_id"] for s in seen.all()] == [sentinel], seen.all()
        assert c.get_status(mine.id).status == "open"
    finally:
        c.close()


def test_task_is_claimable_by_an_intent_bus_worker(tenant, uniq):
    goal = f"acme-{uniq}/echo"
    tid = tenant.tasks.create(goal, {"text": "from the task API"}, metadata={"m": 1})
    c = _client(tenant)
    try:
        box = {}

        def claim():
            job = c.claim(goal, namespace="default")
            if job and job.status_code == 200:
                box["job"] = job
                return True
            return False

        wait_until(claim, 10, f"an intent-bus worker to claim the task on goal {goal}", interval=0.2)
        job = box["job"]
        assert job.get("payload") == {"text": "from the task API"}, job.data.to_dict()
        assert tenant.tasks.task(tid)["state"] == "leased"
        c.fulfill(job.id, job.claim_token, result={"via": "intent-bus", "len": 17})
    finally:
        c.close()
    t = tenant.tasks.wait_state(tid, "fulfilled")
    assert t["output"] == {"via": "intent-bus", "len": 17}, t
    assert t["attempts"] == 1, t


def test_task_failed_by_an_intent_bus_worker(tenant, uniq):
    goal = f"acme-{uniq}/echo"
    tid = tenant.tasks.create(goal, {"x": 1}, maxAttempts=1)
    c = _client(tenant)
    try:
        box = {}

        def claim():
            job = c.claim(goal, namespace="default")
            if job and job.status_code == 200:
                box["job"] = job
                return True
            return False

        wait_until(claim, 10, f"an intent-bus worker to claim the task on goal {goal}", interval=0.2)
        c.fail(box["job"].id, box["job"].claim_token, error="worker says no")
    finally:
        c.close()
    t = tenant.tasks.wait_state(tid, "dead")
    assert "worker says no" in json.dumps(t.get("error")), t
