"""Fixtures for the agent-gateway SCHEMA end-to-end suite.

One real `$AGW_BIN serve` (SQLite or PostgreSQL, per AGW_E2E_STORE) on the
default configuration -- only AGW_LISTEN, AGW_DATABASE_URL and AGW_ADMIN_KEY
set -- started and checked by agw_testkit.gateway
(events exported and verified at the end, clean exit on SIGTERM). A tenant key
comes from `POST /admin/generate_key`; a worker thread answers every job the
fuzzer's tenant enqueues, so governance runs are exercised through to their
result instead of waiting out their deadline, and the tenant stays under the
default cap of 100 open jobs (whose 429 asks for a 5 s wait).
"""

from __future__ import annotations

import threading
from typing import Iterator, List, Optional

import pytest
import requests

from agw_testkit.gateway import Gateway, running_gateway

pytest_plugins = ["agw_testkit.plugin"]


class JobWorker(threading.Thread):
    """Claims the tenant's jobs over Intent Bus -- any goal in namespace `default`:
    intents, neuron tasks and governance runs alike -- and fulfills them at once.

    Its own 5xx answers are collected in `server_errors` (the fixture fails on them)."""

    def __init__(self, base_url: str, api_key: str):
        super().__init__(name="schema-job-worker", daemon=True)
        self.base_url = base_url
        self.headers = {"X-API-KEY": api_key, "X-Worker-ID": "schema-job-worker"}
        self.answered = 0
        self.server_errors: List[str] = []
        self.crashed: Optional[BaseException] = None
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            with requests.Session() as s:
                while not self._halt.is_set():
                    self._step(s)
        except BaseException as e:  # reported by the fixture
            self.crashed = e

    def _post(self, s: requests.Session, path: str, **kw) -> Optional[requests.Response]:
        """POST, waiting out 429s: the fuzzer's failed authentications use up this
        address's pre-auth budget for a moment."""
        while not self._halt.is_set():
            res = s.post(self.base_url + path, headers=self.headers, timeout=10, **kw)
            if res.status_code >= 500:
                self.server_errors.append(f"POST {path} -> {res.status_code} {res.text[:300]!r}")
            if res.status_code != 429:
                return res
            self._halt.wait(0.2)
        return None

    def _step(self, s: requests.Session) -> None:
        res = self._post(s, "/claim", params={"wait": 1})
        if res is None or res.status_code != 200:
            if res is not None and res.status_code != 204:
                self._halt.wait(0.2)
            return
        job = res.json()
        body = {"claim_token": job["claim_token"], "result": {"output": "ok"}}
        # Anything but 200 means the job ended first (a run stream the fuzzer stopped
        # reading, a task it cancelled).
        done = self._post(s, f"/fulfill/{job['id']}", json=body)
        if done is not None and done.status_code == 200:
            self.answered += 1

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=15)


@pytest.fixture(scope="session")
def gw() -> Iterator[Gateway]:
    """The gateway under test, on the default configuration."""
    with running_gateway(name="schema", bare=True) as g:
        yield g


@pytest.fixture(scope="session")
def tenant_key(gw) -> str:
    """A tenant API key, as an operator creates one (owner `fuzz`)."""
    return gw.generate_key("fuzz")


@pytest.fixture
def job_worker(gw, tenant_key) -> Iterator[JobWorker]:
    w = JobWorker(gw.base_url, tenant_key)
    w.start()
    yield w
    w.stop()
    assert w.crashed is None, f"the job worker stopped: {w.crashed!r}"
    assert not w.server_errors, "the gateway answered the job worker with 5xx:\n" + "\n".join(w.server_errors)
