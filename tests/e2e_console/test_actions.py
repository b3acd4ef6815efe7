"""The console's actions (retry, cancel, purge), each checked through the
protocol APIs; live updates; tenant isolation in pages, actions and the SSE feed."""

from __future__ import annotations

import re

import pytest
import requests
from intent_bus.exceptions import IntentBusError
from selenium.webdriver.common.by import By

from agw_testkit.neuron import Calls, Gate, NeuronHandle, capability
from agw_testkit.responses import describe
from agw_testkit.waits import wait_until
from console_support import sdk


def test_retry_makes_a_dead_job_claimable_again(console, gw, tenant, uniq):
    topic = f"acme/retry-{uniq}"
    ib = sdk.ib(gw, tenant)
    try:
        jid = ib.publish(topic, {"n": 1}, max_attempts=1).id
        job = sdk.claim(ib, topic, "w1")
        ib.fail(job.get("id"), job.get("claim_token"), error="out of luck")
        assert ib.get_status(jid).status == "dead"
        assert not ib.claim(goal=topic, worker_id="w2"), "a dead job is not claimable"
        console.signed_in(tenant.api_key)
        console.open(f"/console/jobs/{jid}")
        assert console.wait(By.ID, "job-state").text == "dead"
        console.submit_action(f"/console/jobs/{jid}/retry")
        console.wait_text(By.ID, "job-state", "open")
        # The retry is an event of the job's chain, and the chain still verifies.
        console.wait_text(By.ID, "events-table", "retried")
        assert console.text(By.ID, "chain-verdict").startswith("verified: 2 events")
        again = sdk.claim(ib, topic, "w2")
        assert again.get("id") == jid, "an Intent Bus worker claims the retried job"
        ib.fulfill(jid, again.get("claim_token"), result={"second": "time"})
        assert ib.get_result(jid).result == {"second": "time"}
        # Retrying a fulfilled job is refused with a clear 409.
        s = console.session()
        csrf = re.search(r'name="csrf" value="([^"]+)"', console.source()).group(1)
        res = s.post(f"{gw.base_url}/console/jobs/{jid}/retry", data={"csrf": csrf}, allow_redirects=False,
                     timeout=10)
        assert res.status_code == 409 and "only dead jobs" in res.text, describe(res)
    finally:
        ib.close()


def test_cancel_of_a_leased_job_tells_its_neuron(console, gw, tenant, uniq):
    cap = f"acme/cancel-{uniq}"
    gate = Gate()
    started = Calls()

    async def hold(input, ctx):
        started.add(lease=ctx.lease_id)
        await gate.wait(60)
        return {"late": True}

    h = NeuronHandle(gw.base_url, tenant.token(), neuron_id=f"holder-{uniq}")
    h.add(capability(cap, 1), hold)
    ib = sdk.ib(gw, tenant)
    try:
        h.start()
        jid = ib.publish(cap, {"work": "long"}).id
        started.wait(1, what="the neuron to start the job")
        console.signed_in(tenant.api_key)
        console.open(f"/console/jobs/{jid}")
        console.wait_text(By.ID, "job-state", "leased")
        assert f"holder-{uniq}" in console.text(By.ID, "lease-holder")
        console.submit_action(f"/console/jobs/{jid}/cancel")
        console.wait_text(By.ID, "job-state", "cancelled")
        wait_until(lambda: h.frames_of("cancel"), 10, "the neuron to receive a cancel frame",
                   detail=lambda: h.frames)
        assert ib.get_status(jid).status == "cancelled"
        # An open job can be cancelled too; a cancelled one cannot be again (409).
        jid2 = ib.publish(f"{cap}-idle", {"n": 2}).id
        console.open(f"/console/jobs/{jid2}")
        console.submit_action(f"/console/jobs/{jid2}/cancel")
        console.wait_text(By.ID, "job-state", "cancelled")
        assert not console.d.find_elements(By.CSS_SELECTOR, f"form[action$='/console/jobs/{jid2}/cancel']")
    finally:
        gate.open()
        ib.close()
        h.close()


def test_purge_deletes_the_settled_jobs_of_a_topic(console, gw, tenant, uniq):
    topic = f"acme/purge-{uniq}"
    ib = sdk.ib(gw, tenant)
    try:
        done = []
        for n in range(3):
            ib.publish(topic, {"n": n})
        for _ in range(2):
            job = sdk.claim(ib, topic, "w")
            ib.fulfill(job.get("id"), job.get("claim_token"), result={"ok": True})
            done.append(job.get("id"))
        still_open = [ib.publish(topic, {"n": 9}).id]
        console.signed_in(tenant.api_key)
        console.wait_text(By.CSS_SELECTOR, f"tr[data-topic='{topic}'] td[data-state='fulfilled']", "2")
        console.submit_action("/console/topics/purge", within=f"tr[data-topic='{topic}']")
        assert "Purged 2 settled jobs" in console.wait(By.ID, "purged").text
        for jid in done:
            with pytest.raises(IntentBusError, match="not_found"):
                ib.get_status(jid)  # purged: gone from the Intent Bus API
        for jid in still_open:
            assert ib.get_status(jid).status == "open", "open jobs stay"
        assert console.text(By.CSS_SELECTOR, f"tr[data-topic='{topic}'] td[data-state='fulfilled']") == "0"
    finally:
        ib.close()


def test_live_topic_and_job_views_update_without_reload(console, gw, tenant, uniq):
    topic = f"acme/live-{uniq}"
    ib = sdk.ib(gw, tenant)
    try:
        jid = ib.publish(topic, {"n": 0}).id
        console.signed_in(tenant.api_key)
        row = f"tr[data-topic='{topic}']"
        console.wait_text(By.CSS_SELECTOR, f"{row} td[data-state='open']", "1")
        console.d.execute_script("window.__noReload = 'still here';")
        ib.publish(topic, {"n": 1})
        console.wait_text(By.CSS_SELECTOR, f"{row} td[data-state='open']", "2", timeout=5)
        # A topic that did not exist appears too.
        ib.publish(f"{topic}-new", {"n": 2})
        console.wait(By.CSS_SELECTOR, f"tr[data-topic='{topic}-new']", timeout=5)
        assert console.d.execute_script("return window.__noReload") == "still here", "the page was reloaded"
        console.open(f"/console/jobs/{jid}")
        console.wait_text(By.ID, "job-state", "open")
        console.d.execute_script("window.__noReload = 'job page';")
        # Claims take the oldest job first: this one.
        job = sdk.claim(ib, topic, f"live-{uniq}")
        assert job.get("id") == jid
        console.wait_text(By.ID, "job-state", "leased", timeout=5)
        ib.fulfill(jid, job.get("claim_token"), result={"live": True})
        console.wait_text(By.ID, "job-state", "fulfilled", timeout=5)
        assert console.d.execute_script("return window.__noReload") == "job page"
    finally:
        ib.close()


def _first_event(session: requests.Session, url: str) -> str:
    """The first `update` event's data of a console live stream."""
    with session.get(url, stream=True, timeout=(5, 10)) as res:
        assert res.status_code == 200, describe(res)
        assert res.headers["content-type"].startswith("text/event-stream")
        data, seen_event = [], False
        for line in res.iter_lines(decode_unicode=True):
            if line.startswith("event: update"):
                seen_event = True
            elif seen_event and line.startswith("data:"):
                data.append(line[5:].lstrip())
            elif seen_event and line == "" and data:
                return "\n".join(data)
    raise AssertionError(f"no update event from {url}")


def test_a_tenant_never_sees_another_tenants_work(console, gw, tenant, other_tenant, uniq):
    secret_topic = f"globex/secret-{uniq}"
    ib = sdk.ib(gw, other_tenant)
    try:
        theirs = ib.publish(secret_topic, {"plan": f"classified-{uniq}"}, max_attempts=1).id
        job = sdk.claim(ib, secret_topic, "gw1")
        ib.fail(job.get("id"), job.get("claim_token"), error="dead on purpose")
    finally:
        ib.close()
    mine = sdk.ib(gw, tenant)
    try:
        my_topic = f"acme/mine-{uniq}"
        mine.publish(my_topic, {"n": 1})
    finally:
        mine.close()
    console.signed_in(tenant.api_key)
    console.wait(By.CSS_SELECTOR, f"tr[data-topic='{my_topic}']")
    for page in ("/console/topics", "/console/jobs", "/console/jobs?state=dead", "/console/neurons"):
        console.open(page)
        src = console.source()
        assert secret_topic not in src and theirs not in src and f"classified-{uniq}" not in src, page
    # Filtering on the other tenant's topic (echoed in the filter field) finds nothing.
    console.open(f"/console/jobs?topic={secret_topic}")
    console.wait(By.ID, "no-jobs")
    assert theirs not in console.source() and f"classified-{uniq}" not in console.source()
    # Another tenant's job is not found (its id is not confirmed to exist).
    console.expected_statuses.add(404)
    console.open(f"/console/jobs/{theirs}")
    assert f"no job {theirs}" in console.wait(By.ID, "error-message").text
    assert f"classified-{uniq}" not in console.source()
    s = console.session()
    # The SSE feeds carry only the tenant's own work.
    feed = _first_event(s, gw.base_url + "/console/live/topics")
    assert my_topic in feed and secret_topic not in feed
    feed = _first_event(s, gw.base_url + f"/console/live/jobs?topic={secret_topic}")
    assert theirs not in feed and "no-jobs" in feed
    res = s.get(gw.base_url + f"/console/live/jobs/{theirs}", timeout=10)
    assert res.status_code == 404, describe(res)
    # Actions on another tenant's job are refused, and change nothing.
    console.open("/console/topics")
    csrf = re.search(r'name="csrf" value="([^"]+)"', console.source()).group(1)
    for action in ("retry", "cancel"):
        res = s.post(f"{gw.base_url}/console/jobs/{theirs}/{action}", data={"csrf": csrf},
                     allow_redirects=False, timeout=10)
        assert res.status_code == 404, describe(res)
    res = s.post(f"{gw.base_url}/console/topics/purge", data={"csrf": csrf, "topic": secret_topic},
                 allow_redirects=False, timeout=10)
    assert res.status_code == 303, describe(res)
    assert "purged=0" in res.headers["location"], res.headers["location"]
    other_ib = sdk.ib(gw, other_tenant)
    try:
        assert other_ib.get_status(theirs).status == "dead", "nothing changed for the other tenant"
    finally:
        other_ib.close()
    # A form without the session's CSRF token is refused.
    res = s.post(f"{gw.base_url}/console/topics/purge", data={"csrf": "forged", "topic": my_topic},
                 allow_redirects=False, timeout=10)
    assert res.status_code == 403, describe(res)
    # The admin sees both tenants.
    console.signed_in(gw.admin_key)
    console.open(f"/console/jobs/{theirs}")
    assert console.wait(By.ID, "job-state").text == "dead"


def test_screenshots_of_a_busy_console(console, gw, tenant, uniq):
    """Last in this module: the admin's topic table over every topic the tests
    above made (light and dark), for the README."""
    ib = sdk.ib(gw, tenant)
    try:
        for n in range(6):
            ib.publish(f"acme/reports-{uniq}", {"n": n})
        job = sdk.claim(ib, f"acme/reports-{uniq}", "report-worker")
        ib.fulfill(job.get("id"), job.get("claim_token"), result={"ok": True})
    finally:
        ib.close()
    console.signed_in(gw.admin_key)
    console.wait(By.CSS_SELECTOR, f"tr[data-topic='acme/reports-{uniq}']")
    console.shot("topics")
    console.shot("topics-dark", dark=True)
    console.open("/console/jobs")
    console.wait(By.ID, "jobs-table")
    console.shot("jobs")
