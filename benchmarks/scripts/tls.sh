#!/usr/bin/env bash
# What TLS costs a port: the same closed-loop load against the same gallery
# over plain text, over TLS, and over mutual TLS (a port certificate checked
# at the handshake and its identity read on every call), runs interleaved.
# The PKI is made here with OpenSSL, as docs/security.md shows, in
# OUT_DIR/pki. Two loads: one port with one request in flight (the latency a
# request pays; the port's certificate names facegate-load's first port,
# port-0000), and PORTS ports (throughput under load, plain against server
# TLS: the load tool's ports share connections, so one port certificate
# cannot speak for all of them).
#
#   benchmarks/scripts/tls.sh GALLERY.fgal OUT_DIR
#
# Environment: PORTS (concurrent ports of the loaded runs, default 16),
# SECONDS_PER_RUN (default 10), ROUNDS (default 2), TOP_K (default 10),
# CONNECTIONS (HTTP/2 connections, default 4).
set -euo pipefail
cd "$(dirname "$0")/../.."
source benchmarks/scripts/serve.sh
gallery=$(realpath "$1")
out=$(realpath -m "$2")
mkdir -p "$out/pki"
ports=${PORTS:-16}
secs=${SECONDS_PER_RUN:-10}
rounds=${ROUNDS:-2}
top_k=${TOP_K:-10}
connections=${CONNECTIONS:-4}
bin=target/release
cargo build --release --bin facegate --bin facegate-load >&2

pki=$out/pki
ec() { openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "$@" 2>/dev/null; }
ec -x509 -keyout "$pki/ca.key" -out "$pki/ca.pem" -days 30 -subj "/CN=bench CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
issue() { # name, extensions
  ec -keyout "$pki/$1.key" -out "$pki/$1.csr" -subj "/CN=$1"
  openssl x509 -req -in "$pki/$1.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 30 -out "$pki/$1.pem" -extfile <(printf '%b' "$2") 2>/dev/null
}
issue server 'subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth'
issue port 'subjectAltName=URI:spiffe://bench.example/facegate/port/port-0000\nextendedKeyUsage=clientAuth'

server=""
stop() { [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true; server=""; }
trap stop EXIT

serve() { # label, extra flags...: sets $addr
  local label=$1; shift
  rm -rf "$out/$label.data"
  start_bg "$out/$label.server.log" "facegate listening on" "$bin/facegate" serve --gallery "$gallery" \
    --engine cpu --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 \
    --data-dir "$out/$label.data" --no-audit "$@"
  server=$pid
  addr=$ready
}

tls=(--tls-cert "$pki/server.pem" --tls-key "$pki/server.key")
run() { # mode, ports
  local mode=$1 n=$2 label="$1-$2p-$r"
  case $mode in
    plain) serve "$label"; client=(--addr "http://$addr") ;;
    tls) serve "$label" "${tls[@]}"; client=(--addr "https://$addr" --tls-ca "$pki/ca.pem") ;;
    mtls) serve "$label" "${tls[@]}" --port-client-ca "$pki/ca.pem"
      client=(--addr "https://$addr" --tls-ca "$pki/ca.pem" --tls-cert "$pki/port.pem" --tls-key "$pki/port.key") ;;
  esac
  "$bin/facegate-load" closed "${client[@]}" --ports "$n" --connections "$connections" \
    --duration-s "$secs" --top-k "$top_k" --label "$label" --json "$out/$label.json" --quiet >"$out/$label.md"
  stop
  table_row "$out/$label.json" "$label" "$out/table.md"
}

printf '| run | requests/s | p50 ms | p99 ms |\n|---|---:|---:|---:|\n' >"$out/table.md"
for r in $(seq 1 "$rounds"); do
  for mode in plain tls mtls; do run "$mode" 1; done
  for mode in plain tls; do run "$mode" "$ports"; done
done
cat "$out/table.md"
