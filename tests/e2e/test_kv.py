"""Per-tenant key/value store: /set/<key>, /get/<key>."""

from __future__ import annotations

import json
import time

import pytest

from agw_testkit.responses import describe
from support import sdk
from support.checks import assert_error, assert_std_headers


@pytest.mark.parametrize("value", ["plain text ✓", 12345, 3.5, True, "false", "[not json"])
def test_scalar_round_trip(gw, tenant, client_for, uniq, value):
    c = client_for(gw, tenant)
    key = f"k-{uniq}"
    ack = c.set(key, value, ttl=60)
    assert ack and ack.get("ok") is True, ack
    assert c.get(key) == value
    raw = gw.raw(tenant).request("GET", f"/get/{key}")
    assert raw.status_code == 200, describe(raw)
    assert_std_headers(raw)
    assert raw.json()["value"] == value


def test_dict_and_list_values(gw, tenant, client_for, uniq):
    c = client_for(gw, tenant)
    doc = {"name": "ünï", "tags": ["a", "b"], "n": {"deep": [1, 2, 3]}}
    c.set(f"doc-{uniq}", doc, ttl=60)
    c.set(f"list-{uniq}", [1, "two", {"three": 3}], ttl=60)
    assert c.get(f"doc-{uniq}") == doc
    assert c.get(f"list-{uniq}") == [1, "two", {"three": 3}]
    stored = gw.raw(tenant).request("GET", f"/get/doc-{uniq}").json()["value"]
    if sdk.IS_V2:
        # 2.1.2 pre-encodes containers to a JSON string; the gateway must return it unchanged
        assert stored == json.dumps(doc, separators=(",", ":")), stored
    else:
        # 1.3.2 sends the object itself; stored as given
        assert stored == doc


def test_overwrite(gw, tenant, client_for, uniq):
    c = client_for(gw, tenant)
    c.set(f"ow-{uniq}", "one", ttl=60)
    c.set(f"ow-{uniq}", "two", ttl=60)
    assert c.get(f"ow-{uniq}") == "two"


def test_missing_key_is_404(gw, tenant, client_for, uniq):
    c = client_for(gw, tenant)
    res = gw.raw(tenant).request("GET", f"/get/missing-{uniq}")
    assert_error(res, 404, "not_found")
    with pytest.raises(sdk.IntentBusError) as ei:
        c.get(f"missing-{uniq}")
    assert not isinstance(ei.value, sdk.IntentBusAuthError)


@pytest.mark.parametrize("ttl", [0, -5, 86401, "sixty"])
def test_ttl_bounds_rejected(gw, tenant, client_for, uniq, ttl):
    raw = gw.raw(tenant)
    key = f"ttl-{uniq}"
    res = raw.request("POST", f"/set/{key}", body={"value": "v", "ttl": ttl})
    assert_error(res, 400)
    assert_error(raw.request("GET", f"/get/{key}"), 404, "not_found")


def test_ttl_bounds_through_sdk(gw, tenant, client_for, uniq):
    c = client_for(gw, tenant)
    with pytest.raises(sdk.IntentBusError):
        c.set(f"big-{uniq}", "v", ttl=86401)  # sent by both SDKs, refused by the gateway
    if not sdk.IS_V2:
        with pytest.raises(sdk.IntentBusError):
            c.set(f"zero-{uniq}", "v", ttl=0)  # 1.3.2 sends it; 2.1.2 refuses locally
    assert c.set(f"min-{uniq}", "v", ttl=1)["ok"] is True
    assert c.set(f"max-{uniq}", "v", ttl=86400)["ok"] is True
    assert c.get(f"max-{uniq}") == "v"


@pytest.mark.parametrize("body", [{"ttl": 60}, {}, b"not json", b"[1,2]"])
def test_set_bad_body(gw, tenant, uniq, body):
    raw = gw.raw(tenant)
    res = raw.request("POST", f"/set/bad-{uniq}", body=body)
    assert_error(res, 400)
    assert_error(raw.request("GET", f"/get/bad-{uniq}"), 404)


def test_ttl_expiry(gw, tenant, client_for, uniq):
    c = client_for(gw, tenant)
    key = f"short-{uniq}"
    c.set(key, "soon gone", ttl=1)
    t_set = time.monotonic()
    deadline = t_set + 6
    while True:
        res = gw.raw(tenant).request("GET", f"/get/{key}")
        if res.status_code == 404:
            break
        assert res.status_code == 200 and res.json()["value"] == "soon gone", describe(res)
        assert time.monotonic() < deadline, "ttl=1 key still readable after 6 s"
        time.sleep(0.2)
    assert time.monotonic() - t_set >= 0.5, "ttl=1 key vanished almost immediately"


def test_kv_isolated_between_tenants(gw, tenant, other_tenant, client_for, uniq):
    a, b = client_for(gw, tenant), client_for(gw, other_tenant)
    key = f"mine-{uniq}"
    a.set(key, "A's value", ttl=60)
    assert_error(gw.raw(other_tenant).request("GET", f"/get/{key}"), 404, "not_found")
    with pytest.raises(sdk.IntentBusError):
        b.get(key)
    # B writing the same key name does not touch A's value
    b.set(key, "B's value", ttl=60)
    assert a.get(key) == "A's value"
    assert b.get(key) == "B's value"


def test_kv_shared_by_keys_of_one_owner(gw, client_for, uniq):
    owner = f"kvorg-{uniq}"
    k1, k2 = gw.generate_key(owner), gw.generate_key(owner)
    client_for(gw, k1).set(f"team-{uniq}", "shared", ttl=60)
    assert client_for(gw, k2).get(f"team-{uniq}") == "shared"


@pytest.mark.parametrize("key", ["my key", "ünïcode", "a:b@c", "semi;colon"])
def test_keys_needing_percent_encoding(gw, tenant, client_for, key):
    """The SDKs sign the raw f"/set/{key}" while requests percent-encodes it on the wire;
    the gateway must verify such requests (the reference server did, over the decoded path)."""
    a, b = client_for(gw, tenant), client_for(gw, gw.new_tenant("kv-enc"))
    assert a.set(key, "enc ok", ttl=60)["ok"] is True
    assert a.get(key) == "enc ok"
    with pytest.raises(sdk.IntentBusError):
        b.get(key)
