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
#   AGW_E2E_KEEP=1     keep gateway work dirs (logs, SQLite files) even on success
#   AGW_E2E_NEURON_LOG=FILE  append every SDK log line of every test's neurons to FILE
#   AGW_E2E_SETUP_ONLY=1  prepare the venvs and exit
#
# Runs pytest once per (SDK venv x store); prints one summary line per run and
# exits non-zero if any run failed (pytest exit 5, "no tests collected", is a failure).
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
VENV_PREFIX="${AGW_VENV_DIR:-$REPO/tests/.venv}"
PY="${AGW_E2E_PYTHON:-python3}"
SDKS="${AGW_E2E_NEURON_SDKS:-neuron1 neuron2}"
RUN_TIMEOUT="${AGW_E2E_TIMEOUT:-600}"

die() { echo "e2e-neuron: $*" >&2; exit 2; }

for sdk in $SDKS; do
  case "$sdk" in neuron1|neuron2) ;; *) die "unknown SDK set '$sdk' (expected neuron1 / neuron2)";; esac
done

command -v "$PY" >/dev/null 2>&1 || die "$PY not found (set AGW_E2E_PYTHON)"
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' \
  || die "$PY is $("$PY" -V 2>&1); holokai-neuron-sdk needs Python >= 3.10"

venv_dir() { echo "${VENV_PREFIX}-$1"; }

# Create or refresh one venv; reused when requirements + interpreter are unchanged.
ensure_venv() {
  local sdk="$1" req="$REPO/tests/requirements-$1.txt" dir stamp want
  dir="$(venv_dir "$sdk")"
  [ -f "$req" ] || die "missing $req"
  want="$( { cat "$req"; "$PY" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1)"
  stamp="$dir/.agw-requirements.sha256"
  if [ -x "$dir/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "e2e-neuron: reusing venv $dir"
    return 0
  fi
  echo "e2e-neuron: creating venv $dir ($sdk)"
  rm -rf "$dir"
  "$PY" -m venv "$dir" || die "venv creation failed for $dir"
  "$dir/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" \
    || { rm -rf "$dir"; die "pip install -r $req failed"; }
  echo "$want" > "$stamp"
}

for sdk in $SDKS; do ensure_venv "$sdk"; done
if [ "${AGW_E2E_SETUP_ONLY:-}" = 1 ]; then
  echo "e2e-neuron: venvs ready"
  exit 0
fi

[ -n "${AGW_BIN:-}" ] || die "AGW_BIN is not set (path of the agent-gateway binary, e.g. \$CARGO_TARGET_DIR/debug/agent-gateway)"
[ -f "$AGW_BIN" ] && [ -x "$AGW_BIN" ] || die "AGW_BIN=$AGW_BIN is not an executable file"
AGW_BIN="$(cd "$(dirname "$AGW_BIN")" && pwd)/$(basename "$AGW_BIN")"
export AGW_BIN

STORES="sqlite"
if [ -n "${AGW_TEST_PG_URL:-}" ]; then
  command -v psql >/dev/null 2>&1 || die "AGW_TEST_PG_URL is set but psql is not installed"
  psql "$AGW_TEST_PG_URL" -qAtc 'select 1' >/dev/null 2>&1 \
    || die "cannot connect to AGW_TEST_PG_URL=$AGW_TEST_PG_URL with psql"
  STORES="sqlite postgres"
fi

declare -a SUMMARY=()
FAILED=0
for store in $STORES; do
  for sdk in $SDKS; do
    dir="$(venv_dir "$sdk")"
    version="$("$dir/bin/python" -c 'import holokai_neuron_sdk; print(holokai_neuron_sdk.__version__)')"
    echo
    echo "=== e2e-neuron: holokai-neuron-sdk $version ($sdk), store=$store ==="
    start=$(date +%s)
    (
      cd "$HERE" && \
      AGW_E2E_STORE="$store" \
      PYTHONDONTWRITEBYTECODE=1 \
      timeout --signal=TERM --kill-after=30 "$RUN_TIMEOUT" \
        "$dir/bin/python" -m pytest "$HERE" "$@"
    )
    rc=$?
    secs=$(( $(date +%s) - start ))
    if [ "$rc" -eq 0 ]; then
      verdict="PASS"
    else
      FAILED=1
      case "$rc" in
        5) verdict="FAIL (no tests collected)";;
        124) verdict="FAIL (timed out after ${RUN_TIMEOUT}s)";;
        *) verdict="FAIL (pytest exit $rc)";;
      esac
    fi
    SUMMARY+=("e2e-neuron holokai-neuron-sdk==$version store=$store: $verdict in ${secs}s")
  done
done

echo
echo "=== e2e-neuron summary ==="
for line in "${SUMMARY[@]}"; do echo "$line"; done
exit "$FAILED"
