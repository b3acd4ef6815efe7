"""Execution events of governance runs: a run, a chat and an agent run (answered
by a neuron or an Intent Bus worker, or BLOCKed by policy) each leave exactly one
signed IntentProof v1 event `governance.<kind>` whose correlation id is the
trace id -- never a second `intent_bus.*` / `neuron.*` event for the job that
carried it -- and the trace's `events` URL serves it. The independent
`intentproof` package verifies each; a worker instrumented with the real
`intentproof` SDK posts its own event under the same trace id.

(Every gateway's whole event log is checked again when its use ends: gateway.py.)
"""

from __future__ import annotations

import pytest
from hestiaos import GovernanceBlock

from agw_testkit.events import (
    SENTINEL,
    assert_v1,
    chain_of,
    events_res,
    keys,
    list_events,
    run_intentproof_worker,
    verify_independently,
)
from agw_testkit.responses import describe
from gov_support.api import json_of
from gov_support.config import DEFAULT_TOPIC, SUMMARIZE_TOPIC


def _served_by_trace(gw, token, trace):
    """The events the trace's `events` URL lists (JSON page)."""
    url = trace["events"]
    assert url == f"/api/v1/events?correlation_id={trace['trace_id']}", trace
    res = events_res(gw.base_url, token, path=url)
    assert res.status_code == 200, describe(res)
    return res.json()["events"]


def _one_event(gw, tenant, gov, trace_id, kind):
    """Exactly one `governance.<kind>` event on the trace's chain, served by its URL too."""
    trace = gov.trace(trace_id)
    [e] = chain_of(gw.base_url, tenant.api_key, trace_id)
    assert_v1(e)
    assert (e["correlation_id"], e["action"], e["chain_position"], e["prev_event_hash"]) == (
        trace_id, f"governance.{kind}", 1, SENTINEL), e
    assert e["tenant_id"] == tenant.owner and e["attributes"]["protocol"] == "governance", e
    assert e["attributes"]["decision"] == trace["decision"], (e, trace)
    assert e["attributes"]["policy"] == trace["policy"], (e, trace)
    assert _served_by_trace(gw, tenant.api_key, trace) == [e]
    if trace.get("job_id"):
        assert chain_of(gw.base_url, tenant.api_key, trace["job_id"]) == [], \
            f"the job that carried run {trace_id} must not have its own chain"
    verify_independently([e], keys(gw.base_url))
    return e, trace


def test_run_answered_by_a_neuron_leaves_one_event(gw, tenant, client, gov, neurons):
    async def handler(input, ctx):
        return {"output": input["input"].upper()}

    n = neurons(gw, tenant, DEFAULT_TOPIC, handler)
    r = client.run("shout this", timeout_ms=20000)
    assert r.result == "ALLOW" and r.output == "SHOUT THIS", r
    e, t = _one_event(gw, tenant, gov, r.trace_id, "run")
    assert (e["status"], e["intent"], e["attributes"]["outcome"]) == ("ok", DEFAULT_TOPIC, "fulfilled"), e
    assert e["attributes"]["worker"] == n.neuron_id == t["worker"], (e, t)
    assert e["attributes"]["job_id"] == t["job_id"], (e, t)


def test_run_answered_by_an_intent_bus_worker_leaves_one_event(gw, tenant, client, gov, ib_workers):
    w = ib_workers(gw, tenant, DEFAULT_TOPIC, lambda p: {"output": f"echo: {p['input']}"})
    r = client.run("hello events")
    assert r.result == "ALLOW", r
    e, t = _one_event(gw, tenant, gov, r.trace_id, "run")
    assert (e["status"], e["attributes"]["worker"]) == ("ok", w.worker_id), e


def test_block_leaves_one_event(gw, tenant, other_tenant, client, gov):
    with pytest.raises(GovernanceBlock) as exc:
        client.run("password: mine")
    trace_id = exc.value.trace_id
    e, t = _one_event(gw, tenant, gov, trace_id, "run")
    assert t["decision"] == "BLOCK" and t.get("job_id") is None, t
    assert (e["status"], e["error"]["name"], e["attributes"]["outcome"], e["attributes"]["decision"]) == (
        "error", "GovernanceBlock", "blocked", "BLOCK"), e
    assert e["error"]["message"] == t["reason"], (e, t)
    # Another tenant: the trace's events URL lists nothing.
    res = events_res(gw.base_url, other_tenant.api_key, path=t["events"])
    assert res.status_code == 200 and res.json()["events"] == [], describe(res)


def test_chat_and_agent_runs_and_their_blocks_are_one_event_each(gw, tenant, client, gov, neurons, ib_workers):
    ib_workers(gw, tenant, DEFAULT_TOPIC, lambda p: f"reply to {p['input']}")

    async def summarize(input, ctx):
        return {"output": f"summary of {input['input']}"}

    neurons(gw, tenant, SUMMARIZE_TOPIC, summarize)
    chat = client.chat.run("hi there")
    e, _ = _one_event(gw, tenant, gov, chat.trace_id, "chat")
    assert e["status"] == "ok", e
    agent = client.agents.run("summarizer", "the report")
    e, _ = _one_event(gw, tenant, gov, agent.trace_id, "agent")
    assert (e["status"], e["intent"]) == ("ok", SUMMARIZE_TOPIC), e

    res = gov.chat({"message": "the password: 1234", "session_id": None})
    assert res.status_code == 403, describe(res)
    e, _ = _one_event(gw, tenant, gov, json_of(res)["trace_id"], "chat")
    assert (e["status"], e["error"]["name"]) == ("error", "GovernanceBlock"), e
    blocked = client.agents.run("denied-agent", "do the thing")
    assert blocked.status == "BLOCKED", blocked
    e, _ = _one_event(gw, tenant, gov, blocked.trace_id, "agent")
    assert (e["status"], e["error"]["name"]) == ("error", "GovernanceBlock"), e


def test_failed_agent_run_leaves_one_error_event(gw, tenant, client, gov, neurons):
    async def handler(input, ctx):
        ctx.fail("summarizer is out of ink")

    neurons(gw, tenant, SUMMARIZE_TOPIC, handler)
    r = client.agents.run("summarizer", "anything")
    assert r.status == "FAILED", r
    e, _ = _one_event(gw, tenant, gov, r.trace_id, "agent")
    assert (e["status"], e["error"]["name"], e["attributes"]["outcome"]) == ("error", "WorkerFailed", "dead"), e
    assert "out of ink" in e["error"]["message"], e


def test_intentproof_sdk_worker_event_joins_the_trace(gw, tenant, client, gov, ib_workers):
    seen = {}

    def handler(payload):
        # The worker's own signed event, posted by the intentproof SDK under the trace id.
        seen.update(run_intentproof_worker(gw.base_url, tenant.api_key, payload["trace_id"], intent=DEFAULT_TOPIC,
                                           action="worker.answer", payload=payload["input"],
                                           tenant_id=tenant.owner))
        return {"output": "answered with evidence"}

    ib_workers(gw, tenant, DEFAULT_TOPIC, handler)
    r = client.run("prove it")
    assert r.output == "answered with evidence", r
    [ingested] = list_events(gw.base_url, tenant.api_key, source="ingested", correlation_id=r.trace_id)
    assert (ingested["correlation_id"], ingested["action"]) == (r.trace_id, "worker.answer"), ingested
    verify_independently([ingested], {seen["key_id"]: seen["public_key"]})
    e, _ = _one_event(gw, tenant, gov, r.trace_id, "run")
    assert e["event_id"] != ingested["event_id"]
