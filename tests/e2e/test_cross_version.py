"""Mixed fleets: the installed SDK on one side, the OTHER SDK generation on the other.

The other generation runs in its own venv (AGW_E2E_OTHER_PYTHON, set by run.sh)
through support/other_sdk.py, so 1.3.2 publishers feed 2.1.2 workers and back.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from agw_testkit.responses import describe
from support import sdk

OTHER_SCRIPT = Path(__file__).resolve().parent / "support" / "other_sdk.py"
PAYLOAD = {"msg": "grüße ✓", "list": [1, {"two": 2}]}


@pytest.fixture(scope="module")
def other_python():
    py = os.environ.get("AGW_E2E_OTHER_PYTHON")
    if not py:
        if os.environ.get("AGW_E2E_REQUIRE_OTHER"):
            pytest.fail("AGW_E2E_OTHER_PYTHON is not set")
        pytest.skip("AGW_E2E_OTHER_PYTHON not set (run through tests/e2e/run.sh)")
    probe = subprocess.run([py, "-c", "import intent_bus; print(intent_bus.__version__)"],
                           capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr
    version = probe.stdout.strip()
    assert version.split(".")[0] != sdk.SDK_VERSION.split(".")[0], (
        f"the other interpreter has intent-bus {version}, same generation as this one ({sdk.SDK_VERSION})")
    return py, version


def run_other(other_python, **args):
    py, _ = other_python
    res = subprocess.run([py, str(OTHER_SCRIPT), json.dumps(args)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, f"other SDK failed ({res.returncode}):\nstdout: {res.stdout}\nstderr: {res.stderr}"
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_this_sdk_publishes_other_sdk_works(gw, tenant, client_for, other_python, uniq):
    c = client_for(gw, tenant)
    goal, ns = f"mixed/up-{uniq}", f"mix-{uniq}"
    iid = sdk.publish(c, goal, PAYLOAD, namespace=ns)
    out = run_other(other_python, action="work", base_url=gw.base_url, api_key=tenant, goal=goal, namespace=ns)
    assert out["id"] == iid and out["payload"] == PAYLOAD, out
    assert out["version"] == other_python[1]
    res = gw.raw(tenant).result(iid)
    assert res.status_code == 200, describe(res)
    body = res.json()
    assert body["status"] == "fulfilled", body
    assert body["result"] == {"worker_sdk": other_python[1], "echo": PAYLOAD}, body
    if sdk.IS_V2:
        assert c.get_result(iid).result == body["result"]


def test_other_sdk_publishes_this_sdk_works(gw, tenant, other_tenant, client_for, other_python, uniq):
    """Other generation publishes a public intent; this SDK, as another tenant, works it."""
    goal = f"mixed/down-{uniq}"
    out = run_other(other_python, action="publish", base_url=gw.base_url, api_key=tenant, goal=goal,
                    payload=PAYLOAD, namespace=f"pub-{uniq}", visibility="public")
    iid = out["id"]
    worker = client_for(gw, other_tenant)
    job = worker.claim(goal, namespace=f"mine-{uniq}")
    assert job.status_code == 200 and sdk.job_id(job) == iid and job.get("payload") == PAYLOAD
    sdk.fulfill(worker, job, {"worker_sdk": sdk.SDK_VERSION})
    body = gw.raw(tenant).result(iid).json()
    assert body["status"] == "fulfilled" and body["result"] == {"worker_sdk": sdk.SDK_VERSION}, body
