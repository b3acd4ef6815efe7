"""A real, unmodified `holokai_neuron_sdk.Neuron` on its own event-loop thread.

Tests are plain synchronous pytest functions: they submit tasks over HTTP,
poll with deadlines and may block freely, while each neuron runs its SDK
loop (SSE stream, heartbeats, handlers) in a daemon thread.  Handlers are
ordinary `async def handler(input, ctx)` coroutines executed on that loop.

Everything the SDK logs goes to a per-neuron logger whose records are kept:
the SDK drops a server frame that fails its strict models with only a
warning ("dropped malformed SSE frame"), so the fixture fails any test during
which that happened, quoting the frame.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib.util
import inspect
import logging
import threading
import time
import uuid
from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple, Union

import holokai_neuron_sdk
from holokai_neuron_sdk import Capability, CapabilityScopeOnBehalfOf, Neuron

from .waits import wait_until

SDK_VERSION: str = holokai_neuron_sdk.__version__
HAS_AUTH_MODULE: bool = importlib.util.find_spec("holokai_neuron_sdk.auth") is not None

AuthLike = Union[str, Callable[[], Union[str, Awaitable[str]]]]

DROPPED_FRAME_MSG = "dropped malformed SSE frame"


def capability(type_: str, concurrency: int = 1, on_behalf_of: Optional[str] = None,
               lease_ttl_ms: Optional[int] = None) -> Capability:
    scope: Any = "any" if on_behalf_of is None else CapabilityScopeOnBehalfOf(on_behalf_of=on_behalf_of)
    kw: Dict[str, Any] = {"type": type_, "scope": scope, "concurrency": concurrency}
    if lease_ttl_ms is not None:
        kw["lease_ttl_ms"] = lease_ttl_ms
    return Capability(**kw)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: List[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class LoopThread:
    """One asyncio loop running forever in a daemon thread."""

    def __init__(self, name: str):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name=f"loop-{name}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(self, coro: Awaitable[Any]) -> concurrent.futures.Future:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[arg-type]

    def call(self, coro: Awaitable[Any], timeout: float) -> Any:
        return self.submit(coro).result(timeout)

    def close(self) -> None:
        if self.loop.is_closed():
            return

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            self.call(cancel_all(), 10)
        except Exception:
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        if not self.thread.is_alive():
            self.loop.close()


class Gate:
    """Opened from the test thread, awaited inside a handler (cancellable, bounded)."""

    def __init__(self) -> None:
        self._ev = threading.Event()

    def open(self) -> None:
        self._ev.set()

    def is_open(self) -> bool:
        return self._ev.is_set()

    async def wait(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not self._ev.is_set():
            if time.monotonic() >= deadline:
                raise TimeoutError("gate was never opened by the test")
            await asyncio.sleep(0.02)


class Calls:
    """Thread-safe log of handler invocations (dicts), with bounded waits."""

    def __init__(self) -> None:
        self._items: List[Dict[str, Any]] = []
        self._lock = threading.Lock()

    def add(self, **item: Any) -> None:
        item.setdefault("t", time.monotonic())
        with self._lock:
            self._items.append(item)

    def all(self, **match: Any) -> List[Dict[str, Any]]:
        with self._lock:
            items = list(self._items)
        return [i for i in items if all(i.get(k) == v for k, v in match.items())]

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def wait(self, n: int = 1, timeout: float = 15.0, what: str = "", **match: Any) -> List[Dict[str, Any]]:
        def enough():
            got = self.all(**match)
            return got if len(got) >= n else None

        return wait_until(enough, timeout, what or f"{n} handler call(s) matching {match}",
                          detail=lambda: self.all())


def ctx_info(ctx: Any, **extra: Any) -> Dict[str, Any]:
    """What a handler saw of its lease, as a plain dict for Calls."""
    t = ctx.task
    info = {
        "lease_id": ctx.lease_id,
        "task_id": t.task_id,
        "workflow_id": t.workflow_id,
        "capability": t.capability,
        "attempt": t.attempt,
        "on_behalf_of": t.on_behalf_of,
        "metadata": t.metadata,
        "input": t.input,
        "expires_at": ctx.lease.expires_at,
    }
    info.update(extra)
    return info


class NeuronHandle:
    """Build with `add(...)`, then `start()`; `stop()` / `close()` from the test thread."""

    def __init__(self, base_url: str, auth: AuthLike, neuron_id: Optional[str] = None,
                 heartbeat_ms: int = 10_000, reconnect_ms: Tuple[int, int] = (200, 1_000)):
        self.base_url = base_url
        self.neuron_id = neuron_id or f"neuron-{uuid.uuid4().hex[:10]}"
        self.heartbeat_ms = heartbeat_ms
        self.reconnect_ms = reconnect_ms
        self._auth_source: AuthLike = auth
        self.auth_calls = 0
        self.loop = LoopThread(self.neuron_id)
        self.log = _Records()
        self.logger = logging.getLogger(f"e2e_neuron.sdk.{self.neuron_id}")
        self.logger.setLevel(logging.DEBUG)
        self.logger.addHandler(self.log)
        self.events: List[Tuple[float, str, Any]] = []
        self.frames: List[Any] = []
        self.frame_hooks: List[Callable[[Any], None]] = []
        self._handlers: List[Tuple[Capability, Callable[..., Any], Any, Any]] = []
        self.neuron: Optional[Neuron] = None
        self.stopped = False

    # -- setup ---------------------------------------------------------------
    def add(self, cap: Capability, handler: Callable[..., Any], input_schema: Any = None,
            output_schema: Any = None) -> "NeuronHandle":
        self._handlers.append((cap, handler, input_schema, output_schema))
        return self

    def set_auth(self, auth: AuthLike) -> None:
        self._auth_source = auth

    async def _auth(self) -> str:
        self.auth_calls += 1
        src = self._auth_source
        if isinstance(src, str):
            return src
        value = src()
        if inspect.isawaitable(value):
            value = await value
        return value  # type: ignore[return-value]

    def _record(self, name: str, *args: Any) -> None:
        self.events.append((time.monotonic(), name, args[0] if args else None))

    def _on_frame(self, frame: Any) -> None:
        self.frames.append(frame)
        for hook in list(self.frame_hooks):
            hook(frame)

    # -- lifecycle -----------------------------------------------------------
    def start(self, wait_registered: bool = True, timeout: float = 15.0) -> "NeuronHandle":
        async def build_and_start() -> None:
            n = Neuron(
                gateway_url=self.base_url,
                neuron_id=self.neuron_id,
                auth=self._auth,
                logger=self.logger,
                heartbeat_interval_ms=self.heartbeat_ms,
                initial_reconnect_delay_ms=self.reconnect_ms[0],
                max_reconnect_delay_ms=self.reconnect_ms[1],
            )
            for cap, handler, ischema, oschema in self._handlers:
                n.register_handler(cap, handler, input_schema=ischema, output_schema=oschema)
            for ev in ("connection:open", "connection:registered", "connection:close",
                       "connection:reconnecting", "error"):
                n.on(ev, lambda *a, _ev=ev: self._record(_ev, *a))
            n.on("frame", self._on_frame)
            self.neuron = n
            await n.start()

        try:
            self.loop.call(build_and_start(), timeout)
        except concurrent.futures.TimeoutError:
            raise AssertionError(
                f"{self.neuron_id}: Neuron.start() did not return within {timeout}s -- the SDK waits for the "
                "SSE response headers of GET /neuron/events before it POSTs register (neuron.md: send the "
                f"headers and ': connected' at once). SDK log: {self.log_lines()}"
            ) from None
        if wait_registered:
            self.wait_registered(1, timeout)
        return self

    def count(self, event: str) -> int:
        return sum(1 for _, name, _ in self.events if name == event)

    def wait_registered(self, n: int = 1, timeout: float = 15.0) -> None:
        wait_until(
            lambda: self.count("connection:registered") >= n, timeout,
            f"{self.neuron_id}: {n} accepted registration(s) (a valid `registered` frame after POST /neuron/register)",
            detail=lambda: {"events": [(name, repr(arg)[:200]) for _, name, arg in self.events][-8:],
                            "sdk_log": self.log_lines()[-8:]},
        )

    def stop_async(self, drain: bool = True, timeout: float = 10.0) -> concurrent.futures.Future:
        assert self.neuron is not None
        self.stopped = True
        return self.loop.submit(self.neuron.stop(drain=drain, timeout=timeout))

    def stop(self, drain: bool = True, timeout: float = 10.0) -> None:
        self.stop_async(drain=drain, timeout=timeout).result(timeout + 20)

    def update_capability(self, capability_type: str, concurrency: int, timeout: float = 10.0) -> None:
        assert self.neuron is not None
        self.loop.call(self.neuron.update_capability(capability_type, concurrency=concurrency), timeout)

    def close(self) -> None:
        """Stop without draining if still running, then end the loop thread."""
        try:
            if self.neuron is not None and not self.stopped:
                self.stop(drain=False, timeout=2.0)
        except Exception:
            pass
        finally:
            self.loop.close()
            self.logger.removeHandler(self.log)

    # -- inspection ----------------------------------------------------------
    def frames_of(self, type_: str) -> List[Any]:
        return [f for f in list(self.frames) if getattr(f, "type", None) == type_]

    def records(self, contains: str) -> List[logging.LogRecord]:
        return [r for r in list(self.log.records) if contains in r.getMessage()]

    def dropped_frames(self) -> List[str]:
        return [f"event={getattr(r, 'event', '?')!r} err={getattr(r, 'err', '?')} data={getattr(r, 'data', '?')!r}"
                for r in self.records(DROPPED_FRAME_MSG)]

    def log_lines(self) -> List[str]:
        out = []
        for r in list(self.log.records):
            extra = {k: v for k, v in r.__dict__.items()
                     if k in ("err", "reason", "status", "path", "kind", "lease_id", "data", "event", "delay_ms")}
            out.append(f"{r.levelname} {r.getMessage()} {extra if extra else ''}".strip())
        return out


class InFlight:
    """Max simultaneous executions (entered in handlers; one loop thread, but keep it safe)."""

    def __init__(self) -> None:
        self.current = 0
        self.max = 0
        self._lock = threading.Lock()

    def enter(self) -> None:
        with self._lock:
            self.current += 1
            self.max = max(self.max, self.current)

    def exit(self) -> None:
        with self._lock:
            self.current -= 1


class LeaseLedger:
    """Leases the gateway pushed to one neuron and not yet finished by its handler.

    A lease counts from the moment its frame is parsed until the handler's
    `finally` runs -- which is before the SDK POSTs the ack, so the gateway
    cannot have freed the slot earlier. max_outstanding > concurrency means the
    gateway pushed more leases than the capability allows (the SDK's own
    semaphore would hide that from the handler-level count)."""

    def __init__(self, handle: NeuronHandle):
        self.outstanding: set = set()
        self.max_outstanding = 0
        self.received = 0
        self._lock = threading.Lock()
        handle.frame_hooks.append(self._frame)

    def _frame(self, frame: Any) -> None:
        if getattr(frame, "type", None) != "lease":
            return
        with self._lock:
            self.received += 1
            self.outstanding.add(frame.lease.lease_id)
            self.max_outstanding = max(self.max_outstanding, len(self.outstanding))

    def done(self, lease_id: str) -> None:
        with self._lock:
            self.outstanding.discard(lease_id)
