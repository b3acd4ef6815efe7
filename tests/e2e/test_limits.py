"""Configurable limits: per-key rate limit, open-intent cap, body / payload / depth limits."""

from __future__ import annotations

import pytest

from agw_testkit.responses import describe
from support import sdk
from support.checks import assert_client_error, assert_error, assert_retry_after, assert_std_headers


def test_rate_limit(gateway_factory, client_for, uniq):
    g = gateway_factory("rate5", AGW_LIMITS_RATE_LIMIT_PER_MINUTE=5)
    ka, kb = g.new_tenant("rl-a"), g.new_tenant("rl-b")  # admin requests: not counted
    a = client_for(g, ka)
    for i in range(5):
        assert a.claim(f"rl-{uniq}").status_code == 204, f"request {i + 1} of 5 was limited"
    with pytest.raises(sdk.IntentBusRateLimitError) as ei:
        a.claim(f"rl-{uniq}")  # 6th (claim is never retried by either SDK)
    assert "rate_limited" in str(ei.value)
    res = g.raw(ka).claim(f"rl-{uniq}")
    assert_error(res, 429, "rate_limited")
    assert assert_retry_after(res) >= 1
    assert_std_headers(res)
    # a limited key creates nothing
    res = g.raw(ka).publish(f"rl-{uniq}", {})
    assert_error(res, 429, "rate_limited")

    # another tenant has its own budget
    assert client_for(g, kb).claim(f"rl-{uniq}").status_code == 204
    # the admin key is never limited
    for i in range(12):
        res = g.admin.request("POST", "/admin/generate_key", body={"owner": f"rl-admin-{uniq}-{i}"})
        assert res.status_code == 201, describe(res)
    res = g.admin.request("GET", f"/status/{uniq}")
    assert res.status_code == 404, describe(res)


@pytest.fixture(scope="module")
def small(module_gateway_factory):
    return module_gateway_factory(
        "small-limits",
        AGW_LIMITS_MAX_OPEN_JOBS_PER_TENANT=3,
        AGW_LIMITS_MAX_BODY_BYTES=1024,
        AGW_LIMITS_MAX_PAYLOAD_BYTES=256,
        AGW_LIMITS_MAX_PAYLOAD_DEPTH=3,
    )


def test_open_intent_cap(small, client_for, uniq):
    key = small.new_tenant("cap")
    raw = small.raw(key)
    ids = []
    for i in range(3):
        res = raw.publish(f"cap-{uniq}", {"i": i})
        assert res.status_code == 201, f"publish {i + 1} of 3: {describe(res)}"
        ids.append(res.json()["id"])
    res = raw.publish(f"cap-{uniq}", {"i": 3})
    assert res.status_code == 429, describe(res)
    assert_client_error(res, 429)
    assert res.json()["error"]["code"] in ("too_many_open_intents", "rate_limited"), describe(res)
    assert_retry_after(res)
    if not sdk.IS_V2:  # 1.3.2 does not retry 429 on publish; 2.1.2 would sleep Retry-After twice
        with pytest.raises(sdk.IntentBusRateLimitError):
            sdk.publish(client_for(small, key), f"cap-{uniq}", {"i": 4})

    # the cap is per tenant
    other = small.raw(small.new_tenant("cap-other"))
    assert other.publish(f"cap-{uniq}", {}).status_code == 201

    # a claimed intent is still unfinished; a fulfilled one frees a slot
    job = raw.claim(f"cap-{uniq}").json()
    assert raw.publish(f"cap-{uniq}", {"i": 5}).status_code == 429
    ok = raw.fulfill(job["id"], {"claim_token": job["claim_token"], "result_type": "json", "result": {}})
    assert ok.status_code == 200, describe(ok)
    res = raw.publish(f"cap-{uniq}", {"i": 6})
    assert res.status_code == 201, describe(res)


def test_small_body_limit(small, uniq):
    raw = small.raw(small.new_tenant("body"))
    # small payload, but the whole body is over the configured 1024 bytes
    res = raw.publish(f"b-{uniq}", {"n": 1}, namespace="ns-" + "n" * 1100)
    assert_client_error(res, 413)
    res = raw.request("POST", "/set/big", body={"value": "v" * 1100, "ttl": 60})
    assert_client_error(res, 413)
    assert raw.claim(f"b-{uniq}").status_code == 204


def test_small_payload_limit(small, uniq):
    raw = small.raw(small.new_tenant("payload"))
    res = raw.publish(f"p-{uniq}", {"blob": "x" * 300})
    assert_error(res, 413, "payload_too_large")
    assert raw.publish(f"p-{uniq}", {"blob": "x" * 100}).status_code == 201


def test_small_depth_limit(small, uniq):
    raw = small.raw(small.new_tenant("depth"))
    res = raw.publish(f"d-{uniq}", {"a": {"b": {"c": {"d": 1}}}})
    assert_error(res, 400, "payload_too_deep")
    assert raw.publish(f"d-{uniq}", {"a": {"b": 1}}).status_code == 201
