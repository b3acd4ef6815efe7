"""The gateway's task API (`/api/v1/tasks`), bound to one credential."""

from __future__ import annotations

import json
import time
from typing import Any, Callable, Dict, Iterable, Optional

import requests

from .responses import describe
from .waits import wait_until

TERMINAL = ("fulfilled", "dead", "cancelled")


class TaskApi:
    """Task API client bound to one credential.

    style: "bearer" -> `Authorization: Bearer <credential>` (JWT or tenant API key),
           "x-api-key" -> `X-API-KEY: <credential>`."""

    def __init__(self, base_url: str, credential: Optional[str], style: str = "bearer"):
        self.base_url = base_url.rstrip("/")
        self.credential = credential
        self.style = style

    def headers(self) -> Dict[str, str]:
        h = {"Content-Type": "application/json"}
        if self.credential is not None:
            if self.style == "bearer":
                h["Authorization"] = f"Bearer {self.credential}"
            else:
                h["X-API-KEY"] = self.credential
        return h

    # -- raw calls -----------------------------------------------------------
    def submit(self, capability: str, input: Any, **fields: Any) -> requests.Response:
        """POST /api/v1/tasks; fields: onBehalfOf, metadata, maxAttempts, priority."""
        body = {"capability": capability, "input": input}
        body.update({k: v for k, v in fields.items() if v is not None})
        return requests.post(self.base_url + "/api/v1/tasks", headers=self.headers(),
                             data=json.dumps(body), timeout=15)

    def get(self, task_id: str) -> requests.Response:
        return requests.get(f"{self.base_url}/api/v1/tasks/{task_id}", headers=self.headers(), timeout=15)

    def cancel(self, task_id: str) -> requests.Response:
        return requests.post(f"{self.base_url}/api/v1/tasks/{task_id}/cancel", headers=self.headers(),
                             timeout=15)

    # -- checked helpers -----------------------------------------------------
    def create(self, capability: str, input: Any, **fields: Any) -> str:
        res = self.submit(capability, input, **fields)
        assert res.status_code == 201, describe(res)
        data = res.json()
        assert isinstance(data.get("taskId"), str) and data["taskId"], describe(res)
        # "open" per the contract; "leased" if a waiting neuron already took it
        assert data.get("state") in ("open", "leased"), f"a new task must be open: {describe(res)}"
        return data["taskId"]

    def task(self, task_id: str) -> Dict[str, Any]:
        res = self.get(task_id)
        assert res.status_code == 200, describe(res)
        return res.json()

    def wait_state(self, task_id: str, states: Iterable[str], timeout: float = 20.0) -> Dict[str, Any]:
        """Poll until the task is in one of `states`; fail at once on another terminal state."""
        wanted = (states,) if isinstance(states, str) else tuple(states)
        last: Dict[str, Any] = {}
        deadline = time.monotonic() + timeout
        while True:
            last = self.task(task_id)
            state = last.get("state")
            if state in wanted:
                return last
            if state in TERMINAL:
                raise AssertionError(f"task {task_id} reached {state!r} while waiting for {wanted}: {last}")
            if time.monotonic() >= deadline:
                raise AssertionError(f"task {task_id} not {wanted} after {timeout:.1f}s: {last}")
            time.sleep(0.05)

    def wait(self, task_id: str, pred: Callable[[Dict[str, Any]], bool], what: str,
             timeout: float = 20.0) -> Dict[str, Any]:
        box: Dict[str, Any] = {}

        def probe():
            box["t"] = self.task(task_id)
            return pred(box["t"])

        wait_until(probe, timeout, f"task {task_id}: {what}", detail=lambda: box.get("t"))
        return box["t"]
