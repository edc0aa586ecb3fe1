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

// Resume continues everything, not only the weights: a run interrupted before its
// first epoch ends, mid-epoch, at an epoch's last step and between epochs, then
// resumed from its interrupted checkpoint (as often as it takes), ends with the
// uninterrupted run's history (every epoch, numbered on, timings aside), best
// value, best epoch and best checkpoint, early-stopping and plateau counters and
// weights; and the interrupted checkpoint is gone once a later one exists.
TEST(Checkpoint, ResumeContinuesCallbacksHistoryAndBest) {
  auto make = [](std::uint64_t seed) {
    auto m = std::make_unique<Sequential>();
    m->add(GRU(4)).add(std::make_shared<Dense>(1));
    m->build({kAnyDim, 2}, Device::cpu(), DType::f32, seed);
    m->compile({OptimizerConfig::sgd(1.5), LossKind::MeanAbsoluteError, {}});
    return m;
  };
  Random r(21);
  const Tensor x = Tensor::from_vector(r.floats(24 * 5 * 2), {24, 5, 2}, Device::cpu());
  const Tensor y = Tensor::from_vector(r.floats(24), {24, 1}, Device::cpu());
  const Tensor vx = Tensor::from_vector(r.floats(8 * 5 * 2), {8, 5, 2}, Device::cpu());
  const Tensor vy = Tensor::from_vector(r.floats(8), {8, 1}, Device::cpu());
  ArrayBatches data(x, y, 6, true, 3, Device::cpu()), val(vx, vy, 4, false, 0, Device::cpu());  // 4 steps per epoch
  FitOptions o;
  o.epochs = 6;
  o.verbose = 0;
  struct Run {
    std::shared_ptr<ModelCheckpoint> ckpt;
    std::shared_ptr<HistoryLogger> hist;
    std::shared_ptr<EarlyStopping> es;
    std::shared_ptr<ReduceLROnPlateauCallback> plateau;
    std::vector<std::shared_ptr<Callback>> all;
  };
  auto callbacks = [](const std::string& dir) {
    Run c;
    c.ckpt = std::make_shared<ModelCheckpoint>(temp(dir + "_best.safetensors"), "val_loss", true,
                                               temp(dir + "_interrupted.safetensors"));
    c.hist = std::make_shared<HistoryLogger>(temp(dir + "_history.csv"));
    c.es = std::make_shared<EarlyStopping>("val_loss", 100);
    c.plateau = std::make_shared<ReduceLROnPlateauCallback>("val_loss", 0.5, 1, 0.0);
    c.all = {c.ckpt, c.hist, c.es, c.plateau};
    return c;
  };
  auto without_timings = [](const History& h) {
    std::vector<Logs> out;
    for (Logs l : h.epochs) {
      l.erase("seconds");
      l.erase("samples_per_second");
      out.push_back(l);
    }
    return out;
  };
  for (const char* f : {"whole_best.safetensors", "whole_interrupted.safetensors", "whole_history.csv",
                        "parts_best.safetensors", "parts_interrupted.safetensors", "parts_history.csv"})
    std::remove(temp(f).c_str());
  auto whole = make(5);
  Run w = callbacks("whole");
  fit(*whole, data, o, &val, w.all);
  ASSERT_EQ(w.hist->history().epochs.size(), 6u);
  // The setting must have an epoch that does not improve, or a reset best would go unseen.
  ASSERT_LT(w.ckpt->best_epoch(), 5) << "every epoch improved: the test shows nothing";

  // Stops, in steps of each call: 2 (epoch 1 unfinished), 5 (mid epoch 2), 1 (the last step of epoch 2),
  // then between epochs (a stop asked for during validation: the next epoch has not started).
  const std::vector<std::int64_t> stops{2, 5, 1};
  auto part = make(5);
  Run p = callbacks("parts");
  FitOptions first = o;
  first.stop_after_steps = stops[0];
  fit(*part, data, first, &val, p.all);
  ASSERT_TRUE(last_fit_interrupted());
  EXPECT_FALSE(std::ifstream(temp("parts_best.safetensors")).good()) << "no epoch ended: no best yet";
  for (std::size_t k = 1; k <= stops.size(); ++k) {
    const CheckpointInfo info = load_checkpoint(*part, temp("parts_interrupted.safetensors"));
    ASSERT_FALSE(info.fit_state.empty());
    Run q = callbacks("parts");
    FitOptions rest = o;
    rest.initial_epoch = info.position.epoch;
    rest.initial_step = info.position.step;
    rest.resume_state = info.fit_state;
    if (k < stops.size()) rest.stop_after_steps = stops[k];
    if (k == stops.size()) {  // a stop asked for between epochs: during epoch 3's validation
      struct StopInValidation : BatchSource {
        const BatchSource& inner;
        explicit StopInValidation(const BatchSource& b) : inner(b) {}
        std::int64_t size() const override { return inner.size(); }
        Batch get(std::int64_t e, std::int64_t i) const override {
          static int calls = 0;
          if (++calls == 1) request_stop();
          return inner.get(e, i);
        }
      } stopping(val);
      fit(*part, data, rest, &stopping, q.all);
      ASSERT_TRUE(last_fit_interrupted());
      const CheckpointInfo between = read_checkpoint_info(temp("parts_interrupted.safetensors"));
      EXPECT_EQ(between.position.epoch, 2);
      EXPECT_EQ(between.position.step, 0);
      // And the last resume, to the end.
      auto last = make(78);  // other initial weights: everything must come from the checkpoint
      const CheckpointInfo li = load_checkpoint(*last, temp("parts_interrupted.safetensors"));
      Run z = callbacks("parts");
      FitOptions tail = o;
      tail.initial_epoch = li.position.epoch;
      tail.initial_step = li.position.step;
      tail.resume_state = li.fit_state;
      fit(*last, data, tail, &val, z.all);
      ASSERT_FALSE(last_fit_interrupted());
      EXPECT_EQ(without_timings(z.hist->history()), without_timings(w.hist->history()));
      EXPECT_EQ(z.ckpt->best_epoch(), w.ckpt->best_epoch());
      EXPECT_EQ(z.ckpt->best(), w.ckpt->best());
      EXPECT_EQ(z.es->best_epoch(), w.es->best_epoch());
      EXPECT_EQ(z.plateau->save_state(), w.plateau->save_state());
      EXPECT_EQ(z.es->save_state(), w.es->save_state());
      EXPECT_EQ(last->parameters().values().to_vector<float>(), whole->parameters().values().to_vector<float>());
      EXPECT_EQ(last->optimizer().learning_rate(), whole->optimizer().learning_rate());
      // The history file: every epoch, numbered 1..6, the same figures.
      std::ifstream a(temp("parts_history.csv")), b(temp("whole_history.csv"));
      std::string la, lb;
      int rows = 0;
      while (std::getline(a, la) && std::getline(b, lb)) ++rows;
      EXPECT_EQ(rows, 7);
      // The best checkpoints hold the same weights.
      const SafetensorsFile ba = load_safetensors(temp("parts_best.safetensors"));
      const SafetensorsFile bb = load_safetensors(temp("whole_best.safetensors"));
      ASSERT_EQ(ba.tensors.size(), bb.tensors.size());
      for (std::size_t i = 0; i < ba.tensors.size(); ++i) {
        const Tensor& ta = ba.tensors[i].second;
        const Tensor& tb = bb.tensors[i].second;
        if (ta.dtype() == DType::f32)
          EXPECT_EQ(ta.to_vector<float>(), tb.to_vector<float>()) << ba.tensors[i].first;
        else
          EXPECT_EQ(ta.to_vector<double>(), tb.to_vector<double>()) << ba.tensors[i].first;
      }
      EXPECT_FALSE(std::ifstream(temp("parts_interrupted.safetensors")).good())
          << "a finished run leaves no interrupted checkpoint";
      break;
    }
    fit(*part, data, rest, &val, q.all);
    ASSERT_TRUE(last_fit_interrupted());
  }
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
