"""RS256 / EdDSA bearer tokens verified with operator-configured public keys
(`[jwt]` jwks_file and public_keys, set here through AGW_JWT_JWKS_FILE and
AGW_JWT_PUBLIC_KEYS). Keys and tokens are fixtures made independently with
PyJWT (protocols/tests/fixtures/jwt/generate.py): every good token is for
tenant "acme", aud "bigbrain", and expires in 2100."""

from __future__ import annotations

import json
import uuid
from typing import Dict, Iterator

import pytest

from agw_testkit import REPO
from agw_testkit.gateway import Gateway, running_gateway
from agw_testkit.neuron import capability
from agw_testkit.responses import describe
from agw_testkit.tasks import TaskApi
from agw_testkit.tenants import mint_token
from neuron_support.raw_sse import RawSse

FIXTURES = REPO / "protocols" / "tests" / "fixtures" / "jwt"
TENANT = "acme"


@pytest.fixture(scope="module")
def tokens() -> Dict[str, str]:
    return json.loads((FIXTURES / "tokens.json").read_text())


@pytest.fixture(scope="module")
def jwks_gw() -> Iterator[Gateway]:
    """A gateway verifying RS256/EdDSA with the fixture JWK Set and Ed25519 PEM."""
    # The fixture tokens (made once, offline) live until 2100: far over the
    # default jwt.max_ttl_secs, so this gateway lifts the bound.
    with running_gateway({"AGW_JWT_JWKS_FILE": str(FIXTURES / "jwks.json"),
                          "AGW_JWT_PUBLIC_KEYS": str(FIXTURES / "ed25519.pem"),
                          "AGW_JWT_MAX_TTL_SECS": "0"},
                         name="neuron-jwks") as g:
        yield g


def test_neuron_with_rs256_jwks_token_gets_a_lease(jwks_gw, tokens, neurons):
    cap = f"e2e-{uuid.uuid4().hex[:10]}/jwks-echo"

    async def echo(input, ctx):
        return {"echo": input}

    # The neuron holds an RS256 token picked by kid from the JWK Set; the task
    # goes in with an EdDSA token (no kid) of the same tenant.
    neurons(jwks_gw, tokens["rs256_kid"]).add(capability(cap, 1), echo).start()
    owner = TaskApi(jwks_gw.base_url, tokens["eddsa"])
    tid = owner.create(cap, {"via": "jwks"})
    t = owner.wait_state(tid, "fulfilled")
    assert t["output"] == {"echo": {"via": "jwks"}}, t
    # The gateway's own HS256 tokens keep working for the same tenant.
    own = mint_token(jwks_gw, "hs-client", TENANT)
    assert TaskApi(jwks_gw.base_url, own).task(tid)["state"] == "fulfilled"


@pytest.mark.parametrize("name", [
    "rs256_unknown_kid", "rs256_wrong_key_kid", "rs256_enc_key_kid", "eddsa_wrong_key",
    "eddsa_header_rsa_kid", "hs256_rsa_pem_secret", "hs256_ed_pem_secret",
    "rs256_expired", "rs256_wrong_aud", "rs256_nbf_2099", "rs256_alg_ps256",
])
def test_bad_public_key_tokens_are_refused(jwks_gw, tokens, name):
    token = tokens[name]
    sse = RawSse(jwks_gw.base_url, f"bad-{uuid.uuid4().hex[:6]}", token)
    try:
        assert sse.status == 401, f"{name}: GET /neuron/events -> {sse.status} {sse.body[:200]!r}"
    finally:
        sse.close()
    res = TaskApi(jwks_gw.base_url, token).submit("e2e-x/never", {})
    assert res.status_code == 401, f"{name}: {describe(res)}"
