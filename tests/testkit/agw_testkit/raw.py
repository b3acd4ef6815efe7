"""Hand-built Intent Bus requests, signed per the wire contract.

This is an independent implementation of the strict-mode signature
(shared/protocols/intent-bus.md, "Authentication"), used where a test needs
byte-level control the SDKs do not give: replaying a request, a stale
timestamp, a bad signature, malformed bodies, fields the 1.3.2 SDK cannot
send (priority, max_attempts, ...), or the long-poll `wait` parameter.
tests/e2e/test_auth.py checks that it agrees with the installed SDK's own signer.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from typing import Any, Iterable, Mapping, Optional, Sequence, Tuple, Union
from urllib.parse import quote

import requests

Params = Optional[Union[Mapping[str, Any], Sequence[Tuple[str, Any]]]]

_UNSET = object()


def canonical_path(path: str, params: Params = None) -> str:
    """path + '?' + params sorted by key, each key/value quote(safe='')."""
    if not params:
        return path
    items: Iterable[Tuple[str, Any]] = params.items() if isinstance(params, Mapping) else params
    pairs = [(str(k), str(v)) for k, v in items if v is not None]
    if not pairs:
        return path
    pairs.sort(key=lambda kv: kv[0])
    return path + "?" + "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)


def signature(api_key: str, method: str, canon: str, ts: str, nonce: str, body: bytes) -> str:
    msg = b"\n".join([method.upper().encode(), canon.encode(), ts.encode(), nonce.encode(), body])
    return hmac.new(api_key.encode(), msg, hashlib.sha256).hexdigest()


def encode_body(body: Any) -> bytes:
    if body is None:
        return b""
    if isinstance(body, (bytes, bytearray)):
        return bytes(body)
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


class PreparedSigned:
    """A fully signed request that can be sent (and re-sent) verbatim."""

    def __init__(self, method: str, url: str, headers: dict, body: bytes):
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body

    def send(self, timeout: float = 15.0) -> requests.Response:
        return requests.request(
            self.method, self.url, headers=self.headers, data=self.body or None, timeout=timeout
        )


class RawClient:
    """Minimal signed client bound to one API key (or none)."""

    def __init__(self, base_url: str, api_key: Optional[str]):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key

    def prepare(
        self,
        method: str,
        path: str,
        params: Params = None,
        body: Any = None,
        headers: Optional[Mapping[str, str]] = None,
        sign: bool = True,
        ts: Optional[Union[int, str]] = None,
        nonce: Optional[str] = None,
        sig: Optional[str] = None,
    ) -> PreparedSigned:
        canon = canonical_path(path, params)
        raw = encode_body(body)
        hdrs = {"Content-Type": "application/json"}
        if self.api_key is not None:
            hdrs["X-API-KEY"] = self.api_key
            if sign:
                ts_s = str(int(time.time()) if ts is None else ts)
                nonce_s = nonce or secrets.token_hex(16)
                hdrs["X-Timestamp"] = ts_s
                hdrs["X-Nonce"] = nonce_s
                hdrs["X-Signature"] = sig or signature(self.api_key, method, canon, ts_s, nonce_s, raw)
        if headers:
            hdrs.update(headers)
        return PreparedSigned(method.upper(), self.base_url + canon, hdrs, raw)

    def request(self, method: str, path: str, params: Params = None, body: Any = None,
                timeout: float = 15.0, **kw) -> requests.Response:
        return self.prepare(method, path, params=params, body=body, **kw).send(timeout=timeout)

    # -- convenience wrappers -------------------------------------------------
    def publish(self, goal: Any = _UNSET, payload: Any = _UNSET, idempotency_key: Optional[str] = None,
                **fields) -> requests.Response:
        body = dict(fields)
        if goal is not _UNSET:
            body["goal"] = goal
        if payload is not _UNSET:
            body["payload"] = payload
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return self.request("POST", "/intent", body=body, headers=headers)

    def claim(self, goal: Optional[str] = None, namespace: str = "default", worker_id: Optional[str] = None,
              capabilities: Optional[str] = None, publisher: Optional[str] = None,
              wait: Optional[int] = None, timeout: float = 15.0) -> requests.Response:
        params = {"namespace": namespace, "goal": goal, "publisher": publisher, "wait": wait}
        headers = {}
        if worker_id:
            headers["X-Worker-ID"] = worker_id
        if capabilities:
            headers["X-Worker-Capabilities"] = capabilities
        return self.request("POST", "/claim", params=params, headers=headers, timeout=timeout)

    def status(self, intent_id: str) -> requests.Response:
        return self.request("GET", f"/status/{intent_id}")

    def result(self, intent_id: str) -> requests.Response:
        return self.request("GET", f"/result/{intent_id}")

    def fulfill(self, intent_id: str, body: Any = None) -> requests.Response:
        return self.request("POST", f"/fulfill/{intent_id}", body=body)

    def fail(self, intent_id: str, body: Any = None) -> requests.Response:
        return self.request("POST", f"/fail/{intent_id}", body=body)
