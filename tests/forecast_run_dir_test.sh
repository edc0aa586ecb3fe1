#!/usr/bin/env bash
# `recur forecast train`'s run directory contract and resume, end to end on a
# 600-row file (docs/reliability.md):
#  - a directory holding a run is refused without --resume or --overwrite, and left as it was;
#  - a failed or refused command changes nothing in --out;
#  - --overwrite replaces the old run only once the new one has something to write, and the
#    results never describe the old run's weights;
#  - a run interrupted before its first epoch ends, at an epoch's end and mid-epoch, resumed each
#    time, ends with the uninterrupted run's history, results and forecasts, and no
#    interrupted checkpoint left behind.
# Usage: forecast_run_dir_test.sh RECUR DATA.csv WORKDIR
set -u
. "$(dirname "${BASH_SOURCE[0]}")/cli_lib.sh" || exit 1  # cli_setup, ok, bad, run, expect
cli_setup "$@"
BASE=(--device cpu forecast train --steps-per-epoch 3 --batch-size 16 --validation-steps 2 --lookback 1d --data "$DATA")
COMMON=("${BASE[@]}" --epochs 4)
snapshot() { (cd "$1" && find . -type f | sort | xargs sha256sum); }
# history.csv without the timing columns (seconds, samples_per_second)
figures() { awk -F, 'NR==1 { for (i = 1; i <= NF; i++) keep[i] = ($i != "seconds" && $i != "samples_per_second") }
                     { s = ""; for (i = 1; i <= NF; i++) if (keep[i]) s = s $i ","; print s }' "$1"; }
results() { grep -E '"(best_epoch|epochs_run|epochs_planned|interrupted|val_mae|test_mae)"' "$1"; }

# 1. An uninterrupted run.
run whole "${COMMON[@]}" --model gru --out whole
[ $rc -eq 0 ] && ok "uninterrupted run" || { bad "uninterrupted run: rc $rc"; cat whole.log; }
before=$(snapshot whole)

# 2. Training into it again is refused and changes nothing.
run again "${COMMON[@]}" --model gru --out whole
if [ $rc -ne 0 ] && grep -q "holds another run" again.log && [ "$(snapshot whole)" = "$before" ]; then
  ok "a second run into the same --out is refused, nothing changed"
else bad "second run into the same --out: rc $rc"; cat again.log; fi

# 3. --resume with another model, or a missing checkpoint, is refused before anything is written.
cp -r whole kept
run wrong_model "${COMMON[@]}" --model lstm --out whole --resume whole/best.safetensors
if [ $rc -ne 0 ] && grep -q "model" wrong_model.log && [ "$(snapshot whole)" = "$before" ]; then
  ok "--resume with another --model is refused, nothing changed"
else bad "--resume with another --model: rc $rc"; cat wrong_model.log; fi
run missing "${COMMON[@]}" --model gru --out fresh --resume fresh/interrupted.safetensors
if [ $rc -ne 0 ] && grep -q "does not exist" missing.log && [ ! -e fresh ]; then
  ok "--resume of a missing checkpoint is refused, no directory made"
else bad "--resume of a missing checkpoint: rc $rc"; ls fresh; cat missing.log; fi
run elsewhere "${COMMON[@]}" --model gru --out other --resume whole/best.safetensors
if [ $rc -ne 0 ] && grep -q "is not in --out 'other'" elsewhere.log && [ ! -e other ]; then
  ok "--resume of another directory's checkpoint is refused"
else bad "--resume elsewhere: rc $rc"; cat elsewhere.log; fi
run both "${COMMON[@]}" --model gru --out whole --resume whole/best.safetensors --overwrite
if [ $rc -ne 0 ] && grep -q "not both" both.log && [ "$(snapshot whole)" = "$before" ]; then
  ok "--resume with --overwrite is refused"
else bad "--resume with --overwrite: rc $rc"; cat both.log; fi
run bad_lookback "${COMMON[@]}" --model lstm --out whole --overwrite --lookback 7m
if [ $rc -ne 0 ] && [ "$(snapshot whole)" = "$before" ]; then
  ok "a failing --overwrite run leaves the old run as it was"
else bad "failing --overwrite: rc $rc"; cat bad_lookback.log; fi

# 4. --overwrite with another model, stopped before its first epoch ends: the old run's weights and
#    results are gone (never reported as this run's), the new run can be resumed.
run over "${COMMON[@]}" --model lstm --out kept --overwrite --stop-after-steps 1
if [ $rc -eq 130 ] && grep -q "no epoch finished" over.log && ! grep -q "best epoch" over.log &&
   [ ! -e kept/best.safetensors ] && [ ! -e kept/results.json ] && [ ! -e kept/history.csv ] &&
   [ -e kept/interrupted.safetensors ] && grep -q '"model": "lstm"' kept/forecast.json; then
  ok "--overwrite stopped before an epoch ends: no old weights or results left, resumable"
else bad "--overwrite stopped early: rc $rc"; ls kept; cat over.log; fi
run over_resume "${BASE[@]}" --model lstm --out kept --resume kept/interrupted.safetensors  # its 4 epochs
if [ $rc -eq 0 ] && grep -q "best epoch" over_resume.log && [ ! -e kept/interrupted.safetensors ] &&
   grep -q '"epochs_run": 4' kept/results.json; then
  ok "the overwriting run resumed to the end"
else bad "resuming the overwriting run: rc $rc"; cat over_resume.log; fi

# 5. Interrupted before the first epoch ends (2 steps), at the end of epoch 2 (4 more), mid epoch 3
#    (2 more), then resumed to the end: the same files as the uninterrupted run.
run part1 "${COMMON[@]}" --model gru --out parts --stop-after-steps 2
[ $rc -eq 130 ] && [ -e parts/interrupted.safetensors ] && [ ! -e parts/best.safetensors ] &&
  ok "interrupted before the first epoch ends" || { bad "part 1: rc $rc"; cat part1.log; }
run early_eval --device cpu forecast evaluate --model-dir parts
if [ $rc -ne 0 ] && grep -q "the run in 'parts' has no best.safetensors: no epoch of it has finished; continue it with: recur forecast train --out parts --resume parts/interrupted.safetensors" early_eval.log; then
  ok "evaluate before an epoch ends says how to continue"
else bad "evaluate before an epoch ends: rc $rc"; cat early_eval.log; fi
i=2
for stop in 4 2 0; do
  extra=()
  [ $stop -gt 0 ] && extra=(--stop-after-steps $stop)
  run part$i "${COMMON[@]}" --model gru --out parts --resume parts/interrupted.safetensors "${extra[@]}"
  want=130
  [ $stop -eq 0 ] && want=0
  [ $rc -eq $want ] && ok "resumed part $i (rc $rc)" || { bad "part $i: rc $rc, expected $want"; cat part$i.log; }
  i=$((i + 1))
done
grep -q "resuming from parts/interrupted.safetensors at epoch 3, step 3" part4.log && grep -q "^Epoch 3/4 " part4.log &&
  grep -q "^Epoch 4/4 " part4.log && ! grep -q "^Epoch 1/" part4.log &&
  ok "the progress says where the run goes on" || { bad "resume position"; cat part4.log; }
if [ -s whole/history.csv ] && [ "$(figures whole/history.csv)" = "$(figures parts/history.csv)" ]; then
  ok "history.csv: every epoch, numbered on, the same figures"
else bad "history.csv differs"; cat whole/history.csv parts/history.csv; fi
if [ -s whole/results.json ] && [ "$(results whole/results.json)" = "$(results parts/results.json)" ]; then
  ok "results.json: the same best epoch, epochs run and MAEs"
else bad "results.json differs"; results whole/results.json; results parts/results.json; fi
[ ! -e parts/interrupted.safetensors ] && ok "no interrupted checkpoint left" || bad "interrupted.safetensors left behind"
cmp -s whole/model.json parts/model.json && cmp -s whole/forecast.json <(sed "s/parts/whole/" parts/forecast.json) &&
  ok "model.json and forecast.json" || bad "model.json or forecast.json differ"
"$RECUR" --device cpu forecast predict --model-dir whole --input "$DATA" >whole.predict 2>&1
"$RECUR" --device cpu forecast predict --model-dir parts --input "$DATA" >parts.predict 2>&1
if grep -q "forecast for" whole.predict && cmp -s whole.predict parts.predict; then
  ok "the best checkpoints forecast the same"
else bad "predictions differ"; cat whole.predict parts.predict; fi

# 6. A finished run: nothing left to resume unless --epochs grows.
run finished "${COMMON[@]}" --model gru --out parts --resume parts/best.safetensors
if [ $rc -ne 0 ] && grep -q "has finished its 4 epochs" finished.log; then
  ok "resuming a finished run asks for a larger --epochs"
else bad "resuming a finished run: rc $rc"; cat finished.log; fi

# 7. SIGKILL while the best checkpoint is being written: RECUR_TEST_PAUSE_IN_WRITE_MS
#    holds each atomic write after its first part (the checkpoint's header),
#    the temporary file half-written; the kill is sent once a new
#    best.safetensors is being written after a few epochs, so it lands inside
#    that write. The run directory stays usable: the previous best checkpoint
#    loads and the run resumes from it.
KILL=(--device cpu forecast train --model gru --epochs 100000 --steps-per-epoch 1 --batch-size 16
      --validation-steps 1 --lookback 1d --data "$DATA" --out killed)
RECUR_TEST_PAUSE_IN_WRITE_MS=300 "$RECUR" "${KILL[@]}" >killed.log 2>&1 &
pid=$!
for _ in $(seq 1 400); do grep -q "^Epoch 3/" killed.log && break; sleep 0.05; done
mid_write=0
for _ in $(seq 1 1000); do ls killed 2>/dev/null | grep -q '^best\.safetensors\.tmp\.' && { mid_write=1; break; }; sleep 0.02; done
kill -KILL $pid 2>/dev/null
wait $pid 2>/dev/null
if [ $mid_write -eq 1 ] && ls killed | grep -q '^best\.safetensors\.tmp\.' && [ -s killed/best.safetensors ] &&
   "$RECUR" --device cpu forecast evaluate --model-dir killed >killed_eval.log 2>&1; then
  ok "SIGKILL inside a checkpoint write: the half-made file stays aside, the previous best checkpoint loads"
else bad "SIGKILL inside a write (caught mid-write: $mid_write)"; ls killed; cat killed_eval.log 2>/dev/null; fi
"$RECUR" "${KILL[@]}" --resume killed/best.safetensors >killed.log 2>&1 &
pid=$!
for _ in $(seq 1 200); do grep -q "^Epoch" killed.log && break; sleep 0.05; done
# Then SIGKILL at other moments (checkpoints are written every epoch here).
for delay in 0.05 0.13 0.21; do
  sleep $delay
  kill -KILL $pid 2>/dev/null
  wait $pid 2>/dev/null
  "$RECUR" --device cpu forecast evaluate --model-dir killed >killed_eval.log 2>&1 ||
    { bad "after SIGKILL the best checkpoint does not load"; cat killed_eval.log; }
  "$RECUR" "${KILL[@]}" --resume killed/best.safetensors >killed.log 2>&1 &
  pid=$!
  for _ in $(seq 1 200); do grep -q "^Epoch" killed.log && break; sleep 0.05; done
done
kill -TERM $pid 2>/dev/null
wait $pid
rc=$?
[ $rc -eq 130 ] && [ -s killed/interrupted.safetensors ] && grep -q "resuming from killed/best.safetensors" killed.log &&
  ok "SIGKILLed three times: the best checkpoint loads, the run resumes, SIGTERM saves it" ||
  { bad "SIGKILL: rc $rc"; ls killed; tail -5 killed.log; }
ls killed | grep -q '\.tmp\.' && { bad "a killed write's temporary file outlived the resumed run"; ls killed; }
exit $fail
