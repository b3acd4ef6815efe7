"""Fixtures for the agent-gateway OPENTELEMETRY end-to-end suite.

Every test drives a real `$AGW_BIN serve` process whose OTLP exporters point
at a receiver living in the test process (otlp_receiver.py), and asserts on
what the receiver decoded: spans, log records and their trace ids. Batch
delays are shortened so exports arrive within a fraction of a second; every
wait is bounded.
"""

from __future__ import annotations

from typing import Dict, Iterator

import pytest

from agw_testkit.gateway import Gateway, running_gateway
from otlp_receiver import OtlpHttpReceiver

pytest_plugins = ["agw_testkit.plugin"]

#: Quick batches, so a test waits well under a second for its telemetry.
FAST_EXPORT: Dict[str, str] = {
    "OTEL_BSP_SCHEDULE_DELAY": "100",
    "OTEL_BLRP_SCHEDULE_DELAY": "100",
    "OTEL_SERVICE_NAME": "agw-e2e",
    "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=e2e",
}


def otel_settings(endpoint: str, protocol: str = "http/protobuf", **extra: str) -> Dict[str, str]:
    s = dict(FAST_EXPORT)
    s.update({"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": protocol})
    s.update(extra)
    return s


@pytest.fixture(scope="session")
def receiver() -> Iterator[OtlpHttpReceiver]:
    r = OtlpHttpReceiver().start()
    yield r
    r.stop()


@pytest.fixture(scope="session")
def gw(receiver) -> Iterator[Gateway]:
    """The shared gateway, exporting OTLP/HTTP protobuf to `receiver`."""
    with running_gateway(otel_settings(receiver.url), name="otel-http") as g:
        yield g


@pytest.fixture
def api_key(gw) -> str:
    return gw.new_tenant("otel")
