"""Fixtures for the agent-gateway Intent Bus end-to-end suite.

Every test talks to a real `$AGW_BIN serve` process over HTTP, through the
installed (unmodified) `intent-bus` SDK where possible and through
`agw_testkit.raw.RawClient` (hand-signed requests) where byte-level control is
needed.  Run via tests/e2e/run.sh, which creates one venv per SDK version.
"""

from __future__ import annotations

import os
from typing import Iterator

import pytest

from agw_testkit.gateway import Gateway, running_gateway
from support import sdk

pytest_plugins = ["agw_testkit.plugin"]


def pytest_report_header(config):
    return [
        f"intent-bus SDK {sdk.SDK_VERSION} (major {sdk.SDK_MAJOR})",
        f"other SDK python={os.environ.get('AGW_E2E_OTHER_PYTHON', '<unset>')}",
    ]


@pytest.fixture(scope="session")
def gw() -> Iterator[Gateway]:
    """The shared gateway with the default e2e settings (rate limit off, Retry-After 1 s)."""
    with running_gateway(name="shared") as g:
        yield g


@pytest.fixture
def tenant(gw) -> str:
    """API key of a fresh tenant on the shared gateway."""
    return gw.new_tenant()


@pytest.fixture
def other_tenant(gw) -> str:
    return gw.new_tenant("other")


@pytest.fixture
def client_for():
    """client_for(gateway, api_key) -> the installed SDK's IntentClient; closed at teardown."""
    made = []

    def make(g: Gateway, key: str):
        c = sdk.client(g, key)
        made.append(c)
        return c

    yield make
    for c in made:
        try:
            c.close()
        except Exception:
            pass
