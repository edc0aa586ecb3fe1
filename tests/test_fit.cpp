// fit / evaluate, the batch sources, callbacks, Ctrl-C, and model configs.
#include <csignal>
#include <fstream>
#include <set>
#include <sstream>

#include "recur/engine/checkpoint.h"
#include "recur/engine/fit.h"
#include "recur/engine/functional.h"
#include "recur/engine/layers.h"
#include "recur/engine/model_config.h"
#include "recur/host/allocator.h"
#include "test_util.h"

namespace recur::test {
namespace {

// y = mean of feature 0 over time: learnable by a small GRU.
struct Toy {
  Tensor x, y;
};
Toy toy(std::int64_t n, std::uint64_t seed) {
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> x(static_cast<std::size_t>(n * 5 * 2)), y(static_cast<std::size_t>(n));
  for (std::int64_t b = 0; b < n; ++b) {
    float s = 0;
    for (int t = 0; t < 5; ++t) {
      for (int f = 0; f < 2; ++f) x[std::size_t((b * 5 + t) * 2 + f)] = u(g);
      s += x[std::size_t((b * 5 + t) * 2)];
    }
    y[std::size_t(b)] = s / 5;
  }
  return {Tensor::from_vector(x, {n, 5, 2}, Device::cpu()), Tensor::from_vector(y, {n, 1}, Device::cpu())};
}

std::unique_ptr<Sequential> toy_model(std::uint64_t seed, double dropout = 0) {
  auto m = std::make_unique<Sequential>();
  RecurrentOptions o;
  o.cell = CellType::GRU;
  o.units = 8;
  o.recurrent_dropout = dropout;
  m->add(std::make_shared<RNN>(o)).add(std::make_shared<Dropout>(dropout)).add(std::make_shared<Dense>(1));
  m->build({kAnyDim, 2}, Device::cpu(), DType::f32, seed);
  m->compile({OptimizerConfig::rmsprop(0.01), LossKind::MeanSquaredError, {LossKind::MeanAbsoluteError}});
  return m;
}

TEST(Fit, ArrayBatchesCoverEverySampleOncePerEpoch) {
  std::vector<float> xs(10);
  for (int i = 0; i < 10; ++i) xs[std::size_t(i)] = float(i);
  const Tensor x = Tensor::from_vector(xs, {10, 1}, Device::cpu());
  ArrayBatches plain(x, x, 4), shuffled(x, x, 4, true, 9);
  EXPECT_EQ(plain.size(), 3);
  auto order = [](const BatchSource& s, std::int64_t epoch) {
    std::vector<float> v;
    for (std::int64_t i = 0; i < s.size(); ++i)
      for (float f : s.get(epoch, i).x.to_vector<float>()) v.push_back(f);
    return v;
  };
  EXPECT_EQ(order(plain, 0), xs);
  EXPECT_EQ(plain.get(0, 2).x.shape(), (Shape{2, 1}));
  const auto e0 = order(shuffled, 0), e1 = order(shuffled, 1);
  EXPECT_EQ(std::multiset<float>(e0.begin(), e0.end()), std::multiset<float>(xs.begin(), xs.end()));
  EXPECT_NE(e0, xs);
  EXPECT_NE(e0, e1);
  EXPECT_EQ(order(shuffled, 1), e1);  // a pure function of (epoch, index)
  // x and y stay paired.
  const Batch b = shuffled.get(3, 1);
  EXPECT_EQ(b.x.to_vector<float>(), b.y.to_vector<float>());
  expect_error([&] { ArrayBatches(x, Tensor::zeros({9, 1}, DType::f32, Device::cpu()), 4); },
               "x has 10 samples, y 9");
}

TEST(Fit, TrainsReportsAndValidates) {
  auto m = toy_model(1);
  const Toy tr = toy(256, 2), va = toy(64, 3);
  ArrayBatches train(tr.x, tr.y, 32, true, 4, Device::cpu()), val(va.x, va.y, 32);
  std::ostringstream out;
  FitOptions o;
  o.epochs = 6;
  o.out = &out;
  const History h = fit(*m, train, o, &val);
  ASSERT_EQ(h.epochs.size(), 6u);
  for (const char* k : {"loss", "mae", "val_loss", "val_mae", "lr", "seconds", "samples_per_second"})
    EXPECT_TRUE(h.epochs[0].count(k)) << k;
  EXPECT_LT(h.epochs.back().at("val_loss"), 0.3 * h.epochs.front().at("val_loss"));
  // evaluate agrees with the last epoch's validation figures.
  const Logs e = evaluate(*m, val);
  EXPECT_DOUBLE_EQ(e.at("loss"), h.epochs.back().at("val_loss"));
  // One plain line per epoch (not a terminal).
  const std::string text = out.str();
  EXPECT_NE(text.find("Epoch 1/6"), std::string::npos) << text;
  EXPECT_NE(text.find("val_mae: "), std::string::npos) << text;
  EXPECT_EQ(text.find('\r'), std::string::npos);
  // History as CSV and JSON.
  const std::string csv = h.to_csv();
  EXPECT_EQ(csv.substr(0, csv.find('\n')), "epoch,loss,lr,mae,samples_per_second,seconds,val_loss,val_mae");
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 7);
  EXPECT_NE(h.to_json().find("\"val_loss\": ["), std::string::npos);
}

TEST(Fit, EarlyStoppingCountsPatienceAsKeras) {
  Sequential m;
  m.add(std::make_shared<Dense>(1));
  m.build({2}, Device::cpu());
  EarlyStopping es("val_loss", 2);
  es.on_train_begin(m);
  const double values[] = {1.0, 0.5, 0.6, 0.7, 0.4};
  int stopped = -1;
  for (int e = 0; e < 5 && stopped < 0; ++e) {
    es.on_epoch_end(e, {{"val_loss", values[e]}}, m);
    if (es.stop_training) stopped = e;
  }
  EXPECT_EQ(stopped, 3);  // two epochs without improvement after epoch 1
  EXPECT_EQ(es.best_epoch(), 1);
  expect_error([&] { es.on_epoch_end(5, {{"loss", 1.0}}, m); }, "'val_loss' is not in the logs (loss)");
}

TEST(Fit, EarlyStoppingRestoresBestWeights) {
  auto m = toy_model(5);
  const Toy tr = toy(64, 6);
  ArrayBatches train(tr.x, tr.y, 16);
  auto es = std::make_shared<EarlyStopping>("loss", 100, 0, true);
  std::vector<float> best;
  double best_loss = 1e300;
  struct Spy : Callback {
    std::vector<float>* best;
    double* best_loss;
    void on_epoch_end(int, const Logs& l, TrainableModel& m) override {
      if (l.at("loss") < *best_loss) {
        *best_loss = l.at("loss");
        *best = m.parameters().values().to_vector<float>();
      }
    }
  };
  auto spy = std::make_shared<Spy>();
  spy->best = &best;
  spy->best_loss = &best_loss;
  FitOptions o;
  o.epochs = 4;
  o.verbose = 0;
  fit(*m, train, o, nullptr, {spy, es});
  EXPECT_EQ(m->parameters().values().to_vector<float>(), best);
}

// Ctrl-C: SIGINT during a step ends fit after that step, with the position to
// resume from; SIGTERM (what `kill`, systemd and batch schedulers send) too.
void signal_stops_at_the_end_of_the_step(int sig) {
  auto m = toy_model(7);
  const Toy tr = toy(64, 8);
  struct Interrupting : BatchSource {
    ArrayBatches inner;
    int sig;
    Interrupting(const Toy& t, int s) : inner(t.x, t.y, 16), sig(s) {}
    std::int64_t size() const override { return inner.size(); }
    Batch get(std::int64_t epoch, std::int64_t index) const override {
      if (epoch == 1 && index == 2) std::raise(sig);
      return inner.get(epoch, index);
    }
  } source(tr, sig);
  struct Probe : Callback {
    bool interrupted = false;
    int epoch = -1;
    std::int64_t step = -1;
    void on_train_end(TrainableModel&, bool i) override {
      interrupted = i;
      epoch = current_epoch;
      step = next_step;
    }
  };
  auto probe = std::make_shared<Probe>();
  FitOptions o;
  o.epochs = 3;
  o.verbose = 0;
  const History h = fit(*m, source, o, nullptr, {probe});
  EXPECT_EQ(h.epochs.size(), 1u);
  EXPECT_TRUE(last_fit_interrupted());
  EXPECT_TRUE(probe->interrupted);
  EXPECT_EQ(probe->epoch, 1);
  EXPECT_EQ(probe->step, 3);
  EXPECT_EQ(m->optimizer().iterations(), 4 + 3);
  // The handler is gone: the default one is back.
  auto h2 = std::signal(sig, SIG_DFL);
  EXPECT_EQ(h2, SIG_DFL);
}

TEST(Fit, SigintStopsAtTheEndOfTheStep) { signal_stops_at_the_end_of_the_step(SIGINT); }
TEST(Fit, SigtermStopsAtTheEndOfTheStep) { signal_stops_at_the_end_of_the_step(SIGTERM); }

TEST(Fit, NonFiniteLossStopsWithAClearError) {
  auto m = toy_model(9);
  Toy tr = toy(16, 10);
  tr.y.data<float>()[3] = std::numeric_limits<float>::quiet_NaN();
  ArrayBatches train(tr.x, tr.y, 16);
  FitOptions o;
  o.verbose = 0;
  expect_error([&] { fit(*m, train, o); }, "the loss became nan at epoch 1, step 1");
}

TEST(Fit, HistoryLoggerWritesEveryEpoch) {
  auto m = toy_model(11);
  const Toy tr = toy(32, 12);
  ArrayBatches train(tr.x, tr.y, 16);
  const std::string path = ::testing::TempDir() + "recur_history.csv";
  FitOptions o;
  o.epochs = 2;
  o.verbose = 0;
  fit(*m, train, o, nullptr, {std::make_shared<HistoryLogger>(path)});
  std::ifstream f(path);
  std::string header, row1, row2;
  std::getline(f, header);
  std::getline(f, row1);
  std::getline(f, row2);
  EXPECT_EQ(header.substr(0, 13), "epoch,loss,lr");
  EXPECT_EQ(row2.substr(0, 2), "2,");
}

// ---- model configs --------------------------------------------------------------------
const char* kEveryLayer = R"({
  "format": "recur.model/1",
  "name": "zoo",
  "input_shape": [null],
  "layers": [
    {"type": "Embedding", "input_dim": 50, "output_dim": 8, "mask_zero": true},
    {"type": "Conv1D", "filters": 6, "kernel_size": 3, "padding": "causal", "activation": "relu"},
    {"type": "MaxPooling1D", "pool_size": 2},
    {"type": "Bidirectional", "layer": {"type": "GRU", "units": 4, "return_sequences": true},
     "merge_mode": "sum"},
    {"type": "LSTM", "units": 5, "return_sequences": true, "recurrent_dropout": 0.25},
    {"type": "SimpleRNN", "units": 3, "return_sequences": true, "activation": "relu"},
    {"type": "Dense", "units": 7, "activation": "tanh"},
    {"type": "Dropout", "rate": 0.1},
    {"type": "GlobalAveragePooling1D"},
    {"type": "Activation", "activation": "softmax"}
  ],
  "compile": {"optimizer": {"name": "adam", "learning_rate": 0.002, "global_clipnorm": 1.0},
              "loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"]}
})";

TEST(ModelConfig, RoundTripsEveryLayer) {
  ModelConfig a = model_config_from_json(kEveryLayer, "zoo.json");
  ASSERT_TRUE(a.compile.has_value());
  a.model->build(a.input_shape, Device::cpu(), a.dtype, 3);
  a.model->compile(*a.compile);
  const std::string text = model_config_to_json(*a.model);
  ModelConfig b = model_config_from_json(text, "written");
  b.model->build(b.input_shape, Device::cpu(), b.dtype, 3);
  b.model->compile(*b.compile);
  EXPECT_EQ(model_config_to_json(*b.model), text);
  EXPECT_EQ(a.model->summary(), b.model->summary());
  EXPECT_EQ(a.model->parameters().values().to_vector<float>(), b.model->parameters().values().to_vector<float>());
  EXPECT_EQ(b.compile->optimizer.kind, OptimizerKind::Adam);
  EXPECT_DOUBLE_EQ(b.compile->optimizer.global_clipnorm, 1.0);
  EXPECT_EQ(b.compile->metrics, std::vector<LossKind>{LossKind::Accuracy});
}

TEST(ModelConfig, RefusesMistakesByName) {
  expect_error([] { model_config_from_json("{\"input_shape\": [3], \"layers\": [", "m.json"); },
               "m.json: not valid JSON");
  // Found by fuzz_model_config: a number too large for a double escaped as nlohmann's out_of_range.
  expect_error([] { model_config_from_json("{\"input_shape\": [4e4444], \"layers\": []}", "m.json"); },
               "m.json: not valid JSON");
  expect_error(
      [] { model_config_from_json(R"({"input_shape": [null, 2], "layers": [{"type": "GRU", "unitz": 3}]})", "m.json"); },
      "m.json: layers[0]: missing key 'units'");
  expect_error(
      [] {
        model_config_from_json(R"({"input_shape": [null, 2], "layers": [{"type": "GRU", "units": 3, "unitz": 3}]})",
                               "m.json");
      },
      "m.json: layers[0]: unknown key 'unitz'");
  expect_error([] { model_config_from_json(R"({"input_shape": [2], "layers": [{"type": "Dense2"}]})", "m.json"); },
               "unknown layer type 'Dense2'");
  expect_error([] { model_config_from_json(R"({"input_shape": [0], "layers": [{"type": "Flatten"}]})", "m.json"); },
               "input_shape entries are positive integers or null");
  expect_error([] { model_config_from_json(R"({"input_shape": [2], "layers": [{"type": "Dense", "units": "8"}]})", "m.json"); },
               "key 'units' has the wrong type");
  // Found by fuzz_model_config: a double where an integer belongs was cast without a check (undefined
  // behaviour out of range, silent truncation in it).
  expect_error([] { model_config_from_json(R"({"input_shape": [2], "layers": [{"type": "Dense", "units": 4.4e120}]})", "m.json"); },
               "m.json: layers[0]: key 'units' must be an integer from");
  expect_error([] { model_config_from_json(R"({"input_shape": [2], "layers": [{"type": "Dense", "units": 2.5}]})", "m.json"); },
               "key 'units' must be an integer from");
  expect_error([] { model_config_from_json(R"({"input_shape": [2], "layers": [{"type": "Dense", "units": 18446744073709551615}]})", "m.json"); },
               "key 'units' must be an integer from");
  EXPECT_NO_THROW(model_config_from_json(R"({"input_shape": [2], "layers": [{"type": "Dense", "units": 3.0}]})", "m.json"));
  expect_error([] { read_model_config("/nonexistent/model.json"); }, "cannot open model config '/nonexistent/model.json'");
}

// A functional model (two inputs, branches, a merge) written out and read
// back: the same graph, names, summary and parameters.
const char* kTwoTowers = R"({
  "format": "recur.model/1", "class": "Functional", "name": "two_towers",
  "inputs": [{"name": "series", "shape": [null, 3]}, {"name": "static", "shape": [4]}],
  "layers": [
    {"type": "Conv1D", "name": "conv", "filters": 5, "kernel_size": 2, "activation": "relu", "inbound": ["series"]},
    {"type": "GRU", "name": "gru", "units": 6, "inbound": ["conv"]},
    {"type": "LSTM", "name": "lstm", "units": 6, "go_backwards": true, "inbound": ["series"]},
    {"type": "Add", "name": "both", "inbound": ["gru", "lstm"]},
    {"type": "Dense", "name": "side", "units": 2, "activation": "tanh", "inbound": ["static"]},
    {"type": "Concatenate", "name": "cat", "inbound": ["both", "side", "both"]},
    {"type": "Dense", "name": "out", "units": 1, "inbound": ["cat"]}
  ],
  "outputs": ["out"],
  "compile": {"optimizer": {"name": "rmsprop", "learning_rate": 0.001}, "loss": "mae"}
})";

TEST(ModelConfig, RoundTripsAFunctionalModel) {
  ModelConfig a = model_config_from_json(kTwoTowers, "towers.json");
  ASSERT_TRUE(a.functional != nullptr);
  ASSERT_TRUE(a.model == nullptr);
  a.functional->build(Device::cpu(), a.dtype, 4);
  a.functional->compile(*a.compile);
  const std::string text = model_config_to_json(*a.functional);
  EXPECT_NE(text.find("\"class\": \"Functional\""), std::string::npos) << text;
  ModelConfig b = model_config_from_json(text, "written");
  ASSERT_TRUE(b.functional != nullptr);
  b.functional->build(Device::cpu(), b.dtype, 4);
  b.functional->compile(*b.compile);
  EXPECT_EQ(model_config_to_json(*b.functional), text);
  EXPECT_EQ(a.functional->summary(), b.functional->summary());
  EXPECT_EQ(a.functional->count_params(), 5 * 3 * 2 + 5 + 3 * 6 * (5 + 6 + 2) + 4 * 6 * (3 + 6 + 1) + 4 * 2 + 2 + 15);
  EXPECT_EQ(a.functional->parameters().values().to_vector<float>(),
            b.functional->parameters().values().to_vector<float>());
  // Both compute the same thing.
  Random rng;
  const Tensor xs = Tensor::from_vector(rng.floats(2 * 7 * 3), {2, 7, 3}, Device::cpu());
  const Tensor xf = Tensor::from_vector(rng.floats(2 * 4), {2, 4}, Device::cpu());
  EXPECT_EQ(a.functional->predict({xs, xf}).to_vector<float>(), b.functional->predict({xs, xf}).to_vector<float>());
}

TEST(ModelConfig, RefusesFunctionalMistakesByName) {
  auto with_layers = [](const std::string& layers, const std::string& outputs = R"(["d"])") {
    return R"({"class": "Functional", "inputs": [{"name": "x", "shape": [3]}], "layers": [)" + layers +
           R"(], "outputs": )" + outputs + "}";
  };
  expect_error([&] { model_config_from_json(with_layers(R"({"type": "Dense", "units": 1, "inbound": ["x"]})"), "f.json"); },
               "f.json: layers[0]: a functional layer needs a 'name'");
  expect_error([&] { model_config_from_json(with_layers(R"({"type": "Dense", "name": "d", "units": 1})"), "f.json"); },
               "layers[0] ('d'): needs 'inbound'");
  expect_error(
      [&] { model_config_from_json(with_layers(R"({"type": "Dense", "name": "d", "units": 1, "inbound": ["y"]})"), "f.json"); },
      "layers[0] ('d'): inbound 'y' is not an input or an earlier layer");
  expect_error(
      [&] {
        model_config_from_json(with_layers(R"({"type": "Dense", "name": "x", "units": 1, "inbound": ["x"]})"), "f.json");
      },
      "layers[0]: the name 'x' is used twice");
  expect_error(
      [&] {
        model_config_from_json(with_layers(R"({"type": "Dense", "name": "d", "units": 1, "inbound": ["x"]})", R"(["e"])"),
                               "f.json");
      },
      "f.json: output 'e' is not an input or a layer");
  expect_error(
      [&] {
        model_config_from_json(with_layers(R"({"type": "Add", "name": "d", "axis": 1, "inbound": ["x", "x"]})"), "f.json");
      },
      "layers[0]: unknown key 'axis'");
  expect_error([] { model_config_from_json(R"({"class": "Graph", "layers": []})", "f.json"); },
               "f.json: class 'Graph' is neither Sequential nor Functional");
  expect_error(
      [] { model_config_from_json(R"({"class": "Functional", "inputs": [{"name": "x", "shape": [0]}]})", "f.json"); },
      "f.json: inputs[0].shape entries are positive integers or null");
}

}  // namespace
}  // namespace recur::test

namespace recur::test {
namespace {

// Memory: what a training forward keeps for backward is released by backward,
// so a step leaves nothing behind, and the working peak is reported.
TEST(Fit, SavedActivationsLiveFromForwardToBackward) {
  auto m = toy_model(13);
  const Toy tr = toy(64, 14);
  CachingAllocator& a = backend(Device::cpu()).allocator();
  m->train_on_batch(tr.x, tr.y);
  const std::size_t after_step = a.stats().in_use;
  m->train_on_batch(tr.x, tr.y);
  EXPECT_EQ(a.stats().in_use, after_step);  // steady: nothing accumulates
  EXPECT_GT(m->last_step_working_bytes(), 0u);
  EXPECT_GE(m->last_step_peak_bytes(), m->last_step_working_bytes());
  const Tensor y = m->forward(tr.x, {}, true).y;
  EXPECT_GT(a.stats().in_use, after_step + std::size_t(y.nbytes()));  // states and gates held
}

}  // namespace
}  // namespace recur::test

namespace recur::test {
namespace {

// fit, evaluate and checkpoints on a functional model with two inputs.
TEST(Fit, TrainsAndCheckpointsAFunctionalModel) {
  auto make = [](std::uint64_t seed) {
    NodeRef seq = Input({kAnyDim, 2}, "seq");
    NodeRef stat = Input({3}, "static");
    NodeRef h = call(GRU(8), seq);
    NodeRef d = call(std::make_shared<Dense>(4, Activation::Tanh), stat);
    auto m = std::make_unique<Model>(std::vector<NodeRef>{seq, stat},
                                     std::vector<NodeRef>{call(std::make_shared<Dense>(1), concatenate({h, d}))});
    m->build(Device::cpu(), DType::f32, seed);
    m->compile({OptimizerConfig::adam(0.02), LossKind::MeanSquaredError, {}});
    return m;
  };
  const Toy t = toy(128, 21);
  Random r(22);
  const Tensor stat = Tensor::from_vector(r.floats(128 * 3), {128, 3}, Device::cpu());
  std::vector<float> y = t.y.to_vector<float>();
  const auto s = stat.to_vector<float>();
  for (std::size_t i = 0; i < y.size(); ++i) y[i] += 0.5f * s[i * 3];
  const Tensor target = Tensor::from_vector(y, {128, 1}, Device::cpu());
  struct Two : BatchSource {
    Tensor a, b, y;
    std::int64_t size() const override { return 4; }
    Batch get(std::int64_t, std::int64_t i) const override {
      Batch out;
      out.inputs = {a.slice(i * 32, i * 32 + 32), b.slice(i * 32, i * 32 + 32)};
      out.y = y.slice(i * 32, i * 32 + 32);
      return out;
    }
  } data;
  data.a = t.x;
  data.b = stat;
  data.y = target;
  auto m = make(1);
  FitOptions o;
  o.epochs = 25;
  o.verbose = 0;
  const History h = fit(*m, data, o, &data);
  EXPECT_LT(h.epochs.back().at("val_loss"), 0.2 * h.epochs.front().at("val_loss"));
  EXPECT_DOUBLE_EQ(evaluate(*m, data).at("loss"), h.epochs.back().at("val_loss"));
  const std::string path = ::testing::TempDir() + "recur_functional.safetensors";
  save_checkpoint(*m, path);
  auto m2 = make(2);
  load_checkpoint(*m2, path);
  const std::vector<Tensor> in{t.x, stat};
  EXPECT_EQ(m->predict(in).to_vector<float>(), m2->predict(in).to_vector<float>());
  EXPECT_EQ(m2->optimizer().iterations(), 25 * 4);
}

}  // namespace
}  // namespace recur::test
