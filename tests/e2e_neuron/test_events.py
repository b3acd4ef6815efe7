"""Execution events of neuron dispatches: an ack, a nack, a lease expiry and a
cancel of a leased task each leave exactly one signed IntentProof v1 event
`neuron.<capability>` on the task's chain (correlation id = task id), which the
independent `intentproof` package verifies; an open task's cancel ends no
dispatch and leaves none.

(Every gateway's whole event log is checked again when its use ends: gateway.py.)
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from agw_testkit.events import SENTINEL, assert_v1, chain_of, keys, list_events, verify_independently
from agw_testkit.neuron import Calls, capability, ctx_info
from agw_testkit.responses import describe
from agw_testkit.waits import wait_until
from neuron_support import SHORT_TTL_MS

TTL_S = SHORT_TTL_MS / 1000
RETRY_TIMEOUT = 45.0


def _wait_chain(tenant, tid, n, timeout=15.0):
    return wait_until(lambda: (lambda c: c if len(c) >= n else None)(chain_of(tenant.gw.base_url, tenant.api_key, tid)),
                      timeout, f"{n} events on task {tid}'s chain",
                      detail=lambda: chain_of(tenant.gw.base_url, tenant.api_key, tid))


def test_ack_leaves_exactly_one_neuron_event(tenant, neurons, cap):
    async def echo(input, ctx):
        return {"echo": input["text"]}

    n = neurons(tenant.gw, tenant.token()).add(capability(cap, 1), echo).start()
    payload = {"text": "hi ✓", "password": "hunter2-secret"}
    tid = tenant.tasks.create(cap, payload)
    tenant.tasks.wait_state(tid, "fulfilled")

    [e] = chain_of(tenant.gw.base_url, tenant.api_key, tid)
    assert_v1(e)
    assert (e["correlation_id"], e["intent"], e["action"], e["status"]) == (tid, cap, f"neuron.{cap}", "ok"), e
    assert (e["chain_position"], e["prev_event_hash"], e["tenant_id"]) == (1, SENTINEL, tenant.owner), e
    a = e["attributes"]
    assert (a["protocol"], a["outcome"], a["attempt"], a["job_id"]) == ("neuron", "fulfilled", 1, tid), a
    assert a.get("worker") == n.neuron_id, f"the event names the neuron that held the lease: {a}"
    assert e.get("error") is None and e.get("output") == {"echo": "hi ✓"}, e
    assert "hunter2-secret" not in json.dumps(e), f"a `password` input must be redacted in the event: {e}"
    verify_independently([e], keys(tenant.gw.base_url))

    # The tenant's JWT sees the same chain; the protocol filter finds it.
    assert chain_of(tenant.gw.base_url, tenant.token(), tid) == [e]
    assert e in list_events(tenant.gw.base_url, tenant.api_key, protocol="neuron", topic=cap)
    assert list_events(tenant.gw.base_url, tenant.api_key, protocol="intent_bus", correlation_id=tid) == []


def test_terminal_nack_leaves_one_dead_event(tenant, neurons, cap):
    async def refuse(input, ctx):
        ctx.fail("no such customer", code="E_NOT_FOUND")

    neurons(tenant.gw, tenant.token()).add(capability(cap, 1), refuse).start()
    tid = tenant.tasks.create(cap, {"customer": 42}, maxAttempts=5)
    tenant.tasks.wait_state(tid, "dead")
    [e] = chain_of(tenant.gw.base_url, tenant.api_key, tid)
    assert (e["action"], e["status"], e["attributes"]["outcome"]) == (f"neuron.{cap}", "error", "dead"), e
    assert e["error"]["name"] == "WorkerFailed" and "no such customer" in e["error"]["message"], e
    verify_independently([e], keys(tenant.gw.base_url))


@pytest.mark.slow
def test_retryable_nack_then_ack_is_a_two_event_chain(tenant, neurons, cap):
    calls = Calls()

    async def fails_first(input, ctx):
        calls.add(**ctx_info(ctx))
        if len(calls.all(task_id=ctx.task.task_id)) == 1:
            raise ValueError("first try fails")
        return {"attempt": ctx.task.attempt}

    neurons(tenant.gw, tenant.token()).add(capability(cap, 1), fails_first).start()
    tid = tenant.tasks.create(cap, {}, maxAttempts=3)
    tenant.tasks.wait_state(tid, "fulfilled", timeout=RETRY_TIMEOUT)

    chain = chain_of(tenant.gw.base_url, tenant.api_key, tid)
    assert [(e["chain_position"], e["status"], e["attributes"]["outcome"]) for e in chain] == [
        (1, "error", "retry"), (2, "ok", "fulfilled")], chain
    assert "first try fails" in chain[0]["error"]["message"], chain[0]
    assert all(e["action"] == f"neuron.{cap}" and e["correlation_id"] == tid for e in chain), chain
    verify_independently(chain, keys(tenant.gw.base_url))


def test_cancel_of_a_leased_task_leaves_one_cancelled_event(tenant, neurons, cap):
    calls = Calls()

    async def slow(input, ctx):
        calls.add(**ctx_info(ctx))
        await asyncio.sleep(60)
        return {}

    neurons(tenant.gw, tenant.token()).add(capability(cap, 1), slow).start()
    tid = tenant.tasks.create(cap, {}, maxAttempts=3)
    calls.wait(1, task_id=tid)
    assert chain_of(tenant.gw.base_url, tenant.api_key, tid) == [], "a lease settles nothing: no event yet"
    res = tenant.tasks.cancel(tid)
    assert res.status_code == 200, describe(res)
    tenant.tasks.wait_state(tid, "cancelled")
    [e] = chain_of(tenant.gw.base_url, tenant.api_key, tid)
    assert (e["action"], e["status"], e["error"]["name"], e["attributes"]["outcome"]) == (
        f"neuron.{cap}", "error", "Cancelled", "cancelled"), e
    verify_independently([e], keys(tenant.gw.base_url))

    # An open task's cancel ends no dispatch: no event.
    open_tid = tenant.tasks.create(f"{cap}-nobody", {})
    assert tenant.tasks.cancel(open_tid).status_code == 200
    assert tenant.tasks.task(open_tid)["state"] == "cancelled"
    assert chain_of(tenant.gw.base_url, tenant.api_key, open_tid) == []


@pytest.mark.slow
def test_expired_lease_then_ack_chains_two_events(ttl_tenant, neurons, neuron_procs, cap):
    child = neuron_procs(base_url=ttl_tenant.gw.base_url, token=ttl_tenant.token("child"),
                         neuron_id=f"evchild-{cap.split('/')[0]}", capability=cap)
    child.wait_event("registered")
    tid = ttl_tenant.tasks.create(cap, {"v": 1}, maxAttempts=3)
    child.wait_event("started")
    child.kill9()
    killed = time.monotonic()
    [expired] = _wait_chain(ttl_tenant, tid, 1, timeout=TTL_S + 15)
    assert (expired["status"], expired["error"]["name"], expired["attributes"]["outcome"]) == (
        "error", "LeaseExpired", "expired"), expired
    assert expired["action"] == f"neuron.{cap}", expired
    assert time.monotonic() - killed < TTL_S + 15

    async def finish(input, ctx):
        return {"v": input["v"]}

    neurons(ttl_tenant.gw, ttl_tenant.token("survivor")).add(capability(cap, 1), finish).start()
    ttl_tenant.tasks.wait_state(tid, "fulfilled", timeout=TTL_S + 15)
    chain = chain_of(ttl_tenant.gw.base_url, ttl_tenant.api_key, tid)
    assert [(e["chain_position"], e["status"]) for e in chain] == [(1, "error"), (2, "ok")], chain
    assert chain[0] == expired
    verify_independently(chain, keys(ttl_tenant.gw.base_url))
