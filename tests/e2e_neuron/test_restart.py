"""The gateway restarts (SIGTERM, same port and database): neurons reconnect by
themselves, and a lease held across the restart can still be acked."""

from __future__ import annotations

import pytest

from neuron_support.env import new_tenant
from neuron_support.harness import Calls, Gate, capability, ctx_info


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
