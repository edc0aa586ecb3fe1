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
};

const ZooModel& zoo_model(const std::string& name) {
  std::string names;
  for (const ZooModel& z : kZoo) {
    if (name == z.name) return z;
    names += (names.empty() ? "" : ", ") + std::string(z.name);
  }
  RECUR_THROW(Value, "unknown model '", name, "' (the zoo: ", names, "; or --config FILE)");
}

// A zoo model's config text: RMSprop 1e-3 and MAE, as the book.
std::string zoo_config(const ZooModel& z) {
  return std::string(R"({"format": "recur.model/1", "name": ")") + z.name +
         R"(", "input_shape": [null, null], "layers": )" + z.layers +
         R"(, "compile": {"optimizer": {"name": "rmsprop", "learning_rate": 0.001}, "loss": "mae"}})";
}

// ---- data ---------------------------------------------------------------------------------
std::string bundled_data() { return bundled_file("jena_climate_2009_2016_hourly.csv.gz"); }

struct Data {
  std::string path;
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
    for (std::int64_t i = 0; i < b.size && std::int64_t(f.actual.size()) < n; ++i) {
      const std::int64_t row = b.now[std::size_t(i)] + d.spec.delay;
      f.hours.push_back(double(d.raw.timestamps[std::size_t(row)] - d.raw.timestamps[std::size_t(split.begin)]) / 3600.0);
      f.predicted.push_back(d.normalizer.denormalize(d.target, y[std::size_t(i)]));
      f.actual.push_back(d.raw.at(row, d.target));
    }
  }
  return f;
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
const char* const kResumeFields[] = {"model", "columns", "target", "interval_seconds", "lookback", "step",
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
  d.raw = ts::read_jena_csv(d.path);
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
    cfg = model_config_from_json(zoo_config(z), std::string("zoo model ") + z.name);
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
  CompileOptions co = cfg.compile.value_or(CompileOptions{OptimizerConfig::rmsprop(1e-3), LossKind::MeanAbsoluteError, {}});
  model.compile(co);

  json fj;
  fj["format"] = "recur.forecast/1";
  fj["model"] = name;
  fj["data"] = fs::absolute(d.path).string();
  fj["columns"] = d.raw.columns;
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
  const ts::WindowGenerator test_g(d.norm, d.target, d.spec, d.splits.test, o.batch_size, false);
  const Windows train_src(train_g, dev), val_src(val_g, dev, o.validation_steps), test_src(test_g, dev);

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
  const double val_mae = evaluate(model, Windows(val_g, dev)).at("loss");  // every window
  const double test_mae = evaluate(model, test_src).at("loss");
  const int best_epoch = ckpt->best_epoch() + 1;
  double samples_per_s = 0;
  for (const Logs& l : h.epochs) samples_per_s += l.at("samples_per_second") / double(h.epochs.size());
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  const double gain = 100 * (1 - test_mae * scale / naive_test.mae_units);
  // The results line: printed with --quiet too.
  std::cout << "best epoch " << best_epoch << ": validation MAE " << fixed(val_mae * scale) << " degC, test MAE "
            << fixed(test_mae * scale) << " degC (naive " << fixed(naive_val.mae_units) << " / "
            << fixed(naive_test.mae_units) << " degC: "
            << (gain >= 0 ? fixed(gain, 1) + "% better than naive" : fixed(-gain, 1) + "% worse than naive")
            << " on test)\n";

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
  r["val_mae_degc"] = val_mae * scale;
  r["test_mae_degc"] = test_mae * scale;
  r["val_mae"] = val_mae;
  r["test_mae"] = test_mae;
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
  const Forecasts f = forecast_windows(model, d, d.splits.test, two_weeks, dev);
  Plot fp{name + ": temperature " + o.delay + " ahead, first two weeks of the test split", "hours",
          "temperature (degC)", {{"actual", f.hours, f.actual}, {"forecast", f.hours, f.predicted}}};
  const std::string forecast_path = write_plot(fp, (dir / "forecast").string());
  out << "wrote " << (dir / "results.json").string() << ", " << (dir / "history.csv").string() << ", " << curves_path
      << ", " << forecast_path << ", " << best.string() << "\n";
  return was_interrupted ? 130 : 0;
}

// ---- evaluate / predict ---------------------------------------------------------------------
struct Loaded {
  json forecast;
  ModelConfig cfg;
  ts::Normalizer normalizer;
  ts::WindowSpec spec;
  std::int64_t interval = 0;
  std::vector<std::string> columns;
  std::string target;
};

Loaded load_model_dir(const std::string& dir_text, Device dev) {
  RECUR_CHECK(!dir_text.empty(), Value, "--model-dir is required");
  const fs::path dir(dir_text);
  RECUR_CHECK(fs::is_directory(dir), IO, "model directory '", dir_text, "' does not exist");
  Loaded l;
  try {
    l.forecast = json::parse(read_file(dir / "forecast.json"));
    RECUR_CHECK(l.forecast.value("format", "") == "recur.forecast/1", IO, (dir / "forecast.json").string(),
                ": not a recur forecast file");
    l.normalizer = ts::Normalizer::from_json(l.forecast.at("normalizer").dump());
    l.interval = l.forecast.at("interval_seconds").get<std::int64_t>();
    l.columns = l.forecast.at("columns").get<std::vector<std::string>>();
    l.target = l.forecast.at("target").get<std::string>();
    ForecastOptions o;
    o.lookback = l.forecast.at("lookback").get<std::string>();
    o.step = l.forecast.at("step").get<std::string>();
    o.delay = l.forecast.at("delay").get<std::string>();
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

int evaluate_dir(const ForecastOptions& o) {
  std::ostream& out = out_stream(o);
  const Device dev = checked_device();
  Loaded l = load_model_dir(o.model_dir, dev);
  if (l.cfg.compile) l.cfg.model->compile(*l.cfg.compile);
  else l.cfg.model->compile({OptimizerConfig::rmsprop(), LossKind::MeanAbsoluteError, {}});
  Data d;
  d.path = o.data.empty() ? l.forecast.at("data").get<std::string>() : o.data;
  d.raw = ts::read_jena_csv(d.path, l.columns);
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
  const double scale = d.normalizer.stddev(d.target);
  for (auto [what, split] : {std::pair<const char*, ts::RowRange>{"validation", d.splits.val}, {"test", d.splits.test}}) {
    const ts::WindowGenerator g(d.norm, d.target, d.spec, split, 128, false);
    const double mae = evaluate(*l.cfg.model, Windows(g, dev)).at("loss");
    const ts::BaselineResult naive = ts::naive_baseline(d.norm, d.normalizer, d.target, d.spec, split);
    out << what << ": MAE " << fixed(mae * scale) << " degC (" << fixed(mae, 4) << " normalised) over "
        << g.windows() << " windows; naive " << fixed(naive.mae_units) << " degC\n";
  }
  return 0;
}

int predict(const ForecastOptions& o) {
  std::ostream& out = out_stream(o);
  const Device dev = checked_device();
  RECUR_CHECK(!o.input.empty(), Value, "--input RECENT.csv is required");
  Loaded l = load_model_dir(o.model_dir, dev);
  const ts::TimeseriesTable t = ts::read_jena_csv(o.input, l.columns);
  const std::int64_t L = l.spec.lookback;
  const std::string lookback_text = l.forecast.at("lookback").get<std::string>();
  RECUR_CHECK(t.rows() >= L, Value, o.input, ": ", t.rows(), " rows, too few for the lookback of ", L,
              " rows (", lookback_text, "); give at least ", L, " rows");
  RECUR_CHECK(t.rows() < 2 || t.report.interval == l.interval, Value, o.input, ": rows every ",
              ts::format_duration(t.report.interval), ", the model expects rows every ", ts::format_duration(l.interval));
  // What the reader fixed is said, not hidden: the forecast is for the latest time in the file.
  if (t.report.out_of_order || t.report.duplicates)
    std::cerr << o.input << ": warning: " << t.report.out_of_order << " line(s) out of time order (sorted), "
              << t.report.duplicates << " repeated timestamp(s) (the first kept)\n";
  const ts::TimeseriesTable n = l.normalizer.apply(t);
  const std::int64_t now = t.rows() - 1, F = n.cols();
  const std::int64_t t_now = t.timestamps[std::size_t(now)];
  // The lookback is the L times t_now - (L-1) * interval .. t_now: each must have its row.
  const std::int64_t t_first = t_now - (L - 1) * l.interval;
  std::map<std::int64_t, std::int64_t> row_at;  // timestamp -> row, inside the lookback
  for (std::int64_t r = now; r >= 0 && t.timestamps[std::size_t(r)] >= t_first; --r)
    row_at[t.timestamps[std::size_t(r)]] = r;
  std::vector<std::pair<std::int64_t, std::int64_t>> missing;  // spans [from, to] of missing times
  std::int64_t missing_rows = 0;
  for (std::int64_t k = 0; k < L; ++k) {
    const std::int64_t when = t_first + k * l.interval;
    if (row_at.count(when)) continue;
    ++missing_rows;
    if (!missing.empty() && missing.back().second == when - l.interval) missing.back().second = when;
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
  // The value of column c at time `when`: its row, or (--fill-gaps) linear between the rows around it.
  auto value_at = [&](std::int64_t when, std::int64_t c) -> float {
    const auto it = std::lower_bound(t.timestamps.begin(), t.timestamps.end(), when);
    const std::int64_t r = it - t.timestamps.begin();
    if (*it == when) return n.at(r, c);
    const std::int64_t t0 = t.timestamps[std::size_t(r - 1)], t1 = t.timestamps[std::size_t(r)];
    const double w = double(when - t0) / double(t1 - t0);
    return float((1 - w) * n.at(r - 1, c) + w * n.at(r, c));
  };
  std::vector<float> x;
  for (std::int64_t k = 0; k < l.spec.samples(); ++k) {
    const std::int64_t when = t_now - L * l.interval + l.spec.step * (k + 1) * l.interval;
    for (std::int64_t c = 0; c < F; ++c) x.push_back(value_at(when, c));
  }
  const Tensor xt = Tensor::from_vector(x, {1, l.spec.samples(), F}, dev);
  const double y = l.cfg.model->predict(xt).to_vector<float>().at(0);
  const int target = t.column_index(l.target);
  const double degc = l.normalizer.denormalize(target, y);
  const std::int64_t when = t.timestamps[std::size_t(now)] + l.spec.delay * l.interval;
  out << "last row " << ts::format_timestamp(t.timestamps[std::size_t(now)]) << ": " << l.target << " = "
      << fixed(t.at(now, target), 2) << "\n";
  std::cout << "forecast for " << ts::format_timestamp(when) << " (" << l.forecast.at("delay").get<std::string>()
            << " later): " << fixed(degc, 2) << " degC\n";
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
  t->add_option("--model", o.model, "zoo model: dense, gru, gru-dropout, stacked-gru, bidirectional-gru, lstm, conv, conv-gru")
      ->capture_default_str();
  t->add_option("--config", o.config, "a model config file (JSON) instead of --model");
  t->add_option("--data", o.data, "a Jena climate CSV, plain or gzip (default: the bundled hourly file)");
  t->add_option("--out", o.out, "output directory")->capture_default_str();
  t->add_option("--epochs", o.epochs, "epochs, at least 1 (default: the model's, 20 or 40)")
      ->check(int_range(1, 1000000));
  t->add_option("--steps-per-epoch", o.steps_per_epoch, "steps per epoch")->check(int_range(1, 1000000000))
      ->capture_default_str();
  t->add_option("--batch-size", o.batch_size, "windows per batch (at most a split's windows)")
      ->check(int_range(1, 1000000000))->capture_default_str();
  t->add_option("--validation-steps", o.validation_steps, "validation batches per epoch (0: all)")
      ->check(int_range(0, 1000000000))->capture_default_str();
  t->add_option("--lookback", o.lookback, "input span (10d, 240h, ...)")->capture_default_str();
  t->add_option("--step", o.step, "sampling step inside the lookback")->capture_default_str();
  t->add_option("--delay", o.delay, "how far ahead to forecast")->capture_default_str();
  t->add_option("--target", o.target, "the column to forecast")->capture_default_str();
  t->add_option("--seed", o.seed, "seed for the weights, shuffling and dropout")->capture_default_str();
  t->add_option("--resume", o.resume, "continue the run in --out from its checkpoint (OUT/interrupted.safetensors)");
  t->add_flag("--overwrite", o.overwrite, "replace the run in --out (its files go once this run has its first to write)");
  t->add_flag("--quiet", o.quiet, "print only errors and the results line");
  t->add_option("--stop-after-steps", o.stop_after_steps, "stop as Ctrl-C does after N steps (for tests)")
      ->check(int_range(0, 1000000000))->group("");
  CLI::App* e = f->add_subcommand("evaluate", "validation and test MAE of a trained model");
  e->add_option("--model-dir", o.model_dir, "the --out directory of a training run")->required();
  e->add_option("--data", o.data, "another Jena climate CSV (default: the one trained on)");
  CLI::App* p = f->add_subcommand("predict", "forecast the temperature after the last row of a CSV");
  p->add_option("--model-dir", o.model_dir, "the --out directory of a training run")->required();
  p->add_option("--input", o.input, "recent rows in the Jena CSV format (at least the lookback)")->required();
  p->add_flag("--fill-gaps", o.fill_gaps, "fill missing rows inside the lookback by linear interpolation "
                                          "(default: a gap is an error)");
  f->add_subcommand("models", "list the model zoo with each model's summary");
  return f;
}

int run_forecast(CLI::App& f, const ForecastOptions& o) {
  if (f.got_subcommand("train")) {
    RECUR_CHECK(o.config.empty() || f.get_subcommand("train")->count("--model") == 0, Value,
                "give --model or --config, not both");
    return train(o);
  }
  if (f.got_subcommand("evaluate")) return evaluate_dir(o);
  if (f.got_subcommand("predict")) return predict(o);
  if (f.got_subcommand("models")) return list_models();
  return 1;
}

}  // namespace recur::app
