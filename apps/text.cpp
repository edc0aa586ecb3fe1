// `recur text`: see text.h and docs/text-generation.md.
#include "text.h"

#include <CLI/CLI.hpp>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <functional>
#include <iomanip>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "forecast.h"  // int_range
#include "recur/recur.h"

namespace recur::app {

namespace fs = std::filesystem;
using json = nlohmann::json;
namespace ct = recur::chartext;

namespace {

// What a training run writes into --out. A directory holding any of them holds a run.
const char* const kRunFiles[] = {"text.json", "model.json", "best.safetensors", "history.csv"};

std::string fixed(double v, int digits = 3) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(digits) << v;
  return s.str();
}

// The model: Embedding -> `layers` stateful LSTM/GRU returning sequences -> Dense(vocab) logits;
// Adam with global gradient-norm clipping, sparse categorical cross-entropy from the logits.
std::string model_json(const TextOptions& o, std::int64_t vocab) {
  json layers = json::array();
  layers.push_back({{"type", "Embedding"}, {"input_dim", vocab}, {"output_dim", o.embedding}});
  for (int i = 0; i < o.layers; ++i)
    layers.push_back({{"type", o.cell == "gru" ? "GRU" : "LSTM"},
                      {"units", o.units},
                      {"return_sequences", true},
                      {"stateful", true}});
  layers.push_back({{"type", "Dense"}, {"units", vocab}});
  json opt = {{"name", "adam"}, {"learning_rate", o.lr}};
  if (o.clipnorm > 0) opt["global_clipnorm"] = o.clipnorm;
  json j = {{"format", "recur.model/1"},
            {"name", "char_" + o.cell},
            {"input_shape", json::array({nullptr})},
            {"layers", layers},
            {"compile", {{"optimizer", opt}, {"loss", "sparse_categorical_crossentropy"}}}};
  return j.dump();
}

// TBPTT batches as fit's BatchSource: batch k of every epoch is the batcher's batch k, so
// row b of batch k + 1 continues row b of batch k (ResetStatesCallback zeroes the states
// at each epoch's start and before validation).
class TbpttBatches final : public BatchSource {
 public:
  TbpttBatches(const ct::TbpttBatcher& b, Device d) : b_(b), d_(d) {}
  std::int64_t size() const override { return b_.size(); }
  Batch get(std::int64_t /*epoch*/, std::int64_t index) const override {
    std::vector<std::int32_t> x, y;
    b_.batch(index, x, y);
    Batch out;
    out.x = Tensor::from_vector(x, {b_.streams(), b_.seq_len()}, d_);
    out.y = Tensor::from_vector(y, {b_.streams(), b_.seq_len()}, d_);
    return out;
  }

 private:
  const ct::TbpttBatcher& b_;
  Device d_;
};

// Each epoch's cross-entropy in nats (and bits) per character, beside the unigram baseline.
class NatsReport final : public Callback {
 public:
  NatsReport(std::ostream& out, double unigram) : out_(out), unigram_(unigram) {}
  void on_epoch_end(int, const Logs& logs, TrainableModel&) override {
    out_ << "    cross-entropy: train " << fixed(logs.at("loss")) << " nats/char";
    if (logs.count("val_loss")) {
      const double v = logs.at("val_loss");
      out_ << ", validation " << fixed(v) << " nats/char (" << fixed(v / std::log(2.0)) << " bits; unigram "
           << fixed(unigram_) << ")";
    }
    out_ << "\n" << std::flush;
  }

 private:
  std::ostream& out_;
  double unigram_;
};

// Writes text.json and model.json the first time an epoch ends (removing another run's files
// with --overwrite): until then nothing in --out is touched.
class ClaimRunDir final : public Callback {
 public:
  explicit ClaimRunDir(std::function<void()> claim) : claim_(std::move(claim)) {}
  void on_epoch_end(int, const Logs&, TrainableModel&) override {
    if (!done_) claim_();
    done_ = true;
  }

 private:
  std::function<void()> claim_;
  bool done_ = false;
};

int train(const TextOptions& options) {
  // mpirun -np N (docs/distributed.md): --batch is each rank's streams; the job trains
  // N times as many (what text.json records), each rank carrying the states of its own.
  TextOptions o = options;
  o.batch *= launch_info().size;
  static std::ostringstream sink;
  std::ostream& out = o.quiet ? static_cast<std::ostream&>(sink) : std::cout;
  const auto t_start = std::chrono::steady_clock::now();
  const Device dev = checked_device();
  const fs::path dir(o.out);
  RECUR_CHECK(o.cell == "lstm" || o.cell == "gru", Value, "--cell must be lstm or gru, got '", o.cell, "'");
  RECUR_CHECK(std::isfinite(o.lr) && o.lr > 0, Value, "--lr must be a positive number, got ", o.lr);
  RECUR_CHECK(std::isfinite(o.clipnorm) && o.clipnorm >= 0, Value, "--clipnorm must be >= 0 (0: no clipping), got ",
              o.clipnorm);
  RECUR_CHECK(o.validation_fraction > 0 && o.validation_fraction < 1, Value,
              "--validation-fraction must be between 0 and 1 (exclusive), got ", o.validation_fraction);
  check_out_writable(dir);
  std::vector<std::string> existing;
  for (const char* f : kRunFiles)
    if (fs::exists(dir / f)) existing.push_back(f);
  if (!existing.empty() && !o.overwrite) {
    std::string files;
    for (const std::string& f : existing) files += (files.empty() ? "" : ", ") + f;
    RECUR_THROW(Value, "--out '", o.out, "' holds another run (", files, "); pass --overwrite to replace it, or another --out");
  }

  // The data: the text, its vocabulary (from the whole text, so validation has no unknown
  // characters), the split and the batchers.
  const std::string path = o.data.empty() ? bundled_file("tinyshakespeare.txt.gz") : o.data;
  std::string text = ct::read_text(path);
  if (o.max_chars > 0 && std::int64_t(text.size()) > o.max_chars) text.resize(std::size_t(o.max_chars));
  const ct::CharVocab vocab = ct::CharVocab::from_text(text);
  const ct::TextSplit split = ct::split_text(text, o.validation_fraction);
  const ct::TbpttBatcher train_b(vocab.encode(split.train), o.batch, o.seq_len, "the training text");
  const std::vector<std::int32_t> val_ids = vocab.encode(split.validation);
  // Validation: as many streams as the batch, or fewer when the validation text is short.
  const std::int64_t val_streams =
      std::min(o.batch, std::int64_t(val_ids.size()) / ct::TbpttBatcher::min_length(1, o.seq_len));
  RECUR_CHECK(val_streams >= 1, Value, "the validation text (", val_ids.size(), " characters, the last ",
              o.validation_fraction, " of ", path, ") is shorter than one --seq-len ", o.seq_len,
              " chunk plus one; give a shorter --seq-len or more text");
  const ct::TbpttBatcher val_b(val_ids, val_streams, o.seq_len, "the validation text");
  const double unigram = ct::unigram_entropy(val_ids, vocab.size());

  ModelConfig cfg = model_config_from_json(model_json(o, vocab.size()), "the text model");
  Sequential& model = *cfg.model;
  model.build({kAnyDim}, dev, DType::f32, o.seed);
  model.compile(*cfg.compile);
  const std::string model_text = model_config_to_json(model);

  json tj;
  tj["format"] = "recur.text/1";
  tj["data"] = fs::absolute(path).string();
  tj["characters"] = text.size();
  tj["validation_fraction"] = o.validation_fraction;
  tj["vocabulary"] = json::parse(vocab.to_json());
  tj["cell"] = o.cell;
  tj["layers"] = o.layers;
  tj["units"] = o.units;
  tj["embedding"] = o.embedding;
  tj["seq_len"] = o.seq_len;
  tj["batch"] = o.batch;
  tj["epochs"] = o.epochs;
  tj["learning_rate"] = o.lr;
  tj["seed"] = o.seed;
  tj["unigram_entropy"] = unigram;

  out << "data: " << path << ": " << text.size() << " characters, " << vocab.size()
      << " distinct; training " << split.train.size() << ", validation " << split.validation.size()
      << " (the last " << fixed(100 * o.validation_fraction, 1) << "%)\n";
  out << "batches: " << o.batch << " streams of " << train_b.stream_length() << " characters, " << train_b.size()
      << " chunks of " << o.seq_len << " per epoch (validation: " << val_streams << " streams, " << val_b.size()
      << " chunks); states carried from chunk to chunk, reset at each epoch\n";
  out << "unigram entropy of the validation characters: " << fixed(unigram) << " nats/char\n";
  if (!o.quiet) out << model.summary();
  out << "training on " << dev.str() << ": " << o.epochs << " epochs (Ctrl-C or SIGTERM stops at the end of a step; "
      << "the best epoch so far stays in " << (dir / "best.safetensors").string() << ")" << std::endl;

  const TbpttBatches train_src(train_b, dev), val_src(val_b, dev);
  const fs::path best = dir / "best.safetensors";
  const bool replace = o.overwrite && !existing.empty();
  auto claim = std::make_shared<ClaimRunDir>([&] {
    fs::create_directories(dir);
    std::error_code ec;
    if (replace)
      for (const std::string& f : existing) fs::remove(dir / f, ec);
    write_file_atomically((dir / "text.json").string(), tj.dump(2) + "\n");
    write_file_atomically((dir / "model.json").string(), model_text);
  });
  auto ckpt = std::make_shared<ModelCheckpoint>(best.string(), "val_loss", true);
  auto history = std::make_shared<HistoryLogger>((dir / "history.csv").string());
  FitOptions fo;
  fo.epochs = o.epochs;
  fo.verbose = o.quiet ? 0 : 1;
  fit(model, train_src, fo, &val_src,
      {std::make_shared<ResetStatesCallback>(), claim, ckpt, history, std::make_shared<NatsReport>(out, unigram)});
  // mpirun -np N: rank 0 alone reports and keeps the model.
  if (launch_info().rank != 0) return last_fit_interrupted() ? 130 : 0;
  const bool interrupted = last_fit_interrupted();
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  if (ckpt->best_epoch() < 0) {
    std::cout << "no epoch finished, so there is no model to keep\n";
    return interrupted ? 130 : 1;
  }
  // The results line: printed with --quiet too.
  std::cout << "best epoch " << ckpt->best_epoch() + 1 << " of " << history->history().epochs.size()
            << (interrupted ? " (interrupted)" : "") << ": validation cross-entropy " << fixed(ckpt->best())
            << " nats/char (" << fixed(ckpt->best() / std::log(2.0)) << " bits; unigram " << fixed(unigram)
            << "); " << fixed(wall, 1) << " s; model in " << dir.string() << "\n";
  return interrupted ? 130 : 0;
}

int generate(const TextOptions& o) {
  const Device dev = checked_device();
  RECUR_CHECK(!o.model_dir.empty(), Value, "--model-dir is required");
  const fs::path dir(o.model_dir);
  RECUR_CHECK(fs::is_directory(dir), IO, "model directory '", o.model_dir, "' does not exist");
  RECUR_CHECK(std::isfinite(o.temperature) && o.temperature >= 0, Value,
              "--temperature must be a number >= 0 (0: always the most likely character), got ", o.temperature);
  RECUR_CHECK(!o.seed_text.empty(), Value, "--seed must hold at least one character");
  ct::CharVocab vocab;
  try {
    const json tj = json::parse(read_file(dir / "text.json"));
    RECUR_CHECK(tj.value("format", "") == "recur.text/1", IO, (dir / "text.json").string(),
                ": not a recur text model file");
    vocab = ct::CharVocab::from_json(tj.at("vocabulary").dump());
  } catch (const json::exception& e) {
    RECUR_THROW(IO, (dir / "text.json").string(), ": malformed: ", e.what());
  }
  ModelConfig cfg = read_model_config((dir / "model.json").string());
  RECUR_CHECK(cfg.model != nullptr, Value, (dir / "model.json").string(), ": not a Sequential model's config");
  Sequential& model = *cfg.model;
  model.build({kAnyDim}, dev, cfg.dtype, 0);
  RECUR_CHECK(fs::exists(dir / "best.safetensors"), IO, "the run in '", o.model_dir,
              "' has no best.safetensors: no epoch of it has finished");
  load_checkpoint(model, (dir / "best.safetensors").string(), false);
  RECUR_CHECK(model.output_shape().back() == vocab.size(), Value, o.model_dir, ": the model has ",
              model.output_shape().back(), " outputs, its vocabulary ", vocab.size(), " characters");
  std::vector<std::int32_t> seed_ids = vocab.encode(o.seed_text, "--seed");
  if (o.prime_given || vocab.contains('\n')) {
    std::vector<std::int32_t> ids = vocab.encode(o.prime, "--prime");
    ids.insert(ids.end(), seed_ids.begin(), seed_ids.end());
    seed_ids = std::move(ids);
  }

  // Batch 1, stateful: the seed runs through once, then one character at a time.
  ct::SampleRng rng(o.seed_rng);
  const std::int64_t V = vocab.size();
  model.reset_states();
  std::cout << o.seed_text << std::flush;
  Tensor x = Tensor::from_vector(seed_ids, {1, std::int64_t(seed_ids.size())}, dev);
  for (std::int64_t i = 0; i < o.length; ++i) {
    const std::vector<float> logits = model.predict(x).to_vector<float>();  // [1, T, V]
    const std::int32_t next = ct::sample_logits(logits.data() + logits.size() - std::size_t(V), V, o.temperature,
                                                o.top_k, rng);
    std::cout << vocab.character(next) << std::flush;
    x = Tensor::from_vector(std::vector<std::int32_t>{next}, {1, 1}, dev);
  }
  std::cout << "\n";
  return 0;
}

}  // namespace

CLI::App* add_text_command(CLI::App& app, TextOptions& o) {
  CLI::App* t = app.add_subcommand("text", "a character-level language model: train, generate");
  t->require_subcommand(1);
  CLI::App* tr = t->add_subcommand("train", "train a stacked LSTM/GRU on a text, character by character");
  tr->add_option("--data", o.data, "a text file, plain or gzip (default: the bundled tinyshakespeare)");
  tr->add_option("--out", o.out, "output directory")->capture_default_str();
  tr->add_flag("--overwrite", o.overwrite, "replace the run in --out");
  tr->add_option("--cell", o.cell, "lstm or gru")->check(CLI::IsMember({"lstm", "gru"}))->capture_default_str();
  tr->add_option("--layers", o.layers, "stacked recurrent layers")->check(int_range(1, 64))->capture_default_str();
  tr->add_option("--units", o.units, "units per recurrent layer")->check(int_range(1, 65536))->capture_default_str();
  tr->add_option("--embedding", o.embedding, "embedding size")->check(int_range(1, 65536))->capture_default_str();
  tr->add_option("--seq-len", o.seq_len, "characters per chunk (backpropagation is truncated there)")
      ->check(int_range(1, 100000))->capture_default_str();
  tr->add_option("--batch", o.batch, "parallel streams (batch size)")->check(int_range(1, 100000))
      ->capture_default_str();
  tr->add_option("--epochs", o.epochs, "passes over the training text")->check(int_range(1, 1000000))
      ->capture_default_str();
  tr->add_option("--lr", o.lr, "Adam's learning rate")->capture_default_str();
  tr->add_option("--clipnorm", o.clipnorm, "global gradient-norm clipping (0: none)")->capture_default_str();
  tr->add_option("--validation-fraction", o.validation_fraction, "the last part of the text kept for validation")
      ->capture_default_str();
  tr->add_option("--max-chars", o.max_chars, "use only the first N characters of the text (0: all)")
      ->check(int_range(0, std::int64_t(1) << 40))->capture_default_str();
  tr->add_option("--seed", o.seed, "seed for the weights")->capture_default_str();
  tr->add_flag("--quiet", o.quiet, "print only errors and the results line");
  CLI::App* g = t->add_subcommand("generate", "sample text from a trained model, one character at a time");
  g->add_option("--model-dir", o.model_dir, "the --out directory of a training run")->required();
  g->add_option("--seed", o.seed_text, "the text to start from (default: a newline)");
  g->add_option("--prime", o.prime, "text run through the model before --seed, not printed "
                                     "(default: two newlines; \"\" for none)");
  g->add_option("--length", o.length, "characters to generate")->check(int_range(0, 100000000))
      ->capture_default_str();
  g->add_option("--temperature", o.temperature, "softmax temperature (0: always the most likely character)")
      ->capture_default_str();
  g->add_option("--top-k", o.top_k, "sample only among the k most likely characters (0: all)")
      ->check(int_range(0, 1000000))->capture_default_str();
  g->add_option("--seed-rng", o.seed_rng, "seed of the sampling; the same seed gives the same text")
      ->capture_default_str();
  return t;
}

int run_text(CLI::App& t, const TextOptions& o) {
  if (t.got_subcommand("train")) return train(o);
  if (t.got_subcommand("generate")) {
    TextOptions g = o;
    g.prime_given = t.get_subcommand("generate")->count("--prime") > 0;
    return generate(g);
  }
  return 1;
}

}  // namespace recur::app
