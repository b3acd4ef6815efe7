"""A real PgBouncer (Debian's `pgbouncer` package) in front of the PostgreSQL
server of AGW_TEST_PG_URL, for the suites' pooler tests: its own config in a
temp dir, a free port, `auth_type = trust`, and the pool mode asked for.

Environment read here:
  AGW_PGBOUNCER                 pgbouncer binary (default: `pgbouncer` on PATH, else /usr/sbin/pgbouncer)
  AGW_E2E_REQUIRE_PGBOUNCER=1   a missing binary fails the test instead of skipping it (run-all.sh)
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit, urlunsplit

import pytest

from .procs import free_port, terminate

START_TIMEOUT_S = 15.0


def pgbouncer_binary() -> Optional[str]:
    explicit = os.environ.get("AGW_PGBOUNCER")
    if explicit:
        return explicit
    return shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if os.access("/usr/sbin/pgbouncer", os.X_OK) else None)


def require_pgbouncer() -> str:
    """The binary, else skip (or fail under AGW_E2E_REQUIRE_PGBOUNCER=1)."""
    path = pgbouncer_binary()
    if path:
        return path
    why = "no pgbouncer binary (apt-get install pgbouncer, or set AGW_PGBOUNCER)"
    if os.environ.get("AGW_E2E_REQUIRE_PGBOUNCER") == "1":
        pytest.fail(why)
    pytest.skip(why)


class PgBouncer:
    """One pgbouncer process; `url(db)` is a URL to database `db` through it."""

    def __init__(self, admin_url: str, pool_mode: str = "transaction", pool_size: int = 4):
        self.binary = require_pgbouncer()
        parts = urlsplit(admin_url)
        self.user = parts.username or "postgres"
        self.server_host = parts.hostname or "127.0.0.1"
        self.server_port = parts.port or 5432
        self.admin_url = admin_url
        self.pool_mode = pool_mode
        self.pool_size = pool_size
        self.dir = Path(tempfile.mkdtemp(prefix="agw-pgbouncer-"))
        self.log_path = self.dir / "pgbouncer.log"
        self.port: Optional[int] = None
        self.proc: Optional[subprocess.Popen] = None

    def url(self, database: str) -> str:
        parts = urlsplit(self.admin_url)
        netloc = f"{self.user}@127.0.0.1:{self.port}"
        return urlunsplit((parts.scheme, netloc, "/" + database, "", ""))

    def start(self) -> "PgBouncer":
        self.port = free_port()
        ini = self.dir / "pgbouncer.ini"
        # A small server pool shared by every client connection, so clients
        # really do move between servers from one transaction to the next.
        ini.write_text(
            "[databases]\n"
            f"* = host={self.server_host} port={self.server_port}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {self.dir / 'userlist.txt'}\n"
            f"pool_mode = {self.pool_mode}\n"
            f"default_pool_size = {self.pool_size}\n"
            "max_client_conn = 1000\n"
            "server_check_delay = 0\n",
            encoding="utf-8",
        )
        (self.dir / "userlist.txt").write_text(f'"{self.user}" ""\n', encoding="utf-8")
        # PgBouncer refuses to run as root: it drops to `postgres` then, which
        # must read the config (the log goes to stderr, written by us).
        cmd = [self.binary]
        if os.geteuid() == 0:
            os.chmod(self.dir, 0o755)
            for f in self.dir.iterdir():
                os.chmod(f, 0o644)
            cmd += ["-u", "postgres"]
        cmd.append(str(ini))
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pgbouncer exited with {self.proc.returncode}: {self.log()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"pgbouncer did not listen on {self.port} within {START_TIMEOUT_S}s: {self.log()[-2000:]}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            terminate(self.proc, 10.0)  # SIGTERM to this process's own PID, then SIGKILL
        self.proc = None
