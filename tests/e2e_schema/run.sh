#!/usr/bin/env bash
# End-to-end SCHEMA suite: schemathesis 4.32.5 fuzzes every operation of the
# gateway's own `GET /openapi.json` (a real agent-gateway binary on the default
# configuration; a tenant API key, then the admin key on the admin routes) and
# no response may be a 5xx.
#
#   AGW_BIN=/path/to/agent-gateway bash tests/e2e_schema/run.sh [extra pytest args]
#
# Environment:
#   AGW_BIN            gateway binary (required)
#   AGW_TEST_PG_URL    admin database URL (e.g. postgres://postgres@127.0.0.1:5432/postgres);
#                      when set, the suite is repeated against PostgreSQL
#   AGW_VENV_DIR       venv prefix (default: $REPO/tests/.venv -> .venv-schema)
#   AGW_E2E_PYTHON     interpreter for creating the venv (default: python3, needs >= 3.10)
#   AGW_E2E_TIMEOUT    wall-clock limit per pytest run in seconds (default: 600)
#   AGW_SCHEMA_MAX_EXAMPLES  examples per operation and phase (default: schemathesis.toml's)
#   AGW_SCHEMA_SEED    schemathesis seed, to replay a run (default: random, printed)
#   AGW_SCHEMA_RUN_TIMEOUT  wall-clock limit of one schemathesis pass in seconds (default: 420;
#                      raise it with pytest's `-o timeout=N` and AGW_E2E_TIMEOUT for long runs)
#   AGW_EVENTS_PYTHON  python with tests/requirements-events.txt (default: the venv <prefix>-events,
#                      created here): checks every stopped gateway's execution events
#   AGW_E2E_KEEP=1     keep gateway work dirs (logs, SQLite file, schemathesis reports) even on success
#   AGW_E2E_SETUP_ONLY=1  prepare the venv and exit
#
# Runs pytest once per store; prints one summary line per run and exits
# non-zero if any run failed (pytest exit 5, "no tests collected", is a failure).
# The machinery is shared with the other suites: tests/lib/e2e.sh, tests/testkit.
set -uo pipefail

E2E_NAME="e2e-schema"
RUN_TIMEOUT="${AGW_E2E_TIMEOUT:-600}"
# shellcheck source=../lib/e2e.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/e2e.sh"

e2e_setup schema
e2e_target

python="$(venv_dir schema)/bin/python"
run_each_store "schemathesis==$("$python" -c 'from importlib.metadata import version; print(version("schemathesis"))')" \
  "$python" -- "$@"
print_summary
