#!/usr/bin/env python3
"""Consent withdrawal latency against a running `gremium serve` (see bench/withdrawal.sh).

One participant (the subject) publishes and consents; a recording runs, so each
withdrawal has a real gate to close in the pipeline. The subject's consent is then
withdrawn and granted again N times (PUT …/consent with their join token, one
keep-alive connection, one request at a time), first with nothing else going on
(idle), then while CHURN other participants keep joining and leaving the same
meeting (`gremium publish`, 1-3 s on air each, then SIGTERM, which makes the
publisher leave with WHIP DELETE).

Each request is timed from just before it is sent until its whole answer has been
read. Withdrawals are what the table reports; grants are timed too and reported in
the JSON. A withdrawal counts as an error unless it answers 200 with the consent now
in force false/false, `changed: true` and (when a recording runs) a `media_time_ns`,
the program time at which the gate closed: the proof that it closed in the pipeline
before the answer.

Prints one JSON object on stdout; progress goes to stderr. Python stdlib only.
"""

import argparse
import http.client
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse


def log(msg):
    print(f"[withdrawal] {msg}", file=sys.stderr, flush=True)


class Api:
    """A keep-alive HTTP/1.1 connection to the server."""

    def __init__(self, base):
        u = urllib.parse.urlsplit(base)
        self.host, self.port = u.hostname, u.port
        self.conn = None

    def _connect(self):
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        self.conn.connect()

    def request(self, method, path, token, body=None):
        """(status, parsed JSON or None, seconds from send to the end of the answer)."""
        if self.conn is None:
            self._connect()
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {token}"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        t0 = time.perf_counter()
        try:
            self.conn.request(method, path, body=data, headers=headers)
            r = self.conn.getresponse()
            raw = r.read()
        except (OSError, http.client.HTTPException):
            # A dropped connection is an error of this request; the next one reconnects.
            self.conn.close()
            self.conn = None
            raise
        elapsed = time.perf_counter() - t0
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        return r.status, parsed, elapsed


def must(api, method, path, token, body=None, want=(200, 201)):
    status, parsed, _ = api.request(method, path, token, body)
    if status not in want:
        raise SystemExit(f"{method} {path} answered {status}: {parsed}")
    return parsed


def wait_until(what, pred, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


def percentile(sorted_ms, p):
    """Nearest-rank percentile of an ascending list."""
    if not sorted_ms:
        return None
    k = max(0, min(len(sorted_ms) - 1, -(-p * len(sorted_ms) // 100) - 1))
    return sorted_ms[int(k)]


def summary(samples_ms, errors):
    s = sorted(samples_ms)
    return {
        "n": len(s),
        "errors": errors,
        "p50_ms": percentile(s, 50),
        "p95_ms": percentile(s, 95),
        "p99_ms": percentile(s, 99),
        "max_ms": s[-1] if s else None,
    }


# In front of each publisher: SIGTERM to it when the thread that started it ends
# (PR_SET_PDEATHSIG, kept across exec), so none outlives this script even if the
# script is killed. util-linux `setpriv`, instead of a preexec_fn, which is unsafe
# in a process with threads.
DIE_WITH_PARENT = ["setpriv", "--pdeathsig", "TERM", "--"] if shutil.which("setpriv") else []


class Publisher:
    """One `gremium publish` process of one participant."""

    def __init__(self, args, token, tone):
        self.proc = subprocess.Popen(
            DIE_WITH_PARENT + [
                args.bin, "publish", "--server", args.base, "--meeting", args.meeting,
                "--ice-address", "127.0.0.1", "--width", "320", "--height", "180",
                "--fps", "15", "--tone", str(tone),
                # Until SIGTERM, which makes it leave with WHIP DELETE (with a
                # duration, SIGTERM would kill it without leaving).
                "--duration", "0",
            ],
            # The token through the environment keeps it out of the process list.
            env={**os.environ, "GREMIUM_JOIN_TOKEN": token, "RUST_LOG": "warn"},
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    def wait_publishing(self, timeout):
        """True once the publisher printed that it publishes (its WHIP answer came)."""
        found = threading.Event()

        def read():
            for line in self.proc.stdout:
                if line.startswith("publishing to meeting"):
                    found.set()
            # EOF: the process ended.

        threading.Thread(target=read, daemon=True).start()
        return found.wait(timeout)

    def leave(self, timeout=15):
        """SIGTERM (the publisher leaves with WHIP DELETE); True if it exited cleanly."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout) == 0
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return False


def churn(args, token, index, stop, stats, lock):
    """Join, stay 1-3 s, leave; again until `stop` is set."""
    rng = random.Random(index)
    while not stop.is_set():
        p = Publisher(args, token, 300 + 40 * index)
        joined = p.wait_publishing(20)
        if joined:
            # At least a second on air even when the phase ends: the publisher installs
            # its SIGTERM handler only after its answer, and a SIGTERM before that
            # would kill it without its WHIP DELETE.
            time.sleep(1.0)
            stop.wait(rng.uniform(0.0, 2.0))
        left = p.leave()
        with lock:
            stats["cycles"] += 1
            stats["failed_join"] += not joined
            stats["failed_leave"] += joined and not left
        stop.wait(rng.uniform(0.0, 0.3))


def toggle_phase(api, args, subject, token, n, gap_s, recording):
    """N withdrawals, each followed by a grant; returns the phase's summaries."""
    path = f"/api/v1/meetings/{args.meeting}/participants/{subject}/consent"
    withdraw_ms, grant_ms = [], []
    withdraw_err = grant_err = 0
    notes = {}
    for _ in range(n):
        for wanted, samples in ((False, withdraw_ms), (True, grant_ms)):
            body = {"recording": wanted, "streaming": wanted}
            try:
                status, answer, secs = api.request("PUT", path, token, body)
            except (OSError, http.client.HTTPException) as e:
                status, answer, secs = None, None, None
                notes[type(e).__name__] = notes.get(type(e).__name__, 0) + 1
            good = (
                status == 200
                and isinstance(answer, dict)
                and answer.get("changed") is True
                and answer.get("consent") == body
                and (not recording or answer.get("media_time_ns") is not None)
            )
            if good:
                samples.append(secs * 1000.0)
            else:
                if status is not None:
                    key = f"status {status}" if status != 200 else "200 without a closed gate"
                    notes[key] = notes.get(key, 0) + 1
                if wanted:
                    grant_err += 1
                else:
                    withdraw_err += 1
            time.sleep(gap_s)
    return {
        "withdraw": summary(withdraw_ms, withdraw_err),
        "grant": summary(grant_ms, grant_err),
        "error_kinds": notes,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--base", required=True)
    ap.add_argument("--token", required=True, help="moderator token")
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--churn", type=int, default=8)
    ap.add_argument("--gap-ms", type=float, default=20.0)
    ap.add_argument("--output", choices=["recording", "none"], default="recording")
    args = ap.parse_args()
    api = Api(args.base)
    mod = args.token

    meeting = must(api, "POST", "/api/v1/meetings", mod, {"title": "Withdrawal bench"})
    args.meeting = meeting["id"]
    people = []
    for i in range(1 + args.churn):
        name = "Subject" if i == 0 else f"Churn {i}"
        p = must(api, "POST", f"/api/v1/meetings/{args.meeting}/participants", mod,
                 {"display_name": name})
        pid, join = p["participant"]["id"], p["join_token"]
        # Everyone consents, so every join and leave changes what the recording shows.
        must(api, "PUT", f"/api/v1/meetings/{args.meeting}/participants/{pid}/consent", join,
             {"recording": True, "streaming": True})
        people.append((pid, join))
    subject, subject_token = people[0]

    log("subject publishes")
    pub = Publisher(args, subject_token, 440)
    try:
        result = measure(api, args, pub, subject, subject_token, people)
    finally:
        subject_left = pub.leave()
    result["subject_left_cleanly"] = subject_left
    print(json.dumps(result))


def measure(api, args, pub, subject, subject_token, people):
    """Everything after the subject's publisher started; returns the result object."""
    mod = args.token
    if not pub.wait_publishing(30):
        raise SystemExit("the subject's publisher never got a WHIP answer")

    def subject_publishing():
        ps = must(api, "GET", f"/api/v1/meetings/{args.meeting}/participants", mod)
        return any(p["id"] == subject and p["publishing"] for p in ps)

    wait_until("the subject's media at the media plane", subject_publishing, 30)
    recording = args.output == "recording"
    if recording:
        rec = must(api, "POST", f"/api/v1/meetings/{args.meeting}/recordings", mod)

        def active():
            rs = must(api, "GET", f"/api/v1/meetings/{args.meeting}/recordings", mod)
            states = [r["state"] for r in rs if r["id"] == rec["id"]]
            if states and states[0] in ("failed", "finished"):
                raise SystemExit(f"the recording ended before the measurement: {rs}")
            return states == ["active"]

        wait_until("an active recording", active, 30)
    time.sleep(2)

    gap = args.gap_ms / 1000.0
    log("warm-up")
    toggle_phase(api, args, subject, subject_token, 20, gap, recording)
    log(f"idle: {args.n} withdrawals")
    t0 = time.monotonic()
    idle = toggle_phase(api, args, subject, subject_token, args.n, gap, recording)
    idle["seconds"] = round(time.monotonic() - t0, 1)

    stop, lock = threading.Event(), threading.Lock()
    cstats = {"cycles": 0, "failed_join": 0, "failed_leave": 0}
    threads = [
        threading.Thread(target=churn, args=(args, people[i][1], i, stop, cstats, lock))
        for i in range(1, 1 + args.churn)
    ]
    for t in threads:
        t.start()
    try:
        time.sleep(5)  # let the churn get going: joins take about half a second each
        log(f"churn: {args.n} withdrawals while {args.churn} publishers join and leave")
        with lock:
            before = dict(cstats)
        t0 = time.monotonic()
        churned = toggle_phase(api, args, subject, subject_token, args.n, gap, recording)
        churned["seconds"] = round(time.monotonic() - t0, 1)
        with lock:
            for k, v in cstats.items():
                churned[f"churn_{k}"] = v - before[k]
    finally:
        # The churners leave (SIGTERM) whether or not the phase went through.
        stop.set()
        for t in threads:
            t.join()

    if recording:
        must(api, "POST", f"/api/v1/recordings/{rec['id']}/stop", mod, want=(200, 202))
    return {"idle": idle, "churn": churned, "output": args.output, "gap_ms": args.gap_ms}


if __name__ == "__main__":
    main()
