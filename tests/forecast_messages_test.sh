#!/usr/bin/env bash
# `recur forecast`'s option limits and messages (docs/reliability.md): readable
# range errors, a batch no larger than the training split, a too-short file
# said in its own terms, no source paths in user-facing errors (they are shown
# with RECUR_LOG=debug), no raw control bytes echoed, the OS reason for an
# unusable --out, --quiet printing the results line, SIGTERM saving a
# resumable checkpoint as Ctrl-C does.
# Usage: forecast_messages_test.sh RECUR DATADIR WORKDIR
set -u
. "$(dirname "${BASH_SOURCE[0]}")/cli_lib.sh" || exit 1  # cli_setup, ok, bad, run, expect
cli_setup "$@"
TRAIN=(--device cpu forecast train --validation-steps 1)
SMALL=(--steps-per-epoch 2 --batch-size 16 --lookback 1d)

run epochs_zero "${TRAIN[@]}" "${SMALL[@]}" --epochs 0 --data "$DATA/jena_600_rows.csv" --out e0
expect epochs_zero nonzero "--epochs: '0' is not a whole number from 1 to 1000000"
run huge "${TRAIN[@]}" --steps-per-epoch 999999999999999999999999999999999999999999999999999999999999 --out h
expect huge nonzero "is not a whole number from 1 to 1000000000"
grep -qE '[0-9]{40}' huge.log && bad "huge: a 40-digit number echoed"
run lstm_hidden --device cpu lstm --hidden 0
expect lstm_hidden nonzero "--hidden: '0' is not a whole number from 1 to 1000000"
grep -qE '[0-9]{40}' lstm_hidden.log && bad "lstm_hidden: a 40-digit number echoed"
run batch "${TRAIN[@]}" --lookback 1d --batch-size 1000000000 --data "$DATA/jena_600_rows.csv" --out b
expect batch 1 "--batch-size 1000000000 is larger than the training split, which has 238 windows"
[ -e b ] && bad "batch: --out made although the run was refused"
run short "${TRAIN[@]}" --lookback 10d --data "$DATA/jena_10_rows.csv" --out s
expect short 1 "jena_10_rows.csv has 10 rows at 1h steps; its training split (4 rows, 01.01.2009 00:10:00 to 01.01.2009 03:10:00) is too short for one window: --lookback 10d + --delay 24h need 264 rows in each split, so the file needs at least 1111 rows"
no_source_paths short
run missing "${TRAIN[@]}" "${SMALL[@]}" --data /nonexistent/jena.csv --out m
expect missing 1 "cannot open '/nonexistent/jena.csv': No such file or directory"
no_source_paths missing
RECUR_LOG=debug "$RECUR" "${TRAIN[@]}" "${SMALL[@]}" --data /nonexistent/jena.csv --out m >debug.log 2>&1
rc=$?
expect debug 1 "file_read.cpp:"
run binary "${TRAIN[@]}" "${SMALL[@]}" --data "$DATA/not_a_csv.bin" --out bin
expect binary 1 "not_a_csv.bin:2: column 'T (degC)': cannot parse '\\x1b[31m\\xff\\x01' as a number"
grep -q $'\x1b' binary.log && bad "binary: a raw escape byte reached the terminal"
touch a_file
run out_file "${TRAIN[@]}" "${SMALL[@]}" --data "$DATA/jena_600_rows.csv" --out a_file/run
expect out_file 1 "--out 'a_file/run': '$WORK/a_file' is not a directory"
if [ "$(id -u)" != 0 ]; then  # root writes anywhere
  mkdir ro && chmod 555 ro
  run out_ro "${TRAIN[@]}" "${SMALL[@]}" --data "$DATA/jena_600_rows.csv" --out ro/run
  expect out_ro 1 "cannot write to --out 'ro/run': '$WORK/ro': Permission denied"
fi
run quiet "${TRAIN[@]}" "${SMALL[@]}" --epochs 1 --data "$DATA/jena_600_rows.csv" --out q --quiet
expect quiet 0 "best epoch 1: validation MAE"
[ "$(wc -l <quiet.log)" -eq 1 ] && ok "quiet: only the results line" || { bad "quiet printed more"; cat quiet.log; }
grep -qE "% (better|worse) than naive on test" quiet.log && ! grep -q -- "-[0-9.]*% under" quiet.log &&
  ok "the comparison with naive says better or worse" || bad "the naive comparison's wording"
run evaluate_short --device cpu forecast evaluate --model-dir q --data "$DATA/jena_10_rows.csv"
expect evaluate_short 1 "jena_10_rows.csv has 10 rows at 1h steps; its training split (4 rows, 01.01.2009 00:10:00 to 01.01.2009 03:10:00) is too short for one window: --lookback 1d + --delay 24h need 48 rows in each split"
sed '3s/,-7.62,/,-9999,/' "$DATA/jena_600_rows.csv" >sentinel.csv
run sentinel "${TRAIN[@]}" "${SMALL[@]}" --epochs 1 --data sentinel.csv --out sentinel --quiet
expect sentinel 0 "warning: 1 value(s) of -9999 outside the wind speeds, kept as values (the first at sentinel.csv:3 column 'T (degC)')"

# SIGTERM: stops at the end of a step and saves a checkpoint to resume from, as Ctrl-C.
"$RECUR" "${TRAIN[@]}" --batch-size 16 --lookback 1d --epochs 1 --steps-per-epoch 1000000000 --data "$DATA/jena_600_rows.csv" --out term >term.log 2>&1 &
pid=$!
for _ in $(seq 1 200); do grep -q "^training" term.log && break; sleep 0.05; done
sleep 0.2
kill -TERM $pid
wait $pid
rc=$?
expect term 130 "interrupted: the state is in term/interrupted.safetensors"
[ -s term/interrupted.safetensors ] && ok "SIGTERM left a resumable checkpoint" || bad "no checkpoint after SIGTERM"
exit $fail
