"""Cancellation through the task API, and a neuron's graceful stop."""

from __future__ import annotations

import asyncio

from agw_testkit.neuron import Calls, Gate, capability, ctx_info
from agw_testkit.responses import describe
from agw_testkit.waits import wait_until


def test_cancel_reaches_the_running_handler(tenant, neurons, cap):
    calls = Calls()

    async def handler(input, ctx):
        calls.add(**ctx_info(ctx, phase="started"))
        if input.get("quick"):
            return {"quick": True}
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            calls.add(phase="cancelled", task_id=ctx.task.task_id, event_set=ctx.cancelled.is_set())
            raise
        return {"finished": True}

    n = neurons(tenant.gw, tenant.token()).add(capability(cap, 1), handler).start()
    tid = tenant.tasks.create(cap, {}, maxAttempts=3)
    calls.wait(1, phase="started", task_id=tid)
    assert tenant.tasks.task(tid)["state"] == "leased"

    res = tenant.tasks.cancel(tid)
    assert res.status_code == 200, describe(res)
    [c] = calls.wait(1, what="the handler to be cancelled (a `cancel` frame for its lease)",
                     phase="cancelled", task_id=tid)
    assert c["event_set"] is True, "the SDK sets ctx.cancelled before cancelling the handler task"
    assert tenant.tasks.wait_state(tid, "cancelled")["state"] == "cancelled"

    # Sentinel: the next task on the same (concurrency 1) capability runs, and
    # the cancelled one was neither re-leased nor changed by the SDK's
    # `nack kind=cancelled` for its revoked lease.
    sentinel = tenant.tasks.create(cap, {"quick": True})
    assert tenant.tasks.wait_state(sentinel, "fulfilled")["output"] == {"quick": True}
    assert len(calls.all(phase="started", task_id=tid)) == 1
    assert tenant.tasks.task(tid)["state"] == "cancelled"
    assert len(n.frames_of("cancel")) == 1, n.frames_of("cancel")


def test_cancel_an_open_task(tenant, neurons, cap):
    calls = Calls()

    async def handler(input, ctx):
        calls.add(**ctx_info(ctx))
        return {}

    tid = tenant.tasks.create(cap, {"never": "run"})
    res = tenant.tasks.cancel(tid)
    assert res.status_code == 200, describe(res)
    assert tenant.tasks.task(tid)["state"] == "cancelled"

    neurons(tenant.gw, tenant.token()).add(capability(cap, 1), handler).start()
    sentinel = tenant.tasks.create(cap, {"sentinel": True})
    tenant.tasks.wait_state(sentinel, "fulfilled")
    assert [c["task_id"] for c in calls.all()] == [sentinel], "a cancelled task must never be leased"
    assert tenant.tasks.task(tid)["state"] == "cancelled"


def test_cancel_a_finished_task_changes_nothing(tenant, neurons, cap):
    async def handler(input, ctx):
        return {"done": 1}

    neurons(tenant.gw, tenant.token()).add(capability(cap, 1), handler).start()
    tid = tenant.tasks.create(cap, {})
    tenant.tasks.wait_state(tid, "fulfilled")
    res = tenant.tasks.cancel(tid)
    assert res.status_code in (200, 409), describe(res)
    t = tenant.tasks.task(tid)
    assert t["state"] == "fulfilled" and t["output"] == {"done": 1}, t


def test_drain_on_stop_finishes_and_acks(tenant, neurons, cap):
    calls = Calls()
    gate = Gate()

    async def handler(input, ctx):
        calls.add(**ctx_info(ctx, phase="started"))
        await gate.wait(30)
        calls.add(phase="finished", task_id=ctx.task.task_id)
        return {"drained": True}

    n = neurons(tenant.gw, tenant.token()).add(capability(cap, 1), handler).start()
    tid = tenant.tasks.create(cap, {})
    calls.wait(1, phase="started", task_id=tid)
    stopping = n.stop_async(drain=True, timeout=20)
    gate.open()
    stopping.result(30)
    # stop(drain=True) returned: the handler finished and its ack was answered
    # before the transport closed -- no waiting needed here.
    assert calls.all(phase="finished", task_id=tid)
    t = tenant.tasks.task(tid)
    assert t["state"] == "fulfilled" and t["output"] == {"drained": True}, t
    assert not n.records("ack POST rejected"), n.log_lines()


def test_lease_pushed_to_a_stopping_neuron_does_not_burn_an_attempt(tenant, neurons, cap):
    """A lease that reaches a draining neuron is nacked retryable "neuron shutting
    down"; neuron.md: that must not count as a failed attempt, so a
    maxAttempts=1 task must not be dead afterwards.

    (Whether it is fulfilled later is not asserted: a lease pushed while the
    neuron's stream closes is lost until its TTL, and that expiry may count.)"""
    calls = Calls()
    gate = Gate()

    async def blocking(input, ctx):
        calls.add(**ctx_info(ctx))
        await gate.wait(30)
        return {"by": "stopping"}

    old = neurons(tenant.gw, tenant.token("old")).add(capability(cap, 2), blocking).start()
    first = tenant.tasks.create(cap, {"n": 1})
    calls.wait(1, task_id=first)
    stopping = old.stop_async(drain=True, timeout=20)
    try:
        wait_until(lambda: old.neuron._stopping, 5, "the SDK to enter its draining state")
        second = tenant.tasks.create(cap, {"n": 2}, maxAttempts=1)

        def leases_for_second():
            return [f for f in old.frames_of("lease") if f.lease.task.task_id == second]

        # The gateway does not know the neuron is draining and it has a free slot.
        wait_until(leases_for_second, 10, "the second task's lease to reach the draining neuron")

        # After the nack the task is re-queued (open), possibly pushed again to
        # the same neuron (a second lease frame) -- but never dead.
        box = {}

        def settled():
            box["t"] = tenant.tasks.task(second)
            return box["t"]["state"] in ("open", "dead", "cancelled", "fulfilled") or len(leases_for_second()) > 1

        wait_until(settled, 10, "the gateway to process the 'neuron shutting down' nack",
                   detail=lambda: box.get("t"))
        t = tenant.tasks.task(second)
        assert t["state"] != "dead", (
            f"a 'neuron shutting down' retryable nack must not consume the only attempt: {t}")
        assert not calls.all(task_id=second), "the draining neuron must not run new leases"
    finally:
        gate.open()
        stopping.result(30)
    assert tenant.tasks.task(first)["state"] == "fulfilled"


def test_stop_without_drain_fails_the_task_as_cancelled_by_neuron(tenant, neurons, cap):
    """stop(drain=False) cancels in-flight handlers; the SDK then nacks their live
    leases with kind `cancelled` (_lease_runner.py: `except asyncio.CancelledError`
    -> _nack(..., "cancelled", "handler aborted")). Issue 3 maps nack kinds to
    retry (retryable) or terminal failure (terminal, schema-mismatch,
    cancelled-by-neuron): the task is dead with the nack as its error, and no
    other neuron runs it. (A neuron that should hand work back stops with
    drain=True, or nacks `retryable`.)"""
    calls = Calls()

    async def blocking(input, ctx):
        calls.add(**ctx_info(ctx, by="quitter"))
        await asyncio.sleep(60)
        return {"by": "quitter"}

    quitter = neurons(tenant.gw, tenant.token("quitter")).add(capability(cap, 1), blocking).start()
    tid = tenant.tasks.create(cap, {}, maxAttempts=3)
    calls.wait(1, task_id=tid, by="quitter")
    quitter.stop(drain=False)
    t = tenant.tasks.wait_state(tid, "dead", timeout=30)
    assert t["attempts"] == 1, t
    assert "cancelled" in (t["error"] or "") and "handler aborted" in (t["error"] or ""), t
