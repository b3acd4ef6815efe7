#!/usr/bin/env python3
"""Export every execution event of a running gateway and check each one independently.

Run by the e2e harness (tests/testkit/agw_testkit/gateway.py) with the events venv
(tests/requirements-events.txt) when a gateway's use ends, one process per gateway:

1. pages through `GET /api/v1/events?export=jsonl` with the admin key (the
   `x-next-after` cursor) and fetches `GET /api/v1/events/keys`;
2. validates every event against the IntentProof v1 JSON Schema (Draft 2020-12,
   format checks on: `date-time` via rfc3339-validator);
3. verifies every signature and chain with `verify_with_intentproof.py` (the
   `intentproof` package: `verify_event_signature`, `event_content_hash`);
4. checks that each chain is one dispatch history: at most one event ends it
   (attributes.outcome fulfilled / dead / cancelled / blocked) and nothing
   follows that one; only `retry` / `expired` events come before it. An
   operator's retry (the console's Retry: outcome `retried`, status ok) may
   follow a `retry` / `expired` event, or reopen a chain a `dead` event ended.

Writes events.jsonl and keys.json to --out-dir (kept with the gateway's logs
when something fails) and prints one JSON summary line:
{"events": N, "keys": K, "pages": P, "failures": [...]}. Exits 0 when every
event passes (a gateway that wrote no events passes), 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Tuple

from jsonschema import Draft202012Validator

HERE = Path(__file__).resolve().parent
PAGE = 10_000  # the route's largest JSONL page
MAX_FAILURES = 20


def http_get(url: str, token: str | None) -> Tuple[int, Dict[str, str], bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(url, headers=headers, method="GET")
    try:
        with urllib.request.urlopen(req, timeout=30) as res:
            return res.status, {k.lower(): v for k, v in res.headers.items()}, res.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def export_all(base: str, admin_key: str) -> Tuple[List[str], int]:
    """Every gateway-written event, as the JSONL lines served (all pages)."""
    lines: List[str] = []
    after, pages = 0, 0
    while True:
        url = f"{base}/api/v1/events?export=jsonl&limit={PAGE}&after={after}"
        status, headers, body = http_get(url, admin_key)
        pages += 1
        if status != 200:
            raise RuntimeError(f"GET {url} -> {status} {body[:300]!r}")
        # JSONL lines end at "\n" only: str.splitlines() would also cut inside JSON
        # strings at U+0085, U+2028 and the other characters it counts as line ends.
        page = [ln for ln in body.decode("utf-8").split("\n") if ln.strip()]
        lines += page
        nxt = headers.get("x-next-after")
        if nxt is None:
            return lines, pages
        if not page or int(nxt) <= after:
            raise RuntimeError(f"GET {url}: x-next-after {nxt} does not advance (page of {len(page)})")
        after = int(nxt)
        if pages > 1000:
            raise RuntimeError("more than 1000 export pages: pagination does not end")


def fetch_keys(base: str) -> Dict[str, str]:
    status, _, body = http_get(f"{base}/api/v1/events/keys", None)
    if status != 200:
        raise RuntimeError(f"GET /api/v1/events/keys -> {status} {body[:300]!r}")
    return {k["key_id"]: k["public_key"] for k in json.loads(body)["keys"]}


def schema_failures(lines: List[str], schema_path: Path) -> List[str]:
    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    out: List[str] = []
    for n, line in enumerate(lines, start=1):
        try:
            event = json.loads(line)
        except ValueError as e:
            out.append(f"line {n}: not JSON ({e}): {line[:200]!r}")
            continue
        for err in validator.iter_errors(event):
            at = "/" + "/".join(str(p) for p in err.absolute_path)
            out.append(f"schema: event {event.get('event_id')} chain {event.get('correlation_id')!r} "
                       f"at {at}: {err.message}")
    return out


TERMINAL = {"fulfilled", "dead", "cancelled", "blocked"}
NON_TERMINAL = {"retry", "expired"}
#: An operator made the job claimable again: ends nothing, reopens a dead chain.
REOPENING = {"retried"}


def chain_failures(lines: List[str]) -> List[str]:
    """A settled dispatch ends its chain: nothing after a terminal outcome."""
    out: List[str] = []
    ended: Dict[str, str] = {}
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue  # reported by the schema check
        cid, eid = event.get("correlation_id"), event.get("event_id")
        outcome = (event.get("attributes") or {}).get("outcome")
        if outcome not in TERMINAL | NON_TERMINAL | REOPENING:
            out.append(f"chain: event {eid} chain {cid!r}: attributes.outcome {outcome!r} is not one of "
                       f"{sorted(TERMINAL | NON_TERMINAL | REOPENING)}")
            continue
        if outcome in REOPENING:
            if cid in ended and not ended[cid].endswith("(dead)"):
                out.append(f"chain: event {eid} ({outcome}) follows event {ended[cid]}: only a dead job "
                           "can be retried")
            ended.pop(cid, None)
            if event.get("status") != "ok":
                out.append(f"chain: event {eid} chain {cid!r}: outcome {outcome!r} with status "
                           f"{event.get('status')!r}")
            continue
        if cid in ended:
            out.append(f"chain: event {eid} ({outcome}, position {event.get('chain_position')}) follows event "
                       f"{ended[cid]} that already ended chain {cid!r}: one dispatch settled twice")
        if outcome in TERMINAL:
            ended.setdefault(cid, f"{eid} ({outcome})")
        if (outcome == "fulfilled") != (event.get("status") == "ok"):
            out.append(f"chain: event {eid} chain {cid!r}: outcome {outcome!r} with status {event.get('status')!r}")
    return out


def intentproof_failures(events_path: Path, keys_path: Path) -> Tuple[List[str], str]:
    """Runs verify_with_intentproof.main() on the exported file (same process)."""
    spec = importlib.util.spec_from_file_location("verify_with_intentproof", HERE / "verify_with_intentproof.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    out, err = io.StringIO(), io.StringIO()
    argv, stdin = sys.argv, sys.stdin
    try:
        sys.argv = ["verify_with_intentproof.py", "--keys", str(keys_path)]
        with open(events_path, encoding="utf-8") as f, contextlib.redirect_stdout(out), \
                contextlib.redirect_stderr(err):
            sys.stdin = f
            rc = mod.main()
    finally:
        sys.argv, sys.stdin = argv, stdin
    failures = [f"intentproof: {ln}" for ln in err.getvalue().splitlines() if ln.strip()]
    if rc != 0 and not failures:
        failures.append(f"intentproof: verifier exited {rc}: {out.getvalue().strip()}")
    return failures, out.getvalue().strip()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--admin-key", required=True)
    ap.add_argument("--schema", required=True, type=Path)
    ap.add_argument("--out-dir", required=True, type=Path)
    args = ap.parse_args()

    summary: Dict[str, Any] = {"events": 0, "keys": 0, "pages": 0, "failures": []}
    try:
        base = args.base_url.rstrip("/")
        lines, summary["pages"] = export_all(base, args.admin_key)
        keys = fetch_keys(base)
        summary["events"], summary["keys"] = len(lines), len(keys)
        args.out_dir.mkdir(parents=True, exist_ok=True)
        events_path, keys_path = args.out_dir / "events.jsonl", args.out_dir / "keys.json"
        events_path.write_text("".join(ln + "\n" for ln in lines), encoding="utf-8")
        keys_path.write_text(json.dumps(keys, indent=1), encoding="utf-8")
        failures = schema_failures(lines, args.schema) + chain_failures(lines)
        if lines:
            ip_failures, summary["intentproof"] = intentproof_failures(events_path, keys_path)
            failures += ip_failures
        summary["failures"] = failures[:MAX_FAILURES]
        summary["failure_count"] = len(failures)
    except Exception as e:  # noqa: BLE001 - everything is a reported failure
        summary["failures"] = [f"export: {type(e).__name__}: {e}"]
        summary["failure_count"] = 1
    print(json.dumps(summary))
    return 1 if summary["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
