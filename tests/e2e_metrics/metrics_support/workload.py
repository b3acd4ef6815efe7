"""A small workload that touches every metric family the dashboards read,
through the real clients: intent-bus 2.1.2 (publish, claim, fulfill, fail, a
lease left to expire), holokai-neuron-sdk 0.2.0 (ack, retryable and terminal
nack; the neuron stays connected, so an SSE session is open while Prometheus
scrapes), the task API (submit, cancel), a governed run answered by an Intent
Bus worker and a run the policy blocks. Every wait is a bounded poll."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from typing import Any, Dict, List

import requests
from intent_bus import IntentClient

from agw_testkit.gateway import Gateway
from agw_testkit.neuron import NeuronHandle, capability
from agw_testkit.responses import describe
from agw_testkit.tenants import Tenant
from agw_testkit.waits import wait_until

IB_GOAL = "metrics/intents"
IB_DEAD_GOAL = "metrics/doomed"
IB_EXPIRE_GOAL = "metrics/abandoned"
ECHO_CAP = "metrics/echo"
FLAKY_CAP = "metrics/flaky"
IDLE_CAP = "metrics/idle"
RUN_TOPIC = "gateway/run"
BLOCKED_INPUT = "please DROP TABLE users"

#: The gateway's config file: a deny rule to block a run, no rate limit.
CONFIG = f"""
[limits]
rate_limit_per_minute = 0

[governance]
default_topic = "{RUN_TOPIC}"
default_timeout_ms = 30000

[governance.policy]
name = "metrics-e2e"

[[governance.policy.deny]]
id = "no-drop-table"
pattern = "(?i)drop\\\\s+table"
reason = "destructive SQL"
"""

#: Environment of the gateway under test: short Intent Bus leases so one expires quickly.
SETTINGS = {"AGW_INTENT_BUS_CLAIM_TIMEOUT_SECS": "2"}


@dataclass
class Done:
    """What the workload did (what Prometheus must show)."""

    tenant: str = ""
    topics: List[str] = field(default_factory=list)
    neuron: Any = None


def _claim(ib: IntentClient, goal: str, worker: str):
    box: Dict[str, Any] = {}

    def probe():
        job = ib.claim(goal=goal, worker_id=worker)
        box["status"] = job.status_code
        return job if job else None

    return wait_until(probe, 15, f"an Intent Bus claim on {goal!r} to return a job", interval=0.1,
                      detail=lambda: box)


def _metrics_text(gw: Gateway) -> str:
    res = requests.get(gw.base_url + "/metrics", timeout=10)
    assert res.status_code == 200, describe(res)
    return res.text


def intent_bus(gw: Gateway, t: Tenant) -> None:
    ib = IntentClient(base_url=gw.base_url, api_key=t.api_key, timeout=15.0)
    worker = f"metrics-worker-{uuid.uuid4().hex[:6]}"
    try:
        for n in range(3):
            assert ib.publish(IB_GOAL, {"n": n}) is not None
        # fulfilled; failed and retried (backoff keeps it open); the third stays open.
        job = _claim(ib, IB_GOAL, worker)
        ib.fulfill(job.get("id"), job.get("claim_token"), result={"ok": True})
        job = _claim(ib, IB_GOAL, worker)
        ib.fail(job.get("id"), job.get("claim_token"), error="transient failure")
        # One attempt only: a failure makes it dead.
        ib.publish(IB_DEAD_GOAL, {"n": 0}, max_attempts=1)
        job = _claim(ib, IB_DEAD_GOAL, worker)
        ib.fail(job.get("id"), job.get("claim_token"), error="permanent failure")
        # A lease nobody settles: the sweep voids it after the 2 s claim timeout.
        ib.publish(IB_EXPIRE_GOAL, {"n": 0}, max_attempts=2)
        _claim(ib, IB_EXPIRE_GOAL, worker)
        wait_until(lambda: 'kind="expired"' in _metrics_text(gw), 20,
                   "the abandoned lease to expire (agw_jobs_settled_total{kind=\"expired\"})")
    finally:
        ib.close()


def neurons(gw: Gateway, t: Tenant) -> NeuronHandle:
    """Starts a neuron (left connected; the caller closes it) and runs tasks through it."""
    attempts: Dict[str, int] = {}

    async def echo(input, ctx):
        return {"echo": input}

    async def flaky(input, ctx):
        n = attempts[ctx.task.task_id] = attempts.get(ctx.task.task_id, 0) + 1
        if n == 1:
            raise RuntimeError("flaky dependency")   # retryable nack
        ctx.fail("no such record", code="E_NOT_FOUND")  # terminal nack

    h = NeuronHandle(gw.base_url, t.token(), neuron_id=f"metrics-neuron-{uuid.uuid4().hex[:6]}")
    h.add(capability(ECHO_CAP, 2), echo).add(capability(FLAKY_CAP, 1), flaky)
    try:
        h.start()
        tasks = t.tasks
        for tid in [tasks.create(ECHO_CAP, {"n": n}) for n in range(2)]:
            tasks.wait_state(tid, "fulfilled")
        tasks.wait_state(tasks.create(FLAKY_CAP, {}, maxAttempts=3), "dead", timeout=30)
        # Nobody serves IDLE_CAP: one task cancelled, one left waiting.
        cancelled = tasks.create(IDLE_CAP, {"n": 0})
        res = tasks.cancel(cancelled)
        assert res.status_code == 200, describe(res)
        tasks.create(IDLE_CAP, {"n": 1})
        # A client error for the error panels.
        res = tasks.get("no-such-task")
        assert res.status_code == 404, describe(res)
    except BaseException:
        h.close()
        raise
    return h


def governance(gw: Gateway, t: Tenant) -> None:
    headers = {"Authorization": f"Bearer {t.api_key}", "Content-Type": "application/json"}
    box: Dict[str, Any] = {}

    def run():
        box["res"] = requests.post(gw.base_url + "/api/v1/run", headers=headers, timeout=60,
                                   json={"input": "summarize the metrics", "options": {"timeout_ms": 30000}})

    th = threading.Thread(target=run, daemon=True)
    th.start()
    ib = IntentClient(base_url=gw.base_url, api_key=t.api_key, timeout=15.0)
    try:
        job = _claim(ib, RUN_TOPIC, "metrics-run-worker")
        ib.fulfill(job.get("id"), job.get("claim_token"), result={"output": "done"})
    finally:
        ib.close()
    th.join(60)
    assert not th.is_alive(), "the governed run did not answer after its job was fulfilled"
    assert box["res"].status_code == 200, describe(box["res"])
    blocked = requests.post(gw.base_url + "/api/v1/run", headers=headers, timeout=30,
                            json={"input": BLOCKED_INPUT})
    assert blocked.status_code == 403, describe(blocked)


def run(gw: Gateway, t: Tenant) -> Done:
    intent_bus(gw, t)
    governance(gw, t)
    done = Done(tenant=t.owner, topics=[IB_GOAL, IB_DEAD_GOAL, IB_EXPIRE_GOAL, ECHO_CAP, FLAKY_CAP,
                                        IDLE_CAP, RUN_TOPIC])
    done.neuron = neurons(gw, t)
    return done
