"""Execution events of Intent Bus dispatches: every settled dispatch leaves exactly
one signed, hash-chained IntentProof v1 event (correlation id = intent id, action
`intent_bus.<goal>`) that the independent `intentproof` package verifies; the
list / export API (tenant scoping, compact, JSONL, pagination); a tampered event
fails `agent-gateway events verify`; a worker instrumented with the real
`intentproof` SDK posts its own event to /v1/events, linked by the intent id.

(Every gateway's whole event log is checked again when its use ends: gateway.py.)
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta

import pytest
import requests

from agw_testkit.events import (
    COMPACT_FIELDS,
    SENTINEL,
    assert_v1,
    chain_of,
    events_res,
    keys,
    list_events,
    restore_postgres,
    restore_sqlite,
    run_intentproof_worker,
    tamper_postgres,
    tamper_sqlite,
    verify_independently,
)
from agw_testkit.responses import describe
from agw_testkit.store import store_kind
from support import sdk


def _tenant(g, prefix="ev"):
    owner = f"{prefix}-{uuid.uuid4().hex[:10]}"
    return owner, g.generate_key(owner)


def _claim(c, goal, worker_id=None, timeout=10):
    job, _ = sdk.claim_until(lambda: c.claim(goal, worker_id=worker_id) if worker_id else c.claim(goal),
                             timeout=timeout)
    assert job is not None, f"no claimable intent for {goal!r} within {timeout}s"
    return job


def _fail_then_fulfill(g, c, key, goal):
    """publish (3 attempts, 0.1 s backoff) -> claim -> fail -> claim -> fulfill; the intent id."""
    res = g.raw(key).publish(goal, {"k": 1}, max_attempts=3, backoff_base=0.1)
    assert res.status_code == 201, describe(res)
    iid = res.json()["id"]
    job = _claim(c, goal, "w-first")
    ack = sdk.fail(c, job, "transient boom")
    assert ack and ack.get("ok") is True, ack
    job = _claim(c, goal, "w-second")
    assert sdk.job_id(job) == iid and job.get("claim_attempts") == 2, job
    ack = sdk.fulfill(c, job, {"done": True})
    assert ack and ack.get("ok") is True, ack
    return iid


def test_fulfill_leaves_exactly_one_ok_event(gw, client_for, uniq):
    owner, key = _tenant(gw)
    c = client_for(gw, key)
    goal = f"ev/echo-{uniq}"
    iid = sdk.publish(c, goal, {"n": 1, "text": "héllo ✓"})
    assert chain_of(gw.base_url, key, iid) == [], "no event before the dispatch settles"
    job = _claim(c, goal, "w-ev")
    assert chain_of(gw.base_url, key, iid) == [], "a claim settles nothing: no event yet"
    ack = sdk.fulfill(c, job, {"answer": 42})
    assert ack and ack.get("ok") is True, ack

    [e] = chain_of(gw.base_url, key, iid)
    assert_v1(e)
    assert (e["correlation_id"], e["intent"], e["action"], e["status"]) == (iid, goal, f"intent_bus.{goal}", "ok"), e
    assert (e["chain_position"], e["prev_event_hash"]) == (1, SENTINEL), e
    assert e["tenant_id"] == owner, e
    a = e["attributes"]
    assert (a["protocol"], a["outcome"], a["attempt"], a["job_id"], a["tenant"]) == (
        "intent_bus", "fulfilled", 1, iid, owner), a
    assert a.get("worker") == "w-ev", f"the event names the worker that held the lease: {a}"
    assert e.get("error") is None, e
    key_map = keys(gw.base_url)
    assert e["signature"]["key_id"] in key_map, (e["signature"], sorted(key_map))
    assert e["signature"]["key_id"] == f"{e['instance_id']}:k1", e
    verify_independently([e], key_map)

    # The admin key sees the same event; the filters find it (or not).
    assert chain_of(gw.base_url, gw.admin_key, iid) == [e]
    for params in ({"protocol": "intent_bus"}, {"topic": goal}, {"status": "ok"}):
        got = list_events(gw.base_url, key, limit=1000, **params)
        assert e in got, f"{params}: {got}"
    for params in ({"protocol": "neuron"}, {"status": "error"}, {"topic": goal + "-other"}):
        got = list_events(gw.base_url, key, correlation_id=iid, **params)
        assert got == [], f"{params}: {got}"
    # Re-fulfilling settles nothing new.
    with sdk.expect_lease_lost():
        sdk.fulfill(c, job, {"again": True})
    assert chain_of(gw.base_url, key, iid) == [e]


def test_fail_with_retry_then_fulfill_is_a_two_event_chain(gw, client_for, uniq):
    owner, key = _tenant(gw)
    c = client_for(gw, key)
    goal = f"ev-flaky-{uniq}"
    iid = _fail_then_fulfill(gw, c, key, goal)

    chain = chain_of(gw.base_url, key, iid)
    assert [(e["chain_position"], e["status"]) for e in chain] == [(1, "error"), (2, "ok")], chain
    first, second = chain
    for e in chain:
        assert_v1(e)
        assert (e["correlation_id"], e["action"], e["tenant_id"]) == (iid, f"intent_bus.{goal}", owner), e
    assert first["prev_event_hash"] == SENTINEL, first
    assert second["prev_event_hash"] != SENTINEL and second["prev_event_hash"].startswith("sha256:"), second
    assert first["error"]["message"] == "transient boom", first
    assert (first["attributes"]["outcome"], first["attributes"]["attempt"], first["attributes"]["worker"]) == (
        "retry", 1, "w-first"), first["attributes"]
    assert (second["attributes"]["outcome"], second["attributes"]["attempt"], second["attributes"]["worker"]) == (
        "fulfilled", 2, "w-second"), second["attributes"]
    # intentproof recomputes event_content_hash(first) and finds it in second.prev_event_hash.
    verify_independently(chain, keys(gw.base_url))


def test_fail_on_the_last_attempt_leaves_a_dead_event(gw, client_for, uniq):
    _owner, key = _tenant(gw)
    c = client_for(gw, key)
    goal = f"ev-dead-{uniq}"
    res = gw.raw(key).publish(goal, {"k": 1}, max_attempts=1)
    assert res.status_code == 201, describe(res)
    iid = res.json()["id"]
    sdk.fail(c, _claim(c, goal), "fatal")
    [e] = chain_of(gw.base_url, key, iid)
    assert (e["status"], e["attributes"]["outcome"], e["error"]["message"]) == ("error", "dead", "fatal"), e
    verify_independently([e], keys(gw.base_url))


def test_lease_expiry_then_fulfill_chains_two_events(gateway_factory, client_for, uniq):
    g = gateway_factory("ev-expiry", AGW_INTENT_BUS_CLAIM_TIMEOUT_SECS=1)
    _owner, key = _tenant(g)
    c = client_for(g, key)
    goal = f"ev-expire-{uniq}"
    iid = sdk.publish(c, goal, {"slow": True})
    _claim(c, goal, "w-slow")
    deadline = time.monotonic() + 15
    while not chain_of(g.base_url, key, iid):
        assert time.monotonic() < deadline, "the lease expiry left no event within 15 s"
        time.sleep(0.1)
    job = _claim(c, goal, "w-fast")
    sdk.fulfill(c, job, {"done": True})
    first, second = chain_of(g.base_url, key, iid)
    assert (first["status"], first["error"]["name"], first["attributes"]["outcome"]) == (
        "error", "LeaseExpired", "expired"), first
    assert first["attributes"]["worker"] == "w-slow", first
    assert (second["status"], second["chain_position"], second["attributes"]["worker"]) == ("ok", 2, "w-fast"), second
    verify_independently([first, second], keys(g.base_url))


def test_another_tenant_cannot_list_the_events(gw, client_for, uniq):
    _owner, key = _tenant(gw, "ev-a")
    _other_owner, other = _tenant(gw, "ev-b")
    c = client_for(gw, key)
    goal = f"ev-private-{uniq}"
    iid = sdk.publish(c, goal, {"secret": "mine"})
    sdk.fulfill(c, _claim(c, goal), {"ok": True})
    assert len(chain_of(gw.base_url, key, iid)) == 1

    assert chain_of(gw.base_url, other, iid) == [], "tenant B must not see tenant A's chain"
    assert list_events(gw.base_url, other, limit=1000) == [], "a fresh tenant has no events at all"
    assert list_events(gw.base_url, other, topic=goal) == []
    res = events_res(gw.base_url, other, export="jsonl", correlation_id=iid)
    assert res.status_code == 200 and res.text == "", describe(res)
    for token in (None, "not-a-key", "adm_" + "0" * 32):
        res = events_res(gw.base_url, token, correlation_id=iid)
        assert res.status_code == 401, describe(res)


def test_compact_jsonl_and_pagination(gw, client_for, uniq):
    _owner, key = _tenant(gw)
    c = client_for(gw, key)
    iid = _fail_then_fulfill(gw, c, key, f"ev-fmt-{uniq}")
    v1 = chain_of(gw.base_url, key, iid)
    assert len(v1) == 2

    compact = list_events(gw.base_url, key, correlation_id=iid, format="compact")
    assert set(compact[0]) == COMPACT_FIELDS | {"error"}, sorted(compact[0])
    assert set(compact[1]) == COMPACT_FIELDS, sorted(compact[1])
    for cm, e in zip(compact, v1):
        assert (cm["id"], cm["correlationId"], cm["intent"], cm["action"], cm["status"], cm["durationMs"],
                cm["startedAt"], cm["completedAt"]) == (
            e["event_id"], e["correlation_id"], e["intent"], e["action"], e["status"], e["duration_ms"],
            e["started_at"], e["completed_at"]), (cm, e)
        assert cm["attributes"] == e["attributes"], (cm, e)
    assert compact[0]["error"] == {"name": "WorkerFailed", "message": "transient boom"}, compact[0]

    res = events_res(gw.base_url, key, correlation_id=iid, export="jsonl")
    assert res.status_code == 200, describe(res)
    assert res.headers["content-type"].startswith("application/x-ndjson"), res.headers
    assert "x-next-after" not in res.headers, res.headers
    assert res.text.endswith("\n") and [json.loads(ln) for ln in res.text.splitlines()] == v1
    res = events_res(gw.base_url, key, correlation_id=iid, export="jsonl", format="compact")
    assert [json.loads(ln) for ln in res.text.splitlines()] == compact
    res = requests.get(gw.base_url + "/api/v1/events", params={"correlation_id": iid},
                       headers={"Authorization": f"Bearer {key}", "Accept": "application/x-ndjson"}, timeout=15)
    assert [json.loads(ln) for ln in res.text.splitlines()] == v1, describe(res)

    # JSON pages: next_after while a page is full.
    res = events_res(gw.base_url, key, correlation_id=iid, limit=1)
    page1 = res.json()
    assert page1["events"] == v1[:1] and isinstance(page1["next_after"], int), page1
    page2 = events_res(gw.base_url, key, correlation_id=iid, limit=1, after=page1["next_after"]).json()
    assert page2["events"] == v1[1:2] and isinstance(page2["next_after"], int), page2
    page3 = events_res(gw.base_url, key, correlation_id=iid, limit=1, after=page2["next_after"]).json()
    assert page3 == {"events": [], "next_after": None}, page3
    # JSONL pages: the x-next-after header.
    res = events_res(gw.base_url, key, correlation_id=iid, export="jsonl", limit=1)
    assert [json.loads(ln) for ln in res.text.splitlines()] == v1[:1]
    after = res.headers.get("x-next-after")
    assert after is not None and int(after) == page1["next_after"], res.headers
    res = events_res(gw.base_url, key, correlation_id=iid, export="jsonl", limit=1, after=after)
    assert [json.loads(ln) for ln in res.text.splitlines()] == v1[1:2]

    # Limits and bad parameters.
    assert events_res(gw.base_url, key, correlation_id=iid, export="jsonl", limit=10000).status_code == 200
    for params in ({"limit": 1001}, {"limit": 10001, "export": "jsonl"}, {"format": "xml"}, {"status": "fine"},
                   {"protocol": "smtp"}, {"source": "elsewhere"}, {"since": "yesterday"}, {"after": -1},
                   {"bogus": 1}):
        res = events_res(gw.base_url, key, **params)
        assert res.status_code == 400, f"{params}: {describe(res)}"


def test_time_window_filters(gw, client_for, uniq):
    _owner, key = _tenant(gw)
    c = client_for(gw, key)
    goal = f"ev-time-{uniq}"
    iid = sdk.publish(c, goal, {})
    sdk.fulfill(c, _claim(c, goal), {})
    [e] = chain_of(gw.base_url, key, iid)
    t = e["completed_at"]
    t_next = (datetime.fromisoformat(t.replace("Z", "+00:00")) + timedelta(milliseconds=1)).isoformat()
    # [since, until): completed_at is in it from its own millisecond on, up to the next.
    assert list_events(gw.base_url, key, correlation_id=iid, since=t, until=t_next) == [e]
    assert list_events(gw.base_url, key, correlation_id=iid, until=t) == []
    assert list_events(gw.base_url, key, correlation_id=iid, since=t_next) == []
    assert list_events(gw.base_url, key, correlation_id=iid, since="2999-01-01T00:00:00Z") == []
    assert list_events(gw.base_url, key, correlation_id=iid, until="2000-01-01T00:00:00Z") == []


def _tamper(g, event_id, mutate):
    if store_kind() == "sqlite":
        return tamper_sqlite(g.workdir / "gw.db", event_id, mutate)
    return tamper_postgres(g.pg.url, event_id, mutate)


def _restore(g, event_id, body):
    if store_kind() == "sqlite":
        restore_sqlite(g.workdir / "gw.db", event_id, body)
    else:
        restore_postgres(g.pg.url, event_id, body)


@pytest.mark.parametrize("which, mutate", [
    ("output", lambda d: d.update(intent=d["intent"] + "-forged")),
    ("chain", lambda d: d.update(prev_event_hash="sha256:" + "1" * 64)),
], ids=["edited-field", "relinked"])
def test_tampered_event_fails_events_verify(gateway_factory, client_for, uniq, which, mutate):
    g = gateway_factory(f"ev-tamper-{which}")
    _owner, key = _tenant(g)
    c = client_for(g, key)
    goal = f"ev-tamper-{uniq}"
    iid = _fail_then_fulfill(g, c, key, goal)
    other = sdk.publish(c, goal, {"bystander": True})
    sdk.fulfill(c, _claim(c, goal), {})

    ok = g.cli("events", "verify")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "ok: 3 events in 2 chains" in ok.stdout, ok.stdout

    first, second = chain_of(g.base_url, key, iid)
    original = _tamper(g, first["event_id"], mutate)
    try:
        bad = g.cli("events", "verify")
        out = bad.stdout + bad.stderr
        assert bad.returncode != 0, f"`events verify` accepted a tampered event: {out}"
        assert iid in out, f"`events verify` must name the broken chain {iid}: {out}"
        assert other not in out, out
        # What the gateway now serves does not verify independently either.
        served = chain_of(g.base_url, key, iid)
        assert served[0] != first, "the tampered body is what the API serves"
        with pytest.raises(AssertionError, match="intentproof rejects"):
            verify_independently(served, keys(g.base_url))
    finally:
        _restore(g, first["event_id"], original)
    again = g.cli("events", "verify")
    assert again.returncode == 0, again.stdout + again.stderr


def test_intentproof_sdk_worker_event_is_ingested_and_linked(gw, client_for, uniq):
    owner, key = _tenant(gw, "ev-sdk")
    c = client_for(gw, key)
    goal = f"ev-sdk-{uniq}"
    iid = sdk.publish(c, goal, {"doc": "summarize me"})
    job = _claim(c, goal, "w-intentproof")

    out = run_intentproof_worker(gw.base_url, key, iid, intent=goal, action=f"worker.{goal}",
                                 payload=job.get("payload"), tenant_id=owner)
    assert out["result"] == {"echo": {"doc": "summarize me"}, "worker": "intentproof-sdk"}, out
    ack = sdk.fulfill(c, job, out["result"])
    assert ack and ack.get("ok") is True, ack

    [ingested] = list_events(gw.base_url, key, source="ingested", correlation_id=iid)
    assert (ingested["correlation_id"], ingested["action"], ingested["intent"]) == (iid, f"worker.{goal}", goal)
    assert ingested["signature"]["key_id"] == out["key_id"], ingested
    assert ingested["sdk_version"].startswith("python@"), ingested
    # Stored as signed: the SDK's own key verifies what the gateway serves back.
    verify_independently([ingested], {out["key_id"]: out["public_key"]})

    # The gateway's own event of the same dispatch shares the correlation id.
    [own] = chain_of(gw.base_url, key, iid)
    assert own["status"] == "ok" and own["action"] == f"intent_bus.{goal}", own
    assert own["event_id"] != ingested["event_id"]
    assert list_events(gw.base_url, key, source="gateway", correlation_id=iid) == [own]
    # Posting it again: a duplicate, now linked to the gateway's chain.
    res = requests.post(gw.base_url + "/v1/events", json=ingested,
                        headers={"Authorization": f"Bearer {key}"}, timeout=15)
    assert res.status_code == 202, describe(res)
    assert res.json() == {"accepted": True, "duplicate": True, "event_id": ingested["event_id"],
                          "correlation_id": iid, "linked": True}, res.json()
    # Not another tenant's to see; not postable without a key; not anything that is not v1.
    _o, other = _tenant(gw, "ev-sdk-other")
    assert list_events(gw.base_url, other, source="ingested", correlation_id=iid) == []
    res = requests.post(gw.base_url + "/v1/events", json=ingested, timeout=15)
    assert res.status_code == 401, describe(res)
    broken = {k: v for k, v in ingested.items() if k != "signature"}
    res = requests.post(gw.base_url + "/v1/events", json=broken, headers={"Authorization": f"Bearer {key}"},
                        timeout=15)
    assert res.status_code == 400, describe(res)
