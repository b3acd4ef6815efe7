"""Policy decisions on the shared gateway: BLOCK rules (input deny patterns,
input size, agent / tenant denylists), what a blocked run leaves behind (a
trace that explains it, nothing enqueued), explain, determinism."""

from __future__ import annotations

import httpx
import pytest
from hestiaos import GovernanceBlock, TraceResponse

from agw_testkit.responses import describe
from gov_support.api import EXPLAIN_FIELDS, TRACE_FIELDS, TRACE_SDK_FIELDS, GovApi, error_of, json_of
from gov_support.config import DEEP_TOPIC, DEFAULT_TOPIC, SUMMARIZE_TOPIC


def _block(client, *args, **kw) -> str:
    with pytest.raises(GovernanceBlock) as ei:
        client.run(*args, **kw)
    e = ei.value
    assert e.code == "GOVERNANCE_BLOCK" and e.trace_id, f"GovernanceBlock without a trace_id: {e!r}"
    return e.trace_id


def _rule_ids(t):
    return sorted(v["rule"] for v in t["violations"])


def test_blocked_run_raises_governance_block_and_its_trace_explains_it(gw, tenant, client, gov, claimers):
    trace_id = _block(client, "here is my password: hunter2")

    t = client.governance.trace(trace_id)
    assert t is not None, "the trace of a blocked run must exist"
    assert set(t) == TRACE_FIELDS, f"trace fields: extra {sorted(set(t) - TRACE_FIELDS)}, missing {sorted(TRACE_FIELDS - set(t))}"
    TraceResponse(**{k: t[k] for k in TRACE_SDK_FIELDS})  # the SDK's model accepts it
    assert t["trace_id"] == trace_id
    assert t["decision"] == "BLOCK" and t["status"] == "blocked", t
    assert t["reason"] == "input carries credentials", t
    assert t["matched_rules"] == ["no-credentials"], t
    assert t["risk_score"] == 0.9, t
    assert [v["rule"] for v in t["violations"]] == ["no-credentials"], t
    v = t["violations"][0]
    assert set(v) == {"rule", "kind", "message"} and all(isinstance(v[k], str) and v[k] for k in v), v
    assert t["job_id"] is None and t["worker"] is None, f"nothing runs for a BLOCK: {t}"
    assert t["kind"] == "run" and t["mode"] == "balanced", t
    stab = gov.stability()
    assert t["policy"] == f"e2e-shared@{stab['policy_version']}", (t["policy"], stab)
    assert isinstance(t["timestamp"], str) and t["timestamp"], t
    assert isinstance(t["events"], str) and t["events"], t

    claimers(gw, tenant).assert_nothing_on(DEFAULT_TOPIC, DEEP_TOPIC)


def test_block_answer_on_the_wire(gw, tenant, gov, claimers):
    res = gov.run(input="Password = swordfish")
    body = error_of(res, 403, "governance_block")
    assert body["message"] == "input carries credentials", body
    assert isinstance(body.get("trace_id"), str) and body["trace_id"], body
    assert gov.trace(body["trace_id"])["decision"] == "BLOCK"
    claimers(gw, tenant).assert_nothing_on(DEFAULT_TOPIC)


def test_several_matched_rules_risk_is_their_max(gw, client, gov):
    trace_id = _block(client, "password: x; then DROP TABLE users")
    t = gov.trace(trace_id)
    assert sorted(t["matched_rules"]) == ["no-credentials", "no-drop-table"], t
    assert _rule_ids(t) == ["no-credentials", "no-drop-table"], t
    assert t["risk_score"] == 0.9, f"risk_score is the max of the matched rules' risks (0.9, 0.6): {t}"

    only_sql = gov.trace(_block(client, "drop   table accounts"))
    assert only_sql["matched_rules"] == ["no-drop-table"] and only_sql["risk_score"] == 0.6, only_sql
    assert only_sql["reason"] == "destructive SQL", only_sql


def test_input_over_max_input_bytes_is_blocked(gw, tenant, client, gov, claimers):
    # The shared policy caps input at 2048 bytes.
    trace_id = _block(client, "x" * 2049)
    t = gov.trace(trace_id)
    assert t["matched_rules"] == ["max-input-size"] and t["risk_score"] == 0.7, t
    # Bytes, not characters: 683 three-byte characters are 2049 bytes.
    t2 = gov.trace(_block(client, "€" * 683))
    assert t2["matched_rules"] == ["max-input-size"], t2
    claimers(gw, tenant).assert_nothing_on(DEFAULT_TOPIC)


def test_input_at_max_input_bytes_is_allowed(gw, tenant, gov):
    ex = gov.explain("run", {"input": "y" * 2048})
    assert ex["decision"] == "ALLOW", ex


def test_denied_agent_is_blocked(gw, tenant, client, gov, claimers):
    trace_id = _block(client, "harmless", agent_id="denied-agent")
    t = gov.trace(trace_id)
    assert t["matched_rules"] == ["agent-denylist"] and t["risk_score"] == 1.0, t
    claimers(gw, tenant).assert_nothing_on("acme/denied", DEFAULT_TOPIC)


def test_denied_tenant_is_blocked(gw, denied_tenant_name):
    key = gw.generate_key(denied_tenant_name)
    api = GovApi(gw.base_url, key)
    body = error_of(api.run(input="anything at all"), 403, "governance_block")
    t = api.trace(body["trace_id"])
    assert t["matched_rules"] == ["tenant-denylist"] and t["risk_score"] == 1.0, t
    assert api.explain("run", {"input": "anything"})["decision"] == "BLOCK"


def test_agents_run_of_an_unknown_agent_is_404_and_enqueues_nothing(gw, tenant, client, gov, claimers):
    before = gov.counts()
    with pytest.raises(httpx.HTTPStatusError) as ei:
        client.agents.run("no-such-agent", "do it")
    assert ei.value.response.status_code == 404, ei.value
    body = error_of(gov.agents_run({"agent_id": "no-such-agent", "task": "do it", "config": None}),
                    404, "unknown_agent")
    assert "no-such-agent" in body["message"], body
    claimers(gw, tenant).assert_nothing_on(DEFAULT_TOPIC, SUMMARIZE_TOPIC)
    assert gov.counts() == before, "an unknown agent is refused before any decision: no trace"


def test_explain_decides_without_executing(gw, tenant, client, gov, claimers):
    before = gov.counts()
    ex = client.governance.explain("run", {"input": "my password= 123"})
    assert set(ex) == EXPLAIN_FIELDS, f"explain fields: extra {sorted(set(ex) - EXPLAIN_FIELDS)}, missing {sorted(EXPLAIN_FIELDS - set(ex))}"
    assert ex["decision"] == "BLOCK" and ex["matched_rules"] == ["no-credentials"], ex
    assert ex["reason"] == "input carries credentials" and ex["risk_score"] == 0.9, ex
    assert [v["rule"] for v in ex["violations"]] == ["no-credentials"], ex
    assert ex["command_type"] == "run", ex
    stab = gov.stability()
    assert ex["policy_version"] == stab["policy_version"], (ex, stab)
    assert ex["policy"] == f"e2e-shared@{stab['policy_version']}", ex

    ok = client.governance.explain("WRITE", {"input": "a friendly request", "mode_hint": "deep"})
    assert (ok["decision"], ok["matched_rules"], ok["violations"], ok["risk_score"]) == ("ALLOW", [], [], 0.0), ok
    assert (ok["mode"], ok["budget"], ok["command_type"]) == ("deep", 1.0, "WRITE"), ok

    claimers(gw, tenant).assert_nothing_on(DEFAULT_TOPIC, DEEP_TOPIC)
    assert gov.counts() == before, "explain stores no trace"


@pytest.mark.parametrize("command_input, decision", [
    ({"message": "password: in a chat"}, "BLOCK"),
    ({"task": "DROP TABLE t"}, "BLOCK"),
    ({"input": "fine", "message": "password: ignored, input wins"}, "ALLOW"),
    ({"nested": {"text": "password=1"}}, "BLOCK"),      # no string input/message/task: the JSON is evaluated
    ({"nested": {"text": "nothing here"}}, "ALLOW"),
    ({"input": "summarize", "agent_id": "denied-agent"}, "BLOCK"),
    ({"input": "summarize", "agent_id": "summarizer"}, "ALLOW"),
    ({}, "ALLOW"),
], ids=["message", "task", "input-first", "json-block", "json-allow", "denied-agent", "known-agent", "empty"])
def test_explain_text_and_agent_selection(gov, command_input, decision):
    ex = gov.explain("run", command_input)
    assert ex["decision"] == decision, (command_input, ex)


def test_explain_is_deterministic(gov, other_tenant, gw):
    inputs = [{"input": "password: a, drop table b"}, {"input": "ok"}, {"input": "z" * 5000}]
    first = [gov.explain("run", ci) for ci in inputs]
    again = [gov.explain("run", ci) for ci in inputs]
    assert first == again, "same input + same policy -> same decision"
    other = [GovApi(gw.base_url, other_tenant.api_key).explain("run", ci) for ci in inputs]
    assert other == first, "the decision does not depend on the tenant (no tenant rule matches either)"


def test_explain_agent_routing_has_no_side_effects(gw, tenant, gov, claimers):
    ex = gov.explain("agent", {"task": "summarize this", "agent_id": "summarizer"})
    assert ex["decision"] == "ALLOW", ex
    claimers(gw, tenant).assert_nothing_on(SUMMARIZE_TOPIC)


def test_chat_block_is_403_with_trace_id(gw, tenant, gov, claimers):
    res = gov.chat({"message": "the password: 1234", "session_id": None})
    assert res.status_code == 403, describe(res)
    body = json_of(res)
    assert isinstance(body.get("trace_id"), str) and body["trace_id"], body
    t = gov.trace(body["trace_id"])
    assert (t["kind"], t["decision"], t["matched_rules"]) == ("chat", "BLOCK", ["no-credentials"]), t
    claimers(gw, tenant).assert_nothing_on(DEFAULT_TOPIC)


def test_agents_run_block_is_200_blocked(gw, tenant, client, gov, claimers):
    r = client.agents.run("denied-agent", "do the thing")
    assert (r.agent_id, r.status, r.output) == ("denied-agent", "BLOCKED", None), r
    assert isinstance(r.error, str) and r.error, r
    t = gov.trace(r.trace_id)
    assert (t["kind"], t["decision"], t["reason"]) == ("agent", "BLOCK", r.error), t

    r2 = client.agents.run("summarizer", "password: leaked")
    assert r2.status == "BLOCKED" and r2.error == "input carries credentials", r2
    claimers(gw, tenant).assert_nothing_on("acme/denied", SUMMARIZE_TOPIC)
