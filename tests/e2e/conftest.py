"""Fixtures for the agent-gateway Intent Bus end-to-end suite.

Every test talks to a real `$AGW_BIN serve` process over HTTP, through the
installed (unmodified) `intent-bus` SDK where possible and through
`support.raw.RawClient` (hand-signed requests) where byte-level control is
needed.  Run via tests/e2e/run.sh, which creates one venv per SDK version.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import sdk  # noqa: E402
from support.gateway import (  # noqa: E402
    Gateway,
    check_can_run,
    remove_work_dirs,
    report_kept_logs,
    running_gateway,
)

def pytest_report_header(config):
    return [
        f"intent-bus SDK {sdk.SDK_VERSION} (major {sdk.SDK_MAJOR}); store={os.environ.get('AGW_E2E_STORE', 'sqlite')}",
        f"AGW_BIN={os.environ.get('AGW_BIN', '<unset>')}",
        f"other SDK python={os.environ.get('AGW_E2E_OTHER_PYTHON', '<unset>')}",
    ]


def pytest_sessionstart(session):
    check_can_run(session, "e2e suite")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    report_kept_logs(terminalreporter, exitstatus)


def pytest_sessionfinish(session, exitstatus):
    remove_work_dirs(exitstatus)


@pytest.fixture(scope="session")
def gw() -> Iterator[Gateway]:
    """The shared gateway with the default e2e settings (rate limit off, Retry-After 1 s)."""
    with running_gateway(name="shared") as g:
        yield g


@pytest.fixture(scope="module")
def module_gateway_factory():
    """Factory for a gateway with special settings, shared by one test module."""
    with _Factory("mod") as f:
        yield f


@pytest.fixture
def gateway_factory():
    """Factory for a gateway with special settings, private to one test."""
    with _Factory("fn") as f:
        yield f


class _Factory:
    def __init__(self, prefix: str):
        self.prefix = prefix
        self._cms = []

    def __call__(self, name: str = "special", **settings) -> Gateway:
        cm = running_gateway({k: str(v) for k, v in settings.items()}, name=f"{self.prefix}-{name}")
        g = cm.__enter__()
        self._cms.append(cm)
        return g

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        errors = []
        for cm in reversed(self._cms):
            try:
                cm.__exit__(None, None, None)
            except BaseException as e:  # collect, report all
                errors.append(e)
        if errors:
            raise errors[0]
        return False


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


@pytest.fixture
def uniq(request) -> str:
    """A short unique token for goal / namespace names (keeps tests independent on a shared gateway)."""
    import uuid

    return uuid.uuid4().hex[:10]
