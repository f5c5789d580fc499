#!/usr/bin/env bash
# What recording encounters costs a port: the same load against one
# server, with every request asking for its encounter to be recorded
# (facegate-load --record: durable in SQLite, group-committed, before the
# answer) and without, runs interleaved on the same server, beside this
# disk's own latency of one small write + fdatasync on the same file
# system: after each run on an idle machine (dd oflag=dsync, the mean), and
# during each run under its load (facegate-fsync-probe, 200 appends +
# fdatasync a second: the p99, the floor a durable record under that load
# sits on). Two loads: closed loop (PORTS ports, each waiting for
# its answer: the server saturated, what recording costs in throughput),
# then open loop at each of RATES (Poisson arrivals at a fixed rate below
# saturation: what recording adds to a request's latency at that load).
# Prints each run, then per load the on-minus-off differences paired by
# round (on_off.py), then the server's own histogram of how long answers
# waited for their record once their audit record was durable
# (record_wait.py over facegate_encounter_record_wait_seconds).
#
#   benchmarks/scripts/encounters.sh GALLERY.fgal OUT_DIR
#
# Environment: PORTS (concurrent ports, default 16), SECONDS_PER_RUN
# (default 10), ROUNDS (off/on pairs per load, default 3), TOP_K (default
# 10), RATES (open-loop requests/s, default "1000 1600"; empty for none),
# SERVER_ARGS (more `facegate serve` flags, e.g. "--batch-max-size 16"),
# FACEGATE (a server binary to measure instead of this tree's).
set -euo pipefail
cd "$(dirname "$0")/../.."
gallery=$(realpath "$1")
out=$(realpath -m "$2")
mkdir -p "$out"
ports=${PORTS:-16}
secs=${SECONDS_PER_RUN:-10}
rounds=${ROUNDS:-3}
rates=${RATES-1000 1600}
top_k=${TOP_K:-10}
bin=target/release
cargo build --release --bin facegate --bin facegate-load --bin facegate-fsync-probe >&2
server_bin=${FACEGATE:-$bin/facegate}

rm -rf "$out/data"
# shellcheck disable=SC2086 # SERVER_ARGS is a list of flags
"$server_bin" serve --gallery "$gallery" --engine cpu --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
  --metrics-listen 127.0.0.1:0 --data-dir "$out/data" ${SERVER_ARGS:-} >"$out/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
  addr=$(sed -n 's/^facegate listening on //p' "$out/server.log")
  [ -n "$addr" ] && break
  sleep 0.5
done
[ -n "$addr" ] || { echo "the server did not start" >&2; exit 1; }

# shellcheck source=benchmarks/scripts/fsync_probe.sh
source benchmarks/scripts/fsync_probe.sh # the cwd is the repository root

printf '| run | requests/s | p50 ms | p90 ms | p99 ms | max ms | errors | dd write+fdatasync us | fdatasync p99 us, same load |\n' >"$out/table.md"
printf '|---|---:|---:|---:|---:|---:|---:|---:|---:|\n' >>"$out/table.md"
# One run: LABEL, then facegate-load's mode and its arguments.
run() {
  local label=$1 mode=$2
  shift 2
  "$bin/facegate-fsync-probe" --dir "$out/data" --duration-s "$secs" --json "$out/$label.fsync.json" >/dev/null &
  local probe=$!
  "$bin/facegate-load" "$mode" --addr "http://$addr" --duration-s "$secs" --top-k "$top_k" \
    --label "$label" --json "$out/$label.json" --quiet "$@" >"$out/$label.md"
  wait "$probe"
  dd_us=$(fsync_probe "$out/data")
  python3 - "$out/$label.json" "$label" "$dd_us" "$out/$label.fsync.json" >>"$out/table.md" <<'PY'
import json, sys
path, label, dd_us, probe = sys.argv[1:5]
under_load = json.load(open(probe))["p99_us"]
r = json.load(open(path))
r = r[0] if isinstance(r, list) else r
lat = r["latency_ms"]
errors = r["sent"] - r["ok"]
print(f"| {label} | {r['throughput']:.1f} | {lat['p50']:.2f} | {lat['p90']:.2f} | {lat['p99']:.2f} | {lat['max']:.2f} | {errors} | {dd_us} | {under_load} |")
PY
}

metrics_url=$(sed -n 's/^facegate metrics on //p' "$out/server.log")
# The server's histogram of what recording added, snapshot after each load.
snapshot() { curl -s "$metrics_url" >"$out/metrics-$1.prom"; }
snapshot start
waits=()
for r in $(seq 1 "$rounds"); do
  run "closed-off-$r" closed --ports "$ports"
  run "closed-on-$r" closed --ports "$ports" --record
done
snapshot closed && waits+=("closed=$out/metrics-closed.prom")
for rate in $rates; do
  for r in $(seq 1 "$rounds"); do
    run "open-$rate-off-$r" open --rate "$rate"
    run "open-$rate-on-$r" open --rate "$rate" --record
  done
  snapshot "open-$rate" && waits+=("open-$rate=$out/metrics-open-$rate.prom")
done
curl -s "$metrics_url" | grep '^facegate_encounters_total' | awk '{s+=$2} END {print "encounters recorded:", s}' >>"$out/table.md"
printf '\nThe wait for the record once the audit record was durable (server histogram):\n\n' >>"$out/table.md"
python3 benchmarks/scripts/record_wait.py "$out/metrics-start.prom" "${waits[@]}" >>"$out/table.md"
printf '\nOn minus off, paired by round (benchmarks/scripts/on_off.py):\n\n' >>"$out/table.md"
python3 benchmarks/scripts/on_off.py "$out" >>"$out/table.md"
cat "$out/table.md"
