#!/usr/bin/env bash
# The reference recording job, Gremium next to ffmpeg: 4 participants, each a WebM
# file with VP8 640x360@30 (libvpx realtime, 800 kbit/s) and Opus 48 kHz (a moving
# test pattern and a sine tone of its own), composited into a 2x2 grid on a
# 1280x720@30 canvas and recorded as H.264 2.5 Mbit/s (x264 veryfast, zerolatency;
# Gremium adds me=dia, both sides a 2 s rate-control buffer) + AAC 128 kbit/s in
# MP4. The inputs are read at real time on both sides, like
# live cameras.
#
#   gremium: `cargo bench -p gremium-recorder --bench reference` — matroskademux,
#            vp8dec/opusdec, clocksync, the program bin (grid, no labels, no gaps),
#            the RecordingBin (encrypted spool, decrypted to an MP4 afterwards).
#            CPU: the bench's own /proc/self/stat from PLAYING to the finished file.
#   ffmpeg:  -re on the 4 inputs, xstack (same tile rectangles: 640x360 at 0,0 /
#            640,0 / 0,360 / 640,360, which is where Gremium's grid puts 4 tiles with
#            gap 0, so neither side scales) + amix, libx264 veryfast zerolatency
#            2500k (maxrate 2500k, bufsize 5000k, GOP 30) + aac 128k, -t SECS.
#            CPU: user + sys of the ffmpeg process (getrusage of the child).
#
# A keyframe every second on both sides (Gremium's program encode has one at every
# HLS segment start, so the recording and the livestream can share it).
#
# Live jobs (skip with NO_LIVE=1): recording + HLS (720p + 360p renditions + audio)
# + an RTMP push to a local nginx-rtmp, all from the same composite:
#   gremium-live-separate  the livestream encodes its own 720p (two 720p encodes),
#   gremium-live-shared    one 720p encode feeds the recording, HLS 720p and RTMP, as
#                          the media plane does while both have the same audience,
#   ffmpeg-live            ffmpeg with one 720p encode into a tee muxer (MP4, HLS, FLV
#                          to the same nginx) and a 360p HLS encode.
# The PSNR column is always the recording's.
#
# Both sides include the VP8/Opus decoding of the inputs. They run one after the
# other on the same (2-core) machine, SECS seconds of media each. The audio mix is a
# plain sum on both sides (amix normalize=0, like audiomixer).
#
# Quality: PSNR of each output against the uncompressed composite of the same
# inputs (ffmpeg xstack of the decoded WebM, stored as lossless FFV1). Frames are
# compared by index. A live pipeline's output may start a few frames late (or
# early) relative to the inputs, so the shift (-3..SHIFT_MAX frames, default 10)
# with the best PSNR over 2 s of output is found first (for both tools; it was 0 for
# both in practice); then output frames 30 .. 30+(SECS-2)*30 (skipping the first
# second) are compared with the reference frames at that shift.
#
# Each figure is the median of REPS runs (default 3): single runs vary by ±30 %.
#
# Usage: bench/recording.sh [SECS] [REPS]        (SECS >= 5, default 20)
#   WORK=DIR KEEP=1: keep inputs, reference and outputs in DIR (and reuse the inputs
#   and the reference found there: same SECS only).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-20}
REPS=${2:-3}
SHIFT_MAX=${SHIFT_MAX:-10}
LEN=$((SECS + 2))
WORK=${WORK:-$(mktemp -d)}
mkdir -p "$WORK"
[ -n "${KEEP:-}" ] || trap 'rm -rf "$WORK"' EXIT

SOURCES=(
  "testsrc2=size=640x360:rate=30"
  "testsrc=size=640x360:rate=30"
  "testsrc2=size=640x360:rate=30,hflip,hue=H=2*PI*t/10"
  "gradients=size=640x360:rate=30:speed=0.02"
)
TONES=(220 330 440 550)
INPUTS=()
for i in 0 1 2 3; do
  f="$WORK/in$i.webm"
  INPUTS+=("$f")
  [ -s "$f" ] && continue # kept from an earlier run (WORK=... KEEP=1)
  ffmpeg -nostdin -loglevel error -y -f lavfi -i "${SOURCES[$i]},format=yuv420p" \
    -f lavfi -i "sine=frequency=${TONES[$i]}:sample_rate=48000" -t "$LEN" \
    -c:v libvpx -deadline realtime -cpu-used 8 -b:v 800k -g 60 \
    -c:a libopus -b:a 48k -ar 48000 "$f"
done
LAYOUT="0_0|640_0|0_360|640_360"
REF="$WORK/reference.mkv"
[ -s "$REF" ] || ffmpeg -nostdin -loglevel error -y -i "${INPUTS[0]}" -i "${INPUTS[1]}" -i "${INPUTS[2]}" -i "${INPUTS[3]}" \
  -filter_complex "[0:v][1:v][2:v][3:v]xstack=inputs=4:layout=$LAYOUT:fill=black,format=yuv420p[v]" \
  -map "[v]" -c:v ffv1 "$REF"

# Built once; every run starts the executable itself (no cargo between runs).
BENCH=$(cargo bench -p gremium-recorder --bench reference --no-run 2>&1 |
  sed -nE 's/.*Executable .*\((.*)\).*/\1/p' | tail -1)
[ -x "$BENCH" ] || { echo "could not build the reference bench" >&2; exit 1; }

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

kbps_of() { # FILE -> video bitrate in kbit/s (packet sizes over the frame count at 30 fps)
  ffprobe -v error -select_streams v:0 -show_entries packet=size -of csv=p=0 "$1" |
    awk '{s += $1; n++} END {printf "%.0f", s * 8 / (n / 30) / 1000}'
}

frames_of() { # FILE -> number of video frames
  ffprobe -v error -select_streams v:0 -count_packets -show_entries stream=nb_read_packets -of csv=p=0 "$1"
}

psnr() { # OUT OUT_START REF_START FRAMES -> "y average"
  ffmpeg -nostdin -hide_banner -i "$1" -i "$REF" -lavfi \
    "[0:v]trim=start_frame=$2:end_frame=$(($2 + $4)),setpts=N/(30*TB)[a];[1:v]trim=start_frame=$3:end_frame=$(($3 + $4)),setpts=N/(30*TB)[b];[a][b]psnr=shortest=1" \
    -f null - 2>&1 | sed -nE 's/.*PSNR y:([0-9.inf]+) .*average:([0-9.inf]+) .*/\1 \2/p' | tail -1
}

quality() { # OUT -> "shift y average"
  local out=$1 best="" bests=0 s r a
  for ((s = -3; s <= SHIFT_MAX; s++)); do
    # Output frame 30+k shows reference frame 30+k+s.
    r=$(psnr "$out" 30 $((30 + s)) 60)
    a=${r#* }
    if [ -z "$best" ] || python3 -c "import sys; sys.exit(0 if float('$a') > float('$best') else 1)"; then
      best=$a; bests=$s
    fi
  done
  echo "$bests $(psnr "$out" 30 $((30 + bests)) $(((SECS - 2) * 30)))"
}

ffmpeg_job() { # OUT -> "cpu_s wall_s"
  python3 - "$@" <<'PY'
import resource, subprocess, sys, time
t = time.time()
subprocess.run(sys.argv[1:], check=True)
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"{r.ru_utime + r.ru_stime:.2f} {time.time() - t:.1f}")
PY
}

# nginx with Debian's RTMP module, for the live jobs' RTMP push (loopback only).
RTMP_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<NGINX
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
daemon off;
master_process off;
worker_processes 1;
error_log $WORK/nginx/error.log warn;
pid $WORK/nginx/nginx.pid;
events { worker_connections 64; }
rtmp { server { listen 127.0.0.1:$RTMP_PORT; application live { live on; } } }
NGINX
nginx -e "$WORK/nginx/error.log" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" &
NGINX_PID=$!
trap 'kill $NGINX_PID 2>/dev/null; [ -n "${KEEP:-}" ] || rm -rf "$WORK"' EXIT
RTMP="rtmp://127.0.0.1:$RTMP_PORT/live"

IN=(-re -i "${INPUTS[0]}" -re -i "${INPUTS[1]}" -re -i "${INPUTS[2]}" -re -i "${INPUTS[3]}")
X264=(-c:v libx264 -preset veryfast -tune zerolatency -g 30 -r 30 -pix_fmt yuv420p)
AAC=(-c:a aac -b:a 128k -ac 2 -ar 48000)
MIX="[0:v][1:v][2:v][3:v]xstack=inputs=4:layout=$LAYOUT:fill=black"
AMIX="[0:a][1:a][2:a][3:a]amix=inputs=4:normalize=0"
gremium_cpu() { grep '^gremium' | sed -E 's/.*cpu_s=([0-9.]+) wall_s=([0-9.]+).*/\1 \2/'; }
job() { # JOB OUT -> "cpu_s wall_s"
  local out=$2 hls="$WORK/hls-$1"
  rm -rf "$hls"
  mkdir -p "$hls"
  case $1 in
  gremium-rec)
    "$BENCH" --bench "$out" "$SECS" "${INPUTS[@]}" 2>/dev/null | gremium_cpu ;;
  gremium-live-separate | gremium-live-shared)
    "$BENCH" --bench --live="${1#gremium-live-}" --hls="$hls" --rtmp="$RTMP/$1" "$out" "$SECS" \
      "${INPUTS[@]}" 2>/dev/null | gremium_cpu ;;
  ffmpeg-rec)
    ffmpeg_job ffmpeg -nostdin -loglevel error -y "${IN[@]}" \
      -filter_complex "$MIX[v];$AMIX[a]" \
      -map "[v]" -map "[a]" "${X264[@]}" -b:v 2500k -maxrate 2500k -bufsize 5000k "${AAC[@]}" \
      -t "$SECS" "$out" ;;
  ffmpeg-live)
    # The same outputs as Gremium's live job: the recording (MP4), HLS 720p from the
    # same encode (tee muxer) plus a 360p rendition of its own, RTMP from the 720p.
    ffmpeg_job ffmpeg -nostdin -loglevel error -y "${IN[@]}" \
      -filter_complex "$MIX,split=2[v][vs];[vs]scale=640:360[v360];$AMIX,asplit=2[a][a360]" \
      -map "[v]" -map "[a]" "${X264[@]}" -b:v 2500k -maxrate 2500k -bufsize 5000k "${AAC[@]}" \
      -t "$SECS" -f tee -flags +global_header \
      "[f=mp4]$out|[f=hls:hls_time=1:hls_list_size=6:hls_flags=delete_segments]$hls/720p.m3u8|[f=flv:onfail=ignore]$RTMP/ffmpeg" \
      -map "[v360]" -map "[a360]" "${X264[@]}" -b:v 800k -maxrate 800k -bufsize 1600k "${AAC[@]}" \
      -t "$SECS" -f hls -hls_time 1 -hls_list_size 6 -hls_flags delete_segments "$hls/360p.m3u8" ;;
  esac
}

JOBS=(gremium-rec ffmpeg-rec)
[ -n "${NO_LIVE:-}" ] || JOBS+=(gremium-live-separate gremium-live-shared ffmpeg-live)
for ((r = 0; r < REPS; r++)); do
  for j in "${JOBS[@]}"; do
    OUT="$WORK/$j-$r.mp4"
    read -r c w < <(job "$j" "$OUT")
    m=$(python3 -c "print(f'{$(frames_of "$OUT")/30:.2f}')")
    read -r s y a < <(quality "$OUT")
    k=$(kbps_of "$OUT")
    echo "run $r: $j cpu_s=$c wall_s=$w media_s=$m video_kbps=$k shift=$s psnr_y=$y psnr_avg=$a" >&2
    echo "$c $m $(python3 -c "print(f'{$c/$m:.3f}')") $k $y $a $s" >>"$WORK/results.$j"
  done
done

printf "\nreference job, SECS=%s, medians of %s runs\n" "$SECS" "$REPS"
printf "%-22s %8s %8s %14s %11s %8s %9s %6s\n" job cpu_s media_s cpu_s/media_s video_kbps "PSNR Y" "PSNR avg" shift
for j in "${JOBS[@]}"; do
  python3 - "$j" "$WORK/results.$j" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[2]) if l.strip()]
med = [statistics.median_low(float(r[i]) for r in rows) for i in range(7)]
print(f"{sys.argv[1]:<22} {med[0]:8.2f} {med[1]:8.2f} {med[2]:14.3f} {med[3]:11.0f} {med[4]:8.2f} {med[5]:9.2f} {med[6]:6.0f}")
PY
done
echo "rec: the recording alone. live: recording + HLS (720p + 360p + audio) + RTMP push to nginx-rtmp;"
echo "  separate = the livestream encodes its own 720p; shared = one 720p encode for recording, HLS and RTMP."
echo "cpu_s: user+sys (gremium: PLAYING to finished outputs; ffmpeg: whole process); all include VP8/Opus decoding."
echo "media_s: video frames in the recording / 30. PSNR (dB) of the recording against the uncompressed xstack"
echo "composite, frames by index, best shift in frames (output n ~ reference n+shift), first second skipped."
