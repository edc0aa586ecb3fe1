#!/usr/bin/env bash
# `recur text`, end to end on the first 20,000 characters of the bundled tinyshakespeare
# (docs/text-generation.md): a tiny GRU trains for a few seconds and its validation
# cross-entropy falls below the unigram entropy; generate prints the seed and exactly
# --length characters, the same ones for the same --seed-rng, others for another; and the
# refusals name the problem (a seed character outside the vocabulary, a bad temperature,
# a missing model directory, a run in --out, a file that is not text).
# Usage: text_cli_test.sh RECUR WORKDIR
set -u
. "$(dirname "${BASH_SOURCE[0]}")/cli_lib.sh" || exit 1  # cli_setup, ok, bad
cli_setup "$@"
TRAIN=(--device cpu text train --max-chars 20000 --cell gru --layers 1 --units 64 --embedding 16
       --seq-len 32 --batch 16 --epochs 4 --lr 0.01 --seed 1)

# 1. Training: the best validation cross-entropy is below the unigram entropy.
"$RECUR" "${TRAIN[@]}" --out run >train.log 2>&1
rc=$?
line=$(grep -E '^best epoch' train.log)
if [ $rc -eq 0 ] && [ -n "$line" ]; then
  val=$(echo "$line" | sed -E 's/.*validation cross-entropy ([0-9.]+) nats.*/\1/')
  uni=$(echo "$line" | sed -E 's/.*unigram ([0-9.]+)\).*/\1/')
  if awk -v v="$val" -v u="$uni" 'BEGIN { exit !(v < u - 0.5) }'; then
    ok "validation $val nats/char < unigram $uni - 0.5"
  else
    bad "validation $val nats/char is not below unigram $uni - 0.5"
  fi
else
  bad "training: rc $rc"
  cat train.log
fi
for f in text.json model.json best.safetensors history.csv; do
  [ -f "run/$f" ] && ok "run/$f written" || bad "run/$f missing"
done
[ "$(wc -l <run/history.csv)" -eq 5 ] && ok "history.csv: 4 epochs" || bad "history.csv: $(cat run/history.csv)"

# 2. Generation: the seed, then exactly N characters; reproducible from --seed-rng.
gen() { "$RECUR" --device cpu text generate --model-dir run "$@"; }
gen --seed "ROMEO:" --length 200 --temperature 0.8 --seed-rng 7 >a.txt 2>a.err
rc=$?
# The output is the seed, 200 characters and a final newline.
n=$(($(wc -c <a.txt) - 6 - 1))
[ $rc -eq 0 ] && [ $n -eq 200 ] && ok "generate printed 200 characters" || { bad "generate: rc $rc, $n characters"; cat a.txt a.err; }
[ "$(head -c 6 a.txt)" = "ROMEO:" ] && ok "output starts with the seed" || bad "output does not start with the seed"
gen --seed "ROMEO:" --length 200 --temperature 0.8 --seed-rng 7 >b.txt 2>&1
cmp -s a.txt b.txt && ok "same --seed-rng, same text" || bad "same --seed-rng gave another text"
gen --seed "ROMEO:" --length 200 --temperature 0.8 --seed-rng 8 >c.txt 2>&1
cmp -s a.txt c.txt && bad "another --seed-rng gave the same text" || ok "another --seed-rng, another text"
gen --seed "ROMEO:" --length 50 --temperature 0 --seed-rng 1 >d.txt 2>&1
gen --seed "ROMEO:" --length 50 --temperature 0 --seed-rng 2 >e.txt 2>&1
cmp -s d.txt e.txt && ok "temperature 0 is greedy (independent of the seed)" || bad "temperature 0 depends on the RNG"
gen --seed "ROMEO:" --length 100 --top-k 1 --seed-rng 3 >f.txt 2>&1
gen --seed "ROMEO:" --length 100 --temperature 0 >g.txt 2>&1
cmp -s f.txt g.txt && ok "top-k 1 equals greedy" || bad "top-k 1 differs from greedy"

# 3. Refusals.
expect() {  # expect NAME REGEX ARGS...: a nonzero exit and a message matching REGEX
  local name=$1 regex=$2
  shift 2
  "$RECUR" "$@" >"$name.log" 2>&1
  local rc=$?
  if [ $rc -ne 0 ] && grep -qE -- "$regex" "$name.log"; then ok "$name"; else bad "$name: rc $rc: $(cat "$name.log")"; fi
}
expect seed_oov "--seed: the character '@' at position 3 is not in the model's vocabulary" \
  --device cpu text generate --model-dir run --seed "ROM@O"
expect prime_oov "--prime: the character '@' at position 0" \
  --device cpu text generate --model-dir run --prime "@"
expect bad_temperature "--temperature must be a number >= 0" \
  --device cpu text generate --model-dir run --temperature -1
expect no_model_dir "model directory 'nowhere' does not exist" --device cpu text generate --model-dir nowhere
expect run_in_out "holds another run .*--overwrite" "${TRAIN[@]}" --out run
printf 'ab\0cd' >binary.txt
expect binary_data "not a text file: a NUL byte at offset 2" "${TRAIN[@]}" --data binary.txt --out other
expect missing_data "cannot open 'missing.txt'" "${TRAIN[@]}" --data missing.txt --out other
expect bad_cell "--cell: .*rnn" "${TRAIN[@]}" --cell rnn --out other
printf 'To be, or not to be, that is the question.\n%.0s' 1 2 3 4 5 6 7 >short.txt
expect short_text "the training text has [0-9]+ characters; 16 streams of 32-character chunks need at least 528" \
  "${TRAIN[@]}" --data short.txt --out other
[ ! -e other ] && ok "refused runs wrote nothing" || bad "a refused run wrote into --out"
exit $fail
