#!/usr/bin/env python3
"""Capacity of one media node and the cost model's coefficients (see bench/capacity.sh).

Everything runs against real `gremium serve` processes (release build, embedded
defaults: SQLite, local disk, in-process media plane) on loopback, one fresh server
per scenario, with synthetic participants (`gremium publish`) on the same machine.

A *reference meeting*: a public meeting, 4 publishers (all consenting to recording
and streaming, so the recording and the livestream show the same people and share
one 720p encode), a recording and an HLS stream.

Two parts:

coefficients  One server per scenario, SCENARIO_MEETINGS meetings of the same shape
              in each; the server's CPU (user + sys of the process, all threads) over
              SECS seconds of steady state, REPS times, medians. The scenarios differ
              in one thing at a time, so differences give the coefficients:
                idle       no meeting                       -> the server's base load
                pubs       4 publishers, no output          -> per decoded publisher
                rec        + recording                      }
                hls        + HLS stream, no recording       }-> 360p encode = hls - rec
                ref        + recording + HLS (shared 720p)  -> program = ref - hls
                ref-sep    ref, streaming.share_encoder off -> 720p encode = ref-sep - ref
                ref-rtmp   ref + an RTMP push to nginx-rtmp -> RTMP push = ref-rtmp - ref
ramp          One server; reference meetings are added one at a time; after each, the
              node is measured for SECS seconds; it stops at the first count that does
              not run in real time (or at MAX_N).

Real time, from what Gremium itself produces: the livestream's HLS renditions. Every
segment that appears during the window (the playlists are polled every 0.25 s; the
time a segment is first seen is when a player could first fetch it) is fetched and
its video frames counted with ffprobe after the window (so probing costs no CPU
inside it). Per rendition:
  fps   frames in the new segments / the sum of their EXTINF durations: below 30
        means the program or its encoder dropped frames (leaky queues, late frames);
  rate  media seconds listed / wall seconds between the first and the last new
        segment: below 1 means the node falls behind the clock.
A meeting runs in real time when, for the 720p and the 360p rendition, fps >=
FPS_MIN (29.0) and rate >= RATE_MIN (0.95). The 720p rendition is the recording's
shared encode (recording program) and the 360p one the livestream program's own,
so both programs are checked.

Prints the tables on stdout; JSON of every sample to --json. Python stdlib only
(ffprobe for the frame counts).
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

HZ = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1
# SIGTERM to a publisher when the thread that started it ends (see
# bench/withdrawal/measure.py): no publisher outlives the bench.
DIE_WITH_PARENT = ["setpriv", "--pdeathsig", "TERM", "--"] if shutil.which("setpriv") else []


def log(msg):
    print(f"[capacity] {msg}", file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def proc_ticks(pid):
    """user + sys clock ticks of a process (all its threads); 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return int(rest[11]) + int(rest[12])
    except (OSError, IndexError, ValueError):
        return 0


def machine_ticks():
    """(busy, total) ticks of all cores: the whole machine, other processes included."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


def loadavg():
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


class Http:
    def __init__(self, base):
        self.base = base

    def call(self, method, path, token=None, body=None, want=(200, 201, 202)):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        if status not in want:
            raise SystemExit(f"{method} {path} answered {status}: {raw[:300]!r}")
        return json.loads(raw) if raw else None

    def get_bytes(self, path):
        try:
            with urllib.request.urlopen(self.base + path, timeout=10) as r:
                return r.read()
        except (urllib.error.URLError, OSError):
            return None


class Server:
    """One `gremium serve` on a temporary data directory (SQLite, local disk)."""

    def __init__(self, binary, share_encoder=True):
        self.bin = binary
        self.work = tempfile.mkdtemp(prefix="gremium-capacity-")
        self.port = free_port()
        self.cfg = os.path.join(self.work, "gremium.toml")
        with open(self.cfg, "w") as f:
            f.write(
                '[ice]\nallowed_local_addresses = ["127.0.0.1"]\n'
                # Segments stay listed long enough to be fetched after the window.
                "[streaming]\nwindow_segments = 30\ndvr_segments = 60\n"
                f"share_encoder = {'true' if share_encoder else 'false'}\n"
            )
        # SQLite in the temp dir, whatever GREMIUM_DATABASE_URL says (empty = unset).
        self.env = {**os.environ, "GREMIUM_DATABASE_URL": "", "RUST_LOG": "warn"}
        self.log = open(os.path.join(self.work, "server.log"), "w")
        self.proc = subprocess.Popen(
            [binary, "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", self.work,
             "--config", self.cfg],
            env=self.env, stdout=subprocess.DEVNULL, stderr=self.log)
        self.base = f"http://127.0.0.1:{self.port}"
        self.http = Http(self.base)
        for _ in range(300):
            if self.proc.poll() is not None:
                raise SystemExit(f"gremium serve exited: see {self.work}/server.log")
            if self.http.get_bytes("/healthz") is not None:
                break
            time.sleep(0.1)
        else:
            raise SystemExit("gremium serve did not answer /healthz within 30 s")
        self.mod = self.token("moderator")

    def token(self, role):
        return subprocess.check_output(
            [self.bin, "token", "--role", role, "--data-dir", self.work, "--config", self.cfg],
            env=self.env, text=True).strip()

    def decoded_video(self):
        raw = self.http.get_bytes("/metrics") or b""
        for line in raw.decode(errors="replace").splitlines():
            if line.startswith('gremium_ingest_decoded_buffers_total{kind="video"}'):
                return float(line.split()[-1])
        return 0.0

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                log("the server did not stop within 20 s of SIGTERM; killed")
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.work, ignore_errors=True)


class Publisher:
    """One `gremium publish` process (VP8 + Opus over WHIP, loopback ICE)."""

    def __init__(self, args, base, meeting, token, tone, pattern):
        w, h, fps = args.pub
        cmd = (["nice", "-n", str(args.pub_nice)] if args.pub_nice else []) + DIE_WITH_PARENT + [
            args.bin, "publish", "--server", base, "--meeting", meeting,
            "--ice-address", "127.0.0.1", "--width", str(w), "--height", str(h),
            "--fps", str(fps), "--tone", str(tone), "--pattern", pattern, "--duration", "0"]
        self.proc = subprocess.Popen(
            cmd, env={**os.environ, "GREMIUM_JOIN_TOKEN": token, "RUST_LOG": "warn"},
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.on_air = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            if line.startswith("publishing to meeting"):
                self.on_air.set()

    def ticks(self):
        return proc_ticks(self.proc.pid)

    def leave(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


PATTERNS = ["ball", "smpte", "pinwheel", "spokes"]


class Meeting:
    """A meeting with its publishers and outputs on a server."""

    def __init__(self, args, srv, index, publishers, outputs):
        self.srv, self.outputs = srv, outputs
        mod = srv.mod
        m = srv.http.call("POST", "/api/v1/meetings", mod,
                          {"title": f"Capacity {index}", "public": True})
        self.id = m["id"]
        self.pubs = []
        for i in range(publishers):
            p = srv.http.call("POST", f"/api/v1/meetings/{self.id}/participants", mod,
                              {"display_name": f"P{index}.{i}"})
            pid, join = p["participant"]["id"], p["join_token"]
            srv.http.call("PUT", f"/api/v1/meetings/{self.id}/participants/{pid}/consent", join,
                          {"recording": True, "streaming": True})
            self.pubs.append(Publisher(args, srv.base, self.id, join, 200 + 40 * i,
                                       PATTERNS[i % len(PATTERNS)]))

    def start(self, rtmp_url):
        """Waits for every publisher's media, then starts the outputs and waits for them."""
        http, mod = self.srv.http, self.srv.mod
        for p in self.pubs:
            if not p.on_air.wait(60):
                raise SystemExit(f"a publisher of meeting {self.id} got no WHIP answer in 60 s")
        wait_until("every publisher's media at the media plane", lambda: all(
            p["publishing"] for p in http.call("GET", f"/api/v1/meetings/{self.id}/participants", mod)), 60)
        if "rec" in self.outputs:
            rec = http.call("POST", f"/api/v1/meetings/{self.id}/recordings", mod)
            wait_until("an active recording", lambda: active(
                http.call("GET", f"/api/v1/recordings/{rec['id']}", mod)), 60)
        if "hls" in self.outputs or "rtmp" in self.outputs:
            body = {"hls": "hls" in self.outputs, "rtmp": []}
            if "rtmp" in self.outputs:
                body["rtmp"] = [{"url": rtmp_url, "key": self.id}]
            st = http.call("POST", f"/api/v1/meetings/{self.id}/streams", mod, body)

            def up():
                s = http.call("GET", f"/api/v1/streams/{st['id']}", mod)
                return active(s) and all(d["status"] == "live" for d in s["rtmp"])

            wait_until("an active stream (RTMP live)", up, 60)
            if "hls" in self.outputs:
                wait_until("the HLS playlists", lambda: all(
                    self.srv.http.get_bytes(f"/live/{self.id}/{r}/index.m3u8") for r in ("720p", "360p")), 30)

    def publisher_ticks(self):
        return sum(p.ticks() for p in self.pubs)

    def leave(self):
        for p in self.pubs:
            p.leave()


def active(output):
    if output["state"] in ("failed", "finished"):
        raise SystemExit(f"an output ended before the measurement: {output}")
    return output["state"] == "active"


def wait_until(what, pred, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.25)
    raise SystemExit(f"timed out waiting for {what}")


EXTINF = re.compile(r"#EXTINF:([0-9.]+)")


def parse_playlist(text):
    """[(uri, seconds)] of a media playlist."""
    out, dur = [], None
    for line in text.splitlines():
        m = EXTINF.match(line)
        if m:
            dur = float(m.group(1))
        elif line and not line.startswith("#") and dur is not None:
            out.append((line.strip(), dur))
            dur = None
    return out


class PlaylistWatch:
    """Polls a meeting's rendition playlists; notes when each segment first appears."""

    RENDITIONS = ("720p", "360p")

    def __init__(self, http, meetings):
        self.http = http
        self.keys = [(m.id, r) for m in meetings if "hls" in m.outputs for r in self.RENDITIONS]
        self.known = {k: set() for k in self.keys}
        self.seen = {k: [] for k in self.keys}  # [(uri, seconds, first seen)]
        self.poll(record=False)

    def poll(self, record=True):
        for k in self.keys:
            raw = self.http.get_bytes(f"/live/{k[0]}/{k[1]}/index.m3u8")
            if raw is None:
                continue
            now = time.monotonic()
            for uri, secs in parse_playlist(raw.decode(errors="replace")):
                if uri not in self.known[k]:
                    self.known[k].add(uri)
                    if record:
                        self.seen[k].append((uri, secs, now))

    def results(self):
        """{(meeting, rendition): {fps, rate, segments}} once the window is over."""
        out = {}
        with tempfile.TemporaryDirectory(prefix="gremium-capacity-seg-") as tmp:
            for k, segs in self.seen.items():
                frames = media = 0.0
                for uri, secs, _ in segs:
                    data = self.http.get_bytes(f"/live/{k[0]}/{k[1]}/{uri}")
                    if data is None:
                        continue  # already out of the playlist: not counted either way
                    path = os.path.join(tmp, "seg.ts")
                    with open(path, "wb") as f:
                        f.write(data)
                    frames += count_frames(path)
                    media += secs
                rate = None
                if len(segs) >= 3:
                    listed = sum(s for _, s, _ in segs[1:])
                    wall = segs[-1][2] - segs[0][2]
                    rate = listed / wall if wall > 0 else None
                out[k] = {"fps": frames / media if media else None, "rate": rate,
                          "segments": len(segs), "media_s": media}
        return out


def count_frames(path):
    r = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_packets",
         "-show_entries", "stream=nb_read_packets", "-of", "csv=p=0", path],
        capture_output=True, text=True)
    try:
        return int(r.stdout.strip().split()[0])
    except (IndexError, ValueError):
        return 0


def measure(args, srv, meetings, secs):
    """The node over `secs` seconds of steady state: CPU and the real-time checks."""
    watch = PlaylistWatch(srv.http, meetings)
    s0, p0, (b0, t0m) = proc_ticks(srv.proc.pid), sum(m.publisher_ticks() for m in meetings), machine_ticks()
    v0, w0 = srv.decoded_video(), time.monotonic()
    while time.monotonic() - w0 < secs:
        time.sleep(0.25)
        watch.poll()
    s1, p1, (b1, t1m) = proc_ticks(srv.proc.pid), sum(m.publisher_ticks() for m in meetings), machine_ticks()
    v1, w1 = srv.decoded_video(), time.monotonic()
    wall = w1 - w0
    npub = sum(len(m.pubs) for m in meetings)
    res = {
        "meetings": len(meetings),
        "server_cores": (s1 - s0) / HZ / wall,
        "publisher_cores": (p1 - p0) / HZ / wall,
        "machine_busy_cores": (b1 - b0) / max(1, t1m - t0m) * NCPU,
        "input_fps": (v1 - v0) / wall / npub if npub else None,
        "load": loadavg(),
        "wall_s": wall,
    }
    hls = watch.results()
    res["hls"] = {f"{k[0]}/{k[1]}": v for k, v in hls.items()}
    fps = [v["fps"] for v in hls.values()]
    rates = [v["rate"] for v in hls.values()]
    res["min_fps"] = min((f for f in fps if f is not None), default=None)
    res["min_rate"] = min((r for r in rates if r is not None), default=None)
    if hls:
        res["real_time"] = (None not in fps and None not in rates
                            and res["min_fps"] >= args.fps_min and res["min_rate"] >= args.rate_min)
    else:
        res["real_time"] = None
    # Publishers on this machine that could not keep up (nice, cores short) send
    # fewer frames: the node then decoded less than the reference meeting asks.
    res["inputs_full"] = res["input_fps"] is None or res["input_fps"] >= args.fps_min * args.pub[2] / 30
    res["other_cores"] = max(0.0, res["machine_busy_cores"] - res["server_cores"] - res["publisher_cores"])
    return res


SCENARIOS = {
    # name: (publishers, outputs, share_encoder)
    "idle": (0, set(), True),
    "pubs": (4, set(), True),
    "rec": (4, {"rec"}, True),
    "hls": (4, {"hls"}, True),
    "ref": (4, {"rec", "hls"}, True),
    "ref-sep": (4, {"rec", "hls"}, False),
    "ref-rtmp": (4, {"rec", "hls", "rtmp"}, True),
}


def run_scenario(args, name):
    publishers, outputs, share = SCENARIOS[name]
    if "rtmp" in outputs and not args.rtmp:
        return None
    srv = Server(args.bin, share_encoder=share)
    meetings = []
    try:
        count = args.scenario_meetings if publishers else 0
        for i in range(count):
            meetings.append(Meeting(args, srv, i, publishers, outputs))
        for m in meetings:
            m.start(args.rtmp)
        time.sleep(args.warmup)
        res = measure(args, srv, meetings, args.secs)
        res["per_meeting"] = res["server_cores"] / count if count else res["server_cores"]
        log(f"{name}: server {res['server_cores']:.3f} cores, per meeting {res['per_meeting']:.3f}, "
            f"publishers {res['publisher_cores']:.2f}, fps {res['min_fps']}, load {res['load']}")
        return res
    finally:
        for m in meetings:
            m.leave()
        srv.stop()


def coefficients(args):
    samples = {n: [] for n in SCENARIOS}
    for rep in range(args.reps):
        # Alternating order: a slow drift of the machine's other load does not bias
        # one scenario against another.
        order = list(SCENARIOS) if rep % 2 == 0 else list(reversed(SCENARIOS))
        for name in order:
            r = run_scenario(args, name)
            if r is not None:
                samples[name].append(r)
    med = {n: statistics.median(s["per_meeting"] for s in v) for n, v in samples.items() if v}
    idle = med["idle"]
    coef = {
        "publisher": (med["pubs"] - idle / args.scenario_meetings) / 4,
        "program": med["ref"] - med["hls"],
        "encode_720p": med["ref-sep"] - med["ref"],
        "encode_360p": med["hls"] - med["rec"],
    }
    if "ref-rtmp" in med:
        coef["rtmp_push"] = med["ref-rtmp"] - med["ref"]
    return samples, med, coef


def ramp(args):
    srv = Server(args.bin)
    meetings, rows = [], []
    try:
        for n in range(1, args.max_n + 1):
            m = Meeting(args, srv, n, 4, {"rec", "hls"})
            meetings.append(m)
            m.start(args.rtmp)
            time.sleep(args.warmup)
            r = measure(args, srv, meetings, args.secs)
            rows.append(r)
            log(f"ramp N={n}: server {r['server_cores']:.2f} cores, min fps {r['min_fps']}, "
                f"min rate {r['min_rate']}, input fps {r['input_fps']}, real time {r['real_time']}")
            if not r["real_time"]:
                break
    finally:
        for m in meetings:
            m.leave()
        srv.stop()
    return rows


def fmt(v, spec=".2f"):
    return "-" if v is None else format(v, spec)


def units(cores):
    """1 unit = 1 % of one core, rounded up (never 0 for a measured cost)."""
    return max(1, int(-(-round(cores * 100, 6) // 1))) if cores > 0 else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--rtmp", default="", help="rtmp://host:port/app of an nginx-rtmp")
    ap.add_argument("--part", choices=["all", "coefficients", "ramp"], default="all")
    ap.add_argument("--secs", type=float, default=15)
    ap.add_argument("--warmup", type=float, default=5)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--scenario-meetings", type=int, default=1)
    ap.add_argument("--max-n", type=int, default=8)
    ap.add_argument("--pub", default="640x360@30", help="publishers' WxH@fps")
    ap.add_argument("--pub-nice", type=int, default=10)
    ap.add_argument("--fps-min", type=float, default=29.0)
    ap.add_argument("--rate-min", type=float, default=0.95)
    ap.add_argument("--headroom", type=int, default=10, help="units kept free besides the idle server")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    m = re.fullmatch(r"(\d+)x(\d+)@(\d+)", args.pub)
    if not m:
        raise SystemExit("--pub: WxH@fps, e.g. 640x360@30")
    args.pub = tuple(int(x) for x in m.groups())

    out = {"cores": NCPU, "publishers": args.pub_nice and f"{args.pub} nice {args.pub_nice}" or args.pub}
    print(f"gremium capacity bench: {NCPU} cores; reference meeting = 4 publishers "
          f"(VP8 {args.pub[0]}x{args.pub[1]}@{args.pub[2]} + Opus, `gremium publish` on this "
          f"machine, nice {args.pub_nice}) + recording + HLS; {args.secs:g} s windows after "
          f"{args.warmup:g} s warm-up; load average at start {loadavg()}")
    if args.part in ("all", "coefficients"):
        samples, med, coef = coefficients(args)
        out.update(samples=samples, medians=med, coefficients=coef)
        print(f"\nscenarios ({args.scenario_meetings} meeting(s) each, medians of {args.reps}): "
              "server CPU in cores per meeting")
        print(f"{'scenario':<10} {'cores/meeting':>14} {'publishers':>11} {'others':>7} {'load':>6}  runs")
        for name, v in samples.items():
            if not v:
                continue
            runs = " ".join(f"{s['per_meeting']:.3f}" for s in v)
            pubc = statistics.median(s["publisher_cores"] for s in v)
            oth = statistics.median(s["other_cores"] for s in v)
            print(f"{name:<10} {med[name]:>14.3f} {pubc:>11.2f} {oth:>7.2f} {v[-1]['load']:>6}  {runs}")
        print("\ncoefficient       cores   units (1 unit = 1 % of one core)")
        for k, c in coef.items():
            print(f"{k:<15} {c:>7.3f} {units(c):>7}")
        u = {k: units(c) for k, c in coef.items()}
        ref_units = 4 * u["publisher"] + 2 * u["program"] + u["encode_720p"] + u["encode_360p"]
        idle_units = units(med["idle"])
        capacity = int(0.8 * NCPU * 100) - idle_units - args.headroom
        out.update(units=u, reference_units=ref_units, capacity=capacity)
        print(f"reference meeting by the model: 4 x {u['publisher']} + 2 x {u['program']} + "
              f"{u['encode_720p']} + {u['encode_360p']} = {ref_units} units; measured (ref - idle): "
              f"{units(med['ref'] - med['idle'] / args.scenario_meetings)} units")
        print(f"default capacity: 80 % of {NCPU} cores x 100 - idle server {idle_units} - headroom "
              f"{args.headroom} = {capacity} units -> {capacity // max(1, ref_units)} reference meetings")
    if args.part in ("all", "ramp"):
        rows = ramp(args)
        out["ramp"] = rows
        print("\nN meetings: server CPU, real time yes/no (HLS 720p + 360p of every meeting: "
              f"fps >= {args.fps_min:g} and rate >= {args.rate_min:g})")
        print(f"{'N':>3} {'server cores':>13} {'cores/meeting':>14} {'publishers':>11} {'others':>7} "
              f"{'min fps':>8} {'min rate':>9} {'input fps':>10} {'load':>6}  real time")
        for r in rows:
            verdict = "no"
            if r["real_time"]:
                verdict = "yes" if r["inputs_full"] else "yes, but inputs short (publishers starved)"
            print(f"{r['meetings']:>3} {r['server_cores']:>13.2f} {r['server_cores'] / r['meetings']:>14.3f} "
                  f"{r['publisher_cores']:>11.2f} {r['other_cores']:>7.2f} {fmt(r['min_fps'], '.1f'):>8} "
                  f"{fmt(r['min_rate']):>9} {fmt(r['input_fps'], '.1f'):>10} {r['load']:>6}  {verdict}")
        ok = [r["meetings"] for r in rows if r["real_time"] and r["inputs_full"]]
        out_ok = [r["meetings"] for r in rows if r["real_time"]]
        print(f"largest count in real time: {max(ok) if ok else 0} with full-rate inputs, "
              f"{max(out_ok) if out_ok else 0} by the output alone"
              + ("" if rows and not rows[-1]["real_time"] else f" (stopped at MAX_N={args.max_n})"))
        print("others: cores busy with other processes of the machine during the window "
              "(/proc/stat minus server and publishers)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
