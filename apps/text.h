// `recur text`: a character-level language model (stacked LSTM or GRU,
// stateful, trained by truncated backpropagation through time) and a text
// generator that samples from it one character at a time (docs/text-generation.md).
//
//   recur text train [--data FILE] [--out DIR] [--cell lstm|gru] [--layers N] [--units N] ...
//   recur text generate --model-dir DIR [--seed TEXT] [--length N] [--temperature T] [--top-k K]
#pragma once

#include <cstdint>
#include <string>

namespace CLI {
class App;
}

namespace recur::app {

struct TextOptions {
  // train
  std::string data;  // empty: the bundled tinyshakespeare.txt.gz
  std::string out = "text-out";
  bool overwrite = false;
  std::string cell = "lstm";
  int layers = 2;
  std::int64_t units = 256;
  std::int64_t embedding = 64;
  std::int64_t seq_len = 100;
  std::int64_t batch = 32;
  int epochs = 10;
  double lr = 3e-3;
  double clipnorm = 5.0;
  double validation_fraction = 0.1;
  std::int64_t max_chars = 0;  // 0: the whole file
  std::uint64_t seed = 1;
  bool quiet = false;
  // generate
  std::string model_dir;
  std::string seed_text = "\n";
  // Run through the model before the seed, not printed: the training text's states are
  // mostly carried ones, and the first character after zero states is poorly predicted.
  // Default: two newlines when the vocabulary has them (else nothing).
  std::string prime = "\n\n";
  bool prime_given = false;
  std::int64_t length = 500;
  double temperature = 1.0;
  std::int64_t top_k = 0;
  std::uint64_t seed_rng = 1;
};

CLI::App* add_text_command(CLI::App& app, TextOptions& options);
int run_text(CLI::App& text, const TextOptions& options);

}  // namespace recur::app
