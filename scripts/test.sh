#!/usr/bin/env bash
# Quick start, command 2: install what the tests need and run the whole suite
# (unit, GStreamer, SQLite and PostgreSQL repository tests, end-to-end HTTP/WebSocket
# tests, the real binary). Exits non-zero on any failure.
#
# PostgreSQL: GREMIUM_TEST_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/test);
# each test creates its own fresh database there.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
gremium_install_deps
# hls.js for the viewer page (/watch), from web/package-lock.json.
source scripts/web.sh
gremium_install_web
# The S3-compatible server the object-store tests start (cached outside the tree).
source scripts/s3s.sh
gremium_install_s3s

PG_URL=${GREMIUM_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
export GREMIUM_TEST_POSTGRES_URL=$PG_URL
if ! psql "$PG_URL" -qAtc 'select 1' >/dev/null 2>&1; then
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    echo "==> starting the local PostgreSQL cluster"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
    sleep 2
  fi
fi
psql "$PG_URL" -qAtc 'select 1' >/dev/null || {
  echo "PostgreSQL is not reachable at $PG_URL (set GREMIUM_TEST_POSTGRES_URL)" >&2
  exit 1
}
# Databases left behind by earlier runs (each test makes its own).
for db in $(psql "$PG_URL" -qAtc "select datname from pg_database where datname like 'gremium_t_%'"); do
  psql "$PG_URL" -qc "drop database if exists $db" >/dev/null 2>&1 || true
done

export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
cargo build --workspace --all-targets --locked
cargo test --workspace --locked
./target/debug/gremium doctor
# A short fuzz run (bench/fuzz.sh runs the full one): 5,000 mutated requests, WHIP
# offers and trickle fragments through the router and the parsers, fixed seed, about
# 5-10 s. Fails on a panic, a hang or an unintended 5xx.
bench/fuzz.sh 5000 1 --brief
# The Docker image for real: doctor and the quick start inside it, the cluster compose
# file and the Kubernetes manifests checked offline (20-40 s once cached).
scripts/docker-check.sh
