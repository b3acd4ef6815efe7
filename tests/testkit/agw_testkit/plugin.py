"""The pytest plugin every end-to-end suite loads from its conftest
(`pytest_plugins = ["agw_testkit.plugin"]`).

- before the session: stop at once, clearly, when the binary, the store or the
  events venv is missing (exit 4; nothing is checked under --collect-only)
- after it: the execution-event totals of every gateway, the ones that failed,
  and on a red run where each gateway's log is; a green run removes every
  gateway's work dir (AGW_E2E_KEEP=1 keeps them)
- fixtures: `gateway_factory` (per test), `module_gateway_factory` (per
  module), `uniq`

A suite's own conftest adds its header lines, its shared gateway (`gw`) and
the fixtures of its protocol.
"""

from __future__ import annotations

import os
import shutil
import uuid
from typing import Iterator, List

import pytest

from .gateway import ALL_GATEWAYS, EVENT_FAILURES, GatewayError, GatewayFactory, gateway_binary
from .store import StoreError, store_kind


def pytest_report_header(config) -> List[str]:
    return [f"store={os.environ.get('AGW_E2E_STORE', 'sqlite')}",
            f"AGW_BIN={os.environ.get('AGW_BIN', '<unset>')}"]


def pytest_sessionstart(session) -> None:
    if session.config.option.collectonly:
        return
    try:
        gateway_binary()
        store_kind()
        events_python = os.environ.get("AGW_EVENTS_PYTHON", "")
        if not (events_python and os.access(events_python, os.X_OK)):
            raise GatewayError(
                f"AGW_EVENTS_PYTHON={events_python!r} is not an executable python: every gateway's "
                "execution events are checked with it (run the suite's run.sh, which creates the venv "
                "from tests/requirements-events.txt)")
    except (GatewayError, StoreError) as e:
        pytest.exit(f"{session.config.rootpath.name} suite cannot run: {e}", returncode=4)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    checked = [g for g in ALL_GATEWAYS if g.events_checked is not None]
    if checked:
        terminalreporter.write_line(
            f"execution events: {sum(g.events_checked for g in checked)} events of {len(checked)} gateways "
            "checked (schema, intentproof, `events verify`)")
        late = [f"{g.name} +{g.events_in_store - g.events_checked}" for g in checked
                if g.events_in_store is not None and g.events_in_store > g.events_checked]
        if late:
            terminalreporter.write_line("  written after the export (verified by `events verify` only): "
                                        + ", ".join(late))
    for name, failures in EVENT_FAILURES:
        terminalreporter.write_line(f"EXECUTION EVENTS FAILED on gateway {name}: {failures[0]}", red=True)
    if exitstatus != 0 and ALL_GATEWAYS:
        terminalreporter.write_line("gateway logs kept for inspection:")
        for g in ALL_GATEWAYS:
            terminalreporter.write_line(f"  {g.name}: {g.stderr_path}")


def pytest_sessionfinish(session, exitstatus) -> None:
    if exitstatus == 0 and not EVENT_FAILURES and not os.environ.get("AGW_E2E_KEEP"):
        for g in ALL_GATEWAYS:
            shutil.rmtree(g.workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def module_gateway_factory() -> Iterator[GatewayFactory]:
    """A gateway with special settings (or its own config file), shared by one test module."""
    f = GatewayFactory("mod")
    yield f
    f.close()


@pytest.fixture
def gateway_factory() -> Iterator[GatewayFactory]:
    """A gateway with special settings (or its own config file), private to one test."""
    f = GatewayFactory("fn")
    yield f
    f.close()


@pytest.fixture
def uniq() -> str:
    """A short unique token for names (goals, capabilities, namespaces) that keeps
    tests independent on a shared gateway."""
    return uuid.uuid4().hex[:10]
