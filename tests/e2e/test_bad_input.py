"""Bad input: every class gets a clear 4xx JSON error with error.code, and creates nothing.

Runs on its own gateway (default limits: 8 KiB body, 5 KiB payload, depth 10) on
which no public intent is ever published, so "a claim by that tenant returns
204" proves the bad request created nothing.
"""

from __future__ import annotations

import http.client
import json
import uuid

import pytest

from agw_testkit.responses import describe, error_code
from support.checks import assert_client_error, assert_error, assert_std_headers

VALIDATION_CODES = {"invalid_json", "invalid_request"}


@pytest.fixture(scope="module")
def bgw(module_gateway_factory):
    return module_gateway_factory("bad-input")


@pytest.fixture
def key(bgw):
    return bgw.new_tenant("bad")


def nested(depth: int, leaf=1):
    obj = leaf
    for _ in range(depth):
        obj = {"d": obj}
    return obj


def nested_list(depth: int):
    obj = 1
    for _ in range(depth):
        obj = [obj]
    return obj


def assert_nothing_created(g, key, goal=None):
    raw = g.raw(key)
    res = raw.claim(None)  # any goal, tenant's default namespace
    assert res.status_code == 204, f"something was created: {describe(res)}"
    if goal:
        res = raw.claim(goal)
        assert res.status_code == 204, f"something was created: {describe(res)}"


GOAL = "bad/goal"

BAD_PUBLISH = [
    ("malformed_json", b'{"goal": "bad/goal", "payload": {', None),
    ("trailing_garbage", b'{"goal":"bad/goal","payload":{}} trailing', None),
    ("not_utf8", b'{"goal":"bad/goal\xff\xfe","payload":{}}', None),
    ("json_array", b'[{"goal":"bad/goal","payload":{}}]', None),
    ("json_string", b'"bad/goal"', None),
    # a JSON array shaped like the field list must not be read as the object (serde seq-as-struct)
    ("json_array_field_order", b'["bad/goal",{},null,null,null,null,null,null,null,null]', None),
    ("empty_body", b"", None),
    ("missing_goal", {"payload": {"a": 1}}, None),
    ("empty_goal", {"goal": "", "payload": {}}, None),
    ("goal_not_string", {"goal": 123, "payload": {}}, None),
    ("goal_null", {"goal": None, "payload": {}}, None),
    ("priority_string", {"goal": GOAL, "payload": {}, "priority": "high"}, None),
    ("priority_too_high", {"goal": GOAL, "payload": {}, "priority": 1001}, None),
    ("priority_negative", {"goal": GOAL, "payload": {}, "priority": -1}, None),
    ("max_attempts_zero", {"goal": GOAL, "payload": {}, "max_attempts": 0}, None),
    ("max_attempts_negative", {"goal": GOAL, "payload": {}, "max_attempts": -3}, None),
    ("delay_negative", {"goal": GOAL, "payload": {}, "delay": -1}, None),
    ("delay_string", {"goal": GOAL, "payload": {}, "delay": "later"}, None),
    ("backoff_zero", {"goal": GOAL, "payload": {}, "backoff_base": 0}, None),
    ("visibility_unknown", {"goal": GOAL, "payload": {}, "visibility": "secret"}, None),
    ("namespace_not_string", {"goal": GOAL, "payload": {}, "namespace": 5}, None),
    ("target_worker_too_long", {"goal": GOAL, "payload": {}, "target_worker": "w" * 65}, None),
    ("capability_too_long", {"goal": GOAL, "payload": {}, "required_capability": "c" * 65}, None),
]


@pytest.mark.parametrize("body", [b for _, b, _ in BAD_PUBLISH], ids=[n for n, _, _ in BAD_PUBLISH])
def test_bad_publish_body(bgw, key, body):
    res = bgw.raw(key).request("POST", "/intent", body=body)
    assert_error(res, 400)
    assert error_code(res) in VALIDATION_CODES, describe(res)
    assert_std_headers(res)
    assert_nothing_created(bgw, key, GOAL)


def test_malformed_json_code(bgw, key):
    res = bgw.raw(key).request("POST", "/intent", body=b'{"goal": ')
    assert_error(res, 400, "invalid_json")
    assert_nothing_created(bgw, key)


def test_boundaries_accepted(bgw, key):
    """Values right at the documented limits are accepted (guards against off-by-one)."""
    raw = bgw.raw(key)
    res = raw.publish("edge", {}, priority=1000, max_attempts=1, delay=0, target_worker="w" * 64,
                      required_capability="c" * 64, backoff_base=0.5)
    assert res.status_code == 201, describe(res)
    res = raw.publish("edge0", {}, priority=0)
    assert res.status_code == 201, describe(res)


def test_oversize_body_413(bgw, key):
    res = bgw.raw(key).publish(GOAL, {"blob": "x" * 9000})
    assert_client_error(res, 413)
    assert_nothing_created(bgw, key, GOAL)


def test_oversize_body_unsigned_413(bgw, key):
    res = bgw.raw(key).request("POST", "/intent", body={"goal": GOAL, "payload": {"blob": "y" * 20000}}, sign=False)
    assert_client_error(res, 413)
    assert_nothing_created(bgw, key, GOAL)


def test_oversize_payload_413(bgw, key):
    body = {"goal": GOAL, "payload": {"blob": "x" * 5300}}
    assert len(json.dumps(body)) < 8192
    res = bgw.raw(key).request("POST", "/intent", body=body)
    assert_error(res, 413, "payload_too_large")
    assert_nothing_created(bgw, key, GOAL)


def test_payload_under_limit_accepted(bgw, key):
    res = bgw.raw(key).publish("fits", {"blob": "x" * 4800})
    assert res.status_code == 201, describe(res)


@pytest.mark.parametrize("payload", [nested(11), nested_list(11), {"ok": nested(12, leaf=[])}],
                         ids=["dict-11", "list-11", "mixed-13"])
def test_payload_too_deep(bgw, key, payload):
    res = bgw.raw(key).publish(GOAL, payload)
    assert_error(res, 400, "payload_too_deep")
    assert_nothing_created(bgw, key, GOAL)


def test_payload_depth_10_accepted(bgw, key):
    """10 nested objects ({"d": {"d": ... 1}}) is 'depth 10', inside the limit."""
    res = bgw.raw(key).publish("deep10", nested(10))
    assert res.status_code == 201, describe(res)


@pytest.mark.parametrize("route", ["status", "result"])
def test_unknown_id_get(bgw, key, route):
    assert_error(bgw.raw(key).request("GET", f"/{route}/{uuid.uuid4()}"), 404)
    res = bgw.raw(key).request("GET", f"/{route}/not-a-uuid")
    assert_client_error(res)
    assert res.status_code in (400, 404), describe(res)


@pytest.mark.parametrize("route,body", [
    ("fulfill", {"claim_token": "t", "result_type": "json", "result": {}}),
    ("fulfill", None),
    ("fail", {"claim_token": "t", "error": "x"}),
    ("fail", {"error": "x"}),
    ("extend_claim", {"claim_token": "t", "seconds": 30}),
])
def test_unknown_id_post(bgw, key, route, body):
    assert_error(bgw.raw(key).request("POST", f"/{route}/{uuid.uuid4()}", body=body), 404)


@pytest.mark.parametrize("intent_id", ["..%2F..%2Fetc%2Fpasswd", "x" * 400, "1%27%3B%20DROP%20TABLE%20intents%3B--",
                                       "%00", "%20"])
def test_weird_ids_are_client_errors(bgw, key, intent_id):
    for method, route in [("GET", "status"), ("GET", "result"), ("POST", "fulfill")]:
        conn = http.client.HTTPConnection("127.0.0.1", bgw.port, timeout=10)
        try:
            conn.request(method, f"/{route}/{intent_id}", headers={"X-API-KEY": key})
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        assert 400 <= resp.status < 500, f"{method} /{route}/{intent_id} -> {resp.status} {body[:200]!r}"


def test_other_tenants_id_is_404(bgw, key):
    owner_key = bgw.new_tenant("owner")
    owner = bgw.raw(owner_key)
    iid = owner.publish("owned", {"x": 1}).json()["id"]
    job = owner.claim("owned").json()
    raw = bgw.raw(key)
    assert_error(raw.status(iid), 404)
    assert_error(raw.result(iid), 404)
    assert_error(raw.fulfill(iid, {"claim_token": job["claim_token"], "result_type": "json", "result": 1}), 404)
    assert_error(raw.fail(iid, {"claim_token": job["claim_token"], "error": "x"}), 404)
    st = owner.status(iid).json()
    assert st["status"] == "claimed", st
    assert_nothing_created(bgw, key)


@pytest.mark.parametrize("path", ["/status/%FF%FE", "/result/%FF%FE", "/get/%FF%FE", "/fulfill/%C3%28"])
def test_non_utf8_path(bgw, key, path):
    method = "POST" if path.startswith("/fulfill") else "GET"
    conn = http.client.HTTPConnection("127.0.0.1", bgw.port, timeout=10)
    try:
        conn.request(method, path, headers={"X-API-KEY": key})
        resp = conn.getresponse()
        body = resp.read()
        version = resp.getheader("X-Intent-Version")
    finally:
        conn.close()
    assert 400 <= resp.status < 500, f"{method} {path} -> {resp.status} {body[:200]!r}"
    try:
        code = json.loads(body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        code = None
    assert isinstance(code, str), f"{method} {path} -> {resp.status} without a JSON error.code: {body[:200]!r}"
    assert version == "7.61", f"X-Intent-Version={version!r}"
    assert_nothing_created(bgw, key)


class TestFulfillBodies:
    """Bad fulfill / fail / extend bodies are rejected and leave the lease untouched."""

    @pytest.fixture
    def claimed(self, bgw, key):
        raw = bgw.raw(key)
        iid = raw.publish("fb", {"x": 1}).json()["id"]
        job = raw.claim("fb").json()
        assert job["id"] == iid
        yield iid, job["claim_token"]
        st = raw.status(iid).json()
        assert st["status"] == "claimed", f"a rejected request changed the intent: {st}"
        ok = raw.fulfill(iid, {"claim_token": job["claim_token"], "result_type": "json", "result": {"fine": 1}})
        assert ok.status_code == 200, describe(ok)

    @pytest.mark.parametrize("body", [
        b'{"claim_token": ',
        {"result_type": "xml", "result": "<a/>", "__token__": True},
        {"result_type": "text", "result": {"not": "a string"}, "__token__": True},
        {"result_type": 7, "result": 1, "__token__": True},
        {"result": {"blob": "z" * 9000}, "result_type": "json", "__token__": True},
    ], ids=["malformed", "type_xml", "text_not_string", "type_not_string", "oversize"])
    def test_bad_fulfill(self, bgw, key, claimed, body):
        iid, token = claimed
        if isinstance(body, dict) and body.pop("__token__", False):
            body = dict(body, claim_token=token)
        res = bgw.raw(key).fulfill(iid, body)
        assert_client_error(res)
        assert res.status_code in (400, 413), describe(res)

    @pytest.mark.parametrize("body", [b"{nope", {"seconds": 0}, {"seconds": -5}, {"seconds": "long"}])
    def test_bad_extend(self, bgw, key, claimed, body):
        iid, token = claimed
        if isinstance(body, dict):
            body = dict(body, claim_token=token)
        res = bgw.raw(key).request("POST", f"/extend_claim/{iid}", body=body)
        assert_error(res, 400)

    def test_bad_fail_body(self, bgw, key, claimed):
        iid, _ = claimed
        res = bgw.raw(key).fail(iid, b"{nope")
        assert_error(res, 400)


@pytest.mark.parametrize("value", ["v" * 9000])
def test_oversize_kv_value(bgw, key, value):
    res = bgw.raw(key).request("POST", "/set/big", body={"value": value, "ttl": 60})
    assert_client_error(res, 413)
    assert_error(bgw.raw(key).request("GET", "/get/big"), 404)


def test_server_survived(bgw):
    assert bgw.alive()
    res = bgw.raw(bgw.admin_key).request("GET", "/")
    assert res.status_code == 200
