#!/usr/bin/env bash
# Compositing cost: Gremium's program bin (GStreamer compositor, keep-aspect scaling
# into a grid) next to ffmpeg's xstack (scale + xstack into the same grid), on the
# same decoded inputs: one raw 640x360 I420 clip at 30 fps, read N times and paced
# to real time like live cameras, N = 4, 9, 16, into a 1280x720 and a 1920x1080
# canvas. No encoding on either side (output discarded), so the numbers are the
# compositing (scaling + blending) plus reading raw frames. Both run on the same
# 2-core machine, one after the other, for SECS seconds each.
#
# Each figure is the median of REPS runs (default 3): single runs vary by ±30 %.
#
# Usage: bench/compositing.sh [SECS] [REPS]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
REPS=${2:-3}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
INPUT="$WORK/in.yuv"
# 12 s of a moving test pattern (looped by neither tool: SECS must stay below 12).
ffmpeg -loglevel error -f lavfi -i "testsrc2=size=640x360:rate=30:duration=12" -pix_fmt yuv420p -f rawvideo "$INPUT"
cargo bench -p gremium-compositor --bench compose --no-run --quiet 2>/dev/null
HZ=$(getconf CLK_TCK)

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

ffmpeg_job() { # N W H
  local n=$1 w=$2 h=$3 cols rows tw th inputs="" filter="" layout="" i
  cols=$(python3 -c "import math; print(math.ceil(math.sqrt($n)))")
  rows=$(( (n + cols - 1) / cols ))
  tw=$(( w / cols / 2 * 2 )); th=$(( h / rows / 2 * 2 ))
  for ((i = 0; i < n; i++)); do
    inputs+=" -re -f rawvideo -pix_fmt yuv420p -s 640x360 -r 30 -i $INPUT"
    filter+="[$i:v]scale=${tw}:${th}:force_original_aspect_ratio=decrease,pad=${tw}:${th}:(ow-iw)/2:(oh-ih)/2[v$i];"
    layout+="$(( (i % cols) * tw ))_$(( (i / cols) * th ))|"
  done
  for ((i = 0; i < n; i++)); do filter+="[v$i]"; done
  filter+="xstack=inputs=$n:layout=${layout%|}:fill=black,pad=$w:$h[out]"
  # shellcheck disable=SC2086
  ffmpeg -nostdin -loglevel error -stats_period 1 $inputs -filter_complex "$filter" -map "[out]" \
    -t "$SECS" -pix_fmt yuv420p -f null - &
  local pid=$! t0 t1 start end
  start=$(date +%s.%N)
  t0=$(awk '{print $14+$15}' "/proc/$pid/stat")
  local last=$t0
  while kill -0 $pid 2>/dev/null; do
    last=$(awk '{print $14+$15}' "/proc/$pid/stat" 2>/dev/null || echo "$last"); sleep 0.2
  done
  end=$(date +%s.%N)
  wait $pid || true
  python3 -c "w=$end-$start; c=($last-$t0)/$HZ; print(f'ffmpeg  inputs=$n canvas=${w}x${h} cpu_s={c:.2f} wall_s={w:.1f} cores={c/w:.2f}')"
}

printf "%-7s %-10s %22s %20s %14s %7s\n" inputs canvas "gremium linear (fps)" "gremium cubic (fps)" "ffmpeg cores" ratio
for size in 1280x720 1920x1080; do
  W=${size%x*}; H=${size#*x}
  for N in 4 9 16; do
    GS=(); FS=(); DS=(); GF=(); DF=()
    for ((r = 0; r < REPS; r++)); do
      G=$(GREMIUM_BENCH_GAP=0 cargo bench -p gremium-compositor --bench compose --quiet -- "$INPUT" "$N" "$W" "$H" "$SECS" 2>/dev/null | grep '^gremium')
      F=$(ffmpeg_job "$N" "$W" "$H")
      D=$(GREMIUM_BENCH_GAP=0 GREMIUM_BENCH_SCALER=cubic cargo bench -p gremium-compositor --bench compose --quiet -- "$INPUT" "$N" "$W" "$H" "$SECS" 2>/dev/null | grep '^gremium')
      GS+=("$(sed -E 's/.*cores=([0-9.]+).*/\1/' <<<"$G")"); GF+=("$(sed -E 's/.*fps=([0-9.]+).*/\1/' <<<"$G")")
      FS+=("$(sed -E 's/.*cores=([0-9.]+).*/\1/' <<<"$F")")
      DS+=("$(sed -E 's/.*cores=([0-9.]+).*/\1/' <<<"$D")"); DF+=("$(sed -E 's/.*fps=([0-9.]+).*/\1/' <<<"$D")")
    done
    gc=$(median "${GS[@]}"); gf=$(median "${GF[@]}"); fc=$(median "${FS[@]}")
    dc=$(median "${DS[@]}"); df=$(median "${DF[@]}")
    printf "%-7s %-10s %15s (%4.0f) %13s (%4.0f) %14s %7s\n" "$N" "$size" "$gc" "$gf" "$dc" "$df" "$fc" \
      "$(python3 -c "print(f'{$gc/$fc:.2f}' if $fc > 0 else '-')")"
  done
done
echo "cores = CPU seconds / wall seconds at real time (30 fps); ratio = gremium (linear, the default) / ffmpeg."
echo "Same job on both sides: tiles exactly where xstack puts them (bench without Gremium's 4 px gaps);"
echo "ffmpeg scales with its default (bicubic), Gremium with its default (bilinear) and with cubic."
