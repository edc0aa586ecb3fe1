// The layer set behind the Layer interface: the book's models (parameter
// counts, output shapes, names, summary), every layer's backward by central
// differences in float64 on the CPU, and on a GPU each layer against the CPU.
#include <sstream>
#include <array>
#include <functional>
#include <memory>

#include "recur/engine/layers.h"
#include "recur/engine/model.h"
#include "test_util.h"

namespace recur::test {
namespace {

RecurrentOptions rnn_options(CellType cell, std::int64_t units, bool seq) {
  RecurrentOptions o;
  o.cell = cell;
  o.units = units;
  o.return_sequences = seq;
  o.unit_forget_bias = cell == CellType::LSTM;
  return o;
}

// ---- the book's models ------------------------------------------------------------
TEST(Layers, BookConvModelParameterCountsAndShapes) {
  Sequential m;
  m.add(std::make_shared<Embedding>(10000, 128, false, 500))
      .add(std::make_shared<Conv1D>(32, 7, Activation::Relu))
      .add(MaxPooling1D(5))
      .add(std::make_shared<Conv1D>(32, 7, Activation::Relu))
      .add(std::make_shared<GlobalPooling1D>(PoolKind::Max))
      .add(std::make_shared<Dense>(1));
  m.build({kAnyDim}, Device::cpu());
  const std::array<std::int64_t, 6> counts{1280000, 28704, 0, 7200, 0, 33};
  const std::array<Shape, 6> shapes{Shape{500, 128}, Shape{494, 32}, Shape{98, 32},
                                    Shape{92, 32},   Shape{32},      Shape{1}};
  ASSERT_EQ(m.layers().size(), 6u);
  for (std::size_t i = 0; i < 6; ++i) {
    EXPECT_EQ(m.layers()[i]->count_params(), counts[i]) << m.layers()[i]->name();
    EXPECT_EQ(m.layers()[i]->output_shape(), shapes[i]) << m.layers()[i]->name();
  }
  EXPECT_EQ(m.count_params(), 1315937);
  EXPECT_EQ(m.parameters().numel(), 1315937);
  // Keras's names, with suffixes for the repeats.
  EXPECT_EQ(m.layers()[1]->name(), "conv1d");
  EXPECT_EQ(m.layers()[3]->name(), "conv1d_1");
  // The real shapes agree with the declared ones.
  Random rng;
  std::vector<std::int32_t> ids(2 * 500);
  std::uniform_int_distribution<std::int32_t> d(0, 9999);
  for (auto& v : ids) v = d(rng.gen());
  const Tensor y = m.predict(Tensor::from_vector(ids, {2, 500}, Device::cpu()));
  EXPECT_EQ(y.shape(), (Shape{2, 1}));
  const std::string s = m.summary();
  for (const char* want : {"embedding (Embedding)", "(None, 494, 32)", "max_pooling1d (MaxPooling1D)",
                           " global_max_pooling1d             (None, 32)", "\n (GlobalMaxPooling1D)\n", "1,280,000",
                           "Total params: 1,315,937"})
    EXPECT_NE(s.find(want), std::string::npos) << want << " not in\n" << s;
  // Long names wrap inside their column (as Keras's do): no line is wider
  // than the table, and every shape starts in the shape column.
  std::istringstream lines(s);
  for (std::string line; std::getline(lines, line);) {
    EXPECT_LE(line.size(), 78u) << line;
    if (line.find("(None") != std::string::npos) {
      EXPECT_EQ(line.find("(None"), 34u) << line;
    }
  }
}

TEST(Layers, BookStackedLstmParameterCount) {
  Sequential m;
  m.add(std::make_shared<Embedding>(5000, 64))
      .add(LSTM(64, true))
      .add(LSTM(64))
      .add(std::make_shared<Dense>(6));
  m.build({kAnyDim}, Device::cpu());
  EXPECT_EQ(m.layers()[0]->count_params(), 320000);
  EXPECT_EQ(m.layers()[1]->count_params(), 33024);
  EXPECT_EQ(m.layers()[2]->count_params(), 33024);
  EXPECT_EQ(m.layers()[3]->count_params(), 390);
  EXPECT_EQ(m.count_params(), 386438);
  EXPECT_EQ(m.layers()[1]->output_shape(), (Shape{kAnyDim, 64}));
  EXPECT_EQ(m.layers()[2]->name(), "lstm_1");
  // PyTorch's state_dict keys.
  EXPECT_NO_THROW(m.parameters().index("lstm.weight_ih_l0"));
  EXPECT_NO_THROW(m.parameters().index("lstm_1.bias_ih_l0"));
  // Keras's one LSTM bias: no trainable bias_hh (has_recurrent_bias).
  EXPECT_THROW(m.parameters().index("lstm_1.bias_hh_l0"), ValueError);
  EXPECT_NO_THROW(m.parameters().index("dense.weight"));
}

TEST(Layers, JenaModelsMatchKerasCounts) {
  // Keras: GRU(32) on 14 features, reset_after with its [2, 96] bias:
  // 3*32*(14 + 32) + 2*96 = 4,608; Dense(1) 33.
  Sequential gru;
  gru.add(GRU(32)).add(std::make_shared<Dense>(1));
  gru.build({kAnyDim, 14}, Device::cpu());
  EXPECT_EQ(gru.count_params(), 4608 + 33);
  Sequential bi;
  bi.add(std::make_shared<BidirectionalLayer>(rnn_options(CellType::GRU, 16, false)))
      .add(std::make_shared<Dense>(1));
  bi.build({kAnyDim, 14}, Device::cpu());
  EXPECT_EQ(bi.layers()[0]->count_params(), 2 * (3 * 16 * (14 + 16) + 2 * 48));
  EXPECT_EQ(bi.layers()[0]->output_shape(), (Shape{32}));
  Sequential dense;
  dense.add(std::make_shared<Flatten>())
      .add(std::make_shared<Dense>(32, Activation::Relu))
      .add(std::make_shared<Dense>(1));
  dense.build({120, 14}, Device::cpu());
  EXPECT_EQ(dense.count_params(), 120 * 14 * 32 + 32 + 33);
}

TEST(Layers, KerasInitializers) {
  Sequential m;
  m.add(LSTM(8)).add(std::make_shared<Dense>(3));
  m.build({kAnyDim, 5}, Device::cpu(), DType::f64, 7);
  const ParameterStore& p = m.parameters();
  // unit_forget_bias: ones on the forget block of b_ih, zeros elsewhere.
  const auto b = p.value("lstm.bias_ih_l0").to_vector<double>();
  for (std::size_t j = 0; j < b.size(); ++j) EXPECT_EQ(b[j], (j >= 8 && j < 16) ? 1.0 : 0.0) << j;
  // Orthogonal recurrent kernel [4H, H]: W^T W = I.
  const auto w = p.value("lstm.weight_hh_l0").to_vector<double>();
  for (int i = 0; i < 8; ++i)
    for (int j = 0; j < 8; ++j) {
      double s = 0;
      for (int r = 0; r < 32; ++r) s += w[std::size_t(r * 8 + i)] * w[std::size_t(r * 8 + j)];
      EXPECT_NEAR(s, i == j ? 1.0 : 0.0, 1e-12);
    }
  // Glorot uniform kernel: within its limit, and not all equal.
  const double limit = std::sqrt(6.0 / (5 + 32));
  const auto k = p.value("lstm.weight_ih_l0").to_vector<double>();
  for (double v : k) EXPECT_LE(std::abs(v), limit);
  EXPECT_NE(k[0], k[1]);
  // Same seed, same model; another seed, another.
  Sequential m2, m3;
  m2.add(LSTM(8)).add(std::make_shared<Dense>(3));
  m3.add(LSTM(8)).add(std::make_shared<Dense>(3));
  m2.build({kAnyDim, 5}, Device::cpu(), DType::f64, 7);
  m3.build({kAnyDim, 5}, Device::cpu(), DType::f64, 8);
  EXPECT_EQ(p.values().to_vector<double>(), m2.parameters().values().to_vector<double>());
  EXPECT_NE(p.values().to_vector<double>(), m3.parameters().values().to_vector<double>());
}

TEST(Layers, ClearErrors) {
  expect_error([] { Dense(0); }, "units must be positive");
  expect_error([] { parse_activation("gelu2"); }, "unknown activation 'gelu2'");
  expect_error(
      [] {
        Sequential m;
        m.add(std::make_shared<Conv1D>(4, 9)).build({5, 3}, Device::cpu());
      },
      "kernel span 9 exceeds the 5 input steps");
  expect_error(
      [] {
        Sequential m;
        m.add(std::make_shared<Dense>(4)).add(std::make_shared<Embedding>(10, 4));
        m.build({3}, Device::cpu());
      },
      "must be the first layer");
  Sequential m;
  m.add(std::make_shared<Dense>(4, Activation::Relu, true, "hidden"));
  m.build({kAnyDim, 3}, Device::cpu());
  expect_error([&] { m.predict(Tensor::zeros({2, 7, 4}, DType::f32, Device::cpu())); },
               "Dense 'hidden': input of shape [2, 7, 4] does not match the expected (None, None, 3)");
  expect_error([&] { m.predict(Tensor::zeros({2, 7, 3}, DType::f64, Device::cpu())); },
               "input is float64, expected float32");
  expect_error([&] { m.layers()[0]->backward(Tensor::zeros({2, 7, 4}, DType::f32, Device::cpu())); },
               "needs a forward() with training = true");
}

TEST(Layers, MasksFlowLikeKeras) {
  Sequential m;
  m.add(std::make_shared<Embedding>(20, 4, /*mask_zero=*/true))
      .add(std::make_shared<Dense>(5, Activation::Tanh))
      .add(LSTM(3, true))
      .add(std::make_shared<Dropout>(0.5));
  m.build({kAnyDim}, Device::cpu());
  const Tensor ids = Tensor::from_vector(std::vector<std::int32_t>{3, 4, 0, 0, 5, 0, 6, 7}, {2, 4},
                                         Device::cpu());
  const Sequential::Output o = m.forward(ids, {}, false);
  ASSERT_TRUE(o.mask.defined());
  EXPECT_EQ(o.mask.to_vector<float>(), (std::vector<float>{1, 1, 0, 0, 1, 0, 1, 1}));
  // Masked steps output zeros (recurrent.h).
  const auto y = o.y.to_vector<float>();
  for (int c = 0; c < 3; ++c) {
    EXPECT_EQ(y[std::size_t(2 * 3 + c)], 0.f);
    EXPECT_EQ(y[std::size_t(5 * 3 + c)], 0.f);
  }
  // A recurrent layer without return_sequences drops the mask.
  Sequential m2;
  m2.add(std::make_shared<Embedding>(20, 4, true)).add(GRU(3)).add(std::make_shared<Dense>(1));
  m2.build({kAnyDim}, Device::cpu());
  EXPECT_FALSE(m2.forward(ids).mask.defined());
}

TEST(Layers, DropoutIsInvertedSeededAndTrainingOnly) {
  Dropout d(0.25, 11);
  d.build({kAnyDim, 6}, DType::f32);
  Random rng;
  const Tensor x = Tensor::from_vector(rng.floats(4 * 5 * 6, 0.5f, 1.5f), {4, 5, 6}, Device::cpu());
  EXPECT_EQ(d.forward(x, {}, false).to_vector<float>(), x.to_vector<float>());
  const auto y1 = d.forward(x, {}, true).to_vector<float>();
  const auto xv = x.to_vector<float>();
  int dropped = 0;
  for (std::size_t i = 0; i < xv.size(); ++i) {
    if (y1[i] == 0.f) {
      ++dropped;
    } else {
      EXPECT_FLOAT_EQ(y1[i], xv[i] / 0.75f);
    }
  }
  EXPECT_GT(dropped, 10);
  EXPECT_LT(dropped, 110);
  const auto g = d.backward(Tensor::full({4, 5, 6}, 1.0, DType::f32, Device::cpu())).to_vector<float>();
  for (std::size_t i = 0; i < g.size(); ++i) EXPECT_EQ(g[i], y1[i] == 0.f ? 0.f : 1.f / 0.75f);
  // Each call draws a new mask; reseeding repeats the sequence.
  const auto y2 = d.forward(x, {}, true).to_vector<float>();
  EXPECT_NE(y1, y2);
  d.set_seed(11);
  EXPECT_EQ(d.forward(x, {}, true).to_vector<float>(), y1);
}

// ---- gradients by central differences (float64, CPU) ------------------------------
struct Case {
  std::string label;
  std::function<LayerPtr()> make;
  Shape in;  // without batch
  std::int64_t B = 3;
  bool masked = false;
  bool ids = false;
  std::int32_t vocab = 0;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.label; }

// A layer built and bound on its own store, with every parameter random (not
// only the nonzero-initialised ones), ready for forward/backward.
struct Bound {
  LayerPtr layer;
  std::unique_ptr<ParameterStore> store;
};
Bound bind_random(const Case& c, Device dev, DType dtype, std::uint64_t seed) {
  Bound b{c.make(), std::make_unique<ParameterStore>(dev, dtype)};
  b.layer->set_seed(seed);
  b.layer->build(c.in, dtype);
  b.layer->declare(*b.store);
  b.store->allocate();
  b.layer->bind(*b.store);
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<double> u(-0.6, 0.6);
  std::vector<double> v(static_cast<std::size_t>(b.store->buffer_numel()));
  for (double& x : v) x = u(g);
  Tensor host = Tensor::from_vector(v, {b.store->buffer_numel()}, Device::cpu());
  if (dtype == DType::f32)
    host = Tensor::from_vector(std::vector<float>(v.begin(), v.end()), {b.store->buffer_numel()},
                               Device::cpu());
  b.store->values().copy_from(host);
  return b;
}

Shape batched(const Case& c, std::int64_t T) {
  Shape s{c.B};
  for (std::int64_t d : c.in) s.push_back(d == kAnyDim ? T : d);
  return s;
}

// Inputs for a case: ids or floats, and a mask with left-, right- and
// un-padded rows (row 0 keeps every step).
struct Inputs {
  std::vector<double> x;
  std::vector<std::int32_t> ids;
  std::vector<double> mask;
  Shape shape;
};
Inputs make_inputs(const Case& c, Random& rng) {
  Inputs in;
  in.shape = batched(c, 7);
  const std::int64_t n = shape_numel(in.shape);
  if (c.ids) {
    std::uniform_int_distribution<std::int32_t> d(1, c.vocab - 1);
    for (std::int64_t i = 0; i < n; ++i) in.ids.push_back(d(rng.gen()));
  } else {
    in.x = widen(rng.floats(n));
  }
  if (c.masked) {
    const std::int64_t T = in.shape[1];
    in.mask.assign(std::size_t(c.B * T), 1.0);
    for (std::int64_t b = 1; b < c.B; ++b)
      for (std::int64_t t = 0; t < T; ++t)
        if ((b % 2 == 1 && t >= T - b - 1) || (b % 2 == 0 && t < b)) in.mask[std::size_t(b * T + t)] = 0;
  }
  return in;
}

Tensor as_tensor(const std::vector<double>& v, const Shape& s, Device dev, DType dtype) {
  if (dtype == DType::f64) return Tensor::from_vector(v, s, dev);
  return Tensor::from_vector(std::vector<float>(v.begin(), v.end()), s, dev);
}

class LayerGradients : public ::testing::TestWithParam<Case> {};

TEST_P(LayerGradients, MatchCentralDifferences) {
  const Case& c = GetParam();
  Random rng;
  SCOPED_TRACE(c.label + ", seed " + std::to_string(rng.seed()) + " (RECUR_TEST_SEED)");
  Bound b = bind_random(c, Device::cpu(), DType::f64, rng.seed());
  const Inputs in = make_inputs(c, rng);
  const Tensor x = c.ids ? Tensor::from_vector(in.ids, in.shape, Device::cpu())
                         : Tensor::from_vector(in.x, in.shape, Device::cpu());
  const Tensor mask = c.masked ? Tensor::from_vector(in.mask, {in.shape[0], in.shape[1]}, Device::cpu())
                               : Tensor();
  const Tensor y = b.layer->forward(x, mask, true);
  const std::vector<double> r = widen(rng.floats(y.numel()));
  b.store->zero_grads();
  const Tensor dx = b.layer->backward(Tensor::from_vector(r, y.shape(), Device::cpu()));
  auto loss = [&] {
    const auto v = b.layer->forward(x, mask, false).to_vector<double>();
    double s = 0;
    for (std::size_t i = 0; i < v.size(); ++i) s += v[i] * r[i];
    return s;
  };
  for (std::size_t k = 0; k < b.layer->params().size(); ++k)
    expect_finite_differences(b.layer->value(k), b.layer->grad(k).to_vector<double>(), loss,
                              b.layer->params()[k].name);
  if (c.ids) {
    EXPECT_FALSE(dx.defined());
  } else {
    ASSERT_TRUE(dx.defined());
    ASSERT_EQ(dx.shape(), x.shape());
    expect_finite_differences(x, dx.to_vector<double>(), loss, "x");
  }
}

std::vector<Case> gradient_cases() {
  using std::make_shared;
  std::vector<Case> v;
  v.push_back({"dense_2d_tanh", [] { return make_shared<Dense>(4, Activation::Tanh); }, {5}});
  v.push_back({"dense_per_step_sigmoid",
               [] { return make_shared<Dense>(3, Activation::Sigmoid); }, {kAnyDim, 5}, 2});
  v.push_back({"dense_no_bias_softmax",
               [] { return make_shared<Dense>(4, Activation::Softmax, false); }, {kAnyDim, 3}, 2});
  v.push_back({"activation_softmax", [] { return make_shared<ActivationLayer>(Activation::Softmax); },
               {kAnyDim, 4}, 2});
  v.push_back({"activation_relu", [] { return make_shared<ActivationLayer>(Activation::Relu); }, {6}});
  v.push_back({"flatten", [] { return make_shared<Flatten>(); }, {4, 3}, 2});
  v.push_back({"embedding", [] { return make_shared<Embedding>(6, 3, true); }, {kAnyDim}, 3, false,
               true, 6});
  v.push_back({"conv1d_valid_relu", [] { return make_shared<Conv1D>(4, 3, Activation::Relu); },
               {kAnyDim, 3}, 2});
  v.push_back({"conv1d_same_stride2_tanh",
               [] {
                 return make_shared<Conv1D>(
                     Conv1DOptions{3, 3, 2, Conv1dPadding::Same, 1, 1, Activation::Tanh, true});
               },
               {kAnyDim, 2}, 2});
  v.push_back({"conv1d_causal_dilated_groups",
               [] {
                 return make_shared<Conv1D>(
                     Conv1DOptions{4, 2, 1, Conv1dPadding::Causal, 2, 2, Activation::Linear, true});
               },
               {kAnyDim, 4}, 2});
  v.push_back({"max_pooling_masked", [] { return MaxPooling1D(2); }, {kAnyDim, 3}, 3, true});
  v.push_back({"average_pooling_same",
               [] { return AveragePooling1D(3, 2, ops::PoolPadding::Same); }, {kAnyDim, 2}, 3, true});
  v.push_back({"global_max_masked", [] { return make_shared<GlobalPooling1D>(PoolKind::Max); },
               {kAnyDim, 3}, 3, true});
  v.push_back({"global_average_masked",
               [] { return make_shared<GlobalPooling1D>(PoolKind::Average); }, {kAnyDim, 3}, 3, true});
  v.push_back({"lstm_sequences_masked", [] { return LSTM(3, true); }, {kAnyDim, 2}, 3, true});
  v.push_back({"gru_last", [] { return GRU(3); }, {kAnyDim, 2}, 3, true});
  v.push_back({"simple_rnn", [] { return SimpleRNN(3, true); }, {kAnyDim, 2}, 2});
  v.push_back({"bidirectional_concat",
               [] { return make_shared<BidirectionalLayer>(rnn_options(CellType::GRU, 2, true)); },
               {kAnyDim, 2}, 3, true});
  v.push_back({"bidirectional_sum_last",
               [] {
                 return make_shared<BidirectionalLayer>(rnn_options(CellType::LSTM, 2, false),
                                                        MergeMode::Sum);
               },
               {kAnyDim, 2}, 3, true});
  return v;
}

std::string case_name(const ::testing::TestParamInfo<Case>& i) { return i.param.label; }

INSTANTIATE_TEST_SUITE_P(All, LayerGradients, ::testing::ValuesIn(gradient_cases()), case_name);

// The model's mean squared error on (x, target), with the output mask; with
// backward, the parameter gradients of it, from zero.
double model_mse(Sequential& m, const Tensor& x, const Tensor& target, bool backward) {
  const Sequential::Output o = m.forward(x, {}, backward);
  Tensor g = Tensor::empty(o.y.shape(), DType::f64, Device::cpu());
  const double l = ops::loss(LossKind::MeanSquaredError, o.y, target, g, o.mask).to_vector<double>()[0];
  if (backward) {
    m.parameters().zero_grads();
    m.backward(g);
  }
  return l;
}

// Every parameter's gradient of model_mse against central differences;
// returns the analytic gradients.
std::vector<std::vector<double>> expect_model_gradients(Sequential& m, const Tensor& x, const Tensor& target) {
  model_mse(m, x, target, true);
  const ParameterStore& p = m.parameters();
  std::vector<std::vector<double>> analytic;
  for (std::size_t i = 0; i < p.size(); ++i) analytic.push_back(p.grad(i).to_vector<double>());
  for (std::size_t i = 0; i < p.size(); ++i)
    expect_finite_differences(p.value(i), analytic[i], [&] { return model_mse(m, x, target, false); }, p.name(i));
  return analytic;
}

// The whole model: Embedding(mask_zero) -> Conv-free stack with a masked,
// per-step loss; every parameter's gradient of the model's loss by central
// differences, so the mask flow and the chaining are checked together.
TEST(Layers, SequentialGradientThroughMaskedStack) {
  Random rng;
  SCOPED_TRACE("seed " + std::to_string(rng.seed()) + " (RECUR_TEST_SEED)");
  Sequential m;
  m.add(std::make_shared<Embedding>(7, 3, true))
      .add(GRU(4, true))
      .add(std::make_shared<Dense>(2, Activation::Tanh))
      .add(std::make_shared<Dense>(1));
  m.build({kAnyDim}, Device::cpu(), DType::f64, rng.seed());
  std::vector<double> v = widen(rng.floats(m.parameters().buffer_numel(), -0.5f, 0.5f));
  m.parameters().values().copy_from(Tensor::from_vector(v, {std::int64_t(v.size())}, Device::cpu()));
  const Tensor ids =
      Tensor::from_vector(std::vector<std::int32_t>{1, 2, 3, 4, 5, 6, 0, 0, 3, 0, 0, 0}, {3, 4},
                          Device::cpu());
  const Tensor target = Tensor::from_vector(widen(rng.floats(12)), {3, 4, 1}, Device::cpu());
  const auto analytic = expect_model_gradients(m, ids, target);
  // The padding id's embedding row and masked targets get no gradient.
  const auto ge = analytic[0];
  for (int d = 0; d < 3; ++d) EXPECT_EQ(ge[std::size_t(d)], 0.0);
}

// ---- backward without the input gradient ------------------------------------------------
// A Sequential's first layer is asked for no dx (nobody reads it): it returns
// none and adds the same parameter gradients.
TEST(Layers, BackwardWithoutTheInputGradient) {
  Random rng;
  for (int kind = 0; kind < 4; ++kind) {
    Sequential m;
    if (kind == 0) m.add(GRU(4, true));
    if (kind == 1) m.add(LSTM(4));
    if (kind == 2) m.add(std::make_shared<Conv1D>(3, 2, Activation::Tanh));
    if (kind == 3) m.add(std::make_shared<Dense>(3, Activation::Relu));
    m.build({5, 3}, Device::cpu(), DType::f64, 7);
    Layer& l = *m.layers()[0];
    SCOPED_TRACE(l.type());
    const Tensor x = Tensor::from_vector(widen(rng.floats(2 * 5 * 3)), {2, 5, 3}, Device::cpu());
    std::vector<std::vector<double>> grads[2];
    for (bool input_grad : {true, false}) {
      const Tensor y = l.forward(x, {}, true);
      m.parameters().zero_grads();
      const Tensor dx = l.backward(Tensor::full(y.shape(), 0.5, DType::f64, Device::cpu()), input_grad);
      EXPECT_EQ(dx.defined(), input_grad);
      for (std::size_t i = 0; i < m.parameters().size(); ++i)
        grads[input_grad].push_back(m.parameters().grad(i).to_vector<double>());
    }
    EXPECT_EQ(grads[0], grads[1]);
  }
}

// Below the lowest layer with parameters nobody needs dx: that layer skips
// it and a Flatten under it skips its backward (the Jena dense model, where
// the dx GEMM was a third of the step). The gradients still match central
// differences; the Flatten's training forward is finished (a second
// backward is refused); skip_backward() refuses a layer with parameters.
TEST(Layers, ParameterFreeLayersUnderTheFirstDenseSkipBackward) {
  Random rng;
  SCOPED_TRACE("seed " + std::to_string(rng.seed()) + " (RECUR_TEST_SEED)");
  Sequential m;
  m.add(std::make_shared<Flatten>())
      .add(std::make_shared<Dense>(3, Activation::Tanh))
      .add(std::make_shared<Dense>(1));
  m.build({4, 2}, Device::cpu(), DType::f64, rng.seed());
  const Tensor x = Tensor::from_vector(widen(rng.floats(3 * 4 * 2)), {3, 4, 2}, Device::cpu());
  const Tensor target = Tensor::from_vector(widen(rng.floats(3)), {3, 1}, Device::cpu());
  expect_model_gradients(m, x, target);
  model_mse(m, x, target, true);
  expect_error([&] { m.layers()[0]->backward(Tensor::zeros({3, 8}, DType::f64, Device::cpu())); },
               "needs a forward() with training = true first");
  m.forward(x, {}, true);
  expect_error([&] { m.layers()[1]->skip_backward(); }, "on a layer with parameters");
}

// ---- training -----------------------------------------------------------------------
TEST(Layers, SequentialLearnsAndRepeats) {
  auto run = [](std::uint64_t seed) {
    Sequential m;
    m.add(GRU(8)).add(std::make_shared<Dense>(1));
    m.build({kAnyDim, 2}, Device::cpu(), DType::f32, seed);
    m.compile({OptimizerConfig::adam(0.02), LossKind::MeanSquaredError, {LossKind::MeanAbsoluteError}});
    // Target: the mean of the first feature over the sequence.
    std::mt19937_64 g(5);
    std::uniform_real_distribution<float> u(-1, 1);
    std::vector<double> losses;
    for (int step = 0; step < 150; ++step) {
      std::vector<float> x(16 * 6 * 2), y(16);
      for (int b = 0; b < 16; ++b) {
        float s = 0;
        for (int t = 0; t < 6; ++t) {
          x[std::size_t((b * 6 + t) * 2)] = u(g);
          x[std::size_t((b * 6 + t) * 2 + 1)] = u(g);
          s += x[std::size_t((b * 6 + t) * 2)];
        }
        y[std::size_t(b)] = s / 6;
      }
      losses.push_back(m.train_on_batch(Tensor::from_vector(x, {16, 6, 2}, Device::cpu()),
                                        Tensor::from_vector(y, {16}, Device::cpu()))
                           .loss);
    }
    return losses;
  };
  const auto a = run(3), b = run(3);
  EXPECT_EQ(a, b);  // bit for bit on the CPU
  double first = 0, last = 0;
  for (int i = 0; i < 10; ++i) first += a[std::size_t(i)], last += a[a.size() - 1 - std::size_t(i)];
  EXPECT_LT(last, 0.1 * first) << "first 10 steps " << first / 10 << ", last 10 " << last / 10;
}

// ---- GPU against the CPU ------------------------------------------------------------
class CUDALayers : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override { RECUR_SKIP_IF_UNAVAILABLE(Device::cuda(0)); }
};

TEST_P(CUDALayers, MatchCpu) {
  const Case& c = GetParam();
  Random rng;
  SCOPED_TRACE(c.label + ", seed " + std::to_string(rng.seed()) + " (RECUR_TEST_SEED)");
  const Inputs in = make_inputs(c, rng);
  struct Result {
    std::vector<float> y, dx, grads;
  };
  std::vector<double> r;
  auto run = [&](Device dev) {
    Bound b = bind_random(c, dev, DType::f32, rng.seed());
    const Tensor x = c.ids ? Tensor::from_vector(in.ids, in.shape, dev) : as_tensor(in.x, in.shape, dev, DType::f32);
    const Tensor mask = c.masked ? as_tensor(in.mask, {in.shape[0], in.shape[1]}, dev, DType::f32) : Tensor();
    const Tensor y = b.layer->forward(x, mask, true);
    if (r.empty()) r = widen(rng.floats(y.numel()));
    ops::fill(b.store->grads(), std::numeric_limits<double>::quiet_NaN());
    b.store->zero_grads();
    const Tensor dx = b.layer->backward(as_tensor(r, y.shape(), dev, DType::f32));
    Result out{y.to_vector<float>(), dx.defined() ? dx.to_vector<float>() : std::vector<float>{},
               b.store->grads().to_vector<float>()};
    return out;
  };
  const Result cpu = run(Device::cpu());
  const Result gpu = run(Device::cuda(0));
  auto scale = [](const std::vector<float>& v) { return std::vector<double>(v.size(), 1.0); };
  EXPECT_TRUE(close_to(gpu.y, widen(cpu.y), scale(cpu.y), 2e-5)) << "y";
  EXPECT_TRUE(close_to(gpu.dx, widen(cpu.dx), scale(cpu.dx), 2e-5)) << "dx";
  EXPECT_TRUE(close_to(gpu.grads, widen(cpu.grads), scale(cpu.grads), 2e-5)) << "grads";
}

INSTANTIATE_TEST_SUITE_P(All, CUDALayers, ::testing::ValuesIn(gradient_cases()), case_name);

}  // namespace
}  // namespace recur::test
