"""Bounded, condition-based waits: every wait in the suites polls an observable
effect until a deadline, never a bare sleep."""

from __future__ import annotations

import time
from typing import Any, Callable, Optional, TypeVar

T = TypeVar("T")


def wait_until(pred: Callable[[], T], timeout: float, what: str, interval: float = 0.05,
               detail: Optional[Callable[[], Any]] = None) -> T:
    """Poll `pred()` until it returns something truthy (returned) or `timeout` passes (AssertionError)."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() >= deadline:
            extra = ""
            if detail is not None:
                try:
                    extra = f"; last seen: {detail()!r}"
                except Exception as e:  # diagnostics must not mask the timeout
                    extra = f"; (detail failed: {e!r})"
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}{extra}")
        time.sleep(interval)
