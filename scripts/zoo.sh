#!/usr/bin/env bash
# Train the Jena forecaster zoo under the book's protocol, one model after
# another, and tabulate what each run measured.
#
#   scripts/zoo.sh [--recur BIN] [--device cpu|cuda] [--out DIR] [MODEL ...]
#   scripts/zoo.sh --table DIR          # only (re)write DIR/zoo.md from the runs
#
# Each model is trained by `recur forecast train --model NAME` with its
# default epochs (20, or 40 for the dropout models), 500 steps of 128, and
# writes DIR/NAME/ (results.json, history.csv, plots, best checkpoint) and
# DIR/NAME.log. DIR/zoo.md gets one row per finished run: best epoch,
# validation and test MAE in degC, wall time, device. A model whose
# results.json already exists is skipped, so a stopped sweep resumes.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
recur="$root/build-cpu/bin/recur"
device=cpu
out=zoo-runs
table_only=0
models=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --recur) recur=$2; shift 2 ;;
    --device) device=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --table) table_only=1; out=$2; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    -*) echo "zoo.sh: unknown option $1" >&2; exit 2 ;;
    *) models+=("$1"); shift ;;
  esac
done
if [[ ${#models[@]} -eq 0 ]]; then
  models=(gru lstm dense conv gru-dropout bidirectional-gru conv-gru stacked-gru)
fi

# libgomp threads spin after each parallel region; on a shared machine that
# costs more than it saves (bench/results/README.md).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

write_table() {
  python3 - "$out" <<'EOF'
import json, os, sys
out = sys.argv[1]
rows = []
for name in sorted(os.listdir(out)):
    p = os.path.join(out, name, "results.json")
    if not os.path.isfile(p):
        continue
    r = json.load(open(p))
    rows.append(r)
rows.sort(key=lambda r: r["test_mae_degc"])
with open(os.path.join(out, "zoo.md"), "w") as f:
    f.write("| model | device | epochs run (of planned) | best epoch | validation MAE (degC) | test MAE (degC) | wall time | samples/s (training) |\n")
    f.write("|---|---|---|---|---|---|---|---|\n")
    for r in rows:
        run = f'{r["epochs_run"]} of {r["epochs_planned"]}' + (" (interrupted)" if r.get("interrupted") else "")
        f.write(f'| `{r["model"]}` | {r["device"]} | {run} | {r["best_epoch"]} | '
                f'{r["val_mae_degc"]:.3f} | {r["test_mae_degc"]:.3f} | '
                f'{r["wall_seconds"]/60:.1f} min | {r["train_samples_per_second"]:.0f} |\n')
print(open(os.path.join(out, "zoo.md")).read(), end="")
EOF
}

mkdir -p "$out"
if [[ $table_only -eq 1 ]]; then write_table; exit 0; fi

for m in "${models[@]}"; do
  if [[ -f "$out/$m/results.json" ]]; then
    echo "zoo.sh: $m already done ($out/$m/results.json)"; continue
  fi
  echo "zoo.sh: training $m ($(date -u +%H:%M:%S) UTC)"
  "$recur" --device "$device" forecast train --model "$m" --overwrite --out "$out/$m" > "$out/$m.log" 2>&1 \
    || { echo "zoo.sh: $m failed, see $out/$m.log" >&2; continue; }
  tail -n 3 "$out/$m.log"
done
write_table
