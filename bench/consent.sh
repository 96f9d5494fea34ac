#!/usr/bin/env bash
# Consent-update throughput and latency of `gremium serve`, measured with wrk (a real
# HTTP load generator) over loopback, on SQLite and on PostgreSQL, side by side.
#
# Every request is a real consent change (values alternate per participant), so each
# one closes/opens the media gate (no media plane here: a no-op), writes the
# participant row and appends a hash-chained ledger entry in one transaction.
#
# Usage: bench/consent.sh [DURATION_SECONDS] [CONNECTIONS]
# Env:   GREMIUM_BENCH_PG_ADMIN (default postgres://postgres@127.0.0.1:5432/test)
#        GREMIUM_BENCH_ONLY=sqlite|postgres runs one backend only
#        GREMIUM_BENCH_PERF=PREFIX records a perf profile of the server per backend
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
CONNECTIONS=${2:-32}
MEETINGS=4
PER_MEETING=50
PG_ADMIN=${GREMIUM_BENCH_PG_ADMIN:-postgres://postgres@127.0.0.1:5432/test}
GOAL_RPS=5000
GOAL_P99_MS=20

command -v wrk >/dev/null || { echo "wrk is required (apt-get install wrk)" >&2; exit 2; }
cargo build --release --quiet
BIN=target/release/gremium
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

run_one() { # $1 = label, $2 = database url or "" for the SQLite default
  local label=$1 dburl=$2 dir="$WORK/$1" port
  port=$(free_port)
  mkdir -p "$dir"
  GREMIUM_DATABASE_URL="$dburl" RUST_LOG=warn "$BIN" serve --listen "127.0.0.1:$port" --data-dir "$dir" \
    >/dev/null 2>"$dir/server.log" &
  local pid=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
  local token
  token=$(GREMIUM_DATABASE_URL="$dburl" "$BIN" token --role moderator --data-dir "$dir")
  local lua="$dir/consent.lua"
  echo "local ps = {" >"$lua"
  for m in $(seq $MEETINGS); do
    local mid
    mid=$(curl -sf -H "Authorization: Bearer $token" -H 'content-type: application/json' \
      -d "{\"title\":\"Bench $m\"}" "http://127.0.0.1:$port/api/v1/meetings" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
    for p in $(seq $PER_MEETING); do
      curl -sf -H "Authorization: Bearer $token" -H 'content-type: application/json' \
        -d "{\"display_name\":\"P$p\"}" "http://127.0.0.1:$port/api/v1/meetings/$mid/participants" |
        python3 -c 'import json,sys; d=json.load(sys.stdin); print("{m=\"%s\",p=\"%s\",t=\"%s\"}," % (d["participant"]["meeting_id"], d["participant"]["id"], d["join_token"]))' >>"$lua"
    done
  done
  cat >>"$lua" <<'LUA'
}
local i = 0
local bad = 0
request = function()
  i = i + 1
  local n = #ps
  local x = ps[(i % n) + 1]
  local v = (math.floor(i / n) % 2 == 0) and "true" or "false"
  return wrk.format("PUT", "/api/v1/meetings/" .. x.m .. "/participants/" .. x.p .. "/consent",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. x.t},
    '{"recording":' .. v .. ',"streaming":false}')
end
response = function(status, headers, body)
  if status ~= 200 then bad = bad + 1 end
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %.0f %.2f %.2f %.2f %d %d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    summary.requests, summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
LUA
  # warm-up, then the measured run
  wrk -t1 -c"$CONNECTIONS" -d2s -s "$lua" "http://127.0.0.1:$port" >/dev/null
  local line cpu0 cpu1
  cpu0=$(awk '{print $14+$15}' /proc/$pid/stat)
  if [ -n "${GREMIUM_BENCH_PERF:-}" ]; then # profile the server during the measured run
    perf record -e cpu-clock -F 999 -g -o "$GREMIUM_BENCH_PERF.$label" -p "$pid" -- sleep "$DURATION" >/dev/null 2>&1 &
  fi
  line=$(wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -s "$lua" "http://127.0.0.1:$port" | grep '^RESULT')
  cpu1=$(awk '{print $14+$15}' /proc/$pid/stat)
  kill "$pid"; wait "$pid" 2>/dev/null || true
  local verify
  verify=$(GREMIUM_DATABASE_URL="$dburl" "$BIN" audit verify --data-dir "$dir" 2>/dev/null |
    python3 -c 'import json,sys; r=json.load(sys.stdin); print("%s/%d" % ("intact" if r["intact"] else "BROKEN", r["entries"]))')
  # shellcheck disable=SC2086
  set -- $line
  local cpu_us=$(( (cpu1 - cpu0) * 10000 / $6 ))
  printf "%-10s %10s %9s %9s %9s %10s %7s %16s %12s\n" "$label" "$2" "$3" "$4" "$5" "$6" "$7" "$verify" "$cpu_us"
}

PG_DB="gremium_bench_$$"
psql "$PG_ADMIN" -qc "create database $PG_DB" >/dev/null
PG_URL="${PG_ADMIN%/*}/$PG_DB"

echo "consent updates: wrk -t1 -c$CONNECTIONS -d${DURATION}s, $((MEETINGS * PER_MEETING)) participants in $MEETINGS meetings, $(nproc) cores"
printf "%-10s %10s %9s %9s %9s %10s %7s %16s %12s\n" backend "req/s" "p50 ms" "p99 ms" "max ms" requests errors "ledger/entries" "server us/req"
[ "${GREMIUM_BENCH_ONLY:-sqlite}" = postgres ] || run_one sqlite ""
[ "${GREMIUM_BENCH_ONLY:-postgres}" = sqlite ] || run_one postgres "$PG_URL"
printf "%-10s %10s %9s %9s\n" goal "$GOAL_RPS" "" "$GOAL_P99_MS"
psql "$PG_ADMIN" -qc "drop database $PG_DB" >/dev/null || true
