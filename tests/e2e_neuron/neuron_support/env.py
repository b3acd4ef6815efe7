"""Gateway processes, tenants and bearer tokens for the NEURON suite.

The gateway machinery (start/stop, PostgreSQL databases, restart, CLI) is the
Intent Bus suite's `tests/e2e/support/gateway.py`, imported as the namespace
package `e2e.support` so this suite's own helpers keep their distinct name.
"""

from __future__ import annotations

import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional

TESTS_DIR = Path(__file__).resolve().parents[2]
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from e2e.support.gateway import (  # noqa: E402
    BASE_SETTINGS,
    Gateway,
    GatewayError,
    gateway_binary,
    store_kind,
)

from .tasks import TaskApi  # noqa: E402

# Lease TTL of the suite's `ttl_gw` gateway (heartbeat / expiry / kill tests).
SHORT_TTL_MS = 3000

__all__ = [
    "SHORT_TTL_MS",
    "BASE_SETTINGS", "Gateway", "GatewayError", "gateway_binary", "store_kind",
    "Tenant", "new_tenant", "mint_token",
]


def mint_token(gw: Gateway, sub: str, tenant: str, ttl: str = "1h") -> str:
    """`$AGW_BIN token mint --sub SUB --tenant TENANT --ttl TTL` with the gateway's env."""
    res = gw.cli("token", "mint", "--sub", sub, "--tenant", tenant, "--ttl", ttl)
    assert res.returncode == 0, (
        f"`agent-gateway token mint --sub {sub} --tenant {tenant} --ttl {ttl}` exited {res.returncode}\n"
        f"stdout: {res.stdout[-2000:]!r}\nstderr: {res.stderr[-2000:]!r}"
    )
    lines = [ln.strip() for ln in res.stdout.splitlines() if ln.strip()]
    assert lines, f"token mint printed nothing on stdout (stderr: {res.stderr[-2000:]!r})"
    token = lines[-1]
    assert token.count(".") == 2, f"token mint did not print a JWT on its last stdout line: {res.stdout!r}"
    return token


@dataclass
class Tenant:
    """One owner on one gateway: its first API key, and JWTs minted for it."""

    gw: Gateway
    owner: str
    api_key: str
    _tokens: Dict[str, str] = field(default_factory=dict)

    def token(self, sub: Optional[str] = None, ttl: str = "1h") -> str:
        """A bearer JWT for this tenant (cached per sub for the default ttl)."""
        sub = sub or f"sub-{self.owner}"
        if ttl != "1h":
            return mint_token(self.gw, sub, self.owner, ttl)
        if sub not in self._tokens:
            self._tokens[sub] = mint_token(self.gw, sub, self.owner, ttl)
        return self._tokens[sub]

    @property
    def tasks(self) -> TaskApi:
        """Task API authenticated with the tenant's API key (`Authorization: Bearer <key>`)."""
        return TaskApi(self.gw.base_url, self.api_key)

    def tasks_as(self, credential: str, style: str = "bearer") -> TaskApi:
        return TaskApi(self.gw.base_url, credential, style=style)


def new_tenant(gw: Gateway, prefix: str = "ten") -> Tenant:
    owner = f"{prefix}-{uuid.uuid4().hex[:10]}"
    return Tenant(gw=gw, owner=owner, api_key=gw.generate_key(owner))
