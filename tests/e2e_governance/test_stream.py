"""POST /api/v1/run/stream: start -> (token | delta)* -> final | error -> done,
with neuron progress mapped to token / delta events; blocked streams; a client
that hangs up cancels the job."""

from __future__ import annotations

import asyncio
import threading

import pytest
from hestiaos import AsyncClient, StreamEvent

from agw_testkit.neuron import Calls
from agw_testkit.responses import describe
from gov_support.api import STREAM_EVENT_FIELDS, error_of, sse_events, types_of
from gov_support.config import DEFAULT_TOPIC
from gov_support.sdk import CLIENT_TIMEOUT_S, collect_stream, sync_client


async def _progressing(input, ctx):
    await ctx.progress(message="thinking", percent=10.0)
    await ctx.progress(data={"token": "Hel"})
    await ctx.progress(data={"token": "lo"})
    await ctx.progress(message="almost there", percent=90.0)
    return {"output": "Hello"}


def _check_envelope(events, trace_id=None):
    trace_id = trace_id or events[0].trace_id
    for ev in events:
        assert isinstance(ev, StreamEvent)
        assert ev.trace_id == trace_id, f"every event carries the run's trace_id: {ev}"
        assert isinstance(ev.timestamp, str) and ev.timestamp, ev
        assert isinstance(ev.data, dict), ev


def test_neuron_progress_streams_as_deltas_and_tokens_in_order(gw, tenant, gov, neurons):
    n = neurons(gw, tenant, DEFAULT_TOPIC, _progressing)
    events = collect_stream(gw.base_url, tenant.api_key, "stream me", timeout_ms=20000)
    assert types_of(events) == ["start", "delta", "token", "token", "delta", "final", "done"], events
    _check_envelope(events)
    start, d1, t1, t2, d2, final, done = events
    assert {"decision", "mode", "budget", "topic", "job_id"} <= set(start.data), start
    assert (start.data["decision"], start.data["mode"], start.data["budget"], start.data["topic"]) == (
        "ALLOW", "balanced", 0.5, DEFAULT_TOPIC), start
    assert isinstance(start.data["job_id"], str) and start.data["job_id"], start
    assert d1.data == {"message": "thinking", "percent": 10.0}, d1
    assert (t1.data, t2.data) == ({"token": "Hel"}, {"token": "lo"})
    assert d2.data == {"message": "almost there", "percent": 90.0}, d2
    assert final.data.get("output") == "Hello" and "result" in final.data, final

    t = gov.trace(start.trace_id)
    assert (t["status"], t["job_id"], t["worker"]) == ("completed", start.data["job_id"], n.neuron_id), t


def test_many_tokens_arrive_all_and_in_order(gw, tenant, neurons):
    words = [f"w{i:02d} " for i in range(25)]

    async def handler(input, ctx):
        for w in words:
            await ctx.progress(data={"token": w})
        return {"output": "".join(words)}

    neurons(gw, tenant, DEFAULT_TOPIC, handler)
    events = collect_stream(gw.base_url, tenant.api_key, "many tokens", timeout_ms=30000)
    assert types_of(events) == ["start"] + ["token"] * len(words) + ["final", "done"], types_of(events)
    assert [e.data["token"] for e in events[1:-2]] == words, "every progress frame once, in order"
    assert events[-2].data["output"] == "".join(words)


def test_sync_client_stream_then_more_calls(gw, tenant, neurons):
    neurons(gw, tenant, DEFAULT_TOPIC, _progressing)
    c = sync_client(gw.base_url, tenant.api_key)
    events = list(c.run_stream("sync stream", timeout_ms=20000, timeout=60))
    assert types_of(events) == ["start", "delta", "token", "token", "delta", "final", "done"], events
    assert c.run("then a plain run", timeout_ms=20000).output == "Hello"
    events = list(c.run_stream("and a second stream", timeout_ms=20000, timeout=60))
    assert types_of(events)[-2:] == ["final", "done"], events
    assert c.system.status().status == "OK"


def test_intent_bus_worker_stream_is_start_final_done(gw, tenant, ib_workers):
    w = ib_workers(gw, tenant, DEFAULT_TOPIC, lambda p: f"ib says {p['input']}")
    events = collect_stream(gw.base_url, tenant.api_key, "hello bus", timeout_ms=20000)
    assert types_of(events) == ["start", "final", "done"], events
    _check_envelope(events)
    assert events[1].data.get("output") == "ib says hello bus", events[1]
    [call] = w.calls.all()
    assert call["payload"]["trace_id"] == events[0].trace_id and call["payload"]["kind"] == "run"


def test_stream_wire_format(gw, tenant, gov, neurons):
    neurons(gw, tenant, DEFAULT_TOPIC, _progressing)
    res = gov.stream(input="raw stream", timeout_ms=20000)
    assert res.status_code == 200, describe(res)
    assert res.headers.get("Content-Type", "").startswith("text/event-stream"), dict(res.headers)
    events = sse_events(res)
    assert [e["type"] for e in events] == ["start", "delta", "token", "token", "delta", "final", "done"], events
    for e in events:
        assert set(e) == STREAM_EVENT_FIELDS, f"event fields: {sorted(e)}"
    assert len({e["trace_id"] for e in events}) == 1, events


def test_blocked_stream_is_start_error_done(gw, tenant, gov, claimers):
    res = gov.stream(input="my password: 42", timeout_ms=20000)
    assert res.status_code == 200, describe(res)
    events = sse_events(res)
    assert [e["type"] for e in events] == ["start", "error", "done"], events
    start, err, _ = events
    assert start["data"].get("decision") == "BLOCK" and start["data"].get("job_id") is None, start
    assert err["data"].get("code") == "GOVERNANCE_BLOCK" and err["data"].get("message"), err
    t = gov.trace(start["trace_id"])
    assert (t["decision"], t["status"], t["matched_rules"]) == ("BLOCK", "blocked", ["no-credentials"]), t
    claimers(gw, tenant).assert_nothing_on(DEFAULT_TOPIC)
    # Through the SDK too: a blocked stream does not raise, it ends with error + done.
    events = collect_stream(gw.base_url, tenant.api_key, "password=1")
    assert types_of(events) == ["start", "error", "done"], events


def test_stream_worker_failure_ends_with_error_then_done(gw, tenant, gov, neurons):
    async def handler(input, ctx):
        await ctx.progress(message="trying", percent=50.0)
        ctx.fail("stream worker broke")

    neurons(gw, tenant, DEFAULT_TOPIC, handler)
    events = collect_stream(gw.base_url, tenant.api_key, "fail in stream", timeout_ms=20000)
    assert types_of(events) == ["start", "delta", "error", "done"], events
    err = events[2]
    assert err.data.get("code") == "WORKER_FAILED" and "stream worker broke" in err.data.get("message", ""), err
    assert gov.trace(events[0].trace_id)["status"] == "failed"


@pytest.mark.slow
def test_stream_timeout_ends_with_error_and_cancels_the_job(gw, tenant, gov, neurons):
    calls = Calls()

    async def handler(input, ctx):
        calls.add(phase="started")
        try:
            await asyncio.sleep(300)
        except asyncio.CancelledError:
            calls.add(phase="cancelled")
            raise

    neurons(gw, tenant, DEFAULT_TOPIC, handler)
    events = collect_stream(gw.base_url, tenant.api_key, "slow stream", timeout_ms=1500)
    assert types_of(events) == ["start", "error", "done"], events
    assert events[1].data.get("code") == "TIMEOUT", events[1]
    calls.wait(1, what="the handler to be cancelled", phase="cancelled")
    t = gov.wait_trace(events[0].trace_id, "timeout")
    assert tenant.tasks.wait_state(t["job_id"], "cancelled")["state"] == "cancelled"


@pytest.mark.slow
def test_client_hanging_up_cancels_the_job(gw, tenant, gov, neurons):
    calls = Calls()
    release = threading.Event()

    async def handler(input, ctx):
        calls.add(phase="started", task_id=ctx.task.task_id)
        await ctx.progress(message="working", percent=1.0)
        try:
            while not release.is_set():
                await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            calls.add(phase="cancelled", task_id=ctx.task.task_id, event_set=ctx.cancelled.is_set())
            raise
        return "should not finish"

    n = neurons(gw, tenant, DEFAULT_TOPIC, handler)

    async def read_then_hang_up():
        seen = []
        async with AsyncClient(base_url=gw.base_url, api_key=tenant.api_key, timeout=CLIENT_TIMEOUT_S) as c:
            agen = c.run_stream("cancel me", timeout_ms=60000)
            async for ev in agen:
                seen.append(ev)
                if ev.type == "delta":
                    break
            await agen.aclose()
        return seen  # leaving `async with` closed the connection

    try:
        seen = asyncio.run(read_then_hang_up())
        assert types_of(seen) == ["start", "delta"], seen
        job_id = seen[0].data["job_id"]
        [c] = calls.wait(1, what="the handler to be cancelled after the client hung up", phase="cancelled")
        assert c["task_id"] == job_id and c["event_set"] is True, c
        assert tenant.tasks.wait_state(job_id, "cancelled")["state"] == "cancelled"
        assert gov.wait_trace(seen[0].trace_id, "cancelled")["status"] == "cancelled"
        assert len(n.frames_of("cancel")) == 1
    finally:
        release.set()


def test_stream_validation_errors_are_json_not_sse(gov):
    res = gov.stream(body={"context": {}, "options": {}})
    error_of(res, 422, "invalid_input")
    res = gov.stream(input="hi", mode_hint="ludicrous")
    error_of(res, 422, "invalid_input")
    res = gov.stream(input="hi", timeout_ms=0)
    error_of(res, 422, "invalid_input")
