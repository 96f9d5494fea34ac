#!/usr/bin/env bash
# Capacity of one media node and the cluster's cost model (issue 20, item 4).
#
# On one `gremium serve` (release build, embedded defaults: SQLite, local disk,
# in-process media plane), with synthetic participants (`gremium publish`, VP8 + Opus
# over loopback ICE) on the same machine:
#
#   coefficients  one fresh server per scenario, varying one thing at a time: no
#                 meeting; a meeting of 4 publishers without output; + recording;
#                 + HLS only; + recording and HLS (the reference meeting, one shared
#                 720p encode); the same with `streaming.share_encoder = false`; the
#                 same + an RTMP push to a local nginx-rtmp. The server's CPU
#                 (user + sys of the process) over SECS seconds of steady state, REPS
#                 runs in alternating order, medians; differences give the CPU of a
#                 decoded publisher, a program, a 720p encode, a 360p encode and an
#                 RTMP push, printed in cores and in units (1 unit = 1 % of one core),
#                 with the default capacity of a node (80 % of its cores x 100, minus
#                 the idle server and HEADROOM units).
#   ramp          one server; reference meetings (4 publishers, recording + HLS) are
#                 added one at a time and the node is measured after each, until one
#                 count does not run in real time: "N meetings: CPU, real time yes/no".
#
# Real time is judged from Gremium's own output: every HLS segment (720p: the
# recording program's shared encode; 360p: the livestream program's) that appears
# in the window is fetched and its frames counted with ffprobe (after the window):
# frames / EXTINF >= FPS_MIN (29 of 30) and media seconds listed per wall second
# >= RATE_MIN (0.95) for every rendition of every meeting. See docs/sizing.md.
#
# The publishers run on the same cores as the server, at nice PUB_NICE (10), so the
# server wins when the cores are short (on a real node its publishers are elsewhere);
# their CPU and the input frame rate the server decoded are printed next to it, so
# a run where the publishers starved shows as such. Other processes' load shows in
# the load average and the "machine" column: run it on a quiet machine.
#
# Usage: bench/capacity.sh [BIN]
#   BIN     gremium binary (default: `cargo build --release --locked -p gremium`,
#           then ${CARGO_TARGET_DIR:-target}/release/gremium)
# Env: PART=all|coefficients|ramp (all), SECS (15), WARMUP (5), REPS (2),
#      SCENARIO_MEETINGS (1), MAX_N (8), PUB=WxH@fps (640x360@30), PUB_NICE (10),
#      FPS_MIN (29), RATE_MIN (0.95), HEADROOM (10), JSON=file (every sample).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -ge 1 ]; then
  BIN=$1
else
  cargo build --release --locked --quiet -p gremium
  BIN=${CARGO_TARGET_DIR:-target}/release/gremium
fi
[ -x "$BIN" ] || { echo "not an executable: $BIN" >&2; exit 2; }
for tool in ffprobe nginx setpriv; do
  command -v "$tool" >/dev/null || { echo "$tool is needed (scripts/deps.sh)" >&2; exit 2; }
done

WORK=$(mktemp -d)
NGINX_PID=
cleanup() {
  [ -z "$NGINX_PID" ] || kill "$NGINX_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# nginx with Debian's RTMP module for the RTMP push scenario (loopback only), as in
# bench/recording.sh; without the module that scenario is skipped.
RTMP=
if [ -f /usr/lib/nginx/modules/ngx_rtmp_module.so ]; then
  RTMP_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  mkdir -p "$WORK/nginx"
  cat >"$WORK/nginx/nginx.conf" <<NGINX
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
daemon off;
master_process off;
worker_processes 1;
error_log $WORK/nginx/error.log warn;
pid $WORK/nginx/nginx.pid;
events { worker_connections 256; }
rtmp { server { listen 127.0.0.1:$RTMP_PORT; application live { live on; } } }
NGINX
  nginx -e "$WORK/nginx/error.log" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" &
  NGINX_PID=$!
  for _ in $(seq 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$RTMP_PORT") 2>/dev/null && break
    sleep 0.1
  done
  RTMP="rtmp://127.0.0.1:$RTMP_PORT/live"
else
  echo "no nginx-rtmp module (scripts/deps.sh installs it): the RTMP push is not measured" >&2
fi

python3 bench/capacity/measure.py --bin "$BIN" --rtmp "$RTMP" --part "${PART:-all}" \
  --secs "${SECS:-15}" --warmup "${WARMUP:-5}" --reps "${REPS:-2}" \
  --scenario-meetings "${SCENARIO_MEETINGS:-1}" --max-n "${MAX_N:-8}" --pub "${PUB:-640x360@30}" \
  --pub-nice "${PUB_NICE:-10}" --fps-min "${FPS_MIN:-29}" --rate-min "${RATE_MIN:-0.95}" \
  --headroom "${HEADROOM:-10}" --json "${JSON:-}"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
