"""Long-poll claims: POST /claim?...&wait=<secs>."""

from __future__ import annotations

import threading
import time

import pytest

from agw_testkit.responses import describe
from support import sdk
from support.checks import assert_client_error, assert_retry_after, assert_std_headers


def test_wait_returns_job_published_meanwhile(gw, tenant, client_for, uniq):
    goal, ns = f"lp/job-{uniq}", f"lp-{uniq}"
    publisher = client_for(gw, tenant)
    published = {}
    ready = threading.Event()

    def publish_later():
        ready.wait(5)
        time.sleep(1.0)  # let the claim below start waiting first
        published["at"] = time.monotonic()  # just before the intent exists
        published["id"] = sdk.publish(publisher, goal, {"late": True}, namespace=ns)

    th = threading.Thread(target=publish_later, daemon=True)
    th.start()
    t0 = time.monotonic()
    ready.set()
    res = gw.raw(tenant).claim(goal, namespace=ns, wait=5, timeout=20)
    t1 = time.monotonic()
    th.join(10)
    assert res.status_code == 200, describe(res)
    assert res.json()["id"] == published["id"]
    assert res.json()["payload"] == {"late": True}
    assert t1 >= published["at"], "claim answered before the intent existed"
    assert t1 - published["at"] < 2.5, f"long-poll noticed the new intent only after {t1 - published['at']:.2f}s"
    assert t1 - t0 < 5.0
    assert_std_headers(res)


def test_wait_times_out_with_204(gw, tenant, uniq):
    t0 = time.monotonic()
    res = gw.raw(tenant).claim(f"lp-none-{uniq}", wait=3, timeout=20)
    elapsed = time.monotonic() - t0
    assert res.status_code == 204, describe(res)
    assert elapsed >= 2.8, f"wait=3 returned after {elapsed:.2f}s"
    assert elapsed < 6.0, f"wait=3 returned after {elapsed:.2f}s"
    assert_retry_after(res)
    assert_std_headers(res)


def test_wait_ignores_other_tenants_private_intents(gw, tenant, other_tenant, client_for, uniq):
    """A private intent published by someone else during the wait must not wake/hand it over."""
    goal = f"lp-priv-{uniq}"
    other = client_for(gw, other_tenant)
    timer = threading.Timer(0.5, lambda: sdk.publish(other, goal, {"not": "yours"}))
    timer.start()
    try:
        res = gw.raw(tenant).claim(goal, wait=2, timeout=20)
    finally:
        timer.join(5)
    assert res.status_code == 204, describe(res)
    assert client_for(gw, other_tenant).claim(goal).status_code == 200


@pytest.mark.skipif(not sdk.IS_V2, reason="uses the 2.1.2 transport's request(params=...)")
def test_wait_through_sdk_transport(gw, tenant, client_for, uniq):
    c = client_for(gw, tenant)
    goal = f"acme/lp-sdk-{uniq}"
    iid = sdk.publish(c, goal, {"ready": 1})
    res = c.transport.request("POST", "/claim", params=[("namespace", "default"), ("goal", goal), ("wait", 5)])
    assert res.status_code == 200 and res.json()["id"] == iid  # immediate when work exists
    t0 = time.monotonic()
    res = c.transport.request("POST", "/claim", params=[("namespace", "default"), ("goal", goal), ("wait", 2)])
    assert res.status_code == 204 and time.monotonic() - t0 >= 1.8


@pytest.mark.parametrize("wait", ["-1", "soon"])
def test_wait_bad_values(gw, tenant, uniq, wait):
    """Either rejected as a clear 4xx or treated as 'no wait' -- never a server error or a hang."""
    t0 = time.monotonic()
    res = gw.raw(tenant).request("POST", "/claim", params={"goal": f"lp-bad-{uniq}", "wait": wait})
    assert time.monotonic() - t0 < 2.0
    if res.status_code != 204:
        assert_client_error(res)
