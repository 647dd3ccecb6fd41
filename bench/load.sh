#!/usr/bin/env bash
# Load test of job-launcher-mock over loopback, against a bare axum handler as baseline.
# Prints one table at the end. Needs cargo, python3, and wrk (installed with apt if
# missing). Takes about 3 * ROUNDS * DURATION + 3 * DURATION + ~60 s after the build
# (defaults: about 6 minutes, with the memory per connection and per session). Each
# round loads a fresh service at the root, a fresh one under a session, and the bare
# handler.
#
#   bash bench/load.sh                      # ROUNDS=7 DURATION=10
#   ROUNDS=3 DURATION=8 bash bench/load.sh
#
# Env: ROUNDS (7: on the machine docs/performance.md describes one round's ratio swings by about
# 0.07, so the median needs several), DURATION seconds per wrk run (10), CONNECTIONS
# (32), THREADS (wrk threads, 2: see below), STARTS (20, for the start-up time),
# MEM_RUNS (50000), CONNS (5000, for the memory per open connection), SESSIONS (10000,
# for the memory per empty session), SKIP_BUILD=1 to
# use the binaries already in target/release.
#
# wrk runs with -t2: with -t1 the load generator's one thread (which also builds each
# body in Lua) saturates before the bare handler does on a 2-core machine, so the bare
# baseline would measure wrk, not the server. Two threads let wrk take whatever CPU the
# server leaves; the server and wrk share the 2 cores either way, so absolute numbers
# are this machine's, the ratio is the point.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-7}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-2}
STARTS=${STARTS:-20}
MEM_RUNS=${MEM_RUNS:-50000}
CONNS=${CONNS:-5000}
SESSIONS=${SESSIONS:-10000}
SEED=tests/fixtures/seed-status-update.json
SERVICE=target/release/job-launcher-mock
BARE=target/release/examples/bare
TOOLS="python3 bench/tools.py"

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  echo "--- cargo build --release --locked --bin job-launcher-mock --example bare" >&2
  cargo build --release --locked --bin job-launcher-mock --example bare
fi

if ! command -v wrk >/dev/null 2>&1; then
  echo "--- installing wrk" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq wrk >/dev/null
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/jlm-load.XXXXXX")
RESULTS=$WORK/results
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start NAME BINARY ARGS...: starts a server on a free loopback port, waits for its
# readiness line, sets PID and BASE (http://127.0.0.1:PORT). Logs go to /dev/null.
start() {
  local name=$1
  shift
  local out=$WORK/$name.out
  : >"$out"
  "$@" >"$out" 2>/dev/null </dev/null &
  PID=$!
  PIDS+=("$PID")
  local i
  for i in $(seq 1 200); do
    BASE=$(sed -n 's/^.* listening on \(http:\/\/[0-9.:]*\)$/\1/p' "$out")
    if [ -n "$BASE" ]; then
      return 0
    fi
    kill -0 "$PID" 2>/dev/null || { echo "$name exited before it was ready" >&2; exit 1; }
    sleep 0.05
  done
  echo "$name printed no readiness line within 10 s" >&2
  exit 1
}

stop() {
  kill -TERM "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
}

# load KEY WRK-ARGS...: runs wrk with the common options and WRK-ARGS (which end with
# the URL, then any "-- SCRIPT ARGS") against the server PID, records KEY_rps, KEY_p99
# (ms), KEY_mb (MB/s) and KEY_cpu (the server's CPU microseconds per request, from
# /proc/PID/stat, 10 ms resolution); any non-2xx answer or socket error is recorded as
# a warning.
load() {
  local key=$1
  shift
  local out=$WORK/wrk.$key
  local cpu0 cpu1
  cpu0=$($TOOLS cpu "$PID")
  wrk -t"${LOAD_THREADS:-$THREADS}" -c"${LOAD_CONNECTIONS:-$CONNECTIONS}" -d"${DURATION}s" --latency "$@" >"$out" 2>&1
  cpu1=$($TOOLS cpu "$PID")
  local rps p99 non2xx errors mb requests
  read -r rps p99 non2xx errors mb requests < <($TOOLS wrk "$out") || true
  [ -n "$rps" ] || { echo "wrk gave no result for $key:" >&2; cat "$out" >&2; exit 1; }
  echo "${key%%.*}_rps${key#"${key%%.*}"}=$rps" >>"$RESULTS"
  echo "${key%%.*}_p99${key#"${key%%.*}"}=$p99" >>"$RESULTS"
  echo "${key%%.*}_mb${key#"${key%%.*}"}=$mb" >>"$RESULTS"
  local cpu_us
  cpu_us=$(python3 -c "print(f'{($cpu1 - $cpu0) * 1e6 / max($requests, 1):.1f}')")
  echo "${key%%.*}_cpu${key#"${key%%.*}"}=$cpu_us" >>"$RESULTS"
  if [ "$non2xx" != 0 ] || [ "$errors" != 0 ]; then
    echo "bad.$key=$non2xx non-2xx answers, $errors socket errors" >>"$RESULTS"
  fi
  printf '  %-10s %10s req/s  p99 %8s ms  %7s CPU us/req\n' "$key" "$rps" "$p99" "$cpu_us" >&2
}

echo "rounds=$ROUNDS" >"$RESULTS"
echo "setup=wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s over loopback, $(nproc) cores; \
service with default flags, logs to /dev/null; a fresh service per round" >>"$RESULTS"

echo "--- 1, 2: POST $SEED with a new jobId per request, $ROUNDS rounds of ${DURATION}s" >&2
for round in $(seq 1 "$ROUNDS"); do
  start service "$SERVICE" --port 0
  load "svc.$round" -s bench/post_seed.lua "$BASE/job-launcher/launcher/status" -- "$SEED" "r$round"
  stop
  # The same under a session: /sessions/bench/..., on the session's own world.
  start service "$SERVICE" --port 0
  curl -fsS -o /dev/null -X POST "$BASE/_mock/sessions" -H 'Content-Type: application/json' -d '{"name":"bench"}'
  load "sess.$round" -s bench/post_seed.lua "$BASE/sessions/bench/job-launcher/launcher/status" -- "$SEED" "r$round"
  stop
  start bare "$BARE" --port 0
  load "bare.$round" -s bench/post_seed.lua "$BASE/job-launcher/launcher/status" -- "$SEED" "r$round"
  stop
done

echo "--- the service with RUST_LOG=warn (no line per request), once" >&2
RUST_LOG=warn start service "$SERVICE" --port 0
load quiet -s bench/post_seed.lua "$BASE/job-launcher/launcher/status" -- "$SEED" q
stop

echo "--- 3: reads, with 10,000 runs stored" >&2
start service "$SERVICE" --port 0
read -r _ took < <(timeout 300 $TOOLS fill "$BASE" 10000 fill) || true
[ -n "${took:-}" ] || { echo "filling 10,000 runs failed" >&2; exit 1; }
echo "fill10k_s=$took" >>"$RESULTS"
echo "  filled 10000 runs in ${took}s" >&2
load run "$BASE/_mock/runs/fill0005000"
echo "list_bytes=$(curl -sS "$BASE/job-launcher/launcher/status" | wc -c)" >>"$RESULTS"
# Each answer is the whole list (~40 MB, ~0.25 s of the service's time): 32 at once
# would hold over a gigabyte of answers in flight and finish too few within DURATION
# to count, so this one runs 2 connections on 1 wrk thread, with a longer timeout.
LOAD_CONNECTIONS=2 LOAD_THREADS=1 load list --timeout 30s "$BASE/job-launcher/launcher/status"
stop

echo "--- 4: resident memory for $MEM_RUNS runs" >&2
start service "$SERVICE" --port 0 --max-runs $((MEM_RUNS + 10000))
sleep 0.2
echo "rss_before=$($TOOLS rss "$PID")" >>"$RESULTS"
took=""
read -r n took < <(timeout 300 $TOOLS fill "$BASE" "$MEM_RUNS" mem) || true
[ -n "$took" ] || { echo "filling $MEM_RUNS runs failed" >&2; exit 1; }
sleep 0.2
echo "rss_after=$($TOOLS rss "$PID")" >>"$RESULTS"
echo "rss_runs=$MEM_RUNS" >>"$RESULTS"
echo "rss_fill_n=$n" >>"$RESULTS"
echo "rss_fill_s=$took" >>"$RESULTS"
echo "  posted $n runs in ${took}s" >&2
stop

echo "--- 5: start-up time, $STARTS starts" >&2
{
  read -r ready
  read -r first
} < <(timeout 300 $TOOLS startup "$SERVICE" "$STARTS") || true
[ -n "${first:-}" ] || { echo "the start-up measurement failed" >&2; exit 1; }
echo "ready_ms=$ready" >>"$RESULTS"
echo "first200_ms=$first" >>"$RESULTS"

echo "--- 6: resident memory per open connection, $CONNS of them" >&2
for kind in fresh idle wait wait-after; do
  read -r per _ < <(timeout 300 $TOOLS conns "$SERVICE" "$CONNS" "$kind") || true
  [ -n "${per:-}" ] || { echo "the $kind connections measurement failed" >&2; exit 1; }
  echo "conn_$kind=$per" >>"$RESULTS"
  echo "  $kind: $per bytes each" >&2
done
echo "conns=$CONNS" >>"$RESULTS"

echo "--- 7: resident memory per empty session, $SESSIONS of them, made and deleted twice" >&2
read -r per before with deleted with_again deleted_again < <(timeout 600 $TOOLS sessions "$SERVICE" "$SESSIONS") || true
[ -n "${per:-}" ] || { echo "the sessions measurement failed" >&2; exit 1; }
echo "session_rss=$per $before $with $deleted $with_again $deleted_again" >>"$RESULTS"
echo "sessions=$SESSIONS" >>"$RESULTS"
echo "  $per bytes each" >&2

echo >&2
$TOOLS table "$RESULTS"
