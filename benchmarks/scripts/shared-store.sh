#!/usr/bin/env bash
# What recording into the shared PostgreSQL store costs a port, against the
# embedded SQLite store, in one run on this machine: encounters.sh (the
# same load with and without recording, interleaved) once on a server with
# its SQLite file, once on a server given `--encounter-store` of a private
# PostgreSQL started here (Debian's packages, in a temporary directory; as
# the postgres user when run as root; fsync on, synchronous_commit on).
#
#   benchmarks/scripts/shared-store.sh GALLERY.fgal OUT_DIR
#
# Environment: as encounters.sh (PORTS, SECONDS_PER_RUN, ROUNDS, RATES).
set -euo pipefail
cd "$(dirname "$0")/../.."
gallery=$(realpath "$1")
out=$(realpath -m "$2")
mkdir -p "$out"
pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
pg_dir=$(mktemp -d /tmp/facegate-bench-pg-XXXX)
as_pg=()
if [ "$(id -u)" -eq 0 ]; then
  chown postgres:postgres "$pg_dir"
  as_pg=(runuser -u postgres --)
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"${as_pg[@]}" "$pg_bin/initdb" -D "$pg_dir/data" -A trust -U facegate -E UTF8 >"$out/initdb.log"
"${as_pg[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -w -l "$pg_dir/log" \
  -o "-p $port -k $pg_dir -c listen_addresses=127.0.0.1" start >/dev/null
stop_pg() { "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -m fast stop >/dev/null; rm -rf "$pg_dir"; }
trap stop_pg EXIT
trap 'exit 130' INT TERM
psql -h 127.0.0.1 -p "$port" -U facegate -d postgres -qc 'CREATE DATABASE bench'

echo "== SQLite (embedded)" >&2
benchmarks/scripts/encounters.sh "$gallery" "$out/sqlite" >/dev/null
echo "== PostgreSQL (shared)" >&2
SERVER_ARGS="--encounter-store postgres://facegate@127.0.0.1:$port/bench ${SERVER_ARGS:-}" \
  benchmarks/scripts/encounters.sh "$gallery" "$out/postgres" >/dev/null
{
  echo "### SQLite"
  cat "$out/sqlite/table.md"
  echo
  echo "### PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}')"
  cat "$out/postgres/table.md"
} | tee "$out/table.md"
