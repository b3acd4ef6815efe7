#!/usr/bin/env bash
# End-to-end GOVERNANCE suite: the real agent-gateway binary driven by the
# unmodified PyPI SDK hestiaos==1.0.1 (sync Client, AsyncClient, `hestiaos` CLI);
# runs are answered by intent-bus 2.1.2 workers and holokai-neuron-sdk 0.2.0 neurons.
#
#   AGW_BIN=/path/to/agent-gateway bash tests/e2e_governance/run.sh [extra pytest args]
#
# Environment:
#   AGW_BIN            gateway binary (required)
#   AGW_TEST_PG_URL    admin database URL (e.g. postgres://postgres@127.0.0.1:5432/postgres);
#                      when set, the suite is repeated against PostgreSQL
#   AGW_VENV_DIR       venv prefix (default: $REPO/tests/.venv -> .venv-hestia)
#   AGW_E2E_PYTHON     interpreter for creating the venv (default: python3; hestiaos needs >= 3.11)
#   AGW_E2E_TIMEOUT    wall-clock limit per pytest run in seconds (default: 900)
#   AGW_EVENTS_PYTHON  python with tests/requirements-events.txt (default: the venv <prefix>-events,
#                      created here): checks every stopped gateway's execution events
#   AGW_E2E_KEEP=1     keep gateway work dirs (logs, config files, SQLite files) even on success
#   AGW_E2E_SETUP_ONLY=1  prepare the venv and exit
#
# Runs pytest once per store; prints one summary line per run and exits
# non-zero if any run failed (pytest exit 5, "no tests collected", is a failure).
# The machinery is shared with the other suites: tests/lib/e2e.sh, tests/testkit.
set -uo pipefail

E2E_NAME="e2e-governance"
RUN_TIMEOUT="${AGW_E2E_TIMEOUT:-900}"
# shellcheck source=../lib/e2e.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/e2e.sh"

require_python 11 "hestiaos 1.0.1"
e2e_setup hestia
e2e_target

python="$(venv_dir hestia)/bin/python"
run_each_store "hestiaos==$("$python" -c 'import hestiaos; print(hestiaos.__version__)')" "$python" -- "$@"
print_summary
