"""The workers that answer governance runs (a run is a job on a topic).

- `IntentBusWorker`  intent-bus 2.1.2's own `WorkerRuntime.listen(goal, handler)` on a
                     daemon thread (the loop a real Intent Bus fleet runs). The
                     runtime has no stop(); it re-raises SystemExit, so the client it
                     is given is a thin proxy whose claim() raises SystemExit once
                     stop() was called.
- `Claimer`          one tenant's hand-driven claims (hold a lease, fail, check that
                     nothing was enqueued)

Neurons are agw_testkit.neuron's (a real `holokai_neuron_sdk.Neuron` on its own
event-loop thread).
"""

from __future__ import annotations

import threading
import uuid
from typing import Any, Callable, Optional

from intent_bus import IntentClient, WorkerRuntime

from agw_testkit.gateway import Gateway
from agw_testkit.neuron import Calls
from agw_testkit.waits import wait_until


def ib_client(gw: Gateway, api_key: str) -> IntentClient:
    return IntentClient(base_url=gw.base_url, api_key=api_key, timeout=15.0)


class _StoppableClient:
    """Delegates to the SDK client; claim() ends WorkerRuntime.listen after stop()."""

    def __init__(self, client: IntentClient, stop: threading.Event):
        self._client = client
        self._stop = stop

    def claim(self, *a: Any, **kw: Any):
        if self._stop.is_set():
            raise SystemExit(0)
        return self._client.claim(*a, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


class IntentBusWorker:
    """WorkerRuntime(goal) answering with handler(payload); every payload is kept in `calls`."""

    def __init__(self, gw: Gateway, api_key: str, goal: str, handler: Callable[[Any], Any],
                 worker_id: Optional[str] = None):
        self.goal = goal
        self.worker_id = worker_id or f"ib-worker-{uuid.uuid4().hex[:8]}"
        self.client = ib_client(gw, api_key)
        self._stop = threading.Event()
        self._handler = handler
        self.calls = Calls()
        self.crashed: Optional[BaseException] = None
        self.runtime = WorkerRuntime(_StoppableClient(self.client, self._stop), worker_id=self.worker_id,
                                     poll_interval=0.2, max_backoff=1.0)
        self.thread = threading.Thread(target=self._run, name=self.worker_id, daemon=True)
        self.thread.start()

    def _handle(self, payload: Any) -> Any:
        self.calls.add(payload=payload)
        return self._handler(payload)

    def _run(self) -> None:
        try:
            self.runtime.listen(self.goal, self._handle)
        except SystemExit:
            pass
        except BaseException as e:  # reported by the fixture
            self.crashed = e

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=10)  # the runtime sleeps Retry-After (1 s) between idle polls
        self.client.close()


class Claimer:
    """One tenant's Intent Bus client for hand-driven claims on the governance topics."""

    def __init__(self, gw: Gateway, api_key: str, worker_id: Optional[str] = None):
        self.client = ib_client(gw, api_key)
        self.worker_id = worker_id or f"claimer-{uuid.uuid4().hex[:8]}"

    def claim_once(self, goal: str):
        return self.client.claim(goal=goal, worker_id=self.worker_id)

    def claim(self, goal: str, timeout: float = 15.0):
        """Claim a job of `goal` (polling until one is there)."""
        box = {}

        def probe():
            job = self.claim_once(goal)
            box["status"] = job.status_code
            return job if job and job.status_code == 200 else None

        return wait_until(probe, timeout, f"an Intent Bus claim on goal {goal!r} to return a job",
                          interval=0.1, detail=lambda: box)

    def assert_nothing_on(self, *goals: str) -> None:
        """Nothing claimable on these goals for this tenant (nothing was enqueued)."""
        for goal in goals:
            job = self.claim_once(goal)
            assert job.status_code == 204 and not job, (
                f"a job was enqueued on {goal!r}: claim answered {job.status_code} "
                f"{getattr(job, 'data', None)!r}")

    def fulfill(self, job, result: Any):
        return self.client.fulfill(job.get("id"), job.get("claim_token"), result=result)

    def fail(self, job, error: str):
        return self.client.fail(job.get("id"), job.get("claim_token"), error=error)

    def close(self) -> None:
        self.client.close()
