"""At-least-once, never lost: a job accepted with a 2xx survives a kill -9 of
the daemon at any instant, and so do live leases and API keys."""

import threading

import requests

from support import sdk


def _kill9_and_restart(g):
    """SIGKILL (no shutdown path at all), then start again on the same store."""
    g.proc.kill()
    g.proc.wait(timeout=10)
    g.restart()


def test_every_acknowledged_publish_survives_kill9(gateway_factory, uniq):
    g = gateway_factory("kill9")
    key = g.generate_key(f"dur-{uniq}")
    goal = f"dur/{uniq}"
    acknowledged = []
    stop = threading.Event()

    def publisher():
        c = sdk.client(g, key)
        n = 0
        while not stop.is_set():
            try:
                acknowledged.append(sdk.publish(c, goal, {"n": n}))
            except Exception:
                # The daemon died under us: requests in flight may or may not
                # have committed, but none of them was acknowledged.
                return
            n += 1

    t = threading.Thread(target=publisher, daemon=True)
    t.start()
    # Kill at an arbitrary instant once a good number have been acknowledged.
    deadline_ok = threading.Event()
    for _ in range(200):
        if len(acknowledged) >= 30:
            deadline_ok.set()
            break
        stop.wait(0.05)
    assert deadline_ok.is_set(), f"only {len(acknowledged)} publishes acknowledged"
    _kill9_and_restart(g)
    stop.set()
    t.join(timeout=30)

    c = sdk.client(g, key)
    for intent_id in acknowledged:
        res = requests.get(
            f"{g.base_url}/status/{intent_id}", headers={"X-API-KEY": key}, timeout=10
        )
        assert res.status_code == 200, f"acknowledged intent {intent_id} lost: {res.status_code} {res.text}"
        assert res.json()["status"] == "open"
    # And they are still claimable work.
    job, _ = sdk.claim_until(lambda: c.claim(goal=goal), timeout=10)
    assert sdk.job_id(job) in acknowledged


def test_live_lease_and_keys_survive_kill9(gateway_factory, uniq):
    g = gateway_factory("kill9-lease")
    key = g.generate_key(f"lease-{uniq}")
    goal = f"lease/{uniq}"
    c = sdk.client(g, key)
    intent_id = sdk.publish(c, goal, {"x": 1})
    job, _ = sdk.claim_until(lambda: c.claim(goal=goal), timeout=10)
    assert sdk.job_id(job) == intent_id
    _kill9_and_restart(g)
    # The same key still authenticates and the holder can still settle its lease.
    c2 = sdk.client(g, key)
    assert sdk.fulfill(c2, job, {"done": True}) is not None
    res = requests.get(f"{g.base_url}/result/{intent_id}", headers={"X-API-KEY": key}, timeout=10)
    assert res.status_code == 200
    assert res.json()["status"] == "fulfilled"


def test_keys_create_cli_makes_a_working_key(gw, uniq):
    out = gw.cli("keys", "create", "--owner", f"cli-{uniq}")
    assert out.returncode == 0, out.stderr
    key = out.stdout.strip()
    assert key.startswith("agw_")
    res = requests.post(
        f"{gw.base_url}/set/probe", headers={"X-API-KEY": key}, json={"value": 1, "ttl": 60}, timeout=10
    )
    assert res.status_code == 200, res.text
    bad = gw.cli("keys", "create", "--owner", "__nope__")
    assert bad.returncode != 0 and "owner" in bad.stderr
