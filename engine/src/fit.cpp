// fit / evaluate, callbacks and the progress line: see fit.h.
#include "recur/engine/fit.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <random>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "recur/engine/data_parallel.h"
#include "recur/host/safetensors.h"  // write_file_atomically

namespace recur {

namespace {

std::atomic<bool> g_stop{false};
bool g_interrupted = false;
extern "C" void on_stop_signal(int) { g_stop.store(true); }

using json = nlohmann::json;

// JSON has no NaN or infinity: they travel as null.
json number_or_null(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }
double number_from(const json& j, double if_null) { return j.is_null() ? if_null : j.get<double>(); }

json logs_to_json(const Logs& l) {
  json j = json::object();
  for (const auto& [k, v] : l) j[k] = number_or_null(v);
  return j;
}
Logs logs_from_json(const json& j) {
  Logs l;
  for (auto it = j.begin(); it != j.end(); ++it) l[it.key()] = number_from(it.value(), NAN);
  return l;
}

// Parses a callback's state; an error names the callback.
json parse_state(const std::string& text, const char* who) {
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    RECUR_THROW(Value, who, ": the resume state is malformed (", e.what(), ")");
  }
}

// Keras's short metric names.
std::string metric_key(LossKind k) {
  switch (k) {
    case LossKind::MeanAbsoluteError: return "mae";
    case LossKind::MeanSquaredError: return "mse";
    default: return loss_name(k);
  }
}

// Keras's "auto" mode: accuracies improve upwards, everything else downwards.
bool higher_is_better(const std::string& monitor) { return monitor.find("acc") != std::string::npos; }

bool improved(double value, double best, bool first, double min_delta, bool higher) {
  if (std::isnan(value)) return false;
  if (first) return true;
  return higher ? value > best + min_delta : value < best - min_delta;
}

double monitored(const Logs& logs, const std::string& monitor, const char* who) {
  auto it = logs.find(monitor);
  if (it == logs.end()) {
    std::string keys;
    for (const auto& [k, v] : logs) keys += (keys.empty() ? "" : ", ") + k;
    RECUR_THROW(Value, who, ": monitored value '", monitor, "' is not in the logs (", keys,
                "); validation data are needed for val_ values");
  }
  return it->second;
}

void write_atomically(const std::string& path, const std::string& text) { write_file_atomically(path, text); }

std::string num(double v) {
  std::ostringstream s;
  s << std::setprecision(9) << v;
  return s.str();
}

Tensor copy_of(const Tensor& t) {
  Tensor c = Tensor::empty(t.shape(), t.dtype(), t.device());
  c.copy_from(t);
  return c;
}

std::vector<Tensor> inputs_of(const Batch& b) {
  return b.inputs.empty() ? std::vector<Tensor>{b.x} : b.inputs;
}
std::vector<Tensor> masks_of(const Batch& b) {
  if (!b.masks.empty()) return b.masks;
  return b.mask.defined() ? std::vector<Tensor>{b.mask} : std::vector<Tensor>{};
}

// Accumulates batch-size-weighted means.
struct Means {
  std::map<std::string, double> sum;
  double weight = 0;
  void add(const TrainableModel& m, const BatchLogs& l, double w) {
    sum["loss"] += l.loss * w;
    const auto& metrics = m.compile_options().metrics;
    for (std::size_t i = 0; i < metrics.size(); ++i) sum[metric_key(metrics[i])] += l.metrics[i] * w;
    weight += w;
  }
  Logs mean(const std::string& prefix = "") const {
    Logs out;
    for (const auto& [k, v] : sum) out[prefix + k] = weight > 0 ? v / weight : 0.0;
    return out;
  }
};

// What fit saves for a resume: every callback's state, and the sums of the epoch
// being run (so that a run resumed mid-epoch reports the whole epoch's means).
std::string callback_key(const std::vector<std::shared_ptr<Callback>>& callbacks, std::size_t i) {
  const std::string key = callbacks[i]->state_key();
  if (key.empty()) return key;
  int same = 0;
  for (std::size_t j = 0; j < i; ++j) same += callbacks[j]->state_key() == key;
  return same ? key + "#" + std::to_string(same + 1) : key;
}

std::string fit_state_json(const std::vector<std::shared_ptr<Callback>>& callbacks, int epoch,
                           const Means* partial, double samples, double seconds) {
  json j = json::object();
  json cbs = json::object();
  for (std::size_t i = 0; i < callbacks.size(); ++i) {
    const std::string key = callback_key(callbacks, i);
    if (!key.empty()) cbs[key] = callbacks[i]->save_state();
  }
  j["format"] = "recur.fit_state/1";
  j["callbacks"] = cbs;
  if (partial != nullptr && partial->weight > 0) {
    json sums = json::object();
    for (const auto& [k, v] : partial->sum) sums[k] = number_or_null(v);
    j["partial_epoch"] = {{"epoch", epoch}, {"sums", sums}, {"weight", partial->weight},
                          {"samples", samples}, {"seconds", seconds}};
  }
  return j.dump();
}

class Progress {
 public:
  Progress(const FitOptions& o, int epoch, std::int64_t steps)
      : out_(o.out ? *o.out : std::cout), verbose_(o.verbose), epoch_(epoch), epochs_(o.epochs),
        steps_(steps) {
    live_ = verbose_ > 0 && o.out == nullptr && ::isatty(STDOUT_FILENO);
    start_ = last_ = std::chrono::steady_clock::now();
  }
  void step(std::int64_t done, double samples, double loss) {
    if (!live_) return;
    const auto now = std::chrono::steady_clock::now();
    if (done < steps_ && now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    const double s = seconds();
    const int width = 24;
    const int filled = steps_ > 0 ? int(width * done / steps_) : width;
    out_ << "\rEpoch " << epoch_ + 1 << "/" << epochs_ << " [" << std::string(std::size_t(filled), '=')
         << (filled < width ? ">" : "") << std::string(std::size_t(std::max(0, width - filled - 1)), ' ')
         << "] " << done << "/" << steps_;
    if (done > 0 && done < steps_)
      out_ << " ETA " << std::fixed << std::setprecision(0) << s / double(done) * double(steps_ - done) << "s";
    out_ << std::fixed << std::setprecision(0) << " " << (s > 0 ? samples / s : 0) << " samples/s"
         << std::defaultfloat << " loss " << std::setprecision(4) << loss << "   " << std::flush;
  }
  void end(const Logs& logs) {
    if (verbose_ <= 0) return;
    if (live_) out_ << "\r";
    out_ << "Epoch " << epoch_ + 1 << "/" << epochs_;
    auto get = [&](const char* k) { auto it = logs.find(k); return it == logs.end() ? 0.0 : it->second; };
    out_ << std::fixed << std::setprecision(1) << " - " << get("seconds") << "s - " << std::setprecision(0)
         << get("samples_per_second") << " samples/s" << std::defaultfloat;
    for (const auto& [k, v] : logs)
      if (k != "seconds" && k != "samples_per_second" && k != "lr")
        out_ << " - " << k << ": " << std::setprecision(4) << v;
    out_ << std::string(live_ ? 8 : 0, ' ') << "\n" << std::flush;
  }
  double seconds() const {
    return offset_ + std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }
  // Seconds the epoch ran before an interruption (a resumed epoch counts them too).
  void add_seconds(double s) { offset_ += s; }

 private:
  std::ostream& out_;
  int verbose_, epoch_, epochs_;
  std::int64_t steps_;
  bool live_ = false;
  double offset_ = 0;
  std::chrono::steady_clock::time_point start_, last_;
};

}  // namespace

void request_stop() { g_stop.store(true); }
bool last_fit_interrupted() { return g_interrupted; }

// ---- ArrayBatches ---------------------------------------------------------------------
ArrayBatches::ArrayBatches(Tensor x, Tensor y, std::int64_t batch_size, bool shuffle,
                           std::uint64_t seed, Device device)
    : x_(std::move(x)), y_(std::move(y)), batch_(batch_size), shuffle_(shuffle), seed_(seed), device_(device) {
  RECUR_CHECK(x_.defined() && y_.defined() && x_.ndim() >= 1 && y_.ndim() >= 1, Value,
              "ArrayBatches: x and y must be defined tensors with a sample axis");
  RECUR_CHECK(x_.device().is_cpu() && y_.device().is_cpu(), Device,
              "ArrayBatches: x and y are host arrays (cpu); batches are copied to the device");
  RECUR_CHECK(x_.dim(0) == y_.dim(0), Shape, "ArrayBatches: x has ", x_.dim(0), " samples, y ", y_.dim(0));
  RECUR_CHECK(batch_ > 0, Value, "ArrayBatches: batch_size must be positive, got ", batch_);
  RECUR_CHECK(x_.dim(0) > 0, Value, "ArrayBatches: no samples");
}

std::int64_t ArrayBatches::size() const { return (x_.dim(0) + batch_ - 1) / batch_; }

Batch ArrayBatches::get(std::int64_t epoch, std::int64_t index) const { return rows(epoch, index, 0, 1, nullptr); }

Batch ArrayBatches::get_shard(std::int64_t epoch, std::int64_t index, int part, int parts,
                              std::int64_t* total) const {
  return rows(epoch, index, part, parts, total);
}

Batch ArrayBatches::rows(std::int64_t epoch, std::int64_t index, int part, int parts, std::int64_t* total) const {
  RECUR_CHECK(index >= 0 && index < size(), Value, "ArrayBatches: batch ", index, " out of range (",
              size(), " batches)");
  const std::int64_t N = x_.dim(0), batch_begin = index * batch_, batch_end = std::min(N, batch_begin + batch_);
  const auto [shard_begin, shard_end] = shard_rows(batch_end - batch_begin, part, parts);
  if (total != nullptr) *total = batch_end - batch_begin;
  if (shard_end == shard_begin) return Batch{};
  const std::int64_t begin = batch_begin + shard_begin, end = batch_begin + shard_end;
  std::vector<std::int64_t> rows(static_cast<std::size_t>(N));
  for (std::int64_t i = 0; i < N; ++i) rows[std::size_t(i)] = i;
  if (shuffle_) {  // Fisher-Yates with a fixed derivation (std::shuffle's varies by library)
    std::mt19937_64 g(seed_ * 0x9e3779b97f4a7c15ull + std::uint64_t(epoch) + 1);
    for (std::int64_t i = N - 1; i > 0; --i) std::swap(rows[std::size_t(i)], rows[g() % std::uint64_t(i + 1)]);
  }
  auto gather = [&](const Tensor& src) {
    Shape s = src.shape();
    s[0] = end - begin;
    Tensor out = Tensor::empty(s, src.dtype(), Device::cpu());
    const std::size_t row = src.nbytes() / std::size_t(src.dim(0));
    auto* dst = static_cast<unsigned char*>(out.raw_data());
    const auto* from = static_cast<const unsigned char*>(src.raw_data());
    for (std::int64_t i = begin; i < end; ++i)
      std::memcpy(dst + std::size_t(i - begin) * row, from + std::size_t(rows[std::size_t(i)]) * row, row);
    return device_.is_cpu() ? out : out.to(device_);
  };
  Batch b;
  b.x = gather(x_);
  b.y = gather(y_);
  return b;
}

// ---- shards -----------------------------------------------------------------------
Batch slice_batch(const Batch& b, std::int64_t begin, std::int64_t end) {
  auto cut = [&](const Tensor& t) { return t.defined() ? t.slice(begin, end) : t; };
  Batch out;
  out.x = cut(b.x);
  out.y = cut(b.y);
  out.mask = cut(b.mask);
  out.sample_weight = cut(b.sample_weight);
  for (const Tensor& t : b.inputs) out.inputs.push_back(cut(t));
  for (const Tensor& t : b.masks) out.masks.push_back(cut(t));
  return out;
}

Batch BatchSource::get_shard(std::int64_t epoch, std::int64_t index, int part, int parts,
                             std::int64_t* rows) const {
  const Batch b = get(epoch, index);
  const Tensor& first = b.inputs.empty() ? b.x : b.inputs.front();
  RECUR_CHECK(first.defined() && first.ndim() >= 1, Value, "BatchSource: batch ", index, " of epoch ", epoch,
              " has no input tensor to share among ranks");
  const std::int64_t n = first.dim(0);
  if (rows != nullptr) *rows = n;
  const auto [begin, end] = shard_rows(n, part, parts);
  if (end == begin) return Batch{};
  return slice_batch(b, begin, end);
}

// ---- History --------------------------------------------------------------------------
std::string History::to_csv() const {
  std::set<std::string> keys;
  for (const Logs& l : epochs)
    for (const auto& [k, v] : l) keys.insert(k);
  std::ostringstream s;
  s << "epoch";
  for (const std::string& k : keys) s << "," << k;
  s << "\n";
  for (std::size_t e = 0; e < epochs.size(); ++e) {
    s << e + 1;
    for (const std::string& k : keys) {
      auto it = epochs[e].find(k);
      s << "," << (it == epochs[e].end() ? std::string() : num(it->second));
    }
    s << "\n";
  }
  return s.str();
}

std::string History::to_json() const {
  std::set<std::string> keys;
  for (const Logs& l : epochs)
    for (const auto& [k, v] : l) keys.insert(k);
  std::ostringstream s;
  s << "{";
  bool first = true;
  for (const std::string& k : keys) {
    s << (first ? "" : ", ") << "\"" << k << "\": [";
    first = false;
    for (std::size_t e = 0; e < epochs.size(); ++e) {
      auto it = epochs[e].find(k);
      const bool ok = it != epochs[e].end() && std::isfinite(it->second);
      s << (e ? ", " : "") << (ok ? num(it->second) : "null");
    }
    s << "]";
  }
  s << "}\n";
  return s.str();
}

void History::write_csv(const std::string& path) const { write_atomically(path, to_csv()); }
void History::write_json(const std::string& path) const { write_atomically(path, to_json()); }

// ---- callbacks ------------------------------------------------------------------------
EarlyStopping::EarlyStopping(std::string monitor, int patience, double min_delta, bool restore)
    : monitor_(std::move(monitor)), patience_(patience), min_delta_(std::abs(min_delta)), restore_(restore) {
  RECUR_CHECK(patience >= 0, Value, "EarlyStopping: patience must be >= 0, got ", patience);
}

void EarlyStopping::on_train_begin(TrainableModel& /*model*/) {
  best_epoch_ = -1;
  wait_ = 0;
  stopped_epoch_ = -1;
  stop_training = false;
  best_values_ = Tensor();
}

void EarlyStopping::on_epoch_end(int epoch, const Logs& logs, TrainableModel& model) {
  const double v = monitored(logs, monitor_, "EarlyStopping");
  if (improved(v, best_, best_epoch_ < 0, min_delta_, higher_is_better(monitor_))) {
    best_ = v;
    best_epoch_ = epoch;
    wait_ = 0;
    if (restore_) best_values_ = copy_of(model.parameters().values());
    return;
  }
  if (++wait_ >= patience_ && epoch > 0) {  // Keras: wait counts this epoch too
    stopped_epoch_ = epoch;
    stop_training = true;
  }
}

std::string EarlyStopping::save_state() const {
  return json{{"best", number_or_null(best_)}, {"best_epoch", best_epoch_}, {"wait", wait_},
              {"stopped_epoch", stopped_epoch_}}.dump();
}

void EarlyStopping::load_state(const std::string& text) {
  const json j = parse_state(text, "EarlyStopping");
  try {
    best_ = number_from(j.at("best"), 0.0);
    best_epoch_ = j.at("best_epoch").get<int>();
    wait_ = j.at("wait").get<int>();
    stopped_epoch_ = j.at("stopped_epoch").get<int>();
  } catch (const json::exception& e) {
    RECUR_THROW(Value, "EarlyStopping: the resume state is malformed (", e.what(), ")");
  }
}

void EarlyStopping::on_train_end(TrainableModel& model, bool /*interrupted*/) {
  if (restore_ && best_values_.defined()) model.parameters().values().copy_from(best_values_);
}

ReduceLROnPlateauCallback::ReduceLROnPlateauCallback(std::string monitor, double factor, int patience,
                                                     double min_delta, int cooldown, double min_lr)
    : monitor_(std::move(monitor)),
      plateau_(factor, patience, min_delta, cooldown, min_lr,
               higher_is_better(monitor_) ? ReduceLROnPlateau::Mode::Max : ReduceLROnPlateau::Mode::Min) {}

void ReduceLROnPlateauCallback::on_epoch_end(int /*epoch*/, const Logs& logs, TrainableModel& model) {
  plateau_.on_epoch_end(monitored(logs, monitor_, "ReduceLROnPlateau"), model.optimizer());
}

std::string ReduceLROnPlateauCallback::save_state() const {
  return json{{"best", number_or_null(plateau_.best())}, {"wait", plateau_.wait()},
              {"cooldown_counter", plateau_.cooldown_counter()}}.dump();
}

void ReduceLROnPlateauCallback::load_state(const std::string& text) {
  const json j = parse_state(text, "ReduceLROnPlateau");
  try {
    plateau_.restore(number_from(j.at("best"), plateau_.best()), j.at("wait").get<int>(),
                     j.at("cooldown_counter").get<int>());
  } catch (const json::exception& e) {
    RECUR_THROW(Value, "ReduceLROnPlateau: the resume state is malformed (", e.what(), ")");
  }
}

LambdaCheckpoint::LambdaCheckpoint(SaveFn save, std::string monitor, bool save_best_only)
    : save_(std::move(save)), monitor_(std::move(monitor)), best_only_(save_best_only) {
  RECUR_CHECK(save_ != nullptr, Value, "checkpoint callback: no save function");
}

void LambdaCheckpoint::on_epoch_end(int epoch, const Logs& logs, TrainableModel& /*model*/) {
  pending_ = false;
  if (!best_only_) {
    pending_ = true;
    pending_logs_ = logs;
    return;
  }
  const double v = monitored(logs, monitor_, "ModelCheckpoint");
  if (improved(v, best_, best_epoch_ < 0, 0.0, higher_is_better(monitor_))) {
    best_ = v;
    best_epoch_ = epoch;
    pending_ = true;
    pending_logs_ = logs;
  }
}

void LambdaCheckpoint::on_epoch_committed(int epoch, TrainableModel& model) {
  if (!pending_) return;
  pending_ = false;
  save_(model, epoch, pending_logs_);
}

std::string LambdaCheckpoint::save_state() const {
  return json{{"best", number_or_null(best_)}, {"best_epoch", best_epoch_}}.dump();
}

void LambdaCheckpoint::load_state(const std::string& text) {
  const json j = parse_state(text, "ModelCheckpoint");
  try {
    best_ = number_from(j.at("best"), 0.0);
    best_epoch_ = j.at("best_epoch").get<int>();
  } catch (const json::exception& e) {
    RECUR_THROW(Value, "ModelCheckpoint: the resume state is malformed (", e.what(), ")");
  }
}

std::string HistoryLogger::save_state() const {
  json rows = json::array();
  for (const Logs& l : history_.epochs) rows.push_back(logs_to_json(l));
  return json{{"epochs", rows}}.dump();
}

void HistoryLogger::load_state(const std::string& text) {
  const json j = parse_state(text, "HistoryLogger");
  try {
    history_.epochs.clear();
    for (const json& row : j.at("epochs")) history_.epochs.push_back(logs_from_json(row));
  } catch (const json::exception& e) {
    RECUR_THROW(Value, "HistoryLogger: the resume state is malformed (", e.what(), ")");
  }
}

void HistoryLogger::on_epoch_end(int /*epoch*/, const Logs& logs, TrainableModel& /*model*/) {
  history_.epochs.push_back(logs);
  const bool json = path_.size() >= 5 && path_.compare(path_.size() - 5, 5, ".json") == 0;
  if (json)
    history_.write_json(path_);
  else
    history_.write_csv(path_);
}

void ResetStatesCallback::on_epoch_begin(int /*epoch*/, TrainableModel& model) { model.reset_states(); }
void ResetStatesCallback::on_test_begin(TrainableModel& model) { model.reset_states(); }

// ---- fit / evaluate -------------------------------------------------------------------
namespace {

std::int64_t batch_rows(const Batch& b) {
  const Tensor& t = b.inputs.empty() ? b.x : b.inputs.front();
  return t.defined() ? t.dim(0) : 0;
}

// Sums the ranks' weighted sums (loss, metrics), weights and samples: every
// rank then holds the job's means.
void reduce_means(Means& m, double* samples, const TrainableModel& model, Communicator& comm) {
  std::set<std::string> keys{"loss"};  // sorted: the same order on every rank
  for (LossKind k : model.compile_options().metrics) keys.insert(metric_key(k));
  std::vector<double> v;
  for (const std::string& k : keys) v.push_back(m.sum[k]);
  v.push_back(m.weight);
  v.push_back(samples != nullptr ? *samples : 0.0);
  comm.all_reduce_sum(v);
  std::size_t i = 0;
  for (const std::string& k : keys) m.sum[k] = v[i++];
  m.weight = v[i++];
  if (samples != nullptr) *samples = v[i];
}

// Whether any rank asks to stop: every rank stops at the same step.
bool any_rank(bool flag, Communicator& comm) {
  std::vector<double> v{flag ? 1.0 : 0.0};
  comm.all_reduce_sum(v);
  return v[0] > 0;
}

// evaluate; with dp, each rank evaluates its share of every batch and the means are reduced.
Logs evaluate_impl(TrainableModel& model, const BatchSource& data, std::int64_t steps, DataParallel* dp) {
  const std::int64_t n = steps > 0 ? steps : data.size();
  RECUR_CHECK(n > 0, Value, "evaluate: the data have no batches");
  Means m;
  // Each batch's logs are read once the next batch is queued (see fit).
  PendingBatchLogs queued;
  double queued_weight = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    std::int64_t rows = 0;
    const Batch b = dp != nullptr ? data.get_shard(0, i % data.size(), dp->rank(), dp->size(), &rows)
                                  : data.get(0, i % data.size());
    if (dp != nullptr && batch_rows(b) == 0) continue;  // this rank's share is empty
    PendingBatchLogs l = model.test_step_async(inputs_of(b), b.y, masks_of(b), b.sample_weight);
    const double w = model.last_batch_weight();
    if (queued.valid()) m.add(model, queued.read(), queued_weight);
    queued = std::move(l);
    queued_weight = w;
  }
  if (queued.valid()) m.add(model, queued.read(), queued_weight);
  if (dp != nullptr) reduce_means(m, nullptr, model, dp->communicator());
  return m.mean();
}

// The communicator fit trains over, or nullptr (one process).
std::shared_ptr<Communicator> fit_communicator(const TrainableModel& model, const FitOptions& o) {
  if (o.distributed == FitOptions::Distributed::Off) return nullptr;
  if (o.communicator != nullptr) return o.communicator->size() > 1 ? o.communicator : nullptr;
  const LaunchInfo launch = launch_info();
  if (o.distributed == FitOptions::Distributed::Auto && launch.size <= 1) return nullptr;
  std::shared_ptr<Communicator> c = world_communicator(model.parameters().device());
  return c->size() > 1 ? c : nullptr;
}

}  // namespace

Logs evaluate(TrainableModel& model, const BatchSource& data, std::int64_t steps) {
  return evaluate_impl(model, data, steps, nullptr);
}

History fit(TrainableModel& model, const BatchSource& train, const FitOptions& o,
            const BatchSource* validation, const std::vector<std::shared_ptr<Callback>>& callbacks) {
  RECUR_CHECK(model.compiled(), Value, "fit: compile the model first");
  RECUR_CHECK(o.epochs >= 0 && o.initial_epoch >= 0 && o.initial_step >= 0 && o.stop_after_steps >= 0, Value,
              "fit: epochs, initial_epoch, initial_step and stop_after_steps must be >= 0");
  RECUR_CHECK(train.size() > 0, Value, "fit: the training data have no batches");
  // The resume state, checked before anything runs.
  json resume = json::object();
  if (!o.resume_state.empty()) {
    resume = parse_state(o.resume_state, "fit");
    RECUR_CHECK(resume.is_object() && resume.value("format", "") == "recur.fit_state/1", Value,
                "fit: resume_state is not a recur.fit_state/1 document");
  }
  // Data-parallel: a hook on the model for this call, rank 0's parameters on
  // every rank, rank 0 alone printing and writing files.
  std::unique_ptr<DataParallel> dp;
  if (std::shared_ptr<Communicator> comm = fit_communicator(model, o)) {
    dp = std::make_unique<DataParallel>(model, std::move(comm));
    dp->broadcast_parameters();
  }
  const bool rank0 = dp == nullptr || dp->rank() == 0;
  FitOptions quiet_options;
  if (!rank0) {
    quiet_options = o;
    quiet_options.verbose = 0;
  }
  const FitOptions& po = rank0 ? o : quiet_options;  // what the progress line sees
  std::vector<std::shared_ptr<Callback>> all_callbacks;
  for (const auto& cb : callbacks)
    if (rank0 || !cb->rank_zero_only()) all_callbacks.push_back(cb);
  const std::vector<std::shared_ptr<Callback>>& callbacks_here = all_callbacks;
  g_stop.store(false);
  g_interrupted = false;
  using Handler = void (*)(int);
  Handler previous_int = SIG_DFL, previous_term = SIG_DFL;
  if (o.stop_on_sigint) {
    previous_int = std::signal(SIGINT, on_stop_signal);
    previous_term = std::signal(SIGTERM, on_stop_signal);
  }
  struct Restore {
    bool on;
    Handler i, t;
    ~Restore() {
      if (on) {
        std::signal(SIGINT, i);
        std::signal(SIGTERM, t);
      }
    }
  } restore{o.stop_on_sigint, previous_int, previous_term};

  History history;
  for (const auto& cb : callbacks_here) cb->on_train_begin(model);
  if (resume.contains("callbacks")) {
    const json& states = resume.at("callbacks");
    for (std::size_t i = 0; i < callbacks_here.size(); ++i) {
      const std::string key = callback_key(callbacks_here, i);
      if (!key.empty() && states.contains(key)) callbacks_here[i]->load_state(states.at(key).get<std::string>());
    }
  }
  bool interrupted = false;
  std::int64_t steps_run = 0;
  auto stop_requested = [&] { return g_stop.load() || (o.stop_after_steps > 0 && steps_run >= o.stop_after_steps); };
  for (int epoch = o.initial_epoch; epoch < o.epochs && !interrupted; ++epoch) {
    const std::int64_t available = train.epoch_size(epoch);
    const std::int64_t steps = o.steps_per_epoch > 0 ? o.steps_per_epoch : available;
    const std::int64_t first = epoch == o.initial_epoch ? o.initial_step : 0;
    RECUR_CHECK(first <= steps, Value, "fit: initial_step ", first, " is past the epoch's ", steps,
                " steps (was the checkpoint written with another steps_per_epoch?)");
    for (const auto& cb : callbacks_here) cb->on_epoch_begin(epoch, model);
    const double lr = model.optimizer().learning_rate();
    Progress progress(po, epoch, steps);
    Means m;
    double samples = 0;
    // (Data-parallel: the sums are the job's; rank 0 alone takes them back.)
    if (first > 0 && rank0 && resume.contains("partial_epoch") && resume["partial_epoch"].value("epoch", -1) == epoch) {
      const json& p = resume["partial_epoch"];
      for (auto it = p.at("sums").begin(); it != p.at("sums").end(); ++it)
        m.sum[it.key()] = number_from(it.value(), NAN);
      m.weight = p.at("weight").get<double>();
      samples = p.at("samples").get<double>();
      progress.add_seconds(p.at("seconds").get<double>());
    }
    // A step's logs are read after the next step has been queued: the host
    // prepares the next batch while the device runs this step, and never
    // waits for more than the step it reads (the progress line lags a step).
    struct Queued {
      PendingBatchLogs logs;
      double weight = 0;
      std::int64_t step = 0;
    } queued;
    auto settle = [&] {
      if (!queued.logs.valid()) return;
      const BatchLogs& l = queued.logs.read();
      RECUR_CHECK(std::isfinite(l.loss), Value, "fit: the loss became ", l.loss, " at epoch ",
                  epoch + 1, ", step ", queued.step + 1, "; lower the learning rate or check the data for NaN");
      m.add(model, l, queued.weight);
      samples += queued.weight;
      progress.step(queued.step + 1, samples, m.mean().at("loss"));
      queued = Queued{};
    };
    for (std::int64_t step = first; step < steps; ++step) {
      PendingBatchLogs l;
      double w = 0;
      if (dp == nullptr) {
        const Batch b = train.get(epoch, step % available);
        l = model.train_step_async(inputs_of(b), b.y, masks_of(b), b.sample_weight);
        w = model.last_batch_weight();
      } else {  // this rank's share of the batch; the gradients summed over the ranks
        std::int64_t rows = 0;
        const Batch b = train.get_shard(epoch, step % available, dp->rank(), dp->size(), &rows);
        dp->set_step_rows(batch_rows(b), rows);
        if (batch_rows(b) > 0) {
          l = model.train_step_async(inputs_of(b), b.y, masks_of(b), b.sample_weight);
          w = model.last_batch_weight();
        } else {
          model.train_step_without_data();
        }
      }
      settle();  // the previous step's logs, while this one runs
      if (l.valid()) queued = Queued{std::move(l), w, step};
      ++steps_run;
      const bool stop_here = dp == nullptr ? stop_requested() : any_rank(stop_requested(), dp->communicator());
      if (stop_here) {
        settle();
        interrupted = step + 1 < steps || epoch + 1 < o.epochs;
        if (!interrupted) break;  // the last step: the epoch ends as usual
        // The job's partial sums, for the resume state (any number of ranks may resume it).
        if (dp != nullptr) reduce_means(m, &samples, model, dp->communicator());
        const std::string state = fit_state_json(callbacks_here, epoch, &m, samples, progress.seconds());
        for (const auto& cb : callbacks_here) {
          cb->current_epoch = epoch;
          cb->next_step = step + 1;
          cb->fit_state = state;
        }
        break;
      }
    }
    settle();
    if (interrupted) break;
    if (dp != nullptr) reduce_means(m, &samples, model, dp->communicator());
    Logs logs = m.mean();
    logs["lr"] = lr;
    logs["seconds"] = progress.seconds();
    logs["samples_per_second"] = logs["seconds"] > 0 ? samples / logs["seconds"] : 0;
    if (validation != nullptr) {
      for (const auto& cb : callbacks_here) cb->on_test_begin(model);
      for (const auto& [k, v] : evaluate_impl(model, *validation, o.validation_steps, dp.get()))
        logs["val_" + k] = v;
    }
    history.epochs.push_back(logs);
    progress.end(logs);
    bool stop = false;
    for (const auto& cb : callbacks_here) {
      cb->current_epoch = epoch + 1;
      cb->next_step = 0;
      cb->on_epoch_end(epoch, logs, model);
      stop = stop || cb->stop_training;
    }
    const std::string state = fit_state_json(callbacks_here, epoch + 1, nullptr, 0, 0);
    for (const auto& cb : callbacks_here) cb->fit_state = state;
    for (const auto& cb : callbacks_here) cb->on_epoch_committed(epoch, model);
    if (stop) break;
    // A stop asked for during validation or the callbacks: before the next epoch starts.
    const bool stop_now = dp == nullptr ? g_stop.load() : any_rank(g_stop.load(), dp->communicator());
    if (stop_now && epoch + 1 < o.epochs) interrupted = true;
  }
  g_interrupted = interrupted;
  if (interrupted && po.verbose > 0) (o.out ? *o.out : std::cout) << "\nInterrupted: stopped at the end of the step.\n";
  for (const auto& cb : callbacks_here) cb->on_train_end(model, interrupted);
  return history;
}

}  // namespace recur
