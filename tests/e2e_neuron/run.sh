#!/usr/bin/env bash
# End-to-end NEURON suite: the real agent-gateway binary driven by the
# unmodified PyPI SDKs holokai-neuron-sdk==0.1.1 and ==0.2.0 (intent-bus 2.1.2
# for the cross-protocol tests).
#
#   AGW_BIN=/path/to/agent-gateway bash tests/e2e_neuron/run.sh [extra pytest args]
#
# Environment:
#   AGW_BIN            gateway binary (required)
#   AGW_TEST_PG_URL    admin database URL (e.g. postgres://postgres@127.0.0.1:5432/postgres);
#                      when set, every SDK run is repeated against PostgreSQL
#   AGW_VENV_DIR       venv prefix (default: $REPO/tests/.venv -> .venv-neuron1, .venv-neuron2)
#   AGW_E2E_PYTHON     interpreter for creating the venvs (default: python3, needs >= 3.10)
#   AGW_E2E_NEURON_SDKS  subset of "neuron1 neuron2" to run (default: both)
#   AGW_E2E_TIMEOUT    wall-clock limit per pytest run in seconds (default: 600)
#   AGW_EVENTS_PYTHON  python with tests/requirements-events.txt (default: the venv <prefix>-events,
#                      created here): checks every stopped gateway's execution events
#   AGW_E2E_KEEP=1     keep gateway work dirs (logs, SQLite files) even on success
#   AGW_E2E_NEURON_LOG=FILE  append every SDK log line of every test's neurons to FILE
#   AGW_E2E_SETUP_ONLY=1  prepare the venvs and exit
#   AGW_PGBOUNCER      pgbouncer binary for test_pgbouncer.py (default: pgbouncer on PATH or
#                      /usr/sbin/pgbouncer; without one it is skipped, unless AGW_E2E_REQUIRE_PGBOUNCER=1)
#
# Runs pytest once per (SDK venv x store); prints one summary line per run and
# exits non-zero if any run failed (pytest exit 5, "no tests collected", is a failure).
# The machinery is shared with the other suites: tests/lib/e2e.sh, tests/testkit.
set -uo pipefail

E2E_NAME="e2e-neuron"
RUN_TIMEOUT="${AGW_E2E_TIMEOUT:-600}"
SDKS="${AGW_E2E_NEURON_SDKS:-neuron1 neuron2}"
# shellcheck source=../lib/e2e.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/e2e.sh"

require_sets "$SDKS" neuron1 neuron2
# shellcheck disable=SC2086  # one venv per selected SDK set
e2e_setup $SDKS
e2e_target

for store in $STORES; do
  for sdk in $SDKS; do
    python="$(venv_dir "$sdk")/bin/python"
    version="$("$python" -c 'import holokai_neuron_sdk; print(holokai_neuron_sdk.__version__)')"
    run_pytest "holokai-neuron-sdk==$version ($sdk)" "$store" "$python" "$SUITE_DIR" -- "$@"
  done
done
print_summary
