"""Collector trouble and transports: a dead or silent collector costs only
dropped telemetry (counted in `agw_telemetry_dropped_total`), never a
request's answer; OTLP/gRPC delivers the same spans as OTLP/HTTP."""

from __future__ import annotations

import re
import secrets
import socket
import time
import uuid
from contextlib import contextmanager

import pytest
import requests
from intent_bus import IntentClient

from agw_testkit.gateway import running_gateway
from conftest import otel_settings
from otlp_receiver import OtlpGrpcReceiver, traceparent


def dropped(gw, signal: str) -> int:
    text = requests.get(gw.base_url + "/metrics", timeout=10).text
    m = re.search(rf'^agw_telemetry_dropped_total{{signal="{signal}"}} (\d+)$', text, re.M)
    assert m, f"agw_telemetry_dropped_total{{signal={signal!r}}} missing from /metrics:\n{text[-2000:]}"
    return int(m.group(1))


@contextmanager
def dead_collector(kind: str):
    """`refused`: nothing listens. `silent`: connections are queued by the
    kernel and never answered (a hung collector)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    if kind == "refused":
        s.close()
    else:
        s.listen(1024)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        s.close()


@pytest.mark.parametrize("kind", ["refused", "silent"])
def test_a_dead_collector_costs_only_dropped_telemetry(kind):
    with dead_collector(kind) as url, running_gateway(
        otel_settings(url, OTEL_EXPORTER_OTLP_TIMEOUT="300", OTEL_BSP_MAX_QUEUE_SIZE="16",
                      OTEL_BLRP_MAX_QUEUE_SIZE="16"),
        name=f"otel-dead-{kind}",
    ) as g:
        key = g.new_tenant("otel-dead")
        c = IntentClient(base_url=g.base_url, api_key=key, timeout=15.0)
        goal = f"otel-dead-{uuid.uuid4().hex[:8]}"
        for i in range(30):
            c.transport.session.headers["traceparent"] = traceparent(secrets.token_hex(16), secrets.token_hex(8))
            intent_id = c.publish(goal, {"i": i}).id
            job = c.claim(goal=goal)
            assert job and job.get("id") == intent_id, job
            c.fulfill(intent_id, job.get("claim_token"), result={"i": i})
            assert c.get_status(intent_id).status == "fulfilled"
        deadline = time.monotonic() + 20
        while dropped(g, "traces") == 0:
            assert time.monotonic() < deadline, "no span counted as dropped within 20s"
            time.sleep(0.2)
        assert requests.get(g.base_url + "/healthz", timeout=10).status_code == 200


@pytest.fixture
def grpc_receiver():
    r = OtlpGrpcReceiver().start()
    yield r
    r.stop()


def test_otlp_grpc_export(grpc_receiver):
    # RUST_LOG quiets the logs only: request spans are still exported.
    settings = otel_settings(grpc_receiver.url, "grpc", RUST_LOG="warn")
    with running_gateway(settings, name="otel-grpc") as g:
        key = g.new_tenant("otel-grpc")
        trace_id, client_span = secrets.token_hex(16), secrets.token_hex(8)
        c = IntentClient(base_url=g.base_url, api_key=key, timeout=15.0)
        c.transport.session.headers["traceparent"] = traceparent(trace_id, client_span)
        c.publish(f"otel-grpc-{uuid.uuid4().hex[:8]}", {"n": 1})
        span = grpc_receiver.collected.wait_spans(
            lambda s: s["trace_id"] == trace_id, what=f"in trace {trace_id} over gRPC")[0]
        assert span["name"] == "POST /intent"
        assert span["parent_span_id"] == client_span
        assert span["resource"]["service.name"] == "agw-e2e"
        assert dropped(g, "traces") == 0
