"""holokai-neuron-sdk 0.2.0 auth module against the gateway as its OAuth
control plane: RFC 8414 discovery, the RFC 8628 device grant driven by the
SDK's own `enroll` CLI / API with operator approval, then the
client_credentials grant feeding a neuron's auth() callback."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import threading
import time

import pytest
import requests

from agw_testkit.neuron import HAS_AUTH_MODULE, Calls, LoopThread, capability, ctx_info
from agw_testkit.responses import describe
from agw_testkit.waits import wait_until
from neuron_support import jwt

pytestmark = pytest.mark.skipif(not HAS_AUTH_MODULE, reason="holokai-neuron-sdk < 0.2.0 has no auth module")

CODE_RE = re.compile(r"enter code:\s*(\S+)")
ENROLL_TIMEOUT = 60.0


def approve_cli(gw, user_code: str, owner: str) -> None:
    res = gw.cli("device", "approve", user_code, "--tenant", owner)
    assert res.returncode == 0, (
        f"`agent-gateway device approve {user_code} --tenant {owner}` exited {res.returncode}: "
        f"{res.stdout[-1000:]!r} {res.stderr[-1000:]!r}")


def approve_admin(gw, user_code: str, owner: str) -> None:
    res = requests.post(gw.base_url + "/admin/device/approve",
                        headers={"X-API-KEY": gw.admin_key},
                        json={"user_code": user_code, "owner": owner}, timeout=10)
    assert res.status_code in (200, 204), describe(res)


def test_discovery_document(gw):
    res = requests.get(gw.base_url + "/.well-known/oauth-authorization-server", timeout=10)
    assert res.status_code == 200, describe(res)
    doc = res.json()
    for k in ("issuer", "token_endpoint", "device_authorization_endpoint"):
        assert isinstance(doc.get(k), str) and doc[k], f"RFC 8414 document lacks {k}: {doc}"
    from holokai_neuron_sdk.auth import discover_endpoints

    loop = LoopThread("discovery")
    try:
        eps = loop.call(discover_endpoints(gw.base_url), 15)
    finally:
        loop.close()
    # the SDK re-roots the document's paths onto the URL it was given
    for url in (eps.token_endpoint, eps.device_authorization_endpoint):
        assert url.startswith(gw.base_url + "/"), eps
    probe = requests.post(eps.token_endpoint, data={"grant_type": "client_credentials",
                                                    "client_id": "nobody", "client_secret": "x"}, timeout=10)
    assert probe.status_code == 401 and probe.json().get("error") == "invalid_client", describe(probe)


def test_token_endpoint_errors(gw):
    token_url = gw.base_url + "/api/v1/auth/token"
    res = requests.post(token_url, data={"grant_type": "client_credentials", "client_id": "cid_nope",
                                         "client_secret": "nope"}, timeout=10)
    assert res.status_code == 401, describe(res)
    body = res.json()
    assert body.get("error") == "invalid_client" and "access_token" not in body, body
    res = requests.post(token_url, data={"grant_type": "password", "username": "u", "password": "p"}, timeout=10)
    assert res.status_code == 400 and res.json().get("error") == "unsupported_grant_type", describe(res)
    res = requests.post(token_url, data={"grant_type": "urn:ietf:params:oauth:grant-type:device_code",
                                         "device_code": "no-such-code"}, timeout=10)
    assert res.status_code == 400 and res.json().get("error") in ("invalid_grant", "expired_token"), describe(res)

    # a fresh device code polls as authorization_pending until approved
    dev = requests.post(gw.base_url + "/api/v1/auth/device",
                        data={"client_name": "e2e-pending", "hostname": "h"}, timeout=10)
    assert dev.status_code == 200, describe(dev)
    d = dev.json()
    for k in ("device_code", "user_code", "verification_uri", "expires_in"):
        assert k in d, f"device authorization response lacks {k}: {d}"
    res = requests.post(token_url, data={"grant_type": "urn:ietf:params:oauth:grant-type:device_code",
                                         "device_code": d["device_code"]}, timeout=10)
    assert res.status_code == 400 and res.json().get("error") in ("authorization_pending", "slow_down"), describe(res)


def _run_neuron_with_credential(tenant, neurons, cred_path, cap):
    from holokai_neuron_sdk.auth import create_client_credentials_auth

    calls = Calls()

    async def echo(input, ctx):
        calls.add(**ctx_info(ctx))
        return {"enrolled": True, "echo": input}

    auth = create_client_credentials_auth(cred_path)
    n = neurons(tenant.gw, auth).add(capability(cap, 1), echo).start()
    tid = tenant.tasks.create(cap, {"hello": "enrolled"})
    t = tenant.tasks.wait_state(tid, "fulfilled")
    assert t["output"] == {"enrolled": True, "echo": {"hello": "enrolled"}}, t
    return n


@pytest.mark.slow
def test_enroll_cli_end_to_end(tenant, neurons, cap, tmp_path):
    cred = tmp_path / "creds" / "neuron.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "holokai_neuron_sdk", "enroll", "--moku-url", tenant.gw.base_url,
         "--name", "e2e-cli-neuron", "--capabilities", cap, "--credentials-file", str(cred)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    out_lines, err_lines = [], []

    def pump(stream, into):
        for line in stream:
            into.append(line)

    threading.Thread(target=pump, args=(proc.stdout, out_lines), daemon=True).start()
    threading.Thread(target=pump, args=(proc.stderr, err_lines), daemon=True).start()
    try:
        def code():
            m = CODE_RE.search("".join(out_lines))
            if not m and proc.poll() is not None:
                time.sleep(0.2)  # let the pump threads drain the pipes for the message
                raise AssertionError(f"enroll exited {proc.returncode} before printing a user code: "
                                     f"{''.join(out_lines)} {''.join(err_lines)}")
            return m.group(1) if m else None

        user_code = wait_until(code, 20, "`enroll` to print the user code",
                               detail=lambda: ("".join(out_lines), "".join(err_lines), proc.poll()))
        assert "".join(out_lines).count("http") >= 1, out_lines  # the verification URI
        approve_cli(tenant.gw, user_code, tenant.owner)
        rc = proc.wait(timeout=ENROLL_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    out = "".join(out_lines)
    assert rc == 0, f"enroll exited {rc}: {out} {''.join(err_lines)}"
    assert "Enrolled as client" in out, out

    st = os.stat(cred)
    assert stat.S_IMODE(st.st_mode) == 0o600
    stored = json.loads(cred.read_text())
    assert stored["moku_base_url"] == tenant.gw.base_url, stored
    assert stored["token_endpoint"].startswith(tenant.gw.base_url + "/"), stored
    assert stored["client_id"] and stored["client_secret"], stored

    # steady state: client_credentials mints aud=bigbrain tokens for the approving tenant
    res = requests.post(stored["token_endpoint"], data={
        "grant_type": "client_credentials", "client_id": stored["client_id"],
        "client_secret": stored["client_secret"]}, timeout=10)
    assert res.status_code == 200, describe(res)
    body = res.json()
    assert body.get("token_type", "").lower() == "bearer" and body.get("expires_in", 0) > 0, body
    assert "client_secret" not in body, "the secret is delivered once, at device-code redemption"
    claims = jwt.claims(body["access_token"])
    assert claims.get("aud") in ("bigbrain", ["bigbrain"]), claims
    assert abs(claims["exp"] - time.time() - body["expires_in"]) < 60, (claims, body)

    _run_neuron_with_credential(tenant, neurons, cred, cap)

    # idempotent re-run: the credential still mints -> already enrolled, no new device code
    again = subprocess.run(
        [sys.executable, "-m", "holokai_neuron_sdk", "enroll", "--moku-url", tenant.gw.base_url,
         "--credentials-file", str(cred)],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    assert again.returncode == 0 and "Already enrolled" in again.stdout, (again.stdout, again.stderr)


@pytest.mark.slow
def test_enroll_api_with_admin_approval(tenant, neurons, cap, tmp_path):
    from holokai_neuron_sdk.auth import enroll

    cred = tmp_path / "api-creds.json"
    printed = []
    loop = LoopThread("enroll")
    try:
        fut = loop.submit(enroll(moku_base_url=tenant.gw.base_url, client_name="e2e-api-neuron",
                                 hostname="e2e-host", capability_types=[cap], credential_path=cred,
                                 out=printed.append))

        def code():
            m = CODE_RE.search("\n".join(printed))
            if not m and fut.done():
                raise AssertionError(f"enroll() ended before printing a user code: {fut.exception()!r}")
            return m.group(1) if m else None

        user_code = wait_until(code, 20, "enroll() to print the user code",
                               detail=lambda: (printed, fut.done() and fut.exception()))
        approve_admin(tenant.gw, user_code, tenant.owner)
        result = fut.result(ENROLL_TIMEOUT)
    finally:
        loop.close()
    assert result.status == "enrolled", result
    assert result.access_token, "the redemption response carries a bootstrap access token"
    assert jwt.claims(result.access_token).get("aud") in ("bigbrain", ["bigbrain"])
    _run_neuron_with_credential(tenant, neurons, cred, cap)


def test_unapproved_client_cannot_mint(gw, tmp_path):
    """An unknown client id never gets a token through the SDK's auth callback."""
    from holokai_neuron_sdk.auth import CredentialRevokedError, create_client_credentials_auth

    cred = tmp_path / "bogus.json"
    cred.write_text(json.dumps({"client_id": "cid_bogus", "client_secret": "s",
                                "token_endpoint": gw.base_url + "/api/v1/auth/token",
                                "moku_base_url": gw.base_url}))
    loop = LoopThread("bogus")
    try:
        with pytest.raises(CredentialRevokedError):
            loop.call(create_client_credentials_auth(cred)(), 15)
    finally:
        loop.close()


@pytest.mark.slow
def test_denied_enrollment_fails_with_access_denied(tenant, tmp_path):
    from holokai_neuron_sdk.auth import EnrollmentError, enroll

    printed = []
    loop = LoopThread("enroll-deny")
    try:
        fut = loop.submit(enroll(moku_base_url=tenant.gw.base_url, client_name="e2e-denied",
                                 credential_path=tmp_path / "denied.json", out=printed.append))

        def code():
            m = CODE_RE.search("\n".join(printed))
            if not m and fut.done():
                raise AssertionError(f"enroll() ended before printing a user code: {fut.exception()!r}")
            return m.group(1) if m else None

        user_code = wait_until(code, 20, "enroll() to print the user code")
        res = tenant.gw.cli("device", "approve", user_code, "--tenant", tenant.owner, "--deny")
        assert res.returncode == 0, (res.stdout, res.stderr)
        with pytest.raises(EnrollmentError) as err:
            fut.result(ENROLL_TIMEOUT)
    finally:
        loop.close()
    assert err.value.code == "access_denied", err.value
    assert not (tmp_path / "denied.json").exists()
