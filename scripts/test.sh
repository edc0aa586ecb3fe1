#!/usr/bin/env bash
# The test command (what CI runs): install dependencies, then
#  1. the default build (CUDA backend when a toolkit is found) and all its tests
#     (GPU tests skip, saying why, where no GPU exists);
#  2. a CPU-only build (RECUR_CUDA=OFF) with AddressSanitizer and
#     UndefinedBehaviorSanitizer, and all its tests.
#  3. the libFuzzer targets (scripts/fuzz.sh: a clang ASan/UBSan build of the
#     library, about 5 minutes on 2 cores, then 12 s per target from the
#     committed seed corpora, libFuzzer's seed fixed so that a run repeats).
#     The whole script took about 9 minutes without step 3 on 2 cores.
# RECUR_TEST_QUICK=1 skips steps 2 and 3; RECUR_TEST_FUZZ=0 skips step 3.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
jobs=$(nproc)
# Every ctest summary line goes here too, for the total printed at the end.
summary=$(mktemp)
trap 'rm -f "$summary"' EXIT

echo "== recur: default build and tests"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DRECUR_WERROR=ON
cmake --build build -j "$jobs"
ctest --test-dir build -j "$jobs" --output-on-failure | tee -a "$summary"

if [ "${RECUR_TEST_QUICK:-0}" != "1" ]; then
  echo "== recur: CPU-only build with AddressSanitizer + UBSan, and tests"
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRECUR_CUDA=OFF \
    -DRECUR_SANITIZE=ON -DRECUR_WERROR=ON -DRECUR_BUILD_BENCH=OFF
  cmake --build build-asan -j "$jobs"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir build-asan -j "$jobs" --output-on-failure | tee -a "$summary"
fi

if [ "${RECUR_TEST_QUICK:-0}" != "1" ] && [ "${RECUR_TEST_FUZZ:-1}" != "0" ]; then
  bash scripts/fuzz.sh | tee -a "$summary"
fi

# One line over all the runs above: "N passed, M failed, K skipped" (ctest
# counts a skipped test, e.g. a GPU test without a GPU, as passed).
awk '/tests passed, [0-9]+ tests failed out of/ { total += $NF; failed += $4 }
     /\(Skipped\)$/ { skipped++ }
     END { printf "test.sh: %d passed, %d failed, %d skipped\n", total - failed - skipped, failed, skipped }' "$summary"
