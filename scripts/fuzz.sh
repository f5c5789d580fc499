#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for a bounded time (FUZZ_SECONDS each,
# default 30), starting from the committed seeds in fuzz/corpus/<target>.
# Fails only when a target finds a crash (a panic, an abort, an allocation over
# libFuzzer's limit, an input that runs longer than FUZZ_INPUT_TIMEOUT): the
# crashing input is left in fuzz/artifacts/<target>/ and printed. A run that
# simply reaches its time limit passes.
#
# Usage: scripts/fuzz.sh [TARGET...]   (all targets when none is named)
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECONDS="${FUZZ_SECONDS:-30}"
FUZZ_INPUT_TIMEOUT="${FUZZ_INPUT_TIMEOUT:-20}"

# cargo-fuzz passes -Z flags to rustc: on the stable toolchain, allow them
# rather than requiring a nightly toolchain in CI.
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

# No sanitizer: the parsers are safe Rust, so what fuzzing finds is panics,
# overflows (debug assertions are on: -a), huge allocations and hangs, and
# an uninstrumented build runs several times faster. Set FUZZ_SANITIZER=address
# to build with AddressSanitizer instead.
build_flags=(-s "${FUZZ_SANITIZER:-none}" -a)

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cd fuzz && cargo fuzz list)
fi

(cd fuzz && cargo fuzz build "${build_flags[@]}")

failed=()
for t in "${targets[@]}"; do
  # New inputs go to a scratch corpus; the committed seeds are only read.
  work="fuzz/work/$t"
  mkdir -p "$work" "fuzz/corpus/$t" "fuzz/artifacts/$t"
  echo "== fuzzing $t for ${FUZZ_SECONDS}s"
  if (cd fuzz && cargo fuzz run "${build_flags[@]}" "$t" "work/$t" "corpus/$t" -- \
        -max_total_time="$FUZZ_SECONDS" -timeout="$FUZZ_INPUT_TIMEOUT" \
        -rss_limit_mb=2048 -print_final_stats=1); then
    echo "== $t: no crash in ${FUZZ_SECONDS}s"
  else
    echo "== $t: CRASH; inputs in fuzz/artifacts/$t:" >&2
    ls -l "fuzz/artifacts/$t" >&2 || true
    failed+=("$t")
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzzing found crashes in: ${failed[*]} (reproduce: cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -s none -a TARGET artifacts/TARGET/FILE)" >&2
  exit 1
fi
echo "fuzzing: ${#targets[@]} targets, ${FUZZ_SECONDS}s each, no crash"
