"""Per-tenant and per-agent run budgets: over the limit -> THROTTLE (reduced
budget, low job priority), over limit x block_factor -> BLOCK. Every run request
(run, stream, chat, agents/run) counts, blocked or not; explain never does.

Each budget lives on its own gateway (module scope) so the shared gateway's
tests can run as often as they like. Windows are 60 s: a test finishes well
inside one, and every test uses fresh tenants."""

from __future__ import annotations

import pytest
from hestiaos import GovernanceBlock

from agw_testkit.neuron import Calls
from agw_testkit.tenants import new_tenant
from gov_support.api import GovApi, types_of
from gov_support.config import DEFAULT_TOPIC, SUMMARIZE_TOPIC, gateway_config, policy
from gov_support.sdk import collect_stream, sync_client

pytestmark = pytest.mark.slow

LIMIT = 2  # runs per window; block_factor 2.0 -> the 5th run in a window is BLOCKed


@pytest.fixture(scope="module")
def tenant_budget_gw(module_gateway_factory):
    return module_gateway_factory("tenant-budget", gateway_config(
        policy("budgets", tenant_runs_per_window=LIMIT, window_secs=60, block_factor=2.0)))


@pytest.fixture(scope="module")
def agent_budget_gw(module_gateway_factory):
    return module_gateway_factory("agent-budget", gateway_config(
        policy("agent-budgets", agent_runs_per_window=LIMIT, window_secs=60, block_factor=2.0)))


def _echo_neuron(neurons, g, t, topic=DEFAULT_TOPIC, calls=None):
    async def handler(input, ctx):
        if calls is not None:
            calls.add(input=input)
        return "ok"

    return neurons(g, t, topic, handler)


def _decide(client, *args, **kw):
    """('ALLOW'|'THROTTLE', RunResponse) or ('BLOCK', trace_id)."""
    try:
        r = client.run(*args, timeout_ms=20000, **kw)
        return r.result, r
    except GovernanceBlock as e:
        return "BLOCK", e.trace_id


def test_tenant_budget_throttles_then_blocks(tenant_budget_gw, neurons, claimers):
    g = tenant_budget_gw
    t = new_tenant(g, "budget")
    calls = Calls()
    _echo_neuron(neurons, g, t, calls=calls)
    c = sync_client(g.base_url, t.api_key)
    gov = GovApi(g.base_url, t.api_key)

    got = [_decide(c, f"run {i}") for i in range(5)]
    assert [d for d, _ in got] == ["ALLOW", "ALLOW", "THROTTLE", "THROTTLE", "BLOCK"], (
        f"limit {LIMIT}, block_factor 2: runs 1-2 ALLOW, 3-4 THROTTLE, 5 BLOCK; got {got}")

    allow, throttle = got[0][1], got[2][1]
    assert (allow.budget, throttle.budget) == (0.5, 0.25), "THROTTLE multiplies the budget by 0.5"
    assert throttle.output == "ok" and throttle.mode == "balanced", throttle
    assert [ci["input"]["budget"] for ci in calls.all()] == [0.5, 0.5, 0.25, 0.25], "the worker sees the budget"

    tt = gov.trace(throttle.trace_id)
    assert (tt["decision"], tt["matched_rules"], tt["risk_score"], tt["status"]) == (
        "THROTTLE", ["tenant-budget"], 0.4, "completed"), tt
    assert t.tasks.task(tt["job_id"])["priority"] == 10, "THROTTLE runs get throttle_priority"
    assert t.tasks.task(gov.trace(allow.trace_id)["job_id"])["priority"] == 100

    bt = gov.trace(got[4][1])
    assert (bt["decision"], bt["matched_rules"], bt["risk_score"], bt["job_id"]) == (
        "BLOCK", ["tenant-budget"], 0.8, None), bt
    claimers(g, t).assert_nothing_on(DEFAULT_TOPIC)

    # Blocked runs count too: the tenant stays blocked within the window.
    assert _decide(c, "once more")[0] == "BLOCK"
    w = gov.counts()["1m"]
    assert (w["ALLOW"], w["THROTTLE"], w["BLOCK"]) == (2, 2, 2), gov.counts()

    # Budgets are per tenant.
    other = new_tenant(g, "fresh")
    _echo_neuron(neurons, g, other)
    assert _decide(sync_client(g.base_url, other.api_key), "me first")[0] == "ALLOW"


def test_throttle_keeps_the_mode_and_reduces_its_budget(tenant_budget_gw, neurons):
    g = tenant_budget_gw
    t = new_tenant(g, "deep")
    _echo_neuron(neurons, g, t)
    _echo_neuron(neurons, g, t, topic="gateway/run-deep")
    c = sync_client(g.base_url, t.api_key)
    assert [_decide(c, "a")[0], _decide(c, "b")[0]] == ["ALLOW", "ALLOW"]
    d, r = _decide(c, "deep under throttle", mode_hint="deep")
    assert (d, r.mode, r.budget) == ("THROTTLE", "deep", 0.5), r


def test_explain_consumes_no_budget(tenant_budget_gw, neurons):
    g = tenant_budget_gw
    t = new_tenant(g, "explain")
    _echo_neuron(neurons, g, t)
    gov = GovApi(g.base_url, t.api_key)
    for i in range(2 * LIMIT + 2):
        assert gov.explain("run", {"input": f"explain {i}"})["decision"] == "ALLOW"
    assert gov.counts()["1h"] == {"ALLOW": 0, "THROTTLE": 0, "BLOCK": 0}, "explain stores no trace"
    c = sync_client(g.base_url, t.api_key)
    assert [_decide(c, "first")[0], _decide(c, "second")[0], _decide(c, "third")[0]] == [
        "ALLOW", "ALLOW", "THROTTLE"], "explain calls must not have counted against the budget"


def test_chat_agents_and_streams_count_toward_the_budget(tenant_budget_gw, neurons):
    g = tenant_budget_gw
    t = new_tenant(g, "mixed")
    _echo_neuron(neurons, g, t)
    _echo_neuron(neurons, g, t, topic=SUMMARIZE_TOPIC)
    c = sync_client(g.base_url, t.api_key)
    assert c.chat.run("chat counts").response == "ok"                              # 1
    assert c.agents.run("summarizer", "agent counts").status == "COMPLETED"        # 2
    events = collect_stream(g.base_url, t.api_key, "stream counts", timeout_ms=20000)  # 3
    assert types_of(events)[0] == "start" and events[0].data["decision"] == "THROTTLE", events
    assert types_of(events)[-2:] == ["final", "done"], events
    r = c.agents.run("summarizer", "agent again")                                 # 4
    assert r.status == "COMPLETED", r
    assert GovApi(g.base_url, t.api_key).trace(r.trace_id)["decision"] == "THROTTLE"
    assert c.agents.run("summarizer", "one too many").status == "BLOCKED"           # 5
    assert _decide(c, "run")[0] == "BLOCK"                                          # 6


def test_agent_budget_throttles_then_blocks_that_agent_only(agent_budget_gw, neurons):
    g = agent_budget_gw
    t = new_tenant(g, "agent")
    _echo_neuron(neurons, g, t)
    _echo_neuron(neurons, g, t, topic=SUMMARIZE_TOPIC)
    c = sync_client(g.base_url, t.api_key)
    gov = GovApi(g.base_url, t.api_key)
    got = [_decide(c, f"summary {i}", agent_id="summarizer") for i in range(5)]
    assert [d for d, _ in got] == ["ALLOW", "ALLOW", "THROTTLE", "THROTTLE", "BLOCK"], got
    tt = gov.trace(got[2][1].trace_id)
    assert (tt["matched_rules"], tt["risk_score"]) == (["agent-budget"], 0.4), tt
    bt = gov.trace(got[4][1])
    assert (bt["matched_rules"], bt["risk_score"]) == (["agent-budget"], 0.8), bt
    # Other agents and agent-less runs have their own (or no) budget.
    assert [_decide(c, f"no agent {i}")[0] for i in range(3)] == ["ALLOW"] * 3
    assert _decide(c, "plain agent", agent_id="plain")[0] == "ALLOW"
