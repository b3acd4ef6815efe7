"""Fixtures for the agent-gateway GOVERNANCE end-to-end suite.

Every test drives a real `$AGW_BIN serve` process, configured by a TOML file
(gov_support.config), through the installed, unmodified `hestiaos` SDK 1.0.1
(sync Client, AsyncClient, the `hestiaos` CLI) and raw HTTP where status codes
and exact bodies matter. Runs are answered by real workers: intent-bus 2.1.2's
WorkerRuntime and holokai-neuron-sdk 0.2.0 neurons (gov_support.workers).
Every wait is a bounded poll of an observable state (trace status, task state,
stability counters, policy_version), never a bare sleep.
"""

from __future__ import annotations

import uuid
from typing import Any, Callable, Iterator, List, Optional

import pytest

from agw_testkit.gateway import Gateway, running_gateway
from agw_testkit.neuron import NeuronHandle, capability
from agw_testkit.tenants import Tenant, new_tenant
from gov_support.api import GovApi
from gov_support.config import shared_config
from gov_support.sdk import SDK_VERSION, sync_client
from gov_support.workers import Claimer, IntentBusWorker

pytest_plugins = ["agw_testkit.plugin"]


def pytest_report_header(config):
    return [f"hestiaos {SDK_VERSION}"]


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
