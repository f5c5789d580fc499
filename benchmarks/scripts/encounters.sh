#!/usr/bin/env bash
# What recording encounters costs a port: the same closed-loop load against
# one server, with every request asking for its encounter to be recorded
# (facegate-load --record: durable in SQLite, group-committed, before the
# answer) and without, runs interleaved on the same server, beside this
# disk's own latency of one small write + fdatasync (dd oflag=dsync) on the
# same file system.
#
#   benchmarks/scripts/encounters.sh GALLERY.fgal OUT_DIR
#
# Environment: PORTS (concurrent ports, default 16), SECONDS_PER_RUN
# (default 10), ROUNDS (off/on pairs, default 3), TOP_K (default 10).
set -euo pipefail
cd "$(dirname "$0")/../.."
gallery=$(realpath "$1")
out=$(realpath -m "$2")
mkdir -p "$out"
ports=${PORTS:-16}
secs=${SECONDS_PER_RUN:-10}
rounds=${ROUNDS:-3}
top_k=${TOP_K:-10}
bin=target/release
cargo build --release --bin facegate --bin facegate-load >&2

rm -rf "$out/data"
"$bin/facegate" serve --gallery "$gallery" --engine cpu --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
  --metrics-listen 127.0.0.1:0 --data-dir "$out/data" >"$out/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
  addr=$(sed -n 's/^facegate listening on //p' "$out/server.log")
  [ -n "$addr" ] && break
  sleep 0.5
done
[ -n "$addr" ] || { echo "the server did not start" >&2; exit 1; }

fsync_probe() {
  local f="$out/data/fsync.probe"
  dd if=/dev/zero of="$f" bs=512 count=2000 oflag=dsync 2>&1 | sed -n 's/.* copied, \([0-9.]*\) s.*/\1/p' \
    | awk '{printf "%.1f\n", $1 / 2000 * 1e6}'
  rm -f "$f"
}

printf '| run | requests/s | p50 ms | p90 ms | p99 ms | max ms | errors | dd write+fdatasync us |\n' >"$out/table.md"
printf '|---|---:|---:|---:|---:|---:|---:|---:|\n' >>"$out/table.md"
for r in $(seq 1 "$rounds"); do
  for mode in off on; do
    label="record-$mode-$r"
    flag=""; [ "$mode" = on ] && flag="--record"
    "$bin/facegate-load" closed --addr "http://$addr" --ports "$ports" --duration-s "$secs" --top-k "$top_k" \
      --label "$label" --json "$out/$label.json" --quiet $flag >"$out/$label.md"
    dd_us=$(fsync_probe)
    python3 - "$out/$label.json" "$label" "$dd_us" >>"$out/table.md" <<'PY'
import json, sys
path, label, dd_us = sys.argv[1:4]
r = json.load(open(path))
r = r[0] if isinstance(r, list) else r
lat = r["latency_ms"]
errors = r["sent"] - r["ok"]
print(f"| {label} | {r['throughput']:.1f} | {lat['p50']:.2f} | {lat['p90']:.2f} | {lat['p99']:.2f} | {lat['max']:.2f} | {errors} | {dd_us} |")
PY
  done
done
curl -s "$(sed -n 's/^facegate metrics on //p' "$out/server.log")" | grep '^facegate_encounters_total' | awk '{s+=$2} END {print "encounters recorded:", s}' >>"$out/table.md"
cat "$out/table.md"
