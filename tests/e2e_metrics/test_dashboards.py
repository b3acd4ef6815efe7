"""Every Grafana dashboard of deploy/grafana is well-formed, and every panel
query is valid PromQL that returns data from a real Prometheus scraping a
gateway under a workload; so do the dashboards' variable queries. Also: the
workload shows up in the series the dashboards read, and the shipped scrape
config passes promtool."""

from __future__ import annotations

import json
import subprocess
from typing import Any, Dict

import pytest

from agw_testkit.waits import wait_until
from metrics_support import dashboards, workload
from metrics_support.prom import promtool_binary

TARGETS = dashboards.targets()
VARIABLES = dashboards.query_variables()
EXPECTED_DASHBOARDS = {"agw-fleet-overview", "agw-topic-queue", "agw-governance", "agw-errors"}


def test_the_four_dashboards_are_shipped():
    assert {p.stem for p in dashboards.files()} == EXPECTED_DASHBOARDS


@pytest.mark.parametrize("path", dashboards.files(), ids=lambda p: p.stem)
def test_dashboard_is_importable(path):
    d = dashboards.load(path)
    assert d.get("uid") == path.stem, "the file is named after the dashboard uid"
    assert d.get("title") and d.get("schemaVersion"), d.keys()
    variables = {v["name"]: v for v in d["templating"]["list"]}
    ds = variables.get("datasource")
    assert ds and ds["type"] == "datasource" and ds["query"] == "prometheus", \
        "a Prometheus datasource variable lets the dashboard be imported against any datasource"
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids)), f"duplicate panel ids {ids}"
    panels = list(dashboards.panels(d))
    assert panels, "no panels"
    for p in panels:
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        assert p["targets"], f"panel {p['title']!r} has no query"
        for t in p["targets"]:
            assert t["expr"].strip(), p["title"]
            assert t["datasource"]["uid"] == "${datasource}", p["title"]


def _describe(body: Dict[str, Any]) -> str:
    return json.dumps(body)[:600]


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.id)
def test_panel_query_returns_data(stack, target):
    box: Dict[str, Any] = {}

    def probe():
        body = stack.prom.query(target.query)
        box["body"] = body
        assert body.get("status") == "success", \
            f"Prometheus refused {target.query!r}: {body.get('errorType')}: {body.get('error')}"
        return body["data"]["result"]

    result = wait_until(probe, 20, f"{target.id} to return data: {target.query}", interval=0.5,
                        detail=lambda: _describe(box.get("body", {})))
    assert result


@pytest.mark.parametrize("var", VARIABLES, ids=lambda v: f"{v['dashboard']}/{v['name']}")
def test_variable_query_returns_values(stack, var):
    selector, label = dashboards.label_values_query(var["definition"])

    def probe():
        body = stack.prom.api(f"label/{label}/values", **{"match[]": selector})
        assert body.get("status") == "success", _describe(body)
        return body["data"]

    values = wait_until(probe, 20, f"values of ${var['name']} ({var['definition']})", interval=0.5)
    assert values


def _values(stack, expr: str, by: str) -> Dict[str, float]:
    body = stack.prom.query(expr)
    assert body.get("status") == "success", _describe(body)
    return {r["metric"].get(by, ""): float(r["value"][1]) for r in body["data"]["result"]}


def test_the_workload_is_in_the_series(stack):
    """The figures behind the panels match what the workload did."""
    kinds = _values(stack, "sum by (kind) (agw_jobs_settled_total)", "kind")
    for kind in ("fulfilled", "failed", "ack", "nack", "expired", "cancelled"):
        assert kinds.get(kind, 0) >= 1, f"no {kind} settlement recorded: {kinds}"
    outcomes = _values(stack, "sum by (outcome) (agw_jobs_settled_total)", "outcome")
    for outcome in ("fulfilled", "retried", "dead", "cancelled"):
        assert outcomes.get(outcome, 0) >= 1, f"no {outcome} outcome recorded: {outcomes}"
    protocols = _values(stack, "sum by (protocol) (agw_jobs_published_total)", "protocol")
    assert protocols.get("intent_bus", 0) >= 5 and protocols.get("neuron", 0) >= 5 \
        and protocols.get("governance", 0) == 1, protocols
    tenants = _values(stack, "sum by (tenant) (agw_jobs_published_total)", "tenant")
    assert stack.done.tenant in tenants, tenants
    decisions = _values(stack, "sum by (decision) (agw_policy_decisions_total)", "decision")
    assert decisions.get("ALLOW") == 1 and decisions.get("BLOCK") == 1, decisions
    sessions = _values(stack, "sum by (protocol) (agw_sse_sessions)", "protocol")
    assert sessions.get("neuron") == 1, f"the connected neuron is an open SSE session: {sessions}"
    open_jobs = _values(stack, 'agw_queue_depth{state="open"}', "topic")
    assert open_jobs.get(workload.IDLE_CAP) == 1 and open_jobs.get(workload.IB_GOAL) == 2, open_jobs
    claim = _values(stack, "sum by (protocol) (agw_job_claim_latency_seconds_count)", "protocol")
    assert claim.get("intent_bus", 0) >= 4 and claim.get("neuron", 0) >= 3, claim
    e2e = _values(stack, "sum by (protocol) (agw_job_end_to_end_latency_seconds_count)", "protocol")
    assert e2e.get("governance") == 1 and e2e.get("neuron", 0) >= 4, e2e
    http = _values(stack, 'sum by (status) (agw_http_requests_total{route="/api/v1/tasks/{id}"})', "status")
    assert http.get("404", 0) >= 1, http


SCRAPE_CONFIGS = sorted((dashboards.REPO / "deploy" / "prometheus").glob("*.yml"))


@pytest.mark.parametrize("cfg", SCRAPE_CONFIGS, ids=lambda p: p.name)
def test_shipped_scrape_config_is_valid(cfg):
    promtool = promtool_binary()
    if promtool is None:
        pytest.skip("promtool not installed")
    res = subprocess.run([promtool, "check", "config", str(cfg)], capture_output=True, text=True, timeout=60)
    out = res.stdout + res.stderr
    if res.returncode != 0 and "field kubernetes_sd_configs not found" in out:
        pytest.skip(f"this Prometheus build has no Kubernetes service discovery (Debian's leaves it out): {cfg.name}")
    assert res.returncode == 0, f"promtool check config {cfg}:\n{out}"
