// `recur forecast`: the Jena temperature forecaster of Deep Learning with
// Python, trained, evaluated and used from the command line (docs/forecast.md).
//
//   recur forecast train [--model NAME | --config FILE] [--data FILE] [--epochs N] [--out DIR]
//                        [--resume DIR/interrupted.safetensors | --overwrite] ...
//   recur forecast evaluate --model-dir DIR [--data FILE]
//   recur forecast predict --model-dir DIR --input RECENT.csv [--fill-gaps]
//   recur forecast ensemble --out DIR (--k K [train options] | --members DIR...)
//   recur forecast search --out DIR [--models M...] [--feature-sets F...] [train options]
//   recur forecast models            the zoo, with each model's summary
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace CLI {
class App;
class Validator;
}

namespace recur::app {

struct ForecastOptions {
  // train
  std::string model = "gru";
  std::string config;  // a model config file instead of a zoo name
  std::string data;    // empty: the bundled hourly file
  std::string out = "forecast-out";
  int epochs = 0;  // 0 (not given): the model's default (20, or 40 with dropout); --epochs must be >= 1
  std::int64_t steps_per_epoch = 500;
  std::int64_t batch_size = 128;
  std::int64_t validation_steps = 0;  // 0: every validation window
  std::string lookback = "10d", delay = "24h", step = "1h";
  std::string target = "T (degC)";
  std::uint64_t seed = 1;
  std::string resume;  // a checkpoint to continue from (e.g. DIR/interrupted.safetensors)
  bool overwrite = false;  // replace the run in `out`
  std::int64_t stop_after_steps = 0;  // tests: stop as Ctrl-C does after N steps
  bool quiet = false;
  bool fill_gaps = false;  // predict: interpolate missing rows inside the lookback
  std::string features = "none";  // --features: none, all, or a comma list of time, wind
  std::int64_t horizons = 1;      // targets per window (timeseries.h WindowSpec::horizons)
  int early_stopping = 0;         // patience in epochs; 0: off
  int reduce_lr = 0;              // ReduceLROnPlateau patience in epochs (factor 0.5); 0: off
  double learning_rate = 0;       // 0: the model config's
  bool no_test = false;           // model selection: validation only, the test split untouched
  // ensemble
  int k = 0;                         // members to train (seeds seed .. seed + k - 1)
  std::vector<std::string> members;  // or: trained run directories
  // search: a bounded grid, every run validation-only
  std::vector<std::string> search_models{"gru"};
  std::vector<std::string> search_features{"none", "time"};
  // evaluate / predict
  std::string model_dir;
  std::string input;
};

// A whole number from lo to hi, and a readable refusal otherwise ("'0' is not a
// whole number from 1 to 1000000"; CLI11's own range checks print the type's
// limits in full, 300 digits for a double).
CLI::Validator int_range(std::int64_t lo, std::int64_t hi);

// Adds the `forecast` subcommand and its own subcommands to `app`; returns it.
CLI::App* add_forecast_command(CLI::App& app, ForecastOptions& options);
// Runs whichever forecast subcommand was parsed. Returns the exit code.
int run_forecast(CLI::App& forecast, const ForecastOptions& options);

}  // namespace recur::app
