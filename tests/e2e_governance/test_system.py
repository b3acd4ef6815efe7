"""System routes: status (open), config (secret-free), metrics; each parses into
the SDK's own dataclasses (an extra or missing field would raise TypeError)."""

from __future__ import annotations

import json
import os
from urllib.parse import urlsplit

from hestiaos import SystemMetrics, SystemStatus

from agw_testkit.responses import describe
from gov_support.api import METRICS_FIELDS, STATUS_FIELDS, GovApi, json_of
from gov_support.sdk import run_async, sync_client


def test_status_is_open_and_exact(gw):
    res = GovApi(gw.base_url, None).system("status")
    assert res.status_code == 200, describe(res)
    body = json_of(res)
    assert set(body) == STATUS_FIELDS, f"extra {sorted(set(body) - STATUS_FIELDS)}, missing {sorted(STATUS_FIELDS - set(body))}"
    st = SystemStatus(**body)
    assert (st.status, st.ollama, st.vllm, st.dsgk, st.storage) == ("OK", False, False, True, True), st
    assert isinstance(st.version, str) and st.version, st
    assert isinstance(st.uptime_seconds, (int, float)) and st.uptime_seconds >= 0, st

    anon = sync_client(gw.base_url, None)
    assert anon.system.status().status == "OK", "no API key needed for the status route"


def test_uptime_grows(gw, client):
    first = client.system.status().uptime_seconds
    from agw_testkit.waits import wait_until

    wait_until(lambda: client.system.status().uptime_seconds > first, 10, "uptime_seconds to grow")


def test_metrics_parse_and_are_real(gw, client, tenant):
    m = client.system.metrics()
    assert isinstance(m, SystemMetrics)
    res = GovApi(gw.base_url, tenant.api_key).system("metrics")
    body = json_of(res)
    assert set(body) == METRICS_FIELDS, f"extra {sorted(set(body) - METRICS_FIELDS)}, missing {sorted(METRICS_FIELDS - set(body))}"
    assert 0 <= m.cpu_percent <= 100 * (os.cpu_count() or 1), m
    assert 0 < m.memory_percent <= 100, f"memory_percent must be the machine's real use: {m}"
    assert isinstance(m.active_sessions, int) and m.active_sessions >= 0, m
    assert isinstance(m.requests_total, int) and m.requests_total > 0, m
    assert m.avg_latency_ms >= 0, m
    assert (m.gpu_percent, m.vram_percent, m.vram_used_bytes, m.vram_total_bytes) == (None, None, None, None), m

    later = run_async(gw.base_url, tenant.api_key, lambda c: c.system.metrics_async())
    assert later.requests_total > m.requests_total, "requests_total counts requests"


def _walk(v, path=""):
    if isinstance(v, dict):
        for k, x in v.items():
            yield from _walk(x, f"{path}.{k}")
    elif isinstance(v, list):
        for i, x in enumerate(v):
            yield from _walk(x, f"{path}[{i}]")
    else:
        yield path, v


def test_config_is_effective_and_secret_free(gw, client, denied_tenant_name):
    cfg = client.system.config()
    assert isinstance(cfg, dict) and cfg, cfg
    text = json.dumps(cfg)
    assert gw.admin_key not in text, "the admin key is in /api/system/config"
    assert gw.jwt_secret not in text, "the JWT secret is in /api/system/config"
    assert "e2e-shared" in text and denied_tenant_name in text, "the effective governance policy is shown"
    for path, v in _walk(cfg):
        if isinstance(v, str) and "://" in v:
            try:
                pw = urlsplit(v).password
            except ValueError:
                pw = None
            assert not pw, f"{path} carries a password: {v!r}"
        key = path.rsplit(".", 1)[-1].lower()
        if any(s in key for s in ("secret", "password", "admin_key", "private")):
            marker = isinstance(v, str) and (set(v) <= set("*") or (v.startswith("<") and v.endswith(">"))
                                             or v.lower() in ("redacted", "set", "unset"))
            assert v in (None, "", True, False) or marker, f"{path} = {v!r} looks like a secret"
