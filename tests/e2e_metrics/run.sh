#!/usr/bin/env bash
# End-to-end METRICS suite: a real Prometheus server (Debian package
# `prometheus`) scrapes the real agent-gateway binary while the unmodified
# intent-bus 2.1.2 and holokai-neuron-sdk 0.2.0 drive a small workload; every
# Grafana panel query in deploy/grafana must be valid and return data.
#
#   AGW_BIN=/path/to/agent-gateway bash tests/e2e_metrics/run.sh [extra pytest args]
#
# Environment:
#   AGW_BIN            gateway binary (required)
#   AGW_PROMETHEUS     prometheus binary (default: `prometheus` on PATH;
#                      tests/run-all.sh --setup installs it when missing)
#   AGW_TEST_PG_URL    admin database URL (e.g. postgres://postgres@127.0.0.1:5432/postgres);
#                      when set, the suite is repeated against PostgreSQL
#   AGW_VENV_DIR       venv prefix (default: $REPO/tests/.venv -> .venv-metrics)
#   AGW_E2E_PYTHON     interpreter for creating the venv (default: python3, needs >= 3.10)
#   AGW_E2E_TIMEOUT    wall-clock limit per pytest run in seconds (default: 600)
#   AGW_EVENTS_PYTHON  python with tests/requirements-events.txt (default: the venv <prefix>-events,
#                      created here): checks every stopped gateway's execution events
#   AGW_E2E_KEEP=1     keep gateway and Prometheus work dirs (logs, config, data) even on success
#   AGW_E2E_SETUP_ONLY=1  prepare the venv and exit
#
# Runs pytest once per store; prints one summary line per run and exits
# non-zero if any run failed (pytest exit 5, "no tests collected", is a failure).
# The machinery is shared with the other suites: tests/lib/e2e.sh, tests/testkit.
set -uo pipefail

E2E_NAME="e2e-metrics"
RUN_TIMEOUT="${AGW_E2E_TIMEOUT:-600}"
PROMETHEUS="${AGW_PROMETHEUS:-prometheus}"
# shellcheck source=../lib/e2e.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/e2e.sh"

e2e_setup metrics
command -v "$PROMETHEUS" >/dev/null 2>&1 \
  || die "$PROMETHEUS not found: install it (apt-get install -y prometheus; tests/run-all.sh --setup does) or set AGW_PROMETHEUS"
e2e_target

run_each_store "prometheus $("$PROMETHEUS" --version 2>&1 | head -n1 | awk '{print $3}')" \
  "$(venv_dir metrics)/bin/python" -- "$@"
print_summary
