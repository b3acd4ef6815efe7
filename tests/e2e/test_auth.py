"""Authentication, strict-mode signatures, replay protection, roles, standard headers."""

from __future__ import annotations

import secrets
import time

import pytest
import requests

from agw_testkit.raw import RawClient, canonical_path, signature
from agw_testkit.responses import describe
from support import sdk
from support.checks import assert_client_error, assert_error, assert_std_headers


def test_hand_signer_matches_installed_sdk():
    """Our hand signer (used by the replay/stale tests) computes what the SDK computes."""
    key, ts, nonce = "agw_" + secrets.token_hex(8), "1700000000", "n" * 32
    params = [("namespace", "a b"), ("goal", "acme/echo"), ("publisher", "k~1.2_3-x")]
    canon = canonical_path("/claim", params)
    assert canon == "/claim?goal=acme%2Fecho&namespace=a%20b&publisher=k~1.2_3-x"
    body = b'{"goal":"g","payload":{"t":"\xc3\xa9"}}'
    ours = signature(key, "post", canon, ts, nonce, body)
    if sdk.IS_V2:
        from intent_bus.client.auth import generate_signature
        from intent_bus.client.transport import IntentTransport

        theirs = generate_signature(key, "POST", canon, ts, nonce, body)
        t = IntentTransport("http://127.0.0.1:9", key, "ua", 1.0)
        assert t._build_path("/claim", params) == canon
    else:
        c = sdk.IntentClient(base_url="http://127.0.0.1:9", api_key=key)
        theirs = c._generate_signature("POST", canon, ts, nonce, body)
        assert c._build_path("/claim", dict(params)) == canon
    assert ours == theirs


def test_replayed_request_is_rejected(gw, tenant, client_for, uniq):
    goal = f"replay-{uniq}"
    req = gw.raw(tenant).prepare("POST", "/intent", body={"goal": goal, "payload": {"n": 1}})
    first = req.send()
    assert first.status_code == 201, describe(first)
    second = req.send()
    assert_error(second, 403, "invalid_signature")
    assert_std_headers(second)
    # the replay created nothing
    c = client_for(gw, tenant)
    assert c.claim(goal).status_code == 200
    assert c.claim(goal).status_code == 204


def test_replayed_claim_is_rejected(gw, tenant, uniq):
    req = gw.raw(tenant).prepare("POST", "/claim", params={"namespace": "default", "goal": f"r-{uniq}"})
    assert req.send().status_code == 204
    assert_error(req.send(), 403, "invalid_signature")


def test_same_nonce_other_key_is_independent(gw, tenant, other_tenant, uniq):
    nonce = secrets.token_hex(16)
    r1 = gw.raw(tenant).request("POST", "/claim", params={"goal": f"n-{uniq}"}, nonce=nonce)
    r2 = gw.raw(other_tenant).request("POST", "/claim", params={"goal": f"n-{uniq}"}, nonce=nonce)
    assert r1.status_code == 204 and r2.status_code == 204, (describe(r1), describe(r2))


def test_bad_signature(gw, tenant, uniq):
    raw = gw.raw(tenant)
    good = raw.prepare("POST", "/intent", body={"goal": f"bad-{uniq}", "payload": {}})
    flipped = good.headers["X-Signature"]
    flipped = ("0" if flipped[0] != "0" else "1") + flipped[1:]
    res = raw.request("POST", "/intent", body={"goal": f"bad-{uniq}", "payload": {}}, sig=flipped)
    assert_error(res, 403, "invalid_signature")
    # signature over a different body than the one sent
    tampered = raw.prepare("POST", "/intent", body={"goal": f"bad-{uniq}", "payload": {"a": 1}})
    tampered.body = b'{"goal":"bad-%s","payload":{"a":2}}' % uniq.encode()
    assert_error(tampered.send(), 403, "invalid_signature")
    # signed with another secret
    other = RawClient(gw.base_url, tenant)
    res = other.request("POST", "/claim", params={"goal": f"bad-{uniq}"},
                        sig=signature("wrong-secret", "POST", f"/claim?goal=bad-{uniq}", str(int(time.time())),
                                      "abc", b""), nonce="abc")
    assert_error(res, 403, "invalid_signature")
    # signed over a different query than the one sent
    req = raw.prepare("POST", "/claim", params={"goal": f"bad-{uniq}"})
    req.url = req.url.replace(f"goal=bad-{uniq}", f"goal=other-{uniq}")
    assert_error(req.send(), 403, "invalid_signature")
    # nothing was published by any of these
    assert raw.claim(f"bad-{uniq}").status_code == 204


@pytest.mark.parametrize("skew", [-400, 400, -100000])
def test_timestamp_outside_window(gw, tenant, uniq, skew):
    raw = gw.raw(tenant)
    res = raw.request("POST", "/intent", body={"goal": f"stale-{uniq}", "payload": {}},
                      ts=int(time.time()) + skew)
    assert_error(res, 403, "invalid_signature")
    assert raw.claim(f"stale-{uniq}").status_code == 204


@pytest.mark.parametrize("ts", ["yesterday", "1.5e9"])
def test_timestamp_not_an_integer(gw, tenant, uniq, ts):
    raw = gw.raw(tenant)
    res = raw.request("POST", "/intent", body={"goal": f"ts-{uniq}", "payload": {}}, ts=ts)
    assert_client_error(res)
    assert res.status_code in (400, 403), describe(res)
    assert raw.claim(f"ts-{uniq}").status_code == 204


def test_timestamp_inside_window_accepted(gw, tenant, uniq):
    res = gw.raw(tenant).request("POST", "/claim", params={"goal": f"ok-{uniq}"}, ts=int(time.time()) - 200)
    assert res.status_code == 204, describe(res)


def test_unsigned_standard_auth_accepted(gw, tenant, uniq):
    raw = gw.raw(tenant)
    res = raw.request("POST", "/intent", body={"goal": f"std-{uniq}", "payload": {"u": 1}}, sign=False)
    assert res.status_code == 201, describe(res)
    got = raw.claim(f"std-{uniq}")
    assert got.status_code == 200 and got.json()["id"] == res.json()["id"]


def test_unknown_key_is_401(gw, client_for, uniq):
    bogus = "agw_" + secrets.token_hex(20)
    res = RawClient(gw.base_url, bogus).request("POST", "/intent", body={"goal": f"x-{uniq}", "payload": {}})
    assert_error(res, 401, "unauthorized")
    assert_std_headers(res)
    res = RawClient(gw.base_url, bogus).request("GET", "/get/x", sign=False)
    assert_error(res, 401, "unauthorized")
    with pytest.raises(sdk.IntentBusAuthError):
        client_for(gw, bogus).claim(f"x-{uniq}")


def test_missing_key_is_401(gw, uniq):
    for method, path in [("POST", "/intent"), ("POST", f"/claim?goal=x-{uniq}"), ("GET", f"/status/{uniq}"),
                         ("GET", f"/get/{uniq}"), ("POST", "/admin/generate_key")]:
        res = requests.request(method, gw.base_url + path, json={"goal": "x", "payload": {}}, timeout=10)
        assert_error(res, 401, "unauthorized")
    # signature headers without a key are still unauthorized
    res = requests.post(gw.base_url + "/claim", headers={"X-Timestamp": str(int(time.time())),
                                                          "X-Nonce": "n", "X-Signature": "00" * 32}, timeout=10)
    assert_error(res, 401, "unauthorized")


def test_admin_role(gw, tenant, uniq):
    res = gw.raw(tenant).request("POST", "/admin/generate_key", body={"owner": f"sneaky-{uniq}"})
    assert_error(res, 403, "forbidden")
    # signed admin request works too
    res = gw.admin.request("POST", "/admin/generate_key", body={"owner": f"signed-{uniq}"})
    assert res.status_code == 201, describe(res)
    assert res.json()["owner"] == f"signed-{uniq}" and res.json()["api_key"].startswith("agw_")
    # a bad admin signature is rejected like any other
    res = gw.admin.request("POST", "/admin/generate_key", body={"owner": f"x-{uniq}"}, sig="ab" * 32)
    assert_error(res, 403, "invalid_signature")
    # a fresh key works with the SDK right away
    c = sdk.client(gw, gw.generate_key(f"fresh-{uniq}"))
    assert c.claim(f"fresh-{uniq}").status_code == 204
    c.close()


@pytest.mark.parametrize("owner", ["", None, 42])
def test_generate_key_bad_owner(gw, owner):
    res = gw.admin.request("POST", "/admin/generate_key", body={"owner": owner})
    assert_error(res, 400)


def test_standard_headers_everywhere(gw, tenant, uniq):
    raw = gw.raw(tenant)
    responses = [
        raw.publish(f"hdr-{uniq}", {}),                    # 201
        raw.claim(f"none-{uniq}"),                          # 204
        raw.request("GET", f"/status/{uniq}"),             # 404
        raw.request("POST", "/intent", body=b"{nope"),     # 400
        RawClient(gw.base_url, None).request("GET", "/get/x"),  # 401
        raw.publish(f"hdr-{uniq}", {"blob": "b" * 9000}),  # 413 (body limit)
        raw.request("POST", "/intent", body={"goal": "g"}, sig="00"),  # 403
    ]
    job = raw.claim(f"hdr-{uniq}")                          # 200
    responses.append(job)
    responses.append(raw.fulfill(job.json()["id"], {"claim_token": job.json()["claim_token"],
                                                    "result_type": "json", "result": {}}))
    for res in responses:
        assert_std_headers(res)


def test_banner_is_public(gw):
    res = requests.get(gw.base_url + "/", timeout=10)
    assert res.status_code == 200, describe(res)
    assert res.text.strip()
    assert_std_headers(res)


def test_goal_with_reserved_characters_signs_correctly(gw, tenant, client_for, uniq):
    """The SDK percent-encodes everything but unreserved chars; the gateway must canonicalise
    the query the same way or every such claim fails with invalid_signature."""
    c = client_for(gw, tenant)
    goal = f"acme/ops:re-index+fast é&more={uniq}"
    ns = f"team a/b?{uniq}"
    iid = sdk.publish(c, goal, {"g": goal}, namespace=ns)
    job = c.claim(goal, namespace=ns, worker_id="w/1 x")
    assert job.status_code == 200 and sdk.job_id(job) == iid and job.get("goal") == goal
    sdk.fulfill(c, job, {"ok": True})


def test_signature_is_over_canonical_query(gw, tenant, uniq):
    """The signed string uses the canonical query (sorted, re-encoded), not the bytes on the
    wire: an equivalent but differently ordered / encoded query must verify."""
    raw = gw.raw(tenant)
    goal = f"acme/x~{uniq}"
    iid = raw.publish(goal, {"c": 1}).json()["id"]
    req = raw.prepare("POST", "/claim", params={"namespace": "default", "goal": goal})
    assert req.url.endswith(f"/claim?goal=acme%2Fx~{uniq}&namespace=default")
    req.url = f"{gw.base_url}/claim?namespace=default&goal=acme/x%7E{uniq}"
    res = req.send()
    assert res.status_code == 200 and res.json()["id"] == iid, describe(res)
