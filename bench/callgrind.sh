#!/usr/bin/env bash
# Instructions per status POST, counted by valgrind's callgrind: repeatable on a busy
# machine, where req/s is not. For each BINARY (a release build of job-launcher-mock),
# the service runs under callgrind twice, once fed LOW and once HIGH POSTs of Fusion's
# example body (tests/fixtures/seed-status-update.json, a fresh jobId each) over one
# keep-alive connection, then SIGTERM; the difference of the two totals over HIGH - LOW
# is what one POST costs, start-up and shutdown cancelled out. Needs valgrind, python3.
#
#   bash bench/callgrind.sh target/release/job-launcher-mock [OTHER_BINARY...]
#
# Env: LOW (500), HIGH (2500), ROUNDS (2: the binaries take turns, round by round).
set -euo pipefail
cd "$(dirname "$0")/.."

LOW=${LOW:-500}
HIGH=${HIGH:-2500}
ROUNDS=${ROUNDS:-2}
SEED=tests/fixtures/seed-status-update.json
WORK=$(mktemp -d "${TMPDIR:-/tmp}/jlm-callgrind.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# Total instructions of BINARY serving N POSTs.
instructions() {
  local binary=$1 n=$2 out="$WORK/callgrind.out" log="$WORK/stdout" pid port
  valgrind --tool=callgrind --callgrind-out-file="$out" "$binary" --port 0 \
    >"$log" 2>"$WORK/stderr" &
  pid=$!
  # The readiness line; valgrind makes the start slow, so up to two minutes.
  for _ in $(seq 1200); do
    grep -q "listening on" "$log" && break
    kill -0 "$pid" 2>/dev/null || { cat "$WORK/stderr" >&2; exit 1; }
    sleep 0.1
  done
  port=$(sed -n 's|.*listening on http://[^:]*:\([0-9]*\).*|\1|p' "$log" | head -1)
  python3 - "$port" "$n" "$SEED" <<'EOF'
import http.client, sys
port, n, seed = int(sys.argv[1]), int(sys.argv[2]), open(sys.argv[3], "rb").read()
marker = b'"jobId": "hhzitrwancwv"'
assert marker in seed, "the fixture's jobId moved"
connection = http.client.HTTPConnection("127.0.0.1", port)
for i in range(n):
    body = seed.replace(marker, b'"jobId": "cg%08d"' % i, 1)
    connection.request("POST", "/job-launcher/launcher/status", body,
                       {"Content-Type": "application/json"})
    answer = connection.getresponse()
    answer.read()
    assert answer.status == 200, answer.status
EOF
  kill -TERM "$pid"
  wait "$pid" || true
  sed -n 's/^summary: //p' "$out"
}

for round in $(seq "$ROUNDS"); do
  for binary in "$@"; do
    low=$(instructions "$binary" "$LOW")
    high=$(instructions "$binary" "$HIGH")
    echo "round $round  $binary  $(( (high - low) / (HIGH - LOW) )) instructions per POST"
  done
done
