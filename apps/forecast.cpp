// `recur forecast`: see forecast.h and docs/forecast.md.
#include "forecast.h"

#include <CLI/CLI.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <unistd.h>
#include <fstream>
#include <functional>
#include <iomanip>
#include <iostream>
#include <map>
#include <algorithm>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "plot.h"
#include "recur/recur.h"

namespace recur::app {

namespace fs = std::filesystem;
using json = nlohmann::json;
namespace ts = recur::timeseries;

namespace {

// ---- the zoo ----------------------------------------------------------------------------
struct ZooModel {
  const char* name;
  const char* what;
  int epochs;  // the book's: 20, or 40 with dropout
  const char* layers;  // JSON array of layers (model_config.h)
};

const ZooModel kZoo[] = {
    {"dense", "Flatten, Dense 32 relu, Dense 1", 20,
     R"([{"type": "Flatten"}, {"type": "Dense", "units": 32, "activation": "relu"}, {"type": "Dense", "units": 1}])"},
    {"gru", "GRU 32, Dense 1", 20, R"([{"type": "GRU", "units": 32}, {"type": "Dense", "units": 1}])"},
    {"gru-dropout", "GRU 32 with dropout 0.2 and recurrent dropout 0.2, Dense 1", 40,
     R"([{"type": "GRU", "units": 32, "dropout": 0.2, "recurrent_dropout": 0.2}, {"type": "Dense", "units": 1}])"},
    {"stacked-gru", "GRU 32 (sequences; dropout 0.1, recurrent 0.5), GRU 64 (same), Dense 1", 40,
     R"([{"type": "GRU", "units": 32, "return_sequences": true, "dropout": 0.1, "recurrent_dropout": 0.5},
         {"type": "GRU", "units": 64, "dropout": 0.1, "recurrent_dropout": 0.5}, {"type": "Dense", "units": 1}])"},
    {"bidirectional-gru", "Bidirectional GRU 32 (concat), Dense 1", 20,
     R"([{"type": "Bidirectional", "layer": {"type": "GRU", "units": 32}}, {"type": "Dense", "units": 1}])"},
    {"lstm", "LSTM 32, Dense 1", 20, R"([{"type": "LSTM", "units": 32}, {"type": "Dense", "units": 1}])"},
    {"conv", "Conv1D 32 k5 relu, MaxPooling1D 3, twice; Conv1D 32 k5 relu, GlobalMaxPooling1D, Dense 1", 20,
     R"([{"type": "Conv1D", "filters": 32, "kernel_size": 5, "activation": "relu"},
         {"type": "MaxPooling1D", "pool_size": 3},
         {"type": "Conv1D", "filters": 32, "kernel_size": 5, "activation": "relu"},
         {"type": "MaxPooling1D", "pool_size": 3},
         {"type": "Conv1D", "filters": 32, "kernel_size": 5, "activation": "relu"},
         {"type": "GlobalMaxPooling1D"}, {"type": "Dense", "units": 1}])"},
    {"conv-gru", "Conv1D 32 k5 relu, MaxPooling1D 3, Conv1D 32 k5 relu, GRU 32 (dropout 0.1, recurrent 0.5), Dense 1",
     40,
     R"([{"type": "Conv1D", "filters": 32, "kernel_size": 5, "activation": "relu"},
         {"type": "MaxPooling1D", "pool_size": 3},
         {"type": "Conv1D", "filters": 32, "kernel_size": 5, "activation": "relu"},
         {"type": "GRU", "units": 32, "dropout": 0.1, "recurrent_dropout": 0.5}, {"type": "Dense", "units": 1}])"},
    // Beyond the book (issue 17): wider and deeper GRUs with recurrent dropout, and attention
    // over the GRU's states (docs/attention.md). Any layer-wise variant is a --model-config file
    // away (docs/forecast.md).
    {"gru-wide", "GRU 64 (dropout 0.1, recurrent 0.25), Dense 1", 30,
     R"([{"type": "GRU", "units": 64, "dropout": 0.1, "recurrent_dropout": 0.25}, {"type": "Dense", "units": 1}])"},
    {"gru-deep", "GRU 48 (sequences; dropout 0.1, recurrent 0.25), GRU 48 (same), Dense 1", 30,
     R"([{"type": "GRU", "units": 48, "return_sequences": true, "dropout": 0.1, "recurrent_dropout": 0.25},
         {"type": "GRU", "units": 48, "dropout": 0.1, "recurrent_dropout": 0.25}, {"type": "Dense", "units": 1}])"},
    {"gru-attention",
     "GRU 32 (sequences; dropout 0.1, recurrent 0.25), AttentionPooling (dot, the last state as query, scaled), "
     "Dense 1",
     30,
     R"([{"type": "GRU", "units": 32, "return_sequences": true, "dropout": 0.1, "recurrent_dropout": 0.25},
         {"type": "AttentionPooling", "score_mode": "dot", "query": "last", "use_scale": true},
         {"type": "Dense", "units": 1}])"},
};

const ZooModel& zoo_model(const std::string& name) {
  std::string names;
  for (const ZooModel& z : kZoo) {
    if (name == z.name) return z;
    names += (names.empty() ? "" : ", ") + std::string(z.name);
  }
  RECUR_THROW(Value, "unknown model '", name, "' (the zoo: ", names, "; or --model-config FILE)");
}

// A zoo model's config text: RMSprop 1e-3 and MAE, as the book. With H horizons the last
// Dense layer has H units (a direct multi-horizon forecast).
std::string zoo_config(const ZooModel& z, std::int64_t horizons = 1) {
  json c = json::parse(std::string(R"({"format": "recur.model/1", "name": ")") + z.name +
                       R"(", "input_shape": [null, null], "layers": )" + z.layers +
                       R"(, "compile": {"optimizer": {"name": "rmsprop", "learning_rate": 0.001}, "loss": "mae"}})");
  if (horizons != 1) c["layers"].back()["units"] = horizons;
  return c.dump();
}

// ---- data ---------------------------------------------------------------------------------
std::string bundled_data() { return bundled_file("jena_climate_2009_2016_hourly.csv.gz"); }

struct Data {
  std::string path;
  std::vector<std::string> source_columns;  // read from the file; raw adds the features to them
  ts::FeatureSet features;
  ts::TimeseriesTable raw, norm;
  ts::Normalizer normalizer;
  ts::Splits splits;
  ts::WindowSpec spec;
  int target = 0;
  std::int64_t interval = 0;
};

ts::WindowSpec window_spec(const ForecastOptions& o, std::int64_t interval) {
  ts::WindowSpec s;
  s.step = ts::duration_to_rows(ts::parse_duration(o.step), interval, "step");
  s.lookback = ts::duration_to_rows(ts::parse_duration(o.lookback), interval, "lookback");
  s.delay = ts::duration_to_rows(ts::parse_duration(o.delay), interval, "delay");
  s.horizons = o.horizons;
  RECUR_CHECK(s.horizons >= 1 && (s.horizons == 1 || (s.delay >= s.horizons && s.delay % s.horizons == 0)), Value,
              "--horizons ", o.horizons, " must divide --delay ", o.delay, " (", s.delay,
              " rows): the horizons are every delay/horizons rows up to the delay");
  RECUR_CHECK(s.step > 0 && s.lookback >= s.step && s.lookback % s.step == 0, Value, "--lookback ", o.lookback,
              " must be a positive multiple of --step ", o.step);
  return s;
}

// Adapts a window generator to fit's BatchSource.
class Windows final : public BatchSource {
 public:
  Windows(const ts::WindowGenerator& g, Device d, std::int64_t limit = 0) : g_(g), d_(d), limit_(limit) {}
  std::int64_t size() const override {
    return limit_ > 0 ? std::min(limit_, g_.steps_per_epoch()) : g_.steps_per_epoch();
  }
  Batch get(std::int64_t epoch, std::int64_t index) const override {
    const ts::WindowBatch b = g_.batch(epoch, index);
    Batch out;
    out.x = b.x_tensor(d_);
    out.y = b.y_tensor(d_);
    return out;
  }

 private:
  const ts::WindowGenerator& g_;
  Device d_;
  std::int64_t limit_;
};

std::ostream& out_stream(const ForecastOptions& o) {
  static std::ostringstream sink;
  return o.quiet ? static_cast<std::ostream&>(sink) : std::cout;
}

// Predictions (degC) and targets (degC) for the first `count` windows of a split.
struct Forecasts {
  std::vector<double> hours, predicted, actual;
};
Forecasts forecast_windows(Sequential& model, const Data& d, const ts::RowRange& split, std::int64_t count,
                           Device dev) {
  ts::WindowGenerator g(d.norm, d.target, d.spec, split, 128, false);
  Forecasts f;
  const std::int64_t n = std::min(count, g.windows());
  for (std::int64_t k = 0; k * 128 < n; ++k) {
    const ts::WindowBatch b = g.batch(0, k);
    const std::vector<float> y = model.predict(b.x_tensor(dev)).to_vector<float>();
    const std::int64_t H = d.spec.horizons;
    for (std::int64_t i = 0; i < b.size && std::int64_t(f.actual.size()) < n; ++i) {
      const std::int64_t row = b.now[std::size_t(i)] + d.spec.delay;
      f.hours.push_back(double(d.raw.timestamps[std::size_t(row)] - d.raw.timestamps[std::size_t(split.begin)]) / 3600.0);
      f.predicted.push_back(d.normalizer.denormalize(d.target, y[std::size_t(i * H + H - 1)]));
      f.actual.push_back(d.raw.at(row, d.target));
    }
  }
  return f;
}

// Forecasts (degC) for every window of `split` in time order: [windows, H].
std::vector<double> predict_split(Sequential& model, const Data& d, const ts::RowRange& split, Device dev) {
  const ts::WindowGenerator g(d.norm, d.target, d.spec, split, 256, false);
  const std::int64_t H = d.spec.horizons;
  std::vector<double> out;
  out.reserve(std::size_t(g.windows() * H));
  for (std::int64_t k = 0; k < g.steps_per_epoch(); ++k) {
    const ts::WindowBatch b = g.batch(0, k);
    const std::vector<float> y = model.predict(b.x_tensor(dev)).to_vector<float>();
    RECUR_CHECK(std::int64_t(y.size()) == b.size * H, Shape, "the model gives ", y.size() / std::size_t(b.size),
                " value(s) per window, the run forecasts ", H, " horizon(s)");
    for (const float v : y) out.push_back(d.normalizer.denormalize(d.target, v));
  }
  return out;
}

// MAE (degC) per horizon of forecasts [windows, H] against the data, and the naive baseline's
// ("the temperature at each horizon = now") over the same windows, summed in double.
struct Score {
  std::int64_t windows = 0;
  std::vector<double> mae, naive;  // [H]; the last is the horizon --delay
  double at_delay() const { return mae.back(); }
  double naive_at_delay() const { return naive.back(); }
  double mean() const {
    double s = 0;
    for (double v : mae) s += v;
    return s / double(mae.size());
  }
};
Score score(const std::vector<double>& forecasts, const Data& d, const ts::RowRange& split) {
  const std::int64_t H = d.spec.horizons, first = split.begin + d.spec.lookback - 1;
  Score s;
  s.windows = split.size() - d.spec.lookback - d.spec.delay + 1;
  RECUR_CHECK(std::int64_t(forecasts.size()) == s.windows * H, Shape, forecasts.size(), " forecasts for ", s.windows,
              " windows of ", H, " horizon(s)");
  s.mae.assign(std::size_t(H), 0.0);
  s.naive.assign(std::size_t(H), 0.0);
  for (std::int64_t w = 0; w < s.windows; ++w) {
    const std::int64_t t = first + w;
    const double now = d.raw.at(t, d.target);
    for (std::int64_t h = 0; h < H; ++h) {
      const double actual = d.raw.at(t + d.spec.horizon_rows(h), d.target);
      s.mae[std::size_t(h)] += std::fabs(forecasts[std::size_t(w * H + h)] - actual);
      s.naive[std::size_t(h)] += std::fabs(now - actual);
    }
  }
  for (std::int64_t h = 0; h < H; ++h) {
    s.mae[std::size_t(h)] /= double(s.windows);
    s.naive[std::size_t(h)] /= double(s.windows);
  }
  return s;
}

// "+1h 0.52 (naive 0.60), +2h ...": a multi-horizon score, one horizon per entry.
std::string horizons_text(const Score& s, const ts::WindowSpec& spec, std::int64_t interval) {
  std::string text;
  for (std::size_t h = 0; h < s.mae.size(); ++h)
    text += (h ? ", +" : "+") + ts::format_duration(spec.horizon_rows(std::int64_t(h)) * interval) + " " +
            fixed(s.mae[h]) + " (naive " + fixed(s.naive[h]) + ")";
  return text;
}

// Prints each epoch's MAE in degC beside the naive baseline.
class DegreesReport final : public Callback {
 public:
  DegreesReport(std::ostream& out, double scale, double naive_val) : out_(out), scale_(scale), naive_(naive_val) {}
  void on_epoch_end(int, const Logs& logs, TrainableModel&) override {
    out_ << "    MAE: train " << fixed(logs.at("loss") * scale_) << " degC";
    if (logs.count("val_loss")) {
      const double v = logs.at("val_loss") * scale_;
      out_ << ", validation " << fixed(v) << " degC (naive " << fixed(naive_) << " degC, "
           << (v < naive_ ? "better" : "not better") << ")";
    }
    out_ << "\n" << std::flush;
  }

 private:
  std::ostream& out_;
  double scale_, naive_;
};

// ---- the run directory ----------------------------------------------------------------------
// What a training run writes into --out. A directory holding any of them holds a run.
const char* const kRunFiles[] = {"forecast.json", "model.json", "best.safetensors", "interrupted.safetensors",
                                 "results.json", "history.csv", "curves.svg", "curves.png", "curves.dat",
                                 "curves.gp", "forecast.svg", "forecast.png", "forecast.dat", "forecast.gp"};

std::vector<std::string> run_files_in(const fs::path& dir) {
  std::vector<std::string> found;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return found;
  for (const char* f : kRunFiles)
    if (fs::exists(dir / f, ec)) found.push_back(f);
  return found;
}

// The fields of forecast.json that a resumed run must share with the run it continues.
const char* const kResumeFields[] = {"model", "columns", "features", "horizons", "early_stopping", "reduce_lr",
                                     "learning_rate", "target", "interval_seconds", "lookback", "step",
                                     "delay", "batch_size", "seed", "steps_per_epoch", "normalizer"};

void check_same_run(const json& mine, const fs::path& file, const std::string& what) {
  json theirs;
  try {
    theirs = json::parse(read_file(file));
  } catch (const json::exception& e) {
    RECUR_THROW(IO, file.string(), ": malformed (", e.what(), "); ", what, " cannot be checked");
  }
  for (const char* k : kResumeFields) {
    if (!theirs.contains(k)) continue;  // written by an older recur
    if (theirs[k] == mine[k]) continue;
    if (std::string(k) == "normalizer")
      RECUR_THROW(Value, what, ": the run in ", file.parent_path().string(),
                  " was trained on other data (its normalisation statistics differ); resume with the same --data");
    std::string flag = std::string("--") + k;
    for (char& c : flag)
      if (c == '_') c = '-';
    RECUR_THROW(Value, what, ": the run in ", file.parent_path().string(), " has ", k, " ", theirs[k].dump(),
                ", this command ", mine[k].dump(), "; give the run's ", flag, " (see ", file.string(), ")");
  }
}

// The smallest file (in rows) whose three splits each hold one window of `need` rows.
std::int64_t rows_needed(std::int64_t need) {
  for (std::int64_t n = need;; ++n) {
    const std::int64_t a = n * 200000 / 420551, v = n * 100000 / 420551;
    if (a >= need && v >= need && n - a - v >= need) return n;
  }
}

// Every split holds at least one window, and a batch is no larger than any split: said in the file's terms.
void check_splits(const Data& d, const ForecastOptions& o, bool training = true) {
  const std::int64_t need = d.spec.lookback + d.spec.delay;
  const std::pair<const char*, ts::RowRange> splits[] = {
      {"training", d.splits.train}, {"validation", d.splits.val}, {"test", d.splits.test}};
  for (const auto& [what, r] : splits) {
    RECUR_CHECK(r.size() >= need, Value, d.path, " has ", d.raw.rows(), " rows at ", ts::format_duration(d.interval),
                " steps; its ", what, " split (", r.size(), " rows, ", ts::format_timestamp(d.raw.timestamps[std::size_t(r.begin)]),
                " to ", ts::format_timestamp(d.raw.timestamps[std::size_t(r.end - 1)]), ") is too short for one window: --lookback ",
                o.lookback, " + --delay ", o.delay, " need ", need, " rows in each split, so the file needs at least ",
                rows_needed(need), " rows (or give a shorter --lookback or --delay)");
  }
  if (!training) return;
  // A training batch holds at most every training window (validation and test batches are cut to their
  // splits' windows, which bounds them already).
  const std::int64_t windows = d.splits.train.size() - need + 1;
  RECUR_CHECK(o.batch_size <= windows, Value, "--batch-size ", o.batch_size,
              " is larger than the training split, which has ", windows, " windows (", d.splits.train.size(),
              " rows, less --lookback ", o.lookback, " and --delay ", o.delay, "); give at most --batch-size ", windows);
}

// ---- train ----------------------------------------------------------------------------------
int train(const ForecastOptions& options) {
  // mpirun -np N (docs/distributed.md): --batch-size is each rank's, and the job
  // trains on batches of N times as many windows (what forecast.json records).
  ForecastOptions o = options;
  o.batch_size *= launch_info().size;
  std::ostream& out = out_stream(o);
  const auto t_start = std::chrono::steady_clock::now();
  const Device dev = checked_device();
  const fs::path dir(o.out);
  const ts::FeatureSet asked_features = ts::parse_features(o.features);  // a bad word fails first
  // 1. Everything is checked before anything in --out is touched: the options, the data, the model,
  //    the run directory and the checkpoint to resume from.
  RECUR_CHECK(o.resume.empty() || !o.overwrite, Value,
              "give --resume (continue the run in --out) or --overwrite (replace it), not both");
  check_out_writable(dir);
  const std::vector<std::string> existing = run_files_in(dir);
  if (!existing.empty() && o.resume.empty() && !o.overwrite) {
    std::string files;
    for (const std::string& f : existing) files += (files.empty() ? "" : ", ") + f;
    std::string hint;
    if (fs::exists(dir / "interrupted.safetensors"))
      hint = "--resume " + (dir / "interrupted.safetensors").string() + " to continue it, ";
    RECUR_THROW(Value, "--out '", o.out, "' holds another run (", files, "); pass ", hint,
                "--overwrite to replace it, or another --out");
  }
  if (!o.resume.empty()) {
    std::error_code ec;
    RECUR_CHECK(fs::exists(o.resume, ec), IO, "--resume '", o.resume, "' does not exist",
                fs::exists(dir / "interrupted.safetensors") ? " (this run's is " + (dir / "interrupted.safetensors").string() + ")" : "");
    RECUR_CHECK(fs::equivalent(fs::absolute(o.resume).parent_path(), fs::absolute(dir), ec) && !ec, Value,
                "--resume continues the run in --out, and '", o.resume, "' is not in --out '", o.out,
                "'; give the --out of the run it belongs to");
  }
  Data d;
  d.path = o.data.empty() ? bundled_data() : o.data;
  {
    const ts::TimeseriesTable file = ts::read_jena_csv(d.path);
    d.features = ts::resolve_features(asked_features, file.columns);
    d.source_columns = file.columns;
    d.raw = ts::add_features(file, d.features);
  }
  d.interval = d.raw.report.interval;
  RECUR_CHECK(d.raw.rows() >= 2, Value, d.path, " has ", d.raw.rows(), " data row(s); a forecaster needs many");
  d.target = d.raw.column_index(o.target);
  d.spec = window_spec(o, d.interval);
  d.splits = ts::book_splits(d.raw.rows());
  check_splits(d, o);
  d.normalizer = ts::Normalizer::fit(d.raw, d.splits.train);
  d.norm = d.normalizer.apply(d.raw);
  const double scale = d.normalizer.stddev(d.target);

  // The model.
  std::string name = o.model;
  int epochs = o.epochs;
  ModelConfig cfg;
  if (!o.config.empty()) {
    cfg = read_model_config(o.config);
    RECUR_CHECK(cfg.model != nullptr, Value, o.config,
                ": forecast trains Sequential models; this config describes a functional one");
    name = cfg.model->name();
  } else {
    const ZooModel& z = zoo_model(o.model);
    cfg = model_config_from_json(zoo_config(z, o.horizons), std::string("zoo model ") + z.name);
    if (epochs <= 0) epochs = z.epochs;
  }
  if (epochs <= 0) epochs = 20;
  if (!o.resume.empty() && o.epochs <= 0 && fs::exists(dir / "forecast.json")) {
    try {  // --resume without --epochs: the run's own (checked properly below)
      const json run = json::parse(read_file(dir / "forecast.json"));
      if (run.contains("epochs") && run["epochs"].is_number_integer()) epochs = run["epochs"].get<int>();
    } catch (const json::exception&) {
    }
  }
  const Shape input{d.spec.samples(), d.raw.cols()};
  RECUR_CHECK(cfg.input_shape.size() == 2 &&
                  (cfg.input_shape[0] == kAnyDim || cfg.input_shape[0] == input[0]) &&
                  (cfg.input_shape[1] == kAnyDim || cfg.input_shape[1] == input[1]), Shape,
              "the model's input_shape ", keras_shape_str(cfg.input_shape), " does not fit the data's windows ",
              keras_shape_str(input));
  Sequential& model = *cfg.model;
  model.build(input, dev, cfg.dtype, o.seed);
  RECUR_CHECK(model.output_shape().size() == 1 && model.output_shape()[0] == o.horizons, Shape, "the model's output ",
              keras_shape_str(model.output_shape()), " does not fit --horizons ", o.horizons,
              ": its last layer must give one value per horizon (a Dense layer of ", o.horizons, " units)");
  CompileOptions co = cfg.compile.value_or(CompileOptions{OptimizerConfig::rmsprop(1e-3), LossKind::MeanAbsoluteError, {}});
  if (o.learning_rate > 0) co.optimizer.learning_rate = o.learning_rate;
  model.compile(co);

  json fj;
  fj["format"] = "recur.forecast/1";
  fj["model"] = name;
  fj["data"] = fs::absolute(d.path).string();
  fj["columns"] = d.raw.columns;  // the model's inputs: the file's columns with the features
  fj["source_columns"] = d.source_columns;
  fj["features"] = d.features.names();
  fj["horizons"] = o.horizons;
  fj["early_stopping"] = o.early_stopping;  // patience, 0: off
  fj["reduce_lr"] = o.reduce_lr;            // patience, 0: off
  fj["learning_rate"] = o.learning_rate;    // 0: the model config's
  fj["target"] = o.target;
  fj["interval_seconds"] = d.interval;
  fj["lookback"] = o.lookback;
  fj["step"] = o.step;
  fj["delay"] = o.delay;
  fj["batch_size"] = o.batch_size;
  fj["seed"] = o.seed;
  fj["steps_per_epoch"] = o.steps_per_epoch;
  fj["epochs"] = epochs;  // planned; a --resume without --epochs takes it
  fj["normalizer"] = json::parse(d.normalizer.to_json());
  const std::string model_text = model_config_to_json(model);

  FitOptions fo;
  fo.epochs = epochs;
  fo.steps_per_epoch = o.steps_per_epoch;
  fo.verbose = o.quiet ? 0 : 1;
  fo.stop_after_steps = o.stop_after_steps;
  if (!o.resume.empty()) {
    if (fs::exists(dir / "forecast.json")) check_same_run(fj, dir / "forecast.json", "--resume");
    if (fs::exists(dir / "model.json") && read_file(dir / "model.json") != model_text)
      RECUR_THROW(Value, "--resume: the run in ", o.out, " trained another model (its model.json differs from ",
                  o.config.empty() ? "--model " + o.model : "--config " + o.config, "); give the run's model");
    const CheckpointInfo info = load_checkpoint(model, o.resume, true);  // checks every tensor first
    fo.initial_epoch = info.position.epoch;
    fo.initial_step = info.position.step;
    fo.resume_state = info.fit_state;
    RECUR_CHECK(fo.initial_step <= o.steps_per_epoch, Value, o.resume, ": it stopped at step ", fo.initial_step,
                " of an epoch, but --steps-per-epoch is ", o.steps_per_epoch, "; give the run's --steps-per-epoch");
    RECUR_CHECK(fo.initial_epoch < epochs, Value, o.resume, ": the run has finished its ", fo.initial_epoch,
                " epochs; to train on, give --epochs larger than ", fo.initial_epoch);
  }

  // 2. Say what will happen, then train.
  out << "data: " << d.path << ": " << d.raw.rows() << " rows of " << d.raw.cols() << " variables every "
      << ts::format_duration(d.interval) << "; train " << d.splits.train.size() << ", validation "
      << d.splits.val.size() << ", test " << d.splits.test.size() << " rows\n";
  if (d.raw.report.gap_count || d.raw.report.duplicates || d.raw.report.sentinels || d.raw.report.out_of_order)
    out << "      " << d.raw.report.gap_count << " gaps (largest " << ts::format_duration(d.raw.report.largest_gap)
        << "), " << d.raw.report.duplicates << " duplicate and " << d.raw.report.out_of_order
        << " out-of-order timestamps, " << d.raw.report.sentinels << " -9999 wind speeds set to 0\n";
  if (d.raw.report.other_sentinels)
    std::cerr << "warning: " << d.raw.report.other_sentinels << " value(s) of -9999 outside the wind speeds, kept "
              << "as values (the first at " << d.raw.report.first_other_sentinel
              << "); -9999 is the Jena file's mark of a missing value: check the data\n";
  out << "windows: lookback " << o.lookback << " (" << d.spec.samples() << " steps of " << o.step << "), target '"
      << o.target << "' " << o.delay << " later\n";
  const ts::BaselineResult naive_val = ts::naive_baseline(d.norm, d.normalizer, d.target, d.spec, d.splits.val);
  const ts::BaselineResult naive_test = ts::naive_baseline(d.norm, d.normalizer, d.target, d.spec, d.splits.test);
  out << "naive baseline (the temperature in " << o.delay << " = now): validation " << fixed(naive_val.mae_units)
      << " degC (" << fixed(naive_val.mae, 4) << " normalised), test " << fixed(naive_test.mae_units) << " degC\n";
  if (!o.quiet) out << model.summary();

  const ts::WindowGenerator train_g(d.norm, d.target, d.spec, d.splits.train, o.batch_size, true, o.seed);
  const ts::WindowGenerator val_g(d.norm, d.target, d.spec, d.splits.val, o.batch_size, false);
  const Windows train_src(train_g, dev), val_src(val_g, dev, o.validation_steps);

  const fs::path best = dir / "best.safetensors", interrupted = dir / "interrupted.safetensors";
  if (!o.resume.empty())
    out << "resuming from " << o.resume << " at epoch " << fo.initial_epoch + 1 << ", step " << fo.initial_step + 1
        << "\n";
  out << "training " << name << " on " << dev.str() << ": " << epochs << " epochs of " << o.steps_per_epoch
      << " steps of " << o.batch_size
      << " (Ctrl-C or SIGTERM stops at the end of a step and saves a checkpoint to resume from)" << std::endl;
  const bool replace = o.overwrite && !existing.empty();  // (--resume and --overwrite exclude each other)
  auto claim = std::make_shared<ClaimRunDir>([&] {
    fs::create_directories(dir);
    if (replace) {  // another run's files: none may be taken for this run's
      std::error_code ec;
      for (const std::string& f : existing) fs::remove(dir / f, ec);
    }
    // Temporary files of a process killed while writing (write_file_atomically's "<name>.tmp.<pid>.<n>").
    std::error_code ec;
    for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
      const std::string f = e.path().filename().string();
      for (const char* run_file : kRunFiles)
        if (f.rfind(std::string(run_file) + ".tmp.", 0) == 0) fs::remove(e.path(), ec);
    }
    write_file(dir / "forecast.json", fj.dump(2) + "\n");
    write_file(dir / "model.json", model_text);
  });
  auto ckpt = std::make_shared<ModelCheckpoint>(best.string(), "val_loss", true, interrupted.string());
  auto history = std::make_shared<HistoryLogger>((dir / "history.csv").string());
  std::vector<std::shared_ptr<Callback>> callbacks{claim, ckpt, history,
                                                   std::make_shared<DegreesReport>(out, scale, naive_val.mae_units)};
  if (o.reduce_lr > 0)  // before early stopping: a reduced rate gets its epochs
    callbacks.push_back(std::make_shared<ReduceLROnPlateauCallback>("val_loss", 0.5, o.reduce_lr, 1e-4, 0, 1e-5));
  if (o.early_stopping > 0) callbacks.push_back(std::make_shared<EarlyStopping>("val_loss", o.early_stopping));
  fit(model, train_src, fo, &val_src, callbacks);
  // mpirun -np N (docs/distributed.md): rank 0 evaluates and writes the results.
  if (launch_info().rank != 0) return last_fit_interrupted() ? 130 : 0;
  const History& h = history->history();  // every epoch of the run, resumed parts included
  const bool was_interrupted = last_fit_interrupted();
  if (was_interrupted)  // said with --quiet too: the run is not finished
    std::cout << "interrupted: the state is in " << interrupted.string() << " (resume with --resume "
              << interrupted.string() << ")\n";
  if (ckpt->best_epoch() < 0) {  // never a previous run's file: only this run's best counts
    std::cout << "no epoch finished, so there is no best checkpoint to evaluate\n";
    return was_interrupted ? 130 : 1;
  }

  // The best epoch's weights, on validation and test.
  load_checkpoint(model, best.string(), false);
  // Every window; the MAE at the horizon --delay (with --horizons, the others are in results.json).
  const Score val_score = score(predict_split(model, d, d.splits.val, dev), d, d.splits.val);
  Score test_score;
  if (!o.no_test) test_score = score(predict_split(model, d, d.splits.test, dev), d, d.splits.test);
  const double val_mae = val_score.at_delay() / scale;
  const double test_mae = o.no_test ? NAN : test_score.at_delay() / scale;
  const int best_epoch = ckpt->best_epoch() + 1;
  double samples_per_s = 0;
  for (const Logs& l : h.epochs) samples_per_s += l.at("samples_per_second") / double(h.epochs.size());
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  // The results line: printed with --quiet too.
  std::cout << "best epoch " << best_epoch << ": validation MAE " << fixed(val_mae * scale) << " degC";
  if (o.no_test) {
    std::cout << " (naive " << fixed(naive_val.mae_units) << " degC); test not evaluated (--no-test)";
  } else {
    const double gain = 100 * (1 - test_mae * scale / naive_test.mae_units);
    std::cout << ", test MAE " << fixed(test_mae * scale) << " degC (naive " << fixed(naive_val.mae_units) << " / "
              << fixed(naive_test.mae_units) << " degC: "
              << (gain >= 0 ? fixed(gain, 1) + "% better than naive" : fixed(-gain, 1) + "% worse than naive")
              << " on test)";
  }
  std::cout << "; " << h.epochs.size() << " epochs run, " << fixed(wall / 60, 1) << " min\n";
  if (o.horizons > 1) {
    out << "validation MAE per horizon (degC): " << horizons_text(val_score, d.spec, d.interval) << "\n";
    if (!o.no_test) out << "test MAE per horizon (degC): " << horizons_text(test_score, d.spec, d.interval) << "\n";
  }

  json r;
  r["model"] = name;
  r["device"] = dev.str();
  r["device_description"] = backend(dev).describe();
  r["epochs_run"] = h.epochs.size();
  r["epochs_planned"] = epochs;
  r["steps_per_epoch"] = o.steps_per_epoch;
  r["batch_size"] = o.batch_size;
  r["interrupted"] = was_interrupted;
  r["best_epoch"] = best_epoch;
  r["features"] = d.features.names();
  r["horizons"] = o.horizons;
  r["learning_rate"] = co.optimizer.learning_rate;
  r["early_stopping_patience"] = o.early_stopping;
  r["reduce_lr_patience"] = o.reduce_lr;
  r["val_mae_degc"] = val_mae * scale;
  r["val_mae"] = val_mae;
  r["val_mae_per_horizon_degc"] = val_score.mae;
  if (o.no_test) {
    r["test_mae_degc"] = nullptr;  // model selection: the test split was not touched
    r["test_mae"] = nullptr;
  } else {
    r["test_mae_degc"] = test_mae * scale;
    r["test_mae"] = test_mae;
    r["test_mae_per_horizon_degc"] = test_score.mae;
  }
  r["naive_val_mae_degc"] = naive_val.mae_units;
  r["naive_test_mae_degc"] = naive_test.mae_units;
  r["train_samples_per_second"] = samples_per_s;
  r["wall_seconds"] = wall;
  r["parameters"] = model.count_params();
  // Memory of one training step (the last of the run): peak bytes in use, the
  // part above the step's start, and the step arena serving it (allocator.h).
  const TrainableModel::StepMemory& mem = model.last_train_step_memory();
  r["train_step_peak_bytes"] = mem.peak;
  r["train_step_working_bytes"] = mem.working;
  r["train_step_arena_bytes"] = mem.arena;
  r["train_step_live_peak_bytes"] = mem.live;
  out << "training step memory: peak " << format_bytes(mem.peak) << ", working " << format_bytes(mem.working)
      << (mem.arena ? ", served from a " + format_bytes(mem.arena) + " step arena (live peak " +
                          format_bytes(mem.live) + ")"
                    : std::string())
      << "\n";
  write_file(dir / "results.json", r.dump(2) + "\n");

  // Plots: the training curves, and two weeks of test forecasts.
  Plot curves{name + ": MAE per epoch", "epoch", "MAE (degC)", {}};
  Series tr{"training", {}, {}}, va{"validation", {}, {}}, nv{"naive (validation)", {}, {}, true};
  for (std::size_t e = 0; e < h.epochs.size(); ++e) {
    tr.x.push_back(double(e + 1));
    tr.y.push_back(h.epochs[e].at("loss") * scale);
    va.x.push_back(double(e + 1));
    va.y.push_back(h.epochs[e].count("val_loss") ? h.epochs[e].at("val_loss") * scale : NAN);
    nv.x.push_back(double(e + 1));
    nv.y.push_back(naive_val.mae_units);
  }
  curves.series = {tr, va, nv};
  const std::string curves_path = write_plot(curves, (dir / "curves").string());
  const std::int64_t two_weeks = 14 * 24 * 3600 / d.interval;
  const Forecasts f = forecast_windows(model, d, o.no_test ? d.splits.val : d.splits.test, two_weeks, dev);
  Plot fp{name + ": temperature " + o.delay + " ahead, first two weeks of the " +
              (o.no_test ? "validation" : "test") + " split", "hours",
          "temperature (degC)", {{"actual", f.hours, f.actual}, {"forecast", f.hours, f.predicted}}};
  const std::string forecast_path = write_plot(fp, (dir / "forecast").string());
  out << "wrote " << (dir / "results.json").string() << ", " << (dir / "history.csv").string() << ", " << curves_path
      << ", " << forecast_path << ", " << best.string() << "\n";
  return was_interrupted ? 130 : 0;
}

// ---- evaluate / predict ---------------------------------------------------------------------
// A trained run, or each member of an ensemble (a directory with ensemble.json naming runs).
struct Loaded {
  fs::path dir;
  json forecast;
  ModelConfig cfg;
  ts::Normalizer normalizer;
  ts::WindowSpec spec;
  std::int64_t interval = 0;
  std::vector<std::string> columns;         // the model's inputs (the file's columns with the features)
  std::vector<std::string> source_columns;  // read from a file
  ts::FeatureSet features;
  std::string target;
};

Loaded load_model_dir(const std::string& dir_text, Device dev) {
  RECUR_CHECK(!dir_text.empty(), Value, "--model-dir is required");
  const fs::path dir(dir_text);
  RECUR_CHECK(fs::is_directory(dir), IO, "model directory '", dir_text, "' does not exist");
  Loaded l;
  l.dir = dir;
  try {
    l.forecast = json::parse(read_file(dir / "forecast.json"));
    RECUR_CHECK(l.forecast.value("format", "") == "recur.forecast/1", IO, (dir / "forecast.json").string(),
                ": not a recur forecast file");
    l.normalizer = ts::Normalizer::from_json(l.forecast.at("normalizer").dump());
    l.interval = l.forecast.at("interval_seconds").get<std::int64_t>();
    l.columns = l.forecast.at("columns").get<std::vector<std::string>>();
    // Runs from before --features: the columns are the file's.
    l.source_columns = l.forecast.value("source_columns", l.columns);
    l.features = ts::features_from_names(l.forecast.value("features", std::vector<std::string>{}));
    l.target = l.forecast.at("target").get<std::string>();
    ForecastOptions o;
    o.lookback = l.forecast.at("lookback").get<std::string>();
    o.step = l.forecast.at("step").get<std::string>();
    o.delay = l.forecast.at("delay").get<std::string>();
    o.horizons = l.forecast.value("horizons", std::int64_t(1));
    l.spec = window_spec(o, l.interval);
  } catch (const json::exception& e) {
    RECUR_THROW(IO, (dir / "forecast.json").string(), ": malformed: ", e.what());
  }
  l.cfg = read_model_config((dir / "model.json").string());
  RECUR_CHECK(l.cfg.model != nullptr, Value, (dir / "model.json").string(), ": not a Sequential model's config");
  l.cfg.model->build({l.spec.samples(), std::int64_t(l.columns.size())}, dev, l.cfg.dtype, 0);
  if (!fs::exists(dir / "best.safetensors")) {
    const bool resumable = fs::exists(dir / "interrupted.safetensors");
    RECUR_THROW(IO, "the run in '", dir_text, "' has no best.safetensors: no epoch of it has finished",
                resumable ? "; continue it with: recur forecast train --out " + dir_text + " --resume " +
                                (dir / "interrupted.safetensors").string()
                          : "");
  }
  load_checkpoint(*l.cfg.model, (dir / "best.safetensors").string(), false);
  return l;
}

// The runs of --model-dir: itself, or the members its ensemble.json names (relative to it or
// absolute). Members must forecast the same thing the same way: target, interval, lookback,
// step, delay and horizons; their models, features and seeds may differ.
std::vector<Loaded> load_members(const std::string& dir_text, Device dev) {
  RECUR_CHECK(!dir_text.empty(), Value, "--model-dir is required");
  const fs::path dir(dir_text), ens = fs::path(dir_text) / "ensemble.json";
  std::vector<Loaded> members;
  if (!fs::exists(ens)) {
    members.push_back(load_model_dir(dir_text, dev));
    return members;
  }
  std::vector<std::string> names;
  try {
    const json e = json::parse(read_file(ens));
    RECUR_CHECK(e.value("format", "") == "recur.forecast-ensemble/1", IO, ens.string(),
                ": not a recur ensemble file");
    names = e.at("members").get<std::vector<std::string>>();
  } catch (const json::exception& e) {
    RECUR_THROW(IO, ens.string(), ": malformed: ", e.what());
  }
  RECUR_CHECK(!names.empty(), IO, ens.string(), ": no members");
  for (const std::string& n : names) {
    const fs::path p = fs::path(n).is_absolute() ? fs::path(n) : dir / n;
    members.push_back(load_model_dir(p.string(), dev));
    const Loaded& a = members.front();
    const Loaded& b = members.back();
    const auto same = [&](const char* what, const json& x, const json& y) {
      RECUR_CHECK(x == y, Value, "ensemble ", dir_text, ": member ", b.dir.string(), " has ", what, " ", y.dump(),
                  ", member ", a.dir.string(), " ", x.dump(), "; members must forecast the same target the same way");
    };
    same("target", a.target, b.target);
    same("interval_seconds", a.interval, b.interval);
    same("lookback", a.spec.lookback, b.spec.lookback);
    same("step", a.spec.step, b.spec.step);
    same("delay", a.spec.delay, b.spec.delay);
    same("horizons", a.spec.horizons, b.spec.horizons);
  }
  return members;
}

// The columns of `file` that `l` needs, read with a message naming the model's features when one is missing.
ts::TimeseriesTable read_for(const Loaded& l, const std::string& file) {
  try {
    return ts::read_jena_csv(file, l.source_columns);
  } catch (const ValueError& e) {
    const std::vector<std::string> f = l.features.names();
    std::string names;
    for (const std::string& n : f) names += (names.empty() ? "" : ",") + n;
    RECUR_THROW(Value, e.message(), "; the model in ", l.dir.string(), " reads the columns it was trained on",
                f.empty() ? std::string() : " (with --features " + names + ")", ": give a file that has them");
  }
}

// A run's view of a data file: its columns, features, normaliser and windows.
Data member_data(const Loaded& l, const std::string& path) {
  Data d;
  d.path = path;
  d.source_columns = l.source_columns;
  d.features = l.features;
  d.raw = ts::add_features(read_for(l, path), l.features);
  RECUR_CHECK(d.raw.columns == l.columns, Value, path, ": the features give the columns ", json(d.raw.columns).dump(),
              ", the model in ", l.dir.string(), " was trained on ", json(l.columns).dump());
  RECUR_CHECK(d.raw.report.interval == l.interval, Value, d.path, ": rows every ",
              ts::format_duration(d.raw.report.interval), ", the model was trained on rows every ",
              ts::format_duration(l.interval));
  d.target = d.raw.column_index(l.target);
  d.spec = l.spec;
  d.splits = ts::book_splits(d.raw.rows());
  d.interval = l.interval;
  ForecastOptions shown;
  shown.lookback = l.forecast.at("lookback").get<std::string>();
  shown.delay = l.forecast.at("delay").get<std::string>();
  check_splits(d, shown, false);
  d.normalizer = l.normalizer;
  d.norm = d.normalizer.apply(d.raw);
  return d;
}

// The mean of the members' forecasts, element by element (degC).
std::vector<double> average(const std::vector<std::vector<double>>& forecasts) {
  std::vector<double> mean(forecasts.front().size(), 0.0);
  for (const std::vector<double>& f : forecasts) {
    RECUR_CHECK(f.size() == mean.size(), Shape, "ensemble members gave ", f.size(), " and ", mean.size(), " forecasts");
    for (std::size_t i = 0; i < f.size(); ++i) mean[i] += f[i];
  }
  for (double& v : mean) v /= double(forecasts.size());
  return mean;
}

// Validation and (unless no_test) test scores of a run or an ensemble, with each member's.
struct Evaluation {
  Score val, test;
  std::vector<double> member_val, member_test;  // at the horizon --delay
  double scale = 1;                             // the target's std (the first member's normaliser)
  ts::WindowSpec spec;
  std::int64_t interval = 0;
};

Evaluation evaluate_members(std::vector<Loaded>& members, const std::string& data, bool no_test, Device dev) {
  Evaluation ev;
  const std::string path = data.empty() ? members.front().forecast.at("data").get<std::string>() : data;
  std::vector<std::vector<double>> val, test;
  Data first;
  for (std::size_t m = 0; m < members.size(); ++m) {
    Data d = member_data(members[m], path);
    val.push_back(predict_split(*members[m].cfg.model, d, d.splits.val, dev));
    ev.member_val.push_back(score(val.back(), d, d.splits.val).at_delay());
    if (!no_test) {
      test.push_back(predict_split(*members[m].cfg.model, d, d.splits.test, dev));
      ev.member_test.push_back(score(test.back(), d, d.splits.test).at_delay());
    }
    if (m == 0) first = std::move(d);
  }
  ev.val = score(average(val), first, first.splits.val);
  if (!no_test) ev.test = score(average(test), first, first.splits.test);
  ev.scale = first.normalizer.stddev(first.target);
  ev.spec = first.spec;
  ev.interval = first.interval;
  return ev;
}

void print_evaluation(std::ostream& out, const Evaluation& ev, bool no_test) {
  std::vector<std::pair<const char*, const Score*>> splits{{"validation", &ev.val}};
  if (!no_test) splits.emplace_back("test", &ev.test);
  for (const auto& [what, s] : splits) {
    out << what << ": MAE " << fixed(s->at_delay()) << " degC (" << fixed(s->at_delay() / ev.scale, 4)
        << " normalised) over " << s->windows << " windows; naive " << fixed(s->naive_at_delay()) << " degC\n";
    const std::vector<double>& each = s == &ev.val ? ev.member_val : ev.member_test;
    if (each.size() > 1) {
      out << "  " << each.size() << " members alone:";
      for (std::size_t m = 0; m < each.size(); ++m) out << (m ? ", " : " ") << fixed(each[m]);
      out << " degC\n";
    }
    if (s->mae.size() > 1)
      out << "  per horizon (degC): " << horizons_text(*s, ev.spec, ev.interval) << "; mean " << fixed(s->mean())
          << "\n";
  }
  if (no_test) out << "test: not evaluated (--no-test)\n";
}

int evaluate_dir(const ForecastOptions& o) {
  std::ostream& out = out_stream(o);
  const Device dev = checked_device();
  std::vector<Loaded> members = load_members(o.model_dir, dev);
  print_evaluation(out, evaluate_members(members, o.data, o.no_test, dev), o.no_test);
  return 0;
}

int predict(const ForecastOptions& o) {
  std::ostream& out = out_stream(o);
  const Device dev = checked_device();
  RECUR_CHECK(!o.input.empty(), Value, "--input RECENT.csv is required");
  std::vector<Loaded> members = load_members(o.model_dir, dev);
  const Loaded& l0 = members.front();
  const ts::TimeseriesTable t = ts::add_features(read_for(l0, o.input), l0.features);
  const std::int64_t L = l0.spec.lookback;
  const std::string lookback_text = l0.forecast.at("lookback").get<std::string>();
  RECUR_CHECK(t.rows() >= L, Value, o.input, ": ", t.rows(), " rows, too few for the lookback of ", L,
              " rows (", lookback_text, "); give at least ", L, " rows");
  RECUR_CHECK(t.rows() < 2 || t.report.interval == l0.interval, Value, o.input, ": rows every ",
              ts::format_duration(t.report.interval), ", the model expects rows every ", ts::format_duration(l0.interval));
  // What the reader fixed is said, not hidden: the forecast is for the latest time in the file.
  if (t.report.out_of_order || t.report.duplicates)
    std::cerr << o.input << ": warning: " << t.report.out_of_order << " line(s) out of time order (sorted), "
              << t.report.duplicates << " repeated timestamp(s) (the first kept)\n";
  const std::int64_t now = t.rows() - 1;
  const std::int64_t t_now = t.timestamps[std::size_t(now)];
  // The lookback is the L times t_now - (L-1) * interval .. t_now: each must have its row.
  const std::int64_t t_first = t_now - (L - 1) * l0.interval;
  std::map<std::int64_t, std::int64_t> row_at;  // timestamp -> row, inside the lookback
  for (std::int64_t r = now; r >= 0 && t.timestamps[std::size_t(r)] >= t_first; --r)
    row_at[t.timestamps[std::size_t(r)]] = r;
  std::vector<std::pair<std::int64_t, std::int64_t>> missing;  // spans [from, to] of missing times
  std::int64_t missing_rows = 0;
  for (std::int64_t k = 0; k < L; ++k) {
    const std::int64_t when = t_first + k * l0.interval;
    if (row_at.count(when)) continue;
    ++missing_rows;
    if (!missing.empty() && missing.back().second == when - l0.interval) missing.back().second = when;
    else missing.emplace_back(when, when);
  }
  if (missing_rows > 0) {
    std::string spans;
    for (std::size_t i = 0; i < missing.size() && i < 3; ++i)
      spans += (i ? ", " : "") + ts::format_timestamp(missing[i].first) +
               (missing[i].second != missing[i].first ? " to " + ts::format_timestamp(missing[i].second) : "");
    if (missing.size() > 3) spans += ", ...";
    RECUR_CHECK(o.fill_gaps, Value, o.input, ": the lookback (", lookback_text, " up to ", ts::format_timestamp(t_now),
                ") misses ", missing_rows, " of its ", L, " rows (", spans,
                "); give the missing rows, or pass --fill-gaps to interpolate them");
    RECUR_CHECK(t.timestamps[0] <= t_first, Value, o.input, ": the lookback (", lookback_text, " up to ",
                ts::format_timestamp(t_now), ") starts at ", ts::format_timestamp(t_first),
                ", before the file's first row (", ts::format_timestamp(t.timestamps[0]),
                "); --fill-gaps interpolates only between rows");
    std::cerr << o.input << ": warning: " << missing_rows << " missing row(s) inside the lookback interpolated ("
              << spans << ")\n";
  }
  // Each member's forecast (degC, one per horizon), from the input as it was trained to read it.
  std::vector<std::vector<double>> forecasts;
  for (const Loaded& l : members) {
    const ts::TimeseriesTable mt = &l == &l0 ? t : ts::add_features(read_for(l, o.input), l.features);
    RECUR_CHECK(mt.columns == l.columns, Value, o.input, ": the features give the columns ", json(mt.columns).dump(),
                ", the model in ", l.dir.string(), " was trained on ", json(l.columns).dump());
    const ts::TimeseriesTable n = l.normalizer.apply(mt);
    const std::int64_t F = n.cols();
    // The value of column c at time `when`: its row, or (--fill-gaps) linear between the rows around it.
    auto value_at = [&](std::int64_t when, std::int64_t c) -> float {
      const auto it = std::lower_bound(mt.timestamps.begin(), mt.timestamps.end(), when);
      const std::int64_t r = it - mt.timestamps.begin();
      if (*it == when) return n.at(r, c);
      const std::int64_t t0 = mt.timestamps[std::size_t(r - 1)], t1 = mt.timestamps[std::size_t(r)];
      const double w = double(when - t0) / double(t1 - t0);
      return float((1 - w) * n.at(r - 1, c) + w * n.at(r, c));
    };
    std::vector<float> x;
    for (std::int64_t k = 0; k < l.spec.samples(); ++k) {
      const std::int64_t when = t_now - L * l.interval + l.spec.step * (k + 1) * l.interval;
      for (std::int64_t c = 0; c < F; ++c) x.push_back(value_at(when, c));
    }
    const Tensor xt = Tensor::from_vector(x, {1, l.spec.samples(), F}, dev);
    const std::vector<float> y = l.cfg.model->predict(xt).to_vector<float>();
    RECUR_CHECK(std::int64_t(y.size()) == l.spec.horizons, Shape, "the model in ", l.dir.string(), " gives ",
                y.size(), " values, the run forecasts ", l.spec.horizons, " horizon(s)");
    const int target = mt.column_index(l.target);
    std::vector<double> degc;
    for (const float v : y) degc.push_back(l.normalizer.denormalize(target, v));
    forecasts.push_back(std::move(degc));
  }
  const std::vector<double> mean = average(forecasts);
  const int target = t.column_index(l0.target);
  out << "last row " << ts::format_timestamp(t_now) << ": " << l0.target << " = " << fixed(t.at(now, target), 2) << "\n";
  const std::int64_t H = l0.spec.horizons;
  for (std::int64_t h = 0; h + 1 < H; ++h)
    std::cout << "forecast for " << ts::format_timestamp(t_now + l0.spec.horizon_rows(h) * l0.interval) << " (+"
              << ts::format_duration(l0.spec.horizon_rows(h) * l0.interval) << "): " << fixed(mean[std::size_t(h)], 2)
              << " degC\n";
  const std::int64_t when = t_now + l0.spec.delay * l0.interval;
  std::cout << "forecast for " << ts::format_timestamp(when) << " (" << l0.forecast.at("delay").get<std::string>()
            << " later): " << fixed(mean.back(), 2) << " degC\n";
  if (members.size() > 1) {
    std::cout << "the mean of " << members.size() << " members' forecasts for " << ts::format_timestamp(when) << ":";
    for (std::size_t m = 0; m < forecasts.size(); ++m) std::cout << (m ? ", " : " ") << fixed(forecasts[m].back(), 4);
    std::cout << " -> " << fixed(mean.back(), 4) << " degC\n";
  }
  return 0;
}

// ---- ensemble -------------------------------------------------------------------------------
// Trains K runs with seeds seed .. seed + K - 1 into OUT/member-1 .. member-K (or takes trained
// runs), writes OUT/ensemble.json naming them, and evaluates their averaged forecasts.
int ensemble(const ForecastOptions& o) {
  std::ostream& out = out_stream(o);
  const auto t_start = std::chrono::steady_clock::now();
  const Device dev = checked_device();
  const fs::path dir(o.out);
  RECUR_CHECK((o.k > 0) != !o.members.empty(), Value,
              "give --k K (train K members) or --members DIR... (trained runs), one of them");
  RECUR_CHECK(o.resume.empty(), Value, "an ensemble cannot --resume; resume a member with `recur forecast train "
              "--out OUT/member-N --resume ...`, then give the members with --members");
  check_out_writable(dir);
  RECUR_CHECK(!fs::exists(dir / "ensemble.json") || o.overwrite, Value, "--out '", o.out,
              "' holds an ensemble (ensemble.json); pass --overwrite to replace it, or another --out");
  RECUR_CHECK(run_files_in(dir).empty(), Value, "--out '", o.out, "' holds a training run; an ensemble needs its own --out");
  std::vector<std::string> names;
  if (o.k > 0) {
    for (int m = 1; m <= o.k; ++m) {
      ForecastOptions mo = o;
      mo.out = (dir / ("member-" + std::to_string(m))).string();
      mo.seed = o.seed + std::uint64_t(m - 1);
      out << "== member " << m << " of " << o.k << " (seed " << mo.seed << ") into " << mo.out << "\n" << std::flush;
      const int rc = train(mo);
      if (rc != 0) return rc;  // interrupted: the member says how to resume it
      names.push_back("member-" + std::to_string(m));
    }
  } else {
    for (const std::string& m : o.members) {
      load_model_dir(m, dev);  // checks it is a finished run
      names.push_back(fs::absolute(m).lexically_normal().string());
    }
  }
  json e;
  e["format"] = "recur.forecast-ensemble/1";
  e["members"] = names;
  fs::create_directories(dir);
  write_file(dir / "ensemble.json", e.dump(2) + "\n");
  std::vector<Loaded> members = load_members(o.out, dev);  // checks they forecast alike
  const Evaluation ev = evaluate_members(members, o.data, o.no_test, dev);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  out << "ensemble of " << members.size() << " in " << o.out << " (" << fixed(wall / 60, 1) << " min):\n";
  print_evaluation(out, ev, o.no_test);
  std::cout << "ensemble of " << members.size() << ": validation MAE " << fixed(ev.val.at_delay()) << " degC"
            << (o.no_test ? std::string("; test not evaluated (--no-test)")
                          : ", test MAE " + fixed(ev.test.at_delay()) + " degC")
            << "\n";
  json r;
  r["members"] = names;
  r["val_mae_degc"] = ev.val.at_delay();
  r["member_val_mae_degc"] = ev.member_val;
  r["val_mae_per_horizon_degc"] = ev.val.mae;
  r["naive_val_mae_degc"] = ev.val.naive_at_delay();
  if (!o.no_test) {
    r["test_mae_degc"] = ev.test.at_delay();
    r["member_test_mae_degc"] = ev.member_test;
    r["test_mae_per_horizon_degc"] = ev.test.mae;
    r["naive_test_mae_degc"] = ev.test.naive_at_delay();
  } else {
    r["test_mae_degc"] = nullptr;
  }
  r["wall_seconds"] = wall;  // members trained here included
  write_file(dir / "ensemble-results.json", r.dump(2) + "\n");
  return 0;
}

// ---- search ----------------------------------------------------------------------------------
// Trains every (zoo model, feature set) of a small grid with --no-test into OUT/<model>_<features>,
// and writes OUT/search.md and OUT/search.json: the runs sorted by validation MAE. The test split
// is never touched: evaluate the chosen run afterwards, once.
int search(const ForecastOptions& o) {
  std::ostream& out = out_stream(o);
  const std::size_t runs = o.search_models.size() * o.search_features.size();
  RECUR_CHECK(runs >= 1 && runs <= 16, Value, "search: ", o.search_models.size(), " models x ",
              o.search_features.size(), " feature sets = ", runs, " runs; give 1 to 16");
  RECUR_CHECK(o.config.empty(), Value, "search takes zoo models (--models), not --model-config");
  for (const std::string& m : o.search_models) zoo_model(m);  // every name checked before training
  for (const std::string& f : o.search_features) ts::parse_features(f);
  const fs::path dir(o.out);
  check_out_writable(dir);
  RECUR_CHECK(!fs::exists(dir / "search.json") || o.overwrite, Value, "--out '", o.out,
              "' holds a search (search.json); pass --overwrite to replace it, or another --out");
  json rows = json::array();
  for (const std::string& m : o.search_models)
    for (const std::string& f : o.search_features) {
      ForecastOptions ro = o;
      ro.model = m;
      ro.features = f;
      ro.no_test = true;
      std::string name = m + "_" + f;
      for (char& c : name)
        if (c == ',') c = '+';
      ro.out = (dir / name).string();
      out << "== " << name << " into " << ro.out << "\n" << std::flush;
      const int rc = train(ro);
      if (rc != 0) return rc;
      const json r = json::parse(read_file(fs::path(ro.out) / "results.json"));
      rows.push_back({{"run", name}, {"model", m}, {"features", r.at("features")}, {"best_epoch", r.at("best_epoch")},
                      {"epochs_run", r.at("epochs_run")}, {"val_mae_degc", r.at("val_mae_degc")},
                      {"wall_seconds", r.at("wall_seconds")}});
    }
  std::vector<json> sorted(rows.begin(), rows.end());
  std::stable_sort(sorted.begin(), sorted.end(), [](const json& a, const json& b) {
    return a.at("val_mae_degc").get<double>() < b.at("val_mae_degc").get<double>();
  });
  std::ostringstream md;
  md << "| run | model | features | best epoch (of run) | validation MAE (degC) | wall time (min) |\n|---|---|---|---|---|---|\n";
  for (const json& r : sorted) {
    std::string feats;
    for (const auto& x : r.at("features")) feats += (feats.empty() ? "" : ",") + x.get<std::string>();
    md << "| `" << r.at("run").get<std::string>() << "` | `" << r.at("model").get<std::string>() << "` | "
       << (feats.empty() ? "none" : feats) << " | " << r.at("best_epoch").get<int>() << " (of "
       << r.at("epochs_run").get<int>() << ") | " << fixed(r.at("val_mae_degc").get<double>()) << " | "
       << fixed(r.at("wall_seconds").get<double>() / 60, 1) << " |\n";
  }
  fs::create_directories(dir);
  write_file(dir / "search.json", json(sorted).dump(2) + "\n");
  write_file(dir / "search.md", md.str());
  out << md.str();
  const std::string best = (dir / sorted.front().at("run").get<std::string>()).string();
  std::cout << "best by validation: " << sorted.front().at("run").get<std::string>() << " ("
            << fixed(sorted.front().at("val_mae_degc").get<double>()) << " degC); test it once with: recur forecast "
            << "evaluate --model-dir " << best << "\n";
  return 0;
}

int list_models() {
  for (const ZooModel& z : kZoo) {
    ModelConfig c = model_config_from_json(zoo_config(z), z.name);
    c.model->build({240, 6}, Device::cpu());
    std::cout << z.name << ": " << z.what << "; " << z.epochs << " epochs by default\n" << c.model->summary() << "\n";
  }
  return 0;
}

}  // namespace

CLI::Validator int_range(std::int64_t lo, std::int64_t hi) {
  return CLI::Validator(
      [lo, hi](std::string& text) -> std::string {
        std::int64_t v = 0;
        const char* b = text.c_str();
        char* end = nullptr;
        errno = 0;
        const long long parsed = std::strtoll(b, &end, 10);
        const bool whole = end != b && *end == '\0' && errno == 0;
        v = parsed;
        if (!whole || v < lo || v > hi) {
          std::string shown = text.size() > 24 ? text.substr(0, 24) + "..." : text;
          return "'" + shown + "' is not a whole number from " + std::to_string(lo) + " to " + std::to_string(hi);
        }
        return std::string();
      },
      "INT in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]", "Range");
}

CLI::App* add_forecast_command(CLI::App& app, ForecastOptions& o) {
  CLI::App* f = app.add_subcommand("forecast", "the Jena temperature forecaster: train, evaluate, predict");
  f->require_subcommand(1);
  CLI::App* t = f->add_subcommand("train", "train a model on the Jena climate data and test it");
  CLI::App* en = f->add_subcommand("ensemble", "train K models with different seeds (or take trained runs) and "
                                               "evaluate their averaged forecasts");
  CLI::App* se = f->add_subcommand("search", "train a small grid of models and feature sets with --no-test, and "
                                            "write the table sorted by validation MAE");
  se->add_option("--models", o.search_models, "zoo models to try")->capture_default_str();
  se->add_option("--feature-sets", o.search_features, "--features values to try (e.g. none time time,wind)")
      ->capture_default_str();
  for (CLI::App* c : {t, en, se}) {  // the ensemble and the search train with train's options
    c->add_option("--model", o.model, "zoo model: dense, gru, gru-dropout, stacked-gru, bidirectional-gru, lstm, conv, "
                                      "conv-gru, gru-wide, gru-deep")
        ->capture_default_str();
    c->add_option("--model-config,--config", o.config, "a model config file (JSON, docs/models.md) instead of --model");
    c->add_option("--data", o.data, "a Jena climate CSV, plain or gzip (default: the bundled hourly file)");
    c->add_option("--out", o.out, "output directory")->capture_default_str();
    c->add_option("--features", o.features,
                  "derived inputs: none, all, or a comma list of time (day and year as sine/cosine) and wind (the "
                  "wind as a vector; needs 'wd (deg)')")
        ->capture_default_str();
    c->add_option("--horizons", o.horizons, "targets per window: 1, or H dividing --delay (every delay/H up to it)")
        ->check(int_range(1, 100000))->capture_default_str();
    c->add_option("--epochs", o.epochs, "epochs, at least 1 (default: the model's, 20 or 40)")
        ->check(int_range(1, 1000000));
    c->add_option("--early-stopping", o.early_stopping, "stop after N epochs without a better validation MAE (0: off)")
        ->check(int_range(0, 1000000))->capture_default_str();
    c->add_option("--reduce-lr", o.reduce_lr, "halve the learning rate after N epochs without a better validation "
                                              "MAE, down to 1e-5 (0: off)")
        ->check(int_range(0, 1000000))->capture_default_str();
    c->add_option("--learning-rate", o.learning_rate, "the optimizer's learning rate (default: the model config's)")
        ->check(CLI::Range(1e-9, 10.0));
    c->add_flag("--no-test", o.no_test, "model selection: report validation only, leave the test split untouched");
    c->add_option("--steps-per-epoch", o.steps_per_epoch, "steps per epoch")->check(int_range(1, 1000000000))
        ->capture_default_str();
    c->add_option("--batch-size", o.batch_size, "windows per batch (at most a split's windows)")
        ->check(int_range(1, 1000000000))->capture_default_str();
    c->add_option("--validation-steps", o.validation_steps, "validation batches per epoch (0: all)")
        ->check(int_range(0, 1000000000))->capture_default_str();
    c->add_option("--lookback", o.lookback, "input span (10d, 240h, ...)")->capture_default_str();
    c->add_option("--step", o.step, "sampling step inside the lookback")->capture_default_str();
    c->add_option("--delay", o.delay, "how far ahead to forecast")->capture_default_str();
    c->add_option("--target", o.target, "the column to forecast")->capture_default_str();
    c->add_option("--seed", o.seed, "seed for the weights, shuffling and dropout (an ensemble: its first member's)")
        ->capture_default_str();
    c->add_flag("--overwrite", o.overwrite, "replace the run in --out (its files go once this run has its first to write)");
    c->add_flag("--quiet", o.quiet, "print only errors and the results line");
  }
  t->add_option("--resume", o.resume, "continue the run in --out from its checkpoint (OUT/interrupted.safetensors)");
  t->add_option("--stop-after-steps", o.stop_after_steps, "stop as Ctrl-C does after N steps (for tests)")
      ->check(int_range(0, 1000000000))->group("");
  en->add_option("--k", o.k, "members to train, with seeds --seed, --seed + 1, ... into OUT/member-N")
      ->check(int_range(1, 1000));
  en->add_option("--members", o.members, "trained run directories to average instead of --k");
  CLI::App* e = f->add_subcommand("evaluate", "validation and test MAE of a trained model or ensemble");
  e->add_option("--model-dir", o.model_dir, "the --out directory of a training run or an ensemble")->required();
  e->add_option("--data", o.data, "another Jena climate CSV (default: the one trained on)");
  e->add_flag("--no-test", o.no_test, "validation only (model selection): leave the test split untouched");
  CLI::App* p = f->add_subcommand("predict", "forecast the temperature after the last row of a CSV");
  p->add_option("--model-dir", o.model_dir, "the --out directory of a training run or an ensemble")->required();
  p->add_option("--input", o.input, "recent rows in the Jena CSV format (at least the lookback)")->required();
  p->add_flag("--fill-gaps", o.fill_gaps, "fill missing rows inside the lookback by linear interpolation "
                                          "(default: a gap is an error)");
  f->add_subcommand("models", "list the model zoo with each model's summary");
  return f;
}

int run_forecast(CLI::App& f, const ForecastOptions& o) {
  for (const char* cmd : {"train", "ensemble"})
    if (f.got_subcommand(cmd))
      RECUR_CHECK(o.config.empty() || f.get_subcommand(cmd)->count("--model") == 0, Value,
                  "give --model or --model-config, not both");
  if (f.got_subcommand("train")) return train(o);
  if (f.got_subcommand("ensemble")) return ensemble(o);
  if (f.got_subcommand("search")) {
    RECUR_CHECK(f.get_subcommand("search")->count("--features") == 0 && f.get_subcommand("search")->count("--model") == 0,
                Value, "search tries --models and --feature-sets; --model and --features are train's");
    return search(o);
  }
  if (f.got_subcommand("evaluate")) return evaluate_dir(o);
  if (f.got_subcommand("predict")) return predict(o);
  if (f.got_subcommand("models")) return list_models();
  return 1;
}

}  // namespace recur::app
