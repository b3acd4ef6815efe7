"""Just enough JWS (compact, HS256) to build expired / forged / tampered tokens
from a gateway-minted one. Independent of the gateway's code on purpose."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any, Dict, Tuple


def b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def b64url_encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def split(token: str) -> Tuple[Dict[str, Any], Dict[str, Any], str]:
    h, p, s = token.split(".")
    return json.loads(b64url_decode(h)), json.loads(b64url_decode(p)), s


def claims(token: str) -> Dict[str, Any]:
    return split(token)[1]


def encode(header: Dict[str, Any], payload: Dict[str, Any], secret: str) -> str:
    signing_input = (b64url_encode(json.dumps(header, separators=(",", ":")).encode()) + "."
                     + b64url_encode(json.dumps(payload, separators=(",", ":")).encode()))
    sig = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64url_encode(sig)


def resign(token: str, secret: str, **changes: Any) -> str:
    """Same header and claims with `changes` applied (value None deletes), signed HS256 with `secret`."""
    header, payload, _ = split(token)
    for k, v in changes.items():
        if v is None:
            payload.pop(k, None)
        else:
            payload[k] = v
    header["alg"] = "HS256"
    return encode(header, payload, secret)


def tamper(token: str, **changes: Any) -> str:
    """Claims changed, ORIGINAL signature kept (must fail verification)."""
    header, payload, sig = split(token)
    payload.update(changes)
    return (b64url_encode(json.dumps(header, separators=(",", ":")).encode()) + "."
            + b64url_encode(json.dumps(payload, separators=(",", ":")).encode()) + "." + sig)


def alg_none(token: str) -> str:
    """The classic `alg: none` downgrade: same claims, no signature."""
    header, payload, _ = split(token)
    header["alg"] = "none"
    return (b64url_encode(json.dumps(header, separators=(",", ":")).encode()) + "."
            + b64url_encode(json.dumps(payload, separators=(",", ":")).encode()) + ".")
