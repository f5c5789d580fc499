#!/usr/bin/env python3
"""What recording added inside the server, load by load, from snapshots of
facegate_encounter_record_wait_seconds (the time an answer waited for its
encounter record once its audit record was durable).

    python3 benchmarks/scripts/record_wait.py SNAPSHOT_0 LOAD_1=SNAPSHOT_1 ...

SNAPSHOT_0 is the metrics page before the first load, each LOAD=SNAPSHOT
the page after that load's runs; each load's histogram is the difference
from the snapshot before it. Prints the answers recorded, the share that
waited at most 0.5, 1 and 2 ms, and the p50 and p99 of the wait (linear
within a bucket, so no finer than the bucket edges).
"""

import re
import sys

SERIES = "facegate_encounter_record_wait_seconds_bucket"


def buckets(path):
    """{upper edge in seconds: cumulative count} of one metrics page."""
    found = {}
    pattern = re.compile(SERIES + r'\{le="([^"]+)"\} ([0-9.e+]+)')
    with open(path) as f:
        for line in f:
            m = pattern.match(line)
            if m:
                found[float(m.group(1))] = float(m.group(2))
    return found


def quantile(cumulative, q):
    """The q-quantile of a cumulative histogram, linear within its bucket."""
    edges = sorted(cumulative)
    total = cumulative[edges[-1]]
    if total == 0:
        return float("nan")
    want, low, below = q * total, 0.0, 0.0
    for edge in edges:
        count = cumulative[edge]
        if count >= want:
            if edge == float("inf"):
                return low
            share = (want - below) / (count - below) if count > below else 1.0
            return low + (edge - low) * share
        low, below = edge, count
    return low


def main():
    before = buckets(sys.argv[1])
    print("| load | answers recorded | waited <= 0.5 ms | <= 1 ms | <= 2 ms | wait p50 | wait p99 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for arg in sys.argv[2:]:
        name, path = arg.split("=", 1)
        after = buckets(path)
        diff = {edge: after[edge] - before.get(edge, 0.0) for edge in after}
        before = after
        total = diff.get(float("inf"), 0.0)
        if total == 0:
            continue
        share = lambda edge: f"{100 * diff[edge] / total:.2f} %"  # noqa: E731
        print(f"| {name} | {total:.0f} | {share(0.0005)} | {share(0.001)} | {share(0.002)} "
              f"| {1e3 * quantile(diff, 0.5):.3f} ms | {1e3 * quantile(diff, 0.99):.3f} ms |")


if __name__ == "__main__":
    main()
