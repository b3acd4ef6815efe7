"""A real `agent-gateway serve` process for the end-to-end suites.

Environment read here:
  AGW_BIN            path of the gateway binary (required)
  AGW_E2E_STORE      sqlite (default) | postgres (see store.py)
  AGW_TEST_PG_URL    admin database URL, required for the postgres store; a fresh
                     database is created per gateway instance and dropped after
  AGW_EVENTS_PYTHON  python of the events venv (tests/requirements-events.txt)

A gateway may also get a config file (`config=` TOML text): it is written to
its work dir and named by AGW_CONFIG; write_config() replaces it later (the
governance suite's hot-reload tests).

When a gateway's use ends (running_gateway), all its execution events are
exported with the admin key and checked independently (tests/events/
check_gateway_events.py in the AGW_EVENTS_PYTHON venv: JSON Schema + the
`intentproof` package), then `agent-gateway events verify` runs on its
database; any failure fails the test whose teardown stopped it. Every gateway
is recorded in ALL_GATEWAYS for the plugin's end-of-session report.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest
import requests

from . import REPO
from .procs import free_port, kill, pdeathsig, tail, terminate, wait_ready
from .raw import RawClient
from .store import PgDatabase, pg_admin_url, store_kind

READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 15.0
EVENT_SCHEMA = REPO / "events/tests/data/intentproof/execution_event.v1.schema.json"
EVENT_CHECKER = REPO / "tests/events/check_gateway_events.py"

# Settings every gateway of the suites gets unless a test overrides them. The
# request limits are the defaults users get (tenant rate limit, pre-auth limit,
# timeouts): the suites run a fleet's worth of SDK traffic through them.
BASE_SETTINGS: Dict[str, str] = {
    "AGW_INTENT_BUS_IDLE_RETRY_AFTER_SECS": "1",
    "AGW_STORE_SWEEP_INTERVAL_MS": "200",
}


class GatewayError(RuntimeError):
    pass


def gateway_binary() -> str:
    path = os.environ.get("AGW_BIN")
    if not path:
        raise GatewayError("AGW_BIN is not set: point it at the agent-gateway binary")
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise GatewayError(f"AGW_BIN={path!r} is not an executable file")
    return path


class Gateway:
    """Handle on one running gateway process."""

    def __init__(self, settings: Optional[Dict[str, str]] = None, name: str = "gw",
                 config: Optional[str] = None, bare: bool = False,
                 database_url: Optional[str] = None, jwt_secret: Optional[str] = None):
        """`bare`: the default configuration -- only AGW_LISTEN, AGW_DATABASE_URL and
        AGW_ADMIN_KEY are set (no BASE_SETTINGS, no JWT secret). `database_url`: use
        this store (its creator drops it) instead of a fresh one of AGW_E2E_STORE;
        `jwt_secret`: another replica's (tokens minted for one are accepted by both)."""
        self.name = name
        self.fixed_database_url = database_url
        self.admin_key = "adm_" + secrets.token_hex(16)
        self.jwt_secret: Optional[str] = None if bare else jwt_secret or "jwt_" + secrets.token_hex(24)
        self.settings = {} if bare else dict(BASE_SETTINGS)
        if settings:
            self.settings.update({k: str(v) for k, v in settings.items()})
        self.workdir = Path(tempfile.mkdtemp(prefix=f"agw-e2e-{name}-"))
        self.stderr_path = self.workdir / "gateway.stderr"
        self.stdout_path = self.workdir / "gateway.stdout"
        self.proc: Optional[subprocess.Popen] = None
        self.pg: Optional[PgDatabase] = None
        self.port: Optional[int] = None
        self.base_url = ""
        self.database_url: Optional[str] = None
        self.env: Dict[str, str] = {}  # the daemon's exact environment (for cli() / restart())
        self._owner_seq = 0
        self.events_checked: Optional[int] = None  # events the last check_events_http() exported
        self.events_verify_output = ""  # what the last `events verify` printed
        self.events_in_store: Optional[int] = None  # the events it verified
        self.config_path: Optional[Path] = None
        if config is not None:
            self.config_path = self.workdir / "agent-gateway.toml"
            self.write_config(config)
            self.settings["AGW_CONFIG"] = str(self.config_path)

    def write_config(self, text: str, keep_mtime: bool = False) -> None:
        """Replace the config file atomically (write + rename: a reader never sees half
        a file). Its mtime differs from the old file's, unless keep_mtime (then only a
        SIGHUP, not the mtime poll, tells the daemon to read it)."""
        assert self.config_path is not None, "write_config() needs a gateway started with config="
        old = self.config_path.stat().st_mtime_ns if self.config_path.exists() else None
        tmp = self.config_path.with_name(self.config_path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        if old is not None:
            new = tmp.stat().st_mtime_ns
            if keep_mtime:
                os.utime(tmp, ns=(old, old))
            elif new <= old:
                os.utime(tmp, ns=(old + 1_000_000, old + 1_000_000))
        os.replace(tmp, self.config_path)

    # -- lifecycle -----------------------------------------------------------
    def _database_url(self) -> str:
        if self.fixed_database_url is not None:
            return self.fixed_database_url
        if store_kind() == "postgres":
            self.pg = PgDatabase(pg_admin_url())
            self.pg.create()
            return self.pg.url
        return "sqlite://" + str(self.workdir / "gw.db")

    def _spawn(self) -> None:
        """`$AGW_BIN serve` with self.env, output appended to the work dir's logs."""
        with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(
                [gateway_binary(), "serve"], env=self.env, stdin=subprocess.DEVNULL,
                stdout=out, stderr=err, cwd=self.workdir, preexec_fn=pdeathsig,
            )

    def start(self) -> "Gateway":
        gateway_binary()
        db_url = self._database_url()
        self.database_url = db_url
        try:
            last_err = ""
            for _attempt in range(3):  # a stolen free port is retried
                self.port = free_port()
                self.base_url = f"http://127.0.0.1:{self.port}"
                env = {k: v for k, v in os.environ.items() if not k.startswith("AGW_")}
                env.update(self.settings)
                env.update({
                    "AGW_LISTEN": f"127.0.0.1:{self.port}",
                    "AGW_DATABASE_URL": db_url,
                    "AGW_ADMIN_KEY": self.admin_key,
                })
                if self.jwt_secret is not None:
                    env["AGW_JWT_SECRET"] = self.jwt_secret
                env.setdefault("RUST_BACKTRACE", "1")
                self.env = env
                self._spawn()
                ok, last_err = self._wait_ready()
                if ok:
                    return self
                kill(self.proc)
                if "in use" not in last_err.lower():
                    break
            raise GatewayError(
                f"gateway {self.name} did not become ready (limit {READY_TIMEOUT_S:.0f}s): {last_err}\n"
                f"--- stderr ---\n{self.stderr_tail()}\n--- stdout ---\n{tail(self.stdout_path)}"
            )
        except BaseException:
            self._drop_db()
            raise

    def _wait_ready(self) -> Tuple[bool, str]:
        """Poll GET /readyz until 200, the process exits, or READY_TIMEOUT_S passes."""
        ok, why = wait_ready(self.proc, self.base_url + "/readyz", READY_TIMEOUT_S)
        if not ok and self.proc.poll() is not None:
            why = f"process {why}: {self.stderr_tail(2000)}"
        return ok, why

    def _drop_db(self) -> None:
        if self.pg is not None:
            try:
                self.pg.drop()
            except Exception as e:  # reported but never masks the test outcome
                print(f"warning: could not drop {self.pg.name}: {e}", file=sys.stderr)
            self.pg = None

    def stop(self, drop_db: bool = True) -> Optional[int]:
        """SIGTERM the gateway, wait, return its exit code (None if it had to be killed);
        drop its PostgreSQL database unless `drop_db` is false."""
        try:
            if self.proc is None:
                return None
            return terminate(self.proc, STOP_TIMEOUT_S)
        finally:
            if drop_db:
                self._drop_db()

    def restart(self) -> Optional[int]:
        """SIGTERM the daemon and start it again on the same port, database and
        secrets; returns the old process's exit code (None if it had to be killed)."""
        assert self.proc is not None and self.env, "restart() needs a started gateway"
        code = terminate(self.proc, STOP_TIMEOUT_S)
        self._spawn()
        ok, last_err = self._wait_ready()
        if not ok:
            kill(self.proc)
            raise GatewayError(f"gateway {self.name} did not come back after restart: {last_err}\n"
                               f"--- stderr ---\n{self.stderr_tail()}")
        return code

    def cli(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess:
        """Run `$AGW_BIN <args>` with this gateway's environment (same store and secrets)."""
        assert self.env, "cli() needs a started gateway"
        return subprocess.run(
            [gateway_binary(), *args], env=self.env, stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=timeout, cwd=self.workdir,
        )

    # -- execution events --------------------------------------------------------
    def check_events_http(self) -> List[str]:
        """Export every event (admin key, all pages) and check it: schema + intentproof.
        One subprocess in the events venv; returns the failures."""
        python = os.environ.get("AGW_EVENTS_PYTHON", "")
        if not python:
            return ["AGW_EVENTS_PYTHON is not set: cannot check execution events"]
        out_dir = self.workdir / "events"
        try:
            res = subprocess.run(
                [python, str(EVENT_CHECKER), "--base-url", self.base_url, "--admin-key", self.admin_key,
                 "--schema", str(EVENT_SCHEMA), "--out-dir", str(out_dir)],
                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300,
            )
        except subprocess.TimeoutExpired:
            return ["event check timed out after 300 s"]
        try:
            summary = json.loads(res.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return [f"event checker exited {res.returncode} without a summary: "
                    f"{res.stdout[-500:]!r} {res.stderr[-1500:]!r}"]
        self.events_checked = summary.get("events", 0)
        failures = list(summary.get("failures") or [])
        if res.returncode != 0 and not failures:
            failures.append(f"event checker exited {res.returncode}: {res.stderr[-1500:]!r}")
        more = summary.get("failure_count", len(failures)) - len(failures)
        if more > 0:
            failures.append(f"... and {more} more (events in {out_dir})")
        return failures

    def verify_events_cli(self) -> List[str]:
        """`agent-gateway events verify` on this gateway's database (gateway stopped). Without
        its config file: AGW_DATABASE_URL names the store, and a test may have left the file
        invalid on purpose (hot-reload tests)."""
        if not self.env:
            return []
        env = {k: v for k, v in self.env.items() if k != "AGW_CONFIG"}
        cwd = self.workdir / "events"  # not the work dir: ./agent-gateway.toml is read when present
        cwd.mkdir(exist_ok=True)
        try:
            res = subprocess.run(
                [gateway_binary(), "events", "verify"], env=env, stdin=subprocess.DEVNULL,
                capture_output=True, text=True, timeout=120, cwd=cwd,
            )
        except subprocess.TimeoutExpired:
            return ["`agent-gateway events verify` timed out after 120 s"]
        self.events_verify_output = (res.stdout + res.stderr).strip()
        if res.returncode != 0:
            return [f"`agent-gateway events verify` exited {res.returncode}: {self.events_verify_output[-1500:]}"]
        m = re.search(r"ok: (\d+) events", res.stdout)
        if m is None:
            return [f"`agent-gateway events verify` printed no event count: {self.events_verify_output[-500:]!r}"]
        self.events_in_store = int(m.group(1))
        if self.events_checked is not None and self.events_in_store < self.events_checked:
            return [f"`agent-gateway events verify` saw {self.events_in_store} events, "
                    f"GET /api/v1/events exported {self.events_checked}"]
        return []

    # -- diagnostics -----------------------------------------------------------
    def stderr_tail(self, limit: int = 6000) -> str:
        return tail(self.stderr_path, limit)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- tenants ---------------------------------------------------------------
    def generate_key(self, owner: str) -> str:
        res = requests.post(
            self.base_url + "/admin/generate_key",
            headers={"X-API-KEY": self.admin_key, "Content-Type": "application/json"},
            json={"owner": owner}, timeout=10,
        )
        if res.status_code not in (200, 201):
            raise GatewayError(f"generate_key({owner!r}) -> {res.status_code} {res.text[:300]!r}")
        data = res.json()
        assert data.get("owner") == owner, data
        key = data.get("api_key")
        assert isinstance(key, str) and key, data
        return key

    def new_tenant(self, prefix: str = "tenant") -> str:
        """A fresh tenant (unique owner) and its first key."""
        self._owner_seq += 1
        return self.generate_key(f"{prefix}-{self._owner_seq}-{uuid.uuid4().hex[:8]}")

    def raw(self, api_key: Optional[str]) -> RawClient:
        return RawClient(self.base_url, api_key)

    @property
    def admin(self) -> RawClient:
        return RawClient(self.base_url, self.admin_key)


# === the suite's gateways ===

#: Every gateway the session started: logs are reported on failure, work dirs
#: removed on success (plugin.py).
ALL_GATEWAYS: List[Gateway] = []

#: (gateway name, failures) of every gateway whose execution events did not check out.
EVENT_FAILURES: List[Tuple[str, List[str]]] = []


@contextmanager
def running_gateway(settings: Optional[Dict[str, str]] = None, name: str = "gw",
                    config: Optional[str] = None, bare: bool = False,
                    database_url: Optional[str] = None, jwt_secret: Optional[str] = None) -> Iterator[Gateway]:
    """Start a gateway (with `config` as its config file, if given; `bare`: the
    default configuration; `database_url`: a given store; `jwt_secret`: a given one; see Gateway), yield it, check its execution events,
    SIGTERM it and require a clean exit (code 0) and events that verify (before
    its PostgreSQL database is dropped)."""
    g = Gateway(settings, name=name, config=config, bare=bare, database_url=database_url,
                jwt_secret=jwt_secret)
    ALL_GATEWAYS.append(g)
    g.start()
    try:
        yield g
    finally:
        was_alive = g.alive()
        event_failures = g.check_events_http() if was_alive else []
        code = g.stop(drop_db=False)
        try:
            event_failures += g.verify_events_cli()
        finally:
            g._drop_db()
        if event_failures:
            EVENT_FAILURES.append((name, event_failures))
        if not was_alive:
            hint = " -- it exited cleanly, so something outside the suite stopped it (pkill?)" if code == 0 else ""
            pytest.fail(f"gateway {name} died during the tests (exit {code}){hint}; stderr:\n{g.stderr_tail()}")
        assert code == 0, (
            f"gateway {name} exited with {code} after SIGTERM (None = still running after the grace period, "
            f"e.g. an SSE stream that does not end on shutdown); stderr:\n{g.stderr_tail()}"
        )
        if event_failures:
            pytest.fail(f"gateway {name}: its execution events do not verify ({len(event_failures)} "
                        f"failures; exported to {g.workdir / 'events'}):\n" + "\n".join(event_failures))


class GatewayFactory:
    """factory(name="special", config=None, **settings) -> a started gateway named
    `<prefix>-<name>`, each stopped (and checked, as running_gateway does) by close(),
    last started first."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self._cms: List[Any] = []

    def __call__(self, name: str = "special", config: Optional[str] = None, **settings: Any) -> Gateway:
        cm = running_gateway({k: str(v) for k, v in settings.items()}, name=f"{self.prefix}-{name}",
                             config=config)
        g = cm.__enter__()
        self._cms.append(cm)
        return g

    def close(self) -> None:
        """Stop every gateway; every one is stopped even when one fails, then the first failure is raised."""
        errors = []
        for cm in reversed(self._cms):
            try:
                cm.__exit__(None, None, None)
            except BaseException as e:  # collect, report all
                errors.append(e)
        self._cms.clear()
        if errors:
            raise errors[0]
