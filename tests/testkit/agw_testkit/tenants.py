"""A tenant of a test gateway: its first API key (`POST /admin/generate_key`)
and bearer JWTs minted by the gateway's own CLI (`token mint`)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Dict, Optional

from .gateway import Gateway
from .tasks import TaskApi


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
