// The functional graph (functional.h): a chain against the same Sequential, two
// directions merged against Bidirectional, gradients through branches, merges
// and masks by central differences in float64, clear errors, and training.
#include <array>
#include <functional>
#include <memory>

#include "recur/engine/functional.h"
#include "recur/engine/layers.h"
#include "recur/engine/model.h"
#include "test_util.h"

namespace recur::test {
namespace {

Tensor random_tensor(Random& rng, const Shape& shape, float lo = -1.f, float hi = 1.f) {
  return Tensor::from_vector(widen(rng.floats(shape_numel(shape), lo, hi)), shape, Device::cpu());
}

// Every parameter random (not only the nonzero-initialised ones).
void randomize(ParameterStore& p, Random& rng) {
  p.values().copy_from(random_tensor(rng, {p.buffer_numel()}, -0.5f, 0.5f));
}

// Rows of [B, T]: row 0 complete, odd rows padded at the end, even rows at the start.
Tensor padding_mask(std::int64_t B, std::int64_t T) {
  std::vector<double> m(std::size_t(B * T), 1.0);
  for (std::int64_t b = 1; b < B; ++b)
    for (std::int64_t t = 0; t < T; ++t)
      if ((b % 2 == 1 && t >= T - b - 1) || (b % 2 == 0 && t < b)) m[std::size_t(b * T + t)] = 0;
  return Tensor::from_vector(m, {B, T}, Device::cpu());
}

// ---- a chain is the Sequential of the same layers ------------------------------------
TEST(FunctionalModel, ConvGruChainMatchesSequential) {
  Random rng;
  SCOPED_TRACE("seed " + std::to_string(rng.seed()) + " (RECUR_TEST_SEED)");
  NodeRef x = Input({kAnyDim, 14}, "x");
  NodeRef h = call(std::make_shared<Conv1D>(8, 5, Activation::Relu), x);
  h = call(GRU(16), h);
  NodeRef y = call(std::make_shared<Dense>(1), h);
  Model f({x}, {y}, "conv_gru");
  f.build(Device::cpu(), DType::f64, rng.seed());

  Sequential s;
  s.add(std::make_shared<Conv1D>(8, 5, Activation::Relu)).add(GRU(16)).add(std::make_shared<Dense>(1));
  s.build({kAnyDim, 14}, Device::cpu(), DType::f64, rng.seed());

  // Conv1D 8*14*5 + 8; GRU(16) on 8 features 3*16*(8 + 16) + 2*48; Dense 16 + 1.
  ASSERT_EQ(f.layers().size(), 3u);
  const std::array<std::int64_t, 3> counts{568, 1248, 17};
  const std::array<Shape, 3> shapes{Shape{kAnyDim, 8}, Shape{16}, Shape{1}};
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(f.layers()[i]->count_params(), counts[i]) << f.layers()[i]->name();
    EXPECT_EQ(f.layers()[i]->output_shape(), shapes[i]) << f.layers()[i]->name();
  }
  EXPECT_EQ(f.count_params(), 1833);
  EXPECT_EQ(f.output_shape(0), (Shape{1}));
  EXPECT_EQ(f.input_dtype(0), DType::f64);

  // Same layers, same order, same seed: the same parameters, bit for bit.
  const ParameterStore& pf = f.parameters();
  const ParameterStore& ps = s.parameters();
  ASSERT_EQ(pf.size(), ps.size());
  for (std::size_t i = 0; i < pf.size(); ++i) EXPECT_EQ(pf.name(i), ps.name(i));
  EXPECT_EQ(pf.values().to_vector<double>(), ps.values().to_vector<double>());

  // And the same outputs and gradients.
  const Tensor xb = random_tensor(rng, {3, 9, 14});
  const Tensor yf = f.forward({xb}, {}, true).front().y;
  const Tensor ys = s.forward(xb, {}, true).y;
  EXPECT_EQ(yf.shape(), (Shape{3, 1}));
  EXPECT_EQ(yf.to_vector<double>(), ys.to_vector<double>());
  const Tensor dy = random_tensor(rng, {3, 1});
  f.parameters().zero_grads();
  s.parameters().zero_grads();
  f.backward({dy});
  s.backward(dy);
  EXPECT_EQ(pf.grads().to_vector<double>(), ps.grads().to_vector<double>());
  EXPECT_EQ(f.predict({xb}).to_vector<double>(), s.predict(xb).to_vector<double>());

  const std::string text = f.summary();
  for (const char* want : {"Model: \"conv_gru\"", "Connected to", "x (InputLayer)", "(None, None, 14)",
                           "conv1d (Conv1D)", "(None, None, 8)", "x[0][0]", "gru[0][0]",
                           "Total params: 1,833"})
    EXPECT_NE(text.find(want), std::string::npos) << want << " not in\n" << text;
}

// ---- two directions merged are Bidirectional -----------------------------------------
TEST(FunctionalModel, TwoDirectionsMergedMatchBidirectional) {
  Random rng;
  SCOPED_TRACE("seed " + std::to_string(rng.seed()) + " (RECUR_TEST_SEED)");
  for (bool sequences : {false, true}) {
    SCOPED_TRACE(sequences ? "return_sequences" : "last output");
    RecurrentOptions o;
    o.cell = CellType::GRU;
    o.units = 4;
    o.return_sequences = sequences;
    RecurrentOptions back = o;
    back.go_backwards = true;
    back.output_in_input_order = true;
    NodeRef x = Input({kAnyDim, 3});
    NodeRef m = concatenate({call(std::make_shared<RNN>(o), x), call(std::make_shared<RNN>(back), x)});
    Model f({x}, {call(std::make_shared<Dense>(2), m)});
    f.build(Device::cpu(), DType::f64, 1);
    Sequential s;
    s.add(std::make_shared<BidirectionalLayer>(o)).add(std::make_shared<Dense>(2));
    s.build({kAnyDim, 3}, Device::cpu(), DType::f64, 2);
    EXPECT_EQ(f.count_params(), s.count_params());
    // The same parameter shapes in the same order (the backward direction's
    // are Bidirectional's "_reverse" ones): one buffer copy shares the weights.
    ParameterStore& pf = f.parameters();
    ParameterStore& ps = s.parameters();
    ASSERT_EQ(pf.size(), ps.size());
    for (std::size_t i = 0; i < pf.size(); ++i) ASSERT_EQ(pf.shape(i), ps.shape(i)) << ps.name(i);
    randomize(ps, rng);
    pf.values().copy_from(ps.values());

    const Tensor xb = random_tensor(rng, {4, 6, 3});
    const Tensor mask = padding_mask(4, 6);
    const Model::Output of = f.forward({xb}, {mask}, true).front();
    const Sequential::Output os = s.forward(xb, mask, true);
    EXPECT_EQ(of.y.shape(), os.y.shape());
    EXPECT_EQ(of.y.to_vector<double>(), os.y.to_vector<double>());
    ASSERT_EQ(of.mask.defined(), sequences);
    ASSERT_EQ(os.mask.defined(), sequences);
    if (sequences) {
      EXPECT_EQ(of.mask.to_vector<double>(), os.mask.to_vector<double>());
    }

    const Tensor dy = random_tensor(rng, of.y.shape());
    pf.zero_grads();
    ps.zero_grads();
    f.backward({dy});
    s.backward(dy);
    EXPECT_EQ(pf.grads().to_vector<double>(), ps.grads().to_vector<double>());
  }
}

// ---- gradients by central differences (float64, CPU) ---------------------------------
// Every parameter's gradient of an MSE loss on output 0.
void expect_model_gradients(Model& m, const std::vector<Tensor>& x, const std::vector<Tensor>& masks,
                            const Tensor& target) {
  auto loss_and_grad = [&](bool backward) {
    const Model::Output o = m.forward(x, masks, backward).front();
    Tensor g = Tensor::empty(o.y.shape(), DType::f64, Device::cpu());
    const double l = ops::loss(LossKind::MeanSquaredError, o.y, target, g,
                               o.y.ndim() == 3 ? o.mask : Tensor())
                         .to_vector<double>()[0];
    if (backward) {
      m.parameters().zero_grads();
      m.backward({g});
    }
    return l;
  };
  loss_and_grad(true);
  const ParameterStore& p = m.parameters();
  std::vector<std::vector<double>> analytic;
  for (std::size_t i = 0; i < p.size(); ++i) analytic.push_back(p.grad(i).to_vector<double>());
  for (std::size_t i = 0; i < p.size(); ++i)
    expect_finite_differences(p.value(i), analytic[i], [&] { return loss_and_grad(false); }, p.name(i));
}

// A sequence (masked) into Dense -> LSTM and a feature vector into Dense; the
// feature branch feeds five consumers (Add, Multiply, Average, and
// Concatenate twice), so its gradient is a sum over branches.
TEST(FunctionalGradient, TwoInputsBranchesMergesAndMask) {
  Random rng;
  SCOPED_TRACE("seed " + std::to_string(rng.seed()) + " (RECUR_TEST_SEED)");
  NodeRef seq = Input({kAnyDim, 3}, "seq");
  NodeRef feat = Input({4}, "features");
  NodeRef h = call(LSTM(3), call(std::make_shared<Dense>(4, Activation::Tanh), seq));
  NodeRef s = call(std::make_shared<Dense>(3, Activation::Tanh), feat);
  NodeRef sum = add({h, s});
  NodeRef prod = multiply({h, s});
  NodeRef avg = average({sum, prod, s});
  NodeRef cat = concatenate({avg, sum, s, s});
  NodeRef y = call(std::make_shared<Dense>(1), cat);
  Model m({seq, feat}, {y});
  m.build(Device::cpu(), DType::f64, rng.seed());
  EXPECT_EQ(m.output_shape(0), (Shape{1}));
  EXPECT_EQ(m.layer("concatenate").output_shape(), (Shape{12}));
  randomize(m.parameters(), rng);

  const Tensor xs = random_tensor(rng, {3, 5, 3});
  const Tensor xf = random_tensor(rng, {3, 4});
  const Tensor mask = padding_mask(3, 5);
  const Tensor target = random_tensor(rng, {3, 1});
  expect_model_gradients(m, {xs, xf}, {mask, Tensor()}, target);

  // The mask reaches the LSTM through Dense: a masked step's values do not matter.
  const auto before = m.predict({xs, xf}, {mask, Tensor()}).to_vector<double>();
  xs.data<double>()[(1 * 5 + 4) * 3] += 10;  // row 1 is padded at its end
  EXPECT_EQ(m.predict({xs, xf}, {mask, Tensor()}).to_vector<double>(), before);
  EXPECT_NE(m.predict({xs, xf}).to_vector<double>(), before);
}

// Two masked sequences merged per step: the merged mask is the AND of theirs
// (Keras), and the per-step loss counts only the steps both keep.
TEST(FunctionalGradient, MaskedSequencesMergeWithAnd) {
  Random rng;
  SCOPED_TRACE("seed " + std::to_string(rng.seed()) + " (RECUR_TEST_SEED)");
  NodeRef a = Input({kAnyDim, 2}, "a");
  NodeRef b = Input({kAnyDim, 3}, "b");
  NodeRef ha = call(GRU(3, true), a);
  NodeRef hb = call(std::make_shared<Dense>(3, Activation::Tanh), b);
  NodeRef y = call(std::make_shared<Dense>(1), concatenate({ha, hb, ha}));
  Model m({a, b}, {y});
  m.build(Device::cpu(), DType::f64, rng.seed());
  randomize(m.parameters(), rng);
  const Tensor xa = random_tensor(rng, {3, 4, 2});
  const Tensor xb = random_tensor(rng, {3, 4, 3});
  const Tensor ma = Tensor::from_vector(std::vector<double>{1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0},
                                        {3, 4}, Device::cpu());
  const Tensor mb = Tensor::from_vector(std::vector<double>{1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1},
                                        {3, 4}, Device::cpu());
  const Model::Output o = m.forward({xa, xb}, {ma, mb}).front();
  ASSERT_TRUE(o.mask.defined());
  EXPECT_EQ(o.mask.to_vector<double>(), (std::vector<double>{1, 1, 1, 0, 0, 1, 0, 0, 1, 1, 1, 0}));
  // One mask alone passes through.
  EXPECT_EQ(m.forward({xa, xb}, {Tensor(), mb}).front().mask.to_vector<double>(), mb.to_vector<double>());
  EXPECT_FALSE(m.forward({xa, xb}).front().mask.defined());
  expect_model_gradients(m, {xa, xb}, {ma, mb}, random_tensor(rng, {3, 4, 1}));
}

// ---- names, summary, inputs of ids -------------------------------------------------------
TEST(FunctionalModel, NamesSummaryAndIds) {
  NodeRef ids = Input({kAnyDim});
  NodeRef feat = Input({5});
  NodeRef e = call(GRU(4), call(std::make_shared<Embedding>(20, 3, true), ids));
  NodeRef d = call(std::make_shared<Dense>(4), feat);
  NodeRef y = call(std::make_shared<Dense>(1), concatenate({e, d}));
  Model m({ids, feat}, {y});
  m.build(Device::cpu());
  // Keras's suffixes over inputs and layers alike.
  EXPECT_EQ(ids->name(), "input_layer");
  EXPECT_EQ(feat->name(), "input_layer_1");
  EXPECT_EQ(d->name(), "dense");
  EXPECT_EQ(y->name(), "dense_1");
  EXPECT_EQ(m.input_dtype(0), DType::i32);
  EXPECT_EQ(m.input_dtype(1), DType::f32);
  EXPECT_NO_THROW(m.parameters().index("embedding.weight"));
  EXPECT_NO_THROW(m.parameters().index("dense_1.bias"));
  EXPECT_EQ(m.count_params(), 60 + (3 * 4 * (3 + 4) + 2 * 12) + 24 + 9);
  const std::string text = m.summary();
  for (const char* want : {"input_layer_1 (InputLayer)", "concatenate (Concatenate)", "gru[0][0],",
                           "dense[0][0]\n", "embedding[0][0]", "Total params: 201"})
    EXPECT_NE(text.find(want), std::string::npos) << want << " not in\n" << text;
  const Tensor x = Tensor::from_vector(std::vector<std::int32_t>{1, 2, 0, 3, 4, 5}, {2, 3}, Device::cpu());
  EXPECT_EQ(m.predict({x, Tensor::zeros({2, 5}, DType::f32, Device::cpu())}).shape(), (Shape{2, 1}));
}

// Two heads on one trunk: forward returns both, backward sums what each sends
// back, and a head without a gradient adds nothing.
TEST(FunctionalModel, SeveralOutputs) {
  Random rng;
  SCOPED_TRACE("seed " + std::to_string(rng.seed()) + " (RECUR_TEST_SEED)");
  NodeRef x = Input({kAnyDim, 3});
  NodeRef h = call(GRU(4), x);
  NodeRef y1 = call(std::make_shared<Dense>(1, Activation::Linear, true, "head1"), h);
  NodeRef y2 = call(std::make_shared<Dense>(2, Activation::Linear, true, "head2"), h);
  Model m({x}, {y1, y2});
  m.build(Device::cpu(), DType::f64, 4);
  EXPECT_EQ(m.output_shape(1), (Shape{2}));
  const Tensor xb = random_tensor(rng, {3, 5, 3});
  const Tensor g1 = random_tensor(rng, {3, 1});
  const Tensor g2 = random_tensor(rng, {3, 2});
  ParameterStore& p = m.parameters();
  auto grads = [&](const Tensor& a, const Tensor& b) {
    const std::vector<Model::Output> o = m.forward({xb}, {}, true);
    EXPECT_EQ(o.size(), 2u);
    p.zero_grads();
    m.backward({a, b});
    return p.grads().to_vector<double>();
  };
  const auto both = grads(g1, g2), second = grads(Tensor(), g2), first = grads(g1, Tensor());
  for (std::size_t i = 0; i < both.size(); ++i)
    EXPECT_NEAR(both[i], first[i] + second[i], 1e-12 * (1 + std::abs(both[i]))) << i;
  for (double v : p.grad("head2.weight").to_vector<double>()) EXPECT_EQ(v, 0.0);
  expect_error([&] { m.predict({xb}); }, "predict() returns one output; this model has 2");
  m.compile({});
  expect_error([&] { m.test_on_batch({xb}, g1); }, "need a model with one output; this one has 2");
  expect_error([&] { m.backward({g1}); }, "1 output gradient(s) given, the model has 2 output(s)");
}

// ---- clear errors -------------------------------------------------------------------------
TEST(FunctionalErrors, GraphsThatCannotBeModels) {
  // Nodes refer only to earlier nodes, so no cycle can be built; these can:
  {
    NodeRef x = Input({3}, "x");
    NodeRef z = Input({2}, "z");
    NodeRef y = call(std::make_shared<Dense>(1), x);
    expect_error([&] { Model({x, z}, {y}); }, "Input 'z' is not connected to any output");
  }
  {
    NodeRef x = Input({3}, "x");
    NodeRef z = Input({2}, "z");
    NodeRef y = call(std::make_shared<Dense>(1), concatenate({x, z}));
    expect_error([&] { Model({x}, {y}); },
                 "depend on Input 'z', which is not among the model's inputs");
  }
  {
    auto shared = std::make_shared<Dense>(3, Activation::Relu, true, "shared");
    NodeRef x = Input({3});
    NodeRef y = call(shared, call(shared, x));
    expect_error([&] { Model({x}, {y}); },
                 "Dense 'shared' is applied twice; shared layers are not supported");
  }
  {
    NodeRef x = Input({3});
    NodeRef h = call(std::make_shared<Dense>(2), x);
    expect_error([&] { Model({h}, {h}); }, "inputs[0] is Dense 'dense', not an Input");
    expect_error([&] { Model({x, x}, {h}); }, "is listed twice");
  }
  // Arity is checked when a layer is applied.
  {
    NodeRef x = Input({3});
    NodeRef z = Input({3});
    expect_error([&] { call(std::make_shared<Concatenate>(), {x}); },
                 "Concatenate 'concatenate' is a merge layer: it takes a list of at least 2 inputs, got 1");
    expect_error([&] { call(std::make_shared<Dense>(2), {x, z}); }, "Dense 'dense' takes one input, got 2");
  }
  // A layer of another model.
  {
    auto d = std::make_shared<Dense>(2);
    NodeRef x = Input({3});
    Model first({x}, {call(d, x)});
    first.build(Device::cpu());
    NodeRef x2 = Input({3});
    expect_error([&] { call(d, x2); }, "Dense 'dense' is already built (it belongs to another model)");
  }
}

TEST(FunctionalErrors, ShapesAndInputs) {
  {  // Known time axes that differ: names the merge layer and both shapes.
    NodeRef a = Input({5, 3}, "a");
    NodeRef b = Input({6, 4}, "b");
    Model m({a, b}, {concatenate({a, b}, "merge")});
    expect_error([&] { m.build(Device::cpu()); },
                 "Concatenate 'merge': cannot concatenate inputs of shapes (None, 5, 3) and (None, 6, 4)");
  }
  {
    NodeRef a = Input({3});
    NodeRef b = Input({4});
    Model m({a, b}, {add({a, b})});
    expect_error([&] { m.build(Device::cpu()); },
                 "Add 'add': inputs of shapes (None, 3) and (None, 4) differ");
  }
  // Unknown time axes that differ at run time, and the wrong number of inputs.
  NodeRef a = Input({kAnyDim, 3}, "a");
  NodeRef b = Input({kAnyDim, 4}, "b");
  Model m({a, b}, {call(std::make_shared<Dense>(1), concatenate({a, b}))});
  m.build(Device::cpu());
  EXPECT_EQ(m.layer("concatenate").output_shape(), (Shape{kAnyDim, 7}));
  const Tensor xa = Tensor::zeros({2, 5, 3}, DType::f32, Device::cpu());
  const Tensor xb = Tensor::zeros({2, 6, 4}, DType::f32, Device::cpu());
  expect_error([&] { m.predict({xa, xb}); },
               "Concatenate 'concatenate': cannot concatenate inputs of shapes [2, 5, 3] and [2, 6, 4]");
  expect_error([&] { m.predict({xa}); }, "1 input tensor(s) given, the model has 2 input(s) ('a', 'b')");
  expect_error([&] { m.predict({xa, xb}, {Tensor()}); }, "1 masks given; give none or one per input");
  expect_error([&] { m.predict({xa, Tensor::zeros({2, 5, 3}, DType::f32, Device::cpu())}); },
               "input 'b' of shape [2, 5, 3] does not match the expected (None, None, 4)");
  expect_error([&] { m.predict({xa, Tensor::zeros({3, 5, 4}, DType::f32, Device::cpu())}); },
               "input 'b' has a batch of 3, input 'a' of 2");
  expect_error([&] { m.backward({Tensor::zeros({2, 5, 1}, DType::f32, Device::cpu())}); },
               "backward() needs a forward() with training = true");
  expect_error([&] { m.train_on_batch({xa, xa}, xa); }, "compile() before training");
  expect_error([&] { m.layer("concatenate").forward(xa); },
               "is a merge layer: call its forward() with the list of its inputs");
  // Ids go to an Input, and an Input is either ids or floats.
  {
    NodeRef x = Input({kAnyDim});
    Model m2({x}, {call(std::make_shared<Embedding>(10, 2),
                         call(std::make_shared<ActivationLayer>(Activation::Relu), x))});
    expect_error([&] { m2.build(Device::cpu()); },
                 "Embedding 'embedding' takes integer ids, so it must be applied to an Input");
  }
  {
    NodeRef x = Input({kAnyDim}, "tokens");
    Model m3({x}, {call(std::make_shared<Embedding>(10, 2), x),
                   call(std::make_shared<ActivationLayer>(Activation::Relu), x)});
    expect_error([&] { m3.build(Device::cpu()); },
                 "Input 'tokens' feeds Embedding 'embedding' (int32 ids) and Activation 'activation'");
  }
}

// ---- training ----------------------------------------------------------------------------
TEST(FunctionalTraining, LearnsAndRepeats) {
  auto run = [](std::uint64_t seed) {
    NodeRef seq = Input({kAnyDim, 2}, "seq");
    NodeRef feat = Input({2}, "features");
    NodeRef h = concatenate({call(GRU(8), seq), call(std::make_shared<Dense>(4, Activation::Tanh), feat)});
    Model m({seq, feat}, {call(std::make_shared<Dense>(1), h)});
    m.build(Device::cpu(), DType::f32, seed);
    m.compile({OptimizerConfig::adam(0.02), LossKind::MeanSquaredError, {LossKind::MeanAbsoluteError}});
    // Target: the mean of the sequence's first feature plus half the first static feature.
    std::mt19937_64 g(5);
    std::uniform_real_distribution<float> u(-1, 1);
    std::vector<double> losses;
    for (int step = 0; step < 150; ++step) {
      std::vector<float> x(16 * 6 * 2), f(16 * 2), y(16);
      for (int b = 0; b < 16; ++b) {
        float s = 0;
        for (int t = 0; t < 6; ++t) {
          x[std::size_t((b * 6 + t) * 2)] = u(g);
          x[std::size_t((b * 6 + t) * 2 + 1)] = u(g);
          s += x[std::size_t((b * 6 + t) * 2)];
        }
        f[std::size_t(b * 2)] = u(g);
        f[std::size_t(b * 2 + 1)] = u(g);
        y[std::size_t(b)] = s / 6 + 0.5f * f[std::size_t(b * 2)];
      }
      const Model::Logs logs = m.train_on_batch({Tensor::from_vector(x, {16, 6, 2}, Device::cpu()),
                                                 Tensor::from_vector(f, {16, 2}, Device::cpu())},
                                                Tensor::from_vector(y, {16}, Device::cpu()));
      EXPECT_EQ(logs.metrics.size(), 1u);
      losses.push_back(logs.loss);
    }
    EXPECT_EQ(m.last_batch_weight(), 16.0);
    return losses;
  };
  const auto a = run(3), b = run(3);
  EXPECT_EQ(a, b);  // bit for bit on the CPU
  double first = 0, last = 0;
  for (int i = 0; i < 10; ++i) first += a[std::size_t(i)], last += a[a.size() - 1 - std::size_t(i)];
  EXPECT_LT(last, 0.1 * first) << "first 10 steps " << first / 10 << ", last 10 " << last / 10;
}

// test_on_batch is the loss of forward without a step, with the output mask
// and sample weights as Sequential applies them.
TEST(FunctionalTraining, TestOnBatchMatchesSequential) {
  Random rng;
  SCOPED_TRACE("seed " + std::to_string(rng.seed()) + " (RECUR_TEST_SEED)");
  NodeRef x = Input({kAnyDim, 3});
  Model f({x}, {call(std::make_shared<Dense>(2), call(LSTM(4, true), x))});
  f.build(Device::cpu(), DType::f64, 9);
  Sequential s;
  s.add(LSTM(4, true)).add(std::make_shared<Dense>(2));
  s.build({kAnyDim, 3}, Device::cpu(), DType::f64, 9);
  const CompileOptions c{OptimizerConfig::sgd(0.1), LossKind::Huber, {LossKind::MeanAbsoluteError}};
  f.compile(c);
  s.compile(c);
  const Tensor xb = random_tensor(rng, {4, 5, 3});
  const Tensor yb = random_tensor(rng, {4, 5, 2});
  const Tensor mask = padding_mask(4, 5);
  const Tensor w = random_tensor(rng, {4}, 0.f, 2.f);
  const Model::Logs lf = f.test_on_batch({xb}, yb, {mask}, w);
  const Sequential::Logs ls = s.test_on_batch(xb, yb, mask, w);
  EXPECT_EQ(lf.loss, ls.loss);
  EXPECT_EQ(lf.metrics, ls.metrics);
  // One training step each: still the same parameters.
  f.train_on_batch({xb}, yb, {mask}, w);
  s.train_on_batch(xb, yb, mask, w);
  EXPECT_EQ(f.parameters().values().to_vector<double>(), s.parameters().values().to_vector<double>());
}

}  // namespace
}  // namespace recur::test
