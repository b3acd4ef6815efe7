"""A tenant's fleet at full speed on the DEFAULT limits (README "Configuration":
`rate_limit_per_minute` 600000, "sized so one tenant's fleet runs at full
speed"): 8 SDK workers and 4 publishers, all keys of one tenant, move 400
intents as fast as they can, and the gateway refuses none of their requests.

The workers are the SDK's own loops: 2.1.2 `WorkerRuntime.listen`, and for
1.3.2 (whose `listen` sleeps 0.5 s after every job) claim/fulfill loops. The
publishers keep fewer than the default per-tenant open-job cap (100) unsettled
-- that cap is a separate, documented limit, not the one under test.

What counts as "no 429": every SDK call's outcome is recorded (an SDK that
retries 429 by itself, as 2.1.2's publish does, is still seen by the gateway's
own request counter), and the private gateway's /metrics must show no 429 on
any route."""

from __future__ import annotations

import re
import threading
import time
import uuid
from typing import Any, Dict, List

import requests

from agw_testkit.responses import describe
from support import sdk

N_INTENTS = 400
N_WORKERS = 8
N_PUBLISHERS = 4
WINDOW = 90  # unsettled intents at most (default max_open_jobs_per_tenant is 100)
DEADLINE_S = 180.0

# Label values may hold braces themselves (route="/fulfill/{id}"): the labels end at the last "}".
_SAMPLE = re.compile(r'^agw_http_requests_total\{(.*)\}\s+(\d+)\s*$', re.M)


def http_counts(gw) -> List[Dict[str, Any]]:
    res = requests.get(gw.base_url + "/metrics", timeout=10)
    assert res.status_code == 200, describe(res)
    out = []
    for labels, n in _SAMPLE.findall(res.text):
        d = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        d["n"] = int(n)
        out.append(d)
    assert out, f"/metrics has no agw_http_requests_total samples:\n{res.text[:2000]}"
    return out


class Fleet:
    """Shared bookkeeping of the run: errors by kind, fulfilled ids, the publish window."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.errors: List[str] = []
        self.rate_limited: List[str] = []
        self.fulfilled: set = set()
        self.handled = 0
        self.window = threading.BoundedSemaphore(WINDOW)
        self.stop = threading.Event()

    def error(self, where: str, e: BaseException) -> None:
        with self.lock:
            (self.rate_limited if isinstance(e, sdk.IntentBusRateLimitError) else self.errors).append(
                f"{where}: {type(e).__name__}: {e}")

    def settled(self, intent_id: str) -> None:
        with self.lock:
            new = intent_id not in self.fulfilled
            self.fulfilled.add(intent_id)
        if new:
            self.window.release()


class RecordingClient:
    """The SDK client as WorkerRuntime sees it: every claim / fulfill outcome is
    recorded; claim() ends listen() (SystemExit, which the runtime re-raises)
    once the run is over."""

    def __init__(self, client, fleet: Fleet, name: str):
        self._client = client
        self._fleet = fleet
        self._name = name

    def claim(self, *a, **kw):
        if self._fleet.stop.is_set():
            raise SystemExit(0)
        try:
            return self._client.claim(*a, **kw)
        except Exception as e:
            self._fleet.error(f"{self._name} claim", e)
            raise

    def fulfill(self, *a, **kw):
        try:
            res = self._client.fulfill(*a, **kw)
        except Exception as e:
            self._fleet.error(f"{self._name} fulfill", e)
            raise
        self._fleet.settled(kw.get("intent_id") or a[0])
        return res

    def fail(self, *a, **kw):
        self._fleet.error(f"{self._name} fail", RuntimeError(f"the handler failed a job: {a} {kw}"))
        return self._client.fail(*a, **kw)

    def __getattr__(self, name):
        return getattr(self._client, name)


def _handler(fleet: Fleet):
    def handle(payload):
        with fleet.lock:
            fleet.handled += 1
        return {"doubled": payload["n"] * 2}

    return handle


def _v2_worker(client, fleet: Fleet, goal: str, name: str) -> None:
    rt = sdk.WorkerRuntime(RecordingClient(client, fleet, name), worker_id=name, poll_interval=0.1,
                           max_backoff=1.0)
    try:
        rt.listen(goal, _handler(fleet))
    except SystemExit:
        pass


def _v1_worker(client, fleet: Fleet, goal: str, name: str) -> None:
    handle = _handler(fleet)
    while not fleet.stop.is_set():
        try:
            job = client.claim(goal, worker_id=name)
        except Exception as e:
            fleet.error(f"{name} claim", e)
            time.sleep(0.2)
            continue
        if not job or job.status_code != 200 or not sdk.job_id(job):
            fleet.stop.wait(min(float(job.retry_after or 0.2) if job else 0.2, 0.2))
            continue
        try:
            sdk.fulfill(client, job, handle(job.get("payload", {})))
        except Exception as e:
            fleet.error(f"{name} fulfill", e)
            continue
        fleet.settled(sdk.job_id(job))


def test_fleet_at_full_speed_is_never_rate_limited(gateway_factory, client_for):
    g = gateway_factory("defaults")  # BASE_SETTINGS only: every limit at its default
    owner = f"fleet-{uuid.uuid4().hex[:10]}"
    goal = f"fleet/{uuid.uuid4().hex[:8]}"
    fleet = Fleet()
    published: List[str] = []
    pub_lock = threading.Lock()

    def publisher(idx: int) -> None:
        c = client_for(g, g.generate_key(owner))
        per = N_INTENTS // N_PUBLISHERS
        for i in range(per):
            if not fleet.window.acquire(timeout=60):
                fleet.error(f"publisher {idx}", RuntimeError("no intent settled for 60 s"))
                return
            try:
                jid = sdk.publish(c, goal, {"n": idx * per + i})
            except Exception as e:
                fleet.error(f"publisher {idx} publish", e)
                fleet.window.release()
                continue
            with pub_lock:
                published.append(jid)

    worker_fn = _v2_worker if sdk.IS_V2 else _v1_worker
    workers = [threading.Thread(target=worker_fn, args=(client_for(g, g.generate_key(owner)), fleet, goal,
                                                         f"fleet-worker-{i}"), daemon=True, name=f"w{i}")
               for i in range(N_WORKERS)]
    pubs = [threading.Thread(target=publisher, args=(i,), daemon=True, name=f"p{i}") for i in range(N_PUBLISHERS)]
    start = time.monotonic()
    for t in workers + pubs:
        t.start()
    try:
        for t in pubs:
            t.join(DEADLINE_S)
            assert not t.is_alive(), f"publisher {t.name} still running after {DEADLINE_S}s"
        while len(fleet.fulfilled) < N_INTENTS and not fleet.errors and not fleet.rate_limited:
            assert time.monotonic() - start < DEADLINE_S, (
                f"{len(fleet.fulfilled)} of {N_INTENTS} fulfilled after {DEADLINE_S}s")
            time.sleep(0.1)
    finally:
        fleet.stop.set()
        for t in workers:
            t.join(15)
    took = time.monotonic() - start
    print(f"{N_INTENTS} intents through {N_WORKERS} workers in {took:.1f}s")

    assert not fleet.rate_limited, f"{len(fleet.rate_limited)} SDK calls were rate limited: {fleet.rate_limited[:5]}"
    assert not fleet.errors, f"{len(fleet.errors)} SDK calls failed: {fleet.errors[:5]}"
    assert not [t.name for t in workers if t.is_alive()], "a worker loop did not stop"
    assert len(published) == N_INTENTS and len(set(published)) == N_INTENTS
    assert fleet.fulfilled == set(published), "every published intent fulfilled, each by one worker"
    assert fleet.handled == N_INTENTS, f"{fleet.handled} handler calls for {N_INTENTS} intents"

    raw = g.raw(g.generate_key(owner))
    for jid in published:
        r = raw.result(jid)
        assert r.status_code == 200 and r.json()["status"] == "fulfilled", describe(r)
        assert r.json()["result"]["doubled"] % 2 == 0, r.json()

    samples = http_counts(g)
    limited = [s for s in samples if s.get("status") == "429"]
    assert not limited, f"the gateway answered 429 under the default limits: {limited}"
    refused = [s for s in samples if s.get("status", "").startswith(("4", "5"))
               and s.get("route") in ("/intent", "/claim", "/fulfill/{id}")]
    assert not refused, f"the fleet's requests were refused: {refused}"
    fulfills = sum(s["n"] for s in samples if s.get("status") == "200" and "fulfill" in s.get("route", ""))
    assert fulfills == N_INTENTS, f"{fulfills} successful fulfills counted by the gateway: {samples}"
