#!/usr/bin/env bash
# End-to-end Intent Bus suite: the real agent-gateway binary driven by the
# unmodified PyPI SDKs intent-bus==1.3.2 and intent-bus==2.1.2.
#
#   AGW_BIN=/path/to/agent-gateway bash tests/e2e/run.sh [extra pytest args]
#
# Environment:
#   AGW_BIN            gateway binary (required)
#   AGW_TEST_PG_URL    admin database URL (e.g. postgres://postgres@127.0.0.1:5432/postgres);
#                      when set, every SDK run is repeated against PostgreSQL
#   AGW_VENV_DIR       venv prefix (default: $REPO/tests/.venv -> .venv-sdk1, .venv-sdk2)
#   AGW_E2E_PYTHON     interpreter for creating the venvs (default: python3, needs >= 3.10)
#   AGW_E2E_SDKS       subset of "sdk1 sdk2" to run (default: both)
#   AGW_E2E_TIMEOUT    wall-clock limit per pytest run in seconds (default: 900)
#   AGW_EVENTS_PYTHON  python with tests/requirements-events.txt (default: the venv <prefix>-events,
#                      created here): checks every stopped gateway's execution events
#   AGW_E2E_KEEP=1     keep gateway work dirs (logs, SQLite files) even on success
#   AGW_E2E_SETUP_ONLY=1  prepare the venvs and exit
#
# Runs pytest once per (SDK venv x store); prints one summary line per run and
# exits non-zero if any run failed (pytest exit 5, "no tests collected", is a failure).
# The machinery is shared with the other suites: tests/lib/e2e.sh, tests/testkit.
set -uo pipefail

E2E_NAME="e2e"
RUN_TIMEOUT="${AGW_E2E_TIMEOUT:-900}"
SDKS="${AGW_E2E_SDKS:-sdk1 sdk2}"
# shellcheck source=../lib/e2e.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/e2e.sh"

require_sets "$SDKS" sdk1 sdk2
# Both venvs are always prepared: each run drives the other generation too (cross-version tests).
e2e_setup sdk1 sdk2
e2e_target

other_of() { [ "$1" = sdk1 ] && echo sdk2 || echo sdk1; }

for store in $STORES; do
  for sdk in $SDKS; do
    python="$(venv_dir "$sdk")/bin/python"
    version="$("$python" -c 'import intent_bus; print(intent_bus.__version__)')"
    run_pytest "intent-bus==$version ($sdk)" "$store" "$python" "$SUITE_DIR" \
      AGW_E2E_OTHER_PYTHON="$(venv_dir "$(other_of "$sdk")")/bin/python" AGW_E2E_REQUIRE_OTHER=1 -- "$@"
  done
done
print_summary
