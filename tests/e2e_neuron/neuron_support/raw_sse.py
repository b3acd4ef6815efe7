"""A byte-level reader of `GET /neuron/events` for wire checks the SDK hides.

Every `data:` frame is validated with the installed SDK's own
`holokai_neuron_sdk.protocol.parse_server_frame` (strict pydantic models), so
a frame the SDK would silently drop shows up here as a validation error.
Comment lines (`: connected`, `: ping`) are kept with their arrival times.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from typing import Any, Dict, List, Optional
from urllib.parse import quote, urlsplit

from holokai_neuron_sdk.protocol import parse_server_frame

from agw_testkit.waits import wait_until


class RawSse:
    def __init__(self, base_url: str, neuron_id: str, token: Optional[str], timeout: float = 10.0):
        parts = urlsplit(base_url)
        self.neuron_id = neuron_id
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-store"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        self.opened_at = time.monotonic()
        self.conn.request("GET", f"/neuron/events?neuronId={quote(neuron_id, safe='')}", headers=headers)
        self.sock = self.conn.sock  # http.client may drop conn.sock for a Connection: close response
        self.resp = self.conn.getresponse()
        self.headers_at = time.monotonic()
        self.status = self.resp.status
        self.content_type = self.resp.getheader("Content-Type", "")
        self.comments: List[tuple] = []   # (t, text)
        self.frames: List[Dict[str, Any]] = []  # {t, event, data, parsed|error}
        self.closed = False
        self.end_reason = ""
        self.body = b""
        if self.status != 200:
            self.body = self.resp.read()
            self.closed = True
            return
        # The read loop must not time out between keep-alives.
        self.sock.settimeout(None)
        self._thread = threading.Thread(target=self._read, name=f"rawsse-{neuron_id}", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        buf = ""
        try:
            while True:
                chunk = self.resp.read1(65536)
                if not chunk:
                    self.end_reason = "eof"
                    break
                buf += chunk.decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "\n")
                while "\n\n" in buf:
                    block, buf = buf.split("\n\n", 1)
                    self._block(block)
        except Exception as e:  # socket shut down by close(), or the server reset it
            self.end_reason = f"{type(e).__name__}: {e}"
        finally:
            self.closed = True

    def _block(self, block: str) -> None:
        now = time.monotonic()
        event, data = "message", []
        for line in block.split("\n"):
            if line.startswith(":"):
                self.comments.append((now, line[1:].strip()))
            elif line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:][1:] if line[5:].startswith(" ") else line[5:])
        if not data:
            return
        text = "\n".join(data)
        entry: Dict[str, Any] = {"t": now, "event": event, "data": text}
        try:
            payload = json.loads(text)
            entry["json"] = payload
            entry["parsed"] = parse_server_frame(payload)
        except Exception as e:
            entry["error"] = f"{type(e).__name__}: {e}"
        self.frames.append(entry)

    # -- waits -----------------------------------------------------------------
    def wait_frame(self, type_: str, timeout: float = 10.0) -> Dict[str, Any]:
        def find():
            for f in list(self.frames):
                if f.get("json", {}).get("type") == type_ or f["event"] == type_:
                    return f
            return None

        return wait_until(find, timeout, f"a `{type_}` frame on the raw SSE stream of {self.neuron_id}",
                          detail=lambda: {"frames": [f["data"][:200] for f in self.frames],
                                          "closed": self.closed, "end": self.end_reason})

    def wait_comment(self, prefix: str, timeout: float = 10.0, after: float = 0.0) -> tuple:
        def find():
            for c in list(self.comments):
                if c[0] >= after and c[1].startswith(prefix):
                    return c
            return None

        return wait_until(find, timeout, f"an SSE comment `: {prefix}...` on {self.neuron_id}",
                          detail=lambda: {"comments": self.comments[-5:], "closed": self.closed})

    def wait_closed(self, timeout: float = 10.0) -> str:
        wait_until(lambda: self.closed, timeout, f"the server to end the SSE stream of {self.neuron_id}")
        return self.end_reason

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.conn.close()
        except Exception:
            pass
