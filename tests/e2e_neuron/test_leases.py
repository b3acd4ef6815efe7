"""Lease lifecycle on a gateway with a 2 s lease TTL (AGW_NEURON_LEASE_TTL_MS):
heartbeats renew, silence expires, a killed neuron's task goes to another."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone

import pytest

from agw_testkit.neuron import Calls, Gate, capability, ctx_info
from neuron_support import SHORT_TTL_MS

TTL_S = SHORT_TTL_MS / 1000


@pytest.mark.slow
def test_heartbeat_keeps_a_long_task_alive(ttl_tenant, neurons, cap):
    calls = Calls()
    run_s = 2.5 * TTL_S

    async def long_task(input, ctx):
        calls.add(**ctx_info(ctx, seen_at=datetime.now(timezone.utc)))
        await asyncio.sleep(run_s)
        calls.add(done=True, cancelled=ctx.cancelled.is_set())
        return {"ran_s": run_s}

    n = neurons(ttl_tenant.gw, ttl_tenant.token(), heartbeat_ms=500)
    n.add(capability(cap, 1), long_task).start()
    tid = ttl_tenant.tasks.create(cap, {})
    t = ttl_tenant.tasks.wait_state(tid, "fulfilled", timeout=run_s + 15)
    assert t["output"] == {"ran_s": run_s}, t
    assert t["attempts"] == 1, f"heartbeats every 0.5 s must keep a {TTL_S}s lease alive: {t}"
    started = calls.all(task_id=tid)
    assert len(started) == 1, f"re-leased despite heartbeats: {calls.all()}"
    ttl = (started[0]["expires_at"] - started[0]["seen_at"]).total_seconds()
    assert 0 < ttl <= TTL_S + 1, f"lease expiresAt should be ~{TTL_S}s ahead, got {ttl:.2f}s"
    done = calls.all(done=True)
    assert len(done) == 1 and done[0]["cancelled"] is False, done
    assert not n.frames_of("cancel"), n.frames_of("cancel")
    assert not n.records("heartbeat post failed"), n.log_lines()


@pytest.mark.slow
def test_silent_lease_expires_and_is_re_leased(ttl_tenant, neurons, cap):
    """No heartbeat within the TTL: the task is re-queued with attempt+1 and the
    old holder gets a `cancel` (its handler is cancelled)."""
    calls = Calls()
    never = Gate()

    async def handler(input, ctx):
        calls.add(**ctx_info(ctx))
        if len(calls.all(task_id=ctx.task.task_id)) == 1:
            try:
                await never.wait(60)
            except asyncio.CancelledError:
                calls.add(cancelled=ctx.task.task_id, lease=ctx.lease_id)
                raise
        return {"attempt": ctx.task.attempt}

    # Default 10 s heartbeat: nothing renews the 2 s lease. Concurrency 2 so the
    # re-lease can run while the first handler still waits for its cancel.
    n = neurons(ttl_tenant.gw, ttl_tenant.token())
    n.add(capability(cap, 2), handler).start()
    tid = ttl_tenant.tasks.create(cap, {}, maxAttempts=3)
    first = calls.wait(1, task_id=tid)[0]
    t = ttl_tenant.tasks.wait_state(tid, "fulfilled", timeout=TTL_S + 15)
    runs = calls.all(task_id=tid)
    assert len(runs) == 2, runs
    assert runs[1]["attempt"] == first["attempt"] + 1, runs
    assert runs[1]["lease_id"] != first["lease_id"], "a re-lease needs a fresh leaseId"
    assert t["attempts"] == 2 and t["output"] == {"attempt": runs[1]["attempt"]}, t
    # neuron.md: expired lease -> cancel pushed to the old holder if still connected
    calls.wait(1, what="the expired lease's handler to be cancelled by a `cancel` frame",
               cancelled=tid, lease=first["lease_id"])
    # the cancelled handler's late nack must not touch the fulfilled task
    again = ttl_tenant.tasks.task(tid)
    assert again["state"] == "fulfilled" and again["output"] == t["output"], again


@pytest.mark.slow
def test_killed_neuron_task_goes_to_another_neuron(ttl_tenant, neurons, neuron_procs, cap):
    child = neuron_procs(base_url=ttl_tenant.gw.base_url, token=ttl_tenant.token("child"),
                         neuron_id=f"child-{cap.split('/')[0]}", capability=cap)
    child.wait_event("registered")
    tid = ttl_tenant.tasks.create(cap, {"v": 1}, maxAttempts=3)
    started = child.wait_event("started")
    assert started["taskId"] == tid
    assert ttl_tenant.tasks.task(tid)["state"] == "leased"
    child.kill9()
    killed_at = time.monotonic()

    calls = Calls()

    async def finish(input, ctx):
        calls.add(**ctx_info(ctx))
        return {"finished_by": "survivor", "v": input["v"]}

    neurons(ttl_tenant.gw, ttl_tenant.token("survivor")).add(capability(cap, 1), finish).start()
    t = ttl_tenant.tasks.wait_state(tid, "fulfilled", timeout=TTL_S + 15)
    assert t["output"] == {"finished_by": "survivor", "v": 1}, t
    assert t["attempts"] == 2, t
    [c] = calls.all()
    assert c["attempt"] == started["attempt"] + 1, (started, c)
    assert c["lease_id"] != started["leaseId"]
    assert time.monotonic() - killed_at < TTL_S + 15


@pytest.mark.slow
def test_capability_lease_ttl_overrides_the_default(tenant, neurons, cap):
    """leaseTtlMs on the capability (1.5 s) beats the shared gateway's 30 s default."""
    calls = Calls()
    never = Gate()

    async def handler(input, ctx):
        calls.add(**ctx_info(ctx, seen_at=datetime.now(timezone.utc)))
        if len(calls.all()) == 1:
            await never.wait(60)
        return {"attempt": ctx.task.attempt}

    neurons(tenant.gw, tenant.token()).add(capability(cap, 2, lease_ttl_ms=1500), handler).start()
    tid = tenant.tasks.create(cap, {}, maxAttempts=3)
    first = calls.wait(1)[0]
    ttl = (first["expires_at"] - first["seen_at"]).total_seconds()
    assert ttl <= 2.5, f"lease expiresAt should be ~1.5 s ahead with leaseTtlMs=1500, got {ttl:.2f}s"
    t = tenant.tasks.wait_state(tid, "fulfilled", timeout=15)
    assert t["attempts"] == 2, t
