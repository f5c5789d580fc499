#!/usr/bin/env bash
# Scoped (manifest, 1:few) requests while national 1:N load saturates the
# server: do they queue behind it? In one run, against one server.
#
# It starts `facegate serve --engine cpu` on a synthetic gallery, and
# facegate-load stages a manifest of TRAVELLERS travellers on the back
# office (subjects of the gallery's population; the scoped requests send
# captures of them, from one gate port, Poisson at SCOPED_RATE/s). Then:
#   (a) idle:       the scoped requests alone;
#   (b) saturated:  the same scoped requests while NATIONAL_PORTS ports in
#                   closed loop keep the national dispatcher busy without a
#                   pause (each port sends its next capture when its answer
#                   comes, so a batch is always waiting);
#   (c) cpu-bound:  the same scoped requests beside two CPU-bound processes
#                   that are not facegate (no national request at all): the
#                   cost of sharing two cores, without any queue.
# Each step is WARMUP_S unrecorded then STEP_S measured; ROUNDS repeats the
# three. The server's metrics are scraped around each step, for the
# national requests' time in the dispatcher queue, the batches formed, the
# requests refused, and how busy the national engine was (scoped searches
# never pass through it, nor through the queue).
# The claim: scoped searches run on the blocking pool, not through the
# dispatcher, so their p99 in (b) stays near (a); what it does gain is CPU
# sharing, which (c) measures apart.
#
# Usage: benchmarks/scripts/manifest-under-load.sh OUT_DIR
# Env: SUBJECTS (420000: about 1M templates, synthesised with SEED and built
#      into OUT_DIR/gallery.fgal on first use and reused after; "demo": the
#      server's built-in 20,000-subject demo gallery), SEED (7),
#      TRAVELLERS (420), SCOPED_RATE (50), NATIONAL_PORTS (16), STEP_S (20),
#      WARMUP_S (3), ROUNDS (1), SERVE_FLAGS (extra `facegate serve` flags).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$(realpath -m "$1")
subjects=${SUBJECTS:-420000}
seed=${SEED:-7}
travellers=${TRAVELLERS:-420}
rate=${SCOPED_RATE:-50}
ports=${NATIONAL_PORTS:-16}
step=${STEP_S:-20}
warmup=${WARMUP_S:-3}
rounds=${ROUNDS:-1}
bin=${CARGO_TARGET_DIR:-target}/release
mkdir -p "$out"
cargo build --release -p facegate-server --bin facegate -p facegate-benchmarks --bin facegate-load \
  -p facegate-index-tools --bin facegate-index >&2

server="" hogs=()
stop_hogs() { for h in "${hogs[@]}"; do kill "$h" 2>/dev/null || true; done; hogs=(); }
stop() { stop_hogs; [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true; server=""; }
trap stop EXIT

# The gallery, and the population facegate-load draws travellers and probes from.
gallery_flags=() synth_flags=()
if [ "$subjects" = demo ]; then
  synth_flags=(--synth-subjects 20000 --synth-seed 1)
else
  gallery=$out/gallery-$subjects-$seed.fgal
  if [ ! -f "$gallery" ]; then
    "$bin/facegate-index" synth --out-dir "$out/pop" --subjects "$subjects" --seed "$seed" --probes 10 --force >&2
    "$bin/facegate-index" build --embeddings "$out/pop/gallery.npy" --ids "$out/pop/gallery_ids.txt" \
      --out "$gallery.tmp" --model-tag "synthetic-$seed" --force >&2
    mv "$gallery.tmp" "$gallery"
    rm -rf "$out/pop"
  fi
  gallery_flags=(--gallery "$gallery")
  synth_flags=(--synth-subjects "$subjects" --synth-seed "$seed")
fi

{ date -u +%FT%TZ; git rev-parse --short HEAD; nproc; grep -m1 'model name' /proc/cpuinfo; } >"$out/machine.txt"
rm -rf "$out/data"
"$bin/facegate" serve "${gallery_flags[@]}" --engine cpu --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
  --metrics-listen 127.0.0.1:0 --data-dir "$out/data" ${SERVE_FLAGS:-} >"$out/server.log" 2>&1 &
server=$!
for _ in $(seq 1 240); do
  addr=$(sed -n 's/^facegate listening on //p' "$out/server.log")
  admin=$(sed -n 's/^facegate admin listening on //p' "$out/server.log")
  metrics=$(sed -n 's/^facegate metrics on //p' "$out/server.log")
  [ -n "$addr" ] && [ -n "$admin" ] && break
  kill -0 "$server" 2>/dev/null || { cat "$out/server.log" >&2; exit 1; }
  sleep 0.5
done
[ -n "$addr" ] || { echo "the server did not start" >&2; exit 1; }

load() { # label, extra facegate-load flags...
  local label=$1; shift
  curl -s "$metrics" >"$out/$label.before.prom"
  "$bin/facegate-load" scoped --addr "http://$addr" --admin-addr "http://$admin" --rate "$rate" \
    --manifest-travellers "$travellers" "${synth_flags[@]}" --duration-s "$step" --warmup-s "$warmup" \
    --label "$label" --json "$out/$label.json" --quiet "$@" | tee "$out/$label.md"
  curl -s "$metrics" >"$out/$label.after.prom"
}

for r in $(seq 1 "$rounds"); do
  load "idle-$r"
  load "saturated-$r" --national-ports "$ports"
  for _ in 1 2; do (while :; do :; done) & hogs+=($!); done
  load "cpu-bound-$r"
  stop_hogs
done
stop

python3 - "$out" "$rounds" "$rate" "$ports" <<'PY'
import json, os, re, sys
out, rounds, rate, ports = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]

def metric(text, name, **labels):
    """Sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    for m in re.finditer(r"^" + re.escape(name) + r"(?:\{(.*)\})? (\S+)$", text, re.M):
        have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(m.group(2))
    return total

def delta(label, name, **labels):
    before = open(f"{out}/{label}.before.prom").read()
    after = open(f"{out}/{label}.after.prom").read()
    return metric(after, name, **labels) - metric(before, name, **labels)

def cell(r):
    l = r.get("latency_ms") or {}
    errors = sum(r["errors"].values())
    return (f"{r['throughput']:.1f} | {l.get('p50', float('nan')):.2f} | {l.get('p90', float('nan')):.2f} | "
            f"{l.get('p99', float('nan')):.2f} | {l.get('max', float('nan')):.2f} | "
            f"{100 * r['shed_fraction']:.2f} % | {100 * r['deadline_fraction']:.2f} % | {errors}")

rows = ["| step | class | offered | answered/s | p50 ms | p90 ms | p99 ms | max ms | shed | deadline | errors |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
notes = []
for r in range(1, rounds + 1):
    for step in ("idle", "saturated", "cpu-bound"):
        label = f"{step}-{r}"
        for run in json.load(open(f"{out}/{label}.json")):
            offered = f"{run['offered_rate']:g}/s" if run["offered_rate"] else f"closed, {run['ports']} ports"
            rows.append(f"| {label} | {run['class']} | {offered} | {cell(run)} |")
        waits = delta(label, "facegate_queue_wait_seconds_count")
        wait_ms = 1e3 * delta(label, "facegate_queue_wait_seconds_sum") / waits if waits else 0.0
        batches = delta(label, "facegate_batch_size_count")
        probes = delta(label, "facegate_batch_size_sum")
        identify = delta(label, "facegate_requests_total", rpc="Identify")
        # The scrapes just before and after the step bound its wall time.
        wall = os.path.getmtime(f"{out}/{label}.after.prom") - os.path.getmtime(f"{out}/{label}.before.prom")
        busy = delta(label, "facegate_engine_duration_seconds_sum") / wall
        shed = delta(label, "facegate_shed_requests_total")
        scoped = delta(label, "facegate_scoped_searches_total")
        matched = delta(label, "facegate_scoped_searches_total", outcome="match")
        notes.append(f"- {label} (warm-up included): {identify:.0f} Identify requests, {scoped:.0f} of them "
                     f"scoped ({matched:.0f} matched their traveller); {waits:.0f} searched through the "
                     f"dispatcher queue (mean wait {wait_ms:.1f} ms, {batches:.0f} batches of "
                     f"{probes / batches if batches else 0:.1f} probes), {shed:.0f} refused at its door; "
                     f"the national engine busy {100 * busy:.0f} % of the step's {wall:.1f} s")
text = "\n".join(rows) + "\n\n" + "\n".join(notes) + "\n"
open(f"{out}/summary.md", "w").write(text)
print(text)
PY
