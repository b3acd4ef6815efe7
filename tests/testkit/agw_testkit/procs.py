"""Child processes of the suites (the gateway, Prometheus): a free loopback
port, a child that dies with the test process, a graceful stop, a log tail."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Optional, Tuple

import requests


def free_port() -> int:
    """A loopback port nothing listens on right now (another process may take it
    before the child binds it: callers retry on "address in use")."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pdeathsig() -> None:  # pragma: no cover - runs in the child before exec
    """`preexec_fn`: own session, and SIGTERM from the kernel if the test process dies."""
    os.setsid()
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except Exception:
        pass


def terminate(proc: subprocess.Popen, grace: float) -> Optional[int]:
    """SIGTERM `proc` and wait up to `grace` seconds; its exit code, or None when it
    had to be killed. A process that already ended just reports its code."""
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        kill(proc)
        return None


def kill(proc: Optional[subprocess.Popen]) -> None:
    """SIGKILL `proc` (by its own PID) if it still runs, and reap it."""
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)


def tail(path: Path, limit: int = 6000) -> str:
    """The last `limit` bytes of a log file as text ('' when unreadable)."""
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return data[-limit:].decode("utf-8", "replace")


def wait_ready(proc: subprocess.Popen, url: str, timeout_s: float) -> Tuple[bool, str]:
    """Poll GET `url` until it answers 200, `proc` exits, or `timeout_s` passes.
    Returns (True, "") or (False, why); why starts "exited with code N" when it exited."""
    deadline = time.monotonic() + timeout_s
    path = "/" + url.split("/", 3)[-1]
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False, f"exited with code {proc.returncode}"
        try:
            res = requests.get(url, timeout=1.0)
            if res.status_code == 200:
                return True, ""
            last = f"{path} answered {res.status_code} {res.text[:200]!r}"
        except requests.RequestException as e:
            last = f"{path}: {type(e).__name__}"
        time.sleep(0.1)
    return False, last
