# Sourced by the benchmark scripts: fsync_probe DIR prints the mean
# microseconds of one 512-byte write + fdatasync (dd oflag=dsync, 2,000 of
# them) on the file system that holds DIR, the disk's own latency to set a
# durable write's cost beside.
fsync_probe() {
  local f="$1/fsync.probe"
  dd if=/dev/zero of="$f" bs=512 count=2000 oflag=dsync 2>&1 | sed -n 's/.* copied, \([0-9.]*\) s.*/\1/p' \
    | awk '{printf "%.1f\n", $1 / 2000 * 1e6}'
  rm -f "$f"
}
