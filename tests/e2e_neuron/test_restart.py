"""The gateway restarts (SIGTERM, same port and database): neurons reconnect by
themselves, and a lease held across the restart can still be acked."""

from __future__ import annotations

import pytest

from agw_testkit.neuron import Calls, Gate, capability, ctx_info
from agw_testkit.tenants import new_tenant


@pytest.mark.slow
def test_neuron_reconnects_after_gateway_restart(gateway_factory, neurons, cap):
    g = gateway_factory("restart")
    tenant = new_tenant(g)

    async def echo(input, ctx):
        return {"echo": input}

    n = neurons(g, tenant.token(), reconnect_ms=(200, 1000)).add(capability(cap, 1), echo).start()
    first = tenant.tasks.create(cap, {"before": True})
    assert tenant.tasks.wait_state(first, "fulfilled")["output"] == {"echo": {"before": True}}

    code = g.restart()
    assert code == 0, f"SIGTERM with a neuron connected must exit 0 (SSE streams end on shutdown), got {code}"
    disconnects = n.frames_of("disconnect")
    assert disconnects, "neuron.md: a `disconnect` frame is sent before a graceful shutdown"
    assert disconnects[-1].reconnectable is True, disconnects[-1]

    n.wait_registered(2, timeout=20)
    second = tenant.tasks.create(cap, {"after": True})
    assert tenant.tasks.wait_state(second, "fulfilled")["output"] == {"echo": {"after": True}}
    # the task from before the restart is still there, unchanged
    t = tenant.tasks.task(first)
    assert t["state"] == "fulfilled" and t["output"] == {"echo": {"before": True}}, t


@pytest.mark.slow
def test_lease_survives_gateway_restart(gateway_factory, neurons, cap):
    """neuron.md: a neuron's leases stay until TTL when its stream closes; after
    reconnecting (same neuronId) it may still ack them."""
    g = gateway_factory("restart-lease")
    tenant = new_tenant(g)
    calls = Calls()
    gate = Gate()

    async def handler(input, ctx):
        calls.add(**ctx_info(ctx))
        await gate.wait(60)
        return {"survived": True}

    n = neurons(g, tenant.token(), reconnect_ms=(200, 1000), heartbeat_ms=1000)
    n.add(capability(cap, 1), handler).start()
    tid = tenant.tasks.create(cap, {}, maxAttempts=3)
    calls.wait(1, task_id=tid)

    assert g.restart() == 0
    n.wait_registered(2, timeout=20)
    assert tenant.tasks.task(tid)["state"] == "leased", "the lease outlives the restart (TTL 30 s)"
    gate.open()
    t = tenant.tasks.wait_state(tid, "fulfilled")
    assert t["output"] == {"survived": True}, t
    assert t["attempts"] == 1, t
    assert len(calls.all(task_id=tid)) == 1, "not re-leased"
    assert not n.records("ack POST rejected"), n.log_lines()


@pytest.mark.slow
def test_concurrency_holds_across_gateway_restart(gateway_factory, neurons, uniq):
    """A concurrency-1 neuron holds a lease across a gateway restart while a
    second task waits. After the reconnect the gateway must count the lease it
    already granted (the store knows its holder): pushing the waiting task at
    once puts two leases in flight, and the SDK parks the second behind its
    semaphore where nothing renews it (heartbeats list running leases only)."""
    cap, side = f"e2e-{uniq}/held", f"e2e-{uniq}/side"
    g = gateway_factory("restart-concurrency")
    tenant = new_tenant(g)
    calls = Calls()
    gate = Gate()

    async def handler(input, ctx):
        calls.add(**ctx_info(ctx))
        if input.get("n") == 1:
            await gate.wait(60)
        return input

    n = neurons(g, tenant.token(), reconnect_ms=(200, 1000), heartbeat_ms=1000)
    n.add(capability(cap, 1), handler).add(capability(side, 1), handler)
    n.start()
    first = tenant.tasks.create(cap, {"n": 1})
    calls.wait(1, task_id=first)
    second = tenant.tasks.create(cap, {"n": 2})
    assert tenant.tasks.task(second)["state"] == "open"

    assert g.restart() == 0
    n.wait_registered(2, timeout=20)
    # A task on the neuron's other capability, leased after the re-registration:
    # the dispatcher has made a full pass over both capabilities by then.
    sentinel = tenant.tasks.create(side, {"sentinel": True})
    tenant.tasks.wait_state(sentinel, "fulfilled")
    pushed_second = [f for f in n.frames_of("lease") if f.lease.task.task_id == second]
    assert not pushed_second, (
        f"after the restart the gateway pushed {second} while {first} was still held on the "
        "concurrency-1 capability")
    gate.open()
    assert tenant.tasks.wait_state(first, "fulfilled")["output"] == {"n": 1}
    assert tenant.tasks.wait_state(second, "fulfilled")["output"] == {"n": 2}
