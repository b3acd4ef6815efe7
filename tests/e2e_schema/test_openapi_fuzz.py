"""schemathesis against the gateway's own OpenAPI document: no 5xx on any route.

`schemathesis run <gateway>/openapi.json` (config: schemathesis.toml, hooks:
schema_hooks.py) drives the documented operations -- coverage, fuzzing
(positive and negative data) and stateful phases -- and checks
`not_a_server_error` on every response. Two passes on the same gateway:

1. every operation with a tenant API key (the admin routes answer it 403);
2. the admin routes (`/admin/...`) with the admin key, so their handlers
   judge the fuzzed data too.

Each pass's JSON report is its verdict: every selected operation tested, no
check failure, no error (a network error is a request the gateway never
answered: a crash, a reset connection, a hang past the request timeout).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import List

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "schemathesis.toml"
HOOKS = HERE / "schema_hooks.py"
#: Wall-clock limit of one schemathesis pass (pytest.ini's timeout is 540 s per test).
RUN_TIMEOUT_S = float(os.environ.get("AGW_SCHEMA_RUN_TIMEOUT", "420"))
ADMIN_ROUTES = "^/admin/"


def _section(output: str, title: str) -> str:
    """The `=== TITLE ===` section of schemathesis's console output ('' if absent)."""
    lines = output.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("=") and f" {title} " in line), None)
    if start is None:
        return ""
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("=") and lines[i].endswith("=")),
               len(lines))
    return "\n".join(lines[start:end])


def run_schemathesis(gw, name: str, api_key: str, extra: List[str], capsys, worker=None) -> None:
    """One schemathesis pass against `gw` as `api_key`; fails on any 5xx or unanswered request."""
    out_dir = gw.workdir / f"schemathesis-{name}"
    cmd = [str(Path(sys.executable).with_name("schemathesis")), "--config-file", str(CONFIG),
           "run", f"{gw.base_url}/openapi.json", *extra,
           "--report", "json,junit,ndjson", "--report-dir", str(out_dir), "--no-color"]
    if os.environ.get("AGW_SCHEMA_MAX_EXAMPLES"):
        cmd += ["--max-examples", os.environ["AGW_SCHEMA_MAX_EXAMPLES"]]
    if os.environ.get("AGW_SCHEMA_SEED"):
        cmd += ["--seed", os.environ["AGW_SCHEMA_SEED"]]
    env = dict(os.environ, AGW_SCHEMA_BASE_URL=gw.base_url, AGW_SCHEMA_API_KEY=api_key,
               SCHEMATHESIS_HOOKS=str(HOOKS), COLUMNS="120")
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / "console.log"
    started = time.monotonic()
    with open(log_path, "w") as log:
        proc = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                              cwd=gw.workdir, timeout=RUN_TIMEOUT_S)
    secs = time.monotonic() - started
    note = f", {worker.answered} jobs answered by the worker" if worker is not None else ""
    output = log_path.read_text(errors="replace")
    reports = sorted(out_dir.glob("json-*.json"))
    assert reports, f"schemathesis exited {proc.returncode} without a JSON report:\n{output[-6000:]}"
    report = json.loads(reports[-1].read_text())

    ops, cases = report["operations"], report["test_cases"]
    summary = (f"schemathesis ({name}): {ops['tested']}/{ops['selected']} operations, "
               f"{cases['generated']} test cases, {secs:.0f}s{note}, seed {report['seed']} (log {log_path})")
    with capsys.disabled():
        print("\n" + summary)
        if warnings := _section(output, "WARNINGS"):
            print(warnings)

    details = "\n".join(s for s in (_section(output, "FAILURES"), _section(output, "ERRORS")) if s)
    assert not report["failures"], f"server errors found ({summary}):\n{details}"
    assert not report["errors"], f"requests the gateway did not answer ({summary}):\n{details}"
    assert ops["tested"] == ops["selected"] and not ops["errored"], (
        f"not every operation was tested: {ops}\n{output[-4000:]}")
    assert report["complete"] and proc.returncode == 0, (
        f"schemathesis exited {proc.returncode} ({report['stop_reason']}):\n{output[-6000:]}")
    assert gw.alive(), f"the gateway died under the fuzzer; stderr:\n{gw.stderr_tail()}"


def test_no_server_error_on_any_route(gw, tenant_key, job_worker, capsys):
    run_schemathesis(gw, "tenant", tenant_key, [], capsys, worker=job_worker)


def test_no_server_error_on_admin_routes(gw, capsys):
    # After the tenant pass (file order), with the job worker stopped: the
    # stateful phase may revoke any key GET /admin/keys lists, the tenant's too.
    run_schemathesis(gw, "admin", gw.admin_key, ["--include-path-regex", ADMIN_ROUTES], capsys)
