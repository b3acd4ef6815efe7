"""Assertions on Intent Bus responses (status, error body, standard headers)."""

from __future__ import annotations

from typing import Optional

import requests

from agw_testkit.responses import describe, error_code

INTENT_VERSION = "7.61"


def assert_error(res: requests.Response, status: int, code: Optional[str] = None) -> None:
    """`res` is an error of HTTP `status` with the contract body {"error":{"code","message"}}."""
    assert res.status_code == status, describe(res)
    got = error_code(res)
    assert got is not None, f"error body lacks error.code: {describe(res)}"
    data = res.json()["error"]
    assert isinstance(data.get("message"), str), f"error body lacks error.message: {describe(res)}"
    if code is not None:
        assert got == code, f"expected error.code {code!r}: {describe(res)}"


def assert_client_error(res: requests.Response, status: Optional[int] = None, code: Optional[str] = None) -> None:
    """A clear 4xx with a JSON error.code (exact status when given)."""
    if status is not None:
        assert_error(res, status, code)
        return
    assert 400 <= res.status_code < 500, describe(res)
    assert error_code(res) is not None, f"4xx without JSON error.code: {describe(res)}"
    if code is not None:
        assert error_code(res) == code, describe(res)


def assert_std_headers(res: requests.Response) -> None:
    h = res.headers
    assert h.get("X-Intent-Version") == INTENT_VERSION, f"X-Intent-Version={h.get('X-Intent-Version')!r}: {describe(res)}"
    assert (h.get("X-Content-Type-Options") or "").lower() == "nosniff", f"nosniff missing: {describe(res)}"
    assert "no-store" in (h.get("Cache-Control") or "").lower(), f"Cache-Control={h.get('Cache-Control')!r}: {describe(res)}"


def assert_retry_after(res: requests.Response) -> int:
    ra = res.headers.get("Retry-After")
    assert ra is not None, f"Retry-After missing: {describe(res)}"
    assert ra.strip().isdigit(), f"Retry-After not delta-seconds: {ra!r}"
    return int(ra)
