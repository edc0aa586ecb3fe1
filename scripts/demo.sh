#!/usr/bin/env bash
# The main job, from a fresh clone: install dependencies, build recur, show the
# devices it finds, then train the Jena temperature forecaster (`gru`: GRU 32,
# Dense 1, as Deep Learning with Python) on the bundled data on the default
# device (the first GPU if there is one, else the CPU; RECUR_DEVICE=cpu|cuda:N
# overrides), and print its validation and test MAE beside the naive baseline.
#
# On a GPU it runs the book's protocol (20 epochs of 500 steps of 128). Without
# one it runs a shortened schedule that fits a 2-core machine in minutes:
# 4 epochs of 250 steps, validating on 60 batches per epoch (the final
# validation and test figures use every window). Extra arguments go to
# `recur forecast train` (e.g. --epochs 20 --steps-per-epoch 500 for the full run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
build=${RECUR_BUILD_DIR:-build}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" --target recur_cli
"$build/bin/recur" devices
if "$build/bin/recur" devices 2>/dev/null | grep -q "default device: cuda"; then
  schedule=()
else
  echo "== no GPU: the shortened CPU schedule (4 epochs of 250 steps)"
  schedule=(--epochs 4 --steps-per-epoch 250 --validation-steps 60)
fi
"$build/bin/recur" forecast train --model gru --out "${RECUR_FORECAST_OUT:-forecast-out}" "${schedule[@]}" "$@"
