// `recur imdb`: see imdb.h and docs/text.md.
#include "imdb.h"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli_util.h"
#include "forecast.h"  // int_range
#include "recur/recur.h"

namespace recur::app {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// ---- the zoo ----------------------------------------------------------------------------
// A model is one entry: its layers as a JSON array (model_config.h), where
// ${VOCAB} stands for the vocabulary's size (the Embedding's input_dim). Every
// model ends in Dense(1) without activation: a logit, trained with binary
// cross-entropy from logits (predict prints its sigmoid).
struct ZooModel {
  const char* name;
  const char* what;
  int epochs;
  const char* layers;
  // The text it reads: int token ids (a sequence; ngrams 1), or a multi-hot
  // bag of the n-grams up to `ngrams` (input [vocabulary]).
  bool multi_hot = false;
  int ngrams = 1;
  std::int64_t max_tokens = 10000;  // --max-tokens overrides it
};

const ZooModel kZoo[] = {
    {"simple-rnn", "Embedding 32 (mask_zero), SimpleRNN 32, Dense 1", 10,
     R"([{"type": "Embedding", "input_dim": ${VOCAB}, "output_dim": 32, "mask_zero": true},
         {"type": "SimpleRNN", "units": 32}, {"type": "Dense", "units": 1}])"},
    {"lstm", "Embedding 32 (mask_zero), LSTM 32, Dense 1", 10,
     R"([{"type": "Embedding", "input_dim": ${VOCAB}, "output_dim": 32, "mask_zero": true},
         {"type": "LSTM", "units": 32}, {"type": "Dense", "units": 1}])"},
    {"gru", "Embedding 32 (mask_zero), GRU 32, Dense 1", 10,
     R"([{"type": "Embedding", "input_dim": ${VOCAB}, "output_dim": 32, "mask_zero": true},
         {"type": "GRU", "units": 32}, {"type": "Dense", "units": 1}])"},
    {"bidirectional-lstm", "Embedding 32 (mask_zero), Bidirectional LSTM 32 (concat), Dense 1", 10,
     R"([{"type": "Embedding", "input_dim": ${VOCAB}, "output_dim": 32, "mask_zero": true},
         {"type": "Bidirectional", "layer": {"type": "LSTM", "units": 32}}, {"type": "Dense", "units": 1}])"},
    {"lstm-attention", "Embedding 32 (mask_zero), LSTM 32 (sequences), AttentionPooling (dot, learned query), Dense 1", 10,
     R"([{"type": "Embedding", "input_dim": ${VOCAB}, "output_dim": 32, "mask_zero": true},
         {"type": "LSTM", "units": 32, "return_sequences": true},
         {"type": "AttentionPooling", "score_mode": "dot", "query": "learned", "use_scale": true},
         {"type": "Dense", "units": 1}])"},
    {"conv1d", "Embedding 128, Conv1D 32 k7 relu, MaxPooling1D 5, Conv1D 32 k7 relu, GlobalMaxPooling1D, Dense 1", 10,
     R"([{"type": "Embedding", "input_dim": ${VOCAB}, "output_dim": 128},
         {"type": "Conv1D", "filters": 32, "kernel_size": 7, "activation": "relu"},
         {"type": "MaxPooling1D", "pool_size": 5},
         {"type": "Conv1D", "filters": 32, "kernel_size": 7, "activation": "relu"},
         {"type": "GlobalMaxPooling1D"}, {"type": "Dense", "units": 1}])"},
    {"conv1d-gru", "Embedding 32, Conv1D 32 k5 relu, MaxPooling1D 3, Conv1D 32 k5 relu, GRU 32, Dense 1", 10,
     R"([{"type": "Embedding", "input_dim": ${VOCAB}, "output_dim": 32},
         {"type": "Conv1D", "filters": 32, "kernel_size": 5, "activation": "relu"},
         {"type": "MaxPooling1D", "pool_size": 3},
         {"type": "Conv1D", "filters": 32, "kernel_size": 5, "activation": "relu"},
         {"type": "GRU", "units": 32}, {"type": "Dense", "units": 1}])"},
    {"bag-of-bigrams", "multi-hot words and bigrams (20,000), Dense 16 relu, Dropout 0.5, Dense 1", 10,
     R"([{"type": "Dense", "units": 16, "activation": "relu"}, {"type": "Dropout", "rate": 0.5},
         {"type": "Dense", "units": 1}])",
     true, 2, 20000},
};

std::string zoo_names() {
  std::string names;
  for (const ZooModel& z : kZoo) names += (names.empty() ? "" : ", ") + std::string(z.name);
  return names;
}

const ZooModel& zoo_model(const std::string& name) {
  for (const ZooModel& z : kZoo)
    if (name == z.name) return z;
  RECUR_THROW(Value, "unknown model '", name, "' (the zoo: ", zoo_names(), "; or --config FILE)");
}

// A zoo model's config text: RMSprop 1e-3, binary cross-entropy (from the logit) and accuracy.
std::string zoo_config(const ZooModel& z, std::int64_t vocab) {
  std::string layers = z.layers;
  const std::string key = "${VOCAB}";
  for (std::size_t at = layers.find(key); at != std::string::npos; at = layers.find(key))
    layers.replace(at, key.size(), std::to_string(vocab));
  return std::string(R"({"format": "recur.model/1", "name": ")") + z.name +
         R"(", "input_shape": )" + (z.multi_hot ? "[" + std::to_string(vocab) + "]" : std::string("[null]")) +
         R"(, "layers": )" + layers +
         R"(, "compile": {"optimizer": {"name": "rmsprop", "learning_rate": 0.001}, "loss": "binary_crossentropy",)"
         R"( "metrics": ["binary_accuracy"]}})";
}

// The shortest review a model takes (valid convolutions and pooling need some
// steps): the least T from 1 to 256 for which it builds.
std::int64_t min_length_of(const std::string& config_text) {
  for (std::int64_t t = 1; t <= 256; ++t) {
    ModelConfig c = model_config_from_json(config_text, "model");
    if (!c.model || c.input_shape.size() != 1 || c.input_shape[0] != kAnyDim) return 1;
    try {
      c.model->build({t}, Device::cpu(), c.dtype, 0);
      return t;
    } catch (const Error&) {
    }
  }
  RECUR_THROW(Value, "the model takes no review of up to 256 tokens");
}

// The config's compile options (else RMSprop 1e-3 and binary cross-entropy),
// with binary_accuracy among the metrics: the figure every message reports.
CompileOptions compile_options(const ModelConfig& cfg) {
  CompileOptions co = cfg.compile.value_or(
      CompileOptions{OptimizerConfig::rmsprop(1e-3), LossKind::BinaryCrossentropy, {LossKind::BinaryAccuracy}});
  if (std::find(co.metrics.begin(), co.metrics.end(), LossKind::BinaryAccuracy) == co.metrics.end())
    co.metrics.push_back(LossKind::BinaryAccuracy);
  return co;
}

// ---- batches ------------------------------------------------------------------------------
// Reviews as int32 ids [B, T] and labels [B]. Variable length (pad == 0):
// batches of similar lengths from a LengthBucketSampler, padded with 0 at the
// end to the batch's longest review (at least min_length). pad > 0: Keras's
// pad_sequences(maxlen=pad) (padding and truncating 'pre') for every review.
// Multi-hot (columns > 0): float [B, columns], 1 where a review has the column's token.
struct Layout {
  std::int64_t batch_size = 32, pad = 0, max_length = 0, min_length = 1;
  std::int64_t token_budget = 0;  // variable length: at most this many padded tokens a batch (0: none)
  std::int64_t columns = 0;  // multi-hot width; 0: token ids
};

class Reviews final : public BatchSource {
 public:
  Reviews(const std::vector<std::vector<std::int32_t>>& ids, const std::vector<std::int32_t>& labels,
          const Layout& layout, std::uint64_t seed, Device dev, std::int64_t limit = 0)
      : ids_(ids), labels_(labels), pad_(layout.pad), min_length_(std::max<std::int64_t>(layout.min_length, 1)),
        columns_(layout.columns), dev_(dev), limit_(limit), sampler_(lengths(ids), options(layout, seed)) {}

  std::int64_t size() const override { return epoch_size(0); }
  // With a token budget, an epoch's batch count depends on how its windows fall.
  std::int64_t epoch_size(std::int64_t epoch) const override {
    const std::int64_t n = std::int64_t(batches(epoch).size());
    return limit_ > 0 ? std::min(limit_, n) : n;
  }
  Batch get(std::int64_t epoch, std::int64_t index) const override {
    const BucketBatch b = batches(epoch).at(std::size_t(index));
    Batch out;
    std::vector<float> y(std::size_t(b.size()));
    for (std::int64_t i = 0; i < b.size(); ++i) y[std::size_t(i)] = float(labels_[std::size_t(b.samples[std::size_t(i)])]);
    out.y = Tensor::from_vector(y, {b.size()}, dev_);
    if (columns_ > 0) {
      std::vector<float> x(std::size_t(b.size() * columns_), 0.f);
      for (std::int64_t i = 0; i < b.size(); ++i)
        for (std::int32_t c : ids_[std::size_t(b.samples[std::size_t(i)])]) x[std::size_t(i * columns_ + c)] = 1.f;
      out.x = Tensor::from_vector(x, {b.size(), columns_}, dev_);
      return out;
    }
    const std::int64_t T = pad_ > 0 ? pad_ : std::max(b.padded_length, min_length_);
    std::vector<std::int32_t> x(std::size_t(b.size() * T), 0);
    for (std::int64_t i = 0; i < b.size(); ++i) {
      const std::int64_t s = b.samples[std::size_t(i)];
      const std::vector<std::int32_t>& seq = ids_[std::size_t(s)];
      std::int32_t* row = x.data() + i * T;
      if (pad_ > 0) {
        pad_sequence_into(seq, T, Padding::Pre, Truncation::Pre, 0, row);
      } else {
        const std::int64_t first = sampler_.first_token(s), len = sampler_.length(s);
        std::copy(seq.begin() + first, seq.begin() + first + len, row);
      }
    }
    out.x = Tensor::from_vector(x, {b.size(), T}, dev_);
    return out;
  }
  PaddingStats stats() const { return sampler_.stats(batches(0)); }
  std::int64_t samples() const { return std::int64_t(ids_.size()); }

 private:
  static std::vector<std::int64_t> lengths(const std::vector<std::vector<std::int32_t>>& ids) {
    std::vector<std::int64_t> l;
    l.reserve(ids.size());
    for (const auto& s : ids) l.push_back(std::int64_t(s.size()));
    return l;
  }
  static BucketingOptions options(const Layout& l, std::uint64_t seed) {
    BucketingOptions o;
    o.bucket = l.pad == 0 && l.columns == 0;
    o.batch_size = l.batch_size;
    o.max_length = l.columns > 0 ? 0 : l.pad > 0 ? l.pad : l.max_length;
    o.max_tokens = o.bucket ? l.token_budget : 0;
    o.truncating = Truncation::Pre;
    o.seed = seed;
    return o;
  }
  const std::vector<BucketBatch>& batches(std::int64_t epoch) const {
    std::lock_guard<std::mutex> lock(mutex_);
    if (cached_epoch_ != epoch) {
      cache_ = sampler_.epoch(epoch);
      cached_epoch_ = epoch;
    }
    return cache_;
  }

  const std::vector<std::vector<std::int32_t>>& ids_;
  const std::vector<std::int32_t>& labels_;
  std::int64_t pad_, min_length_, columns_;
  Device dev_;
  std::int64_t limit_;
  LengthBucketSampler sampler_;
  mutable std::mutex mutex_;
  mutable std::vector<BucketBatch> cache_;
  mutable std::int64_t cached_epoch_ = -1;
};

struct Split {
  ImdbData data;
  std::vector<std::vector<std::int32_t>> ids;
  std::string source;
};

Split encode_split(ImdbData d, const std::string& source, const TextVectorization& tv) {
  Split s;
  s.ids.reserve(d.texts.size());
  for (const std::string& t : d.texts) s.ids.push_back(tv.encode(t));
  d.texts.clear();
  d.texts.shrink_to_fit();
  s.data = std::move(d);
  s.source = source;
  return s;
}

std::string split_summary(const Split& s) {
  std::int64_t pos = 0;
  for (std::int32_t l : s.data.labels) pos += l;
  return std::to_string(s.data.size()) + " reviews (" + std::to_string(pos) + " positive) from " + s.source;
}

std::ostream& out_stream(const ImdbOptions& o) {
  static std::ostringstream sink;
  return o.quiet ? static_cast<std::ostream&>(sink) : std::cout;
}

const std::vector<std::string> kRunFiles = {"imdb.json",  "model.json",   "vocabulary.json",
                                            "best.safetensors", "interrupted.safetensors",
                                            "results.json", "history.csv"};

// ---- train ----------------------------------------------------------------------------------
int train(const ImdbOptions& options) {
  // mpirun -np N (docs/distributed.md): --batch-size is each rank's; the job trains on
  // batches of N times as many reviews (what imdb.json records), each rank its share.
  ImdbOptions o = options;
  o.batch_size *= launch_info().size;
  std::ostream& out = out_stream(o);
  const auto t_start = std::chrono::steady_clock::now();
  const Device dev = checked_device();
  const fs::path dir(o.out);
  RECUR_CHECK(!o.data.empty(), Value, "--data is required: an aclImdb folder (get aclImdb_v1.tar.gz from "
              "https://ai.stanford.edu/~amaas/data/sentiment/), a folder of imdb_{train,val,test}.tsv.gz, or one TSV");
  check_out_writable(dir);
  const std::vector<std::string> existing = existing_run_files(dir, kRunFiles);
  RECUR_CHECK(o.resume.empty() || !o.overwrite, Value,
              "give --resume (continue the run in --out) or --overwrite (replace it), not both");
  if (!existing.empty() && o.resume.empty() && !o.overwrite) {
    std::string files;
    for (const std::string& f : existing) files += (files.empty() ? "" : ", ") + f;
    const std::string hint = fs::exists(dir / "interrupted.safetensors")
                                 ? "--resume " + (dir / "interrupted.safetensors").string() + " to continue it, "
                                 : "";
    RECUR_THROW(Value, "--out '", o.out, "' holds another run (", files, "); pass ", hint,
                "--overwrite to replace it, or another --out");
  }
  if (!o.resume.empty()) {
    std::error_code ec;
    RECUR_CHECK(fs::exists(o.resume, ec), IO, "--resume '", o.resume, "' does not exist");
    RECUR_CHECK(fs::equivalent(fs::absolute(o.resume).parent_path(), fs::absolute(dir), ec) && !ec, Value,
                "--resume continues the run in --out, and '", o.resume, "' is not in --out '", o.out,
                "'; give the --out of the run it belongs to");
  }
  std::string name = o.model;
  ModelConfig probe;
  if (!o.config.empty()) {
    probe = read_model_config(o.config);  // checked before the data is read
    RECUR_CHECK(probe.model != nullptr, Value, o.config, ": imdb trains Sequential models; this config is functional");
  }
  const ZooModel* zoo = o.config.empty() ? &zoo_model(o.model) : nullptr;
  const bool multi_hot = zoo && zoo->multi_hot;
  RECUR_CHECK(!multi_hot || (o.pad == 0 && o.max_length <= 0 && o.token_budget == 0), Value,
              "--pad, --max-length and --token-budget are for sequence models; ", o.model,
              " reads a bag of words and bigrams");
  RECUR_CHECK(o.pad == 0 || o.token_budget == 0, Value, "--token-budget is for variable-length batches; with --pad "
              "every batch holds --batch-size reviews");

  // 1. The data and the vocabulary (from the training split alone).
  const ImdbSource train_src = imdb_source(o.data, ImdbSplit::Train);
  const ImdbSource val_src = imdb_source(o.data, ImdbSplit::Validation);
  ImdbSource test_src;  // empty when --data has no test split (a TSV folder without imdb_test.tsv)
  try {
    test_src = imdb_source(o.data, ImdbSplit::Test);
  } catch (const Error&) {
  }
  const bool has_test = !o.no_test && !test_src.path.empty() && test_src.path != train_src.path;
  ImdbData train_raw = read_imdb(o.data, ImdbSplit::Train, o.validation_split);
  TextVectorizationOptions vo;
  vo.max_tokens = o.max_tokens > 0 ? o.max_tokens : zoo ? zoo->max_tokens : 10000;
  vo.ngrams = zoo ? zoo->ngrams : 1;
  vo.output_mode = multi_hot ? TextOutputMode::MultiHot : TextOutputMode::Int;
  TextVectorization tv(vo);
  tv.adapt(train_raw.texts);
  Split train = encode_split(std::move(train_raw), train_src.describe(), tv);
  Split val = encode_split(read_imdb(o.data, ImdbSplit::Validation, o.validation_split), val_src.describe(), tv);
  RECUR_CHECK(o.batch_size <= train.data.size(), Value, "--batch-size ", o.batch_size,
              " is larger than the training split (", train.data.size(), " reviews)");

  // 2. The model.
  int epochs = o.epochs;
  std::string config_text;
  if (!o.config.empty()) {
    config_text = read_file(o.config);
    name = probe.model->name();
  } else {
    config_text = zoo_config(*zoo, tv.vocabulary_size());
    if (epochs <= 0) epochs = zoo->epochs;
  }
  if (epochs <= 0) epochs = 10;
  if (!o.resume.empty() && o.epochs <= 0 && fs::exists(dir / "imdb.json")) {
    try {  // --resume without --epochs: the run's own (the rest is checked below)
      const json theirs = json::parse(read_file(dir / "imdb.json"));
      if (theirs.contains("epochs") && theirs["epochs"].is_number_integer()) epochs = theirs["epochs"].get<int>();
    } catch (const json::exception&) {
    }
  }
  ModelConfig cfg = model_config_from_json(config_text, o.config.empty() ? "zoo model " + name : o.config);
  RECUR_CHECK(cfg.input_shape.size() == 1 && (multi_hot || cfg.input_shape[0] == kAnyDim), Shape,
              "the model's input_shape ", keras_shape_str(cfg.input_shape),
              " is not [null] (token ids of any length, as an Embedding takes)");
  if (!multi_hot) {  // a config's Embedding must hold every id of the vocabulary
    const json layers = json::parse(config_text).value("layers", json::array());
    if (!layers.empty() && layers[0].value("type", "") == "Embedding") {
      const std::int64_t dim = layers[0].value("input_dim", std::int64_t(0));
      RECUR_CHECK(dim >= tv.vocabulary_size(), Value, o.config, ": the Embedding's input_dim ", dim,
                  " is smaller than the vocabulary (", tv.vocabulary_size(), " tokens); give input_dim ",
                  tv.vocabulary_size(), " or --max-tokens ", dim);
    }
  }
  const std::int64_t min_length = min_length_of(config_text);
  RECUR_CHECK(o.pad == 0 || o.pad >= min_length, Value, "--pad ", o.pad, " is shorter than the ", min_length,
              " tokens the model needs");
  Sequential& model = *cfg.model;
  model.build(cfg.input_shape, dev, cfg.dtype, o.seed);
  model.compile(compile_options(cfg));
  const std::string model_text = model_config_to_json(model);

  json run;
  run["format"] = "recur.imdb/1";
  run["model"] = name;
  run["data"] = fs::absolute(o.data).string();
  run["validation_split"] = o.validation_split;
  run["max_tokens"] = vo.max_tokens;
  run["pad"] = o.pad;
  // --max-length's default: the last 500 tokens for variable-length batches
  // of tokens; nothing to cut with --pad (which truncates) or a bag of words.
  const std::int64_t max_length =
      o.max_length >= 0 ? o.max_length : (multi_hot || o.pad > 0 ? 0 : kDefaultMaxLength);
  run["max_length"] = max_length;
  run["token_budget"] = o.token_budget;
  run["min_length"] = min_length;
  run["batch_size"] = o.batch_size;
  run["seed"] = o.seed;
  run["epochs"] = epochs;
  run["vocabulary"] = "vocabulary.json";

  Layout layout;
  layout.batch_size = o.batch_size;
  layout.pad = o.pad;
  layout.max_length = max_length;
  layout.min_length = min_length;
  layout.token_budget = o.token_budget;
  layout.columns = multi_hot ? tv.vocabulary_size() : 0;
  const Reviews train_b(train.ids, train.data.labels, layout, o.seed, dev);
  const Reviews val_b(val.ids, val.data.labels, layout, o.seed + 1, dev,
                      o.validation_steps);

  // 3. Say what will happen, then train.
  out << "data: train " << split_summary(train) << "\n      validation " << split_summary(val) << "\n";
  if (multi_hot)
    out << "vocabulary: " << tv.vocabulary_size() << " words and bigrams (max_tokens " << vo.max_tokens
        << ", [UNK] included), from the training split; each review a multi-hot vector\n";
  else
    out << "vocabulary: " << tv.vocabulary_size() << " tokens (max_tokens " << vo.max_tokens
        << ", padding and [UNK] included), from the training split\n";
  const PaddingStats ps = train_b.stats();
  if (multi_hot)
    out << "batches: " << o.batch_size << " reviews as [batch, " << layout.columns << "] multi-hot rows\n";
  else if (o.pad > 0)
    out << "batches: every review padded or truncated to " << o.pad << " tokens (padding and truncating 'pre'): "
        << fixed(100 * ps.one_length_padded_fraction(), 1) << "% of the steps are padding\n";
  else
    out << "batches: variable length, bucketed by length: " << fixed(100 * ps.padded_fraction(), 1)
        << "% of the steps are padding (padding every review to the longest, " << ps.one_length << ", would be "
        << fixed(100 * ps.one_length_padded_fraction(), 1) << "%)"
        << (o.token_budget > 0 ? "; " + std::to_string(ps.batches) + " batches of up to " + std::to_string(o.token_budget) +
                                     " padded tokens and " + std::to_string(o.batch_size) + " reviews"
                               : std::string())
        << "\n";
  if (!has_test)
    out << "test: " << (o.no_test ? "skipped (--no-test)" : "--data has no test split of its own; none measured") << "\n";
  if (!o.quiet) out << model.summary();
  FitOptions fo;
  fo.epochs = epochs;
  fo.steps_per_epoch = o.steps_per_epoch;
  fo.verbose = o.quiet ? 0 : 1;
  fo.stop_after_steps = o.stop_after_steps;
  if (!o.resume.empty()) {  // the same run: its settings, model and vocabulary, then its state
    if (fs::exists(dir / "imdb.json")) {
      json theirs;
      try {
        theirs = json::parse(read_file(dir / "imdb.json"));
      } catch (const json::exception& e) {
        RECUR_THROW(IO, (dir / "imdb.json").string(), ": malformed (", e.what(), "); --resume cannot check it");
      }
      for (const char* k : {"model", "data", "validation_split", "max_tokens", "pad", "max_length", "token_budget",
                            "batch_size", "seed"}) {
        if (theirs.contains(k) && theirs[k] != run[k]) {
          std::string flag = std::string("--") + k;
          std::replace(flag.begin(), flag.end(), '_', '-');
          RECUR_THROW(Value, "--resume: the run in ", o.out, " has ", k, " ", theirs[k].dump(), ", this command ",
                      run[k].dump(), "; give the run's ", flag, " (see ", (dir / "imdb.json").string(), ")");
        }
      }
    }
    if (fs::exists(dir / "model.json") && read_file(dir / "model.json") != model_text)
      RECUR_THROW(Value, "--resume: the run in ", o.out, " trained another model (its model.json differs)");
    if (fs::exists(dir / "vocabulary.json") && read_file(dir / "vocabulary.json") != tv.to_json())
      RECUR_THROW(Value, "--resume: the vocabulary of the run in ", o.out, " differs from this data's");
    const CheckpointInfo info = load_checkpoint(model, o.resume, true);
    fo.initial_epoch = info.position.epoch;
    fo.initial_step = info.position.step;
    fo.resume_state = info.fit_state;
    RECUR_CHECK(fo.initial_epoch < epochs, Value, o.resume, ": the run has finished its ", fo.initial_epoch,
                " epochs; to train on, give --epochs larger than ", fo.initial_epoch);
    out << "resuming from " << o.resume << " at epoch " << fo.initial_epoch + 1 << ", step " << fo.initial_step + 1
        << "\n";
  }
  const std::int64_t steps = o.steps_per_epoch > 0 ? std::min(o.steps_per_epoch, train_b.size()) : train_b.size();
  out << "training " << name << " on " << dev.str() << ": " << epochs << " epochs of " << steps
      << " steps of up to " << o.batch_size << " reviews (Ctrl-C or SIGTERM stops at the end of a step)"
      << std::endl;
  const bool replace = o.overwrite && !existing.empty();
  auto claim = std::make_shared<ClaimRunDir>([&] {
    fs::create_directories(dir);
    if (replace) {
      std::error_code ec;
      for (const std::string& f : existing) fs::remove(dir / f, ec);
    }
    remove_stale_temporaries(dir, kRunFiles);
    write_file(dir / "imdb.json", run.dump(2) + "\n");
    write_file(dir / "model.json", model_text);
    tv.save((dir / "vocabulary.json").string());
  });
  const fs::path best = dir / "best.safetensors", interrupted = dir / "interrupted.safetensors";
  auto ckpt = std::make_shared<ModelCheckpoint>(best.string(), "val_loss", true, interrupted.string());
  auto history = std::make_shared<HistoryLogger>((dir / "history.csv").string());
  fit(model, train_b, fo, &val_b, {claim, ckpt, history});
  // mpirun -np N: rank 0 evaluates and writes the results.
  if (launch_info().rank != 0) return last_fit_interrupted() ? 130 : 0;
  const History& h = history->history();
  const bool was_interrupted = last_fit_interrupted();
  if (was_interrupted)  // said with --quiet too: the run is not finished
    std::cout << "interrupted: the state is in " << interrupted.string() << " (resume with --resume "
              << interrupted.string() << ")\n";
  if (ckpt->best_epoch() < 0) {
    std::cout << "no epoch finished, so there is no best checkpoint to evaluate\n";
    return was_interrupted ? 130 : 1;
  }

  // 4. The best epoch's weights on validation (every batch) and test.
  load_checkpoint(model, best.string(), false);
  const Reviews val_all(val.ids, val.data.labels, layout, o.seed + 1, dev);
  const Logs vl = evaluate(model, val_all);
  json r;
  std::cout << "best epoch " << ckpt->best_epoch() + 1 << ": validation accuracy "
            << fixed(vl.at("binary_accuracy"), 4) << " (" << val.data.size() << " reviews)";
  if (has_test) {
    Split test = encode_split(read_imdb(o.data, ImdbSplit::Test, o.validation_split), test_src.describe(), tv);
    const Reviews test_b(test.ids, test.data.labels, layout, o.seed + 2, dev);
    const Logs tl = evaluate(model, test_b);
    std::cout << ", test accuracy " << fixed(tl.at("binary_accuracy"), 4) << " (" << test.data.size() << " reviews)";
    r["test_accuracy"] = tl.at("binary_accuracy");
    r["test_loss"] = tl.at("loss");
    r["test_reviews"] = test.data.size();
  }
  std::cout << "\n";
  double epoch_seconds = 0;
  for (const Logs& l : h.epochs) epoch_seconds += l.at("seconds") / double(h.epochs.size());
  r["model"] = name;
  r["device"] = dev.str();
  r["device_description"] = backend(dev).describe();
  r["pad"] = o.pad;
  r["epochs_run"] = h.epochs.size();
  r["epochs_planned"] = epochs;
  r["interrupted"] = was_interrupted;
  r["best_epoch"] = ckpt->best_epoch() + 1;
  r["val_accuracy"] = vl.at("binary_accuracy");
  r["val_loss"] = vl.at("loss");
  r["train_reviews"] = train.data.size();
  r["val_reviews"] = val.data.size();
  if (!multi_hot) r["padded_fraction"] = o.pad > 0 ? ps.one_length_padded_fraction() : ps.padded_fraction();
  r["mean_epoch_seconds"] = epoch_seconds;
  r["wall_seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  r["parameters"] = model.count_params();
  write_file(dir / "results.json", r.dump(2) + "\n");
  out << "wrote " << (dir / "results.json").string() << ", " << (dir / "history.csv").string() << ", "
      << best.string() << ", " << (dir / "vocabulary.json").string() << "\n";
  return was_interrupted ? 130 : 0;
}

// ---- evaluate / predict ---------------------------------------------------------------------
struct Loaded {
  json run;
  ModelConfig cfg;
  TextVectorization tv;
  Layout layout;
};

Loaded load_model_dir(const std::string& dir_text, Device dev) {
  RECUR_CHECK(!dir_text.empty(), Value, "--model-dir is required");
  const fs::path dir(dir_text);
  RECUR_CHECK(fs::is_directory(dir), IO, "model directory '", dir_text, "' does not exist");
  Loaded l;
  try {
    l.run = json::parse(read_file(dir / "imdb.json"));
    RECUR_CHECK(l.run.value("format", "") == "recur.imdb/1", IO, (dir / "imdb.json").string(),
                ": not a recur imdb run file");
    l.layout.pad = l.run.at("pad").get<std::int64_t>();
    l.layout.max_length = l.run.at("max_length").get<std::int64_t>();
    l.layout.min_length = l.run.at("min_length").get<std::int64_t>();
    l.layout.batch_size = l.run.at("batch_size").get<std::int64_t>();
    l.layout.token_budget = l.run.value("token_budget", std::int64_t(0));
  } catch (const json::exception& e) {
    RECUR_THROW(IO, (dir / "imdb.json").string(), ": malformed: ", e.what());
  }
  l.tv = TextVectorization::load((dir / l.run.value("vocabulary", "vocabulary.json")).string());
  l.cfg = read_model_config((dir / "model.json").string());
  RECUR_CHECK(l.cfg.model != nullptr, Value, (dir / "model.json").string(), ": not a Sequential model's config");
  if (l.tv.options().output_mode != TextOutputMode::Int) l.layout.columns = l.tv.vocabulary_size();
  l.cfg.model->build(l.cfg.input_shape, dev, l.cfg.dtype, 0);
  RECUR_CHECK(fs::exists(dir / "best.safetensors"), IO, "the run in '", dir_text,
              "' has no best.safetensors: no epoch of it has finished");
  load_checkpoint(*l.cfg.model, (dir / "best.safetensors").string(), false);
  return l;
}

int evaluate_dir(const ImdbOptions& o) {
  std::ostream& out = out_stream(o);
  const Device dev = checked_device();
  Loaded l = load_model_dir(o.model_dir, dev);
  l.cfg.model->compile(compile_options(l.cfg));
  const std::string data = o.data.empty() ? l.run.at("data").get<std::string>() : o.data;
  const ImdbSource src = imdb_source(data, ImdbSplit::Test);
  Split test = encode_split(read_imdb(data, ImdbSplit::Test), src.path, l.tv);
  const Reviews b(test.ids, test.data.labels, l.layout, 0, dev);
  const Logs logs = evaluate(*l.cfg.model, b);
  out << "test: " << split_summary(test) << "\n";
  std::cout << "test accuracy " << fixed(logs.at("binary_accuracy"), 4) << ", loss " << fixed(logs.at("loss"), 4)
            << " (" << test.data.size() << " reviews)\n";
  return 0;
}

// The probability of a positive review for each text.
std::vector<double> positive_probability(Loaded& l, const std::vector<std::string>& texts, Device dev) {
  const Layout& lay = l.layout;
  std::vector<double> p;
  for (const std::string& text : texts) {
    std::vector<std::int32_t> ids = l.tv.encode(text);
    Tensor x;
    if (lay.columns > 0) {  // multi-hot: ids are columns
      std::vector<float> row(std::size_t(lay.columns), 0.f);
      for (std::int32_t c : ids) row[std::size_t(c)] = 1.f;
      x = Tensor::from_vector(row, {1, lay.columns}, dev);
    } else if (lay.pad > 0) {
      std::vector<std::int32_t> row(std::size_t(lay.pad));
      pad_sequence_into(ids, lay.pad, Padding::Pre, Truncation::Pre, 0, row.data());
      x = Tensor::from_vector(row, {1, lay.pad}, dev);
    } else {
      if (lay.max_length > 0 && std::int64_t(ids.size()) > lay.max_length)
        ids.erase(ids.begin(), ids.end() - lay.max_length);  // the last tokens, as in training
      const std::int64_t T = std::max<std::int64_t>({std::int64_t(ids.size()), lay.min_length, 1});
      ids.resize(std::size_t(T), 0);
      x = Tensor::from_vector(ids, {1, T}, dev);
    }
    const float logit = l.cfg.model->predict(x).to_vector<float>().at(0);
    p.push_back(1.0 / (1.0 + std::exp(-double(logit))));
  }
  return p;
}

int predict(const ImdbOptions& o) {
  const Device dev = checked_device();
  Loaded l = load_model_dir(o.model_dir, dev);
  std::vector<std::string> texts, names;
  std::vector<std::string> inputs = o.inputs;
  if (inputs.empty()) inputs.push_back("-");
  for (const std::string& in : inputs) {
    if (in == "-") {  // stdin: one review a line
      std::string line;
      for (std::int64_t n = 1; std::getline(std::cin, line); ++n) {
        texts.push_back(line);
        names.push_back("stdin:" + std::to_string(n));
      }
    } else {  // a file: one review
      texts.push_back(read_file(in));
      names.push_back(in);
    }
  }
  const std::vector<double> p = positive_probability(l, texts, dev);
  for (std::size_t i = 0; i < p.size(); ++i)
    std::cout << fixed(p[i], 4) << "\t" << (p[i] >= 0.5 ? "positive" : "negative") << "\t" << names[i] << "\n";
  return 0;
}

int list_models() {
  for (const ZooModel& z : kZoo) {
    ModelConfig c = model_config_from_json(zoo_config(z, z.max_tokens), z.name);
    c.model->build(z.multi_hot ? c.input_shape : Shape{500}, Device::cpu());
    std::cout << z.name << ": " << z.what << "; " << z.epochs << " epochs by default\n" << c.model->summary() << "\n";
  }
  return 0;
}

}  // namespace

CLI::App* add_imdb_command(CLI::App& app, ImdbOptions& o) {
  CLI::App* f = app.add_subcommand("imdb", "IMDB review sentiment: train, evaluate, predict");
  f->require_subcommand(1);
  CLI::App* t = f->add_subcommand("train", "train a model on IMDB reviews and test it");
  t->add_option("--model", o.model, "zoo model: " + zoo_names())->capture_default_str();
  t->add_option("--config", o.config, "a model config file (JSON) instead of --model");
  t->add_option("--data", o.data,
                "an aclImdb folder, a folder of imdb_{train,val,test}.tsv[.gz], or one TSV file")
      ->required();
  t->add_option("--out", o.out, "output directory")->capture_default_str();
  t->add_option("--epochs", o.epochs, "epochs, at least 1 (default: the model's)")->check(int_range(1, 1000000));
  t->add_option("--batch-size", o.batch_size, "reviews per batch")->check(int_range(1, 1000000))
      ->capture_default_str();
  t->add_option("--max-tokens", o.max_tokens, "vocabulary size, padding and [UNK] included "
                                              "(default: the model's, 10000; 20000 for bag-of-bigrams)")
      ->check(int_range(2, 100000000));
  t->add_option("--pad", o.pad, "pad or truncate every review to N tokens, as the book (0: variable length, "
                                "bucketed by length, masked)")
      ->check(int_range(0, 1000000))->capture_default_str();
  t->add_option("--max-length", o.max_length,
                "variable length: keep at most the last N tokens (0: all; default 500, the tokens --pad 500 keeps)")
      ->check(int_range(0, 1000000));
  t->add_option("--token-budget", o.token_budget,
                "variable length: at most N padded tokens a batch, so batches of short reviews hold more of them "
                "(up to --batch-size; 0: no budget)")
      ->check(int_range(0, 1000000000))->capture_default_str();
  t->add_option("--validation-split", o.validation_split,
                "the part of train kept for validation when --data has no validation split")
      ->check(CLI::Range(0.01, 0.99))->capture_default_str();
  t->add_option("--steps-per-epoch", o.steps_per_epoch, "training batches per epoch (0: all)")
      ->check(int_range(0, 1000000000))->capture_default_str();
  t->add_option("--validation-steps", o.validation_steps, "validation batches per epoch (0: all)")
      ->check(int_range(0, 1000000000))->capture_default_str();
  t->add_option("--seed", o.seed, "seed for the weights and shuffling")->capture_default_str();
  t->add_option("--resume", o.resume, "continue the run in --out from its checkpoint (OUT/interrupted.safetensors)");
  t->add_flag("--overwrite", o.overwrite, "replace the run in --out");
  t->add_flag("--no-test", o.no_test, "do not evaluate the test split at the end");
  t->add_flag("--quiet", o.quiet, "print only errors and the results line");
  t->add_option("--stop-after-steps", o.stop_after_steps, "stop as Ctrl-C does after N steps (for tests)")
      ->check(int_range(0, 1000000000))->group("");
  CLI::App* e = f->add_subcommand("evaluate", "test accuracy of a trained model");
  e->add_option("--model-dir", o.model_dir, "the --out directory of a training run")->required();
  e->add_option("--data", o.data, "IMDB data whose test split to use (default: the data trained on)");
  CLI::App* p = f->add_subcommand("predict", "the probability that each review is positive");
  p->add_option("--model-dir", o.model_dir, "the --out directory of a training run")->required();
  p->add_option("inputs", o.inputs, "review files, one review each (none or -: stdin, one review a line)");
  f->add_subcommand("models", "list the model zoo with each model's summary");
  return f;
}

int run_imdb(CLI::App& f, const ImdbOptions& o) {
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
