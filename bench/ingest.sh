#!/usr/bin/env bash
# Ingest cost per publisher: `gremium serve` (release) receives N synthetic publishers
# (`gremium publish`: VP8 320x180@15 + Opus) over loopback ICE, N = 1, 4, 8, 16.
# Reports the server's CPU, memory and file descriptors per publisher in steady state
# and the time from WHIP POST to the first decoded video frame (server-side histogram),
# next to the peer figure the issue names (OpenTalk: about 64 fds per participant).
# The publishers run on the same 2 cores, so their encoding competes with the server.
#
# Usage: bench/ingest.sh [SECONDS_OF_STEADY_STATE]
set -euo pipefail
cd "$(dirname "$0")/.."
SETTLE=${1:-10}
cargo build --release --quiet
BIN=target/release/gremium
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
fds() { ls "/proc/$1/fd" | wc -l; }
HZ=$(getconf CLK_TCK)

printf "%-4s %12s %14s %12s %12s %14s %16s\n" N "server cores" "cores/publ." "RSS MiB" "MiB/publ." "fds/publ." "POST->frame ms"
for N in ${GREMIUM_BENCH_N:-1 4 8 16}; do
  WORK=$(mktemp -d); PORT=$(free_port)
  printf '[ice]\nallowed_local_addresses = ["127.0.0.1"]\n[ingest]\nmax_publishers_per_meeting = 32\n' >"$WORK/gremium.toml"
  RUST_LOG=warn "$BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$WORK" --config "$WORK/gremium.toml" >/dev/null 2>"$WORK/server.log" &
  SERVER=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
  T=$("$BIN" token --role moderator --data-dir "$WORK" --config "$WORK/gremium.toml")
  api() { curl -sf -H "Authorization: Bearer $T" -H 'content-type: application/json' "$@"; }
  MID=$(api -d '{"title":"Bench"}' "http://127.0.0.1:$PORT/api/v1/meetings" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  sleep 1
  FD0=$(fds $SERVER); RSS0=$(rss_kib $SERVER)
  PUBS=()
  for i in $(seq "$N"); do
    J=$(api -d "{\"display_name\":\"P$i\"}" "http://127.0.0.1:$PORT/api/v1/meetings/$MID/participants" | python3 -c 'import json,sys; print(json.load(sys.stdin)["join_token"])')
    "$BIN" publish --server "http://127.0.0.1:$PORT" --meeting "$MID" --token "$J" --ice-address 127.0.0.1 \
      --width 320 --height 180 --fps 15 --tone $((200 + i * 50)) --duration $((SETTLE + 10)) >/dev/null 2>&1 &
    PUBS+=($!)
  done
  sleep 5
  C0=$(ticks $SERVER); sleep "$SETTLE"; C1=$(ticks $SERVER)
  FD1=$(fds $SERVER); RSS1=$(rss_kib $SERVER)
  METRICS=$(curl -s "http://127.0.0.1:$PORT/metrics")
  FF=$(echo "$METRICS" | python3 -c '
import sys
s = c = 0.0
for l in sys.stdin:
    if l.startswith("gremium_ingest_first_frame_seconds_sum"): s = float(l.split()[-1])
    if l.startswith("gremium_ingest_first_frame_seconds_count"): c = float(l.split()[-1])
print("%.0f (n=%d)" % (1000 * s / c, c) if c else "-")')
  python3 - "$N" "$C0" "$C1" "$HZ" "$SETTLE" "$RSS0" "$RSS1" "$FD0" "$FD1" "$FF" <<'PY'
import sys
n, c0, c1, hz, settle, rss0, rss1, fd0, fd1 = map(float, sys.argv[1:10]); ff = sys.argv[10]
cores = (c1 - c0) / hz / settle
print("%-4d %12.2f %14.3f %12.1f %12.2f %14.1f %16s" % (n, cores, cores / n, rss1 / 1024, (rss1 - rss0) / 1024 / n, (fd1 - fd0) / n, ff))
PY
  kill "${PUBS[@]}" 2>/dev/null || true; kill $SERVER 2>/dev/null || true; wait 2>/dev/null || true
  rm -rf "$WORK"
done
echo "peer: OpenTalk needs about 64 fds per participant (issue 3); goal POST->first frame <= 500 ms"
