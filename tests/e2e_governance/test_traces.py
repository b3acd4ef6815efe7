"""Traces (GET /api/governance/trace/{id}) and the stability counters
(GET /api/governance/stability): per tenant, exact fields, counts by decision."""

from __future__ import annotations

import uuid

from hestiaos import GovernanceBlock, TraceResponse

from agw_testkit.responses import describe
from gov_support.api import (DECISIONS, STABILITY_FIELDS, TRACE_FIELDS, TRACE_SDK_FIELDS, WINDOWS, GovApi,
                             json_of)
from gov_support.config import DEFAULT_TOPIC
from gov_support.sdk import run_async


def _echo(neurons, gw, tenant):
    async def handler(input, ctx):
        return "traced"

    return neurons(gw, tenant, DEFAULT_TOPIC, handler)


def test_trace_of_an_allowed_run(gw, tenant, client, gov, neurons):
    n = _echo(neurons, gw, tenant)
    r = client.run("trace me", session_id="s-42", timeout_ms=20000)
    t = client.governance.trace(r.trace_id)
    assert t is not None
    assert set(t) == TRACE_FIELDS, f"extra {sorted(set(t) - TRACE_FIELDS)}, missing {sorted(TRACE_FIELDS - set(t))}"
    sdk_view = TraceResponse(**{k: t[k] for k in TRACE_SDK_FIELDS})
    assert sdk_view.trace_id == r.trace_id and sdk_view.decision == "ALLOW"
    assert (t["risk_score"], t["violations"], t["matched_rules"]) == (0.0, [], []), t
    assert (t["mode"], t["budget"], t["kind"], t["topic"], t["status"]) == (
        "balanced", 0.5, "run", DEFAULT_TOPIC, "completed"), t
    assert t["worker"] == n.neuron_id, t
    assert isinstance(t["reason"], str), t
    assert isinstance(t["latency_ms"], (int, float)) and t["latency_ms"] >= 0, t
    assert tenant.tasks.task(t["job_id"])["state"] == "fulfilled"
    stab = gov.stability()
    assert t["policy"] == f"e2e-shared@{stab['policy_version']}", (t, stab)
    assert isinstance(t["events"], str) and t["events"], t

    # The same trace through the async client.
    t2 = run_async(gw.base_url, tenant.api_key, lambda c: c.governance.trace_async(r.trace_id))
    assert t2 == t


def test_unknown_trace_is_404(gw, tenant, client, gov):
    missing = str(uuid.uuid4())
    assert client.governance.trace(missing) is None
    res = gov.trace_res(missing)
    assert res.status_code == 404, describe(res)
    assert isinstance(json_of(res), dict)
    res = gov.trace_res("not-a-uuid")
    assert 400 <= res.status_code < 500, describe(res)
    assert isinstance(json_of(res), dict)


def test_another_tenants_trace_is_404(gw, tenant, other_tenant, client, gov):
    with_block = None
    try:
        client.run("password: mine")
    except GovernanceBlock as e:
        with_block = e.trace_id
    assert with_block, "the run must have been blocked"
    assert gov.trace(with_block)["decision"] == "BLOCK"

    other = GovApi(gw.base_url, other_tenant.api_key)
    res = other.trace_res(with_block)
    assert res.status_code == 404, f"another tenant must not see the trace: {describe(res)}"
    other_jwt = GovApi(gw.base_url, other_tenant.token())
    assert other_jwt.trace_res(with_block).status_code == 404
    # The owner's JWT sees it.
    assert GovApi(gw.base_url, tenant.token()).trace(with_block)["trace_id"] == with_block


def test_stability_shape(gw, tenant, client, gov):
    s = client.governance.status()
    assert set(s) == STABILITY_FIELDS, f"extra {sorted(set(s) - STABILITY_FIELDS)}, missing {sorted(STABILITY_FIELDS - set(s))}"
    assert (s["status"], s["mode"], s["policy_error"]) == ("stable", "balanced", None), s
    assert s["policy"] == f"e2e-shared@{s['policy_version']}", s
    assert isinstance(s["policy_loaded_at"], str) and s["policy_loaded_at"], s
    assert set(s["windows"]) == set(WINDOWS), s
    for w in WINDOWS:
        assert s["windows"][w] == {"ALLOW": 0, "THROTTLE": 0, "BLOCK": 0}, f"a fresh tenant has no traces: {s}"


def test_stability_counts_by_decision(gw, tenant, other_tenant, client, gov, neurons):
    _echo(neurons, gw, tenant)
    before = gov.counts()
    client.run("one", timeout_ms=20000)
    client.run("two", timeout_ms=20000)
    for text in ("password: 1", "password: 2", "drop table x"):
        try:
            client.run(text)
        except GovernanceBlock:
            pass
    after = gov.counts()
    for w in WINDOWS:
        delta = {d: after[w][d] - before[w][d] for d in DECISIONS}
        assert delta == {"ALLOW": 2, "THROTTLE": 0, "BLOCK": 3}, f"window {w}: {before[w]} -> {after[w]}"

    # Counted from the caller tenant's traces only.
    other = GovApi(gw.base_url, other_tenant.api_key)
    assert other.counts()["1h"] == {"ALLOW": 0, "THROTTLE": 0, "BLOCK": 0}
    # Explain adds nothing.
    gov.explain("run", {"input": "password: x"})
    assert gov.counts() == after


def test_trace_events_url_serves_the_runs_events(gw, tenant, client, gov, neurons):
    """`events` is the URL of the run's execution events: it must answer (with the
    tenant's credential) and carry the events correlated with this trace."""
    _echo(neurons, gw, tenant)
    r = client.run("events please", timeout_ms=20000)
    url = gov.trace(r.trace_id)["events"]
    assert isinstance(url, str) and url.startswith(("/", "http")), url
    res = gov.request("GET", url if url.startswith("/") else url.replace(gw.base_url, "", 1))
    assert res.status_code == 200, f"the trace's events URL {url!r} does not answer: {describe(res)}"
    json_of(res)
    assert r.trace_id in res.text, f"no event of trace {r.trace_id} at {url}: {res.text[:500]}"
