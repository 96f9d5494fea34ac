#!/usr/bin/env bash
# Quick start, command 1: install what is needed, build, and run Gremium on embedded
# defaults (SQLite + local disk under ./data, http://127.0.0.1:8080).
# Extra arguments go to `gremium serve` (e.g. --listen 127.0.0.1:9000).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
gremium_install_deps
# hls.js for the viewer page (/watch), from web/package-lock.json.
source scripts/web.sh
gremium_install_web
cargo build --release --locked
echo "==> moderator token (valid 12 h):"
./target/release/gremium token --role moderator
exec ./target/release/gremium serve "$@"
