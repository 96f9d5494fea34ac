#!/usr/bin/env python3
"""Connection exhaustion (issue 18, item 5): /healthz latency while idle and
slow-header clients hold connections open. Loopback only, bounded in count and time.

For each binary given, starts `gremium serve` on a fresh data directory (with the
machine's own open-files limit, as a service would get it), then measures /healthz
the way a load balancer's probe does (a new connection, one request, 2 s timeout,
PROBE_HZ per second):
  1. idle: no attack;
  2. attack: IDLE connections that never send a byte, spread over ADDRS source
     addresses 127.0.100.x (an attacker with many addresses, so the per-client cap
     alone does not stop it), plus SLOW slow-header clients (one header byte per
     second, from 127.0.200.x). A connection the server closes is re-opened after
     a pause, so the pressure stays for the whole measurement.
The attacker processes run at nice 10: they stand in for other machines, and on a
2-core box their churn would otherwise count as the server's latency.
Prints one column per binary: probe latency percentiles, failed probes, and how
many attacker connections were open at the end.

Usage: connections.py [--idle 20000] [--slow 200] [--addrs 100] [--seconds 15]
                      NAME=PATH_TO_GREMIUM [NAME=PATH ...]
The attack runs in processes of at most 8000 connections each, so no process
needs an open-files limit above the machine's default.
"""

import argparse
import asyncio
import multiprocessing
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

PROBE_HZ = 20
PER_PROCESS = 8000


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(sorted_values, p):
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, int(round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


async def probe_once(port):
    t0 = time.perf_counter()
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 2)
        try:
            w.write(b"GET /healthz HTTP/1.1\r\nHost: gremium\r\nConnection: close\r\n\r\n")
            line = await asyncio.wait_for(r.readline(), 2 - (time.perf_counter() - t0))
        finally:
            w.close()
        if b" 200 " in line:
            return time.perf_counter() - t0
    except (OSError, asyncio.TimeoutError, ValueError):
        pass
    return None


async def probes(port, seconds):
    """Latencies (s) of successful probes and the count of failed ones."""
    tasks = []
    start = time.perf_counter()
    i = 0
    while time.perf_counter() - start < seconds:
        tasks.append(asyncio.ensure_future(probe_once(port)))
        i += 1
        await asyncio.sleep(max(0, start + i / PROBE_HZ - time.perf_counter()))
    results = await asyncio.gather(*tasks)
    ok = sorted(r for r in results if r is not None)
    return ok, len(results) - len(ok)


class Attack:
    """One attacker process's share: holds its connections until told to stop."""

    def __init__(self, port, sources, counters):
        self.port, self.sources, self.counters = port, sources, counters
        self.stop = False
        self.gate = asyncio.Semaphore(500)  # connects in flight

    def add(self, name, n):
        with self.counters[name].get_lock():
            self.counters[name].value += n

    async def hold(self, source, slow):
        while not self.stop:
            try:
                async with self.gate:
                    r, w = await asyncio.wait_for(
                        asyncio.open_connection("127.0.0.1", self.port, local_addr=(source, 0)), 5)
            except (OSError, asyncio.TimeoutError):
                self.add("connect_failures", 1)
                await asyncio.sleep(1 + random.random())
                continue
            self.add("open", 1)
            try:
                header = b"GET /healthz HTTP/1.1\r\nHost: gremium\r\nX-Slow: " + b"a" * 10000
                sent = 0
                while not self.stop:
                    if not slow:
                        # Idle: just wait until the server closes it.
                        if not await r.read(4096):
                            break
                        continue
                    w.write(header[sent:sent + 1])
                    sent += 1
                    try:
                        if not await asyncio.wait_for(r.read(4096), 1.0):
                            break  # the server closed it
                    except asyncio.TimeoutError:
                        pass
            except OSError:
                pass
            finally:
                self.add("open", -1)
                w.close()
            if not self.stop:
                self.add("closed_by_server", 1)
                await asyncio.sleep(2 + random.random())

    async def run(self, stop_event):
        tasks = [asyncio.ensure_future(self.hold(src, slow)) for src, slow in self.sources]
        while not stop_event.is_set():
            await asyncio.sleep(0.2)
        self.stop = True
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def attack_process(port, sources, counters, stop_event):
    # The attacker stands in for other machines: its CPU is not the server's to
    # lose, so it yields to the server and the probe on this one.
    os.nice(10)
    asyncio.run(Attack(port, sources, counters).run(stop_event))


def start_attack(port, idle, slow, addrs, counters, stop_event):
    """Attacker processes of at most PER_PROCESS connections each (a process cannot
    raise its own hard open-files limit without CAP_SYS_RESOURCE)."""
    sources = [(f"127.0.100.{i % addrs + 1}", False) for i in range(idle)]
    sources += [(f"127.0.200.{i % 200 + 1}", True) for i in range(slow)]
    random.shuffle(sources)
    procs = []
    for i in range(0, len(sources), PER_PROCESS):
        p = multiprocessing.Process(
            target=attack_process, args=(port, sources[i:i + PER_PROCESS], counters, stop_event))
        p.start()
        procs.append(p)
    return procs


def start_server(binary, data_dir, port, fd_limit):
    def limits():
        resource.setrlimit(resource.RLIMIT_NOFILE, fd_limit)

    log = open(os.path.join(data_dir, "server.log"), "wb")
    p = subprocess.Popen(
        [binary, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", data_dir],
        stdout=subprocess.DEVNULL, stderr=log, preexec_fn=limits,
        env={k: v for k, v in os.environ.items() if not k.startswith("GREMIUM_")})
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 1) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if b" 200 " in s.recv(100):
                    return p
        except OSError:
            pass
        time.sleep(0.2)
    p.kill()
    sys.exit(f"{binary} did not come up")


async def run_one(binary, args, fd_limit):
    data_dir = tempfile.mkdtemp(prefix="gremium-conn-bench-")
    port = free_port()
    server = start_server(binary, data_dir, port, fd_limit)
    try:
        base_ok, base_failed = await probes(port, args.seconds)
        counters = {k: multiprocessing.Value("i", 0)
                    for k in ("open", "closed_by_server", "connect_failures")}
        stop_event = multiprocessing.Event()
        procs = start_attack(port, args.idle, args.slow, args.addrs, counters, stop_event)
        ramp_start = time.perf_counter()
        # Let the attack reach its plateau (bounded).
        last = -1
        while time.perf_counter() - ramp_start < args.ramp:
            await asyncio.sleep(3)
            if counters["open"].value == last:
                break
            last = counters["open"].value
        ramp = time.perf_counter() - ramp_start
        held_before = counters["open"].value
        ok, failed = await probes(port, args.seconds)
        held_after = counters["open"].value
        stop_event.set()
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
        with open(os.path.join(data_dir, "server.log"), "rb") as f:
            log = f.read().decode(errors="replace")
        return {
            "baseline": (base_ok, base_failed),
            "attack": (ok, failed),
            "held": (held_before, held_after),
            "ramp": ramp,
            "closed_by_server": counters["closed_by_server"].value,
            "connect_failures": counters["connect_failures"].value,
            "emfile": log.count("Too many open files"),
            "alive": server.poll() is None,
        }
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(data_dir, ignore_errors=True)


def fmt_ms(v):
    return f"{v * 1000:.1f}" if v == v else "-"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--idle", type=int, default=20000)
    ap.add_argument("--slow", type=int, default=200)
    ap.add_argument("--addrs", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--ramp", type=float, default=60, help="most seconds to build up the attack")
    ap.add_argument("binaries", nargs="+", metavar="NAME=PATH")
    args = ap.parse_args()
    if not (1 <= args.addrs <= 250 and args.idle <= 50000 and args.slow <= 2000):
        sys.exit("--addrs 1..250, --idle at most 50000, --slow at most 2000")
    server_limit = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Each attacker process needs PER_PROCESS descriptors and a few more.
    soft, hard = server_limit
    if hard != resource.RLIM_INFINITY and hard < PER_PROCESS + 200:
        sys.exit(f"the open-files hard limit {hard} is below {PER_PROCESS + 200}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    results = []
    for spec in args.binaries:
        name, _, path = spec.partition("=")
        print(f"[{name}] {path}: {args.idle} idle + {args.slow} slow-header connections "
              f"from {args.addrs}+{min(args.slow, 200)} addresses, server open-files limit "
              f"{server_limit[0]}", file=sys.stderr, flush=True)
        results.append((name, asyncio.run(run_one(path, args, server_limit))))

    rows = []
    for phase in ("baseline", "attack"):
        for label, p in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100)):
            rows.append((f"{phase} {label} ms",
                         [fmt_ms(percentile(r[phase][0], p)) for _, r in results]))
        rows.append((f"{phase} probes ok/failed",
                     [f"{len(r[phase][0])}/{r[phase][1]}" for _, r in results]))
    rows.append(("attack conns open (start/end)",
                 [f"{r['held'][0]}/{r['held'][1]}" for _, r in results]))
    rows.append(("attack ramp s", [f"{r['ramp']:.0f}" for _, r in results]))
    rows.append(("closed by server", [str(r["closed_by_server"]) for _, r in results]))
    rows.append(("attacker connect failures", [str(r["connect_failures"]) for _, r in results]))
    rows.append(("'Too many open files' lines", [str(r["emfile"]) for _, r in results]))
    rows.append(("server alive", [str(r["alive"]) for _, r in results]))
    width = max(len(r[0]) for r in rows) + 2
    cols = [max(12, len(n) + 2) for n, _ in results]
    print("".ljust(width) + "".join(n.rjust(c) for (n, _), c in zip(results, cols)))
    for label, values in rows:
        print(label.ljust(width) + "".join(v.rjust(c) for v, c in zip(values, cols)))


if __name__ == "__main__":
    main()
