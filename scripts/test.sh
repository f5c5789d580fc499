#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what it needs, then runs
# formatting, lints and every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
# Each step's start time, so that a slow CI run says where its time went.
step() { echo "== $(date -u +%H:%M:%S) $*" >&2; }

# System packages the tests need: Mesa's software Vulkan driver (lavapipe),
# on which every WGSL kernel runs in the tests, Prometheus (promtool lints the
# server's metrics), and a C/C++ compiler (bundled SQLite, ring, and
# libFuzzer, which cargo-fuzz compiles), and PostgreSQL's server binaries
# (the shared encounter store's tests start private servers from them; the
# package's own cluster is not used). Faiss comes as the faiss-cpu wheel
# below, so CI needs neither cmake nor OpenBLAS: only the benchmarks' `faiss`
# feature builds Faiss from source, on demand.
step "system packages"
APT_PACKAGES=(mesa-vulkan-drivers libvulkan1 prometheus g++ postgresql)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Python packages for the client tests (a gRPC client generated from proto/;
# cryptography makes the mutual-TLS test's certificates; kubernetes-validate
# checks deploy/kubernetes against the API's schemas, which ship in it;
# faiss-cpu, the official Faiss wheel, is the exact IndexFlatIP that
# test_faiss.py compares the real server with, in seconds where building
# Faiss from source for the Rust side-by-side test took minutes).
step "python packages"
PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q --disable-pip-version-check \
  grpcio grpcio-tools pytest numpy cryptography kubernetes-validate faiss-cpu

# wgpu on lavapipe: pin Vulkan, and give Mesa the runtime directory it wants.
export WGPU_BACKEND=vulkan
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"

# The Kubernetes manifests against the schemas of the API (no cluster here);
# --strict refuses a field the schema does not know.
step "kubernetes manifests"
python3 -m kubernetes_validate --strict --quiet deploy/kubernetes/*.yaml

rustup component add rustfmt clippy >/dev/null 2>&1 || true
step "fmt"
cargo fmt --all -- --check
step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
# Every doc comment's links resolve and its markup parses, so the API
# pages `cargo doc` makes say what the code does.
step "rustdoc"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked
# Builds target/debug/facegate and facegate-index, which the Python test runs.
# Not the benchmarks' `faiss` feature (Faiss built from source, minutes): its
# side-by-side test (benchmarks/tests/faiss_side_by_side.rs) runs on demand,
# and test_faiss.py below makes the same comparison in CI.
step "tests"
cargo test --workspace --locked
# The coop scan kernel (f16 cooperative matrices), which Debian 12's
# lavapipe cannot run, against the CPU engine on Mesa 26's lavapipe in a
# minimal Debian 13 root (made once, about a minute).
step "coop kernel on a newer lavapipe"
scripts/coop-lavapipe.sh
# The Python gRPC client against the real server, and the server against
# Faiss's IndexFlatIP (test_faiss.py).
step "python client tests"
python3 -m pytest -q server/tests/python
# Every parser of untrusted bytes fuzzed for a bounded time from the
# committed seeds (cargo-fuzz; fails only on a crash): docs/security.md.
step "fuzzing"
FUZZ_SECONDS="${FUZZ_SECONDS:-20}" scripts/fuzz.sh
step "done"
