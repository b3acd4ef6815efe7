"""Runs that do not end well: a worker that fails (502 worker_failed), a worker
that never answers within timeout_ms (504 timeout, the job cancelled: a neuron
gets a `cancel` frame, an Intent Bus worker's late fulfill is refused)."""

from __future__ import annotations

import asyncio
import concurrent.futures

import httpx
import pytest
from intent_bus import IntentBusLeaseLostError

from agw_testkit.neuron import Calls
from agw_testkit.tenants import new_tenant
from gov_support.api import GovApi, error_of, json_of
from gov_support.config import DEFAULT_TOPIC, SUMMARIZE_TOPIC, gateway_config, policy
from gov_support.sdk import sync_client

pytestmark = pytest.mark.slow


def _hold_until_cancelled(calls: Calls):
    async def handler(input, ctx):
        calls.add(phase="started", task_id=ctx.task.task_id, input=input)
        try:
            await asyncio.sleep(300)
        except asyncio.CancelledError:
            calls.add(phase="cancelled", task_id=ctx.task.task_id, event_set=ctx.cancelled.is_set())
            raise
        return "too late"

    return handler


def test_timeout_answers_504_and_cancels_the_neurons_job(gw, tenant, gov, neurons):
    calls = Calls()
    n = neurons(gw, tenant, DEFAULT_TOPIC, _hold_until_cancelled(calls))
    res = gov.run(input="never answered", timeout_ms=1500)
    body = error_of(res, 504, "timeout")
    trace_id = body.get("trace_id")
    assert isinstance(trace_id, str) and trace_id, body

    [started] = calls.all(phase="started")
    assert started["input"]["trace_id"] == trace_id
    [c] = calls.wait(1, what="the neuron's handler to be cancelled (a `cancel` frame)", phase="cancelled")
    assert c["event_set"] is True and c["task_id"] == started["task_id"]
    assert len(n.frames_of("cancel")) == 1, n.frames_of("cancel")

    t = gov.wait_trace(trace_id, "timeout")
    assert t["decision"] == "ALLOW" and t["job_id"] == started["task_id"], t
    assert tenant.tasks.wait_state(t["job_id"], "cancelled")["state"] == "cancelled"


def test_timeout_refuses_the_intent_bus_workers_late_fulfill(gw, tenant, client, gov, claimers):
    claimer = claimers(gw, tenant)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        fut = pool.submit(client.run, "slow intent bus work", timeout_ms=2000)
        job = claimer.claim(DEFAULT_TOPIC)
        assert job.get("payload")["input"] == "slow intent bus work", job.get("payload")
        with pytest.raises(httpx.HTTPStatusError) as ei:
            fut.result(timeout=60)
    res = ei.value.response
    assert res.status_code == 504, f"{res.status_code} {res.text}"
    body = res.json()
    assert body.get("error") == "timeout" and body.get("trace_id"), body
    assert body["trace_id"] == job.get("payload")["trace_id"]

    t = gov.wait_trace(body["trace_id"], "timeout")
    assert tenant.tasks.wait_state(t["job_id"], "cancelled")["state"] == "cancelled"
    with pytest.raises(IntentBusLeaseLostError):
        claimer.fulfill(job, {"output": "too late"})
    assert gov.trace(body["trace_id"])["status"] == "timeout", "a refused late fulfill changes nothing"
    claimer.assert_nothing_on(DEFAULT_TOPIC)


def test_neuron_terminal_failure_is_502(gw, tenant, gov, neurons):
    async def handler(input, ctx):
        ctx.fail("model exploded", code="BOOM")

    n = neurons(gw, tenant, DEFAULT_TOPIC, handler)
    res = gov.run(input="fail please", timeout_ms=20000)
    body = error_of(res, 502, "worker_failed")
    assert "model exploded" in body["message"], body
    t = gov.trace(body["trace_id"])
    assert (t["decision"], t["status"], t["worker"]) == ("ALLOW", "failed", n.neuron_id), t
    assert tenant.tasks.task(t["job_id"])["state"] == "dead"


def test_intent_bus_worker_failure_is_502(gw, tenant, ib_workers):
    def handler(payload):
        raise RuntimeError(f"cannot handle {payload['input']}")

    w = ib_workers(gw, tenant, DEFAULT_TOPIC, handler)
    c = sync_client(gw.base_url, tenant.api_key)
    with pytest.raises(httpx.HTTPStatusError) as ei:
        c.run("doomed", timeout_ms=60000)
    res = ei.value.response
    assert res.status_code == 502, f"{res.status_code} {res.text}"
    body = res.json()
    assert body.get("error") == "worker_failed" and "cannot handle doomed" in body.get("message", ""), body
    t = GovApi(gw.base_url, tenant.api_key).trace(body["trace_id"])
    assert (t["status"], t["worker"]) == ("failed", w.worker_id), t


def test_agents_run_worker_failure_is_200_failed(gw, tenant, client, gov, neurons):
    async def handler(input, ctx):
        ctx.fail("summarizer is out of ink")

    neurons(gw, tenant, SUMMARIZE_TOPIC, handler)
    r = client.agents.run("summarizer", "anything")
    assert (r.agent_id, r.status, r.output) == ("summarizer", "FAILED", None), r
    assert r.error and "summarizer is out of ink" in r.error, r
    assert gov.trace(r.trace_id)["status"] == "failed"


@pytest.fixture(scope="module")
def short_gw(module_gateway_factory):
    """default_timeout_ms 1500: what chat and agents/run wait for a worker."""
    return module_gateway_factory("short", gateway_config(policy("short"), default_timeout_ms=1500))


def test_agents_run_and_chat_timeout_with_the_default_timeout(short_gw, neurons):
    g = short_gw
    t = new_tenant(g, "short")
    calls = Calls()
    neurons(g, t, SUMMARIZE_TOPIC, _hold_until_cancelled(calls))
    neurons(g, t, DEFAULT_TOPIC, _hold_until_cancelled(calls))
    api = GovApi(g.base_url, t.api_key)

    body = error_of(api.agents_run({"agent_id": "summarizer", "task": "slow", "config": None}), 504, "timeout")
    tr = api.wait_trace(body["trace_id"], "timeout")
    assert tr["kind"] == "agent", tr
    assert t.tasks.wait_state(tr["job_id"], "cancelled")["state"] == "cancelled"

    res = api.chat({"message": "slow chat", "session_id": "s-1"})
    assert res.status_code == 504, f"{res.status_code} {res.text}"
    body = json_of(res)
    assert body.get("error") == "timeout" and body.get("trace_id"), body
    assert api.wait_trace(body["trace_id"], "timeout")["kind"] == "chat"
    calls.wait(2, what="both held handlers to be cancelled", phase="cancelled")


def test_timeout_ms_absent_uses_default_timeout(short_gw, neurons):
    g = short_gw
    t = new_tenant(g, "default-timeout")
    calls = Calls()
    neurons(g, t, DEFAULT_TOPIC, _hold_until_cancelled(calls))
    api = GovApi(g.base_url, t.api_key)
    body = error_of(api.run({"input": "no options"}), 504, "timeout")
    assert api.wait_trace(body["trace_id"], "timeout")["status"] == "timeout"
    calls.wait(1, what="the handler to be cancelled", phase="cancelled")
