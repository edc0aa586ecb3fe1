// `recur imdb`: IMDB movie-review sentiment, trained, evaluated and used from
// the command line (docs/text.md).
//
//   recur imdb train --data DIR_OR_TSV [--model NAME | --config FILE] [--pad N] [--epochs N] [--out DIR]
//   recur imdb evaluate --model-dir DIR [--data DIR_OR_TSV]
//   recur imdb predict --model-dir DIR [FILE...]     (no FILE, or -: stdin, one review a line)
//   recur imdb models                                 the zoo, with each model's summary
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace recur::app {

// The variable-length default of --max-length: the book's maxlen, so that a
// variable-length run reads the same tokens as a --pad 500 run.
inline constexpr std::int64_t kDefaultMaxLength = 500;

struct ImdbOptions {
  // train
  std::string model = "lstm";
  std::string config;  // a model config file instead of a zoo name
  std::string data;    // aclImdb folder, folder of imdb_*.tsv.gz, or one TSV
  std::string out = "imdb-out";
  int epochs = 0;  // 0: the model's default
  std::int64_t batch_size = 32;
  std::int64_t max_tokens = 0;  // vocabulary size, padding and OOV included (Keras); 0: the model's
  std::int64_t pad = 0;             // 0: variable length, bucketed; N: every review padded/truncated to N
  // Variable length: longer reviews keep their last max_length tokens (0: all;
  // -1: kDefaultMaxLength for sequence models, the tokens --pad 500 keeps).
  std::int64_t max_length = -1;
  std::int64_t token_budget = 0;    // variable length: at most this many padded tokens a batch (0: none)
  double validation_split = 0.2;    // carved from train when --data has no validation split
  std::int64_t steps_per_epoch = 0;   // 0: every batch
  std::int64_t validation_steps = 0;  // 0: every batch
  std::uint64_t seed = 1;
  std::string resume;  // a checkpoint to continue from (OUT/interrupted.safetensors)
  bool overwrite = false;
  bool quiet = false;
  bool no_test = false;  // skip the test split at the end of training
  std::int64_t stop_after_steps = 0;
  // evaluate / predict
  std::string model_dir;
  std::vector<std::string> inputs;
};

// Adds the `imdb` subcommand and its own subcommands to `app`; returns it.
CLI::App* add_imdb_command(CLI::App& app, ImdbOptions& options);
// Runs whichever imdb subcommand was parsed. Returns the exit code.
int run_imdb(CLI::App& imdb, const ImdbOptions& options);

}  // namespace recur::app
