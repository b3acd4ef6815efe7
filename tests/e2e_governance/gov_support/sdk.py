"""The installed, unmodified `hestiaos` SDK (1.0.1) as users drive it.

- `sync_client`   hestiaos.Client: every call is its own asyncio.run() around one
                  shared httpx.AsyncClient (works across calls only because the
                  gateway answers SDK requests with `Connection: close`)
- `run_async`     a coroutine on a fresh AsyncClient, from a sync test (asyncio.run)
- `collect_stream` every StreamEvent of AsyncClient.run_stream
- `cli`           the `hestiaos` console script of this venv, as a subprocess
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Awaitable, Callable, List, Optional, TypeVar

import hestiaos
from hestiaos import AsyncClient, Client, StreamEvent

SDK_VERSION: str = hestiaos.__version__
T = TypeVar("T")

# httpx timeout of the SDK clients the suite builds: above every run's timeout_ms.
CLIENT_TIMEOUT_S = 90.0


def sync_client(base_url: str, api_key: Optional[str], timeout: float = CLIENT_TIMEOUT_S) -> Client:
    return Client(base_url=base_url, api_key=api_key, timeout=timeout)


def run_async(base_url: str, api_key: Optional[str], fn: Callable[[AsyncClient], Awaitable[T]],
              timeout: float = CLIENT_TIMEOUT_S) -> T:
    """asyncio.run(fn(client)) with a fresh AsyncClient, closed afterwards."""

    async def main() -> T:
        async with AsyncClient(base_url=base_url, api_key=api_key, timeout=timeout) as c:
            return await fn(c)

    return asyncio.run(main())


def collect_stream(base_url: str, api_key: Optional[str], input: str, **kw: Any) -> List[StreamEvent]:
    """Every event of AsyncClient.run_stream(input, **kw), to the end of the stream."""

    async def go(c: AsyncClient) -> List[StreamEvent]:
        return [ev async for ev in c.run_stream(input, **kw)]

    return run_async(base_url, api_key, go)


def cli_path() -> str:
    script = Path(sys.executable).with_name("hestiaos")
    assert script.exists(), f"the hestiaos console script is not installed next to {sys.executable}"
    return str(script)


def cli(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
    """`hestiaos ARGS...` (typer) with plain, wide, colourless output."""
    env = dict(os.environ)
    env.update({"NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "200", "_TYPER_STANDARD_TRACEBACK": "1"})
    return subprocess.run([cli_path(), *args], env=env, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=timeout)


def cli_json(*args: str) -> Any:
    """Run the CLI (pass --json among args), require exit 0, return the parsed stdout."""
    res = cli(*args)
    assert res.returncode == 0, (f"`hestiaos {' '.join(args)}` exited {res.returncode}\n"
                                 f"stdout: {res.stdout[-2000:]}\nstderr: {res.stderr[-3000:]}")
    try:
        return json.loads(res.stdout)
    except ValueError:
        raise AssertionError(f"`hestiaos {' '.join(args)}` did not print JSON: {res.stdout!r}") from None
