#!/usr/bin/env bash
# End-to-end OPENTELEMETRY suite: the real agent-gateway binary exporting to
# OTLP receivers built on the official protobuf definitions (opentelemetry-proto
# behind http.server for OTLP/HTTP, grpcio for OTLP/gRPC), traced from
# intent-bus 2.1.2 clients and holokai-neuron-sdk 0.2.0 neurons.
#
#   AGW_BIN=/path/to/agent-gateway bash tests/e2e_otel/run.sh [extra pytest args]
#
# Environment:
#   AGW_BIN            gateway binary (required)
#   AGW_TEST_PG_URL    admin database URL; when set, the suite is repeated against PostgreSQL
#   AGW_VENV_DIR       venv prefix (default: $REPO/tests/.venv -> .venv-otel)
#   AGW_E2E_PYTHON     interpreter for creating the venv (default: python3, needs >= 3.10)
#   AGW_E2E_TIMEOUT    wall-clock limit per pytest run in seconds (default: 600)
#   AGW_EVENTS_PYTHON  python with tests/requirements-events.txt (default: the venv <prefix>-events,
#                      created here): checks every stopped gateway's execution events
#   AGW_E2E_KEEP=1     keep gateway work dirs (logs, SQLite files) even on success
#   AGW_E2E_SETUP_ONLY=1  prepare the venv and exit
#
# Runs pytest once per store; prints one summary line per run and exits
# non-zero if any run failed (pytest exit 5, "no tests collected", is a failure).
# The machinery is shared with the other suites: tests/lib/e2e.sh, tests/testkit.
set -uo pipefail

E2E_NAME="e2e-otel"
RUN_TIMEOUT="${AGW_E2E_TIMEOUT:-600}"
# shellcheck source=../lib/e2e.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/e2e.sh"

e2e_setup otel
e2e_target

python="$(venv_dir otel)/bin/python"
run_each_store "opentelemetry-proto==$("$python" -c 'import importlib.metadata as m; print(m.version("opentelemetry-proto"))')" \
  "$python" -- "$@"
print_summary
