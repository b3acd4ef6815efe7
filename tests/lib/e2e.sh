# shellcheck shell=bash
# Shared by every end-to-end runner (tests/<suite>/run.sh): venvs pinned by
# tests/requirements-<name>.txt, the binary under test, the stores to run on,
# and one pytest run per (venv × store) with a summary. The suites' shared
# Python helpers are tests/testkit (agw_testkit), on each suite's path through
# `pythonpath` in its pytest.ini.
#
# A runner sets E2E_NAME (log prefix) and RUN_TIMEOUT (seconds per pytest
# run), sources this file (which sets REPO, and SUITE_DIR: the runner's
# folder), then:
#   e2e_setup VENV...         interpreter check, the venvs and the events venv;
#                             exits here under AGW_E2E_SETUP_ONLY=1
#   e2e_target                AGW_BIN (required) and STORES
#   run_each_store LABEL PYTHON [ENV=VALUE...] -- [pytest args]
#                             (or run_pytest per run), then print_summary

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SUITE_DIR="$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)"
VENV_PREFIX="${AGW_VENV_DIR:-$REPO/tests/.venv}"
PY="${AGW_E2E_PYTHON:-python3}"
E2E_SUMMARY=()
E2E_FAILED=0

die() { echo "$E2E_NAME: $*" >&2; exit 2; }

venv_dir() { echo "${VENV_PREFIX}-$1"; }

# require_python MINOR WHO: the interpreter that builds the venvs is Python >= 3.MINOR.
require_python() {
  local minor="$1" who="$2"
  command -v "$PY" >/dev/null 2>&1 || die "$PY not found (set AGW_E2E_PYTHON)"
  "$PY" -c "import sys; sys.exit(0 if sys.version_info >= (3, $minor) else 1)" \
    || die "$PY is $("$PY" -V 2>&1); $who need Python >= 3.$minor"
}

# require_sets SELECTED ALLOWED...: every word of SELECTED (e.g. AGW_E2E_SDKS) is allowed.
require_sets() {
  local selected="$1" s
  shift
  for s in $selected; do
    case " $* " in
      *" $s "*) ;;
      *) local expected="$*"; die "unknown SDK set '$s' (expected ${expected// / / })";;
    esac
  done
}

# Create or refresh one venv; reused while requirements + interpreter are unchanged.
ensure_venv() {
  local name="$1" req="$REPO/tests/requirements-$1.txt" dir stamp want
  dir="$(venv_dir "$name")"
  [ -f "$req" ] || die "missing $req"
  want="$( { cat "$req"; "$PY" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1)"
  stamp="$dir/.agw-requirements.sha256"
  if [ -x "$dir/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "$E2E_NAME: reusing venv $dir"
    return 0
  fi
  echo "$E2E_NAME: creating venv $dir ($name)"
  rm -rf "$dir"
  "$PY" -m venv "$dir" || die "venv creation failed for $dir"
  # A requirements file that pins its whole closure may say `# agw-e2e: --no-deps`:
  # installed exactly as pinned, without the resolver (tests/requirements-console.txt).
  local -a opts=()
  grep -qx '# agw-e2e: --no-deps' "$req" && opts+=(--no-deps)
  "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "${opts[@]}" -r "$req" \
    || { rm -rf "$dir"; die "pip install -r $req failed"; }
  echo "$want" > "$stamp"
}

# The execution-event checker's venv (tests/requirements-events.txt: intentproof,
# jsonschema), exported as AGW_EVENTS_PYTHON: every gateway the suites stop has
# its events schema-checked and verified with it (tests/events/check_gateway_events.py).
ensure_events_venv() {
  [ -n "${AGW_EVENTS_PYTHON:-}" ] && [ -x "$AGW_EVENTS_PYTHON" ] && return 0
  ensure_venv events
  AGW_EVENTS_PYTHON="$(venv_dir events)/bin/python"
  export AGW_EVENTS_PYTHON
}

# e2e_setup VENV...: the suite's venvs and the events venv; under
# AGW_E2E_SETUP_ONLY=1 that is all, and the runner exits here.
e2e_setup() {
  local name
  require_python 10 "the SDKs"
  for name in "$@"; do ensure_venv "$name"; done
  ensure_events_venv
  if [ "${AGW_E2E_SETUP_ONLY:-}" = 1 ]; then
    echo "$E2E_NAME: venvs ready"
    exit 0
  fi
}

# AGW_BIN must name the gateway binary; exported as an absolute path.
require_bin() {
  ensure_events_venv  # a runner that forgot it still checks its gateways' events
  [ -n "${AGW_BIN:-}" ] || die "AGW_BIN is not set (path of the agent-gateway binary, e.g. \$CARGO_TARGET_DIR/debug/agent-gateway)"
  [ -f "$AGW_BIN" ] && [ -x "$AGW_BIN" ] || die "AGW_BIN=$AGW_BIN is not an executable file"
  AGW_BIN="$(cd "$(dirname "$AGW_BIN")" && pwd)/$(basename "$AGW_BIN")"
  export AGW_BIN
}

# SQLite always; PostgreSQL too when AGW_TEST_PG_URL is set and reachable.
detect_stores() {
  STORES="sqlite"
  if [ -n "${AGW_TEST_PG_URL:-}" ]; then
    command -v psql >/dev/null 2>&1 || die "AGW_TEST_PG_URL is set but psql is not installed"
    psql "$AGW_TEST_PG_URL" -qAtc 'select 1' >/dev/null 2>&1 \
      || die "cannot connect to AGW_TEST_PG_URL=$AGW_TEST_PG_URL with psql"
    STORES="sqlite postgres"
  fi
}

# e2e_target: what the runs run against (AGW_BIN, STORES).
e2e_target() {
  require_bin
  detect_stores
}

# run_pytest LABEL STORE PYTHON DIR [ENV=VALUE...] -- [pytest args]: one run,
# bounded by RUN_TIMEOUT, recorded for print_summary (exit 5, no tests, fails).
run_pytest() {
  local label="$1" store="$2" python="$3" dir="$4" start rc secs verdict
  shift 4
  local -a env=()
  while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do env+=("$1"); shift; done
  [ "${1:-}" = "--" ] && shift
  echo
  echo "=== $E2E_NAME: $label, store=$store ==="
  start=$(date +%s)
  (
    cd "$dir" && env AGW_E2E_STORE="$store" PYTHONDONTWRITEBYTECODE=1 "${env[@]}" \
      timeout --signal=TERM --kill-after=30 "$RUN_TIMEOUT" "$python" -m pytest "$dir" "$@"
  )
  rc=$?
  secs=$(( $(date +%s) - start ))
  case "$rc" in
    0) verdict="PASS";;
    5) verdict="FAIL (no tests collected)";;
    124) verdict="FAIL (timed out after ${RUN_TIMEOUT}s)";;
    *) verdict="FAIL (pytest exit $rc)";;
  esac
  [ "$rc" -eq 0 ] || E2E_FAILED=1
  E2E_SUMMARY+=("$E2E_NAME $label store=$store: $verdict in ${secs}s")
}

# run_each_store LABEL PYTHON [ENV=VALUE...] -- [pytest args]: the suite once per store.
run_each_store() {
  local label="$1" python="$2" store
  shift 2
  for store in $STORES; do
    run_pytest "$label" "$store" "$python" "$SUITE_DIR" "$@"
  done
}

print_summary() {
  echo
  echo "=== $E2E_NAME summary ==="
  for line in "${E2E_SUMMARY[@]}"; do echo "$line"; done
  exit "$E2E_FAILED"
}
