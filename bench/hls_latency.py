#!/usr/bin/env python3
"""Glass-to-glass latency of live HLS outputs, read back from the segments.

The publisher (`gremium publish --blink-color`) flips its camera between dark and
bright on wall-clock boundaries: bright while floor(unix_ms / PERIOD) is odd. For each
playlist given, this polls the media playlist every 50 ms; when a segment is listed,
it notes the time, downloads and decodes it (frames at a constant FPS, scaled to
32x18 grey), and finds the frames where dark turns bright or back. A player at the
live edge can show frame k of a segment at (time listed + k / FPS) at the earliest;
the latency of a flip is that moment minus the wall-clock boundary the publisher
flipped on. Player buffering (e.g. hls.js keeps 3 segments) comes on top of this
and is the player's choice.

Usage: hls_latency.py SECONDS PERIOD_MS FPS NAME=URL [NAME=URL ...]
"""

import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from urllib.parse import urljoin


def fetch(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


def frames(ts_bytes):
    """Mean luma of each frame of an MPEG-TS segment."""
    out = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", "pipe:0", "-map", "0:v:0",
         "-vf", "scale=32:18,format=gray", "-f", "rawvideo", "pipe:1"],
        input=ts_bytes, capture_output=True, check=True).stdout
    size = 32 * 18
    return [sum(out[i:i + size]) / size for i in range(0, len(out) - size + 1, size)]


def watch(name, url, seconds, period_ms, fps, results):
    seen, last_bright, latencies = set(), None, []
    deadline = time.time() + seconds
    first = True
    while time.time() < deadline:
        try:
            playlist = fetch(url).decode()
        except Exception:
            time.sleep(0.05)
            continue
        uris = [l.strip() for l in playlist.splitlines() if l.strip() and not l.startswith("#")]
        if first:
            # What is listed at start is old: only segments listed later are timed.
            seen.update(uris)
            first = False
        for uri in uris:
            if uri in seen:
                continue
            listed = time.time()
            seen.add(uri)
            try:
                lumas = frames(fetch(urljoin(url, uri)))
            except Exception as e:
                print(f"{name}: {uri}: {e}", file=sys.stderr)
                continue
            for k, luma in enumerate(lumas):
                bright = luma > 128
                if last_bright is not None and bright != last_bright:
                    shown = listed + k / fps
                    # The latest boundary at or before `shown` whose phase gives this
                    # colour (odd periods are bright).
                    b = int(shown * 1000) // period_ms
                    if (b % 2 == 1) != bright:
                        b -= 1
                    latencies.append(shown - b * period_ms / 1000)
                last_bright = bright
        time.sleep(0.05)
    results[name] = latencies


def main():
    seconds, period_ms, fps = float(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    targets = [a.split("=", 1) for a in sys.argv[4:]]
    results = {}
    threads = [threading.Thread(target=watch, args=(n, u, seconds, period_ms, fps, results))
               for n, u in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(f"{'output':<28} {'flips':>5} {'median':>8} {'p90':>8} {'min':>8} {'max':>8}")
    for name, _ in targets:
        lat = sorted(results.get(name, []))
        if not lat:
            print(f"{name:<28} {0:>5}  (no flips seen)")
            continue
        p90 = lat[min(len(lat) - 1, int(0.9 * len(lat)))]
        print(f"{name:<28} {len(lat):>5} {statistics.median(lat):>7.2f}s {p90:>7.2f}s "
              f"{lat[0]:>7.2f}s {lat[-1]:>7.2f}s")


if __name__ == "__main__":
    main()
