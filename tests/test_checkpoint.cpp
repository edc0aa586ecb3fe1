// Model checkpoints: round trips, PyTorch's names, refusals that load nothing,
// and exact resume (N steps, save, load, M steps == N + M steps, bit for bit).
#include <csignal>
#include <cstdio>
#include <fstream>

#include "recur/engine/checkpoint.h"
#include "recur/engine/layers.h"
#include "recur/host/safetensors.h"
#include "test_util.h"

namespace recur::test {
namespace {

std::string temp(const std::string& name) { return ::testing::TempDir() + "recur_ckpt_" + name; }

std::unique_ptr<Sequential> zoo(std::uint64_t seed, std::int64_t dense_units = 3) {
  auto m = std::make_unique<Sequential>();
  RecurrentOptions bi;
  bi.cell = CellType::LSTM;
  bi.units = 3;
  bi.return_sequences = true;
  m->add(std::make_shared<Conv1D>(4, 2, Activation::Tanh))
      .add(std::make_shared<BidirectionalLayer>(bi))
      .add(LSTM(5, true))
      .add(GRU(4))
      .add(std::make_shared<Dense>(dense_units));
  m->build({kAnyDim, 2}, Device::cpu(), DType::f32, seed);
  m->compile({OptimizerConfig::adam(0.01), LossKind::MeanSquaredError, {}});
  return m;
}

Tensor input(std::uint64_t seed) {
  Random r(seed);
  return Tensor::from_vector(r.floats(3 * 6 * 2), {3, 6, 2}, Device::cpu());
}

TEST(Checkpoint, RoundTripsWeightsOptimizerAndPosition) {
  auto a = zoo(1);
  const Tensor x = input(2);
  a->train_on_batch(x, Tensor::full({3, 3}, 0.5, DType::f32, Device::cpu()));
  const std::string path = temp("roundtrip.safetensors");
  save_checkpoint(*a, path, true, {4, 17}, {{"note", "hello"}});
  auto b = zoo(99);
  EXPECT_NE(a->predict(x).to_vector<float>(), b->predict(x).to_vector<float>());
  const CheckpointInfo info = load_checkpoint(*b, path);
  EXPECT_EQ(info.position.epoch, 4);
  EXPECT_EQ(info.position.step, 17);
  EXPECT_TRUE(info.has_optimizer);
  EXPECT_EQ(info.metadata.at("note"), "hello");
  EXPECT_EQ(info.metadata.at("recur.format"), "recur.checkpoint/1");
  EXPECT_EQ(a->parameters().values().to_vector<float>(), b->parameters().values().to_vector<float>());
  EXPECT_EQ(a->predict(x).to_vector<float>(), b->predict(x).to_vector<float>());
  EXPECT_EQ(b->optimizer().iterations(), 1);
  // PyTorch's names: nn.LSTM's two biases (the recurrent one zero), _reverse for
  // the backward direction.
  const SafetensorsFile f = load_safetensors(path);
  for (const char* name : {"conv1d.weight", "bidirectional.weight_ih_l0_reverse", "bidirectional.bias_hh_l0",
                           "bidirectional.bias_hh_l0_reverse", "lstm.bias_hh_l0", "gru.bias_hh_l0",
                           "dense.weight", "optimizer.momentum", "optimizer.velocity", "optimizer.iterations"})
    EXPECT_NE(f.find(name), nullptr) << name;
  for (float v : f.at("lstm.bias_hh_l0").to_vector<float>()) EXPECT_EQ(v, 0.f);
  EXPECT_EQ(read_checkpoint_info(path).position.step, 17);
}

TEST(Checkpoint, FoldsAPyTorchRecurrentBiasIntoKerasOne) {
  auto a = zoo(3);
  const std::string path = temp("fold.safetensors");
  save_checkpoint(*a, path, false);
  // Give the file a nonzero bias_hh, as PyTorch's nn.LSTM has.
  SafetensorsFile f = load_safetensors(path);
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (auto& [n, t] : f.tensors) {
    if (n == "lstm.bias_hh_l0") ops::fill(t, 0.25);
    tensors.emplace_back(n, t);
  }
  save_safetensors(path, tensors, f.metadata);
  auto b = zoo(4);
  load_checkpoint(*b, path, false);
  const auto ia = a->parameters().value("lstm.bias_ih_l0").to_vector<float>();
  const auto ib = b->parameters().value("lstm.bias_ih_l0").to_vector<float>();
  for (std::size_t i = 0; i < ia.size(); ++i) EXPECT_EQ(ib[i], ia[i] + 0.25f);
}

TEST(Checkpoint, RefusesMismatchesAndLoadsNothing) {
  auto a = zoo(5);
  const std::string path = temp("refuse.safetensors");
  save_checkpoint(*a, path, true);
  auto b = zoo(6, 4);  // Dense(4) instead of Dense(3)
  const auto before = b->parameters().values().to_vector<float>();
  expect_error([&] { load_checkpoint(*b, path); }, "'dense.weight' has shape [3, 4], the model's parameter [4, 4]");
  EXPECT_EQ(b->parameters().values().to_vector<float>(), before);
  // Weights only, then asked for the optimizer.
  save_checkpoint(*a, path, false);
  auto c = zoo(7);
  const auto c_before = c->parameters().values().to_vector<float>();
  expect_error([&] { load_checkpoint(*c, path, true); }, "no optimizer state in this file");
  EXPECT_EQ(c->parameters().values().to_vector<float>(), c_before);
  // A different model: an unknown tensor is named.
  Sequential small;
  small.add(std::make_shared<Conv1D>(4, 2, Activation::Tanh));
  small.build({kAnyDim, 2}, Device::cpu());
  expect_error([&] { load_checkpoint(small, path, false); }, "tensor 'bidirectional.weight_ih_l0' matches no parameter");
  // A truncated file: refused, nothing loaded, the previous file survives a failed save.
  save_checkpoint(*a, path, true);
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string cut = temp("truncated.safetensors");
  std::ofstream(cut, std::ios::binary) << bytes.substr(0, bytes.size() - 10);
  expect_error([&] { load_checkpoint(*c, cut, true); }, "truncated.safetensors");
  EXPECT_EQ(c->parameters().values().to_vector<float>(), c_before);
  EXPECT_THROW(save_checkpoint(*a, temp("no/such/dir/x.safetensors"), true), IOError);
}

// Train 3 epochs of 4 steps with dropout and recurrent dropout in one go; and
// again interrupted by Ctrl-C at epoch 2, step 2, saved, loaded into a model
// built from another seed, resumed: the same parameters and losses, bit for bit.
TEST(Checkpoint, ResumeIsExact) {
  auto make = [](std::uint64_t seed) {
    auto m = std::make_unique<Sequential>();
    RecurrentOptions o;
    o.cell = CellType::GRU;
    o.units = 6;
    o.dropout = 0.2;
    o.recurrent_dropout = 0.3;
    m->add(std::make_shared<RNN>(o)).add(std::make_shared<Dropout>(0.25)).add(std::make_shared<Dense>(1));
    m->build({kAnyDim, 2}, Device::cpu(), DType::f32, seed);
    m->compile({OptimizerConfig::rmsprop(0.01), LossKind::MeanAbsoluteError, {}});
    return m;
  };
  Random r(8);
  const Tensor x = Tensor::from_vector(r.floats(32 * 5 * 2), {32, 5, 2}, Device::cpu());
  const Tensor y = Tensor::from_vector(r.floats(32), {32, 1}, Device::cpu());
  ArrayBatches data(x, y, 8, true, 9);
  FitOptions o;
  o.epochs = 3;
  o.verbose = 0;
  auto whole = make(10);
  const History h = fit(*whole, data, o);

  struct Interrupting : BatchSource {
    const BatchSource& inner;
    explicit Interrupting(const BatchSource& b) : inner(b) {}
    std::int64_t size() const override { return inner.size(); }
    Batch get(std::int64_t e, std::int64_t i) const override {
      if (e == 1 && i == 1) std::raise(SIGINT);
      return inner.get(e, i);
    }
  } interrupting(data);
  const std::string path = temp("resume.safetensors");
  auto first = make(10);
  fit(*first, interrupting, o, nullptr, {std::make_shared<ModelCheckpoint>(temp("unused.safetensors"), "loss", true, path)});
  ASSERT_TRUE(last_fit_interrupted());
  auto second = make(11);
  const CheckpointInfo info = load_checkpoint(*second, path);
  EXPECT_EQ(info.position.epoch, 1);
  EXPECT_EQ(info.position.step, 2);
  FitOptions rest = o;
  rest.initial_epoch = info.position.epoch;
  rest.initial_step = info.position.step;
  const History h2 = fit(*second, data, rest);
  ASSERT_EQ(h2.epochs.size(), 2u);
  EXPECT_EQ(h2.epochs[1].at("loss"), h.epochs[2].at("loss"));
  EXPECT_EQ(second->parameters().values().to_vector<float>(), whole->parameters().values().to_vector<float>());
  EXPECT_EQ(second->optimizer().iterations(), whole->optimizer().iterations());
}

// A PyTorch nn.LSTM's state_dict, written by scripts/make_safetensors_golden.py,
// loads into a recur model whose layer is named "0", and gives PyTorch's output.
TEST(Checkpoint, LoadsAPyTorchStateDict) {
  const SafetensorsFile g = load_safetensors(std::string(RECUR_GOLDEN_DIR) + "/torch_lstm.safetensors");
  std::vector<std::pair<std::string, Tensor>> state;
  for (const auto& [n, t] : g.tensors)
    if (n.rfind("0.", 0) == 0) state.emplace_back(n, t);
  const std::string path = temp("pytorch_lstm.safetensors");
  save_safetensors(path, state);
  const Tensor x = g.at("input");
  Sequential m;
  RecurrentOptions o;
  o.cell = CellType::LSTM;
  o.units = g.at("0.weight_hh_l0").dim(1);
  o.return_sequences = true;
  m.add(std::make_shared<RNN>(o, "0"));
  m.build({kAnyDim, x.dim(2)}, Device::cpu());
  load_checkpoint(m, path, false);
  const auto want = g.at("output").to_vector<float>();
  EXPECT_TRUE(close_to(m.predict(x).to_vector<float>(), widen(want), {1.0}, 1e-5));
}

}  // namespace
}  // namespace recur::test
