"""Thin version switch over the installed, unmodified `intent-bus` SDK.

Only the calls whose shape differs between 1.3.2 and 2.1.2 are wrapped; tests
otherwise use the SDK objects directly.
"""

from __future__ import annotations

import time
from importlib.metadata import version as _dist_version
from typing import Any, Callable, Dict, Optional

import intent_bus
from intent_bus import IntentBusAuthError, IntentBusError, IntentBusRateLimitError, IntentClient

SDK_VERSION: str = getattr(intent_bus, "__version__", None) or _dist_version("intent-bus")
SDK_MAJOR: int = int(SDK_VERSION.split(".")[0])
IS_V2: bool = SDK_MAJOR >= 2

if IS_V2:
    from intent_bus import IntentBusLeaseLostError, WorkerRuntime  # noqa: F401
    LeaseLost = IntentBusLeaseLostError
else:  # 1.3.2 has one error class for every 4xx that is not auth / rate limit
    WorkerRuntime = None  # type: ignore[assignment]
    LeaseLost = IntentBusError

__all__ = [
    "SDK_VERSION", "SDK_MAJOR", "IS_V2", "IntentClient", "IntentBusError", "IntentBusAuthError",
    "IntentBusRateLimitError", "LeaseLost", "WorkerRuntime", "client", "publish", "job_id",
    "job_token", "fulfill", "fail", "claim_until",
]


def client(gw, api_key: str) -> IntentClient:
    return IntentClient(base_url=gw.base_url, api_key=api_key, timeout=15.0)


def publish(c: IntentClient, goal: str, payload: Any, namespace: str = "default",
            visibility: str = "private", idempotency_key: Optional[str] = None, **v2_only) -> str:
    """Publish through the SDK and return the new intent's id."""
    if IS_V2:
        res = c.publish(goal, payload, namespace=namespace, visibility=visibility,
                        idempotency_key=idempotency_key, **v2_only)
        assert res is not None and isinstance(res.id, str) and res.id
        assert res.status in ("open", "published"), res
        return res.id
    assert not v2_only, f"1.3.2 cannot send {sorted(v2_only)}"
    res = c.publish(goal, payload, visibility=visibility, idempotency_key=idempotency_key,
                    namespace=namespace)
    assert isinstance(res, dict) and isinstance(res.get("id"), str) and res["id"], res
    return res["id"]


def job_id(job) -> Optional[str]:
    return job.get("id") if job else None


def job_token(job) -> Optional[str]:
    return job.get("claim_token") if job else None


def fulfill(c: IntentClient, job, result: Optional[Dict[str, Any]] = None):
    """Fulfill the way each SDK generation does: 2.1.2 with the lease token, 1.3.2 with kwargs."""
    if IS_V2:
        if result is None:
            return c.fulfill(job_id(job), job_token(job))
        return c.fulfill(job_id(job), job_token(job), result=result)
    return c.fulfill(job_id(job), **(result or {}))


def fail(c: IntentClient, job, error: str):
    if IS_V2:
        return c.fail(job_id(job), job_token(job), error=error)
    return c.fail(job_id(job), error)


def claim_until(claim: Callable[[], Any], timeout: float, interval: float = 0.1):
    """Poll `claim()` until it yields a job (status 200) or `timeout` passes.

    Returns (job_or_None, seconds_waited)."""
    start = time.monotonic()
    while True:
        job = claim()
        if job is not None and getattr(job, "status_code", None) == 200 and job_id(job):
            return job, time.monotonic() - start
        if time.monotonic() - start >= timeout:
            return None, time.monotonic() - start
        time.sleep(interval)


class _ExpectLeaseLost:
    """Context manager: the block must fail the way a lost lease does for this SDK.

    2.1.2: IntentBusLeaseLostError (its transport maps 404 on fulfill/fail/extend_claim).
    1.3.2: a plain IntentBusError (not auth / rate limit) carrying a 404 error code."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            raise AssertionError("expected the gateway to refuse (404 lease lost), but the call succeeded")
        if IS_V2:
            if not issubclass(exc_type, LeaseLost):
                return False
            return True
        if not issubclass(exc_type, IntentBusError) or issubclass(
            exc_type, (IntentBusAuthError, IntentBusRateLimitError)
        ):
            return False
        msg = str(exc)
        assert msg.split(":", 1)[0] in ("lease_lost", "not_found"), f"unexpected refusal: {msg!r}"
        return True


def expect_lease_lost() -> _ExpectLeaseLost:
    return _ExpectLeaseLost()
