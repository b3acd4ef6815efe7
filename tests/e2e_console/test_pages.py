"""Sign-in and every page of the console, with jobs the real SDKs made."""

from __future__ import annotations

import requests
from intent_bus import IntentClient
from selenium.webdriver.common.by import By

from agw_testkit.gateway import ALL_GATEWAYS, Gateway
from agw_testkit.neuron import Gate, NeuronHandle, capability
from agw_testkit.responses import describe
from agw_testkit.waits import wait_until
from console_support import sdk


def test_sign_in_wrong_key_then_admin_key(console, gw):
    console.expected_statuses.add(401)
    console.sign_in("agw_not-a-key")
    msg = console.wait(By.ID, "sign-in-error").text
    assert "not valid" in msg, msg
    assert console.cookie() is None, "a wrong key opens no session"
    console.shot("sign-in")
    console.signed_in(gw.admin_key)
    assert console.text(By.ID, "signed-in-as") == "admin"
    c = console.cookie()
    assert c and c["httpOnly"] and c.get("sameSite") == "Strict", c


def test_sign_out_ends_the_session(console, gw, tenant):
    console.signed_in(tenant.api_key)
    assert tenant.owner in console.text(By.ID, "signed-in-as")
    old = console.session()
    console.d.find_element(By.ID, "sign-out").click()
    console.wait(By.ID, "key")
    assert console.cookie() is None
    # The old cookie is dead on the server too.
    res = old.get(gw.base_url + "/console/topics", allow_redirects=False, timeout=10)
    assert res.status_code == 303 and res.headers["location"] == "/console/", describe(res)


def test_wrong_keys_meet_the_preauth_limit(console):
    # A gateway of its own, stopped without the usual export of its events:
    # this address is out of pre-auth budget there (and it wrote no event).
    g = Gateway({"AGW_LIMITS_PREAUTH_PER_MINUTE": "3"}, name="console-preauth")
    ALL_GATEWAYS.append(g)
    g.start()
    try:
        console.base = g.base_url
        console.expected_statuses.update({401, 429})
        for _ in range(3):
            console.sign_in("agw_wrong")
            assert "not valid" in console.wait(By.ID, "sign-in-error").text
        console.sign_in("agw_wrong")
        assert "Too many failed sign-ins" in console.wait(By.ID, "sign-in-error").text
        # Limited before any key is looked at: even the right key waits.
        console.sign_in(g.admin_key)
        assert "Too many failed sign-ins" in console.wait(By.ID, "sign-in-error").text
        console.reset()
    finally:
        assert g.stop() == 0


def test_topics_page_counts_states_and_consumers(console, gw, tenant, uniq):
    topic = f"acme/topics-{uniq}"
    ib = sdk.ib(gw, tenant)
    try:
        for n in range(4):
            ib.publish(topic, {"n": n})
        ib.publish(topic, {"n": "doomed"}, max_attempts=1)
        worker = f"worker-{uniq}"
        job = sdk.claim(ib, topic, worker)
        ib.fulfill(job.get("id"), job.get("claim_token"), result={"ok": True})
        job = sdk.claim(ib, topic, worker)
        ib.fail(job.get("id"), job.get("claim_token"), error="transient")
        leased = sdk.claim(ib, topic, worker)
    finally:
        ib.close()
    console.signed_in(tenant.api_key)
    row = f"tr[data-topic='{topic}']"
    console.wait(By.CSS_SELECTOR, row)

    def cell(state):
        return console.text(By.CSS_SELECTOR, f"{row} td[data-state='{state}']")

    counts = {s: cell(s) for s in ("open", "failed", "leased", "fulfilled", "dead", "cancelled")}
    # 5 published: 1 fulfilled, 1 leased, 3 open (one of them failed once, or dead when it
    # was the one-attempt job).
    assert counts["fulfilled"] == "1" and counts["leased"] == "1", counts
    assert int(counts["open"]) + int(counts["dead"]) == 3, counts
    assert int(counts["failed"]) + int(counts["dead"]) == 1, counts
    consumers = console.text(By.CSS_SELECTOR, f"{row} td.consumers")
    assert worker in consumers, consumers
    assert console.d.find_elements(By.CSS_SELECTOR, f"{row} svg.chart rect.tp"), "throughput bars"
    assert console.d.find_elements(By.CSS_SELECTOR, f"{row} svg.chart polyline.depth"), "depth line"
    assert leased.get("id")
    console.shot("topic")


def test_jobs_list_filters_and_pages(console, gw, tenant, uniq):
    topic = f"acme/list-{uniq}"
    ib = sdk.ib(gw, tenant)
    try:
        ids = [ib.publish(topic, {"n": n}).id for n in range(53)]
    finally:
        ib.close()
    console.signed_in(tenant.api_key)
    console.open(f"/console/jobs?topic={topic}&state=open")
    rows = console.d.find_elements(By.CSS_SELECTOR, "#jobs-table tbody tr")
    assert len(rows) == 50
    assert rows[0].get_attribute("id") == f"job-{ids[-1]}", "newest first"
    console.shot("jobs")
    console.d.find_element(By.ID, "older").click()
    console.wait_for(lambda: len(console.d.find_elements(By.CSS_SELECTOR, "#jobs-table tbody tr")) == 3,
                     "the second page")
    assert console.d.find_elements(By.ID, f"job-{ids[0]}")
    console.open(f"/console/jobs?topic={topic}&state=fulfilled")
    console.wait(By.ID, "no-jobs")
    # A bad filter is a clear 400.
    console.expected_statuses.add(400)
    console.open("/console/jobs?state=bogus")
    assert "unknown state" in console.wait(By.ID, "error-message").text
    res = console.session().get(gw.base_url + "/console/jobs?state=bogus", timeout=10)
    assert res.status_code == 400, describe(res)


def test_job_page_redacts_payload_and_verifies_events(console, gw, tenant, uniq):
    topic = f"acme/detail-{uniq}"
    ib = sdk.ib(gw, tenant)
    try:
        jid = ib.publish(topic, {"q": "visible", "password": "hunter2", "nested": {"api_key": "sk-1"}}).id
        job = sdk.claim(ib, topic, f"w-{uniq}")
        ib.fail(job.get("id"), job.get("claim_token"), error="first try broke")
        job = sdk.claim_when_due(ib, topic, f"w-{uniq}")
        ib.fulfill(job.get("id"), job.get("claim_token"), result={"answer": 42, "token": "tok-secret"})
    finally:
        ib.close()
    console.signed_in(tenant.api_key)
    console.open(f"/console/jobs/{jid}")
    assert console.wait(By.ID, "job-state").text == "fulfilled"
    src = console.source()
    assert "hunter2" not in src and "sk-1" not in src and "tok-secret" not in src, "secrets are redacted"
    assert "[REDACTED]" in src and "visible" in src and "42" in src
    assert console.text(By.ID, "job-protocol") == "intent_bus"
    assert console.text(By.ID, "job-attempts").startswith("2 of")
    verdict = console.text(By.ID, "chain-verdict")
    assert verdict.startswith("verified: 2 events"), verdict
    events = console.text(By.ID, "events-table")
    assert "first try broke" in events and "retry" in events and "fulfilled" in events, events
    console.shot("job")
    # Unknown job: a 404 page.
    console.expected_statuses.add(404)
    console.open("/console/jobs/00000000-0000-0000-0000-000000000000")
    assert "no job" in console.wait(By.ID, "error-message").text


def test_neurons_page_shows_sessions_capabilities_and_leases(console, gw, tenant, uniq):
    cap = f"acme/neuron-{uniq}"
    gate = Gate()

    async def slow(input, ctx):
        await gate.wait(60)
        return {"done": True}

    h = NeuronHandle(gw.base_url, tenant.token(), neuron_id=f"neuron-{uniq}")
    h.add(capability(cap, 2), slow)
    try:
        h.start()
        tid = tenant.tasks.create(cap, {"n": 1})
        tenant.tasks.wait_state(tid, "leased")
        console.signed_in(tenant.api_key)
        console.open("/console/neurons")
        row = console.wait(By.ID, f"neuron-neuron-{uniq}")
        assert f"{cap} ×2" in row.text and tid in row.text, row.text
        console.shot("neurons")
        gate.open()
        tenant.tasks.wait_state(tid, "fulfilled")
    finally:
        gate.open()
        h.close()


def test_trace_page_of_a_governance_run(console, gw, tenant, uniq):
    async def answer(input, ctx):
        return {"output": f"answered {uniq}"}

    h = NeuronHandle(gw.base_url, tenant.token(), neuron_id=f"runner-{uniq}")
    h.add(capability("gateway/run", 1), answer)
    try:
        h.start()
        r = sdk.hestia(gw, tenant).run(f"summarize {uniq}", timeout_ms=20000)
    finally:
        h.close()
    assert r.trace_id
    console.signed_in(tenant.api_key)
    console.open(f"/console/traces/{r.trace_id}")
    assert console.wait(By.ID, "trace-decision").text == "ALLOW"
    assert console.text(By.ID, "trace-mode")
    assert console.text(By.ID, "trace-budget")
    assert console.text(By.ID, "trace-status") == "completed"
    console.shot("trace")
    console.d.find_element(By.ID, "trace-job").click()
    assert console.wait(By.ID, "job-state").text == "fulfilled"
    assert console.text(By.ID, "job-protocol") == "governance"
    assert console.d.find_element(By.ID, "trace-link").text == r.trace_id


def test_keys_page_creates_and_revokes(console, gw, tenant, uniq):
    owner = f"initech-{uniq}"
    console.signed_in(gw.admin_key)
    console.open("/console/keys")
    console.wait(By.ID, "owner").send_keys(owner)
    console.submit_action("/console/keys")
    key = console.wait(By.ID, "new-key").text
    assert key.startswith("agw_"), key
    ib = IntentClient(base_url=gw.base_url, api_key=key, timeout=10.0)
    try:
        assert ib.publish(f"{owner}/t", {"n": 1}) is not None, "the new key works"
    finally:
        ib.close()
    row = next(r for r in console.d.find_elements(By.CSS_SELECTOR, "#keys-table tbody tr") if owner in r.text)
    row_id = row.get_attribute("id")
    key_id = row.find_element(By.CSS_SELECTOR, "td.mono").text
    console.shot("keys")
    console.submit_action(f"/console/keys/{key_id}/revoke")
    console.wait_for(lambda: "revoke" not in console.text(By.ID, row_id).lower(), "the key to show revoked")
    res = requests.post(gw.base_url + "/intent", headers={"X-API-KEY": key}, json={"goal": "x/y", "payload": {}},
                        timeout=10)
    assert res.status_code == 401, describe(res)
    # A tenant session may not manage keys.
    console.signed_in(tenant.api_key)
    console.expected_statuses.add(403)
    console.open("/console/keys")
    assert "only the admin" in console.wait(By.ID, "error-message").text
    assert not console.d.find_elements(By.CSS_SELECTOR, "nav a[href='/console/keys']")


def test_security_headers_and_embedded_assets(gw):
    res = requests.get(gw.base_url + "/console/", timeout=10)
    assert res.status_code == 200
    csp = res.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "'unsafe-inline'" not in csp
    assert res.headers["x-frame-options"] == "DENY"
    for name, kind in (("console.css", "text/css"), ("console.js", "text/javascript"),
                       ("favicon.svg", "image/svg+xml")):
        a = requests.get(f"{gw.base_url}/console/assets/{name}", timeout=10)
        assert a.status_code == 200 and a.headers["content-type"].startswith(kind), describe(a)
        body = a.text.replace('xmlns="http://www.w3.org/2000/svg"', "")
        assert "http://" not in body and "https://" not in body, f"{name} names another origin"
    assert requests.get(gw.base_url + "/console/assets/nope.js", timeout=10).status_code == 404
    # Without a session every page sends the browser to sign in.
    r = requests.get(gw.base_url + "/console/topics", allow_redirects=False, timeout=10)
    assert r.status_code == 303 and r.headers["location"] == "/console/"


def test_keyboard_shortcuts_and_focus(console, gw):
    console.signed_in(gw.admin_key)
    body = console.d.find_element(By.TAG_NAME, "body")
    body.send_keys("g")
    body.send_keys("j")
    console.wait_for(lambda: console.d.current_url.endswith("/console/jobs"), "g j to open the jobs page")
    console.d.find_element(By.TAG_NAME, "body").send_keys("/")
    console.wait_for(lambda: console.d.switch_to.active_element.get_attribute("id") == "f-topic",
                     "/ to focus the topic filter")
