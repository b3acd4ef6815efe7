# Shared by the end-to-end runners (tests/e2e/run.sh, tests/e2e_neuron/run.sh):
# venvs pinned by tests/requirements-<name>.txt, the binary under test, the
# stores to run on, and one pytest run per (SDK venv × store) with a summary.
# Source it after setting E2E_NAME (log prefix) and REPO.

VENV_PREFIX="${AGW_VENV_DIR:-$REPO/tests/.venv}"
PY="${AGW_E2E_PYTHON:-python3}"
E2E_SUMMARY=()
E2E_FAILED=0

die() { echo "$E2E_NAME: $*" >&2; exit 2; }

venv_dir() { echo "${VENV_PREFIX}-$1"; }

# The interpreter that builds the venvs (the SDKs need 3.10+).
require_python() {
  command -v "$PY" >/dev/null 2>&1 || die "$PY not found (set AGW_E2E_PYTHON)"
  "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' \
    || die "$PY is $("$PY" -V 2>&1); the SDKs need Python >= 3.10"
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
  "$dir/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" \
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

# run_pytest LABEL STORE PYTHON DIR [ENV=VALUE...] -- [pytest args]: one run,
# bounded by AGW_E2E_TIMEOUT, recorded for print_summary (exit 5, no tests, fails).
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

print_summary() {
  echo
  echo "=== $E2E_NAME summary ==="
  for line in "${E2E_SUMMARY[@]}"; do echo "$line"; done
  exit "$E2E_FAILED"
}
