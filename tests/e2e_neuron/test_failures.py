"""Nack kinds as the SDK sends them: schema-mismatch and terminal fail the task
at once, a raising handler (retryable) is retried until attempts run out."""

from __future__ import annotations

import json

import pytest

from agw_testkit.neuron import Calls, capability, ctx_info

N_SCHEMA = {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}
ECHO_OUT = {"type": "object", "required": ["echo"]}

# Retries wait out the gateway's retry backoff; keep the deadline generous.
RETRY_TIMEOUT = 45.0


def _error_text(task) -> str:
    return json.dumps(task.get("error"), ensure_ascii=False).lower()


def test_input_schema_mismatch_is_terminal(tenant, neurons, cap):
    """The SDK validates lease input against the schema given to register_handler
    and nacks `schema-mismatch` without running the handler: the task is dead
    after one attempt although attempts remain.

    The register frame carries no schema (protocol.py Capability: type, scope,
    concurrency, leaseTtlMs; extra="forbid"), so the gateway cannot refuse the
    input at submit time here: the task is accepted and fails on the neuron."""
    calls = Calls()

    async def handler(input, ctx):
        calls.add(**ctx_info(ctx))
        return {"echo": input}

    neurons(tenant.gw, tenant.token()).add(capability(cap, 1), handler, input_schema=N_SCHEMA).start()
    bad = tenant.tasks.create(cap, {"n": "not-an-int"}, maxAttempts=5)
    t = tenant.tasks.wait_state(bad, "dead")
    assert t["attempts"] == 1, f"schema-mismatch is terminal: no retry: {t}"
    assert t.get("output") is None, t
    err = _error_text(t)
    assert "schema" in err, f"the task error should carry the nack (INPUT_SCHEMA_MISMATCH): {t}"
    # the same capability still works for valid input; the handler only ever saw that one
    good = tenant.tasks.create(cap, {"n": 7})
    assert tenant.tasks.wait_state(good, "fulfilled")["output"] == {"echo": {"n": 7}}
    assert [c["task_id"] for c in calls.all()] == [good]


def test_output_schema_mismatch_is_terminal(tenant, neurons, cap):
    calls = Calls()

    async def wrong_shape(input, ctx):
        calls.add(**ctx_info(ctx))
        return {"not_echo": True}

    neurons(tenant.gw, tenant.token()).add(capability(cap, 1), wrong_shape, output_schema=ECHO_OUT).start()
    tid = tenant.tasks.create(cap, {"x": 1}, maxAttempts=5)
    t = tenant.tasks.wait_state(tid, "dead")
    assert t["attempts"] == 1, t
    assert t.get("output") is None, f"output failing outputSchema must not be stored: {t}"
    assert "schema" in _error_text(t), t
    assert len(calls.all()) == 1


def test_ctx_fail_is_terminal(tenant, neurons, cap):
    calls = Calls()

    async def refuse(input, ctx):
        calls.add(**ctx_info(ctx))
        ctx.fail("no such customer", code="E_NOT_FOUND")

    neurons(tenant.gw, tenant.token()).add(capability(cap, 1), refuse).start()
    tid = tenant.tasks.create(cap, {"customer": 42}, maxAttempts=5)
    t = tenant.tasks.wait_state(tid, "dead")
    assert t["attempts"] == 1, f"a terminal nack must not be retried: {t}"
    err = _error_text(t)
    assert "no such customer" in err, f"the nack reason belongs in the task error: {t}"
    assert "e_not_found" in err, f"the nack code belongs in the task error: {t}"
    assert len(calls.all()) == 1


@pytest.mark.slow
def test_raising_handler_is_retried_on_another_neuron(ttl_tenant, neurons, cap):
    """Runs on the 2 s-TTL gateway: a retry pushed to the first neuron while it
    disconnects is lost until its lease expires (neuron.md), which then costs
    2 s rather than 30 s -- and an attempt, hence `>=` below."""
    tenant = ttl_tenant
    flaky_calls, good_calls = Calls(), Calls()

    async def always_raises(input, ctx):
        flaky_calls.add(**ctx_info(ctx))
        raise RuntimeError("flaky dependency")

    async def works(input, ctx):
        good_calls.add(**ctx_info(ctx))
        return {"ok": input}

    flaky = neurons(tenant.gw, tenant.token()).add(capability(cap, 1), always_raises).start()
    tid = tenant.tasks.create(cap, {"job": 1}, maxAttempts=6)
    flaky_calls.wait(1, what="the raising handler to run once")
    flaky.stop(drain=True, timeout=10)  # its retryable nack is posted before the runner ends

    t = tenant.tasks.task(tid)
    assert t["state"] in ("open", "leased"), f"a retryable nack with attempts left re-queues the task: {t}"

    neurons(tenant.gw, tenant.token()).add(capability(cap, 1), works).start()
    t = tenant.tasks.wait_state(tid, "fulfilled", timeout=RETRY_TIMEOUT)
    assert t["output"] == {"ok": {"job": 1}}, t
    failed = flaky_calls.all()
    [good] = good_calls.all()
    assert t["attempts"] >= len(failed) + 1, f"attempts >= failed leases + the successful one: {t}, {failed}"
    assert good["attempt"] > failed[-1]["attempt"], f"attempt must grow on re-lease: {failed} -> {good}"
    assert all(c["task_id"] == tid for c in failed + [good])


@pytest.mark.slow
def test_retry_counts_attempts_on_one_neuron(tenant, neurons, cap):
    calls = Calls()

    async def fails_first(input, ctx):
        calls.add(**ctx_info(ctx))
        if len(calls.all(task_id=ctx.task.task_id)) == 1:
            raise ValueError("first try fails")
        return {"attempt": ctx.task.attempt}

    neurons(tenant.gw, tenant.token()).add(capability(cap, 1), fails_first).start()
    tid = tenant.tasks.create(cap, {}, maxAttempts=3)
    t = tenant.tasks.wait_state(tid, "fulfilled", timeout=RETRY_TIMEOUT)
    first, second = calls.all()
    assert second["attempt"] == first["attempt"] + 1, (first, second)
    assert t["output"] == {"attempt": second["attempt"]}, t
    assert t["attempts"] == 2, t
    assert t["maxAttempts"] == 3, t


@pytest.mark.slow
def test_retries_exhausted_task_is_dead(tenant, neurons, cap):
    calls = Calls()

    async def boom(input, ctx):
        calls.add(**ctx_info(ctx))
        raise RuntimeError(f"boom #{len(calls)}")

    neurons(tenant.gw, tenant.token()).add(capability(cap, 1), boom).start()
    tid = tenant.tasks.create(cap, {}, maxAttempts=2)
    t = tenant.tasks.wait_state(tid, "dead", timeout=RETRY_TIMEOUT)
    assert t["attempts"] == 2, t
    assert len(calls.all()) == 2, calls.all()
    assert "boom #2" in _error_text(t), f"the last nack reason belongs in the task error: {t}"
