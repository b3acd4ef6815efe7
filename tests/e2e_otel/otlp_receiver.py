"""In-process OTLP receivers built on the official protobuf definitions
(`opentelemetry-proto`): OTLP/HTTP (`http.server`, POST /v1/traces and
/v1/logs with protobuf bodies) and OTLP/gRPC (`grpcio` with the package's
generated TraceService / LogsService). Both decode every export request into
plain dicts that tests wait on.
"""

from __future__ import annotations

import gzip
import threading
import time
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional

from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

SPAN_KIND_SERVER = 2
STATUS_CODE_ERROR = 2


def _value(v) -> Any:
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return _attrs(v.kvlist_value.values)
    return getattr(v, kind)


def _attrs(kvs) -> Dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in kvs}


def decode_spans(req: trace_service_pb2.ExportTraceServiceRequest) -> List[Dict[str, Any]]:
    out = []
    for rs in req.resource_spans:
        resource = _attrs(rs.resource.attributes)
        for ss in rs.scope_spans:
            for sp in ss.spans:
                out.append({
                    "trace_id": sp.trace_id.hex(),
                    "span_id": sp.span_id.hex(),
                    "parent_span_id": sp.parent_span_id.hex(),
                    "name": sp.name,
                    "kind": sp.kind,
                    "attributes": _attrs(sp.attributes),
                    "status_code": sp.status.code,
                    "resource": resource,
                    "scope": ss.scope.name,
                })
    return out


def decode_logs(req: logs_service_pb2.ExportLogsServiceRequest) -> List[Dict[str, Any]]:
    out = []
    for rl in req.resource_logs:
        resource = _attrs(rl.resource.attributes)
        for sl in rl.scope_logs:
            for lr in sl.log_records:
                out.append({
                    "trace_id": lr.trace_id.hex(),
                    "span_id": lr.span_id.hex(),
                    "body": _value(lr.body),
                    "attributes": _attrs(lr.attributes),
                    "severity_number": lr.severity_number,
                    "event_name": lr.event_name,
                    "resource": resource,
                    "scope": sl.scope.name,
                })
    return out


class Collected:
    """Everything a receiver decoded, with bounded waits."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.spans: List[Dict[str, Any]] = []
        self.logs: List[Dict[str, Any]] = []
        self.requests: List[str] = []  # "traces" / "logs", one per export request

    def add(self, signal: str, items: List[Dict[str, Any]]) -> None:
        with self._lock:
            self.requests.append(signal)
            (self.spans if signal == "traces" else self.logs).extend(items)

    def _wait(self, signal: str, match: Callable[[Dict[str, Any]], bool], n: int,
              timeout: float, what: str) -> List[Dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                items = list(self.spans if signal == "traces" else self.logs)
            found = [x for x in items if match(x)]
            if len(found) >= n:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no {n} {signal} record(s) {what} within {timeout}s; received "
                    f"{len(items)} {signal} record(s) in total, e.g. {items[-5:]!r}")
            time.sleep(0.05)

    def wait_spans(self, match, n: int = 1, timeout: float = 20.0, what: str = "") -> List[Dict[str, Any]]:
        return self._wait("traces", match, n, timeout, what)

    def wait_logs(self, match, n: int = 1, timeout: float = 20.0, what: str = "") -> List[Dict[str, Any]]:
        return self._wait("logs", match, n, timeout, what)


class OtlpHttpReceiver:
    """OTLP/HTTP with protobuf bodies on 127.0.0.1; `url` is the base endpoint."""

    def __init__(self) -> None:
        self.collected = Collected()
        collected = self.collected

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path == "/v1/traces":
                    req = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
                    collected.add("traces", decode_spans(req))
                    reply = trace_service_pb2.ExportTraceServiceResponse()
                elif self.path == "/v1/logs":
                    req = logs_service_pb2.ExportLogsServiceRequest.FromString(body)
                    collected.add("logs", decode_logs(req))
                    reply = logs_service_pb2.ExportLogsServiceResponse()
                else:
                    self.send_error(404)
                    return
                data = reply.SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="otlp-http", daemon=True)

    def start(self) -> "OtlpHttpReceiver":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class OtlpGrpcReceiver:
    """OTLP/gRPC (TraceService/Export, LogsService/Export) on 127.0.0.1, plaintext."""

    def __init__(self) -> None:
        self.collected = Collected()
        collected = self.collected

        class Traces(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request, context):
                collected.add("traces", decode_spans(request))
                return trace_service_pb2.ExportTraceServiceResponse()

        class Logs(logs_service_pb2_grpc.LogsServiceServicer):
            def Export(self, request, context):
                collected.add("logs", decode_logs(request))
                return logs_service_pb2.ExportLogsServiceResponse()

        import grpc

        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), self._server)
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Logs(), self._server)
        port = self._server.add_insecure_port("127.0.0.1:0")
        self.url = f"http://127.0.0.1:{port}"

    def start(self) -> "OtlpGrpcReceiver":
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(grace=None)


def traceparent(trace_id: str, span_id: str, sampled: bool = True) -> str:
    return f"00-{trace_id}-{span_id}-{'01' if sampled else '00'}"


def parse_traceparent(value: Optional[str]) -> Optional[Dict[str, str]]:
    """{'trace_id', 'span_id', 'flags'} of a version-00 traceparent, else None."""
    if not isinstance(value, str):
        return None
    parts = value.split("-")
    if len(parts) != 4 or parts[0] != "00" or len(parts[1]) != 32 or len(parts[2]) != 16:
        return None
    return {"trace_id": parts[1], "span_id": parts[2], "flags": parts[3]}
