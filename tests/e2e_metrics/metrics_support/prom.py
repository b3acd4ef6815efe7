"""A real Prometheus server for the suite: its own temp config (JSON, which is
YAML) and TSDB directory, a free port, started with the binary from
`AGW_PROMETHEUS` or `prometheus` on PATH (Debian package `prometheus`;
tests/run-all.sh --setup installs it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional

import requests

from agw_testkit.procs import free_port, pdeathsig, tail, terminate, wait_ready

READY_TIMEOUT_S = 30.0


class PrometheusError(RuntimeError):
    pass


def prometheus_binary() -> str:
    name = os.environ.get("AGW_PROMETHEUS", "prometheus")
    path = shutil.which(name)
    if not path:
        raise PrometheusError(
            f"{name!r} not found: install Prometheus (`apt-get install -y prometheus`; "
            "tests/run-all.sh --setup does it) or point AGW_PROMETHEUS at the binary")
    return path


def promtool_binary() -> Optional[str]:
    """promtool beside the prometheus binary (the Debian package ships both)."""
    beside = Path(prometheus_binary()).with_name("promtool")
    if beside.exists():
        return str(beside)
    return shutil.which("promtool")


class Prometheus:
    """One Prometheus process scraping `targets` every `interval` as job `job`."""

    def __init__(self, targets: List[str], job: str = "agent-gateway", interval: str = "1s"):
        self.workdir = Path(tempfile.mkdtemp(prefix="agw-e2e-prometheus-"))
        self.config_path = self.workdir / "prometheus.yml"
        self.log_path = self.workdir / "prometheus.log"
        config = {
            "global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
            "scrape_configs": [{
                "job_name": job,
                "metrics_path": "/metrics",
                "scheme": "http",
                "static_configs": [{"targets": targets}],
            }],
        }
        self.config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")
        self.proc: Optional[subprocess.Popen] = None
        self.base_url = ""

    def start(self) -> "Prometheus":
        binary = prometheus_binary()
        last = ""
        for _attempt in range(3):  # a stolen free port is retried
            port = free_port()
            self.base_url = f"http://127.0.0.1:{port}"
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(
                    [binary, f"--config.file={self.config_path}",
                     f"--storage.tsdb.path={self.workdir / 'data'}",
                     f"--web.listen-address=127.0.0.1:{port}",
                     "--storage.tsdb.retention.time=1h", "--log.level=warn"],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=self.workdir,
                    preexec_fn=pdeathsig,
                )
            ok, last = self._wait_ready()
            if ok:
                return self
            self.stop()
            if "address already in use" not in self.log_tail().lower():
                break
        raise PrometheusError(f"prometheus did not become ready: {last}\n--- log ---\n{self.log_tail()}")

    def _wait_ready(self):
        return wait_ready(self.proc, self.base_url + "/-/ready", READY_TIMEOUT_S)

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc, 15)

    def remove(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self, limit: int = 4000) -> str:
        return tail(self.log_path, limit)

    # -- HTTP API ----------------------------------------------------------------
    def api(self, path: str, **params: Any) -> Dict[str, Any]:
        """GET /api/v1/<path>; returns the decoded body whatever the status
        (errors come back as {"status": "error", "errorType", "error"})."""
        res = requests.get(f"{self.base_url}/api/v1/{path}", params=params, timeout=15)
        try:
            return res.json()
        except ValueError:
            raise AssertionError(f"GET /api/v1/{path} answered {res.status_code} {res.text[:500]!r}") from None

    def query(self, expr: str) -> Dict[str, Any]:
        return self.api("query", query=expr)

    def targets(self) -> List[Dict[str, Any]]:
        return self.api("targets", state="active")["data"]["activeTargets"]

    def latest_scrape(self, metric: str = "agw_build_info") -> Optional[float]:
        """Unix time of the newest stored sample of `metric` (None before the first scrape)."""
        body = self.query(f"max(timestamp({metric}))")
        result = body.get("data", {}).get("result") or []
        return float(result[0]["value"][1]) if result else None
