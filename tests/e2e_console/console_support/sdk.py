"""The real SDKs as the console tests drive them: intent-bus 2.1.2 clients
(publish / claim / fulfill / fail) and hestiaos 1.0.1 (a governed run)."""

from __future__ import annotations

from typing import Any, Dict

from hestiaos import Client
from intent_bus import IntentClient

from agw_testkit.gateway import Gateway
from agw_testkit.tenants import Tenant
from agw_testkit.waits import wait_until


def ib(gw: Gateway, t: Tenant) -> IntentClient:
    return IntentClient(base_url=gw.base_url, api_key=t.api_key, timeout=15.0)


def claim(client: IntentClient, goal: str, worker: str, timeout: float = 15.0):
    """A claimed job on `goal` (polled until one is there)."""
    box: Dict[str, Any] = {}

    def probe():
        job = client.claim(goal=goal, worker_id=worker)
        box["status"] = job.status_code
        return job if job else None

    return wait_until(probe, timeout, f"an Intent Bus claim on {goal!r} to return a job", interval=0.1,
                      detail=lambda: box)


def claim_when_due(client: IntentClient, goal: str, worker: str):
    """A claim of a job retried after a failure (its backoff, 5 s by default, must pass)."""
    return claim(client, goal, worker, timeout=30.0)


def hestia(gw: Gateway, t: Tenant) -> Client:
    return Client(base_url=gw.base_url, api_key=t.api_key, timeout=60.0)
