#!/usr/bin/env bash
# One epoch of the IMDB `lstm` (batch 32) with variable-length batches (the default)
# against --pad 500, alternated, CPU time (user + sys) from /usr/bin/time, less the
# start-up (the same command with --steps-per-epoch 1). docs/text.md, "Speed".
#   bash bench/imdb_speed.sh RECUR DATA_DIR [PAIRS] > results.txt
# Prints one line a run: label user sys wall load; then the means and ratios.
set -u
recur=$1 data=$2 pairs=${3:-8}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
base=(--device cpu imdb train --data "$data" --model lstm --epochs 1 --validation-steps 1 --no-test --quiet --overwrite)
one() {  # label args...
  local label=$1
  shift
  OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 /usr/bin/time -f "%U %S %e" -o "$work/time" nice -n 10 \
    "$recur" "${base[@]}" --out "$work/run" "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
  echo "$label $(tail -1 "$work/time") $(cut -d' ' -f1 /proc/loadavg)"
}
{
echo "# $(date -u +%FT%TZ) $recur, $pairs pairs"
for _ in 1 2; do one startup_var --steps-per-epoch 1; one startup_pad --steps-per-epoch 1 --pad 500; done
for ((r = 1; r <= pairs; ++r)); do
  if ((r % 2)); then one var; one pad --pad 500; else one pad --pad 500; one var; fi
done
echo "# end $(date -u +%FT%TZ)"
} | tee "$work/all"
# CPU seconds of an epoch: user + sys less the mean start-up.
awk '/^startup/ { s += $2 + $3; ns++ } /^var / { v += $2 + $3; nv++ } /^pad / { p += $2 + $3; np++ }
     END { s /= ns; printf "# start-up %.2f s; variable %.2f s; pad 500 %.2f s; ratio %.2fx\n", s, v / nv - s, p / np - s, (p / np - s) / (v / nv - s) }' "$work/all"
