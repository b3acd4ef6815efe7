"""OAuth client revocation (holokai-neuron-sdk 0.2.0 enrollment): after
`agent-gateway oauth-clients revoke CLIENT_ID` -- straight in the store, as
another replica would -- the tokens the client holds are refused (401) within
2 s and its client_credentials grant fails (the SDK's auth callback raises
CredentialRevokedError). `DELETE /admin/oauth-clients/{id}` does the same at
once on the gateway that served it; 404 for an unknown id, 403 for a tenant.

Two hosts enroll at once through the SDK's own `enroll()` on a gateway with a
1 s device polling interval (the default 5 s would only slow the test)."""

from __future__ import annotations

import json
import re
import secrets
import time
from typing import Dict, List

import pytest
import requests

from agw_testkit.neuron import HAS_AUTH_MODULE, Calls, LoopThread, capability, ctx_info
from agw_testkit.responses import describe
from agw_testkit.tasks import TaskApi
from agw_testkit.tenants import new_tenant
from agw_testkit.waits import wait_until

pytestmark = [pytest.mark.skipif(not HAS_AUTH_MODULE, reason="holokai-neuron-sdk < 0.2.0 has no auth module"),
              pytest.mark.slow]

CODE_RE = re.compile(r"enter code:\s*(\S+)")
REVOKE_DEADLINE_S = 2.0


def _enroll_two(g, owner: str, tmp_path, cap: str):
    """Enroll two hosts concurrently with the SDK's enroll(), approved by the admin API."""
    from holokai_neuron_sdk.auth import enroll

    loop = LoopThread("enroll-two")
    try:
        printed: Dict[str, List[str]] = {"one": [], "two": []}
        futs = {name: loop.submit(enroll(moku_base_url=g.base_url, client_name=f"e2e-revoke-{name}",
                                         hostname=f"host-{name}", capability_types=[cap],
                                         credential_path=tmp_path / f"{name}.json", out=out.append))
                for name, out in printed.items()}
        for name, fut in futs.items():
            def code(name=name, fut=fut):
                m = CODE_RE.search("\n".join(printed[name]))
                if not m and fut.done():
                    raise AssertionError(f"enroll() ended before printing a user code: {fut.exception()!r}")
                return m.group(1) if m else None

            user_code = wait_until(code, 20, f"enroll({name}) to print the user code")
            res = requests.post(g.base_url + "/admin/device/approve", headers={"X-API-KEY": g.admin_key},
                                json={"user_code": user_code, "owner": owner}, timeout=10)
            assert res.status_code in (200, 204), describe(res)
        results = {name: fut.result(60) for name, fut in futs.items()}
    finally:
        loop.close()
    for name, r in results.items():
        assert r.status == "enrolled", (name, r)
    return {name: json.loads((tmp_path / f"{name}.json").read_text()) for name in results}


def _clients_list(g, owner: str):
    res = g.cli("oauth-clients", "list", "--tenant", owner)
    assert res.returncode == 0, (res.stdout, res.stderr)
    lines = [ln for ln in res.stdout.splitlines() if ln.strip()]
    header = lines[0].split("\t")
    assert header[0] == "CLIENT_ID", lines[0]
    return {row["CLIENT_ID"]: row for row in (dict(zip(header, ln.split("\t"))) for ln in lines[1:])}, res.stdout


def _mint(cred_path) -> str:
    """A token through the SDK's client_credentials auth callback (a fresh one: no cache)."""
    from holokai_neuron_sdk.auth import create_client_credentials_auth

    loop = LoopThread("mint")
    try:
        return loop.call(create_client_credentials_auth(cred_path)(), 15)
    finally:
        loop.close()


def _grant(g, cred) -> requests.Response:
    return requests.post(cred["token_endpoint"], data={
        "grant_type": "client_credentials", "client_id": cred["client_id"],
        "client_secret": cred["client_secret"]}, timeout=10)


def _assert_revoked_401(res: requests.Response) -> None:
    assert res.status_code == 401, describe(res)
    err = res.json().get("error")
    assert isinstance(err, dict) and err.get("code") == "unauthorized", describe(res)
    assert "revoked" in err.get("message", ""), describe(res)


def _assert_grant_refused(g, cred, path) -> None:
    from holokai_neuron_sdk.auth import CredentialRevokedError

    res = _grant(g, cred)
    assert res.status_code == 401 and res.json().get("error") == "invalid_client", describe(res)
    assert "access_token" not in res.json()
    with pytest.raises(CredentialRevokedError):
        _mint(path)


def test_revoked_oauth_client_is_refused(gateway_factory, neurons, cap, tmp_path):
    g = gateway_factory("oauth-revoke", AGW_OAUTH_DEVICE_INTERVAL_SECS=1)
    t = new_tenant(g, "oauth")
    creds = _enroll_two(g, t.owner, tmp_path, cap)
    one, two = creds["one"], creds["two"]

    rows, text = _clients_list(g, t.owner)
    assert set(rows) == {one["client_id"], two["client_id"]}, rows
    assert all(r["TENANT"] == t.owner and r["REVOKED"] == "-" for r in rows.values()), rows
    assert one["client_secret"] not in text and two["client_secret"] not in text, "`oauth-clients list` printed a secret"

    # Both credentials work through the SDK: a neuron authenticated by client one
    # runs a task; client two's token reads it.
    calls = Calls()

    async def echo(input, ctx):
        calls.add(**ctx_info(ctx))
        return {"echo": input}

    from holokai_neuron_sdk.auth import create_client_credentials_auth

    n = neurons(g, create_client_credentials_auth(tmp_path / "one.json")).add(capability(cap, 1), echo).start()
    tid = t.tasks.create(cap, {"hello": "oauth"})
    assert t.tasks.wait_state(tid, "fulfilled")["output"] == {"echo": {"hello": "oauth"}}
    n.stop()  # before the revocation: a revoked neuron would retry its token endpoint forever
    tok_one, tok_two = _mint(tmp_path / "one.json"), _mint(tmp_path / "two.json")
    api_one, api_two = TaskApi(g.base_url, tok_one), TaskApi(g.base_url, tok_two)
    assert api_one.get(tid).status_code == 200 and api_two.get(tid).status_code == 200

    # CLI revocation in the store: the running gateway refuses the token within 2 s.
    res = g.cli("oauth-clients", "revoke", one["client_id"])
    assert res.returncode == 0, (res.stdout, res.stderr)
    start = time.monotonic()
    while True:
        r = api_one.get(tid)
        if r.status_code != 200:
            break
        assert time.monotonic() - start < REVOKE_DEADLINE_S, (
            f"a revoked client's token was still accepted {time.monotonic() - start:.2f}s after the revocation")
        time.sleep(0.05)
    print(f"revoked client's token refused {time.monotonic() - start:.2f}s after `oauth-clients revoke` returned")
    _assert_revoked_401(r)
    _assert_revoked_401(api_one.submit(cap, {"after": "revocation"}))
    _assert_grant_refused(g, one, tmp_path / "one.json")
    # The other client of the tenant keeps working.
    assert api_two.get(tid).status_code == 200
    assert _grant(g, two).status_code == 200

    # Admin API: 403 for a tenant, 404 for an unknown id, then at once.
    for cred in (t.api_key, tok_two):
        r = requests.delete(f"{g.base_url}/admin/oauth-clients/{two['client_id']}",
                            headers={"Authorization": f"Bearer {cred}"}, timeout=10)
        assert r.status_code == 403, describe(r)
    assert api_two.get(tid).status_code == 200, "a refused revocation must revoke nothing"
    r = requests.delete(f"{g.base_url}/admin/oauth-clients/cid_{secrets.token_hex(8)}",
                        headers={"X-API-KEY": g.admin_key}, timeout=10)
    assert r.status_code == 404, describe(r)
    r = requests.delete(f"{g.base_url}/admin/oauth-clients/{two['client_id']}",
                        headers={"X-API-KEY": g.admin_key}, timeout=10)
    assert r.status_code == 200, describe(r)
    _assert_revoked_401(api_two.get(tid))  # no polling: the serving gateway knows at once
    _assert_grant_refused(g, two, tmp_path / "two.json")

    rows, _ = _clients_list(g, t.owner)
    assert all(r["REVOKED"] != "-" for r in rows.values()), rows
    r = requests.get(f"{g.base_url}/admin/oauth-clients", params={"tenant": t.owner},
                     headers={"X-API-KEY": g.admin_key}, timeout=10)
    assert r.status_code == 200, describe(r)
    listed = {c["client_id"]: c for c in r.json()["clients"]}
    assert set(listed) == {one["client_id"], two["client_id"]}, listed
    assert all(c["revoked_at"] for c in listed.values()), listed
    # The tenant's API key is not an OAuth credential: unaffected.
    assert t.tasks.get(tid).status_code == 200
