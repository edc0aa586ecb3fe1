#!/usr/bin/env bash
# A GPU session in one call. The GPU machine reaches no package registry and
# runs another image (nvcc, CMake, ninja, PyTorch), so recur's build
# dependencies travel with the working tree as Debian .debs.
#
#   here, once:  bash scripts/gpu.sh prepare      # downloads the .debs into .device/debs (git-ignored)
#   there:       bash scripts/gpu.sh run          # device tool: carry [".device"]
#
# `run` unpacks the .debs into /tmp/recur-deps, builds for the local GPU
# (RECUR_GPU_ARCH, default 90), runs every test, then the `gpu` label alone,
# compute-sanitizer memcheck and racecheck on the CUDA tests, `recur devices`,
# `recur lstm --check`, the ops benchmark, the quick recur-vs-cuDNN RNN
# benchmark (bench_cudnn --quick) and recur's Conv1D against cuDNN's
# convolution (bench_conv_cudnn). It writes at most 8 files to $OUT (else
# bench/results/local/), each starting with the device and the date; the two
# cuDNN benchmarks share bench_cudnn.csv (eight files already), the Conv1D
# table after the RNN one under its own "# build-gpu/bin/bench_conv_cudnn"
# line and header row.
set -uo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}
debs=.device/debs
packages=(libopenblas-dev libopenblas-openmp-dev libopenblas0-openmp libopenblas0 libgfortran5
          libgtest-dev libcli11-dev nlohmann-json3-dev zlib1g-dev)

case "$mode" in
prepare)
  mkdir -p "$debs"
  grep -qxF '/.device/' .git/info/exclude 2>/dev/null || echo '/.device/' >> .git/info/exclude
  (cd "$debs" && apt-get download "${packages[@]}")
  ls -la "$debs"
  ;;
run)
  out=${OUT:-bench/results/local}
  mkdir -p "$out"
  deps=/tmp/recur-deps
  mkdir -p "$deps"
  for f in "$debs"/*.deb; do dpkg -x "$f" "$deps"; done
  blasdir=$deps/usr/lib/x86_64-linux-gnu/openblas-openmp
  export LD_LIBRARY_PATH=$blasdir:$deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
  export PATH=/usr/local/cuda/bin:$PATH
  # cuDNN: the image's PyTorch ships it as pip wheels (nvidia/cudnn, with
  # versioned .so files only); give FindCUDNN a root with the unversioned link.
  cudnn_flag=""
  if ! ls /usr/local/cuda/include/cudnn.h >/dev/null 2>&1; then
    cudnn_dir=$(python3 -c 'import nvidia.cudnn, os; print(os.path.dirname(nvidia.cudnn.__file__))' 2>/dev/null \
                || python3 -c 'import nvidia.cudnn; print(list(nvidia.cudnn.__path__)[0])' 2>/dev/null || true)
    if [ -n "$cudnn_dir" ] && [ -f "$cudnn_dir/include/cudnn.h" ]; then
      mkdir -p /tmp/cudnn-root/lib
      ln -sf "$cudnn_dir/include" /tmp/cudnn-root/include
      for so in "$cudnn_dir"/lib/libcudnn*.so.*; do ln -sf "$so" /tmp/cudnn-root/lib/; done
      ln -sf "$(ls "$cudnn_dir"/lib/libcudnn.so.* | head -1)" /tmp/cudnn-root/lib/libcudnn.so
      export LD_LIBRARY_PATH=$cudnn_dir/lib:$LD_LIBRARY_PATH
      cudnn_flag="-DCUDNN_ROOT=/tmp/cudnn-root"
    fi
  fi
  stamp="# $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1); $(date -u +%Y-%m-%dT%H:%MZ)"
  {
    echo "$stamp"
    nvidia-smi; nvcc --version; cmake --version; g++ --version; ninja --version
  } > "$out/env.txt" 2>&1
  {
    echo "$stamp"
    cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DRECUR_CUDA=ON \
      -DCMAKE_CUDA_ARCHITECTURES="${RECUR_GPU_ARCH:-90}" -DCMAKE_PREFIX_PATH="$deps/usr" \
      -DCMAKE_LIBRARY_PATH="$blasdir" $cudnn_flag \
      -DRECUR_OPENBLAS_OPENMP="$blasdir/libopenblas.so" \
      -DRECUR_CBLAS_INCLUDE_DIR="$deps/usr/include/x86_64-linux-gnu/openblas-openmp" &&
    cmake --build build-gpu -j "$(nproc)"
  } > "$out/build.txt" 2>&1 || { tail -50 "$out/build.txt"; exit 1; }
  { echo "$stamp"; echo "\$ ctest --test-dir build-gpu"; ctest --test-dir build-gpu -j 8 --output-on-failure; } > "$out/ctest.txt" 2>&1
  { echo "$stamp"; echo "\$ ctest --test-dir build-gpu -L gpu"; ctest --test-dir build-gpu -L gpu --output-on-failure; } > "$out/ctest_gpu.txt" 2>&1
  {
    echo "$stamp"
    for tool in memcheck racecheck; do
      echo "\$ compute-sanitizer --tool $tool --error-exitcode 9 build-gpu/bin/recur_tests --gtest_filter='CUDA*:*CUDA*'"
      compute-sanitizer --tool "$tool" --error-exitcode 9 build-gpu/bin/recur_tests --gtest_filter='CUDA*:*CUDA*' 2>&1 | tail -40
      echo "exit ${PIPESTATUS[0]}"
    done
  } > "$out/sanitizer.txt" 2>&1
  {
    echo "$stamp"
    build-gpu/bin/recur devices
    build-gpu/bin/recur lstm --check
    build-gpu/bin/recur lstm --device cpu
  } > "$out/cli.txt" 2>&1
  { echo "$stamp"; build-gpu/bin/bench_ops; } > "$out/bench_ops.csv" 2>&1
  {
    echo "$stamp"
    echo "# build-gpu/bin/bench_cudnn --quick"; build-gpu/bin/bench_cudnn --quick
    echo "# build-gpu/bin/bench_conv_cudnn"; build-gpu/bin/bench_conv_cudnn
  } > "$out/bench_cudnn.csv" 2>&1
  tail -3 "$out/ctest.txt" "$out/ctest_gpu.txt"; grep -E "ERROR SUMMARY|exit" "$out/sanitizer.txt"; cat "$out/cli.txt"
  ;;
*)
  echo "usage: bash scripts/gpu.sh prepare|run" >&2
  exit 2
  ;;
esac
