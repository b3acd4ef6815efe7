"""The `hestiaos` CLI (typer) of the pinned SDK against the gateway:
`--base-url U --api-key K --json run|trace|health`."""

from __future__ import annotations

import uuid

from gov_support.config import DEFAULT_TOPIC
from gov_support.sdk import cli, cli_json


def _base(gw, key):
    return ["--base-url", gw.base_url, "--api-key", key, "--json"]


def test_cli_run_then_trace(gw, tenant, ib_workers):
    ib_workers(gw, tenant, DEFAULT_TOPIC, lambda p: {"output": f"cli got {p['input']}"})
    out = cli_json(*_base(gw, tenant.api_key), "run", "hi")
    assert set(out) == {"result", "trace_id", "output", "mode", "budget", "latency_ms"}, out
    assert (out["result"], out["output"], out["mode"], out["budget"]) == ("ALLOW", "cli got hi", "balanced", 0.5), out

    tr = cli_json(*_base(gw, tenant.api_key), "trace", out["trace_id"])
    assert (tr["trace_id"], tr["decision"], tr["status"], tr["kind"]) == (out["trace_id"], "ALLOW", "completed", "run"), tr


def test_cli_health(gw, tenant):
    out = cli_json(*_base(gw, tenant.api_key), "health")
    assert set(out) == {"status", "version", "uptime_seconds"} and out["status"] == "OK", out
    # No key needed.
    out = cli_json("--base-url", gw.base_url, "--json", "health")
    assert out["status"] == "OK", out


def test_cli_blocked_run_and_unknown_trace_exit_1(gw, tenant):
    res = cli(*_base(gw, tenant.api_key), "run", "password: letmein")
    assert res.returncode == 1, (res.returncode, res.stdout, res.stderr[-2000:])
    assert "GOVERNANCE_BLOCK" in res.stderr, res.stderr[-2000:]

    res = cli(*_base(gw, tenant.api_key), "trace", str(uuid.uuid4()))
    assert res.returncode == 1 and "not found" in res.stderr, (res.returncode, res.stderr[-2000:])


def test_cli_text_output(gw, tenant):
    res = cli("--base-url", gw.base_url, "--api-key", tenant.api_key, "health")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "status: OK" in res.stdout, res.stdout
