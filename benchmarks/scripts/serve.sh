# Sourced by the benchmark scripts: starts a facegate process in the
# background and waits for the line that says it is ready.
#
#   start_bg LOG READY_PREFIX CMD...
#
# Sets $pid (the process) and $ready (the rest of the ready line, e.g. the
# address after "facegate listening on"); exits the script when the process
# dies or is not ready within 60 s.
start_bg() {
  local log=$1 prefix=$2
  shift 2
  "$@" >"$log" 2>&1 &
  pid=$!
  for _ in $(seq 1 120); do
    ready=$(sed -n "s/^$prefix //p" "$log")
    [ -n "$ready" ] && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  echo "$1 did not start; its log is $log" >&2
  exit 1
}

# Appends a markdown row `| LABEL | requests/s | p50 ms | p99 ms |` from
# facegate-load's JSON report to TABLE; fails on any error in the run.
#
#   table_row JSON LABEL TABLE
table_row() {
  python3 - "$1" "$2" >>"$3" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
r = r[0] if isinstance(r, list) else r
lat = r["latency_ms"] or {}
errors = sum(r["errors"].values())
assert lat and not errors, f"{sys.argv[2]}: {r['errors']}"
print(f"| {sys.argv[2]} | {r['throughput']:.1f} | {lat['p50']:.3f} | {lat['p99']:.3f} |")
PY
}
