#!/usr/bin/env python3
"""Verify agent-gateway execution events with the independent `intentproof` package.

Reads signed ExecutionEvent v1 objects as JSON Lines on stdin and checks, using
only `intentproof` (PyPI, 0.2.1) for canonicalization, hashing and signatures:
- every signature, with `intentproof.signing.verify_event_signature` and the
  public key named by the event's `signature.key_id`;
- every chain (per `correlation_id`, in input order): positions 1, 2, 3, ...,
  `prev_event_hash` equal to the sentinel at position 1 and otherwise to
  `intentproof.signing.event_content_hash` of the previous event;
- optionally (`--hashes FILE`, a JSON list of {event_id, hash}) that
  `event_content_hash` equals the hash the gateway computed.

Keys come from `--keys FILE`: a JWKS as `GET /api/v1/events/keys` serves it
({"keys": [{"kid": ..., "x": <base64url raw key>}]}) or a plain
{"<key_id>": "<base64 raw key>"} object.

Usage:
    python3 -m venv /tmp/ipvenv && /tmp/ipvenv/bin/pip install intentproof==0.2.1
    /tmp/ipvenv/bin/python tests/events/verify_with_intentproof.py \
        --keys DIR/keys.json [--hashes DIR/hashes.json] < DIR/events.jsonl

Exits 0 when everything verifies, 1 otherwise (each failure on stderr).
"""

from __future__ import annotations

import argparse
import base64
import json
import sys

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from intentproof.signing import (
    SENTINEL_PREV_HASH,
    event_content_hash,
    verify_event_signature,
)


def b64_any(text: str) -> bytes:
    """Decode standard or URL-safe base64, padded or not."""
    text = text.strip().replace("-", "+").replace("_", "/")
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def load_keys(path: str) -> dict[str, Ed25519PublicKey]:
    with open(path, encoding="utf-8") as handle:
        doc = json.load(handle)
    if isinstance(doc, dict) and isinstance(doc.get("keys"), list):
        pairs = [(jwk["kid"], jwk["x"]) for jwk in doc["keys"]]
    else:
        pairs = list(doc.items())
    return {kid: Ed25519PublicKey.from_public_bytes(b64_any(x)) for kid, x in pairs}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", required=True, help="JWKS or {key_id: base64} file")
    parser.add_argument("--hashes", help="JSON list of {event_id, hash} to compare")
    args = parser.parse_args()

    keys = load_keys(args.keys)
    expected_hashes: dict[str, str] = {}
    if args.hashes:
        with open(args.hashes, encoding="utf-8") as handle:
            expected_hashes = {h["event_id"]: h["hash"] for h in json.load(handle)}

    failures: list[str] = []
    heads: dict[str, tuple[int, str]] = {}
    count = 0
    for line_no, line in enumerate(sys.stdin, start=1):
        if not line.strip():
            continue
        count += 1
        event = json.loads(line)
        where = f"line {line_no} event {event.get('event_id')} chain {event.get('correlation_id')!r}"

        key_id = (event.get("signature") or {}).get("key_id")
        key = keys.get(key_id)
        if key is None:
            failures.append(f"{where}: unknown key {key_id!r}")
        elif not verify_event_signature(event, key):
            failures.append(f"{where}: signature does not verify")

        seen, prev_hash = heads.get(event["correlation_id"], (0, SENTINEL_PREV_HASH))
        if event["chain_position"] != seen + 1:
            failures.append(
                f"{where}: chain_position {event['chain_position']}, expected {seen + 1}"
            )
        if event["prev_event_hash"] != prev_hash:
            failures.append(
                f"{where}: prev_event_hash {event['prev_event_hash']}, expected {prev_hash}"
            )
        content_hash = event_content_hash(event)
        want = expected_hashes.get(event["event_id"])
        if want is not None and want != content_hash:
            failures.append(f"{where}: event_content_hash {content_hash}, gateway said {want}")
        heads[event["correlation_id"]] = (seen + 1, content_hash)

    for failure in failures:
        print(failure, file=sys.stderr)
    compared = f", {len(expected_hashes)} hashes compared" if expected_hashes else ""
    print(
        f"intentproof check: {count} events in {len(heads)} chains, "
        f"{len(failures)} failures{compared}"
    )
    return 1 if failures or count == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
