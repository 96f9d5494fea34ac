#!/usr/bin/env python3
"""The measurements of bench/cluster.sh; each prints one JSON object on stdout.

  withdrawal --mode single|cluster
      Consent withdrawal round trip, as bench/withdrawal/measure.py times it (its
      helpers are reused): one subject publishing, a recording running, N withdrawals
      each followed by a grant, one at a time on a keep-alive connection, GAP_MS apart.
      single:  one `gremium serve` (role all) on the given database.
      cluster: one control replica and one media node on NATS; the requests go to the
               control replica, which forwards each one to the node as a NATS request.
  failover
      Two media nodes and one control replica; a meeting with one `gremium publish`
      (which POSTs again by itself once its session is gone) and a WebSocket on the
      meeting at the control replica. Each trial: kill -9 the node the meeting is
      placed on, time from the kill until the participant's next
      `participant_media_started` arrives on the socket, start the killed node again.

Python stdlib only.
"""

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "withdrawal"))

import measure  # noqa: E402  (bench/withdrawal/measure.py)
from procs import Setup, Ws, http_json, log  # noqa: E402


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def cluster_status(control, token):
    status, v = http_json("GET", f"{control.base}/api/v1/cluster", token)
    if status != 200 or not isinstance(v, dict):
        raise SystemExit(f"GET /api/v1/cluster answered {status}: {v}")
    return v


def wait_status(control, token, what, pred, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        v = cluster_status(control, token)
        if pred(v):
            return v
        if time.monotonic() > deadline:
            raise SystemExit(f"the cluster never showed {what}: {v}")
        time.sleep(0.2)


def placed(v, node):
    return sum(n.get("placed_meetings", 0) for n in v["nodes"] if n["node_id"] == node)


def meeting_with_subject(api, token, title):
    """(meeting id, participant id, join token) with the participant consenting."""
    m = measure.must(api, "POST", "/api/v1/meetings", token, {"title": title})
    p = measure.must(api, "POST", f"/api/v1/meetings/{m['id']}/participants", token,
                     {"display_name": "Subject"})
    pid, join = p["participant"]["id"], p["join_token"]
    measure.must(api, "PUT", f"/api/v1/meetings/{m['id']}/participants/{pid}/consent", join,
                 {"recording": True, "streaming": True})
    return m["id"], pid, join


def withdrawal(a, setup):
    if a.mode == "single":
        front = setup.start("all", "single")
    else:
        setup.start("media", "media-1")
        front = setup.start("control", "control-1")
    token = setup.token("admin", "moderator")
    if a.mode == "cluster":
        wait_status(front, token, "the media node", lambda v: len(v["nodes"]) == 1)
    api = measure.Api(front.base)
    args = argparse.Namespace(bin=setup.bin, base=front.base, meeting=None)
    args.meeting, subject, join = meeting_with_subject(api, token, f"Withdrawal {a.mode}")
    pub = measure.Publisher(args, join, 440)
    load_before = loadavg()
    try:
        if not pub.wait_publishing(60):
            raise SystemExit("the subject's publisher never got a WHIP answer")

        def publishing():
            ps = measure.must(api, "GET", f"/api/v1/meetings/{args.meeting}/participants", token)
            return any(p["id"] == subject and p["publishing"] for p in ps)

        measure.wait_until("the subject's media at the media plane", publishing, 60)
        recording = a.output == "recording"
        if recording:
            rec = measure.must(api, "POST", f"/api/v1/meetings/{args.meeting}/recordings", token)

            def active():
                rs = measure.must(api, "GET", f"/api/v1/meetings/{args.meeting}/recordings", token)
                return [r["state"] for r in rs if r["id"] == rec["id"]] == ["active"]

            measure.wait_until("an active recording", active, 60)
        time.sleep(2)
        gap = a.gap_ms / 1000.0
        log(f"{a.mode}: warm-up")
        measure.toggle_phase(api, args, subject, join, 20, gap, recording)
        log(f"{a.mode}: {a.n} withdrawals")
        t0 = time.monotonic()
        result = measure.toggle_phase(api, args, subject, join, a.n, gap, recording)
        result["seconds"] = round(time.monotonic() - t0, 1)
        if recording:
            measure.must(api, "POST", f"/api/v1/recordings/{rec['id']}/stop", token,
                         want=(200, 202))
    finally:
        pub.leave()
    result.update(mode=a.mode, output=a.output, load_before=load_before, load_after=loadavg())
    print(json.dumps(result))


def failover(a, setup):
    nodes = {nid: setup.start("media", nid) for nid in ("media-1", "media-2")}
    control = setup.start("control", "control-1")
    token = setup.token("admin", "moderator")
    wait_status(control, token, "two live nodes", lambda v: len(v["nodes"]) == 2)
    api = measure.Api(control.base)
    mid, pid, join = meeting_with_subject(api, token, "Failover")
    ws = Ws("127.0.0.1", control.port,
            f"/api/v1/meetings/{mid}/events?access_token={token}")

    def started(e):
        return e.get("type") == "participant_media_started" and e.get("participant_id") == pid

    pub_log = open(os.path.join(setup.work, "publisher.log"), "ab")
    pub = subprocess.Popen(
        measure.DIE_WITH_PARENT + [
            setup.bin, "publish", "--server", control.base, "--meeting", mid,
            "--ice-address", "127.0.0.1", "--width", "320", "--height", "180", "--fps", "15",
            "--duration", "0"],
        env={**os.environ, "GREMIUM_JOIN_TOKEN": join, "RUST_LOG": "warn"},
        stdout=pub_log, stderr=pub_log)
    trials = []
    load_before = loadavg()
    try:
        if ws.wait_for(started, 0, 60) is None:
            raise SystemExit("the publisher's media never started")
        for trial in range(a.trials):
            v = wait_status(control, token, "two live nodes, the meeting on one",
                            lambda v: len(v["nodes"]) == 2
                            and sorted(placed(v, n) for n in nodes) == [0, 1], timeout=60)
            dead = next(n for n in nodes if placed(v, n) == 1)
            time.sleep(a.settle)  # media flowing for a while, as a real meeting
            mark = ws.count()
            t_kill = time.monotonic()
            nodes[dead].kill9()
            got = ws.wait_for(started, mark, a.timeout)
            took = None if got is None else round(got[1] - t_kill, 3)
            survivor = next(n for n in nodes if n != dead)
            log(f"trial {trial + 1}: killed {dead}, media again after "
                f"{'-' if took is None else f'{took:.2f} s'}")
            trials.append({"killed": dead, "seconds": took, "load": loadavg()})
            if took is None:
                break
            wait_status(control, token, "the meeting on the survivor",
                        lambda v: placed(v, survivor) == 1)
            nodes[dead] = setup.start("media", dead)
    finally:
        if pub.poll() is None:
            pub.terminate()
            try:
                pub.wait(15)
            except subprocess.TimeoutExpired:
                pub.kill()
                pub.wait()
        pub_log.close()
        ws.close()
    times = sorted(t["seconds"] for t in trials if t["seconds"] is not None)
    print(json.dumps({
        "trials": trials,
        "ok": len(times),
        "failed": len(trials) - len(times),
        "median_s": times[len(times) // 2] if len(times) % 2 else
        (round((times[len(times) // 2 - 1] + times[len(times) // 2]) / 2, 3) if times else None),
        "max_s": times[-1] if times else None,
        "min_s": times[0] if times else None,
        "load_before": load_before,
        "load_after": loadavg(),
    }))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["withdrawal", "failover"])
    ap.add_argument("--bin", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--database-url", required=True)
    ap.add_argument("--mode", choices=["single", "cluster"], default="cluster")
    ap.add_argument("--cluster-name")
    ap.add_argument("--nats-url", default="nats://127.0.0.1:4222")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--gap-ms", type=float, default=20.0)
    ap.add_argument("--output", choices=["recording", "none"], default="recording")
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--settle", type=float, default=3.0)
    ap.add_argument("--timeout", type=float, default=60.0)
    a = ap.parse_args()
    clustered = a.what == "failover" or a.mode == "cluster"
    setup = Setup(a.bin, a.work, a.database_url,
                  a.cluster_name if clustered else None, a.nats_url)
    try:
        (withdrawal if a.what == "withdrawal" else failover)(a, setup)
    except BaseException:
        for p in setup.procs:
            if p.alive() or p.popen.returncode not in (None, 0, -9):
                log(f"--- {p.name} log (last lines) ---\n{p.tail()}")
        raise
    finally:
        setup.stop_all()


if __name__ == "__main__":
    main()
