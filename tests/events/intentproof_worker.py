#!/usr/bin/env python3
"""A worker instrumented with the real `intentproof` SDK (PyPI 0.2.1), for the e2e suites.

It does the work of one dispatch inside `intentproof.wrap(intent, action, fn)`
under `run_with_correlation_id(<the dispatch's correlation id>)`, so the SDK
signs one ExecutionEvent v1 and its HttpExporter POSTs it to
INTENTPROOF_INGEST_URL with `Authorization: Bearer $INTENTPROOF_INGEST_TOKEN`
(both from the environment, as the SDK reads them); then it flushes the
exporter and prints one JSON line:

    {"result": ..., "key_id": "<instance_id>:k1", "public_key": "<base64 raw>",
     "export_errors": [<SDK warnings about failed exports>]}

Usage: python intentproof_worker.py '{"correlation_id": ..., "intent": ...,
       "action": ..., "payload": ..., "data_dir": ...}'
"""

from __future__ import annotations

import base64
import json
import logging
import sys
from typing import Any, Dict, List

import intentproof
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from intentproof import client


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: List[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def main() -> int:
    job: Dict[str, Any] = json.loads(sys.argv[1])
    errors = _Collect()
    logging.getLogger("intentproof").addHandler(errors)

    intentproof.configure(data_dir=job["data_dir"], tenant_id=job.get("tenant_id"))
    assert client.get_exporter() is not None, "INTENTPROOF_INGEST_URL is not set"

    def work(payload: Any) -> Dict[str, Any]:
        return {"echo": payload, "worker": "intentproof-sdk"}

    wrapped = intentproof.wrap(job["intent"], job["action"], work)
    result = intentproof.run_with_correlation_id(job["correlation_id"], lambda: wrapped(job["payload"]))
    intentproof.flush()

    raw = client.get_public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    print(json.dumps({
        "result": result,
        "key_id": f"{client.get_instance_id()}:k1",
        "public_key": base64.b64encode(raw).decode("ascii"),
        "ingest_url": client.get_exporter().ingest_url,
        "export_errors": errors.messages,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
