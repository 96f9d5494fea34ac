#!/usr/bin/env bash
# HLS serving, Gremium next to nginx: the same presentation (a master playlist, a
# 360p media playlist and 1 s MPEG-TS segments made by ffmpeg) served by
# `gremium serve` under /live/{meeting}/… and by nginx (Debian's nginx-light,
# `sendfile on`, 2 worker processes = the machine's cores; Gremium's tokio runtime
# also has one worker per core) from the same directory. wrk, on the same machine,
# loads each server in turn with THREADS threads and CONNS connections for DURATION:
# the media playlist (what every player polls once per segment) and a segment.
#
# Gremium does more per playlist request than nginx: it rewrites media playlists
# (agenda chapters as EXT-X-DATERANGE, a program date) — from an in-memory cache
# while the file is unchanged — and adds CORS and cache headers to every response.
#
# Usage: bench/hls_serving.sh [DURATION] [CONNS]   (default 10s, 32)
#   BIN=path/to/gremium (default target/release/gremium, built if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10s}
CONNS=${2:-32}
THREADS=${THREADS:-2}
BIN=${BIN:-target/release/gremium}
source scripts/deps.sh
gremium_install_deps
[ -x "$BIN" ] || cargo build --release --locked
WORK=$(mktemp -d /tmp/gremium-hls-bench.XXXXXX)
cleanup() {
  [ -n "${GREMIUM_PID:-}" ] && kill "$GREMIUM_PID" 2>/dev/null || true
  [ -n "${NGINX_PID:-}" ] && kill "$NGINX_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

MID=$(python3 -c 'import uuid; print(uuid.uuid4())')
LIVE="$WORK/data/live"
mkdir -p "$LIVE/$MID/360p"
ffmpeg -v error -f lavfi -i testsrc2=size=640x360:rate=30 -f lavfi -i sine=f=440:r=48000 \
  -t 12 -c:v libx264 -preset veryfast -b:v 800k -g 30 -keyint_min 30 -sc_threshold 0 \
  -c:a aac -b:a 96k -f hls -hls_time 1 -hls_list_size 6 \
  -hls_segment_filename "$LIVE/$MID/360p/seg%05d.ts" "$LIVE/$MID/360p/index.m3u8"
cat >"$LIVE/$MID/index.m3u8" <<EOF
#EXTM3U
#EXT-X-VERSION:3
#EXT-X-STREAM-INF:BANDWIDTH=900000,RESOLUTION=640x360,CODECS="avc1.64001e,mp4a.40.2"
360p/index.m3u8
EOF
chmod -R a+rX "$WORK" # nginx's workers run as www-data
SEGMENT=$(grep -m1 '\.ts$' "$LIVE/$MID/360p/index.m3u8")
SEG_BYTES=$(stat -c %s "$LIVE/$MID/360p/$SEGMENT")

GPORT=$(free_port)
"$BIN" serve --listen "127.0.0.1:$GPORT" --data-dir "$WORK/data" >"$WORK/gremium.log" 2>&1 &
GREMIUM_PID=$!
NPORT=$(free_port)
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<EOF
daemon off;
worker_processes 2;
error_log $WORK/nginx/error.log warn;
pid $WORK/nginx/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  types { application/vnd.apple.mpegurl m3u8; video/mp2t ts; }
  server {
    listen 127.0.0.1:$NPORT;
    root $WORK/data;
    location ~ \.m3u8\$ { add_header Cache-Control "public, max-age=1"; add_header Access-Control-Allow-Origin *; }
    location ~ \.ts\$ { add_header Cache-Control "public, max-age=31536000, immutable"; add_header Access-Control-Allow-Origin *; }
  }
}
EOF
nginx -e "$WORK/nginx/error.log" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" &
NGINX_PID=$!
for port in $GPORT $NPORT; do
  for _ in $(seq 300); do
    curl -sf "http://127.0.0.1:$port/live/$MID/360p/index.m3u8" >/dev/null && break
    sleep 0.1
  done
  curl -sf "http://127.0.0.1:$port/live/$MID/360p/index.m3u8" >/dev/null || {
    echo "port $port serves nothing" >&2
    tail -n 20 "$WORK/gremium.log" "$WORK/nginx/error.log" >&2
    exit 1
  }
done

# requests/s and p99 latency of one wrk run
measure() {
  local out
  out=$(wrk --latency -t"$THREADS" -c"$CONNS" -d"$DURATION" "$1")
  local rps p99 errors
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  errors=$(grep -Eo 'Non-2xx or 3xx responses: [0-9]+|Socket errors.*' <<<"$out" || true)
  echo "$rps $p99 ${errors:-ok}"
}

echo "HLS serving on $(nproc) cores: wrk -t$THREADS -c$CONNS -d$DURATION, segment $SEG_BYTES bytes"
printf '%-16s %-8s %12s %10s %10s  %s\n' what server "req/s" "p99" "vs nginx" errors
for what in playlist segment; do
  if [ "$what" = playlist ]; then path="live/$MID/360p/index.m3u8"; else path="live/$MID/360p/$SEGMENT"; fi
  read -r n_rps n_p99 n_err <<<"$(measure "http://127.0.0.1:$NPORT/$path")"
  read -r g_rps g_p99 g_err <<<"$(measure "http://127.0.0.1:$GPORT/$path")"
  ratio=$(python3 -c "print(f'{100*$g_rps/$n_rps:.0f} %')")
  printf '%-16s %-8s %12s %10s %10s  %s\n' "$what" nginx "$n_rps" "$n_p99" "" "$n_err"
  printf '%-16s %-8s %12s %10s %10s  %s\n' "$what" gremium "$g_rps" "$g_p99" "$ratio" "$g_err"
done
