"""Allowed runs end to end: policy ALLOW -> a job on the route's topic -> a real
worker answers -> RunResponse. Intent Bus workers and neurons, routing by agent
and by mode, what a worker sees, how its answer becomes `output`."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from hestiaos import RunResponse

from agw_testkit.neuron import Calls
from agw_testkit.responses import describe
from gov_support.api import RUN_FIELDS, WORKER_INPUT_FIELDS, GovApi, json_of
from gov_support.config import DEEP_TOPIC, DEFAULT_TOPIC, SUMMARIZE_TOPIC
from gov_support.sdk import run_async


def _is_uuid(s) -> bool:
    try:
        return str(uuid.UUID(s)) == s.lower()
    except (TypeError, ValueError, AttributeError):
        return False


def test_run_answered_by_an_intent_bus_worker(gw, tenant, client, gov, ib_workers):
    w = ib_workers(gw, tenant, DEFAULT_TOPIC, lambda p: {"output": f"echo: {p['input']}"})
    res = client.run("hello governance", session_id="sess-1")
    assert isinstance(res, RunResponse)
    assert res.result == "ALLOW", res
    assert res.output == "echo: hello governance", res
    assert res.mode == "balanced" and res.budget == 0.5, res
    assert _is_uuid(res.trace_id), f"trace_id must be a UUID: {res.trace_id!r}"
    assert isinstance(res.latency_ms, float) and res.latency_ms >= 0, res

    [call] = w.calls.all()
    p = call["payload"]
    assert set(p) == WORKER_INPUT_FIELDS, f"worker input fields: {sorted(p)}"
    assert p == {"kind": "run", "input": "hello governance", "trace_id": res.trace_id, "mode": "balanced",
                 "budget": 0.5, "session_id": "sess-1", "agent_id": None, "config": None}, p

    t = gov.trace(res.trace_id)
    assert t["decision"] == "ALLOW" and t["status"] == "completed", t
    assert t["topic"] == DEFAULT_TOPIC and t["kind"] == "run", t
    assert t["worker"] == w.worker_id, f"trace.worker must name the Intent Bus worker (X-Worker-ID): {t}"
    assert isinstance(t["job_id"], str) and t["job_id"], t


def test_run_answered_by_a_neuron_through_the_async_client(gw, tenant, gov, neurons):
    calls = Calls()

    async def handler(input, ctx):
        calls.add(input=input, capability=ctx.task.capability, task_id=ctx.task.task_id)
        return {"output": input["input"].upper(), "tokens": 3}

    n = neurons(gw, tenant, DEFAULT_TOPIC, handler)
    res = run_async(gw.base_url, tenant.api_key, lambda c: c.run_async("shout this", timeout_ms=20000))
    assert res.result == "ALLOW" and res.output == "SHOUT THIS", res

    [call] = calls.all()
    assert call["capability"] == DEFAULT_TOPIC
    assert call["input"] == {"kind": "run", "input": "shout this", "trace_id": res.trace_id, "mode": "balanced",
                             "budget": 0.5, "session_id": None, "agent_id": None, "config": None}, call["input"]
    t = gov.trace(res.trace_id)
    assert t["job_id"] == call["task_id"], f"trace.job_id must be the job the neuron ran: {t}"
    assert t["worker"] == n.neuron_id and t["status"] == "completed", t
    task = tenant.tasks.task(t["job_id"])
    assert task["state"] == "fulfilled" and task["priority"] == 100, f"ALLOW runs get allow_priority: {task}"


@pytest.mark.parametrize("answer, expected", [
    ("plain text", "plain text"),
    ({"output": "from the output key", "extra": [1, 2]}, "from the output key"),
    ({"answer": 42, "ok": True}, None),       # no "output": the JSON text of the result
    ({"output": 7}, None),                    # "output" not a string: JSON text too
    ([1, "two"], None),
], ids=["string", "object-with-output", "object", "non-string-output", "array"])
def test_how_a_worker_answer_becomes_output(gw, tenant, client, neurons, answer, expected):
    async def handler(input, ctx):
        return answer

    neurons(gw, tenant, DEFAULT_TOPIC, handler)
    res = client.run("answer me", timeout_ms=20000)
    assert res.result == "ALLOW", res
    if expected is not None:
        assert res.output == expected, res
    else:
        assert isinstance(res.output, str), f"output must be the JSON text of {answer!r}: {res}"
        assert json.loads(res.output) == answer, f"output must be the JSON text of {answer!r}: {res.output!r}"


def test_sync_client_makes_several_calls_in_a_row(gw, tenant, client, neurons):
    """hestiaos.Client runs each call in a fresh asyncio.run() but keeps one httpx pool:
    only `Connection: close` on SDK requests makes the second call work."""
    async def handler(input, ctx):
        return input["input"][::-1]

    neurons(gw, tenant, DEFAULT_TOPIC, handler)
    outs = [client.run(f"call {i}", timeout_ms=20000).output for i in range(3)]
    assert outs == ["0 llac", "1 llac", "2 llac"]
    st = client.system.status()
    assert st.status == "OK", st
    assert client.governance.status()["status"] == "stable"


def test_sdk_requests_are_answered_with_connection_close(gw, tenant):
    for path in ("/api/system/status", "/api/governance/stability"):
        res = GovApi(gw.base_url, tenant.api_key).request("GET", path)
        assert res.status_code == 200, describe(res)
        assert res.headers.get("Connection", "").lower() == "close", (
            f"GET {path} with User-Agent HestiaOS-SDK/0.1.0 must answer `Connection: close`: {dict(res.headers)}")


def test_async_client_runs_concurrently(gw, tenant, neurons):
    async def handler(input, ctx):
        await asyncio.sleep(0.05)
        return f"done {input['input']}"

    neurons(gw, tenant, DEFAULT_TOPIC, handler, concurrency=8)

    async def many(c):
        return await asyncio.gather(*(c.run_async(f"job-{i}", timeout_ms=20000) for i in range(6)))

    results = run_async(gw.base_url, tenant.api_key, many)
    assert sorted(r.output for r in results) == sorted(f"done job-{i}" for i in range(6))
    assert len({r.trace_id for r in results}) == 6, "every run has its own trace"


def test_agent_runs_go_to_the_agents_topic(gw, tenant, client, gov, neurons):
    seen = Calls()

    async def summarize(input, ctx):
        seen.add(topic=ctx.task.capability, input=input)
        return "summary"

    async def default(input, ctx):
        seen.add(topic=ctx.task.capability, input=input)
        return "default"

    neurons(gw, tenant, SUMMARIZE_TOPIC, summarize)
    neurons(gw, tenant, DEFAULT_TOPIC, default)

    res = client.run("long text", agent_id="summarizer", timeout_ms=20000)
    assert res.output == "summary", res
    [c] = seen.all()
    assert c["topic"] == SUMMARIZE_TOPIC and c["input"]["agent_id"] == "summarizer", c
    assert c["input"]["kind"] == "run", c
    assert gov.trace(res.trace_id)["topic"] == SUMMARIZE_TOPIC

    # An agent without a topic runs on the default topic.
    res = client.run("short text", agent_id="plain", timeout_ms=20000)
    assert res.output == "default", res
    assert gov.trace(res.trace_id)["topic"] == DEFAULT_TOPIC
    assert seen.all()[-1]["input"]["agent_id"] == "plain"


def test_mode_hint_picks_mode_budget_and_topic(gw, tenant, client, gov, neurons):
    seen = Calls()

    def make(tag):
        async def handler(input, ctx):
            seen.add(tag=tag, input=input)
            return tag
        return handler

    neurons(gw, tenant, DEEP_TOPIC, make("deep"))
    neurons(gw, tenant, DEFAULT_TOPIC, make("default"))
    neurons(gw, tenant, SUMMARIZE_TOPIC, make("summarize"))

    deep = client.run("think hard", mode_hint="deep", timeout_ms=20000)
    assert (deep.result, deep.mode, deep.budget, deep.output) == ("ALLOW", "deep", 1.0, "deep"), deep
    assert seen.all()[-1]["input"]["mode"] == "deep" and seen.all()[-1]["input"]["budget"] == 1.0
    assert gov.trace(deep.trace_id)["topic"] == DEEP_TOPIC

    fast = client.run("quick one", mode_hint="fast", timeout_ms=20000)
    assert (fast.mode, fast.budget, fast.output) == ("fast", 0.25, "default"), fast

    balanced = client.run("no hint", timeout_ms=20000)
    assert (balanced.mode, balanced.budget, balanced.output) == ("balanced", 0.5, "default"), balanced

    # The agent's topic wins over the mode's.
    agent_deep = client.run("deep summary", agent_id="summarizer", mode_hint="deep", timeout_ms=20000)
    assert (agent_deep.mode, agent_deep.output) == ("deep", "summarize"), agent_deep
    assert gov.trace(agent_deep.trace_id)["topic"] == SUMMARIZE_TOPIC


def test_jwt_bearer_is_the_same_tenant_as_its_api_key(gw, tenant, neurons):
    async def handler(input, ctx):
        return "via jwt"

    neurons(gw, tenant, DEFAULT_TOPIC, handler)
    jwt_api = GovApi(gw.base_url, tenant.token(sub="hestia-user"))
    res = jwt_api.run(input="as a jwt", timeout_ms=20000)
    assert res.status_code == 200, describe(res)
    body = json_of(res)
    assert set(body) == RUN_FIELDS and body["output"] == "via jwt", body
    # The trace belongs to the tenant: visible with its API key too.
    assert GovApi(gw.base_url, tenant.api_key).trace(body["trace_id"])["decision"] == "ALLOW"


def test_chat_is_a_run_of_kind_chat(gw, tenant, client, gov, ib_workers):
    w = ib_workers(gw, tenant, DEFAULT_TOPIC, lambda p: f"reply to {p['input']}")
    r = client.chat.run("hi there")
    assert r.response == "reply to hi there", r
    assert isinstance(r.session_id, str) and r.session_id, f"a session_id is generated when none is sent: {r}"
    assert isinstance(r.processing_time, float) and r.processing_time >= 0, r
    assert isinstance(r.model, str) and r.model, r
    [c] = w.calls.all()
    p = c["payload"]
    assert set(p) == WORKER_INPUT_FIELDS, p
    assert (p["kind"], p["input"], p["session_id"], p["trace_id"]) == ("chat", "hi there", r.session_id, r.trace_id), p
    t = gov.trace(r.trace_id)
    assert (t["kind"], t["decision"], t["status"], t["topic"]) == ("chat", "ALLOW", "completed", DEFAULT_TOPIC), t

    again = client.chat.run("second", session_id=r.session_id)
    assert again.session_id == r.session_id and again.response == "reply to second", again


def test_agents_run_completes_on_the_agent_topic(gw, tenant, client, gov, neurons):
    calls = Calls()

    async def handler(input, ctx):
        calls.add(input=input)
        return {"output": f"summary of {input['input']}"}

    neurons(gw, tenant, SUMMARIZE_TOPIC, handler)
    r = client.agents.run("summarizer", "the report", {"length": "short", "lang": "en"})
    assert (r.agent_id, r.status, r.output, r.error) == ("summarizer", "COMPLETED", "summary of the report", None), r
    [c] = calls.all()
    assert c["input"] == {"kind": "agent", "input": "the report", "trace_id": r.trace_id,
                          "mode": "balanced", "budget": 0.5, "session_id": None, "agent_id": "summarizer",
                          "config": {"length": "short", "lang": "en"}}, c["input"]
    t = gov.trace(r.trace_id)
    assert (t["kind"], t["status"], t["topic"]) == ("agent", "completed", SUMMARIZE_TOPIC), t
