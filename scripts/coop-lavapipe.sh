#!/usr/bin/env bash
# The coop scan kernel (shaders/scan_f16_coop.wgsl: f16 cooperative
# matrices) against the CPU engine on a software Vulkan driver that offers
# cooperative matrices. Debian 12's lavapipe (Mesa 22.3) does not; Mesa's
# from 25.1 on does (8x8x8, f16 inputs, f32 results). Those need a newer C
# library than Debian 12's, so this script makes a minimal Debian 13
# (trixie) root once (debootstrap), installs Mesa from trixie-backports
# there, and runs the coop tests of facegate-gpu, built here as usual, in it
# with FACEGATE_REQUIRE_COOP=1 (so an adapter without them fails the run
# instead of skipping). Needs root (or sudo) and the Debian mirror.
#
#   scripts/coop-lavapipe.sh            # COOP_ROOT=/var/tmp/facegate-trixie
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
root=${COOP_ROOT:-/var/tmp/facegate-trixie}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
sudo_cmd=""
[ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"

# Mounts under the root that a killed run left behind (the repository
# among them), deepest first: unmounted before anything else, so that
# nothing below can delete through them or mount twice.
mounts_under_root() { awk -v r="$root/" 'index($2, r) == 1 { print $2 }' /proc/mounts; }
mounts_under_root | sort -r | while read -r m; do $sudo_cmd umount "$m"; done
if [ -n "$(mounts_under_root)" ]; then
  echo "coop-lavapipe: $root still has mounts; not touching it" >&2
  exit 1
fi

if [ ! -e "$root/.ready" ]; then
  dpkg -s debootstrap >/dev/null 2>&1 || {
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends debootstrap
  }
  # The mirror is the network's: three tries before giving up.
  for try in 1 2 3; do
    $sudo_cmd rm -rf "$root"
    $sudo_cmd debootstrap --variant=minbase trixie "$root" "$mirror" >/dev/null && break
    [ "$try" -lt 3 ] || exit 1
    sleep 10
  done
  echo "deb $mirror trixie-backports main" | $sudo_cmd tee "$root/etc/apt/sources.list.d/backports.list" >/dev/null
  log=$(mktemp)
  $sudo_cmd chroot "$root" sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends -t trixie-backports mesa-vulkan-drivers libvulkan1" \
    >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
  $sudo_cmd touch "$root/.ready"
fi

# The test binary, built against this machine's C library (the newer one
# in the root runs it). Selected from the whole workspace, not with -p:
# the dependencies' features are then the workspace build's, so the test
# step's build is reused (with -p, cargo rebuilt them: minutes of CI).
bin=$(cargo test --workspace --test scan_design --no-run --locked 2>&1 |
  sed -n 's/.*Executable .*(\(.*\))$/\1/p' | tail -1)
[ -n "$bin" ] || { echo "coop-lavapipe: no test binary" >&2; exit 1; }

mounted=()
cleanup() {
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do $sudo_cmd umount "${mounted[i]}" || true; done
}
trap cleanup EXIT
for dir in /proc /dev "$repo"; do
  $sudo_cmd mkdir -p "$root$dir"
  $sudo_cmd mount --bind "$dir" "$root$dir"
  mounted+=("$root$dir")
done
$sudo_cmd chroot "$root" env -i PATH=/usr/bin:/bin HOME=/tmp XDG_RUNTIME_DIR=/tmp \
  WGPU_BACKEND=vulkan FACEGATE_REQUIRE_COOP=1 RUST_BACKTRACE=1 \
  sh -c "cd '$repo/facegate-gpu' && '$repo/$bin' coop"
