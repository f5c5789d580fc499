#!/usr/bin/env bash
# Cross-port batching on against off, on one gallery, in one run.
#
# For each setting it starts `facegate serve` (CPU engine), sweeps open-loop
# Poisson load over rising rates with facegate-load, and finds the sustained
# throughput: the highest answered rate of a step whose p99 is within the
# budget with under 1 % of requests refused. Then it offers 3x the batching
# server's sustainable rate and reports the p99 of accepted requests and the
# fraction shed. The two servers run one after the other, never together.
#
# Usage: benchmarks/scripts/batching.sh GALLERY.fgal PROBES.npy OUT_DIR
# Env: BUDGET_MS (50), STEP_S (10), RATES_ON, RATES_OFF (comma lists),
#      MAX_QUEUE_WAIT_MS and BATCH_TIME_TARGET_MS (half the budget each: a
#      request waits at most about one in the queue and one in its batch).
set -euo pipefail
gallery=$1 probes=$2 out=$3
budget=${BUDGET_MS:-50}
step=${STEP_S:-10}
rates_on=${RATES_ON:-40,80,120,160,200,240,280,320}
rates_off=${RATES_OFF:-10,20,30,40,50,60}
qwait=${MAX_QUEUE_WAIT_MS:-$((budget / 2))}
btime=${BATCH_TIME_TARGET_MS:-$((budget / 2))}
bin=$(cd "$(dirname "$0")/../.." && pwd)/target/release
mkdir -p "$out"
cargo build --release --bin facegate --bin facegate-load >&2

serve() { # label, extra flags...
  local label=$1; shift
  : >"$out/$label.server.log"
  "$bin/facegate" serve --gallery "$gallery" --engine cpu --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
    --metrics-listen 127.0.0.1:0 --data-dir "$out/$label.data" --max-queue-wait-ms "$qwait" "$@" \
    >"$out/$label.server.log" 2>&1 &
  server=$!
  for _ in $(seq 1 120); do
    addr=$(sed -n 's/^facegate listening on //p' "$out/$label.server.log")
    [ -n "$addr" ] && return 0
    sleep 0.5
  done
  echo "server $label did not start" >&2; exit 1
}
stop() { kill "$server"; wait "$server" || true; }

sweep() { # label, rates
  "$bin/facegate-load" sweep --addr "http://$addr" --rates "$2" --duration-s "$step" \
    --probes "$probes" --label "$1" --json "$out/$1.json" --svg "$out/$1.svg" --quiet \
    | tee "$out/$1.md"
}

sustained() { # json -> highest achieved/s within budget
  python3 - "$1" "$budget" <<'PY'
import json, sys
runs = json.load(open(sys.argv[1])); budget = float(sys.argv[2])
def p99(r): return (r.get("latency_ms") or {}).get("p99", float("inf"))
def refused(r): return r["shed_fraction"] + r["deadline_fraction"] + r["error_fraction"]
ok = [r for r in runs if p99(r) <= budget and refused(r) < 0.01 and r["dropped"] == 0]
print(max((r["throughput"] for r in ok), default=0.0))
PY
}

peak() { # json -> highest answered/s of any step
  python3 -c 'import json,sys; print(max((r["throughput"] for r in json.load(open(sys.argv[1]))), default=0.0))' "$1"
}

serve on --batch-time-target-ms "$btime"  # batching: up to 32 probes, as many as fit the time target
sweep batching-on "$rates_on"
on=$(sustained "$out/batching-on.json")
# 3x the sustainable load; when no step met the budget, 3x the peak answered
# rate instead (the summary says which).
rm -f "$out/overload-basis.txt"
basis=$(python3 -c "print($on if $on > 0 else 0)")
[ "$basis" = "0" ] && basis=$(peak "$out/batching-on.json") && echo "no step within budget: overload is 3x the peak rate $basis/s" >"$out/overload-basis.txt"
over=$(python3 -c "print(max(1, round(3 * $basis)))")
"$bin/facegate-load" open --addr "http://$addr" --rate "$over" --duration-s $((2 * step)) \
  --probes "$probes" --label "overload-3x" --json "$out/overload.json" --quiet | tee "$out/overload.md"
stop

serve off --batch-max-size 1  # batching off
sweep batching-off "$rates_off"
off=$(sustained "$out/batching-off.json")
stop

python3 - "$out" "$on" "$off" "$budget" <<'PY'
import json, sys
out, on, off, budget = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
o = json.load(open(f"{out}/overload.json"))
p99 = (o.get("latency_ms") or {}).get("p99", float("nan"))
errors = sum(o["errors"].values())
lines = [
    f"sustained throughput with p99 <= {budget:g} ms: batching on {on:.1f}/s, off {off:.1f}/s, "
    f"ratio {on / off if off else float('inf'):.2f}x",
    f"3x load ({o['offered_rate']:.0f}/s offered): {o['throughput']:.1f}/s answered, accepted p99 "
    f"{p99:.1f} ms ({p99 / budget:.2f}x budget), shed {o['shed']} of {o['sent']} "
    f"({100 * o['shed_fraction']:.1f} %), deadline {o['deadline']}, errors {errors}",
]
import os
if os.path.exists(f"{out}/overload-basis.txt"):
    lines.append(open(f"{out}/overload-basis.txt").read().strip())
open(f"{out}/summary.txt", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
