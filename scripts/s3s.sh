#!/usr/bin/env bash
# Installs s3s-fs, the small S3-compatible server that storage/tests/s3.rs starts, into
# a tools cache outside the work tree, and exports GREMIUM_S3S_FS for the tests.
# Idempotent: does nothing when that version is already there. Meant to be sourced
# (by test.sh); it changes no shell options of its caller.
#
# Pinned to 0.14.1: newer s3s-fs releases need a newer rustc than our machines have.

GREMIUM_S3S_VERSION=0.14.1

gremium_install_s3s() {
  local dir=${GREMIUM_TOOLS_DIR:-$HOME/.cache/gremium-tools}
  local bin=$dir/bin/s3s-fs
  if ! { [ -x "$bin" ] && grep -qs "s3s-fs $GREMIUM_S3S_VERSION " "$dir/.crates.toml"; }; then
    echo "==> installing s3s-fs $GREMIUM_S3S_VERSION into $dir (takes a few minutes)"
    mkdir -p "$dir"
    cargo install "s3s-fs@$GREMIUM_S3S_VERSION" --locked --features binary --root "$dir" || return 1
  fi
  export GREMIUM_S3S_FS=$bin
}
