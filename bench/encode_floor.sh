#!/usr/bin/env bash
# How far the reference job's CPU goal is from what the encoders alone cost on this
# machine: the goal (0.40 CPU-s per media-s for recording + HLS + RTMP) was set
# against "ffmpeg needs about 0.6 for the recording alone on these machines"
# (RECIPES: 12 CPU-s for the 20 s job). Machines differ, so this script
#
#   1. runs RECIPES' ffmpeg peer command verbatim on RECIPES' inputs and scales the
#      goal by it (goal_here = 0.40 × peer_here / 0.6), then
#   2. runs, each on its own, the pieces no pipeline can avoid, with the very
#      elements and settings Gremium uses (gst-launch, no compositing, no muxing,
#      no live pacing, no queues between threads):
#        decode   vp8dec + opusdec of the 4 inputs (a queue per stream: a
#                 demuxer with two sinks needs them)
#        x264 720p  the program encode (pipelines/src/encode.rs: veryfast,
#                 zerolatency, me=dia, 1 thread, 2500 kbit/s, 2 s VBV, GOP 30) of
#                 the uncompressed composite
#        x264 360p  the HLS ladder's second rung (800 kbit/s) of the same,
#                 downscaled beforehand (the scaling itself is not counted)
#        aac      one avenc_aac 128 kbit/s of the 20 s stereo mix
#      Their sum is a floor for recording + HLS + RTMP with one shared 720p encode
#      and one shared AAC: nothing else counted.
#
# Figures are CPU-s (user + system of the process) per media second, medians of
# REPS runs. Usage: bench/encode_floor.sh [REPS]     (default 3)
set -euo pipefail
REPS=${1:-3}
SECS=20
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

# RECIPES' inputs: 4 × 20 s, testsrc2 with its own hue, a sine of its own.
HUES=(0 90 180 270)
TONES=(220 330 440 550)
for i in 0 1 2 3; do
  ffmpeg -nostdin -loglevel error -y \
    -f lavfi -i "testsrc2=size=640x360:rate=30:duration=$SECS,hue=h=${HUES[$i]}" \
    -f lavfi -i "sine=frequency=${TONES[$i]}:duration=$SECS:sample_rate=48000" \
    -c:v libvpx -b:v 800k -deadline realtime -cpu-used 8 -c:a libopus -ac 1 "in$i.webm"
done
# The uncompressed composite (what the compositor hands the encoder) and its 360p.
ffmpeg -nostdin -loglevel error -y -i in0.webm -i in1.webm -i in2.webm -i in3.webm \
  -filter_complex "[0:v][1:v][2:v][3:v]xstack=inputs=4:layout=0_0|w0_0|0_h0|w0_h0,format=yuv420p[v]" \
  -map "[v]" -f rawvideo composite.yuv
ffmpeg -nostdin -loglevel error -y -f rawvideo -pix_fmt yuv420p -s 1280x720 -r 30 -i composite.yuv \
  -vf scale=640:360 -f rawvideo composite360.yuv
ffmpeg -nostdin -loglevel error -y -f lavfi -i "sine=frequency=440:duration=$SECS:sample_rate=48000" \
  -ac 2 -f s16le mix.raw

cpu() { # COMMAND... -> CPU-s per media second
  python3 - "$SECS" "$@" <<'PY'
import resource, subprocess, sys
subprocess.run(sys.argv[2:], check=True, stdout=subprocess.DEVNULL)
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"{(r.ru_utime + r.ru_stime) / float(sys.argv[1]):.3f}")
PY
}
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

X264="x264enc tune=zerolatency speed-preset=veryfast option-string=me=dia threads=1 vbv-buf-capacity=2000 key-int-max=30"
declare -A RUNS
for ((r = 1; r <= REPS; r++)); do
  RUNS[peer]+=" $(cpu ffmpeg -nostdin -loglevel error -y -threads 2 -i in0.webm -i in1.webm -i in2.webm -i in3.webm \
    -filter_complex "[0:v][1:v][2:v][3:v]xstack=inputs=4:layout=0_0|w0_0|0_h0|w0_h0[v];[0:a][1:a][2:a][3:a]amix=inputs=4[a]" \
    -map "[v]" -map "[a]" -c:v libx264 -preset veryfast -tune zerolatency -b:v 2500k -g 60 -c:a aac -b:a 128k out.mp4)"
  dec=()
  for i in 0 1 2 3; do
    dec+=(filesrc location="in$i.webm" ! matroskademux name="d$i" "d$i.video_0" ! queue ! vp8dec ! fakesink "d$i.audio_0" ! queue ! opusdec ! fakesink)
  done
  RUNS[decode]+=" $(cpu gst-launch-1.0 -q "${dec[@]}")"
  # shellcheck disable=SC2086 # X264 is a list of properties
  RUNS[x720]+=" $(cpu gst-launch-1.0 -q filesrc location=composite.yuv ! \
    rawvideoparse format=i420 width=1280 height=720 framerate=30/1 ! $X264 bitrate=2500 ! fakesink)"
  # shellcheck disable=SC2086
  RUNS[x360]+=" $(cpu gst-launch-1.0 -q filesrc location=composite360.yuv ! \
    rawvideoparse format=i420 width=640 height=360 framerate=30/1 ! $X264 bitrate=800 ! fakesink)"
  RUNS[aac]+=" $(cpu gst-launch-1.0 -q filesrc location=mix.raw ! \
    rawaudioparse format=pcm pcm-format=s16le sample-rate=48000 num-channels=2 ! audioconvert ! \
    avenc_aac bitrate=128000 ! fakesink)"
done

peer=$(median ${RUNS[peer]})
goal=$(python3 -c "print(f'{0.40 * $peer / 0.6:.3f}')")
printf '%-50s %s\n' "RECIPES ffmpeg peer, recording alone" "$peer   (RECIPES' machine: 0.6)" \
  "goal scaled to this machine (0.40 × peer/0.6)" "$goal"
floor=0
for k in decode x720 x360 aac; do
  m=$(median ${RUNS[$k]})
  floor=$(python3 -c "print(f'{$floor + $m:.3f}')")
  case $k in
  decode) label="vp8dec + opusdec, 4 inputs" ;;
  x720) label="x264enc 720p 2500k (Gremium's settings)" ;;
  x360) label="x264enc 360p 800k (the HLS second rung)" ;;
  aac) label="avenc_aac 128k" ;;
  esac
  printf '%-50s %s\n' "$label" "$m"
done
printf '%-50s %s\n' "floor: the sum (no compositing, mux, IO, pacing)" "$floor"
echo "(runs: $(for k in peer decode x720 x360 aac; do printf '%s=[%s] ' "$k" "${RUNS[$k]# }"; done))"
