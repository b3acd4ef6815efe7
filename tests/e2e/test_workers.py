"""The SDKs' own worker loops and CLIs against the gateway.

- 2.1.2 `WorkerRuntime.listen`, 1.3.2 `IntentClient.listen`, each in a background
  thread, stopped by a sentinel job whose handler raises KeyboardInterrupt.
- `intent-bus publish` / `intent-bus listen --once` (and 2.1.2 `status` / `result`)
  run in-process through `intent_bus.cli.main()`, the way a user's wrapper would:
  sys.argv patched, INTENT_API_KEY set, and IntentClient's default base_url
  pointed at the gateway.
"""

from __future__ import annotations

import re
import sys
import threading

import pytest

from agw_testkit.responses import describe
from support import sdk


def _publish(gw, key, c, goal, payload, **fields):
    if sdk.IS_V2 or not fields:
        return sdk.publish(c, goal, payload, **fields)
    res = gw.raw(key).publish(goal, payload, **fields)
    assert res.status_code == 201, describe(res)
    return res.json()["id"]


def test_listen_loop_processes_jobs(gw, tenant, client_for, uniq):
    c = client_for(gw, tenant)
    goal = f"acme/loop-{uniq}"
    doubles = {n: _publish(gw, tenant, c, goal, {"n": n}) for n in (1, 2, 3)}
    none_id = _publish(gw, tenant, c, goal, {"mode": "none"})
    reject_id = _publish(gw, tenant, c, goal, {"mode": "reject"}, max_attempts=1)
    crash_id = _publish(gw, tenant, c, goal, {"mode": "crash"}, max_attempts=1)
    text_id = _publish(gw, tenant, c, goal, {"mode": "text"}) if sdk.IS_V2 else None
    stop_id = _publish(gw, tenant, c, goal, {"stop": True}, priority=0)  # claimed last

    seen = []

    def handler(payload):
        seen.append(payload)
        if payload.get("stop"):
            raise KeyboardInterrupt  # both loops treat this as a clean shutdown
        mode = payload.get("mode")
        if mode == "none":
            return None
        if mode == "reject":
            return False
        if mode == "crash":
            raise RuntimeError("handler exploded")
        if mode == "text":
            return {"result": "plain ✓", "result_type": "text"}
        return {"doubled": payload["n"] * 2}

    worker = client_for(gw, tenant)
    if sdk.IS_V2:
        rt = sdk.WorkerRuntime(worker, worker_id="loop-worker", poll_interval=0.2)
        target, args, kwargs = rt.listen, (goal, handler), {}
    else:
        target, args, kwargs = worker.listen, (goal, handler), {"poll_interval": 0.2, "worker_id": "loop-worker"}
    th = threading.Thread(target=target, args=args, kwargs=kwargs, daemon=True, name="listen")
    th.start()
    th.join(timeout=45)
    assert not th.is_alive(), f"listen loop did not stop; handled so far: {seen}"
    assert seen[-1] == {"stop": True}
    assert len(seen) == len(doubles) + 3 + (1 if sdk.IS_V2 else 0) + 1, seen

    raw = gw.raw(tenant)

    def res(iid):
        r = raw.result(iid)
        assert r.status_code == 200, describe(r)
        return r.json()

    for n, iid in doubles.items():
        r = res(iid)
        assert r["status"] == "fulfilled" and r["result"] == {"doubled": 2 * n}, r
    r = res(none_id)
    assert r["status"] == "fulfilled" and r["result"] in (None, {}), r
    for iid, msg in ((reject_id, "Worker handler returned False"), (crash_id, "handler exploded")):
        st = raw.status(iid).json()
        assert st["status"] == "dead" and msg in (st.get("error") or ""), st
    if text_id:
        r = res(text_id)
        assert (r["status"], r["result"], r["result_type"]) == ("fulfilled", "plain ✓", "text"), r
    assert raw.status(stop_id).json()["status"] == "claimed"


@pytest.fixture
def cli(gw, monkeypatch, capsys, tmp_path):
    """Run `intent-bus ...` in-process against the gateway; returns stdout."""
    import intent_bus.cli as cli_mod

    monkeypatch.setenv("HOME", str(tmp_path))  # never read a real ~/.apikey
    init = sdk.IntentClient.__init__
    monkeypatch.setattr(init, "__defaults__", (gw.base_url,) + tuple(init.__defaults__[1:]))

    def run(key, *argv):
        monkeypatch.setenv("INTENT_API_KEY", key)
        monkeypatch.setattr(sys, "argv", ["intent-bus", *argv])
        capsys.readouterr()
        try:
            cli_mod.main()
        except SystemExit as e:
            assert e.code in (None, 0), f"CLI exited {e.code}"
        return capsys.readouterr().out

    return run


def _published_id(out: str) -> str:
    m = re.search(r"ID: ([^\s|]+)", out)
    assert m and "pub_done" in out, f"publish did not report an id:\n{out}"
    return m.group(1)


def test_cli_publish_and_listen_once(gw, tenant, cli, uniq):
    goal, ns = f"cli/job-{uniq}", f"cli-{uniq}"
    out = cli(tenant, "publish", goal, '{"to": "user@example.com", "n": 1}', "-n", ns)
    iid = _published_id(out)
    st = gw.raw(tenant).status(iid).json()
    assert st["status"] == "open" and st["goal"] == goal and st["namespace"] == ns, st

    out = cli(tenant, "listen", goal, "-n", ns, "--once", "-w", "cli-worker")
    assert "fulfilled" in out and iid in out, out
    res = gw.raw(tenant).result(iid).json()
    assert res["status"] == "fulfilled" and res["result"] == {"status": "processed_by_cli"}, res

    out = cli(tenant, "listen", goal, "-n", ns, "--once")
    assert "idle" in out and "fulfilled" not in out, out


def test_cli_public_publish_claimed_by_other_tenant(gw, tenant, other_tenant, cli, uniq):
    goal = f"cli-public-{uniq}"
    iid = _published_id(cli(tenant, "publish", goal, '{"p": 1}', "-n", f"pub-{uniq}", "--public"))
    out = cli(other_tenant, "listen", goal, "-n", f"elsewhere-{uniq}", "--once")
    assert "fulfilled" in out and iid in out, out
    assert gw.raw(tenant).result(iid).json()["result"] == {"status": "processed_by_cli"}


def test_cli_reports_auth_errors(gw, cli, uniq):
    out = cli("agw_not_a_real_key_" + uniq, "publish", f"x-{uniq}", "{}")
    assert "unauthorized" in out, out


@pytest.mark.skipif(not sdk.IS_V2, reason="2.1.2 CLI options and commands")
def test_cli_v2_options_status_result(gw, tenant, cli, uniq):
    goal = f"cli2-{uniq}"
    cap = f"ocr-{uniq}"
    args = ["publish", goal, '{"doc": "scan.png", "api_key": "hidden"}', "--priority", "900",
            "--capability", cap, "--max-attempts", "2", "--idempotency", f"idem-{uniq}"]
    iid = _published_id(cli(tenant, *args))
    assert _published_id(cli(tenant, *args)) == iid  # idempotent replay -> same intent

    out = cli(tenant, "listen", goal, "--once")
    assert "idle" in out, out  # missing capability
    out = cli(tenant, "listen", goal, "--once", "-c", f"cpu,{cap}")
    assert "fulfilled" in out and "********" in out and "hidden" not in out, out

    out = cli(tenant, "status", iid)
    assert f"ID: {iid}" in out and "State: fulfilled" in out, out
    out = cli(tenant, "result", iid)
    assert "Type: json" in out and "processed_by_cli" in out, out
    out = cli(tenant, "status", "does-not-exist")
    assert "api_err" in out or "not_found" in out, out
