"""Key revocation: `agent-gateway keys list|revoke` (straight in the store, as
another replica or an operator's shell would) and `DELETE /admin/keys/{key_id}`,
seen through the installed SDK.

A key revoked in the store is refused by a running gateway within 2 s (its
cache re-reads a key at most 1 s old); a key revoked through the gateway's
admin API is refused by that gateway at once. The tenant's other keys keep
working: a revocation is per key, not per tenant."""

from __future__ import annotations

import secrets
import time
from typing import Dict, List

import pytest
import requests

from agw_testkit.responses import describe
from support import sdk
from support.checks import assert_error

REVOKE_DEADLINE_S = 2.0


def _new_key(gw, owner: str) -> Dict[str, str]:
    """A tenant key through the admin API: {"api_key", "owner", "key_id"}."""
    res = gw.admin.request("POST", "/admin/generate_key", body={"owner": owner})
    assert res.status_code == 201, describe(res)
    data = res.json()
    assert data["owner"] == owner and data["api_key"].startswith("agw_"), data
    assert isinstance(data.get("key_id"), str) and data["key_id"], f"generate_key names no key_id: {data}"
    return data


def _cli_ok(gw, *args: str):
    res = gw.cli(*args)
    assert res.returncode == 0, (f"`agent-gateway {' '.join(args)}` exited {res.returncode}\n"
                                 f"stdout: {res.stdout[-2000:]!r}\nstderr: {res.stderr[-2000:]!r}")
    return res


def _keys_list(gw, owner: str) -> List[Dict[str, str]]:
    """`agent-gateway keys list --owner OWNER` parsed: one dict per row, by header name."""
    res = _cli_ok(gw, "keys", "list", "--owner", owner)
    lines = [ln for ln in res.stdout.splitlines() if ln.strip()]
    assert lines, f"`keys list` printed nothing: {res.stdout!r} {res.stderr!r}"
    header = lines[0].split("\t")
    assert header[0] == "KEY_ID", f"the first column must be KEY_ID: {lines[0]!r}"
    rows = []
    for ln in lines[1:]:
        cells = ln.split("\t")
        assert len(cells) == len(header), f"row {ln!r} does not match header {header}"
        rows.append(dict(zip(header, cells)))
    return rows


def _sdk_call(c, goal: str):
    """One cheap authenticated SDK call (claim: never retried by either SDK)."""
    return c.claim(goal)


def _wait_refused(c, goal: str, deadline_s: float) -> float:
    """Poll the SDK until it raises its auth error; returns the seconds it took.
    Fails if the key is still accepted after `deadline_s`."""
    start = time.monotonic()
    while True:
        try:
            _sdk_call(c, goal)
        except sdk.IntentBusAuthError as e:
            waited = time.monotonic() - start
            msg = str(e)
            assert msg.startswith("unauthorized"), f"auth error is not the 401 `unauthorized`: {msg!r}"
            assert "revoked" in msg, f"the 401 should say the key was revoked: {msg!r}"
            return waited
        waited = time.monotonic() - start
        assert waited < deadline_s, f"a revoked key was still accepted {waited:.2f}s after the revocation"
        time.sleep(0.05)


def test_cli_revocation_reaches_the_running_gateway(gw, client_for, uniq):
    owner = f"revoke-cli-{uniq}"
    a, b = _new_key(gw, owner), _new_key(gw, owner)
    goal = f"rev-{uniq}"

    ca, cb = client_for(gw, a["api_key"]), client_for(gw, b["api_key"])
    job_a = sdk.publish(ca, goal, {"by": "a"})
    assert _sdk_call(ca, f"idle-{uniq}").status_code == 204

    rows = _keys_list(gw, owner)
    assert sorted(r["KEY_ID"] for r in rows) == sorted([a["key_id"], b["key_id"]]), rows
    for r in rows:
        assert r["OWNER"] == owner and r["ROLE"] == "tenant", r
        assert r["REVOKED"] == "-", f"a live key listed as revoked: {r}"
    listed = _cli_ok(gw, "keys", "list", "--owner", owner).stdout
    for k in (a, b):
        assert k["api_key"] not in listed, "`keys list` printed a secret"
        assert k["api_key"][4:] not in listed, "`keys list` printed a secret"

    res = _cli_ok(gw, "keys", "revoke", a["key_id"])
    assert a["api_key"] not in res.stdout + res.stderr
    took = _wait_refused(ca, f"idle-{uniq}", REVOKE_DEADLINE_S)  # a goal with no jobs: claims stay empty
    print(f"revoked key refused {took:.2f}s after `keys revoke` returned")

    # On the wire: 401 with the contract's error body, on every route, signed or not.
    raw = gw.raw(a["api_key"])
    assert_error(raw.claim(goal), 401, "unauthorized")
    assert_error(raw.request("GET", f"/status/{job_a}", sign=False), 401, "unauthorized")
    with pytest.raises(sdk.IntentBusAuthError):
        sdk.publish(ca, goal, {"by": "a", "after": "revocation"})

    # The tenant's other key still works, and sees the tenant's jobs (the revoked
    # key's publish included); the refused publish above created nothing.
    job = sdk.claim_until(lambda: cb.claim(goal), 10)[0]
    assert sdk.job_id(job) == job_a, job
    sdk.fulfill(cb, job, {"ok": True})
    assert gw.raw(b["api_key"]).result(job_a).json()["status"] == "fulfilled"
    assert cb.claim(goal).status_code == 204, "a refused publish must enqueue nothing"

    rows = {r["KEY_ID"]: r for r in _keys_list(gw, owner)}
    assert rows[a["key_id"]]["REVOKED"] != "-", rows
    assert rows[b["key_id"]]["REVOKED"] == "-", rows


def test_cli_revoke_unknown_key_fails(gw):
    res = gw.cli("keys", "revoke", "key_" + secrets.token_hex(8))
    assert res.returncode != 0, f"revoking an unknown key id must fail: {res.stdout!r} {res.stderr!r}"


def test_admin_api_revocation_is_immediate(gw, client_for, uniq):
    owner = f"revoke-api-{uniq}"
    a, b = _new_key(gw, owner), _new_key(gw, owner)
    goal = f"rev-api-{uniq}"
    ca, cb = client_for(gw, a["api_key"]), client_for(gw, b["api_key"])
    assert _sdk_call(ca, goal).status_code == 204  # cached as valid by the gateway

    # A tenant key may not revoke, not even its own tenant's keys.
    for kid in (a["key_id"], b["key_id"]):
        res = gw.raw(b["api_key"]).request("DELETE", f"/admin/keys/{kid}", sign=False)
        assert_error(res, 403, "forbidden")
    res = requests.delete(f"{gw.base_url}/admin/keys/{a['key_id']}",
                          headers={"Authorization": f"Bearer {b['api_key']}"}, timeout=10)
    assert_error(res, 403, "forbidden")
    assert _sdk_call(ca, goal).status_code == 204, "a refused revocation must revoke nothing"

    # Unknown id: 404, nothing changes.
    res = requests.delete(f"{gw.base_url}/admin/keys/key_{secrets.token_hex(8)}",
                          headers={"X-API-KEY": gw.admin_key}, timeout=10)
    assert_error(res, 404)

    res = requests.delete(f"{gw.base_url}/admin/keys/{a['key_id']}",
                          headers={"X-API-KEY": gw.admin_key}, timeout=10)
    assert res.status_code == 200, describe(res)
    # At once on the gateway that served the revocation: no polling here.
    with pytest.raises(sdk.IntentBusAuthError) as ei:
        _sdk_call(ca, goal)
    assert str(ei.value).startswith("unauthorized"), ei.value
    assert_error(gw.raw(a["api_key"]).claim(goal), 401, "unauthorized")

    # The other key of the tenant is untouched.
    jid = sdk.publish(cb, goal, {"after": "revocation"})
    job = sdk.claim_until(lambda: cb.claim(goal), 10)[0]
    assert sdk.job_id(job) == jid
    sdk.fulfill(cb, job)

    res = requests.get(f"{gw.base_url}/admin/keys", params={"owner": owner},
                       headers={"Authorization": f"Bearer {gw.admin_key}"}, timeout=10)
    assert res.status_code == 200, describe(res)
    keys = {k["key_id"]: k for k in res.json()["keys"]}
    assert set(keys) == {a["key_id"], b["key_id"]}, keys
    assert keys[a["key_id"]]["revoked_at"] is not None and keys[b["key_id"]]["revoked_at"] is None, keys
    assert a["api_key"] not in res.text and b["api_key"] not in res.text, "GET /admin/keys leaked a secret"
    # Revoking again is idempotent: 200, and the first revocation time stands.
    res = requests.delete(f"{gw.base_url}/admin/keys/{a['key_id']}",
                          headers={"X-API-KEY": gw.admin_key}, timeout=10)
    assert res.status_code == 200, describe(res)
    again = requests.get(f"{gw.base_url}/admin/keys", params={"owner": owner},
                         headers={"X-API-KEY": gw.admin_key}, timeout=10).json()["keys"]
    assert {k["key_id"]: k["revoked_at"] for k in again}[a["key_id"]] == keys[a["key_id"]]["revoked_at"], again
    # A tenant may not list keys either.
    res = gw.raw(b["api_key"]).request("GET", "/admin/keys", params={"owner": owner}, sign=False)
    assert_error(res, 403, "forbidden")
