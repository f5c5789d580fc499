#!/usr/bin/env bash
# The GPU run of issue 21, in one go on a machine lent for minutes (one
# NVIDIA H200 here: a CUDA image with PyTorch, no network, nothing else
# installed). Everything it needs comes along, prepared on the build
# machine by benchmarks/gpu-run/prepare.sh: the Vulkan loader packages
# (.gl/, carried) and the release benchmark binary (.gpu-run/, carried).
# Planned to finish well inside 8 minutes (236 s on an H200, 2026-11-30):
#   1. the adapter: name, limits, features, subgroup sizes, cooperative
#      matrix configurations; nvidia-smi dmon logs clocks and power meanwhile;
#   2. facegate-gpu-bench on ROWS x 512 int8 rows generated there (default
#      10 million), B = 1, 8, 32, 64, 256, 1024, for each of DESIGNS (the
#      second design as the engine runs it, then with the top-k kernel as
#      runs 1 to 3 ran it (checked, K = 256), with the rows and the direct
#      kernels, and last on cooperative matrices with 64 and 128 probes a
#      tile, whose kernel has run on lavapipe only, so that if it fails
#      everything else is measured already; the first design and the
#      runtime checks, measured in 2026-11-30's runs, only when DESIGNS
#      names them, e.g. DESIGNS=scan,scan:checked,classic): ms per batch,
#      GPU ms per stage and whether the first answers equal the CPU
#      engine's, beside the read and copy bandwidth measured in the same run;
#   3. torch_peer.py on the same rows and probes: CUDA's copy bandwidth, f16
#      GEMM + topk and int8 _int_mm + topk, and whether their top-k agree
#      with facegate's.
# Output goes to $OUT (the device tool returns it), else /tmp/gpu-run.
#
#   ../.library device run: carry [".gl", ".gpu-run"], command "benchmarks/gpu-run/run.sh"
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-/tmp/gpu-run}
mkdir -p "$out"
rows=${ROWS:-10000000}
batches=${BATCHES:-1,8,32,64,256,1024}
designs=${DESIGNS:-scan,scan:topk-run3,scan:rows,scan:direct,scan:coop,scan:coop:tp8}
if ! ldconfig -p | grep -q libvulkan; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -e "$icd" ] && [ -z "${VK_DRIVER_FILES:-}" ]; then
  export VK_DRIVER_FILES=$icd
fi
export WGPU_BACKEND=vulkan
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,clocks.max.memory,driver_version --format=csv
  nproc
} 2>&1 | tee "$out/machine.txt"
# Clocks, power and load once a second while the run lasts.
nvidia-smi dmon -s pcu -d 1 >"$out/dmon.txt" 2>&1 &
dmon=$!
date -u +"bench starts %T"
timeout 380 .gpu-run/facegate-gpu-bench --rows "$rows" --dim 512 --batches "$batches" \
  --designs "$designs" --repeats 5 --dump-dir /tmp/gpu-dump --json 2>&1 | tee "$out/bench.txt"
echo "bench exit: ${PIPESTATUS[0]}" | tee -a "$out/bench.txt"
date -u +"peer starts %T"
PYTHONUNBUFFERED=1 timeout 160 python3 benchmarks/gpu-run/torch_peer.py --dir /tmp/gpu-dump \
  --batches "$batches" 2>&1 | tee "$out/torch.txt"
echo "peer exit: ${PIPESTATUS[0]}" | tee -a "$out/torch.txt"
kill "$dmon" 2>/dev/null
date -u +"done %T"
