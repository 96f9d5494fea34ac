#!/usr/bin/env bash
# The fuzzer (bench/fuzz, `gremium-fuzz`): N mutated inputs — API requests on every
# route and method (JSON bodies, path ids, queries, headers, tokens), WHIP SDP offers
# and trickle-ICE fragments — through the real router in-process (SQLite, a media
# plane without media) and the pure parsers. Prints counts by outcome and the time
# taken; exits non-zero on a panic, a hang or an unintended 5xx.
#
# Usage: bench/fuzz.sh [N] [SEED] [--brief]   (default N = 1000000, SEED = 1;
#        --brief: counts by outcome only, not by route)
# The same N and SEED give the same inputs. Builds the dev profile (dependencies at
# opt-level 1), which the test suite has built already.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
SEED=${2:-1}
# The whole workspace with all targets, as the test suite builds it: building the one
# package alone unifies dependency features differently and rebuilds half the tree.
cargo build --quiet --locked --workspace --all-targets
BIN=${CARGO_TARGET_DIR:-target}/debug/gremium-fuzz
"$BIN" "$N" --seed "$SEED" "${@:3}"
