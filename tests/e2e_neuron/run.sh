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
#
# Runs pytest once per (SDK venv x store); prints one summary line per run and
# exits non-zero if any run failed (pytest exit 5, "no tests collected", is a failure).
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
E2E_NAME="e2e-neuron"
SDKS="${AGW_E2E_NEURON_SDKS:-neuron1 neuron2}"
RUN_TIMEOUT="${AGW_E2E_TIMEOUT:-600}"
# shellcheck source=../lib/e2e.sh
. "$REPO/tests/lib/e2e.sh"

for sdk in $SDKS; do
  case "$sdk" in neuron1|neuron2) ;; *) die "unknown SDK set '$sdk' (expected neuron1 / neuron2)";; esac
done
require_python
for sdk in $SDKS; do ensure_venv "$sdk"; done
ensure_events_venv
if [ "${AGW_E2E_SETUP_ONLY:-}" = 1 ]; then
  echo "$E2E_NAME: venvs ready"
  exit 0
fi
require_bin
detect_stores

for store in $STORES; do
  for sdk in $SDKS; do
    python="$(venv_dir "$sdk")/bin/python"
    version="$("$python" -c 'import holokai_neuron_sdk; print(holokai_neuron_sdk.__version__)')"
    run_pytest "holokai-neuron-sdk==$version ($sdk)" "$store" "$python" "$HERE" -- "$@"
  done
done
print_summary
