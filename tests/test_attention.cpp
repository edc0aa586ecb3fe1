// Attention over recurrent states (engine/include/recur/engine/attention.h):
// forward against a float64 host reference written from the formulas, every
// backward by central differences in float64, masked steps (zero weight, zero
// gradient), fully masked rows, Sequential and functional use, JSON configs,
// CUDA against the CPU (skipped without a GPU), and a tiny recall task where
// attention learns.
#include <gtest/gtest.h>

#include <cmath>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "recur/engine/attention.h"
#include "test_util.h"

namespace recur {
namespace {

using test::expect_error;
using test::expect_finite_differences;
using test::Random;
using test::widen;

// ---- the float64 reference ---------------------------------------------------------------
struct RefScore {
  AttentionScore mode = AttentionScore::Dot;
  double pre = 1, post = 1;
  std::vector<double> vec;  // empty: all ones
};

// q [B, Tq, D], k [B, Tv, D], v [B, Tv, Dv], key mask [B, Tv] (empty: none).
std::vector<double> ref_attend(const RefScore& s, const std::vector<double>& q, const std::vector<double>& k,
                               const std::vector<double>& v, const std::vector<double>& km, std::int64_t B,
                               std::int64_t Tq, std::int64_t Tv, std::int64_t D, std::int64_t Dv) {
  std::vector<double> out(std::size_t(B * Tq * Dv), 0.0);
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t i = 0; i < Tq; ++i) {
      std::vector<double> sc(std::size_t(Tv), 0.0);
      double mx = -1e300;
      bool any = false;
      for (std::int64_t j = 0; j < Tv; ++j) {
        if (!km.empty() && km[std::size_t(b * Tv + j)] == 0) continue;
        double acc = 0;
        for (std::int64_t d = 0; d < D; ++d) {
          const double qd = q[std::size_t((b * Tq + i) * D + d)], kd = k[std::size_t((b * Tv + j) * D + d)];
          if (s.mode == AttentionScore::Dot)
            acc += qd * kd;
          else
            acc += (s.vec.empty() ? 1.0 : s.vec[std::size_t(d)]) * std::tanh(s.pre * (qd + kd));
        }
        sc[std::size_t(j)] = s.post * acc;
        mx = std::max(mx, sc[std::size_t(j)]);
        any = true;
      }
      if (!any) continue;
      double z = 0;
      std::vector<double> a(std::size_t(Tv), 0.0);
      for (std::int64_t j = 0; j < Tv; ++j) {
        if (!km.empty() && km[std::size_t(b * Tv + j)] == 0) continue;
        a[std::size_t(j)] = std::exp(sc[std::size_t(j)] - mx);
        z += a[std::size_t(j)];
      }
      for (std::int64_t j = 0; j < Tv; ++j)
        for (std::int64_t e = 0; e < Dv; ++e)
          out[std::size_t((b * Tq + i) * Dv + e)] += a[std::size_t(j)] / z * v[std::size_t((b * Tv + j) * Dv + e)];
    }
  return out;
}

// ---- binding and running a layer (single-input or merge) ---------------------------------
struct Bound {
  LayerPtr layer;
  std::unique_ptr<ParameterStore> store;
};

// Built for `in`, bound to its own store, every parameter drawn from uniform(-0.8, 0.8).
Bound bind(LayerPtr l, const std::vector<Shape>& in, Device dev, DType dt, std::uint64_t seed) {
  Bound b{std::move(l), std::make_unique<ParameterStore>(dev, dt)};
  if (auto* m = dynamic_cast<MergeLayer*>(b.layer.get()))
    m->build(in, dt);
  else
    b.layer->build(in[0], dt);
  b.layer->declare(*b.store);
  b.store->allocate();
  b.layer->bind(*b.store);
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<double> u(-0.8, 0.8);
  std::vector<double> v(std::size_t(b.store->buffer_numel()));
  for (double& x : v) x = u(g);
  if (v.empty()) return b;
  if (dt == DType::f64)
    b.store->values().copy_from(Tensor::from_vector(v, {std::int64_t(v.size())}, Device::cpu()));
  else
    b.store->values().copy_from(
        Tensor::from_vector(std::vector<float>(v.begin(), v.end()), {std::int64_t(v.size())}, Device::cpu()));
  return b;
}

Tensor make(const std::vector<double>& v, const Shape& s, DType dt, Device dev = Device::cpu()) {
  if (dt == DType::f64) return Tensor::from_vector(v, s, dev);
  return Tensor::from_vector(std::vector<float>(v.begin(), v.end()), s, dev);
}

std::vector<double> host(const Tensor& t) {
  if (t.dtype() == DType::f64) return t.to_vector<double>();
  return widen(t.to_vector<float>());
}

// A parameter's values by name (empty when the layer has none of that name).
std::vector<double> param(const Layer& l, const std::string& name) {
  for (std::size_t k = 0; k < l.params().size(); ++k)
    if (l.params()[k].name == name) return host(l.value(k));
  return {};
}

Tensor run_forward(Layer& l, const std::vector<Tensor>& xs, const std::vector<Tensor>& masks, bool training) {
  if (auto* m = dynamic_cast<MergeLayer*>(&l)) return m->forward(xs, masks, training);
  return l.forward(xs[0], masks.empty() ? Tensor() : masks[0], training);
}

std::vector<Tensor> run_backward(Layer& l, const Tensor& dy) {
  if (auto* m = dynamic_cast<MergeLayer*>(&l)) return m->backward(dy);
  return {l.backward(dy)};
}

// A random 0/1 mask [B, T]: row 0 all valid, row 1 right-padded, the rest
// random with at least one valid step, and row `empty_row` (if >= 0) all padding.
std::vector<double> random_mask(std::int64_t B, std::int64_t T, std::mt19937_64& g, std::int64_t empty_row) {
  std::vector<double> m(std::size_t(B * T), 1.0);
  std::bernoulli_distribution keep(0.6);
  for (std::int64_t b = 1; b < B; ++b) {
    bool any = false;
    for (std::int64_t t = 0; t < T; ++t) {
      double& x = m[std::size_t(b * T + t)];
      x = b == 1 ? (t < T - 2 ? 1.0 : 0.0) : (keep(g) ? 1.0 : 0.0);
      any = any || x != 0;
    }
    if (!any) m[std::size_t(b * T)] = 1.0;
  }
  if (empty_row >= 0)
    for (std::int64_t t = 0; t < T; ++t) m[std::size_t(empty_row * T + t)] = 0.0;
  return m;
}

// ---- the cases ---------------------------------------------------------------------------
enum class Kind { Merge, Pooling, Hierarchical };

struct Case {
  std::string label;
  Kind kind = Kind::Merge;
  std::function<LayerPtr()> make;
  // Merge: [query, value(, key)] feature sizes; pooling: {D}.
  std::vector<std::int64_t> dims;
  bool masked = true;
};
void PrintTo(const Case& c, std::ostream* os) { *os << c.label; }

AttentionPoolingOptions popt(AttentionScore s, AttentionQuery q, bool scale) {
  AttentionPoolingOptions o;
  o.score = s;
  o.query = q;
  o.use_scale = scale;
  return o;
}

std::vector<Case> cases() {
  using std::make_shared;
  const auto Dot = AttentionScore::Dot, Add = AttentionScore::Additive;
  const auto Learned = AttentionQuery::Learned, Last = AttentionQuery::Last;
  std::vector<Case> v;
  v.push_back({"attention_dot", Kind::Merge, [] { return make_shared<Attention>(); }, {3, 3}});
  v.push_back({"attention_dot_scale_key", Kind::Merge, [] { return make_shared<Attention>(true); }, {3, 2, 3}});
  v.push_back({"attention_concat", Kind::Merge, [=] { return make_shared<Attention>(false, Add); }, {3, 3}});
  v.push_back(
      {"attention_concat_scale_key", Kind::Merge, [=] { return make_shared<Attention>(true, Add); }, {2, 4, 2}});
  v.push_back({"additive_scale", Kind::Merge, [] { return make_shared<AdditiveAttention>(); }, {3, 3}});
  v.push_back({"additive_no_scale_key", Kind::Merge, [] { return make_shared<AdditiveAttention>(false); },
               {3, 2, 3}});
  v.push_back({"attention_dot_unmasked", Kind::Merge, [] { return make_shared<Attention>(true); }, {3, 3}, false});
  for (auto s : {Dot, Add})
    for (auto q : {Learned, Last})
      for (bool scale : {false, true}) {
        const std::string tag = std::string(attention_score_name(s)) + "_" + attention_query_name(q) +
                                (scale ? "_scale" : "");
        v.push_back({"pooling_" + tag, Kind::Pooling,
                     [=] { return make_shared<AttentionPooling>(popt(s, q, scale)); }, {3}});
        v.push_back({"hierarchical_" + tag, Kind::Hierarchical,
                     [=] { return make_shared<HierarchicalAttention>(3, popt(s, q, scale)); }, {3}});
      }
  v.push_back({"pooling_unmasked_last", Kind::Pooling,
               [=] { return make_shared<AttentionPooling>(popt(Dot, Last, true)); }, {3}, false});
  v.push_back({"hierarchical_unmasked_additive", Kind::Hierarchical,
               [=] { return make_shared<HierarchicalAttention>(3, popt(Add, Learned, true)); }, {3}, false});
  return v;
}

// Random inputs for a case: B = 4, Tq = 3, T(v) = 8 (hierarchical: 3 chunks of
// 3, the last partial), masks on every input, one key row fully masked.
struct Inputs {
  std::vector<std::vector<double>> x;
  std::vector<Shape> shapes;       // with batch
  std::vector<Shape> decl;         // without batch, time as kAnyDim
  std::vector<std::vector<double>> masks;
};
constexpr std::int64_t kB = 4, kTq = 3, kT = 8;

Inputs make_inputs(const Case& c, std::mt19937_64& g) {
  Inputs in;
  std::uniform_real_distribution<double> u(-1, 1);
  auto add = [&](std::int64_t T, std::int64_t D) {
    in.shapes.push_back({kB, T, D});
    in.decl.push_back({kAnyDim, D});
    std::vector<double> x(std::size_t(kB * T * D));
    for (double& e : x) e = u(g);
    in.x.push_back(std::move(x));
  };
  if (c.kind == Kind::Merge) {
    add(kTq, c.dims[0]);
    add(kT, c.dims[1]);
    if (c.dims.size() == 3) add(kT, c.dims[2]);
    if (c.masked) {
      in.masks.push_back(random_mask(kB, kTq, g, -1));
      in.masks.push_back(random_mask(kB, kT, g, 3));
      if (c.dims.size() == 3) in.masks.push_back(random_mask(kB, kT, g, -1));
    }
  } else {
    add(kT, c.dims[0]);
    if (c.masked) in.masks.push_back(random_mask(kB, kT, g, 3));
  }
  return in;
}

std::vector<Tensor> tensors(const Inputs& in, DType dt, Device dev = Device::cpu()) {
  std::vector<Tensor> t;
  for (std::size_t i = 0; i < in.x.size(); ++i) t.push_back(make(in.x[i], in.shapes[i], dt, dev));
  return t;
}
std::vector<Tensor> mask_tensors(const Inputs& in, DType dt, Device dev = Device::cpu()) {
  std::vector<Tensor> t;
  for (std::size_t i = 0; i < in.masks.size(); ++i)
    t.push_back(make(in.masks[i], {in.shapes[i][0], in.shapes[i][1]}, dt, dev));
  return t;
}

// The pooling's score parameters at one level ("" or "chunk_").
RefScore pooling_score(const Layer& l, AttentionScore mode, const std::string& prefix) {
  RefScore s;
  s.mode = mode;
  const std::vector<double> sc = param(l, prefix + "scale");
  if (!sc.empty()) {
    if (mode == AttentionScore::Dot)
      s.post = sc[0];
    else
      s.vec = sc;
  }
  return s;
}

// The reference output of a case's layer for its inputs.
std::vector<double> reference(const Case& c, const Layer& l, const Inputs& in) {
  const std::vector<double> none;
  if (c.kind == Kind::Merge) {
    RefScore s;
    const bool additive = std::string(l.type()) == "AdditiveAttention";
    const auto& at = dynamic_cast<const AttentionMerge&>(l);
    s.mode = at.score_mode();
    const std::vector<double> sc = param(l, "scale"), cw = param(l, "concat_score_weight");
    if (additive) {
      s.vec = sc;
    } else if (s.mode == AttentionScore::Dot) {
      if (!sc.empty()) s.post = sc[0];
    } else {
      if (!sc.empty()) s.pre = sc[0];
      s.post = cw[0];
    }
    const std::size_t ki = in.x.size() == 3 ? 2 : 1;
    const std::int64_t D = in.shapes[0][2], Dv = in.shapes[1][2];
    std::vector<double> out = ref_attend(s, in.x[0], in.x[ki], in.x[1], in.masks.empty() ? none : in.masks[1], kB,
                                         kTq, kT, D, Dv);
    if (!in.masks.empty())
      for (std::int64_t r = 0; r < kB * kTq; ++r)
        for (std::int64_t e = 0; e < Dv; ++e) out[std::size_t(r * Dv + e)] *= in.masks[0][std::size_t(r)];
    return out;
  }
  const auto& o = c.kind == Kind::Pooling ? dynamic_cast<const AttentionPooling&>(l).options()
                                          : dynamic_cast<const HierarchicalAttention&>(l).options();
  const std::int64_t D = in.shapes[0][2], T = kT;
  const std::vector<double>& x = in.x[0];
  const std::vector<double>& m = in.masks.empty() ? none : in.masks[0];
  auto valid = [&](std::int64_t b, std::int64_t t) { return m.empty() || m[std::size_t(b * T + t)] != 0; };
  // The query of each row: learned, or the last valid state (0 when none).
  auto query = [&](const std::string& prefix) {
    std::vector<double> q(std::size_t(kB * D), 0.0);
    const std::vector<double> learned = param(l, prefix + "query");
    for (std::int64_t b = 0; b < kB; ++b) {
      if (o.query == AttentionQuery::Learned) {
        std::copy(learned.begin(), learned.end(), q.begin() + b * D);
        continue;
      }
      for (std::int64_t t = T - 1; t >= 0; --t)
        if (valid(b, t)) {
          std::copy(x.begin() + (b * T + t) * D, x.begin() + (b * T + t + 1) * D, q.begin() + b * D);
          break;
        }
    }
    return q;
  };
  if (c.kind == Kind::Pooling) return ref_attend(pooling_score(l, o.score, ""), query(""), x, x, m, kB, 1, T, D, D);
  // Hierarchical: each chunk directly, then the summaries.
  const std::int64_t C = dynamic_cast<const HierarchicalAttention&>(l).chunk_size(), n = (T + C - 1) / C;
  const std::vector<double> q1 = query("chunk_"), q2 = query("");
  std::vector<double> summaries(std::size_t(kB * n * D)), cmask(std::size_t(kB * n), 0.0);
  for (std::int64_t b = 0; b < kB; ++b)
    for (std::int64_t ch = 0; ch < n; ++ch) {
      const std::int64_t t0 = ch * C, len = std::min(C, T - t0);
      std::vector<double> keys(x.begin() + (b * T + t0) * D, x.begin() + (b * T + t0 + len) * D), km;
      for (std::int64_t t = t0; t < t0 + len; ++t) km.push_back(valid(b, t) ? 1.0 : 0.0);
      for (double e : km) cmask[std::size_t(b * n + ch)] = std::max(cmask[std::size_t(b * n + ch)], e);
      const std::vector<double> qb(q1.begin() + b * D, q1.begin() + (b + 1) * D);
      const std::vector<double> sm = ref_attend(pooling_score(l, o.score, "chunk_"), qb, keys, keys, km, 1, 1, len, D, D);
      std::copy(sm.begin(), sm.end(), summaries.begin() + (b * n + ch) * D);
    }
  return ref_attend(pooling_score(l, o.score, ""), q2, summaries, summaries, cmask, kB, 1, n, D, D);
}

std::string case_name(const ::testing::TestParamInfo<Case>& i) { return i.param.label; }

class AttentionCases : public ::testing::TestWithParam<Case> {};

// Forward in float32 and float64 against the reference.
TEST_P(AttentionCases, ForwardMatchesFloat64Reference) {
  const Case& c = GetParam();
  Random rng;
  SCOPED_TRACE(c.label + ", seed " + std::to_string(rng.seed()) + " (RECUR_TEST_SEED)");
  const Inputs in = make_inputs(c, rng.gen());
  for (DType dt : {DType::f32, DType::f64}) {
    Bound b = bind(c.make(), in.decl, Device::cpu(), dt, rng.seed());
    const Tensor y = run_forward(*b.layer, tensors(in, dt), mask_tensors(in, dt), false);
    const std::vector<double> ref = reference(c, *b.layer, in), got = host(y);
    ASSERT_EQ(got.size(), ref.size());
    const double tol = dt == DType::f32 ? 2e-5 : 1e-12;
    for (std::size_t i = 0; i < ref.size(); ++i) {
      ASSERT_FALSE(std::isnan(got[i])) << dtype_name(dt) << " [" << i << "]";
      EXPECT_NEAR(got[i], ref[i], tol * (1 + std::abs(ref[i]))) << dtype_name(dt) << " [" << i << "]";
    }
  }
}

// Every input and every parameter's gradient by central differences (float64).
TEST_P(AttentionCases, BackwardMatchesCentralDifferences) {
  const Case& c = GetParam();
  Random rng;
  SCOPED_TRACE(c.label + ", seed " + std::to_string(rng.seed()) + " (RECUR_TEST_SEED)");
  const Inputs in = make_inputs(c, rng.gen());
  Bound b = bind(c.make(), in.decl, Device::cpu(), DType::f64, rng.seed());
  const std::vector<Tensor> xs = tensors(in, DType::f64), ms = mask_tensors(in, DType::f64);
  const Tensor y = run_forward(*b.layer, xs, ms, true);
  const std::vector<double> r = widen(rng.floats(y.numel()));
  b.store->zero_grads();
  const std::vector<Tensor> dxs = run_backward(*b.layer, Tensor::from_vector(r, y.shape(), Device::cpu()));
  auto loss = [&] {
    const std::vector<double> v = host(run_forward(*b.layer, xs, ms, false));
    double s = 0;
    for (std::size_t i = 0; i < v.size(); ++i) s += v[i] * r[i];
    return s;
  };
  ASSERT_GT(b.layer->params().size() + xs.size(), 0u);
  for (std::size_t k = 0; k < b.layer->params().size(); ++k)
    expect_finite_differences(b.layer->value(k), host(b.layer->grad(k)), loss, b.layer->params()[k].name);
  ASSERT_EQ(dxs.size(), xs.size());
  for (std::size_t i = 0; i < xs.size(); ++i) {
    ASSERT_TRUE(dxs[i].defined());
    ASSERT_EQ(dxs[i].shape(), xs[i].shape());
    expect_finite_differences(xs[i], host(dxs[i]), loss, "input " + std::to_string(i));
  }
}

// Masked keys get exactly zero weight: changing their values leaves the
// output bit for bit unchanged, and their gradient is exactly zero; a fully
// masked row outputs zeros (no NaN) and passes no gradient.
TEST_P(AttentionCases, MaskedStepsGetZeroWeightAndZeroGradient) {
  const Case& c = GetParam();
  if (!c.masked) GTEST_SKIP() << "unmasked case";
  Random rng;
  SCOPED_TRACE(c.label + ", seed " + std::to_string(rng.seed()) + " (RECUR_TEST_SEED)");
  const Inputs in = make_inputs(c, rng.gen());
  Bound b = bind(c.make(), in.decl, Device::cpu(), DType::f32, rng.seed());
  const std::size_t vi = c.kind == Kind::Merge ? 1 : 0;  // the input the key mask belongs to
  const std::int64_t T = in.shapes[vi][1];
  Inputs changed = in;
  std::uniform_real_distribution<double> big(-50, 50);
  for (std::size_t i = vi; i < in.x.size(); ++i) {
    const std::int64_t D = in.shapes[i][2];
    for (std::int64_t bt = 0; bt < kB * T; ++bt)
      if (in.masks[vi][std::size_t(bt)] == 0)
        for (std::int64_t d = 0; d < D; ++d) changed.x[i][std::size_t(bt * D + d)] = big(rng.gen());
  }
  const Tensor y = run_forward(*b.layer, tensors(in, DType::f32), mask_tensors(in, DType::f32), true);
  const std::vector<double> y0 = host(y);
  const std::vector<Tensor> dxs = run_backward(*b.layer, Tensor::full(y.shape(), 1.0, DType::f32, Device::cpu()));
  const std::vector<double> y1 =
      host(run_forward(*b.layer, tensors(changed, DType::f32), mask_tensors(in, DType::f32), false));
  EXPECT_EQ(y0, y1);
  for (double e : y0) ASSERT_FALSE(std::isnan(e));
  for (std::size_t i = vi; i < in.x.size(); ++i) {
    const std::vector<double> dx = host(dxs[i]);
    const std::int64_t D = in.shapes[i][2];
    for (std::int64_t bt = 0; bt < kB * T; ++bt)
      if (in.masks[vi][std::size_t(bt)] == 0) {
        for (std::int64_t d = 0; d < D; ++d) EXPECT_EQ(dx[std::size_t(bt * D + d)], 0.0) << "input " << i;
      }
  }
  // Row 3's keys are all masked: zero output, zero gradient everywhere in the row.
  const std::int64_t rows = c.kind == Kind::Merge ? kTq : 1, Dout = y.dim(-1);
  for (std::int64_t e = 3 * rows * Dout; e < 4 * rows * Dout; ++e) EXPECT_EQ(y0[std::size_t(e)], 0.0);
  for (std::size_t i = 0; i < in.x.size(); ++i) {
    const std::vector<double> dx = host(dxs[i]);
    const std::int64_t per_row = in.shapes[i][1] * in.shapes[i][2];
    for (std::int64_t e = 3 * per_row; e < 4 * per_row; ++e) {
      EXPECT_EQ(dx[std::size_t(e)], 0.0) << "input " << i;
    }
  }
}

// The same on the GPU: forward, input and parameter gradients against the CPU.
TEST_P(AttentionCases, CUDAMatchesCpu) {
  const Device gpu = Device::cuda(0);
  RECUR_SKIP_IF_UNAVAILABLE(gpu);
  const Case& c = GetParam();
  Random rng;
  SCOPED_TRACE(c.label + ", seed " + std::to_string(rng.seed()) + " (RECUR_TEST_SEED)");
  const Inputs in = make_inputs(c, rng.gen());
  Bound cpu = bind(c.make(), in.decl, Device::cpu(), DType::f32, rng.seed());
  Bound cuda = bind(c.make(), in.decl, gpu, DType::f32, rng.seed());
  if (cpu.store->buffer_numel() > 0) cuda.store->values().copy_from(cpu.store->values());
  const std::vector<double> r = widen(rng.floats(kB * kTq * 8));
  std::vector<std::vector<double>> results[2];
  for (int side = 0; side < 2; ++side) {
    Bound& b = side == 0 ? cpu : cuda;
    const Device dev = side == 0 ? Device::cpu() : gpu;
    const Tensor y = run_forward(*b.layer, tensors(in, DType::f32, dev), mask_tensors(in, DType::f32, dev), true);
    b.store->zero_grads();
    const std::vector<double> dy(r.begin(), r.begin() + y.numel());
    const std::vector<Tensor> dxs = run_backward(*b.layer, make(dy, y.shape(), DType::f32, dev));
    results[side].push_back(host(y));
    for (const Tensor& dx : dxs) results[side].push_back(host(dx));
    if (b.store->buffer_numel() > 0) results[side].push_back(host(b.store->grads()));
  }
  ASSERT_EQ(results[0].size(), results[1].size());
  for (std::size_t k = 0; k < results[0].size(); ++k) {
    ASSERT_EQ(results[0][k].size(), results[1][k].size());
    for (std::size_t i = 0; i < results[0][k].size(); ++i) {
      ASSERT_FALSE(std::isnan(results[1][k][i])) << "result " << k << " [" << i << "]";
      EXPECT_NEAR(results[1][k][i], results[0][k][i], 1e-4 * (1 + std::abs(results[0][k][i])))
          << "result " << k << " [" << i << "]";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(All, AttentionCases, ::testing::ValuesIn(cases()), case_name);

// ---- models ------------------------------------------------------------------------------
// Embedding(mask_zero) -> LSTM(return_sequences) -> AttentionPooling(last) -> Dense:
// Keras-style summary counts, and every parameter's gradient of the model's
// loss by central differences (the mask flows from the ids to the attention).
TEST(AttentionModels, SequentialLstmAttentionGradient) {
  Random rng;
  SCOPED_TRACE("seed " + std::to_string(rng.seed()) + " (RECUR_TEST_SEED)");
  for (bool hierarchical : {false, true}) {
    Sequential m;
    m.add(std::make_shared<Embedding>(7, 3, true)).add(LSTM(4, true));
    if (hierarchical)
      m.add(std::make_shared<HierarchicalAttention>(
          2, popt(AttentionScore::Additive, AttentionQuery::Learned, true)));
    else
      m.add(std::make_shared<AttentionPooling>(popt(AttentionScore::Dot, AttentionQuery::Last, true)));
    m.add(std::make_shared<Dense>(1));
    m.build({kAnyDim}, Device::cpu(), DType::f64, rng.seed());
    // LSTM 4 * 4 * (3 + 4 + 1) = 128; attention: last + dot scale 1, or
    // 2 learned queries and 2 additive scale vectors of 4 = 16.
    EXPECT_EQ(m.layers()[2]->count_params(), hierarchical ? 16 : 1);
    EXPECT_EQ(m.count_params(), 21 + 128 + (hierarchical ? 16 : 1) + 5);
    EXPECT_NE(m.summary().find(hierarchical ? "HierarchicalAttention" : "AttentionPooling"), std::string::npos);
    std::vector<double> v = widen(rng.floats(m.parameters().buffer_numel(), -0.6f, 0.6f));
    m.parameters().values().copy_from(Tensor::from_vector(v, {std::int64_t(v.size())}, Device::cpu()));
    const Tensor ids = Tensor::from_vector(std::vector<std::int32_t>{1, 2, 3, 4, 5, 6, 0, 0, 3, 0, 0, 0, 5, 2, 1},
                                           {3, 5}, Device::cpu());
    const Tensor target = Tensor::from_vector(widen(rng.floats(3)), {3, 1}, Device::cpu());
    auto loss_and_grad = [&](bool backward) {
      const Sequential::Output o = m.forward(ids, {}, backward);
      EXPECT_FALSE(o.mask.defined());
      Tensor g = Tensor::empty(o.y.shape(), DType::f64, Device::cpu());
      const double l = ops::loss(LossKind::MeanSquaredError, o.y, target, g).to_vector<double>()[0];
      if (backward) {
        m.parameters().zero_grads();
        m.backward(g);
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
}

// A functional model: query and value sequences -> Attention (with the
// masks) -> GlobalAveragePooling1D -> Dense. The query's mask reaches the
// pooling; gradients by central differences; names in PyTorch style.
TEST(AttentionModels, FunctionalAttentionGradientAndMask) {
  Random rng;
  SCOPED_TRACE("seed " + std::to_string(rng.seed()) + " (RECUR_TEST_SEED)");
  NodeRef q = Input({kAnyDim, 3}, "q");
  NodeRef v = Input({kAnyDim, 3}, "v");
  NodeRef a = call(std::make_shared<Attention>(true, AttentionScore::Additive, "att"), {q, v});
  NodeRef h = call(std::make_shared<GlobalPooling1D>(PoolKind::Average), a);
  NodeRef y = call(std::make_shared<Dense>(2), h);
  Model m({q, v}, {y});
  m.build(Device::cpu(), DType::f64, rng.seed());
  EXPECT_EQ(m.layer("att").count_params(), 2);
  EXPECT_EQ(m.parameters().name(0), "att.scale");
  EXPECT_EQ(m.parameters().name(1), "att.concat_score_weight");
  std::vector<double> pv = widen(rng.floats(m.parameters().buffer_numel(), -0.8f, 0.8f));
  m.parameters().values().copy_from(Tensor::from_vector(pv, {std::int64_t(pv.size())}, Device::cpu()));
  const Tensor xq = Tensor::from_vector(widen(rng.floats(2 * 3 * 3)), {2, 3, 3}, Device::cpu());
  const Tensor xv = Tensor::from_vector(widen(rng.floats(2 * 5 * 3)), {2, 5, 3}, Device::cpu());
  const Tensor mq = Tensor::from_vector(std::vector<double>{1, 1, 1, 1, 0, 0}, {2, 3}, Device::cpu());
  const Tensor mv = Tensor::from_vector(std::vector<double>{1, 1, 1, 0, 0, 0, 1, 1, 1, 1}, {2, 5}, Device::cpu());
  const Tensor target = Tensor::from_vector(widen(rng.floats(4)), {2, 2}, Device::cpu());
  auto loss_and_grad = [&](bool backward) {
    const Model::Output o = m.forward({xq, xv}, {mq, mv}, backward).front();
    Tensor g = Tensor::empty(o.y.shape(), DType::f64, Device::cpu());
    const double l = ops::loss(LossKind::MeanSquaredError, o.y, target, g).to_vector<double>()[0];
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
  // The attention output's mask is the query's.
  Attention att;
  att.build({{kAnyDim, 3}, {kAnyDim, 3}}, DType::f64);
  const Tensor mm = att.merged_mask({mq, mv});
  EXPECT_EQ(mm.to_vector<double>(), mq.to_vector<double>());
  EXPECT_FALSE(att.merged_mask({Tensor(), mv}).defined());
}

// ---- configs and errors ---------------------------------------------------------------------
TEST(AttentionConfig, RoundTripsSequentialAndFunctional) {
  const std::string seq = R"({"input_shape": [null], "layers": [
      {"type": "Embedding", "input_dim": 50, "output_dim": 8, "mask_zero": true},
      {"type": "LSTM", "units": 6, "return_sequences": true},
      {"type": "AttentionPooling", "score_mode": "additive", "query": "last", "use_scale": true},
      {"type": "Dense", "units": 1}]})";
  ModelConfig c = model_config_from_json(seq, "seq");
  c.model->build(c.input_shape, Device::cpu(), c.dtype, 1);
  const std::string text = model_config_to_json(*c.model);
  EXPECT_NE(text.find("\"query\": \"last\""), std::string::npos) << text;
  ModelConfig c2 = model_config_from_json(text, "again");
  c2.model->build(c2.input_shape, Device::cpu(), c2.dtype, 1);
  EXPECT_EQ(model_config_to_json(*c2.model), text);
  EXPECT_EQ(c2.model->count_params(), c.model->count_params());

  const std::string hier = R"({"input_shape": [null, 4], "layers": [
      {"type": "GRU", "units": 5, "return_sequences": true},
      {"type": "HierarchicalAttention", "chunk_size": 10, "score_mode": "dot", "use_scale": false}]})";
  ModelConfig h = model_config_from_json(hier, "hier");
  h.model->build(h.input_shape, Device::cpu(), h.dtype, 1);
  const std::string htext = model_config_to_json(*h.model);
  EXPECT_NE(htext.find("\"chunk_size\": 10"), std::string::npos) << htext;
  ModelConfig h2 = model_config_from_json(htext, "again");
  h2.model->build(h2.input_shape, Device::cpu(), h2.dtype, 1);
  EXPECT_EQ(model_config_to_json(*h2.model), htext);
  EXPECT_EQ(h.model->layers()[1]->count_params(), 10);  // two learned queries of 5

  const std::string fun = R"({"class": "Functional", "inputs": [{"name": "q", "shape": [null, 4]},
      {"name": "v", "shape": [null, 4]}], "layers": [
      {"type": "Attention", "name": "att", "use_scale": true, "inbound": ["q", "v", "v"]},
      {"type": "AdditiveAttention", "name": "add", "inbound": ["att", "v"]},
      {"type": "GlobalAveragePooling1D", "name": "pool", "inbound": ["add"]}], "outputs": ["pool"]})";
  ModelConfig f = model_config_from_json(fun, "fun");
  f.functional->build(Device::cpu(), f.dtype, 1);
  EXPECT_EQ(f.functional->count_params(), 1 + 4);
  const std::string ftext = model_config_to_json(*f.functional);
  ModelConfig f2 = model_config_from_json(ftext, "again");
  f2.functional->build(Device::cpu(), f2.dtype, 1);
  EXPECT_EQ(model_config_to_json(*f2.functional), ftext);
  EXPECT_NE(ftext.find("\"score_mode\": \"dot\""), std::string::npos) << ftext;
}

TEST(AttentionConfig, BadConfigsAndShapesAreRefused) {
  auto seq = [](const std::string& layer) {
    return R"({"input_shape": [null, 4], "layers": [)" + layer + "]}";
  };
  expect_error([&] { model_config_from_json(seq(R"({"type": "AttentionPooling", "units": 3})"), "x"); },
               "unknown key 'units'");
  expect_error([&] { model_config_from_json(seq(R"({"type": "AttentionPooling", "score_mode": "cosine"})"), "x"); },
               "cosine");
  expect_error([&] { model_config_from_json(seq(R"({"type": "AttentionPooling", "query": "first"})"), "x"); },
               "first");
  expect_error([&] { model_config_from_json(seq(R"({"type": "HierarchicalAttention"})"), "x"); }, "chunk_size");
  expect_error([&] { model_config_from_json(seq(R"({"type": "HierarchicalAttention", "chunk_size": 0})"), "x"); },
               "chunk_size");
  expect_error(
      [&] { model_config_from_json(seq(R"({"type": "Attention", "score_mode": "additive"})"), "x"); }, "additive");

  expect_error([] { AttentionPooling().build({4}, DType::f32); }, "sequences");
  expect_error([] { AttentionPooling().build({kAnyDim, kAnyDim}, DType::f32); }, "feature axis");
  expect_error([] { Attention().build({{kAnyDim, 3}, {kAnyDim, 4}}, DType::f32); }, "same number of features");
  expect_error([] { Attention().build({{kAnyDim, 3}, {5, 2}, {6, 3}}, DType::f32); }, "same number of steps");
  expect_error([] { Attention().build({{3}, {3}, {3}, {3}}, DType::f32); }, "[query, value]");
  Sequential m;
  m.add(std::make_shared<AttentionPooling>());
  expect_error([&] { m.build({kAnyDim, 3, 2}, Device::cpu()); }, "sequences");
}

// ---- learning ----------------------------------------------------------------------------
// Recall: each sequence of 24 random tokens (one-hot of 4) has one step
// marked by an extra feature; the label is the marked token. A per-step
// Dense, attention pooling with a learned query and a softmax Dense solve it
// (chance 25%): the loss must fall and accuracy rise well above chance. The
// same model with GlobalAveragePooling1D in place of the attention, trained
// alike, must do clearly worse: here attention is what helps.
struct RecallResult {
  double first_loss = 0, last_loss = 0, accuracy = 0;
};
RecallResult train_recall(LayerPtr pooling) {
  const std::int64_t B = 32, T = 24, V = 4, F = V + 1;
  Sequential m;
  m.add(std::make_shared<Dense>(16, Activation::Tanh)).add(std::move(pooling)).add(std::make_shared<Dense>(V));
  m.build({kAnyDim, F}, Device::cpu(), DType::f32, 3);
  m.compile({OptimizerConfig::adam(0.01), LossKind::SparseCategoricalCrossentropy, {LossKind::Accuracy}});
  std::mt19937_64 g(11);
  std::uniform_int_distribution<int> tok(0, int(V) - 1), pos(0, int(T) - 1);
  auto batch = [&](Tensor& x, Tensor& y) {
    std::vector<float> xv(std::size_t(B * T * F), 0.f);
    std::vector<std::int32_t> yv(static_cast<std::size_t>(B), 0);
    for (std::int64_t b = 0; b < B; ++b) {
      const int p = pos(g);
      for (std::int64_t t = 0; t < T; ++t) {
        const int k = tok(g);
        xv[std::size_t((b * T + t) * F + k)] = 1.f;
        if (t == p) {
          xv[std::size_t((b * T + t) * F + V)] = 1.f;
          yv[std::size_t(b)] = k;
        }
      }
    }
    x = Tensor::from_vector(xv, {B, T, F}, Device::cpu());
    y = Tensor::from_vector(yv, {B}, Device::cpu());
  };
  Tensor x, y;
  RecallResult r;
  for (int step = 0; step < 150; ++step) {
    batch(x, y);
    const BatchLogs l = m.train_on_batch(x, y);
    if (step == 0) r.first_loss = l.loss;
    r.last_loss = l.loss;
  }
  for (int k = 0; k < 4; ++k) {
    batch(x, y);
    r.accuracy += m.test_on_batch(x, y).metrics[0] / 4;
  }
  return r;
}

TEST(AttentionTraining, LearnsToRecallTheMarkedToken) {
  const RecallResult att =
      train_recall(std::make_shared<AttentionPooling>(popt(AttentionScore::Dot, AttentionQuery::Learned, true)));
  const RecallResult avg = train_recall(std::make_shared<GlobalPooling1D>(PoolKind::Average));
  std::cout << "recall: attention loss " << att.first_loss << " -> " << att.last_loss << ", accuracy "
            << att.accuracy << "; average pooling loss " << avg.first_loss << " -> " << avg.last_loss
            << ", accuracy " << avg.accuracy << "\n";
  EXPECT_LT(att.last_loss, 0.5 * att.first_loss);
  EXPECT_GT(att.accuracy, 0.8);
  EXPECT_GT(att.accuracy, avg.accuracy + 0.2);
}

}  // namespace
}  // namespace recur
