#!/usr/bin/env bash
# Builds the Docker image and runs it for real, then checks the deployment files:
#   - `gremium doctor` inside the image must confirm every GStreamer element, and
#     `ffmpeg` must run there;
#   - the README's quick start inside it: `gremium serve` on embedded defaults answers
#     /healthz, an admin token from `gremium token` creates a meeting, a participant
#     publishes over WHIP (`gremium publish` in the same container), a recording is
#     started, stopped, finalized and read back with ffprobe (720p H.264 + AAC); the
#     image's HEALTHCHECK reports healthy; SIGTERM stops it with exit code 0;
#   - every Gremium configuration file in docker/ loads in the image's binary;
#   - docker/compose.cluster.yml renders with `docker-compose config` (and refuses to
#     without a master key): its services, host networking, distinct ports and
#     disjoint WebRTC port ranges;
#   - docker/k8s/*.yaml validate with `kubernetes-validate --strict` (offline schemas
#     of Kubernetes 1.29 and 1.37).
# Called at the end of scripts/test.sh; runs alone too:
#
#   scripts/docker-check.sh            # uses target/debug/gremium (see "Which binary")
#   GREMIUM_DOCKER_BINARY=path/to/gremium scripts/docker-check.sh
#
# On these machines nothing can be pulled from a registry and the daemon must not
# create a bridge (its 172.17.x network is off limits to tests), so the script:
#   - installs docker.io, debootstrap and docker-compose if missing (apt, idempotent);
#   - starts dockerd without a bridge if no daemon answers (--bridge=none
#     --iptables=false --ip-masq=false; log in $TOOLS/dockerd.log) and leaves it
#     running for the next run;
#   - makes the base image debian:bookworm-slim with debootstrap once (skipped when
#     the image exists), slimmed like Docker's official one;
#   - builds the Dockerfile's `prebuilt` stage (the runtime stage + a binary compiled
#     on this host, which has the same Debian 12 libraries) and runs every container
#     with --network host, on 127.0.0.1 only.
#
# Which binary: the debug binary that test.sh has just built, stripped of its debug
# information on the way into the image (50 MB; the image 717 MB). Measured here on
# 2 cores: a release build of `gremium` (release profile, every dependency again, as
# on a clean clone) took 1,170 CPU-seconds, about 10 minutes of wall time on an idle
# machine (51 min on the loaded one), and its image (35 MB binary, 703 MB) passed
# the same check in 22 s. With the debug binary the check takes 20-40 s. What it
# proves is the image's packages, user, paths, entrypoint and health check, the same
# for both profiles, so CI does not pay ten minutes for the release build; the
# Dockerfile's own build stage makes the release binary for users. Set
# GREMIUM_DOCKER_BINARY to check another binary (e.g. target/release/gremium).
#
# Exits non-zero with a message naming the step that failed; prints its wall time.
set -euo pipefail
cd "$(dirname "$0")/.."

START=$(date +%s)
TOOLS=${GREMIUM_TOOLS_DIR:-$HOME/.cache/gremium-tools}
IMAGE=${GREMIUM_DOCKER_IMAGE:-gremium:check}
BASE_IMAGE=debian:bookworm-slim
BIN=${GREMIUM_DOCKER_BINARY:-${CARGO_TARGET_DIR:-target}/debug/gremium}
# Debian's client: it matches Debian's daemon (another client may come first on PATH).
DOCKER=/usr/bin/docker
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

fail() {
  echo "docker-check: FAILED: $*" >&2
  exit 1
}
step() { echo "==> docker-check: $*"; }

CONTAINER=""
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/gremium-docker-check.XXXXXX")
cleanup() {
  if [ -n "$CONTAINER" ]; then
    $DOCKER rm -f -v "$CONTAINER" >/dev/null 2>&1 || true
  fi
  rm -rf "$SCRATCH"
}
trap cleanup EXIT

# --- packages ------------------------------------------------------------------
install_packages() {
  local missing=() p
  for p in docker.io debootstrap docker-compose python3-venv curl binutils ffmpeg; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    step "installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >/dev/null || fail "apt-get install ${missing[*]}"
  fi
}

# --- daemon --------------------------------------------------------------------
start_daemon() {
  if $DOCKER info >/dev/null 2>&1; then
    return
  fi
  [ -z "$SUDO" ] || fail "no Docker daemon answers, and starting one needs root"
  mkdir -p "$TOOLS"
  step "starting dockerd without a bridge (log: $TOOLS/dockerd.log)"
  # setsid: the daemon outlives this script and is not killed with test.sh's group.
  setsid dockerd --bridge=none --iptables=false --ip-masq=false \
    >>"$TOOLS/dockerd.log" 2>&1 </dev/null &
  echo $! >"$TOOLS/dockerd.pid"
  local i
  for i in $(seq 60); do
    if [ -S /var/run/docker.sock ] && $DOCKER info >/dev/null 2>&1; then
      return
    fi
    kill -0 "$(cat "$TOOLS/dockerd.pid")" 2>/dev/null || break
    sleep 0.5
  done
  tail -20 "$TOOLS/dockerd.log" >&2 || true
  fail "dockerd did not answer on /var/run/docker.sock within 30 s (log above)"
}

# --- base image ----------------------------------------------------------------
debian_mirror() {
  local url
  url=$(awk '/^URIs:/ && $2 ~ /\/debian\/?$/ {print $2; exit}' \
    /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  echo "${url:-http://deb.debian.org/debian}"
}

make_base_image() {
  if $DOCKER image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    return
  fi
  local mirror rootfs t0
  mirror=$(debian_mirror)
  rootfs="$SCRATCH/rootfs"
  t0=$(date +%s)
  step "making $BASE_IMAGE with debootstrap from $mirror (once; about a minute)"
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$SCRATCH/debootstrap.log" 2>&1 || {
    tail -20 "$SCRATCH/debootstrap.log" >&2
    fail "debootstrap bookworm from $mirror"
  }
  # What Docker's official slim image does: no documentation, man pages or
  # translations from later installs, no downloaded .debs kept, no apt lists shipped.
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
EOF
  cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  # The same suites as the host, so packages match the libraries the binary was
  # linked against.
  local security=${mirror%/debian}/debian-security
  printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb %s bookworm-security main\n' \
    "$mirror" "$mirror" "$security" >"$rootfs/etc/apt/sources.list"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin \
    "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/* "$rootfs"/tmp/*
  find "$rootfs/usr/share/doc" -type f ! -name copyright -delete
  rm -rf "$rootfs"/usr/share/{man,info,groff,locale}/*
  tar -C "$rootfs" -c . | $DOCKER import - "$BASE_IMAGE" >/dev/null || fail "docker import of the debootstrap root"
  rm -rf "$rootfs"
  echo "    $BASE_IMAGE: $(image_mb "$BASE_IMAGE") MB in $(($(date +%s) - t0)) s"
}

image_mb() {
  echo $(($($DOCKER image inspect -f '{{.Size}}' "$1") / 1000000))
}

# --- image ---------------------------------------------------------------------
build_image() {
  [ -x "$BIN" ] || fail "no binary at $BIN (run cargo build first, or set GREMIUM_DOCKER_BINARY)"
  local ctx="$SCRATCH/context" player=web/node_modules/hls.js/dist/hls.min.js t0
  mkdir -p "$ctx"
  objcopy --strip-debug "$BIN" "$ctx/gremium" || fail "stripping $BIN"
  if [ -f "$player" ]; then
    cp "$player" "$ctx/hls.min.js"
  else
    # The image must still build without scripts/web.sh having run; /watch then has
    # no player, which the quick start below does not need.
    echo "// hls.js not installed (scripts/web.sh)" >"$ctx/hls.min.js"
  fi
  t0=$(date +%s)
  step "building $IMAGE (Dockerfile stage 'prebuilt', binary $BIN)"
  DOCKER_BUILDKIT=1 $DOCKER build --network host --target prebuilt -t "$IMAGE" \
    --label org.gremium.docker-check=1 \
    -f docker/Dockerfile "$ctx" >"$SCRATCH/build.log" 2>&1 || {
    tail -40 "$SCRATCH/build.log" >&2
    fail "docker build of docker/Dockerfile (target prebuilt); log above"
  }
  # The previous run's image (another binary) is untagged now: drop it, not others.
  $DOCKER image prune -f --filter label=org.gremium.docker-check=1 >/dev/null || true
  echo "    $IMAGE: $(image_mb "$IMAGE") MB (base $(image_mb "$BASE_IMAGE") MB, binary $(($(stat -c %s "$ctx/gremium") / 1000000)) MB) in $(($(date +%s) - t0)) s"
}

# --- runs ----------------------------------------------------------------------
run_doctor() {
  local out
  step "gremium doctor inside the image"
  out=$($DOCKER run --rm --network host "$IMAGE" doctor 2>&1) || {
    echo "$out" >&2
    fail "gremium doctor inside $IMAGE reports missing pieces (above)"
  }
  echo "$out" | grep -q "required elements present" ||
    fail "gremium doctor inside $IMAGE did not confirm the required elements: $out"
  echo "$out" | sed 's/^/    /'
  out=$($DOCKER run --rm --network host --entrypoint ffmpeg "$IMAGE" -hide_banner -version 2>&1) ||
    fail "ffmpeg (finalizes recordings) does not run inside $IMAGE: $out"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# api METHOD PATH TOKEN [JSON]: the response body; fails unless the status is 2xx.
api() {
  local out code
  out=$(curl -s -w '\n%{http_code}' -X "$1" -H "Authorization: Bearer $3" \
    ${4:+-H 'content-type: application/json' -d "$4"} "$BASE$2") || fail "$1 $2: no answer"
  code=${out##*$'\n'}
  [[ $code == 2?? ]] || fail "$1 $2 answered $code: ${out%$'\n'*}"
  echo "${out%$'\n'*}"
}
# jget EXPR: a value from the JSON on stdin, EXPR in Python over `d`.
jget() { python3 -c 'import json, sys; d = json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"; }

container_log() {
  $DOCKER logs "$CONTAINER" 2>&1 | tail -"${1:-30}" >&2
}

# The README's quick start inside the image: serve on embedded defaults (SQLite, local
# disk; only ICE is kept on 127.0.0.1 as every test here must), a meeting, a publisher
# over WHIP, a recording finalized with ffmpeg and read back with ffprobe, SIGTERM.
run_quick_start() {
  local port code i
  port=$(free_port)
  BASE="http://127.0.0.1:$port"
  CONTAINER="gremium-check-$$"
  mkdir -p "$SCRATCH/quick"
  printf '[ice]\nallowed_local_addresses = ["127.0.0.1"]\n' >"$SCRATCH/quick/gremium.toml"
  chmod 755 "$SCRATCH" "$SCRATCH/quick"
  chmod 644 "$SCRATCH/quick/gremium.toml"
  step "quick start: gremium serve on 127.0.0.1:$port inside the image"
  $DOCKER run -d --name "$CONTAINER" --network host -e GREMIUM_LISTEN="127.0.0.1:$port" \
    -e GREMIUM_CONFIG=/cfg/gremium.toml -v "$SCRATCH/quick:/cfg:ro" \
    "$IMAGE" serve >/dev/null || fail "docker run $IMAGE serve"
  code=000
  for i in $(seq 60); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "$BASE/healthz" || true)
    [ "$code" = 200 ] && break
    [ "$($DOCKER inspect -f '{{.State.Running}}' "$CONTAINER")" = true ] || break
    sleep 0.5
  done
  [ "$code" = 200 ] || {
    container_log
    fail "GET /healthz answered $code, not 200, within 30 s (container log above)"
  }
  local token meeting
  token=$($DOCKER exec "$CONTAINER" gremium token --role admin) ||
    fail "gremium token --role admin inside the container"
  meeting=$(api POST /api/v1/meetings "$token" '{"title":"docker check"}' | jget 'd["id"]')
  api GET "/api/v1/meetings/$meeting" "$token" >/dev/null
  echo "    /healthz 200; meeting $meeting created with an admin token and read back"

  local participant pid join recording state
  participant=$(api POST "/api/v1/meetings/$meeting/participants" "$token" '{"display_name":"Docker Check"}')
  pid=$(echo "$participant" | jget 'd["participant"]["id"]')
  join=$(echo "$participant" | jget 'd["join_token"]')
  api PUT "/api/v1/meetings/$meeting/participants/$pid/consent" "$join" \
    '{"recording":true,"streaming":true}' >/dev/null
  $DOCKER exec -d "$CONTAINER" gremium publish --server "$BASE" --meeting "$meeting" \
    --token "$join" --duration 30 --ice-address 127.0.0.1 ||
    fail "starting gremium publish inside the container"
  for i in $(seq 40); do
    state=$(api GET "/api/v1/meetings/$meeting/participants" "$token" | jget 'd[0]["publishing"]')
    [ "$state" = True ] && break
    sleep 0.5
  done
  [ "$state" = True ] || {
    container_log
    fail "the publisher's media did not arrive within 20 s (WebRTC inside the image; log above)"
  }
  recording=$(api POST "/api/v1/meetings/$meeting/recordings" "$token" | jget 'd["id"]')
  sleep 4
  api POST "/api/v1/recordings/$recording/stop" "$token" >/dev/null
  for i in $(seq 120); do
    state=$(api GET "/api/v1/meetings/$meeting/recordings" "$token" | jget 'd[0]["state"]')
    [ "$state" = finished ] || [ "$state" = failed ] && break
    sleep 0.5
  done
  [ "$state" = finished ] || {
    container_log
    fail "the recording is '$state', not finished, 60 s after its stop (ffmpeg inside the image; log above)"
  }
  curl -sf -H "Authorization: Bearer $token" "$BASE/api/v1/recordings/$recording/media" \
    -o "$SCRATCH/recording.mp4" || fail "downloading the finished recording"
  local probe
  probe=$(ffprobe -v error -show_entries stream=codec_name,width,height -show_entries format=duration \
    -of csv=p=0 "$SCRATCH/recording.mp4" 2>&1 | tr '\n' ' ') || fail "ffprobe of the recording: $probe"
  [[ $probe == *h264,1280,720* && $probe == *aac* ]] ||
    fail "the recording is not 720p H.264 with AAC: $probe"
  echo "    publisher over WHIP, recording finished: $probe"

  # The image's HEALTHCHECK (first probe 10 s after the start) must find it healthy.
  local health
  for i in $(seq 40); do
    health=$($DOCKER inspect -f '{{.State.Health.Status}}' "$CONTAINER")
    [ "$health" = starting ] || break
    sleep 0.5
  done
  [ "$health" = healthy ] || fail "the image's HEALTHCHECK reports '$health', not healthy"
  echo "    HEALTHCHECK: healthy"

  # SIGTERM must stop it cleanly within the grace period docs/deployment.md names.
  local t0 exit_code
  t0=$(date +%s)
  $DOCKER stop -t 20 "$CONTAINER" >/dev/null
  exit_code=$($DOCKER inspect -f '{{.State.ExitCode}}' "$CONTAINER")
  [ "$exit_code" = 0 ] || {
    container_log 20
    fail "gremium serve exited with $exit_code on SIGTERM (log above)"
  }
  echo "    stopped by SIGTERM in $(($(date +%s) - t0)) s, exit 0"
  $DOCKER rm -v "$CONTAINER" >/dev/null
  CONTAINER=""
}

# --- deployment files ----------------------------------------------------------
# A master key only for rendering the compose file (the file requires one).
CHECK_MASTER_KEY=$(printf '%064d' 0)

check_compose() {
  step "docker-compose config: docker/compose.cluster.yml"
  local out
  out=$(cd docker && env -u GREMIUM_MASTER_KEY docker-compose -f compose.cluster.yml config -q 2>&1) &&
    fail "docker/compose.cluster.yml renders without GREMIUM_MASTER_KEY; it must insist on one"
  echo "$out" | grep -q GREMIUM_MASTER_KEY ||
    fail "without GREMIUM_MASTER_KEY, docker-compose config should name it: $out"
  out=$(cd docker && GREMIUM_MASTER_KEY=$CHECK_MASTER_KEY docker-compose -f compose.cluster.yml config 2>&1) || {
    echo "$out" >&2
    fail "docker/compose.cluster.yml is not a valid compose file (above)"
  }
  # What the file promises: the services, host networking, 2 control and 2 media
  # processes, no two services on one port, disjoint WebRTC port ranges.
  echo "$out" | python3 -c '
import re, sys, tomllib, yaml
cfg = yaml.safe_load(sys.stdin)
svcs = cfg["services"]
errors = []
need = {"control-1", "control-2", "media-1", "media-2", "nats", "postgres", "s3", "rtmp"}
if need - set(svcs):
    errors.append("missing services: %s" % sorted(need - set(svcs)))
roles, ports, ranges = {}, {}, {}
def claim(port, who):
    if port in ports:
        errors.append("port %s used by %s and %s" % (port, ports[port], who))
    ports[port] = who
for name, s in sorted(svcs.items()):
    if s.get("network_mode") != "host":
        errors.append("%s: network_mode is not host" % name)
    if s.get("ports"):
        errors.append("%s: publishes ports; with host networking it must not" % name)
    env = s.get("environment") or {}
    if "GREMIUM_ROLE" in env:
        roles.setdefault(env["GREMIUM_ROLE"], []).append(name)
        claim(int(env["GREMIUM_LISTEN"].rsplit(":", 1)[1]), name)
    cmd = s.get("command") or []
    for i, a in enumerate(cmd[:-1]):
        if a in ("-p", "--port", "-m"):
            claim(int(cmd[i + 1]), name)
    for v in s.get("volumes") or []:
        src = v.split(":")[0]
        if src.endswith(".toml"):
            ice = tomllib.load(open(src, "rb")).get("ice", {})
            if "udp_port_min" in ice:
                ranges[name] = (ice["udp_port_min"], ice["udp_port_max"])
if sorted(roles.get("control", [])) != ["control-1", "control-2"]:
    errors.append("control role on %s, want control-1 and control-2" % roles.get("control"))
if sorted(roles.get("media", [])) != ["media-1", "media-2"]:
    errors.append("media role on %s, want media-1 and media-2" % roles.get("media"))
for m in ("media-1", "media-2"):
    if m not in ranges:
        errors.append("%s: no [ice] udp_port_min/max in its config" % m)
if len(ranges) == 2:
    (a, b), (c, d) = ranges.values()
    if not (b < c or d < a):
        errors.append("the media nodes share UDP ports: %s" % ranges)
if errors:
    sys.exit("\n".join(errors))
print("    %d services, host network; ports %s; media UDP %s" % (
    len(svcs), sorted(ports), sorted(ranges.values())))
' || fail "docker/compose.cluster.yml (above)"
}

# Every Gremium configuration file the deployment files ship must load in the
# image's binary (`gremium token` validates the whole configuration first).
check_configs() {
  step "the shipped configuration files load in the image's gremium"
  local dir="$SCRATCH/configs"
  mkdir -p "$dir"
  chmod 755 "$SCRATCH" "$dir"
  cp docker/cluster/*.toml "$dir/"
  # The ConfigMap's files, with the addresses the media container fills in.
  python3 - "$dir" <<'PY' || fail "reading the ConfigMap in docker/k8s/config.yaml"
import sys, yaml
for doc in yaml.safe_load_all(open("docker/k8s/config.yaml")):
    if doc and doc["kind"] == "ConfigMap":
        for key, text in doc["data"].items():
            text = text.replace("@HOST_IP@", "10.0.0.5").replace("@PUBLIC_IP@", "203.0.113.10")
            open("%s/k8s-%s" % (sys.argv[1], key.removesuffix(".in")), "w").write(text)
PY
  chmod 644 "$dir"/*
  local out
  # Credentials come from the environment in compose and Kubernetes.
  out=$($DOCKER run --rm --network host -v "$dir:/cfg:ro" -e GREMIUM_S3_ACCESS_KEY_ID=check \
    -e GREMIUM_S3_SECRET_ACCESS_KEY=check --entrypoint /bin/bash "$IMAGE" -c '
    for f in /cfg/*.toml; do
      gremium token --role admin --config "$f" --data-dir /tmp/check >/dev/null || { echo "in $f"; exit 1; }
      echo "${f#/cfg/}"
    done' 2>&1) || {
    echo "$out" >&2
    fail "a shipped configuration file does not load (above)"
  }
  echo "    ok: $(echo "$out" | tr '\n' ' ')"
}

check_k8s() {
  local venv="$TOOLS/k8s-validate-venv" K8S_VALIDATE_VERSION=1.37.0
  local installed
  installed=$("$venv/bin/pip" show kubernetes-validate 2>/dev/null || true)
  if ! grep -qx "Version: $K8S_VALIDATE_VERSION" <<<"$installed"; then
    step "installing kubernetes-validate $K8S_VALIDATE_VERSION into $venv (once)"
    python3 -m venv "$venv" >/dev/null || fail "python3 -m venv $venv"
    "$venv/bin/pip" install -q "kubernetes-validate==$K8S_VALIDATE_VERSION" ||
      fail "pip install kubernetes-validate (needs PyPI once)"
  fi
  step "kubernetes-validate --strict: docker/k8s/*.yaml against Kubernetes 1.29 and 1.37"
  local out v
  for v in 1.29.0 1.37.0; do
    out=$("$venv/bin/kubernetes-validate" --strict --quiet -k "$v" docker/k8s/*.yaml 2>&1) || {
      echo "$out" >&2
      fail "docker/k8s manifests do not validate against Kubernetes $v (above)"
    }
  done
  echo "    ok: $(grep -c '^kind:' docker/k8s/*.yaml | awk -F: '{n+=$2} END {print n}') resources"
}

install_packages
start_daemon
make_base_image
build_image
run_doctor
run_quick_start
check_configs
check_compose
check_k8s
echo "docker-check: ok in $(($(date +%s) - START)) s (image $IMAGE, $(image_mb "$IMAGE") MB)"
