#!/usr/bin/env bash
# `recur forecast` beyond the book (issue 17), end to end with tiny settings on 600-row files:
#  - bad --features values and features the data cannot give are refused before --out is made;
#  - the features are recorded in forecast.json, and evaluate/predict rebuild them from it (the
#    validation MAE evaluate computes equals the one train reported), refusing data without a needed
#    column or a run directory whose recorded features do not give its columns;
#  - --features all takes the wind vector where the data has a direction (and not where it has none);
#  - --horizons: shapes, one MAE per horizon (the last is the delay's), one forecast per horizon;
#  - ensembles: the average is exact (a run listed twice scores as the run; two members' mean);
#    members must forecast alike; --no-test leaves the test split untouched.
# Usage: forecast_features_test.sh RECUR DATADIR WORKDIR
set -u
. "$(dirname "${BASH_SOURCE[0]}")/cli_lib.sh" || exit 1  # cli_setup, ok, bad, run, expect
cli_setup "$@"
PLAIN=$DATA/jena_600_rows.csv
WIND=$DATA/jena_600_rows_wind.csv
TRAIN=(--device cpu forecast train --epochs 1 --steps-per-epoch 2 --batch-size 16 --validation-steps 1 --lookback 1d)
EVAL=(--device cpu forecast evaluate)
PRED=(--device cpu forecast predict)

# 1. Bad values.
run bad_word "${TRAIN[@]}" --data "$PLAIN" --features time,sun --out bw
expect bad_word 1 "--features 'time,sun': unknown feature 'sun'; give none, all, or a comma list of time"
run no_direction "${TRAIN[@]}" --data "$PLAIN" --features wind --out nd
expect no_direction 1 "the wind feature needs the wind speed 'wv (m/s)' and direction 'wd (deg)'; missing: 'wd (deg)'"
run horizons_5 "${TRAIN[@]}" --data "$PLAIN" --horizons 5 --out h5
expect horizons_5 1 "--horizons 5 must divide --delay 24h (24 rows)"
printf '%s\n' '{"format": "recur.model/1", "name": "one-out", "input_shape": [null, null],' \
  '"layers": [{"type": "GRU", "units": 4}, {"type": "Dense", "units": 1}]}' >one_out.json
run config_horizons "${TRAIN[@]}" --data "$PLAIN" --model-config one_out.json --horizons 24 --out ch
expect config_horizons 1 "does not fit --horizons 24: its last layer must give one value per horizon"
for d in bw nd h5 ch; do [ -e "$d" ] && bad "$d: --out made although the run was refused"; done

# 2. Time features: recorded, and rebuilt the same way by evaluate and predict.
run time "${TRAIN[@]}" --data "$PLAIN" --features time --out time
expect time 0 "validation MAE"
grep -q '"features": \[' time/forecast.json && grep -A2 '"features"' time/forecast.json | grep -q '"time"' &&
  grep -q '"day sin"' time/forecast.json && ok "time: recorded" || bad "time: features not in forecast.json"
train_val=$(grep -oE 'validation MAE [0-9.]+' time.log | grep -oE '[0-9.]+$')
run time_eval "${EVAL[@]}" --model-dir time
expect time_eval 0 "validation: MAE $train_val degC"
run time_predict "${PRED[@]}" --model-dir time --input "$PLAIN"
expect time_predict 0 "forecast for 26.01.2009 23:10:00 (24h later):"
cut -d, -f1-6 "$PLAIN" >no_wv.csv
run time_missing "${PRED[@]}" --model-dir time --input no_wv.csv
expect time_missing 1 "no column 'wv (m/s)'"
grep -qF "reads the columns it was trained on (with --features time): give a file that has them" time_missing.log &&
  ok "time_missing: names the features" || bad "time_missing: does not name the features"
cp -r time tampered
sed -i 's/"time"$/"wind"/; s/"time",/"wind",/' tampered/forecast.json
run tampered "${EVAL[@]}" --model-dir tampered
expect tampered 1 "the wind feature needs"

# 3. Wind: `all` takes it where the data has a direction; predict refuses data without one.
run wind "${TRAIN[@]}" --data "$WIND" --features all --out wind
expect wind 0 "validation MAE"
grep -q '"Wx (m/s)"' wind/forecast.json && grep -q '"max. Wy (m/s)"' wind/forecast.json &&
  ! grep -A12 '"columns"' wind/forecast.json | grep -q '"wd (deg)"' && ok "wind: vector columns" ||
  bad "wind: columns $(grep -A14 '"columns"' wind/forecast.json | tr -d '\n ')"
run wind_predict "${PRED[@]}" --model-dir wind --input "$WIND"
expect wind_predict 0 "(24h later):"
run wind_plain "${PRED[@]}" --model-dir wind --input "$PLAIN"
expect wind_plain 1 "no column 'max. wv (m/s)'"
run all_plain "${TRAIN[@]}" --data "$PLAIN" --features all --out allplain
expect all_plain 0 "validation MAE"
grep -A3 '"features"' allplain/forecast.json | grep -q wind && bad "all_plain: wind without a direction" ||
  ok "all_plain: time only"

# 4. Multi-horizon.
run multi "${TRAIN[@]}" --data "$PLAIN" --horizons 24 --out multi
expect multi 0 "validation MAE per horizon (degC): +1h "
run multi_eval "${EVAL[@]}" --model-dir multi
n=$(grep 'per horizon' multi_eval.log | head -1 | grep -o '(naive' | wc -l)
[ "$n" = 24 ] && ok "multi_eval: 24 horizons" || { bad "multi_eval: $n horizons"; cat multi_eval.log; }
python3 - multi/results.json <<'PY' && ok "multi: results per horizon" || bad "multi: results per horizon"
import json, sys
r = json.load(open(sys.argv[1]))
v = r["val_mae_per_horizon_degc"]
assert len(v) == 24 and len(r["test_mae_per_horizon_degc"]) == 24, r
assert abs(v[-1] - r["val_mae_degc"]) < 1e-9, (v[-1], r["val_mae_degc"])
PY
run multi_predict "${PRED[@]}" --model-dir multi --input "$PLAIN"
n=$(grep -c '^forecast for' multi_predict.log)
[ "$n" = 24 ] && grep -qF "forecast for 26.01.2009 00:10:00 (+1h):" multi_predict.log && ok "multi_predict: 24 forecasts" ||
  { bad "multi_predict: $n forecasts"; cat multi_predict.log; }

# 5. Ensembles.
run ens "${TRAIN[@]/train/ensemble}" --data "$PLAIN" --features time --k 2 --out ens
expect ens 0 "ensemble of 2: validation MAE"
[ -f ens/ensemble.json ] && [ -f ens/member-1/best.safetensors ] && [ -f ens/member-2/best.safetensors ] &&
  grep -q '"seed": 2' ens/member-2/forecast.json && ok "ens: two members, seeds 1 and 2" || bad "ens: files"
run ens_eval "${EVAL[@]}" --model-dir ens
expect ens_eval 0 "2 members alone:"
run ens_predict "${PRED[@]}" --model-dir ens --input "$PLAIN"
expect ens_predict 0 "the mean of 2 members' forecasts"
awk '/the mean of 2 members/ { split($0, p, ": "); split(p[2], v, /, | -> | degC/);
       d = (v[1] + v[2]) / 2 - v[3]; if (d < 0) d = -d; exit !(d <= 1.5e-4) }' ens_predict.log &&
  ok "ens_predict: the mean of the members" || { bad "ens_predict: not the mean"; cat ens_predict.log; }
run twice "${TRAIN[@]/train/ensemble}" --members time time --out twice
expect twice 0 "ensemble of 2"
run twice_eval "${EVAL[@]}" --model-dir twice
grep -q '^test: MAE' twice_eval.log &&
  [ "$(grep -E '^(validation|test):' twice_eval.log)" = "$(grep -E '^(validation|test):' time_eval.log)" ] &&
  ok "twice: a run listed twice scores as the run" || { bad "twice: differs"; cat twice_eval.log time_eval.log; }
run mixed "${TRAIN[@]/train/ensemble}" --members time multi --out mixed
expect mixed 1 "has horizons 24, member"
run neither "${TRAIN[@]/train/ensemble}" --out neither
expect neither 1 "give --k K (train K members) or --members DIR..."
run again "${TRAIN[@]/train/ensemble}" --members time --out twice
expect again 1 "holds an ensemble (ensemble.json); pass --overwrite"

# 6. search: a bounded grid, validation only, sorted.
run search "${TRAIN[@]/train/search}" --data "$PLAIN" --models gru dense --feature-sets none time --out search
expect search 0 "best by validation: "
[ "$(grep -c '^| `' search/search.md)" = 4 ] && ! grep -q '"test_mae_degc": [0-9]' search/*/results.json &&
  python3 -c "import json,sys; v=[r['val_mae_degc'] for r in json.load(open('search/search.json'))]; sys.exit(v!=sorted(v))" &&
  ok "search: 4 runs sorted by validation, no test figure" || { bad "search: table"; cat search/search.md; }
run search_features "${TRAIN[@]/train/search}" --data "$PLAIN" --features time --out sf
expect search_features 1 "search tries --models and --feature-sets; --model and --features are train's"
run search_big "${TRAIN[@]/train/search}" --data "$PLAIN" --models gru dense lstm conv gru-dropout --feature-sets none time all wind --out sb
expect search_big 1 "search: 5 models x 4 feature sets = 20 runs; give 1 to 16"

# 7. The schedule options are part of the run: --resume with others is refused.
SCHED=(--device cpu forecast train --epochs 2 --steps-per-epoch 2 --batch-size 16 --validation-steps 1 --lookback 1d)
run stopped "${SCHED[@]}" --data "$PLAIN" --early-stopping 3 --stop-after-steps 1 --out sched
expect stopped 130 "interrupted: the state is in"
run resume_other "${SCHED[@]}" --data "$PLAIN" --early-stopping 4 --resume sched/interrupted.safetensors --out sched
expect resume_other 1 "has early_stopping 3, this command 4; give the run's --early-stopping"
run resume_same "${SCHED[@]}" --data "$PLAIN" --early-stopping 3 --resume sched/interrupted.safetensors --out sched
expect resume_same 0 "best epoch"

# 8. --no-test.
run notest "${TRAIN[@]}" --data "$PLAIN" --no-test --out notest
expect notest 0 "test not evaluated (--no-test)"
grep -q '"test_mae_degc": null' notest/results.json && ok "notest: no test figure" || bad "notest: a test figure"
run notest_eval "${EVAL[@]}" --model-dir notest --no-test
expect notest_eval 0 "test: not evaluated (--no-test)"
grep -q '^test: MAE' notest_eval.log && bad "notest_eval: test evaluated"

exit $fail
