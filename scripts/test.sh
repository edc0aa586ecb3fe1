#!/usr/bin/env bash
# The test command (what CI runs): install dependencies, then
#  1. the default build (CUDA backend when a toolkit is found) and all its tests
#     (GPU tests skip, saying why, where no GPU exists);
#  2. a CPU-only build (RECUR_CUDA=OFF) with AddressSanitizer and
#     UndefinedBehaviorSanitizer, and all its tests.
#  3. with RECUR_TEST_FUZZ=1: the libFuzzer targets (scripts/fuzz.sh: a clang
#     ASan/UBSan build of the library, about 5 minutes on 2 cores, then 12 s
#     per target from the committed seed corpora).
# RECUR_TEST_QUICK=1 skips step 2.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
jobs=$(nproc)

echo "== recur: default build and tests"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DRECUR_WERROR=ON
cmake --build build -j "$jobs"
ctest --test-dir build -j "$jobs" --output-on-failure

if [ "${RECUR_TEST_QUICK:-0}" != "1" ]; then
  echo "== recur: CPU-only build with AddressSanitizer + UBSan, and tests"
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRECUR_CUDA=OFF \
    -DRECUR_SANITIZE=ON -DRECUR_WERROR=ON -DRECUR_BUILD_BENCH=OFF
  cmake --build build-asan -j "$jobs"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir build-asan -j "$jobs" --output-on-failure
fi

if [ "${RECUR_TEST_FUZZ:-0}" = "1" ]; then
  bash scripts/fuzz.sh
fi
