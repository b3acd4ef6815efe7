"""The store a test gateway runs on, chosen by AGW_E2E_STORE: a SQLite file in
its work dir (default), or a fresh PostgreSQL database per gateway, created on
the server of AGW_TEST_PG_URL through psql and dropped after."""

from __future__ import annotations

import os
import subprocess
import uuid
from urllib.parse import urlsplit, urlunsplit


class StoreError(RuntimeError):
    pass


def store_kind() -> str:
    """`sqlite` or `postgres` (AGW_E2E_STORE, default sqlite)."""
    kind = os.environ.get("AGW_E2E_STORE", "sqlite").strip().lower()
    if kind not in ("sqlite", "postgres"):
        raise StoreError(f"AGW_E2E_STORE must be sqlite or postgres, got {kind!r}")
    return kind


def pg_admin_url() -> str:
    admin = os.environ.get("AGW_TEST_PG_URL")
    if not admin:
        raise StoreError("AGW_E2E_STORE=postgres needs AGW_TEST_PG_URL")
    return admin


class PgDatabase:
    """A throw-away PostgreSQL database created through psql."""

    def __init__(self, admin_url: str):
        self.admin_url = admin_url
        self.name = f"agw_e2e_{os.getpid()}_{uuid.uuid4().hex[:10]}"
        parts = urlsplit(admin_url)
        self.url = urlunsplit((parts.scheme, parts.netloc, "/" + self.name, parts.query, ""))

    def _psql(self, sql: str) -> None:
        res = subprocess.run(
            ["psql", self.admin_url, "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql],
            capture_output=True, text=True, timeout=60,
        )
        if res.returncode != 0:
            raise StoreError(f"psql failed ({sql}): {res.stderr.strip()}")

    def create(self) -> None:
        self._psql(f'CREATE DATABASE "{self.name}"')

    def drop(self) -> None:
        self._psql(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
