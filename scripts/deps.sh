#!/usr/bin/env bash
# Installs the Debian 12 packages Gremium builds and runs with (GStreamer 1.22 with
# its plugins, libnice, ffmpeg, pkg-config, wrk for the benchmark, and what the tests use). Idempotent: does
# nothing when everything is present. Sourced by run.sh and test.sh.
set -euo pipefail

GREMIUM_APT_PACKAGES=(
  pkg-config build-essential curl ca-certificates python3 postgresql-client
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstreamer-plugins-bad1.0-dev
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-nice gstreamer1.0-tools
  gstreamer1.0-x fonts-dejavu-core libnice-dev ffmpeg wrk chromium iproute2
  nginx-light libnginx-mod-rtmp
  gdb # the test watchdog's backtraces of a hung test
)

gremium_install_deps() {
  local missing=()
  for p in "${GREMIUM_APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    echo "==> installing Debian packages: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  if ! command -v cargo >/dev/null; then
    [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
  fi
  if ! command -v cargo >/dev/null; then
    echo "==> installing the Rust toolchain with rustup"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
}
