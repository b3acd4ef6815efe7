"""A neuron at concurrency 8 on the DEFAULT limits (README "Configuration":
the tenant rate limit never refuses settlements -- ack / nack / heartbeat /
progress -- and its default is sized for a fleet at full speed): 200 tasks
go through one neuron, which heartbeats every 100 ms, and the gateway answers
no request with 429.

Submissions keep at most 90 tasks unsettled (the default per-tenant open-job
cap is 100; with concurrency 8, a finished handler's ack may still be in
flight for at most 8 more) -- that cap is a separate, documented limit.
The gateway is private to the test, so its /metrics count only this run."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from agw_testkit.neuron import InFlight, LeaseLedger, capability
from agw_testkit.responses import describe
from agw_testkit.tenants import new_tenant
from agw_testkit.waits import wait_until

N_TASKS = 200
CONCURRENCY = 8
WINDOW = 90

_SAMPLE = re.compile(r'^agw_http_requests_total\{(.*)\}\s+(\d+)\s*$', re.M)


def _http_counts(gw):
    res = requests.get(gw.base_url + "/metrics", timeout=10)
    assert res.status_code == 200, describe(res)
    out = []
    for labels, n in _SAMPLE.findall(res.text):
        d = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        d["n"] = int(n)
        out.append(d)
    assert out, "no agw_http_requests_total samples on /metrics"
    return out


def test_neuron_at_concurrency_8_is_never_rate_limited(gateway_factory, neurons, cap):
    g = gateway_factory("defaults")  # BASE_SETTINGS only: every limit at its default
    t = new_tenant(g, "fleet")
    window = threading.BoundedSemaphore(WINDOW)
    inflight = InFlight()
    done = set()
    lock = threading.Lock()
    box = {}

    async def handler(input, ctx):
        inflight.enter()
        try:
            await asyncio.sleep(0.05)
            return {"i": input["i"], "sq": input["i"] ** 2}
        finally:
            inflight.exit()
            box["ledger"].done(ctx.lease_id)
            with lock:
                if ctx.task.task_id not in done:
                    done.add(ctx.task.task_id)
                    window.release()

    n = neurons(g, t.token(), heartbeat_ms=100).add(capability(cap, CONCURRENCY), handler)
    box["ledger"] = LeaseLedger(n)
    n.start()

    def submit(i):
        assert window.acquire(timeout=60), "no task finished for 60 s"
        return t.tasks.create(cap, {"i": i})

    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(submit, range(N_TASKS)))
    wait_until(lambda: len(done) >= N_TASKS, 120, f"{N_TASKS} tasks handled", detail=lambda: len(done))
    for i, tid in enumerate(ids):
        task = t.tasks.wait_state(tid, "fulfilled", timeout=20)
        assert task["output"] == {"i": i, "sq": i * i} and task["attempts"] == 1, task
    took = time.monotonic() - start
    print(f"{N_TASKS} tasks through one neuron (concurrency {CONCURRENCY}) in {took:.1f}s")

    assert len(done) == N_TASKS and set(ids) == done, "every task handled exactly once"
    assert box["ledger"].max_outstanding <= CONCURRENCY, box["ledger"].max_outstanding
    assert inflight.max > 1, "the neuron never ran two tasks at once"

    # The SDK logs a refused ack / nack ("... POST rejected by gateway") or heartbeat
    # ("heartbeat post failed") with the TransportError ("... 429 Too Many Requests").
    failed = [ln for ln in n.log_lines()
              if any(s in ln for s in ("rejected by gateway", "post failed", "Too Many Requests", "rate_limited"))]
    assert not failed, f"the SDK saw refused requests: {failed[:5]}"

    samples = _http_counts(g)
    limited = [s for s in samples if s.get("status") == "429"]
    assert not limited, f"the gateway answered 429 under the default limits: {limited}"
    by_route = {}
    for s in samples:
        by_route.setdefault(s.get("route"), {}).setdefault(s.get("status"), 0)
        by_route[s.get("route")][s.get("status")] += s["n"]
    assert by_route.get("/neuron/ack", {}) == {"200": N_TASKS}, by_route.get("/neuron/ack")
    hb = by_route.get("/neuron/heartbeat", {})
    assert set(hb) == {"200"} and hb["200"] >= 3, f"heartbeats: {hb} (interval 100 ms over {took:.1f}s)"
    assert by_route.get("/api/v1/tasks", {}) == {"201": N_TASKS}, by_route.get("/api/v1/tasks")
