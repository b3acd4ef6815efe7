"""Execution events for the targeted e2e tests (`GET /api/v1/events`, the keys,
`POST /v1/events`) and the independent check of one chain with the `intentproof`
package (tests/events/verify_with_intentproof.py in the AGW_EVENTS_PYTHON venv).

Every gateway's whole event log is also checked when its use ends (gateway.py);
these helpers let a test pin the events of its own dispatch (tests/e2e,
e2e_neuron and e2e_governance test_events.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional

import requests

from . import REPO
from .responses import describe

VERIFIER = REPO / "tests/events/verify_with_intentproof.py"
SENTINEL = "sha256:" + "0" * 64
#: The fields of a v1 event, as the schema requires them (all of them, always).
V1_REQUIRED = {
    "schema", "event_id", "tenant_id", "instance_id", "correlation_id", "provenance_class",
    "prev_event_hash", "chain_position", "intent", "action", "status", "started_at", "completed_at",
    "duration_ms", "untrusted_payload", "spec_version", "sdk_version", "signature",
}
#: The compact (camelCase) shape's fields; `error` only when the event has one.
COMPACT_FIELDS = {
    "id", "correlationId", "intent", "action", "inputs", "output", "status", "startedAt",
    "completedAt", "durationMs", "attributes",
}


def events_res(base_url: str, token: Optional[str], path: str = "/api/v1/events",
               **params: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(base_url.rstrip("/") + path, headers=headers,
                        params={k: v for k, v in params.items() if v is not None}, timeout=15)


def list_events(base_url: str, token: str, **params: Any) -> List[Dict[str, Any]]:
    """One JSON page of `GET /api/v1/events` (asserts 200 and the envelope)."""
    res = events_res(base_url, token, **params)
    assert res.status_code == 200, describe(res)
    body = res.json()
    assert set(body) == {"events", "next_after"}, f"event list envelope: {body!r}"[:500]
    assert isinstance(body["events"], list), body
    return body["events"]


def chain_of(base_url: str, token: str, correlation_id: str) -> List[Dict[str, Any]]:
    return list_events(base_url, token, correlation_id=correlation_id)


def keys(base_url: str) -> Dict[str, str]:
    """{key_id: base64 public key} from `GET /api/v1/events/keys` (no auth)."""
    res = requests.get(base_url.rstrip("/") + "/api/v1/events/keys", timeout=15)
    assert res.status_code == 200, describe(res)
    return {k["key_id"]: k["public_key"] for k in res.json()["keys"]}


def verify_independently(events: List[Dict[str, Any]], key_map: Dict[str, str]) -> str:
    """Run the `intentproof` verifier on `events` (JSONL, in order) with `key_map`;
    asserts it accepts them, returns its summary line."""
    python = os.environ.get("AGW_EVENTS_PYTHON")
    assert python, "AGW_EVENTS_PYTHON is not set (run the suite through its run.sh)"
    with tempfile.TemporaryDirectory(prefix="agw-events-") as d:
        keys_path = Path(d) / "keys.json"
        keys_path.write_text(json.dumps(key_map), encoding="utf-8")
        res = subprocess.run(
            [python, str(VERIFIER), "--keys", str(keys_path)],
            input="".join(json.dumps(e) + "\n" for e in events),
            capture_output=True, text=True, timeout=60,
        )
    assert res.returncode == 0, (
        f"intentproof rejects the events (exit {res.returncode}):\n{res.stderr}\n{res.stdout}\n"
        f"events: {json.dumps(events)[:3000]}")
    return res.stdout.strip()


def assert_v1(event: Dict[str, Any]) -> None:
    missing = V1_REQUIRED - set(event)
    assert not missing, f"event lacks {sorted(missing)}: {event}"
    assert event["schema"] == "intentproof.event.v1", event
    assert event["signature"]["alg"] == "ed25519", event


def tamper_sqlite(db_path: Path, event_id: str, mutate) -> str:
    """Rewrite one event's stored body in a SQLite store; returns the original body."""
    import sqlite3

    con = sqlite3.connect(str(db_path), timeout=30)
    try:
        [(body,)] = con.execute("SELECT body FROM events WHERE event_id = ?", (event_id,)).fetchall()
        doc = json.loads(body)
        mutate(doc)
        with con:
            con.execute("UPDATE events SET body = ? WHERE event_id = ?", (json.dumps(doc), event_id))
        return body
    finally:
        con.close()


def restore_sqlite(db_path: Path, event_id: str, body: str) -> None:
    import sqlite3

    con = sqlite3.connect(str(db_path), timeout=30)
    try:
        with con:
            con.execute("UPDATE events SET body = ? WHERE event_id = ?", (body, event_id))
    finally:
        con.close()


def _psql(url: str, sql: str, *args: str) -> str:
    cmd = ["psql", url, "-v", "ON_ERROR_STOP=1", "-qAt"]
    for i, a in enumerate(args):
        cmd += ["-v", f"a{i}={a}"]
    res = subprocess.run(cmd, input=sql, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, f"psql failed: {res.stderr}"
    return res.stdout


def tamper_postgres(url: str, event_id: str, mutate) -> str:
    """Rewrite one event's stored body in a PostgreSQL store (psql); returns the original body."""
    body = _psql(url, "SELECT body FROM events WHERE event_id = :'a0';", event_id).rstrip("\n")
    doc = json.loads(body)
    mutate(doc)
    _psql(url, "UPDATE events SET body = :'a1' WHERE event_id = :'a0';", event_id, json.dumps(doc))
    return body


def restore_postgres(url: str, event_id: str, body: str) -> None:
    _psql(url, "UPDATE events SET body = :'a1' WHERE event_id = :'a0';", event_id, body)


WORKER = REPO / "tests/events/intentproof_worker.py"


def run_intentproof_worker(base_url: str, token: str, correlation_id: str, intent: str, action: str,
                           payload: Any, tenant_id: Optional[str] = None) -> Dict[str, Any]:
    """Do one dispatch's work in tests/events/intentproof_worker.py (the real `intentproof`
    SDK, AGW_EVENTS_PYTHON venv) with INTENTPROOF_INGEST_URL=<gateway>/v1/events and
    INTENTPROOF_INGEST_TOKEN=`token`; returns what it printed (result, key_id, public_key)."""
    python = os.environ.get("AGW_EVENTS_PYTHON")
    assert python, "AGW_EVENTS_PYTHON is not set (run the suite through its run.sh)"
    with tempfile.TemporaryDirectory(prefix="agw-ipworker-") as d:
        env = {k: v for k, v in os.environ.items() if not k.startswith("INTENTPROOF_")}
        env.update({"INTENTPROOF_INGEST_URL": base_url.rstrip("/") + "/v1/events",
                    "INTENTPROOF_INGEST_TOKEN": token, "HOME": d})
        job = {"correlation_id": correlation_id, "intent": intent, "action": action,
               "payload": payload, "data_dir": d, "tenant_id": tenant_id}
        res = subprocess.run([python, str(WORKER), json.dumps(job)], env=env, capture_output=True,
                             text=True, timeout=60)
    assert res.returncode == 0, f"intentproof worker exited {res.returncode}:\n{res.stderr[-3000:]}"
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["ingest_url"] == base_url.rstrip("/") + "/v1/events", out
    assert not out["export_errors"], f"the SDK could not export its event: {out['export_errors']}"
    return out
