#!/usr/bin/env bash
# The whole agent-gateway test suite, from a bare machine:
#   1. makes sure PostgreSQL is up on 127.0.0.1:5432 (starts it, or installs
#      it from Debian's packages, when it is not), and that Prometheus and
#      PgBouncer are installed (Debian's packages when missing);
#   2. builds the workspace;
#   3. runs the Rust tests (unit tests, handler tests, and the store
#      conformance suite on SQLite and on PostgreSQL — a fresh database per case);
#   4. runs the pytest end-to-end suites with the pinned real SDKs (own venvs)
#      against the built binary, on SQLite and on PostgreSQL: Intent Bus
#      (intent-bus 1.3.2 and 2.1.2), neurons (holokai-neuron-sdk 0.1.1 and 0.2.0),
#      governance (hestiaos 1.0.1), OpenTelemetry export (OTLP receivers on
#      opentelemetry-proto), and metrics (a real Prometheus scraping the gateway
#      under a workload; every Grafana panel query must return data), and the
#      gateway's own OpenAPI document fuzzed by schemathesis 4.32.5 (no 5xx), and
#      the operator console in a real headless Chromium (Debian's chromium and
#      chromium-driver, selenium 4.35.0).
#
#   tests/run-all.sh            setup + everything
#   tests/run-all.sh --setup    setup only (PostgreSQL, Prometheus, PgBouncer, Chromium, build, venvs)
#
# Environment: CARGO_TARGET_DIR (reuse a build), AGW_TEST_PG_URL (admin URL of
# the PostgreSQL server to create test databases on; default
# postgres://postgres@127.0.0.1:5432/postgres), AGW_VENV_DIR (venv prefix),
# AGW_PGBOUNCER (pgbouncer binary; installed from Debian's packages when none).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
export AGW_TEST_PG_URL="${AGW_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
SETUP_ONLY=0
[ "${1:-}" = "--setup" ] && SETUP_ONLY=1

say() { printf '\n=== %s ===\n' "$*"; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }

ensure_postgres() {
  say "PostgreSQL"
  if ! command -v pg_isready >/dev/null 2>&1 || ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    echo "PostgreSQL not installed: installing it from Debian's packages"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql postgresql-client >/dev/null
  fi
  if ! pg_up; then
    echo "PostgreSQL is not running: starting it"
    for v in $(ls /etc/postgresql); do
      as_root pg_ctlcluster --skip-systemctl-redirect "$v" main start || true
    done
    for _ in $(seq 1 30); do pg_up && break; sleep 1; done
  fi
  pg_up || { echo "PostgreSQL did not come up on 127.0.0.1:5432" >&2; exit 1; }
  # Trust auth for local test connections is the machine's default; make sure
  # the URL works before spending time on the build.
  if ! psql "$AGW_TEST_PG_URL" -qAtc 'select 1' >/dev/null 2>&1; then
    echo "cannot connect with AGW_TEST_PG_URL=$AGW_TEST_PG_URL (does it allow password-less local access?)" >&2
    exit 1
  fi
  echo "PostgreSQL ready: $AGW_TEST_PG_URL"
}

# The metrics suite runs a real Prometheus server: Debian's `prometheus`
# package, installed only when no `prometheus` is on PATH (or AGW_PROMETHEUS).
ensure_prometheus() {
  say "Prometheus"
  local bin="${AGW_PROMETHEUS:-prometheus}"
  if ! command -v "$bin" >/dev/null 2>&1; then
    echo "Prometheus not installed: installing it from Debian's packages"
    if ! { as_root apt-get update -qq \
           && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null; }; then
      echo "cannot install Prometheus (apt-get install -y prometheus failed): install a prometheus binary" \
           "(2.x) on PATH or set AGW_PROMETHEUS to one, then re-run" >&2
      exit 1
    fi
    # The package may start its service where an init system runs; the suite
    # starts its own server on a free port and does not need it.
  fi
  command -v "$bin" >/dev/null 2>&1 || { echo "no $bin on PATH after installing Prometheus" >&2; exit 1; }
  echo "Prometheus ready: $("$bin" --version 2>&1 | head -n1)"
}

# The pooler tests run a real PgBouncer in transaction pooling mode: Debian's
# `pgbouncer` package, installed only when no `pgbouncer` is found (or AGW_PGBOUNCER).
ensure_pgbouncer() {
  say "PgBouncer"
  local bin="${AGW_PGBOUNCER:-}"
  if [ -z "$bin" ]; then
    bin="$(command -v pgbouncer || true)"
    [ -z "$bin" ] && [ -x /usr/sbin/pgbouncer ] && bin=/usr/sbin/pgbouncer
  fi
  if [ -z "$bin" ]; then
    echo "PgBouncer not installed: installing it from Debian's packages"
    if ! { as_root apt-get update -qq \
           && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >/dev/null; }; then
      echo "cannot install PgBouncer (apt-get install -y pgbouncer failed): install a pgbouncer binary" \
           "(1.18+) on PATH or set AGW_PGBOUNCER to one, then re-run" >&2
      exit 1
    fi
    # The package may start its own service where an init system runs; the
    # tests start their own pgbouncer on a free port and do not need it.
    bin="$(command -v pgbouncer || echo /usr/sbin/pgbouncer)"
  fi
  [ -x "$bin" ] || { echo "no pgbouncer binary at $bin" >&2; exit 1; }
  export AGW_PGBOUNCER="$bin" AGW_E2E_REQUIRE_PGBOUNCER=1
  echo "PgBouncer ready: $("$bin" --version 2>&1 | head -n1)"
}

# The console suite drives a real headless browser: Debian's `chromium` and
# `chromium-driver`, installed only when they are not on PATH (or named by
# AGW_CHROMIUM / AGW_CHROMEDRIVER).
ensure_chromium() {
  say "Chromium"
  local browser="${AGW_CHROMIUM:-chromium}" driver="${AGW_CHROMEDRIVER:-chromedriver}"
  if ! command -v "$browser" >/dev/null 2>&1 || ! command -v "$driver" >/dev/null 2>&1; then
    echo "Chromium or its driver not installed: installing them from Debian's packages"
    if ! { as_root apt-get update -qq \
           && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }; then
      echo "cannot install Chromium (apt-get install -y chromium chromium-driver failed): install them" \
           "or set AGW_CHROMIUM / AGW_CHROMEDRIVER, then re-run" >&2
      exit 1
    fi
  fi
  command -v "$browser" >/dev/null 2>&1 && command -v "$driver" >/dev/null 2>&1 \
    || { echo "no $browser / $driver on PATH after installing Chromium" >&2; exit 1; }
  echo "Chromium ready: $("$browser" --version 2>/dev/null | head -n1); $("$driver" --version | head -n1)"
}

build() {
  say "cargo build"
  cargo build --workspace --all-targets --locked
  TARGET_DIR="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
  export AGW_BIN="$TARGET_DIR/debug/agent-gateway"
}

ensure_postgres
ensure_prometheus
ensure_pgbouncer
ensure_chromium
build
if [ "$SETUP_ONLY" = 1 ]; then
  AGW_E2E_SETUP_ONLY=1 bash tests/e2e/run.sh
  AGW_E2E_SETUP_ONLY=1 bash tests/e2e_neuron/run.sh
  AGW_E2E_SETUP_ONLY=1 bash tests/e2e_governance/run.sh
  AGW_E2E_SETUP_ONLY=1 bash tests/e2e_otel/run.sh
  AGW_E2E_SETUP_ONLY=1 bash tests/e2e_metrics/run.sh
  AGW_E2E_SETUP_ONLY=1 bash tests/e2e_schema/run.sh
  AGW_E2E_SETUP_ONLY=1 bash tests/e2e_console/run.sh
  say "setup done"
  exit 0
fi

say "Lint gates: cargo fmt --check, cargo clippy -D warnings"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

say "Rust tests (unit, handlers, store conformance on SQLite and PostgreSQL)"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi

say "End-to-end suites with the real SDKs (SQLite and PostgreSQL)"
status=0
bash tests/e2e/run.sh || status=1
bash tests/e2e_neuron/run.sh || status=1
bash tests/e2e_governance/run.sh || status=1
bash tests/e2e_otel/run.sh || status=1
bash tests/e2e_metrics/run.sh || status=1
bash tests/e2e_schema/run.sh || status=1
bash tests/e2e_console/run.sh || status=1
[ "$status" = 0 ] || { echo "end-to-end suites failed" >&2; exit 1; }
say "all tests passed"
