#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/README.md) with Debian's clang, with
# AddressSanitizer and UBSan, CPU only, and runs each from its committed seed
# corpus for RECUR_FUZZ_SECONDS (default 12: about a minute in all). A crash
# fails the run and leaves its input as build-fuzz/fuzz/<target>-crash-*.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh clang libclang-rt-dev libomp-dev
jobs=$(nproc)
# (no RECUR_WERROR: clang warns where gcc does not, e.g. "loop not vectorized" under the sanitizers)
# (no MPI: the readers under test do not use it, and libFuzzer builds need no mpirun)
echo "== recur: libFuzzer targets (clang, ASan + UBSan), ${RECUR_FUZZ_SECONDS:-12} s each"
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRECUR_CUDA=OFF \
  -DRECUR_FUZZ=ON -DRECUR_BUILD_TESTS=OFF -DRECUR_BUILD_BENCH=OFF -DRECUR_WERROR=OFF -DRECUR_MPI=OFF \
  -DRECUR_FUZZ_SECONDS="${RECUR_FUZZ_SECONDS:-12}"
cmake --build build-fuzz -j "$jobs" --target fuzz_jena_csv fuzz_safetensors fuzz_model_config fuzz_text_data
ctest --test-dir build-fuzz -L fuzz -j "$jobs" --output-on-failure
