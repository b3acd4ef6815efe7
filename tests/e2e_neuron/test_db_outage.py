"""A PostgreSQL outage with neuron SSE sessions (holokai-neuron-sdk) and
Intent Bus long polls open: the gateway reaches its database through a TCP
proxy the test cuts (every connection reset, new ones refused, as a crashed
server or a failover does) and restores -- the shared server keeps serving
everyone else.

While the database is away: every store-backed request answers 503 with
Retry-After within a second, /readyz is 503, long polls end cleanly (204 at
the end of their wait, or 503; never a 500, never beyond their wait), and SSE
sessions stay open or end cleanly (the SDK reconnects). When it returns,
service resumes by itself: work published before and after the outage is
leased by SSE and claimed by long polls, and fulfilled; nothing acknowledged
is lost; the events verify (at teardown)."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, List
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests
from intent_bus import IntentClient

from agw_testkit.gateway import running_gateway
from agw_testkit.neuron import Calls, Gate, capability
from agw_testkit.netcut import CuttableProxy
from agw_testkit.responses import describe
from agw_testkit.store import PgDatabase, pg_admin_url, store_kind
from agw_testkit.tenants import new_tenant
from agw_testkit.waits import wait_until

pytestmark = pytest.mark.skipif(store_kind() != "postgres", reason="a PostgreSQL outage")

LONG_POLL_WAIT_S = 6
LEASE_TTL_MS = 3000


@pytest.fixture
def cut_store():
    """(proxy, database): a fresh database reached through a cuttable proxy."""
    db = PgDatabase(pg_admin_url())
    db.create()
    parts = urlsplit(db.url)
    proxy = CuttableProxy((parts.hostname or "127.0.0.1", parts.port or 5432)).start()
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{proxy.port}"
    proxy.url = urlunsplit((parts.scheme, f"{netloc[0]}@{host}" if len(netloc) == 2 else host,
                            parts.path, parts.query, ""))
    try:
        yield proxy, db
    finally:
        proxy.close()
        db.drop()


def _retrying(what: str, call: Callable[[], Any], timeout: float = 20.0) -> Any:
    """`call()` until it stops failing (503s right after the database returns
    are allowed: a pooled connection that died with the outage fails once)."""
    box: Dict[str, Any] = {}

    def attempt():
        try:
            box["v"] = call()
            return True
        except Exception as e:  # recorded for the timeout message
            box["err"] = e
            return False

    wait_until(attempt, timeout, what, interval=0.1, detail=lambda: repr(box.get("err")))
    return box["v"]


def _ok(res: requests.Response, *codes: int) -> requests.Response:
    if res.status_code not in codes:
        raise AssertionError(describe(res))
    return res


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_outage_with_sse_sessions_and_long_polls_open(cut_store, neurons, uniq):
    proxy, db = cut_store
    with running_gateway({"AGW_NEURON_LEASE_TTL_MS": str(LEASE_TTL_MS), "AGW_NEURON_KEEPALIVE_SECS": "1"},
                         name="db-outage", database_url=proxy.url) as g:
        tenant = new_tenant(g)
        raw = g.raw(tenant.api_key)
        cap, goal, idle_goal = f"out-{uniq}/echo", f"out-{uniq}/work", f"out-{uniq}/idle"

        calls = Calls()
        gate = Gate()

        async def echo(input, ctx):
            calls.add(task_id=ctx.task.task_id, input=input)
            if input.get("hold"):
                await gate.wait(60)
            return {"echo": input}

        neuron = neurons(g, tenant.token()).add(capability(cap, 2), echo).start()

        # Before: work flows; a task is in flight on the neuron (its handler
        # waits) and intents wait for a worker when the database goes.
        first = tenant.tasks.create(cap, {"n": -1})
        tenant.tasks.wait_state(first, "fulfilled")
        held = tenant.tasks.create(cap, {"hold": True})
        calls.wait(1, what="the held task to reach the neuron", task_id=held)
        pub = IntentClient(base_url=g.base_url, api_key=tenant.api_key, timeout=15.0)
        before = [pub.publish(goal, {"before": i}).id for i in range(5)]

        # Long polls waiting on a goal with no work when the database goes.
        polls: List[Dict[str, Any]] = []

        def long_poll():
            t0 = time.monotonic()
            try:
                res = raw.claim(idle_goal, wait=LONG_POLL_WAIT_S, timeout=LONG_POLL_WAIT_S + 20)
                polls.append({"status": res.status_code, "secs": time.monotonic() - t0,
                              "retry_after": res.headers.get("Retry-After"), "body": res.text[:200]})
            except Exception as e:
                polls.append({"error": repr(e), "secs": time.monotonic() - t0})

        pollers = [threading.Thread(target=long_poll, daemon=True) for _ in range(4)]
        for t in pollers:
            t.start()
        time.sleep(0.5)  # let them start waiting (not a timing assertion)

        # === the database goes away === (always restored, even on a failure)
        answered: List[float] = []
        try:
            reset = proxy.cut()
            assert reset >= 1, "the gateway had no database connection through the proxy"
            gate.open()  # the held task's ack now meets the outage

            def fast_503(name: str, send: Callable[[], requests.Response]) -> None:
                t0 = time.monotonic()
                res = send()
                secs = time.monotonic() - t0
                answered.append(secs)
                assert res.status_code == 503, f"{name} during the outage: {describe(res)}"
                assert res.headers.get("Retry-After", "").strip().isdigit(), f"{name}: no Retry-After: {describe(res)}"
                assert secs < 1.0, f"{name} took {secs:.2f}s to answer 503 (limit 1 s)"

            fast_503("publish right after the cut", lambda: raw.publish(goal, {"during": 0}))
            wait_until(lambda: requests.get(g.base_url + "/readyz", timeout=5).status_code == 503, 5,
                       "/readyz to answer 503")
            for _ in range(3):
                fast_503("publish", lambda: raw.publish(goal, {"during": 1}))
                fast_503("claim", lambda: raw.claim(goal))
                fast_503("long-poll claim", lambda: raw.claim(goal, wait=5, timeout=10))
                fast_503("status", lambda: raw.status(before[0]))
                fast_503("task submit", lambda: tenant.tasks.submit(cap, {"during": 2}))
                fast_503("task read", lambda: tenant.tasks.get(first))
            assert requests.get(g.base_url + "/healthz", timeout=5).status_code == 200

            for t in pollers:
                t.join(LONG_POLL_WAIT_S + 25)
            assert len(polls) == 4, polls
            for p in polls:
                assert "error" not in p, f"a long poll did not end cleanly: {p}"
                assert p["status"] in (204, 503), f"a long poll ended with {p}"
                assert p["secs"] < LONG_POLL_WAIT_S + 2.0, f"a long poll outlived its wait: {p}"
                assert p["retry_after"], f"a long poll's {p['status']} lacks Retry-After: {p}"
            assert g.alive()

        finally:
            proxy.restore()

        # === the database returns ===
        wait_until(lambda: requests.get(g.base_url + "/readyz", timeout=5).status_code == 200, 15,
                   "/readyz to answer 200 again")

        # The SSE session survived or the SDK reconnected: new tasks are leased to it.
        after = [_retrying("a task submitted after the outage",
                           lambda i=i: _ok(tenant.tasks.submit(cap, {"n": i}), 201).json()["taskId"])
                 for i in range(5)]
        for tid in [first, held] + after:
            tenant.tasks.wait_state(tid, "fulfilled", timeout=30)

        # A long poll picks up intents published before and after the outage.
        after_intents = [_retrying("a publish after the outage", lambda i=i: pub.publish(goal, {"after": i}).id)
                         for i in range(5)]
        fulfilled: Dict[str, Any] = {}

        def claim_one() -> bool:
            res = raw.claim(goal, wait=2, timeout=15)
            if res.status_code == 204:
                return False
            job = _ok(res, 200).json()
            result = {"done": job["id"]}
            assert pub.fulfill(job["id"], job["claim_token"], result) is not None
            fulfilled[job["id"]] = result
            return False

        wait_until(lambda: claim_one() or set(before + after_intents) <= set(fulfilled), 30,
                   "every intent published before and after the outage to be claimed and fulfilled",
                   detail=lambda: sorted(set(before + after_intents) - set(fulfilled)))
        for iid in before + after_intents:
            res = pub.get_result(iid)
            assert res is not None and res.status == "fulfilled" and res.result == fulfilled[iid], (iid, res)
        pub.close()

        sse = {ev: neuron.count(ev) for ev in ("connection:open", "connection:close", "connection:reconnecting")}
        print(f"\n503s during the outage: n={len(answered)}, max {max(answered) * 1000:.0f} ms; "
              f"SSE session across the outage: {sse}; long polls: {[(p['status'], round(p['secs'], 2)) for p in polls]}")
        log = g.stderr_tail(10_000_000)
        for bad in ("status=500", "panicked"):
            assert bad not in log, f"the gateway logged {bad!r}:\n{log[-3000:]}"
