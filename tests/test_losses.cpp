// Losses and metrics on every backend against a float64 reference written here
// (different expressions from recur/kernels/loss.h where a stable form allows),
// the masking rule (a masked loss equals the loss over the unmasked elements
// alone), finite-difference gradients in float64 on the CPU, and clear errors.
#include <algorithm>
#include <cmath>
#include <functional>

#include "recur/kernels/cpu.h"
#include "test_util.h"

namespace recur::test {
namespace {

constexpr double kRtol = 2e-5;  // float32 kernels against the float64 reference

double softplus(double z) { return std::max(z, 0.0) + std::log1p(std::exp(-std::abs(z))); }
double sigm(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// Element term and d/dx of an elementwise kind, in double.
std::pair<double, double> ref_term(LossKind k, double x, double y, double delta) {
  const double d = x - y;
  switch (k) {
    case LossKind::MeanAbsoluteError: return {std::abs(d), d > 0 ? 1.0 : d < 0 ? -1.0 : 0.0};
    case LossKind::MeanSquaredError: return {d * d, 2 * d};
    case LossKind::Huber:
      if (std::abs(d) <= delta) return {0.5 * d * d, d};
      return {delta * std::abs(d) - 0.5 * delta * delta, d > 0 ? delta : -delta};
    case LossKind::BinaryCrossentropy:
      // -y log(sigmoid(x)) - (1 - y) log(1 - sigmoid(x)), each log as a softplus.
      return {y * softplus(-x) + (1 - y) * softplus(x), sigm(x) - y};
    case LossKind::BinaryAccuracy: return {((x > 0) == (y > 0.5)) ? 1.0 : 0.0, 0.0};
    default: break;
  }
  ADD_FAILURE() << "not elementwise";
  return {0, 0};
}

struct RefLoss {
  double value = 0, scale = 0;  // scale: sum |w l| / denom, for the error bound
  std::vector<double> grad;
};

enum class Weighting { None, PerElement, PerRow };
const char* weighting_name(Weighting w) {
  return w == Weighting::None ? "none" : w == Weighting::PerElement ? "per element" : "per row";
}

RefLoss ref_elementwise(LossKind k, const std::vector<float>& x, const std::vector<float>& y,
                        const std::vector<float>& w, Weighting wm, std::int64_t cols, double delta) {
  RefLoss r;
  r.grad.assign(x.size(), 0.0);
  double num = 0, den = 0, mag = 0;
  for (std::size_t e = 0; e < x.size(); ++e) {
    const double we = wm == Weighting::None ? 1.0 : wm == Weighting::PerElement ? w[e] : w[e / cols];
    const auto [l, g] = ref_term(k, x[e], y[e], delta);
    num += we * l;
    mag += std::abs(we * l);
    den += we;
    r.grad[e] = we * g;
  }
  r.value = den > 0 ? num / den : 0.0;
  r.scale = den > 0 ? mag / den : 0.0;
  for (double& g : r.grad) g = den > 0 ? g / den : 0.0;
  return r;
}

// Sparse kinds: x [rows, C], labels [rows], per-row weights (or none).
RefLoss ref_sparse(LossKind k, const std::vector<float>& x, const std::vector<std::int32_t>& t,
                   const std::vector<float>& w, std::int64_t C) {
  const std::int64_t rows = std::int64_t(t.size());
  RefLoss r;
  r.grad.assign(x.size(), 0.0);
  double num = 0, den = 0, mag = 0;
  for (std::int64_t i = 0; i < rows; ++i) {
    const double wi = w.empty() ? 1.0 : w[i];
    den += wi;
    if (wi == 0) continue;
    const float* xr = &x[std::size_t(i * C)];
    if (k == LossKind::Accuracy) {
      const std::int64_t arg = std::max_element(xr, xr + C) - xr;
      num += wi * (arg == t[i] ? 1.0 : 0.0);
      continue;
    }
    double m = -INFINITY;
    for (std::int64_t c = 0; c < C; ++c) m = std::max(m, double(xr[c]));
    double s = 0;
    for (std::int64_t c = 0; c < C; ++c) s += std::exp(double(xr[c]) - m);
    const double logp = double(xr[t[i]]) - m - std::log(s);  // log softmax at the label
    num += -wi * logp;
    mag += std::abs(wi * logp);
    for (std::int64_t c = 0; c < C; ++c)
      r.grad[std::size_t(i * C + c)] = wi * (std::exp(double(xr[c]) - m) / s - (c == t[i] ? 1.0 : 0.0));
  }
  r.value = den > 0 ? num / den : 0.0;
  r.scale = den > 0 ? mag / den : 0.0;
  for (double& g : r.grad) g = den > 0 ? g / den : 0.0;
  return r;
}

class Losses : public ::testing::TestWithParam<Device> {
 protected:
  void SetUp() override { RECUR_SKIP_IF_UNAVAILABLE(GetParam()); }
  Device dev() const { return GetParam(); }
  Tensor put(const std::vector<float>& v, const Shape& s) { return Tensor::from_vector(v, s, dev()); }
  std::string seed() const { return "seed " + std::to_string(rng.seed()) + " (RECUR_TEST_SEED)"; }
  // A 0/1 mask with at least one 1.
  std::vector<float> mask(std::int64_t n) {
    std::vector<float> m(static_cast<std::size_t>(n));
    std::uniform_int_distribution<int> bit(0, 2);
    for (float& v : m) v = bit(rng.gen()) ? 1.f : 0.f;
    m[0] = 1.f;
    return m;
  }
  std::vector<std::int32_t> labels(std::int64_t n, std::int64_t C) {
    std::uniform_int_distribution<std::int32_t> d(0, std::int32_t(C - 1));
    std::vector<std::int32_t> t(static_cast<std::size_t>(n));
    for (auto& v : t) v = d(rng.gen());
    return t;
  }
  Random rng;
};

const LossKind kElementwise[] = {LossKind::MeanAbsoluteError, LossKind::MeanSquaredError,
                                 LossKind::Huber, LossKind::BinaryCrossentropy};
const Shape kShapes[] = {{1, 1}, {7, 33}, {3, 5, 4}, {300, 40}};

TEST_P(Losses, ElementwiseValueAndGradient) {
  SCOPED_TRACE(seed());
  for (LossKind k : kElementwise)
    for (double delta : {1.0, 0.5})
      for (const Shape& shape : kShapes)
        for (Weighting wm : {Weighting::None, Weighting::PerElement, Weighting::PerRow}) {
          if (delta != 1.0 && k != LossKind::Huber) continue;
          SCOPED_TRACE(::testing::Message() << loss_name(k) << " delta " << delta << " "
                                            << shape_str(shape) << " weight " << weighting_name(wm));
          const std::int64_t n = shape_numel(shape), cols = shape.back();
          const auto x = rng.floats(n, -3.f, 3.f);
          const bool bce = k == LossKind::BinaryCrossentropy;
          const auto y = bce ? rng.floats(n, 0.f, 1.f) : rng.floats(n, -3.f, 3.f);
          const Shape row_shape(shape.begin(), shape.end() - 1);
          const auto w = mask(wm == Weighting::PerRow ? n / cols : n);
          const RefLoss ref = ref_elementwise(k, x, y, w, wm, cols, delta);
          Tensor W = wm == Weighting::None ? Tensor()
                                           : put(w, wm == Weighting::PerRow ? row_shape : shape);
          Tensor G = empty_poisoned(shape, dev());
          Tensor L = ops::loss(k, put(x, shape), put(y, shape), G, W, delta);
          EXPECT_EQ(L.shape(), Shape{1});
          EXPECT_TRUE(close_to(L, {ref.value}, {ref.scale}, kRtol)) << "loss";
          // Gradient bound: relative to the largest term's share.
          const double gmax = 3.0 * std::max(delta, 1.0) * 2 / double(n);
          EXPECT_TRUE(close_to(G, ref.grad, {gmax}, kRtol)) << "grad";
        }
}

TEST_P(Losses, SparseCategoricalCrossentropyAndAccuracy) {
  SCOPED_TRACE(seed());
  const std::pair<Shape, std::int64_t> cases[] = {{{1}, 1}, {{7}, 3}, {{4, 9}, 10}, {{3, 50}, 6}, {{1000}, 2}};
  for (const auto& [rows_shape, C] : cases)
    for (bool masked : {false, true}) {
      SCOPED_TRACE(::testing::Message() << shape_str(rows_shape) << " classes " << C << " masked " << masked);
      const std::int64_t rows = shape_numel(rows_shape);
      Shape shape = rows_shape;
      shape.push_back(C);
      const auto x = rng.floats(rows * C, -5.f, 5.f);
      auto t = labels(rows, C);
      const auto w = masked ? mask(rows) : std::vector<float>();
      // A masked row may hold any label (padding): it must not count or fail.
      if (masked)
        for (std::size_t i = 0; i < t.size(); ++i)
          if (w[i] == 0.f) t[i] = -1;
      Tensor X = put(x, shape), T = Tensor::from_vector(t, rows_shape, dev());
      Tensor W = masked ? put(w, rows_shape) : Tensor();
      const RefLoss ref = ref_sparse(LossKind::SparseCategoricalCrossentropy, x, t, w, C);
      Tensor G = empty_poisoned(shape, dev());
      Tensor L = ops::loss(LossKind::SparseCategoricalCrossentropy, X, T, G, W);
      EXPECT_TRUE(close_to(L, {ref.value}, {ref.scale}, kRtol)) << "loss";
      EXPECT_TRUE(close_to(G, ref.grad, {1.0 / double(rows)}, kRtol)) << "grad";
      const RefLoss acc = ref_sparse(LossKind::Accuracy, x, t, w, C);
      EXPECT_TRUE(close_to(ops::metric(LossKind::Accuracy, X, T, W), {acc.value}, {0.0}, 1e-6))
          << "accuracy";
    }
}

TEST_P(Losses, MetricsMatchTheirDefinitions) {
  SCOPED_TRACE(seed());
  const Shape shape{6, 7, 3};
  const std::int64_t n = shape_numel(shape);
  const auto x = rng.floats(n, -2.f, 2.f), y = rng.floats(n, -2.f, 2.f);
  const auto labels01 = rng.floats(n, 0.f, 1.f);
  std::vector<float> y01(labels01.size());
  for (std::size_t i = 0; i < y01.size(); ++i) y01[i] = labels01[i] > 0.5f ? 1.f : 0.f;
  const auto w = mask(6 * 7);
  for (bool masked : {false, true}) {
    SCOPED_TRACE(masked ? "masked" : "unmasked");
    const Weighting wm = masked ? Weighting::PerRow : Weighting::None;
    Tensor W = masked ? put(w, {6, 7}) : Tensor();
    const RefLoss mae = ref_elementwise(LossKind::MeanAbsoluteError, x, y, w, wm, 3, 1.0);
    EXPECT_TRUE(close_to(ops::metric(LossKind::MeanAbsoluteError, put(x, shape), put(y, shape), W),
                         {mae.value}, {mae.scale}, kRtol));
    const RefLoss bacc = ref_elementwise(LossKind::BinaryAccuracy, x, y01, w, wm, 3, 1.0);
    EXPECT_TRUE(close_to(ops::metric(LossKind::BinaryAccuracy, put(x, shape), put(y01, shape), W),
                         {bacc.value}, {0.0}, 1e-6));
  }
}

// The masking rule: a masked loss equals the same loss over only the unmasked
// time steps, and padded steps get zero gradient, whatever they hold.
TEST_P(Losses, MaskedEqualsUnmaskedOverTheKeptSteps) {
  SCOPED_TRACE(seed());
  const std::int64_t B = 3, T = 8, C = 5;
  const auto m = mask(B * T);
  std::vector<std::size_t> kept;
  for (std::size_t r = 0; r < m.size(); ++r)
    if (m[r] != 0.f) kept.push_back(r);
  const std::int64_t K = std::int64_t(kept.size());
  auto gather = [&](const std::vector<float>& v) {
    std::vector<float> out;
    for (std::size_t r : kept) out.insert(out.end(), v.begin() + std::ptrdiff_t(r * C), v.begin() + std::ptrdiff_t((r + 1) * C));
    return out;
  };
  for (LossKind k : {LossKind::MeanAbsoluteError, LossKind::MeanSquaredError, LossKind::Huber,
                     LossKind::BinaryCrossentropy, LossKind::SparseCategoricalCrossentropy}) {
    SCOPED_TRACE(loss_name(k));
    auto x = rng.floats(B * T * C, -3.f, 3.f);
    const auto y = rng.floats(B * T * C, 0.f, 1.f);
    auto t = labels(B * T, C);
    for (std::size_t r = 0; r < m.size(); ++r)
      if (m[r] == 0.f) x[r * C] = NAN, t[r] = 99;  // padding holds garbage
    const bool sparse = k == LossKind::SparseCategoricalCrossentropy;
    std::vector<std::int32_t> tk;
    for (std::size_t r : kept) tk.push_back(t[r]);
    Tensor target = sparse ? Tensor::from_vector(t, {B, T}, dev()) : put(y, {B, T, C});
    Tensor target_k = sparse ? Tensor::from_vector(tk, {K}, dev()) : put(gather(y), {K, C});
    Tensor G = empty_poisoned({B, T, C}, dev()), Gk = empty_poisoned({K, C}, dev());
    const float masked = ops::loss(k, put(x, {B, T, C}), target, G, put(m, {B, T})).to_vector<float>()[0];
    const float plain = ops::loss(k, put(gather(x), {K, C}), target_k, Gk).to_vector<float>()[0];
    EXPECT_NEAR(masked, plain, 1e-5 * (std::abs(plain) + 1e-3)) << "masked " << masked << " plain " << plain;
    const auto g = G.to_vector<float>(), gk = Gk.to_vector<float>();
    for (std::size_t r = 0, j = 0; r < m.size(); ++r) {
      for (std::int64_t c = 0; c < C; ++c) {
        if (m[r] == 0.f) {
          EXPECT_EQ(g[r * C + c], 0.f) << "padded step " << r;
        } else {
          EXPECT_NEAR(g[r * C + c], gk[j * C + c], 1e-6 * (std::abs(gk[j * C + c]) + 1e-3)) << "step " << r;
        }
      }
      if (m[r] != 0.f) ++j;
    }
  }
  // Everything masked: loss 0 and zero gradient, not NaN.
  Tensor G = empty_poisoned({2, 3}, dev());
  const auto L = ops::loss(LossKind::MeanSquaredError, put(rng.floats(6), {2, 3}),
                           put(rng.floats(6), {2, 3}), G, put({0.f, 0.f}, {2})).to_vector<float>();
  EXPECT_EQ(L[0], 0.f);
  for (float v : G.to_vector<float>()) EXPECT_EQ(v, 0.f);
}

TEST_P(Losses, ExtremeLogitsStayFinite) {
  SCOPED_TRACE(seed());
  const std::vector<float> x = {-200.f, -30.f, 0.f, 30.f, 200.f, 88.f};
  const std::vector<float> y = {1.f, 0.f, 1.f, 1.f, 0.f, 0.5f};
  const RefLoss ref = ref_elementwise(LossKind::BinaryCrossentropy, x, y, {}, Weighting::None, 6, 1.0);
  Tensor G = empty_poisoned({1, 6}, dev());
  Tensor L = ops::loss(LossKind::BinaryCrossentropy, put(x, {1, 6}), put(y, {1, 6}), G);
  EXPECT_TRUE(close_to(L, {ref.value}, {ref.scale}, kRtol));
  EXPECT_TRUE(close_to(G, ref.grad, {0.2}, kRtol));
  // Logits far beyond exp's range: the max is subtracted first.
  const std::vector<float> z = {1000.f, -1000.f, 999.f, 0.f, -3.f, 5.f};
  const std::vector<std::int32_t> t = {1, 0};
  const RefLoss sref = ref_sparse(LossKind::SparseCategoricalCrossentropy, z, t, {}, 3);
  Tensor SG = empty_poisoned({2, 3}, dev());
  Tensor SL = ops::loss(LossKind::SparseCategoricalCrossentropy, put(z, {2, 3}),
                        Tensor::from_vector(t, {2}, dev()), SG);
  EXPECT_TRUE(close_to(SL, {sref.value}, {sref.scale}, kRtol));
  EXPECT_TRUE(close_to(SG, sref.grad, {0.5}, kRtol));
}

TEST_P(Losses, BadArgumentsAreClearErrors) {
  Tensor x = put(rng.floats(6), {2, 3}), g = empty_poisoned({2, 3}, dev());
  EXPECT_THROW(ops::loss(LossKind::MeanSquaredError, x, put(rng.floats(3), {3}), g), ShapeError);
  EXPECT_THROW(ops::loss(LossKind::MeanSquaredError, x, x, empty_poisoned({3, 2}, dev())), ShapeError);
  EXPECT_THROW(ops::loss(LossKind::MeanSquaredError, x, x, Tensor()), ValueError);
  EXPECT_THROW(ops::loss(LossKind::Accuracy, x, Tensor::zeros({2}, DType::i32, dev()), g), ValueError);
  EXPECT_THROW(ops::loss(LossKind::SparseCategoricalCrossentropy, x, x, g), DTypeError);
  EXPECT_THROW(ops::loss(LossKind::SparseCategoricalCrossentropy, x,
                         Tensor::zeros({2}, DType::i32, dev()), g, put(rng.floats(6), {2, 3})),
               ShapeError);  // sparse weights are per row
  EXPECT_THROW(ops::loss(LossKind::Huber, x, x, g, {}, 0.0), ValueError);
  EXPECT_THROW(ops::loss(LossKind::MeanSquaredError, x, x, x), ValueError);  // grad overlaps pred
  try {
    ops::loss(LossKind::MeanSquaredError, x, x, g, put(rng.floats(4), {4}));
    ADD_FAILURE() << "a bad weight shape was accepted";
  } catch (const ShapeError& e) {
    EXPECT_NE(e.message().find("'weight'"), std::string::npos) << e.message();
  }
  // A label outside [0, C): a ValueError naming the row on the CPU; NaN on CUDA.
  Tensor bad = Tensor::from_vector(std::vector<std::int32_t>{1, 3}, {2}, dev());
  if (dev().is_cpu()) {
    try {
      ops::loss(LossKind::SparseCategoricalCrossentropy, x, bad, g);
      ADD_FAILURE() << "an out-of-range label was accepted";
    } catch (const ValueError& e) {
      EXPECT_NE(e.message().find("label 3 in row 1"), std::string::npos) << e.message();
    }
  } else {
    const float l = ops::loss(LossKind::SparseCategoricalCrossentropy, x, bad, g).to_vector<float>()[0];
    EXPECT_TRUE(std::isnan(l)) << "loss with an out-of-range label on CUDA: " << l;
  }
}

INSTANTIATE_TEST_SUITE_P(CPU, Losses, ::testing::Values(Device::cpu()),
                         [](const auto&) { return std::string("cpu"); });
INSTANTIATE_TEST_SUITE_P(CUDA, Losses, ::testing::Values(Device::cuda(0)),
                         [](const auto&) { return std::string("cuda0"); });

// ---- finite differences, float64 on the CPU ------------------------------------
TEST(LossGradients, MatchFiniteDifferencesInFloat64) {
  Random rng;
  SCOPED_TRACE("seed " + std::to_string(rng.seed()) + " (RECUR_TEST_SEED)");
  const Device cpu = Device::cpu();
  const Shape shape{3, 4, 5};
  const std::int64_t n = shape_numel(shape);
  const double h = 1e-6;
  std::uniform_int_distribution<int> bit(0, 2);
  std::vector<double> wrow(12), welem(static_cast<std::size_t>(n));
  for (double& v : wrow) v = bit(rng.gen()) ? 1.0 : 0.0;
  for (double& v : welem) v = bit(rng.gen()) ? 1.0 : 0.0;
  wrow[0] = welem[0] = 1.0;
  std::vector<std::int32_t> t(12);
  for (auto& v : t) v = std::int32_t(rng.gen()() % 5);
  for (LossKind k : {LossKind::MeanAbsoluteError, LossKind::MeanSquaredError, LossKind::Huber,
                     LossKind::BinaryCrossentropy, LossKind::SparseCategoricalCrossentropy})
    for (int wmode = 0; wmode < 3; ++wmode) {
      const bool sparse = k == LossKind::SparseCategoricalCrossentropy;
      if (sparse && wmode == 1) continue;  // sparse weights are per row
      SCOPED_TRACE(::testing::Message() << loss_name(k) << " weight mode " << wmode);
      std::vector<double> x = widen(rng.floats(n, -2.f, 2.f));
      std::vector<double> y = widen(k == LossKind::BinaryCrossentropy ? rng.floats(n, 0.f, 1.f)
                                                                       : rng.floats(n, -2.f, 2.f));
      // Keep away from the kinks of |d| and Huber's switch, where no derivative exists.
      for (std::size_t i = 0; i < x.size(); ++i) {
        const double d = std::abs(x[i] - y[i]);
        if (d < 1e-3 || std::abs(d - 0.7) < 1e-3) x[i] += 0.01;
      }
      const Tensor Y = sparse ? Tensor::from_vector(t, {3, 4}, cpu) : Tensor::from_vector(y, shape, cpu);
      const Tensor W = wmode == 0 ? Tensor()
                       : wmode == 1 ? Tensor::from_vector(welem, shape, cpu)
                                    : Tensor::from_vector(wrow, {3, 4}, cpu);
      auto value = [&](const std::vector<double>& xv) {
        Tensor g = Tensor::empty(shape, DType::f64, cpu);
        return ops::loss(k, Tensor::from_vector(xv, shape, cpu), Y, g, W, 0.7).to_vector<double>()[0];
      };
      Tensor G = Tensor::empty(shape, DType::f64, cpu);
      ops::loss(k, Tensor::from_vector(x, shape, cpu), Y, G, W, 0.7);
      const auto g = G.to_vector<double>();
      for (std::int64_t i = 0; i < n; ++i) {
        auto xp = x, xm = x;
        xp[std::size_t(i)] += h;
        xm[std::size_t(i)] -= h;
        const double fd = (value(xp) - value(xm)) / (2 * h);
        EXPECT_NEAR(g[std::size_t(i)], fd, 1e-7 + 1e-6 * std::abs(fd)) << "element " << i;
      }
    }
}

// The CPU sums run over fixed chunks added in order: the same bits whatever
// the number of OpenMP threads (the input is large enough to go parallel).
TEST(LossDeterminism, SameBitsForAnyThreadCount) {
  Random rng;
  const Device cpu = Device::cpu();
  const std::int64_t rows = 300, cols = 400;
  Tensor x = Tensor::from_vector(rng.floats(rows * cols, -3.f, 3.f), {rows, cols}, cpu);
  Tensor y = Tensor::from_vector(rng.floats(rows * cols, -3.f, 3.f), {rows, cols}, cpu);
  Tensor w = Tensor::from_vector(rng.floats(rows, 0.f, 1.f), {rows}, cpu);
  const int threads = kernels::cpu::num_threads();
  std::vector<float> loss, grad;
  std::vector<double> sq;
  for (int t : {1, 2, 3}) {
    kernels::cpu::set_num_threads(t);
    Tensor g = Tensor::empty({rows, cols}, DType::f32, cpu);
    loss.push_back(ops::loss(LossKind::Huber, x, y, g, w).to_vector<float>()[0]);
    sq.push_back(ops::sum_squares(x).to_vector<double>()[0]);
    if (t == 1) grad = g.to_vector<float>();
    else EXPECT_EQ(g.to_vector<float>(), grad) << t << " threads";
  }
  kernels::cpu::set_num_threads(threads);
  EXPECT_EQ(loss[0], loss[1]);
  EXPECT_EQ(loss[0], loss[2]);
  EXPECT_EQ(sq[0], sq[1]);
  EXPECT_EQ(sq[0], sq[2]);
}

}  // namespace
}  // namespace recur::test
