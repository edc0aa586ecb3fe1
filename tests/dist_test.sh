#!/usr/bin/env bash
# CTest's dist.* tests: data-parallel training under `mpirun -np 2`.
#   dist_test.sh MODE MPIRUN DIST_CHECK RECUR_CLI WORKDIR
# Works as root (--allow-run-as-root) and not; --oversubscribe lets 2 ranks
# share a 2-core machine; each rank runs one OpenMP thread.
set -uo pipefail
mode=$1 mpirun=$2 check=$3 cli=$4 work=$5
rm -rf "$work" && mkdir -p "$work"
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive
# Under AddressSanitizer (scripts/test.sh's second build): Open MPI keeps
# allocations from MPI_Init to exit that LeakSanitizer reports as leaks.
export ASAN_OPTIONS="${ASAN_OPTIONS:-}${ASAN_OPTIONS:+:}detect_leaks=0"
# Containers often forbid the cross-memory attach that Open MPI's shared-memory
# transport tries first; the copy-in/copy-out path works everywhere.
export OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_rmaps_base_oversubscribe=1
run=("$mpirun" -np 2 --oversubscribe --bind-to none)
if [ "$(id -u)" -eq 0 ]; then run+=(--allow-run-as-root); fi
fail() { echo "FAIL: $*"; exit 1; }

case $mode in
  equivalence)
    # several buckets per step (small buckets), so the overlap path runs too
    RECUR_DIST_BUCKET_MB=0.002 "${run[@]}" "$check" equivalence || fail "equivalence (exit $?)"
    ;;
  resume)
    "${run[@]}" "$check" resume "$work" a || fail "phase a: 2 ranks"
    [ -f "$work/interrupted.safetensors" ] || fail "2 ranks left no interrupted checkpoint"
    "$check" resume "$work" b || fail "phase b: 1 process resuming a 2-rank checkpoint"
    "${run[@]}" "$check" resume "$work" c || fail "phase c: 2 ranks resuming a 1-process checkpoint"
    ;;
  stall)
    start=$(date +%s)
    out=$(RECUR_DIST_TIMEOUT=3 timeout 100 "${run[@]}" "$check" stall 2>&1); rc=$?
    took=$(( $(date +%s) - start ))
    echo "$out" | tail -n 20
    [ "$rc" -ne 0 ] || fail "the job succeeded although rank 1 never joined"
    [ "$rc" -ne 124 ] || fail "the job hung (killed by timeout after 100 s)"
    echo "$out" | grep -q "rank 0: an all-reduce of .* did not complete within 3 s (RECUR_DIST_TIMEOUT)" ||
      fail "no timeout message naming rank 0"
    [ "$took" -lt 60 ] || fail "took ${took} s to end"
    echo "ended in ${took} s, exit $rc"
    ;;
  kill)
    start=$(date +%s)
    out=$(RECUR_DIST_TIMEOUT=10 timeout 100 "${run[@]}" "$check" kill "$work" 2>&1); rc=$?
    took=$(( $(date +%s) - start ))
    echo "$out" | tail -n 20
    [ "$rc" -ne 0 ] || fail "the job succeeded although rank 1 was killed"
    [ "$rc" -ne 124 ] || fail "the job hung (killed by timeout after 100 s)"
    [ "$took" -lt 60 ] || fail "took ${took} s to end"
    echo "$out" | grep -q "rank 1" || fail "no message names rank 1"
    ls "$work"
    # Rank 0 wrote the checkpoint of epoch 1; it must load whole, and no
    # temporary file of a half-written one may be taken for it.
    "$check" verify "$work/every.safetensors" || fail "the checkpoint does not load"
    echo "ended in ${took} s, exit $rc; checkpoint intact"
    ;;
  cli)
    # The CLI: 2 ranks print one progress line per epoch (rank 0), one run directory.
    out=$("${run[@]}" "$cli" forecast train --device cpu --out "$work/run" --epochs 1 --steps-per-epoch 4 \
          --validation-steps 2 --batch-size 16 --model dense 2>&1) || { echo "$out"; fail "recur forecast train on 2 ranks"; }
    echo "$out" | tail -n 20
    n=$(echo "$out" | grep -o "Epoch 1/1 - " | wc -l)
    [ "$n" -eq 1 ] || fail "expected one progress line (rank 0 alone), got $n"
    [ -f "$work/run/best.safetensors" ] || fail "no checkpoint written"
    grep -q "\"batch_size\": 32" "$work/run/forecast.json" || fail "forecast.json: the job's batch is 2 x 16"
    # recur imdb and recur text: 2 ranks of batch b report what one process of batch 2b does
    # (same data order, seed and weights), and rank 0 alone writes the run.
    data=$(cd "$(dirname "$0")/data" && pwd)
    imdb=(--device cpu imdb train --data "$data/imdb_tiny" --model lstm --epochs 2 --quiet)
    text=(--device cpu text train --max-chars 6000 --cell gru --layers 1
          --units 16 --embedding 8 --seq-len 16 --epochs 2 --seed 1 --quiet)
    for app in imdb text; do
      if [ $app = imdb ]; then args=("${imdb[@]}"); b=--batch-size; else args=("${text[@]}"); b=--batch; fi
      two=$("${run[@]}" "$cli" "${args[@]}" $b 4 --out "$work/$app-2" 2>&1) || { echo "$two"; fail "recur $app train on 2 ranks"; }
      one=$("$cli" "${args[@]}" $b 8 --out "$work/$app-1" 2>&1) || { echo "$one"; fail "recur $app train, one process"; }
      l2=$(echo "$two" | grep -E "^best epoch" | sed 's/; [0-9.]* s;.*//; s/ in .*//')
      l1=$(echo "$one" | grep -E "^best epoch" | sed 's/; [0-9.]* s;.*//; s/ in .*//')
      echo "$app, 2 ranks: $l2"
      echo "$app, 1 process: $l1"
      [ -n "$l2" ] && [ "$l2" = "$l1" ] || fail "recur $app: 2 ranks x $b 4 differ from 1 process x $b 8"
      [ "$(echo "$two" | grep -c "^best epoch")" -eq 1 ] || fail "recur $app: expected rank 0 alone to report"
    done
    ;;
  *) fail "unknown mode $mode" ;;
esac
echo "dist.$mode: OK"
