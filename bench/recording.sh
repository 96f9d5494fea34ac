#!/usr/bin/env bash
# The reference recording job, Gremium next to ffmpeg: 4 participants, each a WebM
# file with VP8 640x360@30 (libvpx realtime, 800 kbit/s) and Opus 48 kHz (a moving
# test pattern and a sine tone of its own), composited into a 2x2 grid on a
# 1280x720@30 canvas and recorded as H.264 2.5 Mbit/s (x264 veryfast, zerolatency)
# + AAC 128 kbit/s in MP4. The inputs are read at real time on both sides, like
# live cameras.
#
#   gremium: `cargo bench -p gremium-recorder --bench reference` — matroskademux,
#            vp8dec/opusdec, clocksync, the program bin (grid, no labels, no gaps),
#            the RecordingBin (encrypted spool, decrypted to an MP4 afterwards).
#            CPU: the bench's own /proc/self/stat from PLAYING to the finished file.
#   ffmpeg:  -re on the 4 inputs, xstack (same tile rectangles: 640x360 at 0,0 /
#            640,0 / 0,360 / 640,360, which is where Gremium's grid puts 4 tiles with
#            gap 0, so neither side scales) + amix, libx264 veryfast zerolatency
#            2500k (maxrate 2500k, bufsize 5000k, GOP 60) + aac 128k, -t SECS.
#            CPU: user + sys of the ffmpeg process (getrusage of the child).
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
[ -n "${KEEP:-}" ] || trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK"

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

G_CPU=(); G_MEDIA=(); G_PM=(); G_Y=(); G_A=(); G_SHIFT=(); G_K=()
F_CPU=(); F_MEDIA=(); F_PM=(); F_Y=(); F_A=(); F_SHIFT=(); F_K=()
for ((r = 0; r < REPS; r++)); do
  GOUT="$WORK/gremium$r.mp4"
  G=$("$BENCH" --bench "$GOUT" "$SECS" "${INPUTS[@]}" 2>/dev/null | grep '^gremium')
  echo "run $r: $G" >&2
  gc=$(sed -E 's/.*cpu_s=([0-9.]+).*/\1/' <<<"$G")
  gm=$(python3 -c "print(f'{$(frames_of "$GOUT")/30:.2f}')")
  read -r gs gy ga < <(quality "$GOUT")
  G_CPU+=("$gc"); G_MEDIA+=("$gm"); G_PM+=("$(python3 -c "print(f'{$gc/$gm:.3f}')")")
  G_Y+=("$gy"); G_A+=("$ga"); G_SHIFT+=("$gs"); G_K+=("$(kbps_of "$GOUT")")
  echo "run $r: gremium media_s(ffprobe)=$gm video_kbps=${G_K[-1]} shift=$gs psnr_y=$gy psnr_avg=$ga" >&2

  FOUT="$WORK/ffmpeg$r.mp4"
  read -r fc fw < <(ffmpeg_job ffmpeg -nostdin -loglevel error -y \
    -re -i "${INPUTS[0]}" -re -i "${INPUTS[1]}" -re -i "${INPUTS[2]}" -re -i "${INPUTS[3]}" \
    -filter_complex "[0:v][1:v][2:v][3:v]xstack=inputs=4:layout=$LAYOUT:fill=black[v];[0:a][1:a][2:a][3:a]amix=inputs=4:normalize=0[a]" \
    -map "[v]" -map "[a]" -c:v libx264 -preset veryfast -tune zerolatency -b:v 2500k -maxrate 2500k \
    -bufsize 5000k -g 60 -r 30 -pix_fmt yuv420p -c:a aac -b:a 128k -ac 2 -ar 48000 -t "$SECS" "$FOUT")
  fm=$(python3 -c "print(f'{$(frames_of "$FOUT")/30:.2f}')")
  read -r fs fy fa < <(quality "$FOUT")
  F_CPU+=("$fc"); F_MEDIA+=("$fm"); F_PM+=("$(python3 -c "print(f'{$fc/$fm:.3f}')")")
  F_Y+=("$fy"); F_A+=("$fa"); F_SHIFT+=("$fs"); F_K+=("$(kbps_of "$FOUT")")
  echo "run $r: ffmpeg cpu_s=$fc wall_s=$fw media_s=$fm video_kbps=${F_K[-1]} shift=$fs psnr_y=$fy psnr_avg=$fa" >&2
done

printf "\nreference job, SECS=%s, medians of %s runs\n" "$SECS" "$REPS"
row() { # TOOL CPU MEDIA PER_MEDIA KBPS Y AVG SHIFT (arrays by name)
  local -n c=$2 m=$3 p=$4 k=$5 y=$6 a=$7 sh=$8
  printf "%-8s %8s %8s %14s %11s %8.2f %9.2f %6s\n" "$1" "$(median "${c[@]}")" "$(median "${m[@]}")" \
    "$(median "${p[@]}")" "$(median "${k[@]}")" "$(median "${y[@]}")" "$(median "${a[@]}")" "$(median "${sh[@]}")"
}
printf "%-8s %8s %8s %14s %11s %8s %9s %6s\n" tool cpu_s media_s cpu_s/media_s video_kbps "PSNR Y" "PSNR avg" shift
row gremium G_CPU G_MEDIA G_PM G_K G_Y G_A G_SHIFT
row ffmpeg F_CPU F_MEDIA F_PM F_K F_Y F_A F_SHIFT
echo "cpu_s: user+sys (gremium: PLAYING to finished file; ffmpeg: whole process); both include VP8/Opus decoding."
echo "media_s: video frames in the output / 30. PSNR (dB) against the uncompressed xstack composite,"
echo "frames by index, best shift in frames (output frame n ~ reference frame n+shift), first second skipped."
