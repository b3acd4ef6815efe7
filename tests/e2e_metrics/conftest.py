"""Fixtures for the agent-gateway METRICS end-to-end suite.

One real `$AGW_BIN serve` (SQLite or PostgreSQL, per AGW_E2E_STORE) runs a
small workload through the real SDKs (metrics_support.workload) while a real
Prometheus server (metrics_support.prom) scrapes its /metrics every second;
the tests then ask Prometheus for every Grafana panel query of
deploy/grafana. Waits are bounded polls of what Prometheus has stored, never
bare sleeps.
"""

from __future__ import annotations

import os
import time
from typing import Iterator

import pytest

from agw_testkit.gateway import running_gateway
from agw_testkit.tenants import new_tenant
from agw_testkit.waits import wait_until
from metrics_support import workload
from metrics_support.prom import Prometheus, PrometheusError, prometheus_binary

pytest_plugins = ["agw_testkit.plugin"]

_PROMETHEUS = []


def pytest_report_header(config):
    try:
        prom = prometheus_binary()
    except PrometheusError as e:
        prom = f"<missing: {e}>"
    return [f"prometheus={prom}"]


def pytest_sessionstart(session):
    if not session.config.option.collectonly:
        try:
            prometheus_binary()
        except PrometheusError as e:
            pytest.exit(f"metrics e2e suite cannot run: {e}", returncode=4)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if exitstatus != 0:
        for p in _PROMETHEUS:
            terminalreporter.write_line(f"prometheus log kept for inspection: {p.log_path}")


def pytest_sessionfinish(session, exitstatus):
    if exitstatus == 0 and not os.environ.get("AGW_E2E_KEEP"):
        for p in _PROMETHEUS:
            p.remove()


class Stack:
    """The gateway, Prometheus scraping it, and what the workload did."""

    def __init__(self, gw, prom: Prometheus, done: workload.Done):
        self.gw, self.prom, self.done = gw, prom, done


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    with running_gateway(workload.SETTINGS, name="metrics", config=workload.CONFIG) as gw:
        prom = Prometheus([gw.base_url.removeprefix("http://")])
        _PROMETHEUS.append(prom)
        prom.start()
        try:
            # The target is up and scraped before the workload starts, so
            # every counter has a stored sample from before its first increase.
            wait_until(lambda: prom.latest_scrape() is not None, 30,
                       "Prometheus to scrape the gateway once",
                       detail=lambda: [(t.get("health"), t.get("lastError")) for t in prom.targets()])
            tenant = new_tenant(gw, "metrics")
            done = workload.run(gw, tenant)
            try:
                # Two more scrapes after the workload: every series it
                # created has samples a rate() window can use.
                end = time.time()
                wait_until(lambda: (prom.latest_scrape() or 0) > end + 2.0, 30,
                           "Prometheus to scrape the gateway twice after the workload",
                           detail=lambda: prom.targets())
                yield Stack(gw, prom, done)
            finally:
                done.neuron.close()
        finally:
            prom.stop()
