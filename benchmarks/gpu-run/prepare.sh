#!/usr/bin/env bash
# Prepares benchmarks/gpu-run/run.sh on the build machine (with network):
# the Vulkan loader packages for amd64 into .gl/ and the release benchmark
# binary, stripped, into .gpu-run/ (both ignored by git through
# .git/info/exclude, and carried to the device machine by name).
set -euo pipefail
cd "$(dirname "$0")/../.."
for d in /.gl/ /.gpu-run/; do
  grep -qxF "$d" .git/info/exclude || echo "$d" >>.git/info/exclude
done
mkdir -p .gl .gpu-run /tmp/amd64/partial
o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64)
apt-get "${o[@]}" update -qq
(cd .gl && apt-get "${o[@]}" download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
cargo build --release -p facegate-benchmarks --bin facegate-gpu-bench
cp target/release/facegate-gpu-bench .gpu-run/
strip .gpu-run/facegate-gpu-bench
du -sh .gl .gpu-run
