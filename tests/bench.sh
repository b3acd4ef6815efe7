#!/usr/bin/env bash
# Reproduces the figures in BENCHMARKS.md: builds release binaries, starts a
# gateway per store on a fresh database, and drives it with agw-loadgen
# (signed Intent Bus protocol) on loopback.
#
#   tests/bench.sh [sqlite|postgres|policy|events|events-load|events-ir|noisy|layers|sync|waves|ab|push|all]
#   (default all; policy = only the policy evaluation example, which "all" runs
#   first; events = job throughput with execution events and OTLP export off /
#   on, both stores; events-load = the same modes at a fixed offered load, in
#   CPU per cycle and latency; events-ir = the same modes in instructions per
#   cycle under valgrind's callgrind; noisy = 8-worker cycles with and without
#   another tenant's private backlog on the same goal, both stores; layers =
#   8-worker SQLite cycles of a BENCH_BASELINE build against this tree on its
#   default limits; sync = SQLite synchronous FULL vs NORMAL; waves = one
#   SQLite gateway's RSS while BENCH_WAVES waves of BENCH_NEURONS neurons
#   connect and leave; ab = 8-worker cycles of BENCH_BASELINE against this
#   build (BENCH_AB_STORE, BENCH_AB_ROUNDS); push = neuron lease push
#   against 8-worker cycles in the same SQLite run, then with idle neurons
#   connected, BENCH_BASELINE against this build (BENCH_PUSH_ROUNDS,
#   BENCH_PUSH_IDLE); none of the last eight is part of "all")
#
# Env: BENCH_DURATION (default 20s), BENCH_WORKERS (default "8 64"),
#      BENCH_GOV_CALLERS (default "1 8": governance runs, as many workers as callers),
#      BENCH_EVENTS_DURATION (10s), BENCH_EVENTS_ROUNDS (3),
#      BENCH_EVENTS_MODES ("off events events+otlp"; also events+traces, events+otlp-sampled:
#        request spans sampled at 10 % with OTEL_TRACES_SAMPLER=parentbased_traceidratio),
#      BENCH_EVENTS_STORES ("sqlite postgres"): the stores of events,
#      BENCH_IR_DURATION (15s per events-ir run),
#      BENCH_LOAD_RATE_SQLITE (1500), BENCH_LOAD_RATE_PG (200): events-load's offered cycles/s,
#      BENCH_BACKLOG (3200): noisy's backlog of the other tenant,
#      BENCH_GATEWAY (this tree's release build): the gateway binary to measure,
#      BENCH_NEURONS (10000), BENCH_WAVES (5): waves' size and count,
#      BENCH_NO_BUILD=1: use the release binaries already built,
#      BENCH_ENV: VAR=value words added to the gateway's environment (waves),
#      BENCH_AB_WORKERS (8): ab's workers; BENCH_AUTOVACUUM=on: ab on PostgreSQL with
#        autovacuum on (ALTER SYSTEM, reset at exit); BENCH_AB_STATEMENTS=N: ab on
#        PostgreSQL prints its N costliest statements per cycle (needs pg_stat_statements
#        in shared_preload_libraries),
#      BENCH_LOADGEN: the agw-loadgen binary of push (default this tree's build),
#      BENCH_PUSH_ROUNDS (2), BENCH_PUSH_IDLE ("1000"): push's rounds and idle-neuron counts,
#      AGW_TEST_PG_URL (admin URL for creating the PostgreSQL bench database).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
WHICH="${1:-all}"
DURATION="${BENCH_DURATION:-20s}"
WORKERS="${BENCH_WORKERS:-8 64}"
GOV_CALLERS="${BENCH_GOV_CALLERS:-1 8}"
PG_ADMIN="${AGW_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
ADMIN_KEY="bench-admin-$RANDOM$RANDOM"

if [ -z "${BENCH_NO_BUILD:-}" ]; then
  cargo build --release --locked -p agw-gateway -p agw-loadgen >&2
  cargo build --release --locked -p agw-storage --example store_bench >&2
  cargo build --release --locked -p agw-gateway --example policy_bench >&2
fi
TARGET="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release"
# BENCH_GATEWAY: another agent-gateway binary to serve the load (A/B of an
# older build against this tree's load generator).
GATEWAY_BIN="${BENCH_GATEWAY:-$TARGET/agent-gateway}"
WORK="$(mktemp -d)"
GW_PID=""
cleanup() { [ -n "$GW_PID" ] && kill "$GW_PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

JWT_SECRET="bench-jwt-$RANDOM$RANDOM"

# Governance: runs go to the default topic (gateway/run); one deny rule for
# the blocked runs of `agw-loadgen gov` (its default --block-input matches it).
cat >"$WORK/gateway.toml" <<'TOML'
[governance.policy]
name = "bench"

[[governance.policy.deny]]
id = "prompt-injection"
pattern = '(?i)ignore\s+(all\s+)?(previous|prior|above)\s+instructions'
reason = "prompt injection"
TOML

EXTRA_ENV=()
WRAPPER=()
start_gateway() { # $1 = database url; EXTRA_ENV: more VAR=value for the daemon; WRAPPER: runs it
  PORT="$(free_port)"
  env "${EXTRA_ENV[@]}" AGW_LISTEN="127.0.0.1:$PORT" AGW_DATABASE_URL="$1" AGW_ADMIN_KEY="$ADMIN_KEY" AGW_JWT_SECRET="$JWT_SECRET" \
    AGW_LIMITS_RATE_LIMIT_PER_MINUTE=0 AGW_LIMITS_MAX_OPEN_JOBS_PER_TENANT=1000000 RUST_LOG=warn \
    "${WRAPPER[@]}" "$GATEWAY_BIN" serve --config "$WORK/gateway.toml" 2>"$WORK/gateway.log" &
  GW_PID=$!
  for _ in $(seq 1 600); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && return 0; sleep 0.1; done
  cat "$WORK/gateway.log" >&2; exit 1
}

stop_gateway() { kill "$GW_PID"; wait "$GW_PID" || true; GW_PID=""; }

run_store() { # $1 = name, $2 = url
  echo "## $1"
  start_gateway "$2"
  echo "### HTTP ceiling: GET /healthz, 64 connections"
  "$TARGET/agw-loadgen" http --url "http://127.0.0.1:$PORT" --path /healthz --connections 64 --duration 10s
  for w in $WORKERS; do
    echo "### publish -> claim -> fulfill, $w workers"
    "$TARGET/agw-loadgen" cycles --url "http://127.0.0.1:$PORT" --admin-key "$ADMIN_KEY" --workers "$w" --duration "$DURATION"
  done
  echo "### neurons: publish (signed Intent Bus) -> lease pushed over SSE -> ack, 4 neurons x concurrency 8"
  TOKEN="$(AGW_JWT_SECRET="$JWT_SECRET" AGW_DATABASE_URL="$2" "$TARGET/agent-gateway" token mint --sub bench --tenant bench)"
  "$TARGET/agw-loadgen" neurons --url "http://127.0.0.1:$PORT" --admin-key "$ADMIN_KEY" --token "$TOKEN" \
    --tenant bench --neurons 4 --concurrency 8 --duration "$DURATION"
  for c in $GOV_CALLERS; do
    echo "### governance: POST /api/v1/run served by Intent Bus workers, $c callers / $c workers; then blocked runs"
    "$TARGET/agw-loadgen" gov --url "http://127.0.0.1:$PORT" --admin-key "$ADMIN_KEY" --callers "$c" --workers "$c" \
      --duration "$DURATION" --block-duration 5s
  done
  stop_gateway
  echo "### store only (no HTTP): insert + nonce + claim + complete, 8 tasks"
  if [ ! -x "$TARGET/examples/store_bench" ]; then
    echo "(skipped: $TARGET/examples/store_bench is not built; cargo build --release -p agw-storage --example store_bench)"
  elif [ "$1" = sqlite ]; then "$TARGET/examples/store_bench" sqlite 8 5; else AGW_BENCH_PG_URL="$2" "$TARGET/examples/store_bench" postgres 8 5; fi
}

# Throughput cost of execution events (and of exporting them over OTLP to a
# local sink that answers 200): 8 workers, fresh database per run, modes
# interleaved over EVENTS_ROUNDS rounds so machine noise hits all alike. Each
# run also prints the CPU one cycle cost, the gateway's and the machine's
# (load generator and sink included), over the whole run, warm-up included.
# Modes: off, events, events+traces (spans only, OTEL_LOGS_EXPORTER=none),
# events+otlp (spans and event log records); EVENTS_MODES picks them.
# CPU time in clock ticks: the gateway's (user + system), the whole machine's
# (user, nice, system, irq and softirq of /proc/stat); per_cycle turns ticks into µs per cycle.
proc_ticks() { awk '{print $14 + $15}' "/proc/$GW_PID/stat"; }
machine_ticks() { awk '$1=="cpu" {print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
per_cycle() { awk -v t="$1" -v n="$2" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%d", n ? t * 1e6 / hz / n : 0}'; }

# An OTLP/HTTP sink answering 200 to every export: SINK_PORT, SINK_PID.
start_sink() {
  SINK_PORT="$(free_port)"
  python3 - "$SINK_PORT" <<'PY' &
import http.server, sys
class Sink(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200); self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
PY
  SINK_PID=$!
}

# Jobs the gateway settled so far (every cycle settles one).
settled_cycles() {
  curl -sf "http://127.0.0.1:$PORT/metrics" | awk '/^agw_jobs_settled_total[{]/ {s += $NF} END {print s + 0}'
}

# EXTRA_ENV for an events mode ($1), exporting to the sink on port $2.
events_env() {
  case "$1" in
    off) EXTRA_ENV=(AGW_EVENTS_ENABLED=false) ;;
    events) EXTRA_ENV=(AGW_EVENTS_ENABLED=true) ;;
    events+traces) EXTRA_ENV=(AGW_EVENTS_ENABLED=true OTEL_LOGS_EXPORTER=none
                              OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$2"
                              OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf) ;;
    events+otlp) EXTRA_ENV=(AGW_EVENTS_ENABLED=true OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$2"
                            OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf) ;;
    # Request spans sampled at 10 % by the standard sampler variables; every
    # event is still signed, chained and exported as a log record.
    events+otlp-sampled) EXTRA_ENV=(AGW_EVENTS_ENABLED=true OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$2"
                            OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf
                            OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG=0.1) ;;
    *) echo "unknown events mode: $1" >&2; exit 2 ;;
  esac
}

# A fresh, empty database of store $1; prints its URL.
fresh_events_db() {
  if [ "$1" = sqlite ]; then
    rm -f "$WORK"/ev.db*; echo "sqlite://$WORK/ev.db"
  else
    psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS agw_bench_ev WITH (FORCE)" >/dev/null
    psql "$PG_ADMIN" -qc "CREATE DATABASE agw_bench_ev" >/dev/null; echo "${PG_ADMIN%/*}/agw_bench_ev"
  fi
}

events_compare() { # $1 = store name
  local mode round url rate settled
  start_sink
  echo "## events on/off, $1, 8 workers, ${EVENTS_DURATION} per run, ${EVENTS_ROUNDS} rounds"
  for round in $(seq 1 "$EVENTS_ROUNDS"); do
    for mode in $EVENTS_MODES; do
      events_env "$mode" "$SINK_PORT"
      url="$(fresh_events_db "$1")"
      start_gateway "$url"
      gw0="$(proc_ticks)"; all0="$(machine_ticks)"
      rate="$("$TARGET/agw-loadgen" cycles --url "http://127.0.0.1:$PORT" --admin-key "$ADMIN_KEY" --workers 8 \
        --duration "$EVENTS_DURATION" | awk '$1=="cycles/s" {print $2}')"
      gw1="$(proc_ticks)"; all1="$(machine_ticks)"
      settled="$(settled_cycles)"  # the warm-up's included
      stop_gateway
      echo "round $round  $mode  cycles/s $rate  cpu-us/cycle gateway $(per_cycle $((gw1 - gw0)) "$settled") machine $(per_cycle $((all1 - all0)) "$settled")"
    done
  done
  EXTRA_ENV=()
  kill "$SINK_PID" 2>/dev/null || true
  [ "$1" = sqlite ] || psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS agw_bench_ev WITH (FORCE)"
}

# The same modes at a fixed offered load below saturation (`--rate`, each of
# the 8 workers publishing its own intent before it claims): throughput is
# then the offered rate in every mode, and what events and export cost shows
# as CPU per cycle and as request latency instead.
events_load() { # $1 = store name, $2 = offered cycles per second
  local mode round url out settled
  start_sink
  echo "## events on/off at a fixed $2 cycles/s offered, $1, 8 workers, ${EVENTS_DURATION} per run, ${EVENTS_ROUNDS} rounds"
  for round in $(seq 1 "$EVENTS_ROUNDS"); do
    for mode in $EVENTS_MODES; do
      events_env "$mode" "$SINK_PORT"
      url="$(fresh_events_db "$1")"
      start_gateway "$url"
      gw0="$(proc_ticks)"; all0="$(machine_ticks)"
      out="$("$TARGET/agw-loadgen" cycles --url "http://127.0.0.1:$PORT" --admin-key "$ADMIN_KEY" --workers 8 \
        --publishers 0 --rate "$2" --duration "$EVENTS_DURATION")"
      gw1="$(proc_ticks)"; all1="$(machine_ticks)"
      settled="$(settled_cycles)"  # the warm-up's included
      stop_gateway
      echo "round $round  $mode  cycles/s $(awk '$1=="cycles/s" {print $2}' <<<"$out")" \
        " cpu-us/cycle gateway $(per_cycle $((gw1 - gw0)) "$settled") machine $(per_cycle $((all1 - all0)) "$settled")" \
        " ms p50/p99 $(awk '$2=="ms" && $1 ~ /^(publish|claim|fulfill)$/ {printf " %s %s/%s", $1, $4, $8}' <<<"$out")"
    done
  done
  EXTRA_ENV=()
  kill "$SINK_PID" 2>/dev/null || true
  [ "$1" = sqlite ] || psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS agw_bench_ev WITH (FORCE)"
}

# Noisy neighbour: 8 workers of a fresh tenant, alone on the goal and then with
# BACKLOG open private intents of another tenant on it (which they can never
# take), alternating, on a fresh gateway each time so rows of one run do not
# weigh on the next.
noisy() { # $1 = store name
  local round backlog url
  echo "## noisy neighbour, $1: 8 workers, ${DURATION} per run, backlog 0 vs $BACKLOG"
  for round in 1 2; do
    for backlog in 0 "$BACKLOG"; do
      url="$(fresh_events_db "$1")"
      start_gateway "$url"
      echo "round $round  backlog $backlog  $("$TARGET/agw-loadgen" cycles --url "http://127.0.0.1:$PORT" \
        --admin-key "$ADMIN_KEY" --workers 8 --backlog "$backlog" --duration "$DURATION" \
        | awk '$1=="cycles/s" {c=$2} $1=="claim" && $2=="ms" {p=$4; q=$8} END {printf "cycles/s %s  claim ms p50 %s p99 %s", c, p, q}')"
      stop_gateway
    done
  done
  [ "$1" = sqlite ] || psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS agw_bench_ev WITH (FORCE)"
}

# What durable commits cost: 8-worker SQLite cycles with synchronous = FULL
# (the default) and NORMAL, alternating, a fresh database per run.
sync_cost() {
  local round mode url
  echo "## SQLite synchronous FULL vs NORMAL: 8 workers, ${DURATION} per run"
  for round in 1 2 3; do
    for mode in full normal; do
      EXTRA_ENV=(AGW_STORE_SQLITE_SYNCHRONOUS="$mode")
      url="$(fresh_events_db sqlite)"
      start_gateway "$url"
      echo "round $round  $mode  $("$TARGET/agw-loadgen" cycles --url "http://127.0.0.1:$PORT" --admin-key "$ADMIN_KEY" \
        --workers 8 --duration "$DURATION" | awk '$1=="cycles/s" {c=$2} $1=="publish" && $2=="ms" {p=$4; q=$8} END {printf "cycles/s %s  publish ms p50 %s p99 %s", c, p, q}')"
      stop_gateway
    done
  done
  EXTRA_ENV=()
}

# The request layers' cost: 8-worker cycles on SQLite, alternating between a
# baseline build (BENCH_BASELINE, e.g. one built from an older commit, its rate
# limit off) and this tree's build on its default limits (tenant rate limit,
# pre-auth limit, in-flight limits, the edge's timeouts all on).
layers() {
  local round which url rate
  [ -n "${BENCH_BASELINE:-}" ] || { echo "layers: set BENCH_BASELINE to a baseline agent-gateway binary" >&2; exit 1; }
  echo "## request layers: 8 workers, SQLite, ${DURATION} per run; baseline $BENCH_BASELINE vs this tree (defaults)"
  for round in 1 2 3; do
    for which in baseline tree; do
      url="$(fresh_events_db sqlite)"
      if [ "$which" = baseline ]; then
        GATEWAY_BIN="$BENCH_BASELINE" start_gateway "$url"
      else
        # Nothing lifted: the load keeps at most 16 intents open, under the
        # default cap of 100, and every request limit stays at its default.
        PORT="$(free_port)"
        env AGW_LISTEN="127.0.0.1:$PORT" AGW_DATABASE_URL="$url" AGW_ADMIN_KEY="$ADMIN_KEY" \
          AGW_JWT_SECRET="$JWT_SECRET" RUST_LOG=warn \
          "$TARGET/agent-gateway" serve --config "$WORK/gateway.toml" 2>"$WORK/gateway.log" &
        GW_PID=$!
        for _ in $(seq 1 600); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done
      fi
      rate="$("$TARGET/agw-loadgen" cycles --url "http://127.0.0.1:$PORT" --admin-key "$ADMIN_KEY" --workers 8 \
        --duration "$DURATION" | awk '$1=="cycles/s" {print $2} $1=="errors" {e=$2} END {print "errors", e}' | paste -sd' ')"
      stop_gateway
      echo "round $round  $which  cycles/s $rate"
    done
  done
}

# The same modes, counted in instructions instead of seconds: the gateway runs
# under valgrind's callgrind (instrumentation on once it is ready, so startup
# is left out) while agw-loadgen drives it as above; the instructions of every
# gateway thread are divided by the cycles the gateway settled. Unlike
# cycles/s, the count barely moves with what else the machine is doing, so it
# shows what a code change removes; it is not the throughput cost (callgrind
# counts no kernel time, runs the threads one at a time, and offers the
# program no SHA extensions, so SHA-256 runs in software).
events_instructions() { # $1 = store name
  local mode url out settled total
  command -v valgrind >/dev/null || { echo "valgrind not found (Debian package valgrind)" >&2; exit 1; }
  start_sink
  echo "## events on/off in instructions, $1, 8 workers, ${IR_DURATION} per run under callgrind"
  for mode in $EVENTS_MODES; do
    events_env "$mode" "$SINK_PORT"
    url="$(fresh_events_db "$1")"
    out="$WORK/callgrind.$mode.out"
    WRAPPER=(valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out")
    start_gateway "$url"
    WRAPPER=()
    callgrind_control -i on "$GW_PID" >/dev/null 2>&1
    "$TARGET/agw-loadgen" cycles --url "http://127.0.0.1:$PORT" --admin-key "$ADMIN_KEY" --workers 8 \
      --duration "$IR_DURATION" >/dev/null
    settled="$(settled_cycles)"
    stop_gateway
    total="$(awk '/^(summary|totals):/ {print $2; exit}' "$out")"
    echo "$mode  instructions/cycle $(awk -v t="$total" -v n="$settled" 'BEGIN {printf "%d", n ? t / n : 0}')  (settled $settled)"
  done
  EXTRA_ENV=()
  kill "$SINK_PID" 2>/dev/null || true
  [ "$1" = sqlite ] || psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS agw_bench_ev WITH (FORCE)"
}
EVENTS_DURATION="${BENCH_EVENTS_DURATION:-10s}"
IR_DURATION="${BENCH_IR_DURATION:-15s}"
EVENTS_ROUNDS="${BENCH_EVENTS_ROUNDS:-3}"
EVENTS_MODES="${BENCH_EVENTS_MODES:-off events events+otlp}"
# RSS of one gateway (SQLite) over waves of neurons that connect, take
# leases for 10 s after a 10 s warm-up, and leave: idle, the peak sampled
# every second during each wave, and after it (once /metrics shows no SSE
# session, plus 10 s). Needs `ulimit -n` above 2 x BENCH_NEURONS: raised to
# the hard limit here; --frame-connections 64 keeps one connection per neuron.
waves() {
  local neurons="${BENCH_NEURONS:-10000}" count="${BENCH_WAVES:-5}" peak rss sampler i
  ulimit -n "$(ulimit -Hn)"
  # shellcheck disable=SC2206 # BENCH_ENV: VAR=value words for the gateway
  EXTRA_ENV=(AGW_NEURON_MAX_SESSIONS=100000 AGW_LIMITS_MAX_CONNECTIONS=200000 ${BENCH_ENV:-})
  start_gateway "sqlite://$WORK/waves.db"
  EXTRA_ENV=()
  rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$GW_PID/status"; }
  TOKEN="$(AGW_JWT_SECRET="$JWT_SECRET" AGW_DATABASE_URL="sqlite://$WORK/waves.db" "$GATEWAY_BIN" token mint --sub bench --tenant bench)"
  sleep 1
  echo "## waves: $count x $neurons neurons, gateway $GATEWAY_BIN"
  echo "idle: $(( $(rss_kb) / 1024 )) MB"
  for i in $(seq 1 "$count"); do
    : >"$WORK/rss"
    ( while kill -0 "$GW_PID" 2>/dev/null; do rss_kb >>"$WORK/rss"; sleep 1; done ) &
    sampler=$!
    local rate="wave failed"
    if "$TARGET/agw-loadgen" --json neurons --url "http://127.0.0.1:$PORT" --admin-key "$ADMIN_KEY" --token "$TOKEN" \
      --tenant bench --neurons "$neurons" --concurrency 1 --warmup 10s --duration 10s \
      --publishers 64 --frame-connections 64 >"$WORK/wave.json" 2>"$WORK/wave.err"; then
      rate="$(python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["leases_per_sec"]), "leases/s")' "$WORK/wave.json")"
    else
      rate="wave failed: $(tail -c 300 "$WORK/wave.err")"
    fi
    kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true
    peak="$(sort -n "$WORK/rss" | tail -n1)"
    for _ in $(seq 1 120); do
      curl -sf "http://127.0.0.1:$PORT/metrics" | grep -qE '^agw_sse_sessions(\{[^}]*\})? [1-9]' || break
      sleep 1
    done
    sleep 10
    rss="$(rss_kb)"
    echo "wave $i: peak $(( peak / 1024 )) MB, after $(( rss / 1024 )) MB; $rate"
  done
  stop_gateway
}

# A/B of two builds: 8-worker cycles of BENCH_BASELINE and of GATEWAY_BIN
# (BENCH_GATEWAY or this tree's build), interleaved over BENCH_AB_ROUNDS
# rounds of BENCH_DURATION, a fresh database each, on BENCH_AB_STORE
# (sqlite or postgres), rate limit off. Prints cycles/s and claim p99; on
# PostgreSQL also WAL syncs and commits per cycle (pg_stat_wal.wal_sync,
# pg_stat_database.xact_commit: the whole server, before and after each run).
ab() {
  local store="${BENCH_AB_STORE:-sqlite}" round which bin url db out w0 w1 x0 x1 top
  [ -n "${BENCH_BASELINE:-}" ] || { echo "ab: set BENCH_BASELINE to a baseline agent-gateway binary" >&2; exit 1; }
  echo "## A/B, $store, ${BENCH_AB_WORKERS:-8} workers, ${DURATION} per run: baseline $BENCH_BASELINE vs $GATEWAY_BIN"
  if [ "$store" = postgres ] && [ "${BENCH_AUTOVACUUM:-}" = on ]; then
    # The issue's condition for PostgreSQL figures: autovacuum on (this
    # machine ships it off); restored when the run ends.
    psql "$PG_ADMIN" -qc "ALTER SYSTEM SET autovacuum = on" -c "SELECT pg_reload_conf()" >/dev/null
    trap 'psql "$PG_ADMIN" -qc "ALTER SYSTEM RESET autovacuum" -c "SELECT pg_reload_conf()" >/dev/null; cleanup' EXIT
    echo "autovacuum: $(psql "$PG_ADMIN" -qAtc 'show autovacuum')"
  fi
  for round in $(seq 1 "${BENCH_AB_ROUNDS:-3}"); do
    for which in baseline build; do
      bin="$GATEWAY_BIN"; [ "$which" = baseline ] && bin="$BENCH_BASELINE"
      if [ "$store" = postgres ]; then
        db="agw_bench_ab_$RANDOM$RANDOM"; psql "$PG_ADMIN" -qc "CREATE DATABASE $db"; url="${PG_ADMIN%/*}/$db"
      else
        rm -f "$WORK"/ab.db*; url="sqlite://$WORK/ab.db"
      fi
      GATEWAY_BIN="$bin" start_gateway "$url"
      w0=0; x0=0
      if [ "$store" = postgres ]; then
        w0="$(psql "$PG_ADMIN" -qAtc 'select wal_sync from pg_stat_wal')"
        x0="$(psql "$PG_ADMIN" -qAtc "select xact_commit + xact_rollback from pg_stat_database where datname = '$db'")"
        # Per-statement figures when pg_stat_statements is loaded (optional).
        psql "$PG_ADMIN" -qAtc 'select pg_stat_statements_reset()' >/dev/null 2>&1 || true
      fi
      out="$("$TARGET/agw-loadgen" --json cycles --url "http://127.0.0.1:$PORT" --admin-key "$ADMIN_KEY" \
        --workers "${BENCH_AB_WORKERS:-8}" --duration "$DURATION")"
      w1=0; x1=0; top=""
      if [ "$store" = postgres ]; then
        w1="$(psql "$PG_ADMIN" -qAtc 'select wal_sync from pg_stat_wal')"
        x1="$(psql "$PG_ADMIN" -qAtc "select xact_commit + xact_rollback from pg_stat_database where datname = '$db'")"
        top="$(psql "$PG_ADMIN" -qAtF $'\t' -c "select calls, round(total_exec_time::numeric, 1), left(regexp_replace(query, '\s+', ' ', 'g'), 70)
          from pg_stat_statements s join pg_database d on d.oid = s.dbid where d.datname = '$db'
          order by total_exec_time desc limit ${BENCH_AB_STATEMENTS:-0}" 2>/dev/null || true)"
      fi
      stop_gateway
      [ "$store" = postgres ] && psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)"
      echo "$out" | python3 -c '
import json, sys
d = json.load(sys.stdin); c = max(d["cycles"], 1); w, x = (int(v) for v in sys.argv[2:4])
extra = f", WAL syncs/cycle {w / c:.2f}, transactions/cycle {x / c:.2f}" if sys.argv[4] == "postgres" else ""
rate, p99 = d["cycles_per_sec"], d["claim"]["p99_ms"]
print(f"round {sys.argv[1]}  {sys.argv[5]}  cycles/s {rate:.0f}, claim p99 {p99} ms{extra}")
for line in sys.argv[6].splitlines():
    calls, ms, query = line.split("\t", 2)
    print(f"    {int(calls) / c:6.2f} calls/cycle  {float(ms) * 1000 / c:7.1f} us/cycle  {query}")
' "$round" "$((w1 - w0))" "$((x1 - x0))" "$store" "$which" "$top"
    done
  done
}

# Push throughput (issue 23), interleaved A/B: per round and build
# (BENCH_BASELINE, then GATEWAY_BIN), one fresh SQLite gateway serves
# 8-worker cycles, then 4 neurons x concurrency 8 (the lease channel's
# figure), then the same 4 neurons with N idle neurons of another tenant
# registered on the same capability, for each N of BENCH_PUSH_IDLE (10 s
# warm-up: they connect first). Prints cycles/s, leases/s and their ratio,
# publish → lease p50 / p99, and per measured lease the hub's dispatch
# counters from /metrics (builds without them print none).
push() {
  local loadgen="${BENCH_LOADGEN:-$TARGET/agw-loadgen}" round which bin idle cyc
  [ -n "${BENCH_BASELINE:-}" ] || { echo "push: set BENCH_BASELINE to a baseline agent-gateway binary" >&2; exit 1; }
  ulimit -n "$(ulimit -Hn)"
  echo "## push, SQLite, ${DURATION} per run: baseline $BENCH_BASELINE vs $GATEWAY_BIN"
  counters() { curl -sf "http://127.0.0.1:$PORT/metrics" | awk '/^agw_neuron_(wakeups|sessions_woken|claims)_total/ {printf "%s ", $2} END {print ""}'; }
  show() { # $1 = label, $2 = loadgen JSON, $3 / $4 = counters before / after, $5 = cycles/s
    python3 -c '
import json, sys
d = json.loads(sys.argv[2]); c0, c1 = sys.argv[3].split(), sys.argv[4].split()
rate, p = d["leases_per_sec"], d["publish_to_lease"]
p50, p99, ratio = p["p50_ms"], p["p99_ms"], rate / max(float(sys.argv[5]), 1)
line = f"{sys.argv[1]:<26} leases/s {rate:6.0f} ({ratio:.2f}x cycles)  pub->lease p50 {p50} p99 {p99} ms"
# /metrics order: wake-ups, sessions woken, claims leased, claims empty
if len(c0) == 4 and len(c1) == 4:
    wake, woken, leased, empty = (float(b) - float(a) for a, b in zip(c0, c1))
    n = max(leased, 1)
    line += f"  per lease: claims {(leased + empty) / n:.2f}, wake-ups {wake / n:.2f}, sessions woken {woken / n:.2f}"
idle_leases, errors = d.get("idle_leases", 0), d["errors"]
if idle_leases:
    line += f"  LEASES TO IDLE NEURONS {idle_leases}"
if errors["total"]:
    kinds = list(errors["by_kind"])[:3]
    total = errors["total"]
    line += f"  errors {total}: {kinds}"
print(line)
' "$@"
  }
  for round in $(seq 1 "${BENCH_PUSH_ROUNDS:-2}"); do
    for which in baseline build; do
      bin="$GATEWAY_BIN"; [ "$which" = baseline ] && bin="$BENCH_BASELINE"
      rm -f "$WORK"/push.db*
      EXTRA_ENV=(AGW_NEURON_MAX_SESSIONS=100000 AGW_LIMITS_MAX_CONNECTIONS=200000)
      GATEWAY_BIN="$bin" start_gateway "sqlite://$WORK/push.db"
      EXTRA_ENV=()
      TOKEN="$(AGW_JWT_SECRET="$JWT_SECRET" AGW_DATABASE_URL="sqlite://$WORK/push.db" "$bin" token mint --sub bench --tenant bench)"
      cyc="$("$loadgen" --json cycles --url "http://127.0.0.1:$PORT" --admin-key "$ADMIN_KEY" --workers 8 --duration "$DURATION" \
        | python3 -c 'import json,sys; d=json.load(sys.stdin); print(round(d["cycles_per_sec"]))')"
      echo "round $round  $which  8-worker cycles/s $cyc"
      local c0 c1 out
      c0="$(counters)"
      out="$("$loadgen" --json neurons --url "http://127.0.0.1:$PORT" --admin-key "$ADMIN_KEY" --token "$TOKEN" \
        --tenant bench --neurons 4 --concurrency 8 --duration "$DURATION")"
      c1="$(counters)"
      show "round $round  $which  4 neurons" "$out" "$c0" "$c1" "$cyc"
      for idle in ${BENCH_PUSH_IDLE:-1000}; do
        c0="$(counters)"
        out="$("$loadgen" --json neurons --url "http://127.0.0.1:$PORT" --admin-key "$ADMIN_KEY" --token "$TOKEN" \
          --tenant bench --neurons 4 --concurrency 8 --idle-neurons "$idle" --frame-connections 64 \
          --warmup 10s --duration "$DURATION" 2>/dev/null)" || out=""
        c1="$(counters)"
        if [ -n "$out" ]; then
          show "round $round  $which  +$idle idle" "$out" "$c0" "$c1" "$cyc"
        else
          echo "round $round  $which  +$idle idle: run failed"
        fi
      done
      stop_gateway
    done
  done
}

LOAD_RATE_SQLITE="${BENCH_LOAD_RATE_SQLITE:-1500}"
LOAD_RATE_PG="${BENCH_LOAD_RATE_PG:-200}"
BACKLOG="${BENCH_BACKLOG:-3200}"

echo "# agent-gateway benchmarks — $(date -u +%F), $(nproc) cores, commit $(git rev-parse --short HEAD)"
if [ "$WHICH" = policy ] || [ "$WHICH" = all ]; then
  echo "## policy evaluation (no HTTP, no store): 1,000,000 decisions per case"
  "$TARGET/examples/policy_bench" 1000000
fi
if [ "$WHICH" = sqlite ] || [ "$WHICH" = all ]; then
  run_store sqlite "sqlite://$WORK/bench.db"
fi
if [ "$WHICH" = postgres ] || [ "$WHICH" = all ]; then
  DB="agw_bench_$RANDOM$RANDOM"
  psql "$PG_ADMIN" -qc "CREATE DATABASE $DB"
  run_store postgres "${PG_ADMIN%/*}/$DB"
  psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
fi
if [ "$WHICH" = events ] || [ "$WHICH" = all ]; then
  for store in ${BENCH_EVENTS_STORES:-sqlite postgres}; do events_compare "$store"; done
fi
if [ "$WHICH" = events-load ]; then
  events_load sqlite "$LOAD_RATE_SQLITE"
  events_load postgres "$LOAD_RATE_PG"
fi
if [ "$WHICH" = sync ]; then
  sync_cost
fi
if [ "$WHICH" = ab ]; then
  ab
fi
if [ "$WHICH" = waves ]; then
  waves
fi
if [ "$WHICH" = push ]; then
  push
fi
if [ "$WHICH" = layers ]; then
  layers
fi
if [ "$WHICH" = noisy ]; then
  noisy sqlite
  noisy postgres
fi
if [ "$WHICH" = events-ir ]; then
  events_instructions sqlite
  events_instructions postgres
fi
