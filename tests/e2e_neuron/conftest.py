"""Fixtures for the agent-gateway NEURON end-to-end suite.

Every test drives a real `$AGW_BIN serve` process with the installed,
unmodified `holokai-neuron-sdk` (0.1.1 or 0.2.0, one venv each; see run.sh):
neurons run on background event-loop threads (agw_testkit.neuron), tasks
go in through the gateway's task API, and every wait is a bounded poll of an
observable effect (task state, handler calls), never a bare sleep.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

from agw_testkit.gateway import Gateway, running_gateway
from agw_testkit.neuron import HAS_AUTH_MODULE, SDK_VERSION, NeuronHandle
from agw_testkit.tenants import Tenant, new_tenant
from agw_testkit.waits import wait_until
from neuron_support import SHORT_TTL_MS

pytest_plugins = ["agw_testkit.plugin"]


def pytest_report_header(config):
    return [f"holokai-neuron-sdk {SDK_VERSION} (auth module: {'yes' if HAS_AUTH_MODULE else 'no'})"]


@pytest.fixture(scope="session")
def gw() -> Iterator[Gateway]:
    """The shared gateway: default neuron settings (lease TTL 30 s)."""
    with running_gateway(name="neuron-shared") as g:
        yield g


@pytest.fixture(scope="session")
def ttl_gw() -> Iterator[Gateway]:
    """A gateway with a 2 s lease TTL and a 1 s SSE keep-alive."""
    with running_gateway({"AGW_NEURON_LEASE_TTL_MS": str(SHORT_TTL_MS),
                          "AGW_NEURON_KEEPALIVE_SECS": "1"}, name="neuron-ttl") as g:
        yield g


@pytest.fixture
def cap(uniq) -> str:
    """A capability type no other test uses."""
    return f"e2e-{uniq}/echo"


@pytest.fixture
def tenant(gw) -> Tenant:
    return new_tenant(gw)


@pytest.fixture
def ttl_tenant(ttl_gw) -> Tenant:
    return new_tenant(ttl_gw)


@pytest.fixture
def neurons(request):
    """neurons(gw, auth, neuron_id=None, heartbeat_ms=10000, reconnect_ms=(200, 1000)) -> NeuronHandle.

    `auth` is a token string or an SDK-style callback. Handles are closed at
    teardown; a test during which the SDK dropped a server frame as malformed
    errors here, quoting the frame (the gateway sent something the SDK's strict
    models refuse -- see neuron.md "Optional fields must be OMITTED")."""
    made: List[NeuronHandle] = []

    def make(g: Gateway, auth: Any, **kw) -> NeuronHandle:
        h = NeuronHandle(g.base_url, auth, **kw)
        made.append(h)
        return h

    yield make
    dropped = []
    dump = os.environ.get("AGW_E2E_NEURON_LOG")  # optional: append every SDK log line here
    for h in made:
        h.close()
        dropped += [f"{h.neuron_id}: {d}" for d in h.dropped_frames()]
        if dump:
            with open(dump, "a", encoding="utf-8") as f:
                for line in h.log_lines():
                    f.write(f"{request.node.nodeid} {h.neuron_id} {line}\n")
    assert not dropped, "the SDK dropped server frames as malformed:\n" + "\n".join(dropped)


class NeuronProcess:
    """A neuron_proc.py child; lines it prints are collected by a reader thread."""

    def __init__(self, args: Dict[str, Any]):
        script = Path(__file__).resolve().parent / "neuron_support" / "neuron_proc.py"
        self.proc = subprocess.Popen(
            [sys.executable, str(script), json.dumps(args)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.lines: List[Dict[str, Any]] = []
        self.stderr: List[str] = []
        threading.Thread(target=self._pump_out, daemon=True).start()
        threading.Thread(target=self._pump_err, daemon=True).start()

    def _pump_out(self) -> None:
        for line in self.proc.stdout:
            try:
                self.lines.append(json.loads(line))
            except ValueError:
                self.stderr.append(line)

    def _pump_err(self) -> None:
        for line in self.proc.stderr:
            self.stderr.append(line)

    def wait_event(self, event: str, timeout: float = 15.0) -> Dict[str, Any]:
        def find():
            return next((ln for ln in list(self.lines) if ln.get("event") == event), None)

        return wait_until(find, timeout, f"child neuron (pid {self.proc.pid}) to report {event!r}",
                          detail=lambda: {"lines": self.lines, "alive": self.proc.poll() is None,
                                          "stderr": "".join(self.stderr)[-1500:]})

    def kill9(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()  # SIGKILL to this child's own PID
        self.proc.wait(timeout=10)


@pytest.fixture
def neuron_procs():
    """neuron_procs(**args) -> NeuronProcess; every child is SIGKILLed by PID at teardown."""
    made: List[NeuronProcess] = []

    def make(**args) -> NeuronProcess:
        p = NeuronProcess(args)
        made.append(p)
        return p

    yield make
    for p in made:
        try:
            p.kill9()
        except Exception:
            pass


def pytest_collection_modifyitems(config, items):
    # Cheap tests first, slow ones (expiry, restart, enrollment) last.
    items.sort(key=lambda it: 1 if it.get_closest_marker("slow") else 0)
