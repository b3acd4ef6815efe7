"""Wire-level checks the SDK would hide (it drops bad frames silently): the SSE
stream opens at once, frames pass the SDK's strict models, register is
validated, keep-alives flow, admin revocation reaches connected neurons."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import requests

from neuron_support.harness import capability
from neuron_support.raw_sse import RawSse
from neuron_support.tasks import describe, wait_until


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


def test_capability_revoked_reaches_connected_neurons(tenant, neurons, cap):
    async def echo(input, ctx):
        return {"echo": input}

    n = neurons(tenant.gw, tenant.token()).add(capability(cap, 1), echo).start()
    res = requests.post(tenant.gw.base_url + "/admin/capabilities/revoke",
                        headers={"X-API-KEY": tenant.gw.admin_key},
                        json={"capability": cap, "reason": "e2e revocation"}, timeout=10)
    assert 200 <= res.status_code < 300, describe(res)
    wait_until(lambda: n.frames_of("capability-revoked"), 10,
               "a valid `capability-revoked` frame on the neuron (the SDK drops invalid ones)")
    [f] = n.frames_of("capability-revoked")
    assert f.capability == cap and f.reason == "e2e revocation", f

    res = requests.post(tenant.gw.base_url + "/admin/capabilities/revoke",
                        headers={"X-API-KEY": tenant.api_key},
                        json={"capability": cap, "reason": "not admin"}, timeout=10)
    assert res.status_code in (401, 403), f"tenant key must not revoke: {describe(res)}"
