#!/usr/bin/env bash
# `recur imdb` end to end on tests/data's tiny fixtures (docs/text.md): training
# an LSTM on the synthetic reviews (the loss falls, held-out accuracy well above
# chance), the run directory (vocabulary beside the model), exact resume,
# evaluate and predict (files and stdin) from it, --pad, --token-budget, a
# convolutional model on short reviews, the multi-hot bag of bigrams, a config
# file, the aclImdb layout, and the messages for bad data, a bad model and a
# taken --out.
# Usage: imdb_cli_test.sh RECUR FIXTURES WORKDIR
set -u
. "$(dirname "${BASH_SOURCE[0]}")/cli_lib.sh" || exit 1  # cli_setup, ok, bad, run, expect
cli_setup "$@"
TINY=$DATA/imdb_tiny

# 1. Train: the loss falls and the test accuracy is well above chance (60 held-out reviews).
run train --device cpu imdb train --data "$TINY" --model lstm --epochs 10 --batch-size 8 --out run
expect train 0 "test accuracy"
test_acc=$(sed -n 's/.*test accuracy \([0-9.]*\) (60 reviews).*/\1/p' train.log)
if awk -v a="$test_acc" 'BEGIN { exit !(a >= 0.75) }'; then ok "test accuracy $test_acc >= 0.75"; else bad "test accuracy '$test_acc' < 0.75"; fi
if awk -F, 'NR == 1 { for (i = 1; i <= NF; ++i) if ($i == "loss") c = i; next }
            NR == 2 { first = $c } { last = $c } END { exit !(c && last < 0.7 * first) }' run/history.csv; then
  ok "the training loss falls (history.csv)"
else
  bad "the training loss did not fall by 30%"; cat run/history.csv
fi
for f in imdb.json model.json vocabulary.json best.safetensors results.json history.csv; do
  [ -s "run/$f" ] && ok "run/$f" || bad "run/$f missing"
done
grep -q '"format": "recur.text_vectorization/1"' run/vocabulary.json && ok "vocabulary.json" || bad "vocabulary.json format"
# Variable length keeps the last 500 tokens by default (the tokens --pad 500 keeps).
grep -q '"max_length": 500' run/imdb.json && ok "default --max-length 500 (imdb.json)" || bad "imdb.json max_length is not 500"

# 2. The run directory is not overwritten by accident.
run again --device cpu imdb train --data "$TINY" --epochs 1 --out run
expect again nonzero "holds another run"

# 2b. Interrupted (as Ctrl-C does) and resumed: the same figures as the run that was not.
run stop --device cpu imdb train --data "$TINY" --model lstm --epochs 10 --batch-size 8 --stop-after-steps 40 --out resumed
expect stop 130 "resume with --resume resumed/interrupted.safetensors"
run stop_again --device cpu imdb train --data "$TINY" --model lstm --epochs 10 --batch-size 8 --out resumed
expect stop_again 1 "pass --resume resumed/interrupted.safetensors to continue it"
run resume_other --device cpu imdb train --data "$TINY" --model lstm --batch-size 16 --resume resumed/interrupted.safetensors --out resumed
expect resume_other 1 "has batch_size 8, this command 16; give the run's --batch-size"
run resume --device cpu imdb train --data "$TINY" --model lstm --batch-size 8 --resume resumed/interrupted.safetensors --out resumed
expect resume 0 "resuming from resumed/interrupted.safetensors at epoch 3, step 11"
if [ "$(grep '^best epoch' resume.log)" = "$(grep '^best epoch' train.log)" ] && [ -n "$(grep '^best epoch' train.log)" ]; then
  ok "resumed run's results equal the uninterrupted run's"
else
  bad "resumed: '$(grep '^best epoch' resume.log)' against '$(grep '^best epoch' train.log)'"
fi

# 3. Evaluate gives the test accuracy training printed.
run evaluate --device cpu imdb evaluate --model-dir run
expect evaluate 0 "test accuracy $test_acc, loss"

# 4. Predict: files (one review each) and stdin (one review a line).
printf 'A wonderful film, great cast and a superb ending. Loved it!' >good.txt
printf 'Awful. Boring plot, terrible actors, the worst waste of time.' >poor.txt
run predict_files --device cpu imdb predict --model-dir run good.txt poor.txt
if grep -qE '^0\.[5-9][0-9]*	positive	good\.txt$|^1\.0+	positive	good\.txt$' predict_files.log &&
   grep -qE '^0\.[0-4][0-9]*	negative	poor\.txt$' predict_files.log; then
  ok predict_files
else
  bad "predict_files"; cat predict_files.log
fi
printf 'superb and brilliant\nboring and dull\n' | "$RECUR" --device cpu imdb predict --model-dir run >predict_stdin.log 2>&1
if grep -qE '	positive	stdin:1$' predict_stdin.log && grep -qE '	negative	stdin:2$' predict_stdin.log; then
  ok predict_stdin
else
  bad predict_stdin; cat predict_stdin.log
fi

# 5. Padded as the book, and a convolutional model on reviews shorter than its receptive field.
run pad --device cpu imdb train --data "$TINY" --model gru --pad 12 --epochs 2 --out pad
expect pad 0 "every review padded or truncated to 12 tokens"
grep -q '"max_length": 0' pad/imdb.json && ok "--pad: no --max-length" || bad "pad/imdb.json max_length is not 0"
run all_tokens --device cpu imdb train --data "$TINY" --model lstm --epochs 1 --max-length 0 --no-test --out all_tokens
expect all_tokens 0 "best epoch 1"
grep -q '"max_length": 0' all_tokens/imdb.json && ok "--max-length 0 keeps every token" || bad "all_tokens/imdb.json max_length is not 0"
run attn --device cpu imdb train --data "$TINY" --model lstm-attention --epochs 10 --batch-size 8 --out attn
expect attn 0 "test accuracy"
attn_acc=$(sed -n 's/.*test accuracy \([0-9.]*\) (60 reviews).*/\1/p' attn.log)
if awk -v a="$attn_acc" 'BEGIN { exit !(a >= 0.75) }'; then ok "lstm-attention test accuracy $attn_acc >= 0.75"; else bad "lstm-attention test accuracy '$attn_acc' < 0.75"; fi
run attn_predict --device cpu imdb predict --model-dir attn good.txt
expect attn_predict 0 "good.txt"
run conv --device cpu imdb train --data "$TINY" --model conv1d --epochs 1 --out conv
expect conv 0 "test accuracy"
run conv_predict --device cpu imdb predict --model-dir conv good.txt
expect conv_predict 0 "good.txt"

# 5a. Variable length under a token budget: batches of short reviews hold more of them.
run budget --device cpu imdb train --data "$TINY" --model lstm --epochs 2 --batch-size 64 --token-budget 256 --out budget
expect budget 0 "batches of up to 256 padded tokens and 64 reviews"
run budget_pad --device cpu imdb train --data "$TINY" --pad 20 --token-budget 256 --out b5
expect budget_pad 1 "--token-budget is for variable-length batches"

# 5b. The bag of words and bigrams (multi-hot): trains, and predicts from its saved vocabulary.
run bigrams --device cpu imdb train --data "$TINY" --model bag-of-bigrams --epochs 10 --batch-size 8 --out bigrams
expect bigrams 0 "words and bigrams (max_tokens 20000"
grep -q '"max_length": 0' bigrams/imdb.json && ok "bigrams: no --max-length" || bad "bigrams/imdb.json max_length is not 0"
grep -q '"output_mode": "multi_hot"' bigrams/vocabulary.json && grep -q '"ngrams": 2' bigrams/vocabulary.json &&
  ok "bigrams: vocabulary.json multi_hot, ngrams 2" || bad "bigrams: vocabulary.json options"
run bigrams_predict --device cpu imdb predict --model-dir bigrams good.txt poor.txt
if grep -qE '	positive	good\.txt$' bigrams_predict.log && grep -qE '	negative	poor\.txt$' bigrams_predict.log; then
  ok bigrams_predict
else
  bad bigrams_predict; cat bigrams_predict.log
fi
run bigrams_pad --device cpu imdb train --data "$TINY" --model bag-of-bigrams --pad 50 --out b4
expect bigrams_pad 1 "--pad, --max-length and --token-budget are for sequence models"

# 5c. A model config file: its own compile options, binary accuracy still reported; an
#     Embedding too small for the vocabulary refused before training.
cat >gru.json <<'JSON'
{"format": "recur.model/1", "name": "my-gru", "input_shape": [null],
 "layers": [{"type": "Embedding", "input_dim": 100, "output_dim": 8, "mask_zero": true},
            {"type": "GRU", "units": 8}, {"type": "Dense", "units": 1}],
 "compile": {"optimizer": {"name": "adam", "learning_rate": 0.01}, "loss": "binary_crossentropy"}}
JSON
run config --device cpu imdb train --data "$TINY" --config gru.json --epochs 2 --batch-size 8 --out config
expect config 0 "test accuracy"
sed 's/"input_dim": 100/"input_dim": 10/' gru.json >small.json
run config_small --device cpu imdb train --data "$TINY" --config small.json --epochs 1 --out b6
expect config_small 1 "the Embedding's input_dim 10 is smaller than the vocabulary"

# 6. The aclImdb layout (validation carved out of train/).
run acl --device cpu imdb train --data "$DATA/aclImdb_tiny" --model simple-rnn --epochs 1 --batch-size 2 --validation-split 0.34 --out acl
expect acl 0 "test accuracy"
grep -qF "aclImdb_tiny/train (validation carved out of it)" acl.log && ok "acl: carved validation said" || bad "acl: no carve message"

# 7. Messages.
mkdir -p badtsv
printf 'label\tid\trating\ttext\n1\t0\t9\tfine\n1\t1\t9\n' >badtsv/imdb_train.tsv
run bad_row --device cpu imdb train --data badtsv --out b1
expect bad_row 1 "badtsv/imdb_train.tsv' line 3: 3 tab-separated columns, expected 4"
run missing --device cpu imdb train --data /nonexistent/aclImdb --out b2
expect missing 1 "'/nonexistent/aclImdb' does not exist"
run unknown --device cpu imdb train --data "$TINY" --model lstmm --out b3
expect unknown 1 "unknown model 'lstmm'"
run no_dir --device cpu imdb evaluate --model-dir /nonexistent/run
expect no_dir 1 "model directory '/nonexistent/run' does not exist"
[ ! -e b1 ] && [ ! -e b3 ] && [ ! -e b4 ] && [ ! -e b5 ] && [ ! -e b6 ] && ok "failed runs leave no --out" || bad "a failed run created its --out"

exit $fail
