// Embedding, activations (softmax and the derivatives) and dropout: each
// backend against a float64 reference written here, NaN-poisoned outputs, and
// every backward by central differences in float64 on the CPU.
#include <cmath>
#include <array>
#include <functional>

#include "recur/kernels/cpu.h"
#include "test_util.h"

namespace recur::test {
namespace {

// The ops allocate their outputs; a block poisoned and freed just before is
// what the caching allocator hands out next for that size (test_pooling.cpp).
void poison_next(std::int64_t n, Device d) { poison(Tensor::empty({n}, DType::f32, d)); }

// Central differences of loss() with respect to every element of x (float64,
// CPU) against `analytic`.
void expect_fd(const Tensor& x, const std::vector<double>& analytic, const std::function<double()>& loss) {
  expect_finite_differences(x, analytic, loss, "");
}

double dot(const Tensor& y, const std::vector<double>& w) {
  const auto v = y.to_vector<double>();
  double s = 0;
  for (std::size_t i = 0; i < v.size(); ++i) s += v[i] * w[i];
  return s;
}

std::vector<double> as_double(const std::vector<float>& v) { return {v.begin(), v.end()}; }

class SeqOps : public ::testing::TestWithParam<Device> {
 protected:
  void SetUp() override { RECUR_SKIP_IF_UNAVAILABLE(GetParam()); }
  Device dev() const { return GetParam(); }
  std::string seed() const { return "seed " + std::to_string(rng.seed()) + " (RECUR_TEST_SEED)"; }
  std::vector<std::int32_t> ids(std::int64_t n, std::int32_t V) {
    std::uniform_int_distribution<std::int32_t> d(0, V - 1);
    std::vector<std::int32_t> v(static_cast<std::size_t>(n));
    for (auto& i : v) i = d(rng.gen());
    v[0] = 0;  // padding present
    return v;
  }
  Random rng;
};

// ---- embedding ------------------------------------------------------------------
TEST_P(SeqOps, EmbeddingGathersAndAccumulates) {
  SCOPED_TRACE(seed());
  for (auto [B, T, V, D] : {std::array<std::int64_t, 4>{1, 1, 1, 1}, {3, 7, 7, 33}, {2, 33, 5, 7}}) {
    SCOPED_TRACE(::testing::Message() << "B " << B << " T " << T << " V " << V << " D " << D);
    const auto w = rng.floats(V * D);
    const auto id = ids(B * T, std::int32_t(V));
    Tensor W = Tensor::from_vector(w, {V, D}, dev());
    Tensor I = Tensor::from_vector(id, {B, T}, dev());
    poison_next(B * T * D, dev());
    Tensor Y = ops::embedding_forward(W, I);
    ASSERT_EQ(Y.shape(), (Shape{B, T, D}));
    std::vector<double> ref(std::size_t(B * T * D));
    for (std::int64_t i = 0; i < B * T; ++i)
      for (std::int64_t d = 0; d < D; ++d) ref[std::size_t(i * D + d)] = w[std::size_t(id[std::size_t(i)] * D + d)];
    EXPECT_TRUE(close_to(Y, ref, {0.0}, 1e-7));

    // dW accumulates onto what it holds.
    const auto dw0 = rng.floats(V * D), dy = rng.floats(B * T * D);
    Tensor dW = Tensor::from_vector(dw0, {V, D}, dev());
    ops::embedding_backward(I, Tensor::from_vector(dy, {B, T, D}, dev()), dW);
    std::vector<double> gref = as_double(dw0), scale(gref.size());
    for (std::size_t k = 0; k < gref.size(); ++k) scale[k] = std::abs(gref[k]);
    for (std::int64_t i = 0; i < B * T; ++i)
      for (std::int64_t d = 0; d < D; ++d) {
        const std::size_t k = std::size_t(id[std::size_t(i)] * D + d);
        gref[k] += dy[std::size_t(i * D + d)];
        scale[k] += std::abs(dy[std::size_t(i * D + d)]);
      }
    EXPECT_TRUE(close_to(dW, gref, scale, 1e-6));

    poison_next(B * T, dev());
    Tensor m = ops::embedding_mask(I);
    ASSERT_EQ(m.shape(), (Shape{B, T}));
    std::vector<double> mref(id.size());
    for (std::size_t i = 0; i < id.size(); ++i) mref[i] = id[i] != 0 ? 1.0 : 0.0;
    EXPECT_TRUE(close_to(m, mref, {0.0}, 1e-7));
  }
}

TEST_P(SeqOps, EmbeddingIdsOutsideTheVocabulary) {
  Tensor W = Tensor::from_vector(rng.floats(4 * 3), {4, 3}, dev());
  for (std::int32_t bad : {4, -1}) {
    Tensor I = Tensor::from_vector(std::vector<std::int32_t>{1, bad, 2}, {1, 3}, dev());
    if (dev().is_cpu()) {
      expect_error([&] { ops::embedding_forward(W, I); }, "outside [0, 4)");
      Tensor dW = Tensor::zeros({4, 3}, DType::f32, dev());
      expect_error([&] { ops::embedding_backward(I, Tensor::zeros({1, 3, 3}, DType::f32, dev()), dW); },
                   "outside [0, 4)");
    } else {  // documented: a NaN row, never a silent wrong value
      const auto y = ops::embedding_forward(W, I).to_vector<float>();
      for (int d = 0; d < 3; ++d) {
        EXPECT_TRUE(std::isnan(y[std::size_t(3 + d)]));
        EXPECT_FALSE(std::isnan(y[std::size_t(d)]));
      }
    }
  }
}

TEST_P(SeqOps, EmbeddingBadArgumentsSayWhatIsWrong) {
  Tensor W = Tensor::zeros({4, 3}, DType::f32, dev());
  Tensor I = Tensor::from_vector(std::vector<std::int32_t>{0, 1}, {1, 2}, dev());
  expect_error([&] { ops::embedding_forward(W, Tensor::zeros({1, 2}, DType::f32, dev())); }, "int32");
  expect_error([&] { ops::embedding_forward(W.reshape({12}), I); }, "[V, D]");
  expect_error([&] { ops::embedding_backward(I, Tensor::zeros({1, 2, 4}, DType::f32, dev()), W); },
               "'dy' has shape");
  expect_error([&] { ops::embedding_mask(Tensor::zeros({2}, DType::f32, dev())); }, "int32");
}

// Above the parallel threshold the CPU backward splits the columns among
// threads: the sums (many tokens on few ids, in token order) are the same
// bits for any thread count, and match a serial reference.
TEST(SeqOpsThreads, EmbeddingBackwardIsTheSameForAnyThreadCount) {
  Random rng;
  SCOPED_TRACE("seed " + std::to_string(rng.seed()) + " (RECUR_TEST_SEED)");
  const Device cpu = Device::cpu();
  const std::int64_t n = 40000, V = 50, D = 33;  // n * D above kernels::cpu::kParallelThreshold
  ASSERT_GE(n * D, kernels::cpu::kParallelThreshold);
  std::vector<std::int32_t> id(static_cast<std::size_t>(n));
  const auto u = rng.floats(n, 0.f, float(V));
  for (std::int64_t i = 0; i < n; ++i) id[std::size_t(i)] = std::min<std::int32_t>(std::int32_t(u[std::size_t(i)]), std::int32_t(V - 1));
  const auto dy = rng.floats(n * D), dw0 = rng.floats(V * D);
  std::vector<float> ref = dw0;
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t d = 0; d < D; ++d) ref[std::size_t(id[std::size_t(i)] * D + d)] += dy[std::size_t(i * D + d)];
  Tensor I = Tensor::from_vector(id, {n, 1}, cpu), dY = Tensor::from_vector(dy, {n, 1, D}, cpu);
  const int threads = kernels::cpu::num_threads();
  for (int t : {1, 2, 3}) {
    kernels::cpu::set_num_threads(t);
    Tensor dW = Tensor::from_vector(dw0, {V, D}, cpu);
    ops::embedding_backward(I, dY, dW);
    EXPECT_EQ(dW.to_vector<float>(), ref) << t << " threads";
  }
  kernels::cpu::set_num_threads(threads);
}

TEST(SeqOpsGradients, EmbeddingFiniteDifferencesFloat64) {
  Random rng;
  SCOPED_TRACE("seed " + std::to_string(rng.seed()));
  const Device cpu = Device::cpu();
  Tensor W = Tensor::from_vector(as_double(rng.floats(5 * 3)), {5, 3}, cpu);
  Tensor I = Tensor::from_vector(std::vector<std::int32_t>{0, 3, 3, 1, 4, 3, 0}, {1, 7}, cpu);
  const auto g = as_double(rng.floats(7 * 3));
  Tensor dW = Tensor::zeros({5, 3}, DType::f64, cpu);
  ops::embedding_backward(I, Tensor::from_vector(g, {1, 7, 3}, cpu), dW);
  expect_fd(W, dW.to_vector<double>(), [&] { return dot(ops::embedding_forward(W, I), g); });
}

// ---- activations ----------------------------------------------------------------
double act_ref(Activation a, double x) {
  switch (a) {
    case Activation::Relu: return x > 0 ? x : 0;
    case Activation::Tanh: return std::tanh(x);
    case Activation::Sigmoid: return 1 / (1 + std::exp(-x));
    default: return x;
  }
}

TEST_P(SeqOps, ActivationsAndTheirDerivatives) {
  SCOPED_TRACE(seed());
  for (Activation a : {Activation::Linear, Activation::Relu, Activation::Tanh, Activation::Sigmoid,
                       Activation::Softmax})
    for (const Shape& s : {Shape{1}, Shape{7}, Shape{3, 33}, Shape{2, 5, 7}, Shape{4, 1}}) {
      SCOPED_TRACE(std::string(activation_name(a)) + " " + shape_str(s));
      std::int64_t n = 1;
      for (auto d : s) n *= d;
      const std::int64_t cols = s.back(), rows = n / cols;
      const auto x = rng.floats(n, -4.f, 4.f), dy = rng.floats(n);
      std::vector<double> y(static_cast<std::size_t>(n)), dx(y.size());
      for (std::int64_t r = 0; r < rows; ++r) {
        const std::size_t o = std::size_t(r * cols);
        if (a == Activation::Softmax) {
          double m = -INFINITY, sum = 0, sdy = 0;
          for (std::int64_t j = 0; j < cols; ++j) m = std::max(m, double(x[o + j]));
          for (std::int64_t j = 0; j < cols; ++j) sum += std::exp(x[o + j] - m);
          for (std::int64_t j = 0; j < cols; ++j) y[o + j] = std::exp(x[o + j] - m) / sum;
          for (std::int64_t j = 0; j < cols; ++j) sdy += dy[o + j] * y[o + j];
          for (std::int64_t j = 0; j < cols; ++j) dx[o + j] = y[o + j] * (dy[o + j] - sdy);
        } else {
          for (std::int64_t j = 0; j < cols; ++j) {
            y[o + j] = act_ref(a, x[o + j]);
            const double yy = y[o + j];
            const double d = a == Activation::Relu ? (yy > 0 ? 1 : 0)
                             : a == Activation::Tanh ? 1 - yy * yy
                             : a == Activation::Sigmoid ? yy * (1 - yy) : 1;
            dx[o + j] = dy[o + j] * d;
          }
        }
      }
      Tensor X = Tensor::from_vector(x, s, dev());
      poison_next(n, dev());
      Tensor Y = ops::activation_forward(a, X);
      EXPECT_TRUE(close_to(Y, y, {1e-2}, 1e-5));
      // The backward from the reference y, so only the derivative is tested.
      std::vector<float> yf(y.begin(), y.end());
      Tensor DY = Tensor::from_vector(dy, s, dev());
      Tensor YF = Tensor::from_vector(yf, s, dev());
      poison_next(n, dev());
      Tensor DX = ops::activation_backward(a, YF, DY);
      EXPECT_TRUE(close_to(DX, dx, {1e-2}, 1e-5));
    }
}

TEST_P(SeqOps, SoftmaxIsStableForLargeLogits) {
  Tensor X = Tensor::from_vector(std::vector<float>{1000.f, 999.f, -1000.f, 88.f, 89.f, 90.f}, {2, 3}, dev());
  const auto y = ops::softmax(X).to_vector<float>();
  const double e1 = std::exp(-1.0), e2 = std::exp(-2.0);
  const std::vector<double> ref{1 / (1 + e1), e1 / (1 + e1), 0.0, e2 / (1 + e1 + e2), e1 / (1 + e1 + e2),
                                1 / (1 + e1 + e2)};
  EXPECT_TRUE(close_to(y, ref, {1e-3}, 1e-5));
}

TEST_P(SeqOps, ActivationBadArgumentsSayWhatIsWrong) {
  Tensor y = Tensor::zeros({2, 3}, DType::f32, dev());
  expect_error([&] { ops::activation_backward(Activation::Tanh, y, Tensor::zeros({3, 2}, DType::f32, dev())); },
               "'dy' has shape");
  expect_error([&] { ops::activation_forward(Activation::Relu, Tensor()); }, "undefined");
  expect_error([&] { ops::activation_forward(Activation::Relu, Tensor::zeros({2}, DType::i32, dev())); },
               "expected float32 or float64");
}

TEST(SeqOpsGradients, ActivationFiniteDifferencesFloat64) {
  Random rng;
  SCOPED_TRACE("seed " + std::to_string(rng.seed()));
  for (Activation a : {Activation::Linear, Activation::Relu, Activation::Tanh, Activation::Sigmoid,
                       Activation::Softmax}) {
    SCOPED_TRACE(activation_name(a));
    Tensor X = Tensor::from_vector(as_double(rng.floats(3 * 7, -3.f, 3.f)), {3, 7}, Device::cpu());
    const auto g = as_double(rng.floats(3 * 7));
    Tensor Y = ops::activation_forward(a, X);
    Tensor DX = ops::activation_backward(a, Y, Tensor::from_vector(g, {3, 7}, Device::cpu()));
    expect_fd(X, DX.to_vector<double>(), [&] { return dot(ops::activation_forward(a, X), g); });
  }
}

// ---- dropout --------------------------------------------------------------------
TEST_P(SeqOps, DropoutIsInvertedSeededAndTheSameOnEveryBackend) {
  SCOPED_TRACE(seed());
  const std::int64_t n = 33 * 1000;
  const auto x = rng.floats(n);
  Tensor X = Tensor::from_vector(x, {33, 1000}, dev());
  for (double rate : {0.0, 0.1, 0.5, 0.9}) {
    SCOPED_TRACE(::testing::Message() << "rate " << rate);
    poison_next(n, dev());
    ops::DropoutResult d = ops::dropout_forward(X, rate, 1234, true);
    const auto y = d.y.to_vector<float>(), m = d.mask.to_vector<float>();
    const float scale = float(1.0 / (1.0 - rate));
    std::int64_t dropped = 0;
    for (std::size_t i = 0; i < y.size(); ++i) {
      ASSERT_TRUE(m[i] == 0.f || m[i] == scale) << i << ": " << m[i];
      ASSERT_EQ(y[i], m[i] == 0.f ? 0.f : x[i] * scale) << i;
      dropped += m[i] == 0.f;
    }
    const double sd = std::sqrt(n * rate * (1 - rate));
    EXPECT_NEAR(double(dropped), n * rate, 5 * sd + 1);
    // The same seed repeats the mask, on this backend and on the CPU, bit for bit.
    EXPECT_EQ(ops::dropout_forward(X, rate, 1234, true).mask.to_vector<float>(), m);
    EXPECT_EQ(ops::dropout_forward(X.to(Device::cpu()), rate, 1234, true).mask.to_vector<float>(), m);
    if (rate > 0) {
      EXPECT_NE(ops::dropout_forward(X, rate, 1235, true).mask.to_vector<float>(), m);
    }

    const auto dy = rng.floats(n);
    poison_next(n, dev());
    Tensor DX = ops::dropout_backward(Tensor::from_vector(dy, {33, 1000}, dev()), d.mask);
    std::vector<double> ref(y.size());
    for (std::size_t i = 0; i < ref.size(); ++i) ref[i] = double(dy[i]) * m[i];
    EXPECT_TRUE(close_to(DX, ref, {0.0}, 1e-7));
  }
  // Inference: the identity.
  ops::DropoutResult d = ops::dropout_forward(X, 0.5, 7, false);
  EXPECT_EQ(d.y.to_vector<float>(), x);
  EXPECT_EQ(d.mask.to_vector<float>(), std::vector<float>(std::size_t(n), 1.f));
  expect_error([&] { ops::dropout_forward(X, 1.0, 7, true); }, "rate = 1");
  expect_error([&] { ops::dropout_forward(X, -0.1, 7, true); }, "expected in [0, 1)");
  expect_error([&] { ops::dropout_backward(X, Tensor::zeros({2}, DType::f32, dev())); }, "'mask' has shape");
}

TEST(SeqOpsGradients, DropoutFiniteDifferencesFloat64) {
  Random rng;
  SCOPED_TRACE("seed " + std::to_string(rng.seed()));
  const Device cpu = Device::cpu();
  Tensor X = Tensor::from_vector(as_double(rng.floats(7 * 5)), {7, 5}, cpu);
  const auto g = as_double(rng.floats(7 * 5));
  ops::DropoutResult d = ops::dropout_forward(X, 0.3, 99, true);
  Tensor DX = ops::dropout_backward(Tensor::from_vector(g, {7, 5}, cpu), d.mask);
  expect_fd(X, DX.to_vector<double>(), [&] { return dot(ops::dropout_forward(X, 0.3, 99, true).y, g); });
}

INSTANTIATE_TEST_SUITE_P(CPU, SeqOps, ::testing::Values(Device::cpu()),
                         [](const auto&) { return std::string("cpu"); });
INSTANTIATE_TEST_SUITE_P(CUDA, SeqOps, ::testing::Values(Device::cuda(0)),
                         [](const auto&) { return std::string("cuda0"); });

}  // namespace
}  // namespace recur::test
