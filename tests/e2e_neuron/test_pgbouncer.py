"""PostgreSQL behind a real PgBouncer 1.18 in transaction pooling mode
(`AGW_DATABASE_POOLER=transaction`), as a managed database or a big fleet
runs it: two gateway replicas share one database through one PgBouncer whose
small server pool (4) makes their connections change servers from one
transaction to the next. Twice: with `LISTEN` over a direct connection
(`AGW_DATABASE_LISTEN_URL`), and without one (the poll fallback).

Real SDK traffic on both replicas: intent-bus 2.1.2 publishes and fulfills,
hand-signed long-poll claims (`wait=`; the 2.1.2 SDK has no long poll) that
must pick up work published on the other replica while they wait, and a
holokai-neuron-sdk neuron leased tasks by SSE on one replica submitted on the
other. Every acknowledged job ends settled; neither the gateways nor
PgBouncer log a prepared-statement error; the events of both replicas verify
(`agent-gateway events verify`, through PgBouncer, at teardown)."""

from __future__ import annotations

import statistics
import threading
import time
from typing import Dict, List

import pytest
from intent_bus import IntentClient

from agw_testkit.gateway import running_gateway
from agw_testkit.neuron import Calls, capability
from agw_testkit.pgbouncer import PgBouncer
from agw_testkit.responses import describe
from agw_testkit.store import PgDatabase, pg_admin_url, store_kind
from agw_testkit.tenants import new_tenant
from agw_testkit.waits import wait_until

pytestmark = pytest.mark.skipif(store_kind() != "postgres", reason="PgBouncer fronts PostgreSQL")

#: Long-poll pickups measured per mode; each must be under PICKUP_BOUND_S.
PICKUPS = 8
PICKUP_BOUND_S = 3.0


@pytest.fixture(scope="module")
def bouncer():
    b = PgBouncer(pg_admin_url(), pool_mode="transaction", pool_size=4).start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def database():
    db = PgDatabase(pg_admin_url())
    db.create()
    try:
        yield db
    finally:
        db.drop()


def _client(g, key: str) -> IntentClient:
    return IntentClient(base_url=g.base_url, api_key=key, timeout=15.0)


def _long_poll_pickups(pub_gw, wait_gw, key: str, goal: str) -> List[float]:
    """A long poll on `wait_gw` picks up an intent published on `pub_gw`
    while it waits; returns publish-acknowledged -> claim-answered seconds."""
    raw = wait_gw.raw(key)
    pub = _client(pub_gw, key)
    lat: List[float] = []
    try:
        for n in range(PICKUPS):
            box: Dict[str, object] = {}
            started = threading.Event()

            def claim():
                started.set()
                box["res"] = raw.claim(goal, wait=10, timeout=30)
                box["at"] = time.monotonic()

            th = threading.Thread(target=claim, daemon=True)
            th.start()
            started.wait(5)
            time.sleep(0.3)  # let the claim start waiting (not a timing assertion)
            published = pub.publish(goal, {"n": n})
            acked = time.monotonic()
            th.join(30)
            res = box.get("res")
            assert res is not None and res.status_code == 200, describe(res) if res is not None else "no answer"
            job = res.json()
            assert job["id"] == published.id, (job, published.id)
            lat.append(max(0.0, box["at"] - acked))
            assert pub.fulfill(job["id"], job["claim_token"], {"n": n}) is not None
    finally:
        pub.close()
    return lat


def _intent_load(a, b, key: str, goal: str, n: int = 60) -> None:
    """Publishers on both replicas, long-poll workers on both; every acknowledged
    intent ends fulfilled with its result."""
    published: List[str] = []
    fulfilled: Dict[str, dict] = {}
    errors: List[str] = []
    stop = threading.Event()

    def publisher(g, start: int):
        c = _client(g, key)
        try:
            for i in range(start, n, 2):
                published.append(c.publish(goal, {"i": i}).id)
        except Exception as e:  # reported below: publishes must not fail
            errors.append(f"publish on {g.name}: {e!r}")
        finally:
            c.close()

    def worker(g):
        raw = g.raw(key)
        c = _client(g, key)
        try:
            while not stop.is_set():
                res = raw.claim(goal, wait=2, timeout=20)
                if res.status_code == 204:
                    continue
                if res.status_code != 200:
                    errors.append(f"claim on {g.name}: {describe(res)}")
                    continue
                job = res.json()
                result = {"done": job["id"]}
                if c.fulfill(job["id"], job["claim_token"], result) is not None:
                    fulfilled[job["id"]] = result
        except Exception as e:
            errors.append(f"worker on {g.name}: {e!r}")
        finally:
            c.close()

    workers = [threading.Thread(target=worker, args=(g,), daemon=True) for g in (a, b, a, b)]
    pubs = [threading.Thread(target=publisher, args=(g, i), daemon=True) for i, g in enumerate((a, b))]
    for t in workers + pubs:
        t.start()
    for t in pubs:
        t.join(60)
    try:
        wait_until(lambda: errors or len(fulfilled) >= n, 60, f"{n} intents fulfilled",
                   detail=lambda: {"published": len(published), "fulfilled": len(fulfilled)})
    finally:
        stop.set()
        for t in workers:
            t.join(30)
    assert not errors, errors[:5]
    assert len(published) == n
    c = _client(a, key)
    try:
        for iid in published:
            res = c.get_result(iid)
            assert res is not None and res.status == "fulfilled", (iid, res)
            assert res.result == fulfilled[iid], (iid, res.result)
    finally:
        c.close()


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("listen", ["direct-listen", "poll-only"])
def test_replicas_behind_pgbouncer_transaction_pooling(bouncer, database, neurons, uniq, listen):
    url = bouncer.url(database.name)
    settings = {"AGW_DATABASE_POOLER": "transaction", "AGW_STORE_MAX_CONNECTIONS": "8"}
    if listen == "direct-listen":
        settings["AGW_DATABASE_LISTEN_URL"] = database.url
    with running_gateway({**settings, "AGW_EVENTS_INSTANCE_ID": f"bouncer-a-{uniq}"},
                         name=f"bouncer-{listen}-a", database_url=url) as a, \
         running_gateway({**settings, "AGW_EVENTS_INSTANCE_ID": f"bouncer-b-{uniq}"},
                         name=f"bouncer-{listen}-b", database_url=url, jwt_secret=a.jwt_secret) as b:
        tenant = new_tenant(a)

        # Long polls wake for work published on the other replica.
        lat = _long_poll_pickups(a, b, tenant.api_key, f"pgb-lp/{uniq}")
        lat += _long_poll_pickups(b, a, tenant.api_key, f"pgb-lp2/{uniq}")
        print(f"\n[{listen}] long-poll pickup across replicas through PgBouncer: "
              f"median {statistics.median(lat) * 1000:.0f} ms, max {max(lat) * 1000:.0f} ms (n={len(lat)})")
        assert max(lat) < PICKUP_BOUND_S, f"a long poll took {max(lat):.2f}s to pick up new work: {lat}"

        # A neuron on replica b is leased, by SSE, tasks submitted on replica a.
        cap = f"pgb-{uniq}/echo"
        calls = Calls()

        async def echo(input, ctx):
            calls.add(task_id=ctx.task.task_id)
            return {"echo": input}

        neurons(b, tenant.token()).add(capability(cap, 2), echo).start()
        ids = [tenant.tasks.create(cap, {"n": n}) for n in range(10)]
        for n, tid in enumerate(ids):
            t = tenant.tasks.wait_state(tid, "fulfilled", timeout=30)
            assert t["output"] == {"echo": {"n": n}}, t

        # Intent Bus load on both replicas at once.
        _intent_load(a, b, tenant.api_key, f"pgb-load/{uniq}")

        for g in (a, b):
            log = g.stderr_tail(10_000_000)
            for bad in ("prepared statement", "sqlx_s_", "postgres poll failed", "LISTEN failed", "ERROR"):
                assert bad not in log, f"{g.name} logged {bad!r}:\n{log[-3000:]}"
    pgb = bouncer.log()
    for bad in ("prepared statement", "ERROR"):
        assert bad not in pgb, f"pgbouncer logged {bad!r}:\n{pgb[-3000:]}"
