"""Operator-registered capability schemas (`PUT /admin/capabilities/schema`,
admin key): the task API refuses mismatching input at submit time (400
schema_mismatch, nothing enqueued), and lease frames carry the schemas, which
the SDK applies although its handler was registered without any."""

from __future__ import annotations

import json

import requests

from agw_testkit.neuron import Calls, capability, ctx_info
from agw_testkit.responses import describe

SCHEMA_PATH = "/admin/capabilities/schema"
N_IN = {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer", "minimum": 0}}}
ECHO_OUT = {"type": "object", "required": ["echo"]}


def put_schema(gw, key: str, body) -> requests.Response:
    return requests.put(gw.base_url + SCHEMA_PATH, headers={"X-API-KEY": key}, json=body, timeout=10)


def test_registered_schema_refuses_bad_input_and_rides_on_leases(tenant, neurons, cap):
    calls = Calls()

    async def echo(input, ctx):
        calls.add(**ctx_info(ctx))
        return {"echo": input}

    # No client-side schemas: whatever the SDK checks came on the lease frame.
    n = neurons(tenant.gw, tenant.token()).add(capability(cap, 1), echo).start()
    body = {"capability": cap, "inputSchema": N_IN, "outputSchema": ECHO_OUT}
    res = put_schema(tenant.gw, tenant.api_key, body)
    assert res.status_code == 403, f"a tenant key must not register schemas: {describe(res)}"
    res = put_schema(tenant.gw, tenant.gw.admin_key, body)
    assert res.status_code == 200, describe(res)

    bad = tenant.tasks.submit(cap, {"n": -1, "extra": True})
    assert bad.status_code == 400, describe(bad)
    err = bad.json()["error"]
    assert err["code"] == "schema_mismatch", err
    assert [e["path"] for e in err["errors"]] == ["/n"], err
    assert cap in err["message"], err

    good = tenant.tasks.create(cap, {"n": 3})
    assert tenant.tasks.wait_state(good, "fulfilled")["output"] == {"echo": {"n": 3}}
    assert [c["task_id"] for c in calls.all()] == [good], "the refused input never reached the neuron"
    [frame] = n.frames_of("lease")
    assert frame.lease.input_schema == N_IN, frame
    assert frame.lease.output_schema == ECHO_OUT, frame


def test_output_schema_from_the_lease_is_enforced_by_the_sdk(tenant, neurons, cap):
    calls = Calls()

    async def wrong_shape(input, ctx):
        calls.add(**ctx_info(ctx))
        return {"not_echo": True}

    res = put_schema(tenant.gw, tenant.gw.admin_key,
                     {"capability": cap, "inputSchema": {"type": "object"}, "outputSchema": ECHO_OUT})
    assert res.status_code == 200, describe(res)
    neurons(tenant.gw, tenant.token()).add(capability(cap, 1), wrong_shape).start()
    tid = tenant.tasks.create(cap, {"x": 1}, maxAttempts=5)
    t = tenant.tasks.wait_state(tid, "dead")
    assert t["attempts"] == 1 and t.get("output") is None, t
    assert "schema" in json.dumps(t.get("error")).lower(), t
    assert len(calls.all()) == 1


def test_schema_admin_round_trip(gw, cap):
    admin = {"X-API-KEY": gw.admin_key}
    res = put_schema(gw, gw.admin_key, {"capability": cap, "inputSchema": {"type": "nope"}})
    assert res.status_code == 400 and "inputSchema does not compile" in res.json()["error"]["message"], describe(res)
    url = f"{gw.base_url}{SCHEMA_PATH}?capability={cap}"
    assert requests.get(url, headers=admin, timeout=10).status_code == 404
    assert put_schema(gw, gw.admin_key, {"capability": cap, "inputSchema": N_IN}).status_code == 200
    got = requests.get(url, headers=admin, timeout=10)
    assert got.status_code == 200 and got.json()["inputSchema"] == N_IN, describe(got)
    assert requests.delete(url, headers=admin, timeout=10).status_code == 200
    assert requests.delete(url, headers=admin, timeout=10).status_code == 404
