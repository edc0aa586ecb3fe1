#!/usr/bin/env bash
# The main job, from a fresh clone: install dependencies, build recur, show the
# devices it finds and run a small LSTM forward on the default device (the
# first GPU if there is one, else the CPU; RECUR_DEVICE=cpu|cuda:N overrides).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
build=${RECUR_BUILD_DIR:-build}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" --target recur_cli
"$build/bin/recur" devices
"$build/bin/recur" lstm "$@"
