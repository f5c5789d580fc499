#!/usr/bin/env python3
"""What a feature adds, from interleaved off/on runs of facegate-load.

    python3 benchmarks/scripts/on_off.py OUT_DIR

Reads OUT_DIR/LOAD-off-R.json and OUT_DIR/LOAD-on-R.json (R = 1, 2, ...,
each pair run back to back on the same server) and prints, per load, the
on-minus-off difference of each round's p50 and p99 and of its throughput
ratio, then their median, smallest and largest over the rounds.

Why paired rounds and a median: on a shared 2-vCPU machine, one 10 s run's
p99 moves by several ms from one run to the next with nothing changed (a
stall of the virtual CPU lands in one run and not the other). Comparing
each "on" run with the "off" run just before it cancels slow drift, and the
median over rounds is not moved by the one round a stall happened to hit.
"""

import glob
import json
import os
import re
import statistics
import sys


def load(path):
    """One run's summary (facegate-load --json)."""
    with open(path) as f:
        r = json.load(f)
    return r[0] if isinstance(r, list) else r


def pairs(out):
    """{load: [(off, on), ...]} in round order, for rounds with both runs."""
    found = {}
    for path in glob.glob(os.path.join(out, "*-off-*.json")):
        m = re.fullmatch(r"(.+)-off-(\d+)\.json", os.path.basename(path))
        if not m:
            continue
        on = os.path.join(out, f"{m.group(1)}-on-{m.group(2)}.json")
        if os.path.exists(on):
            found.setdefault(m.group(1), []).append((int(m.group(2)), load(path), load(on)))
    return {k: [(a, b) for _, a, b in sorted(v, key=lambda t: t[0])] for k, v in found.items()}


def spread(values, unit):
    """Median, then smallest and largest, of `values`."""
    return (f"{statistics.median(values):+.2f}{unit} "
            f"({min(values):+.2f} to {max(values):+.2f})")


def main():
    out = sys.argv[1]
    print("| load | rounds | p50 added, median (range) | p99 added, median (range) "
          "| throughput on / off, median |")
    print("|---|---:|---|---|---:|")
    for name, runs in sorted(pairs(out).items()):
        p50 = [on["latency_ms"]["p50"] - off["latency_ms"]["p50"] for off, on in runs]
        p99 = [on["latency_ms"]["p99"] - off["latency_ms"]["p99"] for off, on in runs]
        ratio = [on["throughput"] / off["throughput"] for off, on in runs]
        print(f"| {name} | {len(runs)} | {spread(p50, ' ms')} | {spread(p99, ' ms')} "
              f"| {statistics.median(ratio):.2f}x |")


if __name__ == "__main__":
    main()
