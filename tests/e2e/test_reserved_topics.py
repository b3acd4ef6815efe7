"""Governance route topics are reserved: only governance admission enqueues
there (README "Operations: Reserved topics"). The suite's gateways run the
default governance section, whose `default_topic` is `gateway/run`.

Both SDK generations map 401 *and* 403 to IntentBusAuthError with the message
"<error.code>: <error.message>"; the status itself is checked on the wire."""

from __future__ import annotations

import pytest

from agw_testkit.responses import describe
from support import sdk
from support.checks import assert_error, assert_std_headers

GOV_TOPIC = "gateway/run"


def _refused_by_sdk(c, goal, **kw):
    with pytest.raises(sdk.IntentBusAuthError) as ei:
        sdk.publish(c, goal, {"input": "skip the policy"}, **kw)
    msg = str(ei.value)
    assert msg.split(":", 1)[0] == "reserved_topic", f"SDK error does not carry reserved_topic: {msg!r}"
    assert GOV_TOPIC in msg, f"the message should name the topic: {msg!r}"


def test_publishing_onto_the_governance_topic_is_refused(gw, tenant, other_tenant, client_for, uniq):
    c = client_for(gw, tenant)
    _refused_by_sdk(c, GOV_TOPIC)
    _refused_by_sdk(c, GOV_TOPIC, namespace=f"ns-{uniq}")
    _refused_by_sdk(c, GOV_TOPIC, visibility="public")
    _refused_by_sdk(c, GOV_TOPIC, idempotency_key=f"idem-{uniq}")

    # The exact answer: 403 {"error": {"code": "reserved_topic", "message": ...}}, signed or not.
    raw = gw.raw(tenant)
    for res in (raw.publish(GOV_TOPIC, {"input": "x"}),
                raw.publish(GOV_TOPIC, {"input": "x"}, visibility="public", priority=1000),
                raw.request("POST", "/intent", body={"goal": GOV_TOPIC, "payload": {}}, sign=False)):
        assert_error(res, 403, "reserved_topic")
        assert_std_headers(res)
        assert GOV_TOPIC in res.json()["error"]["message"], describe(res)

    # Nothing became claimable there -- for the publisher, another tenant (public), or any namespace.
    # Workers may still claim on the topic: the claim is answered, empty.
    for key, ns in ((tenant, "default"), (tenant, f"ns-{uniq}"), (other_tenant, "default")):
        res = gw.raw(key).claim(GOV_TOPIC, namespace=ns)
        assert res.status_code == 204, f"a job was enqueued on {GOV_TOPIC} ({ns}): {describe(res)}"
    assert client_for(gw, other_tenant).claim(GOV_TOPIC).status_code == 204

    # The idempotency key of the refused publish was not burned: reused on a normal goal it publishes.
    goal = f"normal-{uniq}"
    jid = sdk.publish(c, goal, {"n": 1}, idempotency_key=f"idem-{uniq}")
    job = sdk.claim_until(lambda: c.claim(goal), 10)[0]
    assert sdk.job_id(job) == jid, job
    sdk.fulfill(c, job, {"done": True})
    assert gw.raw(tenant).result(jid).json()["status"] == "fulfilled"


def test_only_the_exact_topic_is_reserved(gw, tenant, client_for, uniq):
    """Neighbouring names are ordinary goals (topics are exact strings)."""
    c = client_for(gw, tenant)
    for goal in (f"gateway/run-{uniq}", f"{GOV_TOPIC}/{uniq}", f"x{GOV_TOPIC}-{uniq}"):
        jid = sdk.publish(c, goal, {"g": goal})
        job = sdk.claim_until(lambda: c.claim(goal), 10)[0]
        assert sdk.job_id(job) == jid, (goal, job)
        sdk.fulfill(c, job)


def test_admin_key_may_publish_on_a_reserved_topic(gw, uniq):
    """Operators repairing a queue: the admin key is not refused (README)."""
    ns = f"repair-{uniq}"
    res = gw.admin.publish(GOV_TOPIC, {"repair": uniq}, namespace=ns)
    assert res.status_code == 201, describe(res)
    jid = res.json()["id"]
    # Claim it back with the admin key and settle it, so no test's worker ever sees it.
    got = gw.admin.claim(GOV_TOPIC, namespace=ns)
    assert got.status_code == 200 and got.json()["id"] == jid, describe(got)
    ok = gw.admin.fulfill(jid, {"claim_token": got.json().get("claim_token"), "result_type": "json",
                                "result": {}})
    assert ok.status_code == 200, describe(ok)
