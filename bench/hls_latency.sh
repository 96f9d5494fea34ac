#!/usr/bin/env bash
# Glass-to-glass latency of the livestream, Gremium's HLS next to nginx-rtmp's HLS of
# the same program: `gremium serve` (release build, 1280x720@30 program, 1 s
# segments) with one synthetic participant (`gremium publish`, 640x360@30 VP8) whose
# camera flips between black and white every PERIOD ms on wall-clock boundaries. The
# stream goes to Gremium's HLS (`/live/{id}/360p/index.m3u8`) and, by RTMP push, to
# nginx with Debian's RTMP module packaging HLS with `hls_fragment 1s` (the usual
# self-hosted route: OBS/ffmpeg → nginx-rtmp → HLS). bench/hls_latency.py reads both
# playlists side by side and reports, per flip, when a player at the live edge could
# show the first frame of the new colour, minus the moment the publisher flipped.
#
# Usage: bench/hls_latency.sh [SECS] [PERIOD_MS]     (default 60 s, 3000 ms)
#   BIN=path/to/gremium (default target/release/gremium, built if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-60}
PERIOD=${2:-3000}
BIN=${BIN:-target/release/gremium}
source scripts/deps.sh
gremium_install_deps
[ -x "$BIN" ] || cargo build --release --locked
WORK=$(mktemp -d /tmp/gremium-latency.XXXXXX)
chmod a+rx "$WORK"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

PORT=$(free_port)
cat >"$WORK/gremium.toml" <<TOML
[ice]
allowed_local_addresses = ["127.0.0.1"]
TOML
"$BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$WORK/data" --config "$WORK/gremium.toml" \
  >"$WORK/gremium.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done

RTMP_PORT=$(free_port)
HTTP_PORT=$(free_port)
mkdir -p "$WORK/nginx" "$WORK/nhls"
chmod a+rwx "$WORK/nhls"
cat >"$WORK/nginx/nginx.conf" <<EOF
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
daemon off;
master_process off;
worker_processes 1;
error_log $WORK/nginx/error.log warn;
pid $WORK/nginx/nginx.pid;
events { worker_connections 256; }
rtmp { server { listen 127.0.0.1:$RTMP_PORT;
  application live { live on; hls on; hls_path $WORK/nhls; hls_fragment 1s; hls_playlist_length 6s; } } }
http { access_log off; server { listen 127.0.0.1:$HTTP_PORT; location /hls/ { alias $WORK/nhls/; } } }
EOF
nginx -e "$WORK/nginx/error.log" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" &
PIDS+=($!)

T=$("$BIN" token --role moderator --data-dir "$WORK/data" --config "$WORK/gremium.toml")
api() { curl -sf -H "Authorization: Bearer $T" -H 'content-type: application/json' "$@"; }
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
BASE="http://127.0.0.1:$PORT"
MID=$(api -d '{"title":"Latenzmessung","public":true}' "$BASE/api/v1/meetings" | json '["id"]')
P=$(api -d '{"display_name":"Blinker"}' "$BASE/api/v1/meetings/$MID/participants")
PID_=$(echo "$P" | json '["participant"]["id"]')
JOIN=$(echo "$P" | json '["join_token"]')
curl -sf -X PUT -H "Authorization: Bearer $JOIN" -H 'content-type: application/json' \
  -d '{"recording":false,"streaming":true}' \
  "$BASE/api/v1/meetings/$MID/participants/$PID_/consent" >/dev/null
"$BIN" publish --server "$BASE" --meeting "$MID" --token "$JOIN" --ice-address 127.0.0.1 \
  --color 000000 --blink-color ffffff --blink-ms "$PERIOD" --duration $((SECS + 30)) \
  >"$WORK/publish.log" 2>&1 &
PIDS+=($!)
sleep 3
api -d "{\"hls\":true,\"rtmp\":[{\"url\":\"rtmp://127.0.0.1:$RTMP_PORT/live\",\"key\":\"bench\"}]}" \
  "$BASE/api/v1/meetings/$MID/streams" >/dev/null
# Both playlists exist and move before measuring.
for url in "$BASE/live/$MID/360p/index.m3u8" "http://127.0.0.1:$HTTP_PORT/hls/bench.m3u8"; do
  for _ in $(seq 300); do curl -sf "$url" | grep -q '\.ts' && break; sleep 0.1; done
done
sleep 3
echo "glass-to-glass, flips every $PERIOD ms, $SECS s, on $(nproc) cores:"
python3 bench/hls_latency.py "$SECS" "$PERIOD" 30 \
  "gremium-hls(1s,360p)=$BASE/live/$MID/360p/index.m3u8" \
  "nginx-rtmp-hls(1s,720p)=http://127.0.0.1:$HTTP_PORT/hls/bench.m3u8"
