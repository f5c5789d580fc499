#!/usr/bin/env bash
# What the router costs a port: the same closed-loop load against one server
# over the whole gallery ("single"), a router in front of that one server
# ("route-1": the hop and the merge alone), and a router over the gallery
# split into 3 shards, one server each ("route-3"), runs interleaved. One
# load with one request in flight (the latency a request pays) and one with
# PORTS ports (throughput). On one machine the shards share its cores, so
# route-3 shows the fan-out's overhead, not the capacity of 3 machines
# (docs/scale.md models that).
#
#   benchmarks/scripts/router.sh GALLERY.fgal OUT_DIR
#
# Environment: PORTS (default 16), SECONDS_PER_RUN (default 10), ROUNDS
# (default 2), TOP_K (default 10), CONNECTIONS (default 4).
set -euo pipefail
cd "$(dirname "$0")/../.."
source benchmarks/scripts/serve.sh
gallery=$(realpath "$1")
out=$(realpath -m "$2")
mkdir -p "$out"
ports=${PORTS:-16}
secs=${SECONDS_PER_RUN:-10}
rounds=${ROUNDS:-2}
top_k=${TOP_K:-10}
connections=${CONNECTIONS:-4}
bin=target/release
cargo build --release --bin facegate --bin facegate-load --bin facegate-index >&2
"$bin/facegate-index" shard --gallery "$gallery" --shards 3 --out-dir "$out/shards" --stem g --force >&2

pids=()
stop() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done; pids=(); }
trap stop EXIT

serve() { # label, gallery, shard K/N: sets $replica and $replica_admin
  local data="$out/$1.data"
  rm -rf "$data"
  start_bg "$out/$1.server.log" "facegate listening on" "$bin/facegate" serve --gallery "$2" --shard "$3" \
    --engine cpu --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 \
    --data-dir "$data" --no-audit
  pids+=("$pid")
  replica="${3%/*}=http://$ready"
  replica_admin="${3%/*}=http://$(sed -n 's/^facegate admin listening on //p' "$out/$1.server.log")"
}

route() { # label, shards, replica flags...: sets $addr
  local label=$1 shards=$2
  shift 2
  rm -rf "$out/$label.router"
  start_bg "$out/$label.router.log" "facegate route listening on" "$bin/facegate" route --shards "$shards" "$@" \
    --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 \
    --data-dir "$out/$label.router" --no-audit
  pids+=("$pid")
  addr=$ready
}

run() { # mode, ports
  local mode=$1 n=$2 label="$1-$2p-$r"
  case $mode in
    single) serve "$label" "$gallery" 0/1; addr=${replica#0=http://} ;;
    route-1) serve "$label" "$gallery" 0/1; route "$label" 1 --replica "$replica" --replica-admin "$replica_admin" ;;
    route-3)
      flags=()
      for k in 0 1 2; do
        serve "$label-s$k" "$out/shards/g-$k-of-3.fgal" "$k/3"
        flags+=(--replica "$replica" --replica-admin "$replica_admin")
      done
      route "$label" 3 "${flags[@]}" ;;
  esac
  "$bin/facegate-load" closed --addr "http://$addr" --ports "$n" --connections "$connections" \
    --duration-s "$secs" --top-k "$top_k" --label "$label" --json "$out/$label.json" --quiet >"$out/$label.md"
  stop
  table_row "$out/$label.json" "$label" "$out/table.md"
}

printf '| run | requests/s | p50 ms | p99 ms |\n|---|---:|---:|---:|\n' >"$out/table.md"
for r in $(seq 1 "$rounds"); do
  for mode in single route-1 route-3; do run "$mode" 1; done
  for mode in single route-1 route-3; do run "$mode" "$ports"; done
done
cat "$out/table.md"
