"""`agent_id` on run / run_stream is who is calling (README "Protocol coverage:
governance"): an agent_id no `[[governance.agents]]` entry lists is governed by
the policy (its agent allow / deny lists) and routed like a run without one --
default topic, or the mode's topic -- instead of 404. `agents.run` names the
agent to *run*, so an unlisted one there is still 404 `unknown_agent`."""

from __future__ import annotations

import httpx
import pytest
from hestiaos import GovernanceBlock

from agw_testkit.neuron import Calls
from agw_testkit.tenants import new_tenant
from gov_support.api import GovApi
from gov_support.config import DEEP_TOPIC, DEFAULT_TOPIC, SUMMARIZE_TOPIC, gateway_config, policy
from gov_support.sdk import collect_stream, sync_client

UNLISTED = "someone-unlisted"


def test_run_with_an_unlisted_agent_id_is_served_on_the_default_topic(gw, tenant, client, gov, ib_workers):
    w = ib_workers(gw, tenant, DEFAULT_TOPIC, lambda p: {"output": f"done for {p['agent_id']}"})
    res = client.run("hello from an unlisted caller", agent_id=UNLISTED, timeout_ms=20000)
    assert (res.result, res.output, res.mode) == ("ALLOW", f"done for {UNLISTED}", "balanced"), res

    [call] = w.calls.all()
    p = call["payload"]
    assert (p["kind"], p["input"], p["agent_id"], p["trace_id"]) == (
        "run", "hello from an unlisted caller", UNLISTED, res.trace_id), p
    t = gov.trace(res.trace_id)
    assert (t["decision"], t["status"], t["topic"], t["kind"]) == ("ALLOW", "completed", DEFAULT_TOPIC, "run"), t
    assert t["worker"] == w.worker_id, t


def test_unlisted_agent_id_follows_the_mode_topic(gw, tenant, client, gov, ib_workers):
    deep = ib_workers(gw, tenant, DEEP_TOPIC, lambda p: "deep answer")
    res = client.run("think hard", agent_id=UNLISTED, mode_hint="deep", timeout_ms=20000)
    assert (res.result, res.mode, res.budget, res.output) == ("ALLOW", "deep", 1.0, "deep answer"), res
    [call] = deep.calls.all()
    assert call["payload"]["agent_id"] == UNLISTED, call
    assert gov.trace(res.trace_id)["topic"] == DEEP_TOPIC


def test_stream_with_an_unlisted_agent_id(gw, tenant, gov, neurons):
    calls = Calls()

    async def handler(input, ctx):
        calls.add(input=input, capability=ctx.task.capability)
        return {"output": f"streamed for {input['agent_id']}"}

    neurons(gw, tenant, DEFAULT_TOPIC, handler)
    events = collect_stream(gw.base_url, tenant.api_key, "stream it", agent_id=UNLISTED, timeout_ms=20000)
    types = [ev.type for ev in events]
    assert types == ["start", "final", "done"], events
    start, final = events[0], events[1]
    assert (start.data["decision"], start.data["topic"]) == ("ALLOW", DEFAULT_TOPIC), start
    assert final.data.get("output") == f"streamed for {UNLISTED}", final
    [c] = calls.all()
    assert c["capability"] == DEFAULT_TOPIC and c["input"]["agent_id"] == UNLISTED, c
    assert gov.trace(start.trace_id)["status"] == "completed"


def test_agents_run_of_an_unlisted_agent_is_still_404(gw, tenant, client, gov, claimers):
    before = gov.counts()
    with pytest.raises(httpx.HTTPStatusError) as ei:
        client.agents.run(UNLISTED, "run me")
    assert ei.value.response.status_code == 404, ei.value
    assert ei.value.response.json().get("error") == "unknown_agent", ei.value.response.text
    claimers(gw, tenant).assert_nothing_on(DEFAULT_TOPIC, DEEP_TOPIC, SUMMARIZE_TOPIC)
    assert gov.counts() == before, "agents.run of an unknown agent is refused before any decision"


# -- the policy sees the caller's agent_id ----------------------------------------------------
@pytest.fixture(scope="module")
def agents_gw(module_gateway_factory):
    """Agent lists naming agents no [[governance.agents]] entry lists: "mallory" is denied,
    only "someone-allowed" and "mallory" are on the allowlist."""
    return module_gateway_factory("agent-lists", gateway_config(policy(
        "agent-lists", deny_agents=["mallory"], allow_agents=["someone-allowed", "mallory"])))


def test_policy_agent_lists_govern_unlisted_agent_ids(agents_gw, ib_workers, claimers):
    g = agents_gw
    t = new_tenant(g, "agents")
    client, gov = sync_client(g.base_url, t.api_key), GovApi(g.base_url, t.api_key)

    with pytest.raises(GovernanceBlock) as ei:
        client.run("let me in", agent_id="mallory")
    tr = gov.trace(ei.value.trace_id)
    assert (tr["decision"], tr["status"], tr["matched_rules"]) == ("BLOCK", "blocked", ["agent-denylist"]), tr
    assert tr["reason"] == "agent mallory is denied" and tr["risk_score"] == 1.0, tr
    assert tr["job_id"] is None, tr

    with pytest.raises(GovernanceBlock) as ei:
        client.run("let me in", agent_id="intruder")
    tr = gov.trace(ei.value.trace_id)
    assert (tr["decision"], tr["matched_rules"]) == ("BLOCK", ["agent-allowlist"]), tr

    # A stream is governed the same way: 200 with start (BLOCK), error, done.
    events = collect_stream(g.base_url, t.api_key, "let me in", agent_id="mallory", timeout_ms=20000)
    assert [ev.type for ev in events] == ["start", "error", "done"], events
    assert events[0].data.get("decision") == "BLOCK" and events[1].data.get("code") == "GOVERNANCE_BLOCK", events
    assert gov.trace(events[0].trace_id)["matched_rules"] == ["agent-denylist"]
    claimers(g, t).assert_nothing_on(DEFAULT_TOPIC, DEEP_TOPIC)

    # The allowed caller -- and a run with no agent_id at all -- are served on the default topic.
    w = ib_workers(g, t, DEFAULT_TOPIC, lambda p: f"hi {p['agent_id']}")
    res = client.run("hello", agent_id="someone-allowed", timeout_ms=20000)
    assert (res.result, res.output) == ("ALLOW", "hi someone-allowed"), res
    assert gov.trace(res.trace_id)["topic"] == DEFAULT_TOPIC
    res = client.run("hello", timeout_ms=20000)
    assert (res.result, res.output) == ("ALLOW", "hi None"), res
    assert [c["payload"]["agent_id"] for c in w.calls.all()] == ["someone-allowed", None]
