"""Secrets: per-tenant, round trip through the SDK, 404s, deletion, and never
in clear text at rest (database) or in the gateway's log."""

from __future__ import annotations

import secrets
import subprocess

import httpx
import pytest

from agw_testkit.responses import describe
from agw_testkit.store import store_kind
from agw_testkit.tenants import new_tenant
from gov_support.api import GovApi, json_of
from gov_support.sdk import sync_client

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def secrets_gw(module_gateway_factory):
    """A gateway logging at debug level: even then no secret may reach the log."""
    from gov_support.config import shared_config

    return module_gateway_factory("secrets", shared_config("nobody"), RUST_LOG="debug")


def _plaintext() -> str:
    return "s3cr3t-" + secrets.token_hex(16)


def test_secret_round_trip_and_delete(secrets_gw):
    g = secrets_gw
    t = new_tenant(g, "vault")
    c = sync_client(g.base_url, t.api_key)
    value = _plaintext()
    c.secrets.set("openai", value, provider="openai")
    assert c.secrets.get("openai") == value
    assert c.secrets("openai") == value

    newer = _plaintext()
    c.secrets.set("openai", newer)
    assert c.secrets.get("openai") == newer, "setting a key again replaces its value"

    c.secrets.delete("openai")
    with pytest.raises(httpx.HTTPStatusError) as ei:
        c.secrets.get("openai")
    assert ei.value.response.status_code == 404
    with pytest.raises(httpx.HTTPStatusError) as ei:
        c.secrets.delete("openai")
    assert ei.value.response.status_code == 404


def test_secret_wire_statuses(secrets_gw):
    g = secrets_gw
    api = GovApi(g.base_url, new_tenant(g, "wire").api_key)
    res = api.secret_set("db-pass", _plaintext(), provider="postgres", allowed_tools=["sql"])
    assert res.status_code == 201, describe(res)
    res = api.secret_get("db-pass")
    assert res.status_code == 200 and set(json_of(res)) == {"value"}, describe(res)
    res = api.secret_get("never-set")
    assert res.status_code == 404 and isinstance(json_of(res), dict), describe(res)
    assert api.secret_delete("db-pass").status_code == 204
    res = api.secret_delete("db-pass")
    assert res.status_code == 404 and isinstance(json_of(res), dict), describe(res)


def test_secrets_are_per_tenant(secrets_gw):
    g = secrets_gw
    a, b = new_tenant(g, "alice"), new_tenant(g, "bob")
    api_a, api_b = GovApi(g.base_url, a.api_key), GovApi(g.base_url, b.api_key)
    va, vb = _plaintext(), _plaintext()
    assert api_a.secret_set("shared-name", va).status_code == 201
    assert api_b.secret_get("shared-name").status_code == 404, "tenant B must not read A's secret"
    assert api_b.secret_delete("shared-name").status_code == 404, "tenant B must not delete A's secret"
    assert api_b.secret_set("shared-name", vb).status_code == 201
    assert json_of(api_a.secret_get("shared-name"))["value"] == va
    assert json_of(api_b.secret_get("shared-name"))["value"] == vb
    # A's JWT is tenant A.
    assert json_of(GovApi(g.base_url, a.token()).secret_get("shared-name"))["value"] == va


def _store_bytes(g) -> bytes:
    if store_kind() == "sqlite":
        db = g.workdir / "gw.db"
        files = [db] + [db.with_name(db.name + sfx) for sfx in ("-wal", "-shm", "-journal")]
        return b"".join(f.read_bytes() for f in files if f.exists())
    dump = subprocess.run(["pg_dump", "--data-only", g.database_url], capture_output=True, timeout=60)
    assert dump.returncode == 0, dump.stderr.decode(errors="replace")[-2000:]
    return dump.stdout


def test_secrets_are_encrypted_at_rest_and_never_logged(secrets_gw):
    g = secrets_gw
    t = new_tenant(g, "atrest")
    api = GovApi(g.base_url, t.api_key)
    value = _plaintext()
    assert api.secret_set("at-rest", value).status_code == 201
    assert json_of(api.secret_get("at-rest"))["value"] == value
    cfg = api.system("config")
    assert cfg.status_code == 200 and value not in cfg.text

    stored = _store_bytes(g)
    assert stored, "read nothing from the store"
    assert t.owner.encode() in stored, "sanity: what was read holds this tenant's data"
    assert value.encode() not in stored, f"the secret is stored in clear text ({store_kind()})"
    logs = g.stderr_path.read_bytes() + (g.stdout_path.read_bytes() if g.stdout_path.exists() else b"")
    assert value.encode() not in logs, "the secret appears in the gateway's log"
