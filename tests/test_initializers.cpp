// Initializers (orthogonality, Glorot's bounds and moments, seeding) and the
// parameter store's layout, on the CPU where the draws are made.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "test_util.h"

namespace recur::test {
namespace {

const Device kCpu = Device::cpu();

std::uint64_t fresh_seed() { return Random().gen()(); }

// The Gram matrix of the columns of a row-major [m, n] matrix.
std::vector<double> gram_of_columns(const std::vector<double>& a, std::int64_t m, std::int64_t n) {
  std::vector<double> g(std::size_t(n * n), 0.0);
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < n; ++j)
      for (std::int64_t k = 0; k < m; ++k) g[std::size_t(i * n + j)] += a[std::size_t(k * n + i)] * a[std::size_t(k * n + j)];
  return g;
}

TEST(Initializers, OrthogonalIsOrthonormal) {
  const std::uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  const Shape shapes[] = {{1, 1}, {8, 8}, {12, 5}, {5, 12}, {4 * 16, 16}, {16, 4 * 16}, {6, 2, 3}};
  for (const Shape& shape : shapes)
    for (DType dt : {DType::f64, DType::f32})
      for (double gain : {1.0, 2.0}) {
        SCOPED_TRACE(::testing::Message() << shape_str(shape) << " " << dtype_name(dt) << " gain " << gain);
        Tensor t = Tensor::empty(shape, dt, kCpu);
        init::orthogonal(t, seed, gain);
        std::vector<double> v;
        if (dt == DType::f64) v = t.to_vector<double>();
        else v = widen(t.to_vector<float>());
        std::int64_t rows = shape[0], cols = t.numel() / rows;
        if (rows < cols) {  // wide: rows are orthonormal; check the transpose's columns
          std::vector<double> tr(v.size());
          for (std::int64_t i = 0; i < rows; ++i)
            for (std::int64_t j = 0; j < cols; ++j) tr[std::size_t(j * rows + i)] = v[std::size_t(i * cols + j)];
          v.swap(tr);
          std::swap(rows, cols);
        }
        const auto g = gram_of_columns(v, rows, cols);
        const double tol = dt == DType::f64 ? 1e-12 : 1e-6;
        for (std::int64_t i = 0; i < cols; ++i)
          for (std::int64_t j = 0; j < cols; ++j)
            EXPECT_NEAR(g[std::size_t(i * cols + j)], i == j ? gain * gain : 0.0, tol * gain * gain)
                << "Q^T Q at (" << i << ", " << j << ")";
      }
  // Sign correction by diag(R) makes the result the unique QR factor with a
  // positive-diagonal R: Q^T A has a positive diagonal for the Gaussian A.
  // Seen from outside: the first column of Q points along A's first column.
  Tensor q = Tensor::empty({6, 3}, DType::f64, kCpu);
  init::orthogonal(q, seed);
  Tensor a = Tensor::empty({6, 3}, DType::f64, kCpu);
  init::normal(a, 0.0, 1.0, seed);  // the same Gaussian draw the orthogonal init factors
  const auto qv = q.to_vector<double>(), av = a.to_vector<double>();
  double dot = 0;
  for (int i = 0; i < 6; ++i) dot += qv[std::size_t(i * 3)] * av[std::size_t(i * 3)];
  double na = 0;
  for (int i = 0; i < 6; ++i) na += av[std::size_t(i * 3)] * av[std::size_t(i * 3)];
  EXPECT_NEAR(dot, std::sqrt(na), 1e-12) << "q_0 = a_0 / |a_0|";
  EXPECT_THROW(init::orthogonal(Tensor::empty({5}, DType::f32, kCpu), 1), ShapeError);
}

TEST(Initializers, GlorotUniformBoundsAndMoments) {
  const std::uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  // PyTorch layout [out, in]: fan_in = in = 300, fan_out = out = 200.
  Tensor w = Tensor::empty({200, 300}, DType::f64, kCpu);
  init::glorot_uniform(w, seed);
  const double limit = std::sqrt(6.0 / (300 + 200));
  const auto v = w.to_vector<double>();
  const double n = double(v.size());
  const double mean = std::accumulate(v.begin(), v.end(), 0.0) / n;
  double var = 0;
  for (double x : v) var += (x - mean) * (x - mean);
  var /= n;
  const auto [lo, hi] = std::minmax_element(v.begin(), v.end());
  EXPECT_GE(*lo, -limit);
  EXPECT_LT(*hi, limit);
  EXPECT_GT(*hi, 0.99 * limit);  // it does spread over the whole range
  EXPECT_LT(*lo, -0.99 * limit);
  const double var_u = limit * limit / 3;  // variance of U(-limit, limit)
  EXPECT_NEAR(mean, 0.0, 5 * std::sqrt(var_u / n));
  EXPECT_NEAR(var, var_u, 0.02 * var_u);
  // Fans of the layouts.
  EXPECT_EQ(init::fans({64, 100}), std::make_pair(100.0, 64.0));
  EXPECT_EQ(init::fans({32, 16, 7}), std::make_pair(16.0 * 7, 32.0 * 7));  // Conv1d [out, in, k]
  EXPECT_EQ(init::fans({10}), std::make_pair(10.0, 10.0));
}

TEST(Initializers, SameSeedSameValuesDifferentSeedDifferent) {
  const std::uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  using Init = std::function<void(const Tensor&, std::uint64_t)>;
  const std::pair<const char*, Init> inits[] = {
      {"glorot_uniform", [](const Tensor& t, std::uint64_t s) { init::glorot_uniform(t, s); }},
      {"orthogonal", [](const Tensor& t, std::uint64_t s) { init::orthogonal(t, s); }},
      {"uniform", [](const Tensor& t, std::uint64_t s) { init::uniform(t, -0.05, 0.05, s); }},
      {"normal", [](const Tensor& t, std::uint64_t s) { init::normal(t, 0.0, 0.05, s); }}};
  for (const auto& [name, f] : inits) {
    SCOPED_TRACE(name);
    Tensor a = Tensor::empty({17, 9}, DType::f32, kCpu), b = Tensor::empty({17, 9}, DType::f32, kCpu);
    Tensor c = Tensor::empty({17, 9}, DType::f32, kCpu), d = Tensor::empty({17, 9}, DType::f64, kCpu);
    f(a, seed);
    f(b, seed);
    f(c, seed + 1);
    f(d, seed);
    const auto va = a.to_vector<float>(), vb = b.to_vector<float>(), vc = c.to_vector<float>();
    EXPECT_EQ(va, vb);
    EXPECT_NE(va, vc);
    // float32 holds the float64 draw, rounded.
    const auto vd = d.to_vector<double>();
    for (std::size_t i = 0; i < va.size(); ++i) EXPECT_EQ(va[i], float(vd[i]));
  }
  // A fixed seed gives fixed values in every run and build: std::mt19937_64 is
  // specified by the standard and the transforms are recur's own.
  Tensor u = Tensor::empty({3}, DType::f64, kCpu);
  init::uniform(u, 0.0, 1.0, 42);
  std::mt19937_64 g(42);
  for (double x : u.to_vector<double>()) EXPECT_EQ(x, double(g() >> 11) * 0x1.0p-53);
}

TEST(Initializers, ConstantsAndUnitForgetBias) {
  Tensor b = Tensor::empty({4 * 5}, DType::f32, kCpu);
  poison(b);
  init::unit_forget_bias(b);
  const auto v = b.to_vector<float>();
  for (int j = 0; j < 20; ++j) EXPECT_EQ(v[std::size_t(j)], (j >= 5 && j < 10) ? 1.f : 0.f) << j;
  EXPECT_THROW(init::unit_forget_bias(Tensor::empty({7}, DType::f32, kCpu)), ShapeError);
  Tensor o = Tensor::empty({3, 2}, DType::f32, kCpu);
  poison(o);
  init::ones(o);
  for (float x : o.to_vector<float>()) EXPECT_EQ(x, 1.f);
  init::zeros(o);
  for (float x : o.to_vector<float>()) EXPECT_EQ(x, 0.f);
  Tensor n = Tensor::empty({20000}, DType::f64, kCpu);
  init::normal(n, 3.0, 0.5, fresh_seed());
  const auto nv = n.to_vector<double>();
  const double mean = std::accumulate(nv.begin(), nv.end(), 0.0) / 20000;
  double var = 0;
  for (double x : nv) var += (x - mean) * (x - mean);
  EXPECT_NEAR(mean, 3.0, 5 * 0.5 / std::sqrt(20000.0));
  EXPECT_NEAR(std::sqrt(var / 20000), 0.5, 0.02);
  EXPECT_THROW(init::uniform(n, 1.0, 0.0, 1), ValueError);
  EXPECT_THROW(init::zeros(Tensor::empty({2}, DType::i32, kCpu)), DTypeError);
}

TEST(ParameterStore, OneBufferOfViewsWithKerasCounts) {
  // The book model: Embedding(5000, 64) -> LSTM(64, return_sequences)
  // -> LSTM(64) -> Dense(6), in Keras's shapes (one LSTM bias): 386,438.
  ParameterStore s(kCpu);
  s.declare("embedding", {5000, 64});
  for (const char* l : {"lstm1", "lstm2"}) {
    s.declare(std::string(l) + "/kernel", {4 * 64, 64});
    s.declare(std::string(l) + "/recurrent_kernel", {4 * 64, 64});
    s.declare(std::string(l) + "/bias", {4 * 64});
  }
  s.declare("dense/kernel", {6, 64});
  s.declare("dense/bias", {6});
  EXPECT_EQ(s.numel(), 386438);
  EXPECT_GE(s.buffer_numel(), s.numel());
  EXPECT_LT(s.buffer_numel(), s.numel() + std::int64_t(s.size()) * ParameterStore::kAlign);
  EXPECT_THROW(s.value(0), ValueError);  // no storage yet
  s.allocate();
  EXPECT_THROW(s.declare("late", {1}), ValueError);
  EXPECT_EQ(s.values().shape(), Shape{s.buffer_numel()});
  for (float x : s.values().to_vector<float>()) ASSERT_EQ(x, 0.f);
  // Writing through a view writes the flat buffer at its offset.
  const std::size_t i = s.index("dense/bias");
  EXPECT_EQ(s.value(i).shape(), Shape{6});
  ops::fill(s.value("dense/bias"), 2.5);
  ops::fill(s.grad("lstm2/bias"), -1.0);
  const auto flat = s.values().to_vector<float>();
  const auto gflat = s.grads().to_vector<float>();
  for (std::int64_t k = 0; k < s.buffer_numel(); ++k) {
    const bool in_bias = k >= s.offset(i) && k < s.offset(i) + 6;
    const std::size_t j = s.index("lstm2/bias");
    const bool in_gbias = k >= s.offset(j) && k < s.offset(j) + 256;
    ASSERT_EQ(flat[std::size_t(k)], in_bias ? 2.5f : 0.f) << k;
    ASSERT_EQ(gflat[std::size_t(k)], in_gbias ? -1.f : 0.f) << k;
  }
  s.zero_grads();
  for (float x : s.grads().to_vector<float>()) ASSERT_EQ(x, 0.f);
  EXPECT_THROW(s.index("nope"), ValueError);
  ParameterStore d(kCpu);
  d.declare("a", {2});
  EXPECT_THROW(d.declare("a", {3}), ValueError);
}

}  // namespace
}  // namespace recur::test
