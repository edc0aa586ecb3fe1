#!/usr/bin/env bash
# Installs what recur needs to build and test on Debian 12+ / Ubuntu 24.04+
# (CMake >= 3.25). Skips apt entirely when everything is already there.
# The CUDA toolkit is optional and not installed here: when nvcc is found
# (PATH or /usr/local/cuda/bin), recur builds its CUDA backend too.
set -euo pipefail

# libopenblas-openmp-dev: OpenBLAS on OpenMP, sharing recur's thread pool.
# openmpi-bin libopenmpi-dev: data-parallel training (mpirun, MPI all-reduce;
# docs/distributed.md) and its dist.* tests; recur builds without them too.
# Extra packages may be named as arguments (scripts/fuzz.sh: clang).
packages=(g++ cmake ninja-build pkg-config libopenblas-openmp-dev libgtest-dev libcli11-dev
          nlohmann-json3-dev zlib1g-dev openmpi-bin libopenmpi-dev "$@")

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "recur: installing ${missing[*]}"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ]; then
  echo "recur: CUDA toolkit found; the CUDA backend will be built"
else
  echo "recur: no CUDA toolkit; building the CPU backend only"
fi
