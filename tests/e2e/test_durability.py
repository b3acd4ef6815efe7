"""At-least-once, never lost: a job accepted with a 2xx survives a kill -9 of
the daemon at any instant, and so do live leases and API keys."""

import subprocess
import threading

import pytest
import requests
from agw_testkit.store import pg_admin_url, store_kind

from support import sdk


def _kill9_and_restart(g):
    """SIGKILL (no shutdown path at all), then start again on the same store."""
    g.proc.kill()
    g.proc.wait(timeout=10)
    g.restart()


def test_every_acknowledged_publish_survives_kill9(gateway_factory, uniq):
    g = gateway_factory("kill9")
    key = g.generate_key(f"dur-{uniq}")
    goal = f"dur/{uniq}"
    acknowledged = []
    stop = threading.Event()

    def publisher():
        c = sdk.client(g, key)
        n = 0
        while not stop.is_set():
            try:
                acknowledged.append(sdk.publish(c, goal, {"n": n}))
            except Exception:
                # The daemon died under us: requests in flight may or may not
                # have committed, but none of them was acknowledged.
                return
            n += 1

    t = threading.Thread(target=publisher, daemon=True)
    t.start()
    # Kill at an arbitrary instant once a good number have been acknowledged.
    deadline_ok = threading.Event()
    for _ in range(200):
        if len(acknowledged) >= 30:
            deadline_ok.set()
            break
        stop.wait(0.05)
    assert deadline_ok.is_set(), f"only {len(acknowledged)} publishes acknowledged"
    _kill9_and_restart(g)
    stop.set()
    t.join(timeout=30)

    c = sdk.client(g, key)
    for intent_id in acknowledged:
        res = requests.get(
            f"{g.base_url}/status/{intent_id}", headers={"X-API-KEY": key}, timeout=10
        )
        assert res.status_code == 200, f"acknowledged intent {intent_id} lost: {res.status_code} {res.text}"
        assert res.json()["status"] == "open"
    # And they are still claimable work.
    job, _ = sdk.claim_until(lambda: c.claim(goal=goal), timeout=10)
    assert sdk.job_id(job) in acknowledged


def test_live_lease_and_keys_survive_kill9(gateway_factory, uniq):
    g = gateway_factory("kill9-lease")
    key = g.generate_key(f"lease-{uniq}")
    goal = f"lease/{uniq}"
    c = sdk.client(g, key)
    intent_id = sdk.publish(c, goal, {"x": 1})
    job, _ = sdk.claim_until(lambda: c.claim(goal=goal), timeout=10)
    assert sdk.job_id(job) == intent_id
    _kill9_and_restart(g)
    # The same key still authenticates and the holder can still settle its lease.
    c2 = sdk.client(g, key)
    assert sdk.fulfill(c2, job, {"done": True}) is not None
    res = requests.get(f"{g.base_url}/result/{intent_id}", headers={"X-API-KEY": key}, timeout=10)
    assert res.status_code == 200
    assert res.json()["status"] == "fulfilled"


def test_keys_create_cli_makes_a_working_key(gw, uniq):
    out = gw.cli("keys", "create", "--owner", f"cli-{uniq}")
    assert out.returncode == 0, out.stderr
    key = out.stdout.strip()
    assert key.startswith("agw_")
    res = requests.post(
        f"{gw.base_url}/set/probe", headers={"X-API-KEY": key}, json={"value": 1, "ttl": 60}, timeout=10
    )
    assert res.status_code == 200, res.text
    bad = gw.cli("keys", "create", "--owner", "__nope__")
    assert bad.returncode != 0 and "owner" in bad.stderr


class _Load:
    """Publishers and workers on one goal through the real SDK, recording what
    the gateway acknowledged: publishes (the intent id came back) and fulfills
    (the SDK call returned). Errors (the gateway killed, the store down: 503)
    are retried; nothing unacknowledged is recorded."""

    def __init__(self, g, key: str, goal: str, publishers: int = 2, workers: int = 4):
        self.g, self.key, self.goal = g, key, goal
        self.published: list = []
        self.fulfilled: dict = {}
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._publish, daemon=True) for _ in range(publishers)]
        self.threads += [threading.Thread(target=self._work, daemon=True) for _ in range(workers)]

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)

    def _publish(self):
        c = sdk.client(self.g, self.key)
        n = 0
        while not self.stop.is_set():
            if len(self.published) - len(self.fulfilled) > 200:
                self.stop.wait(0.01)
                continue
            try:
                self.published.append(sdk.publish(c, self.goal, {"n": n}))
            except Exception:
                self.stop.wait(0.05)
            n += 1

    def _work(self):
        c = sdk.client(self.g, self.key)
        while not self.stop.is_set():
            try:
                job = c.claim(goal=self.goal)
            except Exception:
                self.stop.wait(0.05)
                continue
            if not job:
                self.stop.wait(0.02)
                continue
            result = {"done": sdk.job_id(job)}
            try:
                ok = sdk.fulfill(c, job, result)
            except Exception:
                continue
            if ok is not None:
                self.fulfilled[sdk.job_id(job)] = result

    def wait_for(self, fulfilled: int, timeout: float = 60.0):
        """Until at least `fulfilled` fulfills are acknowledged (the load runs)."""
        for _ in range(int(timeout / 0.05)):
            if len(self.fulfilled) >= fulfilled:
                return
            self.stop.wait(0.05)
        raise AssertionError(f"only {len(self.fulfilled)} fulfills acknowledged, wanted {fulfilled}")

    def check_nothing_lost(self):
        """Every acknowledged publish is still there; every acknowledged fulfill
        is fulfilled with its result and has exactly one execution event."""
        auth = {"X-API-KEY": self.key}
        for iid in self.published:
            res = requests.get(f"{self.g.base_url}/status/{iid}", headers=auth, timeout=15)
            assert res.status_code == 200, f"acknowledged intent {iid} lost: {res.status_code} {res.text}"
        for iid, result in self.fulfilled.items():
            res = requests.get(f"{self.g.base_url}/result/{iid}", headers=auth, timeout=15)
            assert res.status_code == 200, f"{iid}: {res.status_code} {res.text}"
            body = res.json()
            assert body["status"] == "fulfilled" and body["result"] == result, (iid, body)
            res = requests.get(f"{self.g.base_url}/api/v1/events", params={"correlation_id": iid},
                               headers={"Authorization": f"Bearer {self.key}"}, timeout=15)
            assert res.status_code == 200, res.text
            events = res.json()["events"]
            assert len(events) == 1 and events[0]["status"] == "ok", (iid, events)


def test_every_acknowledged_fulfill_survives_kill9(gateway_factory, uniq):
    """Settlements, like publishes: a fulfill answered 2xx before a kill -9
    is kept with its result and its one event (chains are verified when the
    gateway's use ends)."""
    g = gateway_factory("kill9-settle")
    key = g.generate_key(f"settle-{uniq}")
    load = _Load(g, key, f"settle/{uniq}")
    with load:
        load.wait_for(40)
        _kill9_and_restart(g)
        # Work resumes on the restarted gateway.
        load.wait_for(len(load.fulfilled) + 20)
    load.check_nothing_lost()


@pytest.mark.skipif(store_kind() != "postgres", reason="a PostgreSQL outage")
def test_database_connections_killed_under_load_lose_nothing(gateway_factory, uniq):
    """PostgreSQL: every connection of the gateway is killed three times under
    load (`pg_terminate_backend`, as a failover or a server restart does).
    Requests meanwhile may fail (503), but service resumes by itself, nothing
    acknowledged is lost, and no request was cut off inside a transaction (the
    log has no `transaction in progress` warning)."""
    g = gateway_factory("pg-outage")
    key = g.generate_key(f"outage-{uniq}")
    load = _Load(g, key, f"outage/{uniq}")
    kill = (f"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            f"WHERE datname = '{g.pg.name}' AND pid <> pg_backend_pid()")
    with load:
        for _ in range(3):
            load.wait_for(len(load.fulfilled) + 30)
            out = subprocess.run(["psql", pg_admin_url(), "-qAt", "-c", kill],
                                 capture_output=True, text=True, timeout=30)
            assert out.returncode == 0 and int(out.stdout.strip()) >= 1, out
        load.wait_for(len(load.fulfilled) + 30)
    load.check_nothing_lost()
    log = g.stderr_tail(10_000_000)
    assert "transaction in progress" not in log, log[-3000:]


def test_clients_cut_off_mid_request_leave_no_half_done_work(gateway_factory, uniq):
    """Clients by the thousand give up mid-request (a 1–4 ms client timeout
    on publishes and fulfills) while workers keep settling: every request
    either happened or did not, never half. After the storm, each job a
    worker claimed is fulfilled with its result and has exactly one event
    (chains are verified when the gateway's use ends), no job is left open or
    leased, every acknowledged publish exists, and the log has no
    `transaction in progress` warning (a store transaction cut off with its
    request)."""
    g = gateway_factory("cutoff")
    key = g.generate_key(f"cut-{uniq}")
    goal = f"cut/{uniq}"
    raw = g.raw(key)
    lock = threading.Lock()
    cut = [0]
    published: list = []
    settled: dict = {}
    stop = threading.Event()

    def give_up(n: int) -> float:
        return 0.001 * (1 + n % 4)

    def publisher():
        n = 0
        while not stop.is_set():
            n += 1
            try:
                res = raw.request("POST", "/intent", body={"goal": goal, "payload": {"n": n}},
                                  timeout=give_up(n) if n % 4 else 15.0)
            except requests.RequestException:
                with lock:
                    cut[0] += 1
                continue
            if res.status_code == 201:
                with lock:
                    published.append(res.json()["id"])

    def settle(job: dict, timeout: float) -> None:
        body = {"claim_token": job["claim_token"], "result": {"done": job["id"]}}
        res = raw.request("POST", f"/fulfill/{job['id']}", body=body, timeout=timeout)
        assert res.status_code in (200, 404), (res.status_code, res.text)

    def worker():
        n = 0
        while not stop.is_set():
            res = raw.claim(goal=goal)
            if res.status_code != 200:
                stop.wait(0.01)
                continue
            job, n = res.json(), n + 1
            try:
                settle(job, give_up(n))
            except requests.RequestException:
                with lock:
                    cut[0] += 1
                # Cut off: it happened or not. Settle it patiently (404
                # lease_lost: the lease is gone, so it happened).
                settle(job, 15.0)
            settled[job["id"]] = {"done": job["id"]}

    threads = [threading.Thread(target=publisher, daemon=True) for _ in range(3)]
    threads += [threading.Thread(target=worker, daemon=True) for _ in range(3)]
    for t in threads:
        t.start()
    for _ in range(2400):
        if cut[0] >= 2000:
            break
        stop.wait(0.05)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert cut[0] >= 2000, f"only {cut[0]} requests were cut off"

    # Drain: every job published (acknowledged or not) is claimed and settled.
    while True:
        res = raw.claim(goal=goal)
        if res.status_code != 200:
            assert res.status_code == 204, (res.status_code, res.text)
            break
        job = res.json()
        settle(job, 15.0)
        settled[job["id"]] = {"done": job["id"]}
    for iid in published:
        assert iid in settled, f"acknowledged intent {iid} was never claimed"
    for iid, result in settled.items():
        body = raw.result(iid).json()
        assert body["status"] == "fulfilled" and body["result"] == result, (iid, body)
        res = requests.get(f"{g.base_url}/api/v1/events", params={"correlation_id": iid},
                           headers={"Authorization": f"Bearer {key}"}, timeout=15)
        events = res.json()["events"]
        assert len(events) == 1 and events[0]["status"] == "ok", (iid, events)
    log = g.stderr_tail(10_000_000)
    assert "transaction in progress" not in log, log[-3000:]
