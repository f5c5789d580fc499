#!/usr/bin/env bash
# What the audit trail costs: the same closed-loop load against the same
# gallery with the trail on (the default) and off (--no-audit), runs
# interleaved, beside this disk's own latency of one small write + fdatasync
# (dd oflag=dsync), measured in the same run on the same file system.
#
#   benchmarks/scripts/audit.sh GALLERY.fgal OUT_DIR
#
# Environment: PORTS (concurrent ports, default 16), SECONDS_PER_RUN
# (default 10), ROUNDS (on/off pairs, default 2), TOP_K (default 10).
set -euo pipefail
cd "$(dirname "$0")/../.."
gallery=$(realpath "$1")
out=$(realpath -m "$2")
mkdir -p "$out"
ports=${PORTS:-16}
secs=${SECONDS_PER_RUN:-10}
rounds=${ROUNDS:-2}
top_k=${TOP_K:-10}
bin=target/release
cargo build --release --bin facegate --bin facegate-load >&2

server=""
metrics=""
stop() { [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true; server=""; }
trap stop EXIT

serve() { # label, extra flags...
  local label=$1; shift
  rm -rf "$out/$label.data"
  "$bin/facegate" serve --gallery "$gallery" --engine cpu --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
    --metrics-listen 127.0.0.1:0 --data-dir "$out/$label.data" "$@" >"$out/$label.server.log" 2>&1 &
  server=$!
  for _ in $(seq 1 120); do
    addr=$(sed -n 's/^facegate listening on //p' "$out/$label.server.log")
    metrics=$(sed -n 's/^facegate metrics on //p' "$out/$label.server.log")
    [ -n "$addr" ] && return 0
    sleep 0.5
  done
  echo "server $label did not start" >&2; exit 1
}

# shellcheck source=benchmarks/scripts/fsync_probe.sh
source benchmarks/scripts/fsync_probe.sh # the cwd is the repository root

printf '| run | requests/s | p50 ms | p99 ms | audit records | commits | records per commit | mean commit us | dd write+fdatasync us |\n' >"$out/table.md"
printf '|---|---:|---:|---:|---:|---:|---:|---:|---:|\n' >>"$out/table.md"
for r in $(seq 1 "$rounds"); do
  for mode in on off; do
    label="$mode-$r"
    if [ "$mode" = on ]; then serve "$label"; else serve "$label" --no-audit; fi
    "$bin/facegate-load" closed --addr "http://$addr" --ports "$ports" --duration-s "$secs" --top-k "$top_k" \
      --label "$label" --json "$out/$label.json" --quiet >"$out/$label.md"
    scrape=$(curl -s "$metrics")
    stop
    dd_us=$(fsync_probe "$out")
    python3 - "$out/$label.json" "$label" "$dd_us" "$scrape" >>"$out/table.md" <<'PY'
import json, re, sys
path, label, dd_us, scrape = sys.argv[1:5]
r = json.load(open(path))
r = r[0] if isinstance(r, list) else r
lat = r["latency_ms"]
def metric(name):
    m = re.search(r"^" + re.escape(name) + r" (\S+)$", scrape, re.M)
    return float(m.group(1)) if m else 0.0
records = metric("facegate_audit_records_total")
commits = metric("facegate_audit_commit_seconds_count")
mean_us = metric("facegate_audit_commit_seconds_sum") / commits * 1e6 if commits else 0.0
per = records / commits if commits else 0.0
print(f"| {label} | {r['throughput']:.1f} | {lat['p50']:.2f} | {lat['p99']:.2f} | {records:.0f} | {commits:.0f} | {per:.2f} | {mean_us:.0f} | {dd_us} |")
PY
  done
done
cat "$out/table.md"
