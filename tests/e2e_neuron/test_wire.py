"""Wire-level checks the SDK would hide (it drops bad frames silently): the SSE
stream opens at once, frames pass the SDK's strict models, register is
validated, keep-alives flow, admin revocation reaches connected neurons."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import requests

from agw_testkit.neuron import Calls, capability, ctx_info
from agw_testkit.responses import describe
from agw_testkit.waits import wait_until
from neuron_support.raw_sse import RawSse


def _post(gw, name, token, body):
    return requests.post(f"{gw.base_url}/neuron/{name}", json=body, timeout=10,
                         headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})


def _register(nid, caps, version="1.0.0"):
    return {"type": "register", "neuronId": nid, "protocolVersion": version, "capabilities": caps}


def _cap(type_, **kw):
    c = {"type": type_, "scope": "any", "concurrency": 1}
    c.update(kw)
    return c


def _valid(frames):
    bad = [f for f in frames if "error" in f]
    assert not bad, "frames the SDK would drop: " + "; ".join(f"{f['data'][:300]} -> {f['error']}" for f in bad)


def test_stream_opens_at_once_and_frames_are_sdk_valid(tenant, cap):
    token = tenant.token()
    nid = f"raw-{uuid.uuid4().hex[:8]}"
    sse = RawSse(tenant.gw.base_url, nid, token)
    try:
        assert sse.status == 200, sse.body[:300]
        assert sse.content_type.startswith("text/event-stream"), sse.content_type
        assert sse.headers_at - sse.opened_at < 2.0, "SSE headers must be sent before any frame exists"
        sse.wait_comment("connected", timeout=2)

        res = _post(tenant.gw, "register", token, _register(nid, [
            _cap(cap, concurrency=3),
            {"type": cap + ".v2", "scope": {"onBehalfOf": "u-1"}, "concurrency": 1, "leaseTtlMs": 5000},
        ]))
        assert 200 <= res.status_code < 300, describe(res)
        f = sse.wait_frame("registered")
        _valid(sse.frames)
        assert f["event"] == "registered", f
        reg = f["parsed"]
        assert reg.session_id
        got = sorted((c.type, c.concurrency, c.lease_ttl_ms) for c in reg.capabilities)
        assert got == sorted([(cap, 3, None), (cap + ".v2", 1, 5000)]), got

        tid = tenant.tasks.create(cap, {"raw": True}, metadata={"k": "v"})
        lf = sse.wait_frame("lease")
        _valid(sse.frames)
        lease = lf["parsed"].lease
        assert lease.task.task_id == tid and lease.task.input == {"raw": True}, lf["data"]
        assert lease.task.metadata == {"k": "v"}
        assert lease.expires_at > datetime.now(timezone.utc)
        # the raw neuron acks by hand, with the SDK's exclude_none shape
        res = _post(tenant.gw, "ack", token, {"type": "ack", "leaseId": lease.lease_id,
                                              "output": {"raw": "ok"}, "completedAt": datetime.now(timezone.utc).isoformat()})
        assert 200 <= res.status_code < 300, describe(res)
        assert tenant.tasks.wait_state(tid, "fulfilled")["output"] == {"raw": "ok"}
        # a second ack of the same lease is refused (it is no longer live)
        res = _post(tenant.gw, "ack", token, {"type": "ack", "leaseId": lease.lease_id,
                                              "output": {"raw": "again"}, "completedAt": datetime.now(timezone.utc).isoformat()})
        assert res.status_code in (404, 409), describe(res)
        assert tenant.tasks.task(tid)["output"] == {"raw": "ok"}
    finally:
        sse.close()


def test_protocol_version_negotiation(tenant, uniq):
    token = tenant.token()
    for version, ok in (("1.0.0", True), ("1.9.3", True), ("2.0.0", False), ("0.9.0", False), ("banana", False)):
        nid = f"ver-{uniq}-{version}"
        sse = RawSse(tenant.gw.base_url, nid, token)
        try:
            assert sse.status == 200
            res = _post(tenant.gw, "register", token, _register(nid, [_cap(f"e2e-{uniq}/v")], version))
            if ok:
                assert 200 <= res.status_code < 300, f"{version}: {describe(res)}"
                sse.wait_frame("registered")
            else:
                assert 400 <= res.status_code < 500, f"protocol {version} must be refused: {describe(res)}"
                assert "version" in res.text.lower(), f"the refusal should say why: {describe(res)}"
        finally:
            sse.close()


def test_register_is_validated(tenant, uniq):
    token = tenant.token()
    nid = f"val-{uniq}"
    sse = RawSse(tenant.gw.base_url, nid, token)
    try:
        assert sse.status == 200
        good = f"e2e-{uniq}/ok"
        for caps, why in (
            ([], "at least one capability"),
            ([_cap("no-namespace")], "type must be namespaced"),
            ([_cap(good), _cap(good)], "duplicate capability types"),
            ([_cap(good, concurrency=0)], "concurrency > 0"),
            ([_cap(good, leaseTtlMs=500)], "leaseTtlMs >= 1000"),
            ([_cap(good, leaseTtlMs=3_600_001)], "leaseTtlMs <= 3600000"),
            ([_cap(good, scope="mine")], "scope is 'any' or {onBehalfOf}"),
        ):
            res = _post(tenant.gw, "register", token, _register(nid, caps))
            assert res.status_code == 400, f"{why}: {describe(res)}"
        # the session is still usable afterwards
        res = _post(tenant.gw, "register", token, _register(nid, [_cap(good)]))
        assert 200 <= res.status_code < 300, describe(res)
        sse.wait_frame("registered")
        _valid(sse.frames)
    finally:
        sse.close()


def test_keepalive_comments(ttl_tenant):
    """`: ping`-style comments keep idle streams open (AGW_NEURON_KEEPALIVE_SECS=1 here)."""
    sse = RawSse(ttl_tenant.gw.base_url, f"ka-{uuid.uuid4().hex[:8]}", ttl_tenant.token())
    try:
        assert sse.status == 200
        first = sse.wait_comment("", timeout=2)
        sse.wait_comment("", timeout=3, after=first[0] + 0.5)
        assert not sse.closed
    finally:
        sse.close()


def test_capability_revoked_reaches_connected_neurons(tenant, neurons, uniq):
    cap, other = f"e2e-{uniq}/revoked", f"e2e-{uniq}/kept"
    calls = Calls()

    async def echo(input, ctx):
        calls.add(**ctx_info(ctx))
        return {"echo": input}

    n = neurons(tenant.gw, tenant.token()).add(capability(cap, 1), echo).add(capability(other, 1), echo).start()
    res = requests.post(tenant.gw.base_url + "/admin/capabilities/revoke",
                        headers={"X-API-KEY": tenant.gw.admin_key},
                        json={"capability": cap, "reason": "e2e revocation"}, timeout=10)
    assert 200 <= res.status_code < 300, describe(res)
    wait_until(lambda: n.frames_of("capability-revoked"), 10,
               "a valid `capability-revoked` frame on the neuron (the SDK drops invalid ones)")
    [f] = n.frames_of("capability-revoked")
    assert f.capability == cap and f.reason == "e2e revocation", f

    # no more leases for the revoked capability; the other one still works
    revoked_task = tenant.tasks.create(cap, {"r": 1})
    sentinel = tenant.tasks.create(other, {"k": 1})
    assert tenant.tasks.wait_state(sentinel, "fulfilled")["output"] == {"echo": {"k": 1}}
    assert [c["task_id"] for c in calls.all()] == [sentinel]
    assert tenant.tasks.task(revoked_task)["state"] == "open"

    res = requests.post(tenant.gw.base_url + "/admin/capabilities/revoke",
                        headers={"X-API-KEY": tenant.api_key},
                        json={"capability": cap, "reason": "not admin"}, timeout=10)
    assert res.status_code in (401, 403), f"tenant key must not revoke: {describe(res)}"


def test_restarted_neuron_with_a_revoked_capability_keeps_serving_the_others(tenant, neurons, uniq):
    """The SDK re-registers every handler it has on each (re)connect. If the
    gateway refuses the whole register because one capability is revoked, the
    SDK only logs "register POST failed" and sits connected but unregistered
    (neuron.py _on_open): every other capability of that host goes silent. The
    `registered` frame lists the accepted capabilities, so the revoked one can
    simply be left out of it."""
    cap, other = f"e2e-{uniq}/revoked", f"e2e-{uniq}/kept"
    res = requests.post(tenant.gw.base_url + "/admin/capabilities/revoke",
                        headers={"X-API-KEY": tenant.gw.admin_key},
                        json={"capability": cap, "reason": "e2e revocation"}, timeout=10)
    assert 200 <= res.status_code < 300, describe(res)

    async def echo(input, ctx):
        return {"echo": input, "cap": ctx.task.capability}

    n = neurons(tenant.gw, tenant.token()).add(capability(cap, 1), echo).add(capability(other, 1), echo)
    n.start(wait_registered=False)
    try:
        n.wait_registered(1, timeout=10)
    except AssertionError:
        raise AssertionError(
            "a register frame naming one revoked capability was refused as a whole; the SDK logged: "
            f"{[ln for ln in n.log_lines() if 'register' in ln]}") from None
    [reg] = n.frames_of("registered")
    assert other in [c.type for c in reg.capabilities], reg
    tid = tenant.tasks.create(other, {"k": 2})
    assert tenant.tasks.wait_state(tid, "fulfilled")["output"] == {"echo": {"k": 2}, "cap": other}


def test_same_neuron_id_replaces_the_old_session(tenant, uniq):
    """neuron.md: a neuron that reconnects under the same neuronId replaces its old session."""
    token = tenant.token()
    nid = f"dup-{uniq}"
    old = RawSse(tenant.gw.base_url, nid, token)
    new = None
    try:
        assert old.status == 200
        old.wait_comment("connected", timeout=2)
        new = RawSse(tenant.gw.base_url, nid, token)
        assert new.status == 200
        old.wait_closed(timeout=5)
        res = _post(tenant.gw, "register", token, _register(nid, [_cap(f"e2e-{uniq}/dup")]))
        assert 200 <= res.status_code < 300, describe(res)
        new.wait_frame("registered")
        _valid(new.frames)
        assert not [f for f in old.frames if f.get("json", {}).get("type") == "registered"]
    finally:
        old.close()
        if new is not None:
            new.close()
