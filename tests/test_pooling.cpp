// Pooling over time (ops::pool1d_*, ops::global_pool1d_*): each backend against
// a float64 reference written here, NaN-poisoned outputs, and the backward by
// central differences in float64 on the CPU.
#include <algorithm>
#include <cmath>

#include "test_util.h"

namespace recur::test {
namespace {

// The ops allocate their outputs. A block poisoned with NaN and freed just
// before is what the caching allocator hands out next for that size, so an
// element a kernel fails to write stays NaN and fails the comparison.
void poison_next(std::int64_t n, Device d) { poison(Tensor::empty({n}, DType::f32, d)); }

struct PoolCase {
  PoolKind kind;
  std::int64_t B, T, C, pool, stride;
  bool same;
  bool masked;  // row 1 fully masked, the others random
};

std::string describe(const PoolCase& c) {
  return std::string(pool_kind_name(c.kind)) + " B" + std::to_string(c.B) + " T" +
         std::to_string(c.T) + " C" + std::to_string(c.C) + " pool" + std::to_string(c.pool) +
         " stride" + std::to_string(c.stride) + (c.same ? " same" : " valid") +
         (c.masked ? " masked" : "");
}

ops::Pool1dOptions options(const PoolCase& c) {
  return {c.kind, c.pool, c.stride, c.same ? ops::PoolPadding::Same : ops::PoolPadding::Valid};
}

std::vector<double> make_mask(const PoolCase& c, Random& rng) {
  if (!c.masked) return {};
  std::vector<double> m(std::size_t(c.B * c.T));
  std::bernoulli_distribution keep(0.6);
  for (std::int64_t b = 0; b < c.B; ++b)
    for (std::int64_t t = 0; t < c.T; ++t) m[std::size_t(b * c.T + t)] = b == 1 ? 0.0 : keep(rng.gen());
  return m;
}

// The reference: Keras's geometry, written from its definition.
struct Reference {
  std::int64_t out = 0, pad = 0;
  std::vector<double> y;
  std::vector<std::int32_t> argmax;
  std::vector<std::vector<std::int64_t>> windows;  // counted t of each (b, o)
};

Reference reference(const PoolCase& c, const std::vector<float>& x, const std::vector<double>& mask) {
  Reference r;
  if (c.same) {
    r.out = (c.T + c.stride - 1) / c.stride;
    r.pad = std::max<std::int64_t>((r.out - 1) * c.stride + c.pool - c.T, 0) / 2;
  } else {
    r.out = (c.T - c.pool) / c.stride + 1;
  }
  r.y.assign(std::size_t(c.B * r.out * c.C), 0.0);
  r.argmax.assign(r.y.size(), -1);
  for (std::int64_t b = 0; b < c.B; ++b)
    for (std::int64_t o = 0; o < r.out; ++o) {
      std::vector<std::int64_t> w;
      for (std::int64_t t = o * c.stride - r.pad; t < o * c.stride - r.pad + c.pool; ++t)
        if (t >= 0 && t < c.T && (mask.empty() || mask[std::size_t(b * c.T + t)] != 0)) w.push_back(t);
      for (std::int64_t ch = 0; ch < c.C; ++ch) {
        const std::size_t i = std::size_t((b * r.out + o) * c.C + ch);
        if (w.empty()) continue;
        double best = -INFINITY, sum = 0;
        for (std::int64_t t : w) {
          const double v = x[std::size_t((b * c.T + t) * c.C + ch)];
          sum += v;
          if (v > best) {
            best = v;
            r.argmax[i] = std::int32_t(t);
          }
        }
        r.y[i] = c.kind == PoolKind::Max ? best : sum / double(w.size());
      }
      r.windows.push_back(w);
    }
  return r;
}

// dx by scattering each window's dy.
std::vector<double> reference_dx(const PoolCase& c, const Reference& r, const std::vector<float>& dy) {
  std::vector<double> dx(std::size_t(c.B * c.T * c.C), 0.0);
  for (std::int64_t b = 0; b < c.B; ++b)
    for (std::int64_t o = 0; o < r.out; ++o) {
      const auto& w = r.windows[std::size_t(b * r.out + o)];
      for (std::int64_t ch = 0; ch < c.C; ++ch) {
        const std::size_t i = std::size_t((b * r.out + o) * c.C + ch);
        if (w.empty()) continue;
        if (c.kind == PoolKind::Max)
          dx[std::size_t((b * c.T + r.argmax[i]) * c.C + ch)] += dy[i];
        else
          for (std::int64_t t : w) dx[std::size_t((b * c.T + t) * c.C + ch)] += dy[i] / double(w.size());
      }
    }
  return dx;
}

std::vector<PoolCase> cases() {
  std::vector<PoolCase> v;
  for (PoolKind k : {PoolKind::Max, PoolKind::Average})
    for (std::int64_t T : {1, 7, 33})
      for (auto [pool, stride] : {std::pair<std::int64_t, std::int64_t>{1, 1}, {2, 2}, {3, 3}, {3, 1}, {3, 2}, {5, 3}, {2, 7}})
        for (bool same : {false, true})
          for (bool masked : {false, true}) {
            if (!same && T < pool) continue;
            v.push_back({k, 3, T, T == 7 ? 1 : 7, pool, stride, same, masked});
          }
  return v;
}

class Pooling : public ::testing::TestWithParam<Device> {
 protected:
  void SetUp() override { RECUR_SKIP_IF_UNAVAILABLE(GetParam()); }
  Device dev() const { return GetParam(); }
  std::string seed() const { return "seed " + std::to_string(rng.seed()) + " (RECUR_TEST_SEED)"; }
  Random rng;
};

TEST_P(Pooling, ForwardAndBackwardMatchTheReference) {
  SCOPED_TRACE(seed());
  for (const PoolCase& c : cases()) {
    SCOPED_TRACE(describe(c));
    const auto x = rng.floats(c.B * c.T * c.C);
    const auto maskd = make_mask(c, rng);
    const Reference r = reference(c, x, maskd);
    Tensor X = Tensor::from_vector(x, {c.B, c.T, c.C}, dev());
    Tensor M = maskd.empty() ? Tensor()
                             : Tensor::from_vector(std::vector<float>(maskd.begin(), maskd.end()),
                                                   {c.B, c.T}, dev());
    ASSERT_EQ(ops::pool1d_output_length(c.T, options(c)), r.out);
    poison_next(c.B * r.out * c.C, dev());
    ops::PoolResult p = ops::pool1d_forward(X, options(c), M);
    ASSERT_EQ(p.y.shape(), (Shape{c.B, r.out, c.C}));
    EXPECT_TRUE(close_to(p.y, r.y, {1.0}, 1e-6));
    if (c.kind == PoolKind::Max) EXPECT_EQ(p.argmax.to_vector<std::int32_t>(), r.argmax);
    else EXPECT_FALSE(p.argmax.defined());

    const auto dy = rng.floats(c.B * r.out * c.C);
    Tensor DY = Tensor::from_vector(dy, {c.B, r.out, c.C}, dev());
    poison_next(c.B * c.T * c.C, dev());
    Tensor dX = ops::pool1d_backward(DY, c.T,
                                     options(c), M, p.argmax);
    EXPECT_TRUE(close_to(dX, reference_dx(c, r, dy), {1.0}, 1e-5));
  }
}

TEST_P(Pooling, GlobalPoolingMatchesTheReference) {
  SCOPED_TRACE(seed());
  for (PoolKind k : {PoolKind::Max, PoolKind::Average})
    for (std::int64_t T : {1, 7, 33})
      for (bool masked : {false, true}) {
        const PoolCase c{k, 4, T, 7, T, 1, false, masked};
        SCOPED_TRACE(describe(c));
        const auto x = rng.floats(c.B * c.T * c.C);
        const auto maskd = make_mask(c, rng);
        const Reference r = reference(c, x, maskd);
        Tensor M = maskd.empty() ? Tensor()
                                 : Tensor::from_vector(std::vector<float>(maskd.begin(), maskd.end()),
                                                       {c.B, c.T}, dev());
        Tensor X = Tensor::from_vector(x, {c.B, T, c.C}, dev());
        poison_next(c.B * c.C, dev());
        ops::PoolResult p = ops::global_pool1d_forward(k, X, M);
        ASSERT_EQ(p.y.shape(), (Shape{c.B, c.C}));
        EXPECT_TRUE(close_to(p.y, r.y, {1.0}, 1e-6));
        if (masked) {  // the fully masked row outputs 0
          for (std::int64_t ch = 0; ch < c.C; ++ch) {
            EXPECT_EQ(p.y.to_vector<float>()[std::size_t(c.C + ch)], 0.f);
          }
        }
        const auto dy = rng.floats(c.B * c.C);
        Tensor DY = Tensor::from_vector(dy, {c.B, c.C}, dev());
        poison_next(c.B * T * c.C, dev());
        Tensor dX = ops::global_pool1d_backward(k, DY, T, M, p.argmax);
        ASSERT_EQ(dX.shape(), (Shape{c.B, T, c.C}));
        EXPECT_TRUE(close_to(dX, reference_dx(c, r, dy), {1.0}, 1e-5));
      }
}

TEST_P(Pooling, BadArgumentsSayWhatIsWrong) {
  Tensor x = Tensor::zeros({2, 5, 3}, DType::f32, dev());
  auto throws = [](auto f, const char* what) {
    try {
      f();
      ADD_FAILURE() << "no error; expected one mentioning " << what;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  throws([&] { ops::pool1d_forward(x, {PoolKind::Max, 0, 1, ops::PoolPadding::Valid}); }, "pool_size");
  throws([&] { ops::pool1d_forward(x, {PoolKind::Max, 2, -1, ops::PoolPadding::Valid}); }, "strides");
  throws([&] { ops::pool1d_forward(x, {PoolKind::Max, 6, 1, ops::PoolPadding::Valid}); }, "shorter than pool_size");
  throws([&] { ops::pool1d_forward(x.reshape({10, 3}), {}); }, "[B, T, C]");
  throws([&] { ops::pool1d_forward(x, {}, Tensor::zeros({2, 4}, DType::f32, dev())); }, "'mask'");
  throws([&] { ops::pool1d_backward(Tensor::zeros({2, 2, 3}, DType::f32, dev()), 5, {}); }, "argmax");
  throws([&] { ops::pool1d_backward(Tensor::zeros({2, 3, 3}, DType::f32, dev()), 5, {PoolKind::Average}); },
         "'dy' has shape");
  throws([&] { ops::global_pool1d_forward(PoolKind::Max, Tensor::zeros({2, 0, 3}, DType::f32, dev())); },
         "T >= 1");
}

INSTANTIATE_TEST_SUITE_P(CPU, Pooling, ::testing::Values(Device::cpu()),
                         [](const auto&) { return std::string("cpu"); });
INSTANTIATE_TEST_SUITE_P(CUDA, Pooling, ::testing::Values(Device::cuda(0)),
                         [](const auto&) { return std::string("cuda0"); });

// ---- finite differences in float64 on the CPU --------------------------------
// loss = sum(y * w); ops::pool1d_backward(w) must be d(loss)/dx.
void gradient_check(const PoolCase& c, Random& rng, bool global) {
  SCOPED_TRACE(describe(c) + (global ? " global" : ""));
  const Device cpu = Device::cpu();
  const auto xf = rng.floats(c.B * c.T * c.C);  // continuous: no ties
  const auto maskd = make_mask(c, rng);
  Tensor X = Tensor::from_vector(std::vector<double>(xf.begin(), xf.end()), {c.B, c.T, c.C}, cpu);
  Tensor M = maskd.empty() ? Tensor() : Tensor::from_vector(maskd, {c.B, c.T}, cpu);
  auto forward = [&] {
    return global ? ops::global_pool1d_forward(c.kind, X, M) : ops::pool1d_forward(X, options(c), M);
  };
  ops::PoolResult p = forward();
  const auto wf = rng.floats(p.y.numel());
  const std::vector<double> w(wf.begin(), wf.end());
  Tensor W = Tensor::from_vector(w, p.y.shape(), cpu);
  Tensor dX = global ? ops::global_pool1d_backward(c.kind, W, c.T, M, p.argmax)
                     : ops::pool1d_backward(W, c.T, options(c), M, p.argmax);
  auto loss = [&] {
    const auto y = forward().y.to_vector<double>();
    double s = 0;
    for (std::size_t i = 0; i < y.size(); ++i) s += y[i] * w[i];
    return s;
  };
  expect_finite_differences(X, dX.to_vector<double>(), loss, "x");
}

TEST(PoolingGradients, FiniteDifferencesFloat64) {
  Random rng;
  SCOPED_TRACE("seed " + std::to_string(rng.seed()));
  for (PoolKind k : {PoolKind::Max, PoolKind::Average}) {
    gradient_check({k, 3, 7, 2, 3, 2, true, true}, rng, false);
    gradient_check({k, 3, 7, 2, 3, 2, false, false}, rng, false);
    gradient_check({k, 2, 9, 3, 4, 1, true, false}, rng, false);
    gradient_check({k, 3, 8, 1, 2, 3, false, true}, rng, false);
    gradient_check({k, 3, 7, 2, 7, 1, false, true}, rng, true);
    gradient_check({k, 2, 1, 3, 1, 1, false, false}, rng, true);
  }
}

}  // namespace
}  // namespace recur::test
