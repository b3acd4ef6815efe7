#!/usr/bin/env bash
# End-to-end CONSOLE suite: a real headless Chromium (Debian's `chromium` and
# `chromium-driver`, driven by selenium 4.35.0) signs in to the operator
# console of the real agent-gateway binary and checks every page and action
# against jobs made by the unmodified intent-bus 2.1.2, holokai-neuron-sdk
# 0.2.0 and hestiaos 1.0.1; it writes a screenshot of each page to
# tests/.work/console-shots/ (AGW_CONSOLE_SHOTS=docs/console refreshes the
# README's images).
#
#   AGW_BIN=/path/to/agent-gateway bash tests/e2e_console/run.sh [extra pytest args]
#
# Environment:
#   AGW_BIN            gateway binary (required)
#   AGW_CHROMIUM       chromium binary (default: `chromium` on PATH)
#   AGW_CHROMEDRIVER   chromedriver binary (default: `chromedriver` on PATH;
#                      tests/run-all.sh --setup installs both when missing)
#   AGW_TEST_PG_URL    admin database URL; when set, the suite is repeated against PostgreSQL
#   AGW_VENV_DIR       venv prefix (default: $REPO/tests/.venv -> .venv-console)
#   AGW_E2E_PYTHON     interpreter for creating the venv (default: python3, needs >= 3.10)
#   AGW_E2E_TIMEOUT    wall-clock limit per pytest run in seconds (default: 900)
#   AGW_CONSOLE_SHOTS  screenshot directory (default: $REPO/tests/.work/console-shots, not
#                      tracked; docs/console refreshes the README's images; written by the
#                      SQLite run only, so the images do not flip per store)
#   AGW_E2E_KEEP=1     keep gateway work dirs even on success
#   AGW_E2E_SETUP_ONLY=1  prepare the venv and exit
set -uo pipefail

E2E_NAME="e2e-console"
RUN_TIMEOUT="${AGW_E2E_TIMEOUT:-900}"
CHROMIUM="${AGW_CHROMIUM:-chromium}"
CHROMEDRIVER="${AGW_CHROMEDRIVER:-chromedriver}"
# shellcheck source=../lib/e2e.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/e2e.sh"

e2e_setup console
command -v "$CHROMIUM" >/dev/null 2>&1 && command -v "$CHROMEDRIVER" >/dev/null 2>&1 \
  || die "$CHROMIUM / $CHROMEDRIVER not found: apt-get install -y chromium chromium-driver (tests/run-all.sh --setup does), or set AGW_CHROMIUM / AGW_CHROMEDRIVER"
e2e_target
export AGW_CHROMIUM="$(command -v "$CHROMIUM")" AGW_CHROMEDRIVER="$(command -v "$CHROMEDRIVER")"

run_each_store "$("$CHROMIUM" --version 2>/dev/null | head -n1)" "$(venv_dir console)/bin/python" -- "$@"
print_summary
