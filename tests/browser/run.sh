#!/usr/bin/env bash
# Runs inside a network namespace that has only `lo` (see tests/browser.rs): a real
# headless Chromium publishes its fake camera and microphone to `gremium serve` over
# WHIP. Prints RESULT lines for the test to check.
set -euo pipefail
BIN=$1; WORK=$2
ip link set lo up
PORT=18443
cat >"$WORK/gremium.toml" <<TOML
[ice]
allowed_local_addresses = ["127.0.0.1"]
TOML
"$BIN" serve --listen 127.0.0.1:$PORT --data-dir "$WORK/data" --config "$WORK/gremium.toml" 2>"$WORK/server.log" >/dev/null &
SERVER=$!
trap 'kill $SERVER $CHROME 2>/dev/null || true' EXIT
CHROME=
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
T=$("$BIN" token --role moderator --data-dir "$WORK/data" --config "$WORK/gremium.toml")
api() { curl -sf -H "Authorization: Bearer $T" -H 'content-type: application/json' "$@"; }
MID=$(api -d '{"title":"Browser test"}' "http://127.0.0.1:$PORT/api/v1/meetings" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
P=$(api -d '{"display_name":"Browser"}' "http://127.0.0.1:$PORT/api/v1/meetings/$MID/participants")
JOIN=$(echo "$P" | python3 -c 'import json,sys; print(json.load(sys.stdin)["join_token"])')
# Gremium's own publish page.
URL="http://127.0.0.1:$PORT/publish/$MID?token=$JOIN"
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$(mktemp -d)" --use-fake-device-for-media-stream --use-fake-ui-for-media-stream \
  --allow-loopback-in-peer-connection --enable-logging=stderr --v=0 \
  --remote-debugging-port=0 "$URL" 2>"$WORK/chrome.log" >/dev/null &
CHROME=$!
for _ in $(seq 150); do grep -q "SENT-BYTES\|WHIP-ERROR" "$WORK/chrome.log" 2>/dev/null && break; sleep 0.1; done
grep -o 'WHIP-STATUS [0-9]* [^"]*\|PC-STATE [a-z]*\|SENT-BYTES [0-9]*\|WHIP-ERROR[^"]*' "$WORK/chrome.log" | sed 's/^/RESULT /' || true
curl -s "http://127.0.0.1:$PORT/metrics" | grep -E '^gremium_(media_events|ingest_decoded_buffers)_total' | sed 's/^/RESULT /' || true
