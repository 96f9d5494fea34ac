#!/usr/bin/env bash
# Consent withdrawal latency of `gremium serve` (issue 19): from the moment the
# participant's `PUT …/consent {"recording":false,"streaming":false}` is sent until
# its answer is read. The answer comes only after the gate is closed in the running
# pipeline, so this is the time a withdrawal takes to take effect.
#
# Setup (SQLite, loopback ICE): one meeting, a subject participant publishing
# (`gremium publish`: VP8 320x180@15 + Opus) and a recording running, so every
# withdrawal closes a real gate; its answer must carry the program time at which
# the gate closed (`media_time_ns`) or it counts as an error. N withdrawals, each
# followed by a grant (GAP_MS apart, one request at a time on a keep-alive
# connection), in two phases:
#   idle   nothing else happens in the meeting;
#   churn  CHURN other participants (all consenting) keep joining and leaving the
#          same meeting: each `gremium publish` stays 1-3 s after its WHIP answer,
#          then gets SIGTERM and leaves with WHIP DELETE, over and over.
# Only withdrawals are in the table (grants are timed too: GRANTS=1 prints them).
# The publishers run on the same cores as the server, like in bench/ingest.sh.
#
# Usage: bench/withdrawal.sh [BIN]
#   BIN    gremium binary (default: `cargo build --release`, then
#          ${CARGO_TARGET_DIR:-target}/release/gremium)
#   BIN_B  a second binary: both run one after the other and are shown side by
#          side, BIN as "before" and BIN_B as "after".
# Env: N (500), CHURN (8), GAP_MS (20), OUTPUT=recording|none (recording),
#      GRANTS=1 also shows the grants.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-500}
CHURN=${CHURN:-8}
GAP_MS=${GAP_MS:-20}
OUTPUT=${OUTPUT:-recording}
GOAL_P99_MS=30

if [ $# -ge 1 ]; then
  BIN_A=$1
else
  cargo build --release --quiet --bin gremium
  BIN_A=${CARGO_TARGET_DIR:-target}/release/gremium
fi
for b in "$BIN_A" ${BIN_B:+"$BIN_B"}; do
  [ -x "$b" ] || { echo "not an executable: $b" >&2; exit 2; }
done

RESULTS=$(mktemp -d)
SERVER=
cleanup() {
  [ -z "$SERVER" ] || kill "$SERVER" 2>/dev/null || true
  rm -rf "$RESULTS"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

run_one() { # $1 = label, $2 = binary; leaves $RESULTS/$1.json
  local label=$1 bin=$2 work port
  work=$(mktemp -d)
  port=$(free_port)
  printf '[ice]\nallowed_local_addresses = ["127.0.0.1"]\n[ingest]\nmax_publishers_per_meeting = 32\n' >"$work/gremium.toml"
  # SQLite in the temp dir, whatever GREMIUM_DATABASE_URL says (empty = unset).
  GREMIUM_DATABASE_URL= RUST_LOG=warn "$bin" serve --listen "127.0.0.1:$port" --data-dir "$work" --config "$work/gremium.toml" \
    >/dev/null 2>"$work/server.log" &
  SERVER=$!
  for _ in $(seq 300); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
  local token
  token=$(GREMIUM_DATABASE_URL= "$bin" token --role moderator --data-dir "$work" --config "$work/gremium.toml")
  echo "$label: $bin, load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  if ! python3 bench/withdrawal/measure.py --bin "$bin" --base "http://127.0.0.1:$port" \
    --token "$token" --n "$N" --churn "$CHURN" --gap-ms "$GAP_MS" --output "$OUTPUT" \
    >"$RESULTS/$label.json"; then
    echo "$label: the measurement failed; server log:" >&2
    tail -n 30 "$work/server.log" >&2
    exit 1
  fi
  kill "$SERVER"
  # A server that does not stop is a finding, not a reason to hang the bench: its
  # threads' stacks go to a file (gdb, if installed), then it is killed.
  for _ in $(seq 200); do kill -0 "$SERVER" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$SERVER" 2>/dev/null; then
    local stacks=/tmp/gremium-withdrawal-stuck-$label.txt
    command -v gdb >/dev/null && gdb -p "$SERVER" -batch -ex 'thread apply all bt' >"$stacks" 2>&1
    echo "$label: the server did not stop within 20 s of SIGTERM (stacks: $stacks); killed" >&2
    kill -9 "$SERVER" 2>/dev/null || true
  fi
  wait "$SERVER" 2>/dev/null || true
  SERVER=
  # The ledger of every consent change must still verify.
  GREMIUM_DATABASE_URL= "$bin" audit verify --data-dir "$work" --config "$work/gremium.toml" 2>/dev/null |
    python3 -c 'import json,sys; r=json.load(sys.stdin); print("%s/%d" % ("intact" if r["intact"] else "BROKEN", r["entries"]))' \
      >"$RESULTS/$label.ledger" || echo "unverified" >"$RESULTS/$label.ledger"
  cut -d' ' -f1-3 /proc/loadavg >"$RESULTS/$label.load"
  rm -rf "$work"
}

if [ -n "${BIN_B:-}" ]; then
  LABELS=(before after)
  run_one before "$BIN_A"
  run_one after "$BIN_B"
else
  LABELS=(gremium)
  run_one gremium "$BIN_A"
fi

python3 - "$RESULTS" "$N" "$CHURN" "$GAP_MS" "$OUTPUT" "$GOAL_P99_MS" "${GRANTS:-}" "${LABELS[@]}" <<'PY'
import json, os, sys
results, n, churn, gap, output, goal, grants = sys.argv[1:8]
labels = sys.argv[8:]
data = {l: json.load(open(os.path.join(results, l + ".json"))) for l in labels}
extra = {l: {k: open(os.path.join(results, f"{l}.{k}")).read().strip() for k in ("ledger", "load")}
         for l in labels}
print(f"consent withdrawal latency (send -> answer with the gate closed), {n} withdrawals "
      f"per phase, each followed by a grant, {gap} ms apart; output running: {output}; "
      f"churn: {churn} publishers joining/leaving; {os.cpu_count()} cores")
w = 12
print(f"{'phase':<7} {'':<22}" + "".join(f"{l:>{w}}" for l in labels))
def fmt(v):
    if v is None:
        return "-"
    return f"{v:.1f}" if isinstance(v, float) else str(v)
kinds = ["withdraw"] + (["grant"] if grants else [])
for phase in ("idle", "churn"):
    for kind in kinds:
        for key, name in (("p50_ms", "p50 ms"), ("p95_ms", "p95 ms"), ("p99_ms", "p99 ms"),
                          ("max_ms", "max ms"), ("errors", "errors")):
            row = f"{kind} {name}"
            print(f"{phase:<7} {row:<22}" + "".join(f"{fmt(data[l][phase][kind][key]):>{w}}" for l in labels))
    print(f"{phase:<7} {'seconds':<22}" + "".join(f"{fmt(data[l][phase]['seconds']):>{w}}" for l in labels))
print(f"{'churn':<7} {'join/leave cycles':<22}" + "".join(f"{data[l]['churn']['churn_cycles']:>{w}}" for l in labels))
print(f"{'churn':<7} {'joins without answer':<22}" + "".join(f"{data[l]['churn']['churn_failed_join']:>{w}}" for l in labels))
print(f"{'churn':<7} {'unclean leaves':<22}" + "".join(f"{data[l]['churn']['churn_failed_leave']:>{w}}" for l in labels))
print(f"{'after':<7} {'ledger/entries':<22}" + "".join(f"{extra[l]['ledger']:>{w}}" for l in labels))
print(f"{'after':<7} {'load average':<22}" + "".join(f"{extra[l]['load'].split()[0]:>{w}}" for l in labels))
for l in labels:
    for phase in ("idle", "churn"):
        if data[l][phase]["error_kinds"]:
            print(f"{l}, {phase}: errors by kind: {data[l][phase]['error_kinds']}")
print(f"goal (after): churn withdraw p99 <= {goal} ms")
PY
