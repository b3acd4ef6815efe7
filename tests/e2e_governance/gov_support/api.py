"""Raw HTTP to the governance routes, for what the SDK hides.

The hestiaos SDK turns every non-2xx into an exception and builds result
objects with `Model(**json)`; these helpers keep the status code, headers and
exact body, so a test can say precisely what the gateway answered. Requests
carry the SDK's User-Agent unless told otherwise (the gateway answers those
with `Connection: close`).
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Dict, Iterator, List, Optional, Tuple

import requests

from agw_testkit.responses import describe
from agw_testkit.waits import wait_until

SDK_UA = "HestiaOS-SDK/0.1.0"

# Exact field sets (protocols/governance.md; the SDK's dataclasses + the gateway's extras).
RUN_FIELDS = {"result", "output", "mode", "budget", "trace_id", "latency_ms"}
TRACE_SDK_FIELDS = {"trace_id", "decision", "reason", "risk_score", "policy", "violations", "mode",
                    "budget", "latency_ms", "timestamp"}
TRACE_FIELDS = TRACE_SDK_FIELDS | {"job_id", "topic", "worker", "status", "kind", "matched_rules", "events"}
EXPLAIN_FIELDS = {"decision", "reason", "risk_score", "matched_rules", "violations", "mode", "budget",
                  "policy", "policy_version", "command_type"}
STABILITY_FIELDS = {"status", "mode", "policy", "policy_version", "policy_loaded_at", "policy_error", "windows"}
STATUS_FIELDS = {"status", "ollama", "vllm", "dsgk", "storage", "version", "uptime_seconds"}
METRICS_FIELDS = {"cpu_percent", "memory_percent", "active_sessions", "requests_total", "avg_latency_ms",
                  "gpu_percent", "vram_percent", "vram_used_bytes", "vram_total_bytes"}
WORKER_INPUT_FIELDS = {"kind", "input", "trace_id", "mode", "budget", "session_id", "agent_id", "config"}
STREAM_EVENT_FIELDS = {"type", "data", "trace_id", "timestamp"}
WINDOWS = ("1m", "5m", "1h")
DECISIONS = ("ALLOW", "THROTTLE", "BLOCK")


def run_body(input: Any = "hello", session_id: Any = None, agent_id: Any = None, mode_hint: Any = None,
             timeout_ms: Any = 30000, stream: bool = False) -> Dict[str, Any]:
    """The body the SDK sends for run / run_stream."""
    return {"input": input,
            "context": {"session_id": session_id, "agent_id": agent_id, "mode_hint": mode_hint},
            "options": {"timeout_ms": timeout_ms, "stream": stream}}


def json_of(res: requests.Response) -> Any:
    ctype = res.headers.get("Content-Type", "")
    assert "application/json" in ctype, f"expected a JSON body: Content-Type {ctype!r}; {describe(res)}"
    try:
        return res.json()
    except ValueError:
        raise AssertionError(f"body is not JSON: {describe(res)}") from None


def error_of(res: requests.Response, status: int, code: str) -> Dict[str, Any]:
    """Assert `status` with body {"error": code, "message": str, ...}; return the body."""
    assert res.status_code == status, f"expected {status} {code}: {describe(res)}"
    body = json_of(res)
    assert isinstance(body, dict) and body.get("error") == code, f"expected error {code!r}: {describe(res)}"
    assert isinstance(body.get("message"), str) and body["message"], f"error without a message: {describe(res)}"
    return body


class GovApi:
    """The governance routes under one bearer credential (API key or JWT; None = no header)."""

    def __init__(self, base_url: str, token: Optional[str], user_agent: Optional[str] = SDK_UA):
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.user_agent = user_agent

    def headers(self, extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
        h = {"Content-Type": "application/json"}
        if self.user_agent:
            h["User-Agent"] = self.user_agent
        if self.token is not None:
            h["Authorization"] = f"Bearer {self.token}"
        h.update(extra or {})
        return h

    def request(self, method: str, path: str, body: Any = None, raw: Optional[bytes] = None,
                headers: Optional[Dict[str, str]] = None, timeout: float = 60.0, **kw: Any) -> requests.Response:
        data = raw if raw is not None else (None if body is None else json.dumps(body))
        return requests.request(method, self.base_url + path, headers=self.headers(headers), data=data,
                                timeout=timeout, **kw)

    # -- routes ----------------------------------------------------------------
    def run(self, body: Any = None, **kw: Any) -> requests.Response:
        return self.request("POST", "/api/v1/run", body if body is not None else run_body(**kw))

    def stream(self, body: Any = None, **kw: Any) -> requests.Response:
        """POST /api/v1/run/stream with stream=True (read it with sse_events / iter_sse)."""
        return self.request("POST", "/api/v1/run/stream", body if body is not None else run_body(stream=True, **kw),
                            stream=True)

    def trace_res(self, trace_id: str) -> requests.Response:
        return self.request("GET", f"/api/governance/trace/{trace_id}")

    def trace(self, trace_id: str) -> Dict[str, Any]:
        res = self.trace_res(trace_id)
        assert res.status_code == 200, describe(res)
        return json_of(res)

    def wait_trace(self, trace_id: str, status: Any, timeout: float = 20.0) -> Dict[str, Any]:
        """Poll the trace until its status is `status` (a string or a tuple of them)."""
        wanted = (status,) if isinstance(status, str) else tuple(status)
        box: Dict[str, Any] = {}

        def probe():
            res = self.trace_res(trace_id)
            box["last"] = f"{res.status_code} {res.text[:400]}"
            if res.status_code != 200:
                return None
            t = res.json()
            return t if t.get("status") in wanted else None

        return wait_until(probe, timeout, f"trace {trace_id} status in {wanted}", detail=lambda: box.get("last"))

    def explain_res(self, command_type: Any, command_input: Any) -> requests.Response:
        return self.request("POST", "/api/governance/explain",
                            {"command_type": command_type, "command_input": command_input})

    def explain(self, command_type: str, command_input: Dict[str, Any]) -> Dict[str, Any]:
        res = self.explain_res(command_type, command_input)
        assert res.status_code == 200, describe(res)
        return json_of(res)

    def stability(self) -> Dict[str, Any]:
        res = self.request("GET", "/api/governance/stability")
        assert res.status_code == 200, describe(res)
        return json_of(res)

    def counts(self) -> Dict[str, Dict[str, int]]:
        """The stability windows: {"1m": {"ALLOW": n, ...}, ...}."""
        return self.stability()["windows"]

    def system(self, what: str) -> requests.Response:
        return self.request("GET", f"/api/system/{what}")

    def chat(self, body: Any) -> requests.Response:
        return self.request("POST", "/api/chat", body)

    def agents_run(self, body: Any) -> requests.Response:
        return self.request("POST", "/api/agents/run", body)

    def secret_set(self, key: str, value: str, provider: str = "custom",
                   allowed_tools: Optional[List[str]] = None) -> requests.Response:
        return self.request("POST", "/api/secrets", {"credential_ref": key, "secret": value, "provider": provider,
                                                     "allowed_tools": allowed_tools or ["*"]})

    def secret_get(self, key: str) -> requests.Response:
        return self.request("GET", f"/api/secrets/{key}")

    def secret_delete(self, key: str) -> requests.Response:
        return self.request("DELETE", f"/api/secrets/{key}")

    # -- policy reloads ------------------------------------------------------------
    def wait_policy(self, pred, what: str, timeout: float = 15.0) -> Dict[str, Any]:
        """Poll the stability route until pred(stability) holds (reloads are polled each second)."""
        box: Dict[str, Any] = {}

        def probe():
            box["s"] = self.stability()
            return box["s"] if pred(box["s"]) else None

        return wait_until(probe, timeout, what, interval=0.1, detail=lambda: box.get("s"))

    def wait_new_version(self, old_version: Any, timeout: float = 15.0) -> Dict[str, Any]:
        return self.wait_policy(lambda s: s["policy_version"] != old_version,
                                f"policy_version to change from {old_version!r} (config reload)", timeout)


# -- SSE ------------------------------------------------------------------------------
def iter_sse(res: requests.Response) -> Iterator[Tuple[str, Any]]:
    """("comment", text) / ("event", parsed data JSON) / ("bad", line) per SSE line, in order."""
    for raw in res.iter_lines(decode_unicode=True):
        if raw is None or raw == "":
            continue
        if raw.startswith(":"):
            yield "comment", raw[1:].strip()
        elif raw.startswith("data:"):
            payload = raw[5:].strip()
            try:
                yield "event", json.loads(payload)
            except ValueError:
                yield "bad", raw
        elif raw.startswith(("event:", "id:", "retry:")):
            continue
        else:
            yield "bad", raw


def sse_events(res: requests.Response) -> List[Dict[str, Any]]:
    """Every event of a finished stream (reads to the end); malformed lines fail."""
    out: List[Dict[str, Any]] = []
    for kind, item in iter_sse(res):
        assert kind != "bad", f"malformed SSE line {item!r} after {[e.get('type') for e in out]}"
        if kind == "event":
            out.append(item)
    return out


def types_of(events: List[Any]) -> List[str]:
    return [e["type"] if isinstance(e, dict) else e.type for e in events]


def random_trace_id() -> str:
    return str(uuid.uuid4())
