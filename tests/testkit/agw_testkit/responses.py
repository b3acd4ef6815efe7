"""Responses in assertion messages, and the contract's error body."""

from __future__ import annotations

from typing import Optional

import requests


def describe(res: requests.Response) -> str:
    """`METHOD /path?query -> status 'body'` (body cut at 500 characters)."""
    body = res.text
    if len(body) > 500:
        body = body[:500] + "..."
    return f"{res.request.method} {res.request.path_url} -> {res.status_code} {body!r}"


def error_code(res: requests.Response) -> Optional[str]:
    """The `error.code` of an error response, or None when the body is not the contract shape."""
    try:
        data = res.json()
    except ValueError:
        return None
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        code = data["error"].get("code")
        return code if isinstance(code, str) else None
    return None
