"""Fixtures for the agent-gateway GOVERNANCE end-to-end suite.

Every test drives a real `$AGW_BIN serve` process, configured by a TOML file
(gov_support.env), through the installed, unmodified `hestiaos` SDK 1.0.1
(sync Client, AsyncClient, the `hestiaos` CLI) and raw HTTP where status codes
and exact bodies matter. Runs are answered by real workers: intent-bus 2.1.2's
WorkerRuntime and holokai-neuron-sdk 0.2.0 neurons (gov_support.workers).
Every wait is a bounded poll of an observable state (trace status, task state,
stability counters, policy_version), never a bare sleep.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gov_support.api import GovApi  # noqa: E402
from gov_support.env import (  # noqa: E402
    Gateway,
    Tenant,
    check_can_run,
    new_tenant,
    remove_work_dirs,
    report_kept_logs,
    running_gateway,
    shared_config,
)
from gov_support.sdk import SDK_VERSION, sync_client  # noqa: E402
from gov_support.workers import Claimer, IntentBusWorker, NeuronHandle, capability  # noqa: E402


def pytest_report_header(config):
    return [
        f"hestiaos {SDK_VERSION}; store={os.environ.get('AGW_E2E_STORE', 'sqlite')}",
        f"AGW_BIN={os.environ.get('AGW_BIN', '<unset>')}",
    ]


def pytest_sessionstart(session):
    check_can_run(session, "governance e2e suite")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    report_kept_logs(terminalreporter, exitstatus)


def pytest_sessionfinish(session, exitstatus):
    remove_work_dirs(exitstatus)


# -- gateways ------------------------------------------------------------------------
@pytest.fixture(scope="session")
def denied_tenant_name() -> str:
    """The owner name on the shared policy's deny_tenants."""
    return f"denied-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def gw(denied_tenant_name) -> Iterator[Gateway]:
    """The shared gateway: deny rules, 2 KiB input cap, agent + tenant denylists, no budgets."""
    with running_gateway(name="gov-shared", config=shared_config(denied_tenant_name)) as g:
        yield g


class _Factory:
    """factory(name, config_text, **env_settings) -> a started gateway, stopped at teardown."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self._cms: List[Any] = []

    def __call__(self, name: str, config: str, **settings: Any) -> Gateway:
        cm = running_gateway({k: str(v) for k, v in settings.items()}, name=f"{self.prefix}-{name}", config=config)
        g = cm.__enter__()
        self._cms.append(cm)
        return g

    def close(self) -> None:
        errors = []
        for cm in reversed(self._cms):
            try:
                cm.__exit__(None, None, None)
            except BaseException as e:
                errors.append(e)
        if errors:
            raise errors[0]


@pytest.fixture(scope="module")
def module_gateway_factory():
    f = _Factory("mod")
    yield f
    f.close()


@pytest.fixture
def gateway_factory():
    f = _Factory("fn")
    yield f
    f.close()


# -- tenants and clients ---------------------------------------------------------------
@pytest.fixture
def tenant(gw) -> Tenant:
    return new_tenant(gw, "gov")


@pytest.fixture
def other_tenant(gw) -> Tenant:
    return new_tenant(gw, "other")


@pytest.fixture
def gov(gw, tenant) -> GovApi:
    """Raw governance calls as `tenant` (its API key as bearer)."""
    return GovApi(gw.base_url, tenant.api_key)


@pytest.fixture
def client(gw, tenant):
    """hestiaos.Client (sync facade) for `tenant`."""
    return sync_client(gw.base_url, tenant.api_key)


@pytest.fixture
def uniq() -> str:
    return uuid.uuid4().hex[:10]


# -- workers -----------------------------------------------------------------------------
@pytest.fixture
def ib_workers():
    """ib_workers(gw, tenant, goal, handler, worker_id=None) -> IntentBusWorker (stopped at teardown)."""
    made: List[IntentBusWorker] = []

    def make(g: Gateway, t: Tenant, goal: str, handler: Callable[[Any], Any],
             worker_id: Optional[str] = None) -> IntentBusWorker:
        w = IntentBusWorker(g, t.api_key, goal, handler, worker_id=worker_id)
        made.append(w)
        return w

    yield make
    for w in made:
        w.stop()
    crashed = [f"{w.worker_id}: {w.crashed!r}" for w in made if w.crashed]
    assert not crashed, f"WorkerRuntime ended with an exception: {crashed}"


@pytest.fixture
def claimers():
    """claimers(gw, tenant) -> Claimer (hand-driven Intent Bus claims as that tenant)."""
    made: List[Claimer] = []

    def make(g: Gateway, t: Tenant, worker_id: Optional[str] = None) -> Claimer:
        c = Claimer(g, t.api_key, worker_id=worker_id)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture
def neurons():
    """neurons(gw, tenant, topic, handler, concurrency=4, neuron_id=None) -> a registered NeuronHandle.

    The neuron authenticates with a CLI-minted JWT of the tenant. A test during which
    the SDK dropped a server frame as malformed fails at teardown, quoting the frame."""
    made: List[NeuronHandle] = []

    def make(g: Gateway, t: Tenant, topic: str, handler, concurrency: int = 4,
             neuron_id: Optional[str] = None) -> NeuronHandle:
        h = NeuronHandle(g.base_url, t.token(), neuron_id=neuron_id)
        made.append(h)
        return h.add(capability(topic, concurrency), handler).start()

    yield make
    dropped = []
    for h in made:
        h.close()
        dropped += [f"{h.neuron_id}: {d}" for d in h.dropped_frames()]
    assert not dropped, "the SDK dropped server frames as malformed:\n" + "\n".join(dropped)


def pytest_collection_modifyitems(config, items):
    # Cheap tests first; slow ones (budgets, reloads, timeouts) last.
    items.sort(key=lambda it: 1 if it.get_closest_marker("slow") else 0)
