#!/usr/bin/env python3
"""CPU seconds per thread of a running process over a time window.

    bench/threads.py PID SECS [MEDIA_SECS]

Samples utime + stime of every thread (/proc/PID/task/*/stat) at the start and the
end of the window and prints, per thread name (GStreamer names streaming threads
after their element, e.g. `video-enc:src`, `aggregator`…), the CPU seconds spent in
the window, summed over threads of the same name, highest first. With MEDIA_SECS
(default: SECS) it also prints CPU-s per media-s, the benchmark's unit.
Threads that start or end inside the window count from their first or to their last
sample only. Used to find where the reference job's CPU goes (README, benchmark).
"""
import os
import sys
import time
from collections import defaultdict

TICK = os.sysconf("SC_CLK_TCK")


def sample(pid):
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
        except OSError:
            continue  # the thread ended meanwhile
        # comm is in parentheses and may contain spaces.
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        out[tid] = (name, (int(fields[11]) + int(fields[12])) / TICK)
    return out


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    pid, secs = int(sys.argv[1]), float(sys.argv[2])
    media = float(sys.argv[3]) if len(sys.argv) > 3 else secs
    before = sample(pid)
    time.sleep(secs)
    after = sample(pid)
    per_name = defaultdict(float)
    for tid, (name, cpu) in after.items():
        per_name[name] += cpu - before.get(tid, (name, 0.0))[1]
    total = sum(per_name.values())
    print(f"{'thread':<24} {'CPU-s':>8} {'CPU-s/media-s':>14}")
    for name, cpu in sorted(per_name.items(), key=lambda kv: -kv[1]):
        if cpu > 0:
            print(f"{name:<24} {cpu:8.2f} {cpu / media:14.3f}")
    print(f"{'total':<24} {total:8.2f} {total / media:14.3f}")


if __name__ == "__main__":
    main()
