#!/usr/bin/env bash
# Installs the build-time web dependencies (hls.js for the viewer page at /watch,
# axe-core for the browser tests' accessibility audit, and oidc-provider, the OpenID
# provider the sign-in tests run with tests/fixtures/oidc-provider.mjs) from the committed
# web/package-lock.json into web/node_modules; `gremium serve` serves hls.js as
# /assets/hls.min.js (`[web] player_js`). Installs Debian's nodejs and npm when npm is
# missing (Debian 12's nodejs 18 is enough: oidc-provider 8.x supports Node 18 and 20;
# 9.x would need a newer Node). Idempotent: does nothing when the locked packages are in
# place.
# Meant to be sourced (by run.sh and test.sh); it changes no shell options of its caller.

gremium_install_web() {
  local root
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  local web=$root/web
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if ! command -v npm >/dev/null; then
    echo "==> installing Debian packages: nodejs npm"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
      nodejs npm >/dev/null || return 1
  fi
  # Reinstall when a file is missing or the lock file pins another version.
  local pkg file want have stale=""
  for pkg in hls.js:dist/hls.min.js axe-core:axe.min.js oidc-provider:lib/index.js; do
    file=${pkg#*:}
    pkg=${pkg%%:*}
    want=$(node -p 'require(process.argv[1]).packages["node_modules/" + process.argv[2]].version' \
      "$web/package-lock.json" "$pkg") || return 1
    have=$(node -p 'require(process.argv[1]).version' \
      "$web/node_modules/$pkg/package.json" 2>/dev/null || true)
    if [ ! -f "$web/node_modules/$pkg/$file" ] || [ "$want" != "$have" ]; then
      stale="$stale $pkg@$want"
    fi
  done
  if [ -n "$stale" ]; then
    echo "==> installing$stale into web/node_modules (npm ci)"
    (cd "$web" && npm ci --ignore-scripts --no-audit --no-fund) || return 1
  fi
}
