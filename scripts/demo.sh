#!/usr/bin/env bash
# The main job, from a fresh clone: install dependencies, build recur, show the
# devices it finds, then train the Jena temperature forecaster (`gru`: GRU 32,
# Dense 1, as Deep Learning with Python) on the bundled data on the default
# device (the first GPU if there is one, else the CPU; RECUR_DEVICE=cpu|cuda:N
# overrides), and print its validation and test MAE beside the naive baseline.
#
# It runs the book's protocol (20 epochs of 500 steps of 128) on any device:
# on the 2-core CPU machine the whole run takes under 3 minutes
# (docs/forecast-results.md). Extra arguments go to `recur forecast train`
# (e.g. --epochs 4 for a quicker look).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
build=${RECUR_BUILD_DIR:-build}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" --target recur_cli
"$build/bin/recur" devices
# Each demo replaces the previous one's run directory (--overwrite), unless it resumes it.
replace=(--overwrite)
for a in "$@"; do [ "$a" = --resume ] && replace=(); done
"$build/bin/recur" forecast train --model gru --out "${RECUR_FORECAST_OUT:-forecast-out}" "${replace[@]}" "$@"
