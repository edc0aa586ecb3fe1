// Optimizers, clipping and schedules: each optimizer's update on every backend
// against a float64 reference of Keras's formulas written here per parameter
// (not over the flat buffer), over several steps; one step is one op over the
// flat buffer; clipping gives the asked norm; schedules follow sequences
// computed by hand; optimizer state restores a run exactly.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>

#include "recur/kernels/cpu.h"
#include "test_util.h"

namespace recur::test {
namespace {

const Shape kParamShapes[] = {{7, 5}, {5}, {3, 4, 2}, {1}};

// Keras's update of one variable, in double, with its own slot storage.
struct RefOptimizer {
  OptimizerConfig c;
  std::map<std::string, std::vector<double>> m, v, a;  // per-variable slots
  std::int64_t iterations = 0;

  // params/grads: per variable; lr: this step's rate.
  void step(std::map<std::string, std::vector<double>>& params,
            std::map<std::string, std::vector<double>> grads, double lr) {
    // 1. clipping (Keras's _clip_gradients)
    if (c.global_clipnorm > 0) {
      double sq = 0;
      for (auto& [name, g] : grads)
        for (double x : g) sq += x * x;
      const double norm = std::sqrt(sq);
      const double scale = c.global_clipnorm * std::min(1.0 / norm, 1.0 / c.global_clipnorm);
      for (auto& [name, g] : grads)
        for (double& x : g) x *= scale;
    } else if (c.clipvalue > 0) {
      for (auto& [name, g] : grads)
        for (double& x : g) x = std::clamp(x, -c.clipvalue, c.clipvalue);
    }
    const double t = double(iterations + 1);
    for (auto& [name, p] : params) {
      const std::vector<double>& g = grads[name];
      auto& M = m[name];
      auto& V = v[name];
      auto& A = a[name];
      M.resize(p.size(), 0.0), V.resize(p.size(), 0.0), A.resize(p.size(), 0.0);
      // 2. decoupled weight decay (Keras's _apply_weight_decay)
      if (c.weight_decay > 0)
        for (double& x : p) x = x - x * c.weight_decay * lr;
      // 3. the update (update_step of sgd.py / rmsprop.py / adam.py)
      for (std::size_t i = 0; i < p.size(); ++i) {
        switch (c.kind) {
          case OptimizerKind::SGD:
            if (c.momentum == 0) {
              p[i] -= lr * g[i];
            } else {
              M[i] = c.momentum * M[i] - lr * g[i];
              p[i] += c.nesterov ? c.momentum * M[i] - lr * g[i] : M[i];
            }
            break;
          case OptimizerKind::RMSprop: {
            V[i] = c.rho * V[i] + (1 - c.rho) * g[i] * g[i];
            double den = V[i] + c.epsilon;
            if (c.centered) {
              A[i] = c.rho * A[i] + (1 - c.rho) * g[i];
              den = V[i] - A[i] * A[i] + c.epsilon;
            }
            const double inc = lr * g[i] / std::sqrt(den);
            if (c.momentum > 0) {
              M[i] = c.momentum * M[i] + inc;
              p[i] -= M[i];
            } else {
              p[i] -= inc;
            }
            break;
          }
          case OptimizerKind::Adam: {
            M[i] += (g[i] - M[i]) * (1 - c.beta_1);
            V[i] += (g[i] * g[i] - V[i]) * (1 - c.beta_2);
            const double alpha = lr * std::sqrt(1 - std::pow(c.beta_2, t)) / (1 - std::pow(c.beta_1, t));
            p[i] -= M[i] * alpha / (std::sqrt(V[i]) + c.epsilon);
            break;
          }
        }
      }
    }
    ++iterations;
  }
};

struct Case {
  const char* name;
  OptimizerConfig config;
};

std::vector<Case> cases() {
  std::vector<Case> out = {
      {"sgd", OptimizerConfig::sgd(0.1)},
      {"sgd momentum", OptimizerConfig::sgd(0.05, 0.9)},
      {"sgd nesterov", OptimizerConfig::sgd(0.05, 0.9, true)},
      {"rmsprop", OptimizerConfig::rmsprop()},
      {"rmsprop momentum centered", OptimizerConfig::rmsprop(0.01, 0.8, 0.5, 1e-7, true)},
      {"adam", OptimizerConfig::adam()},
      {"adam lr 0.05", OptimizerConfig::adam(0.05, 0.8, 0.99, 1e-6)},
      {"adamw", OptimizerConfig::adamw(0.01, 0.1)},
  };
  Case c1{"adam global_clipnorm", OptimizerConfig::adam(0.01)};
  c1.config.global_clipnorm = 0.5;
  Case c2{"sgd clipvalue", OptimizerConfig::sgd(0.1, 0.5)};
  c2.config.clipvalue = 0.3;
  Case c3{"sgd weight decay", OptimizerConfig::sgd(0.1)};
  c3.config.weight_decay = 0.5;
  Case c4{"rmsprop global_clipnorm", OptimizerConfig::rmsprop(0.01)};  // the vectorised path, scaled
  c4.config.global_clipnorm = 0.5;
  out.push_back(c1);
  out.push_back(c2);
  out.push_back(c3);
  out.push_back(c4);
  return out;
}

class Optimizers : public ::testing::TestWithParam<Device> {
 protected:
  void SetUp() override { RECUR_SKIP_IF_UNAVAILABLE(GetParam()); }
  Device dev() const { return GetParam(); }
  std::string seed() const { return "seed " + std::to_string(rng.seed()) + " (RECUR_TEST_SEED)"; }
  ParameterStore make_store() {
    ParameterStore s(dev());
    for (std::size_t i = 0; i < std::size(kParamShapes); ++i)
      s.declare("p" + std::to_string(i), kParamShapes[i]);
    s.allocate();
    return s;
  }
  static void set(const Tensor& t, const std::vector<double>& v) {
    Tensor dst = t;
    dst.copy_from(Tensor::from_vector(std::vector<float>(v.begin(), v.end()), t.shape(), Device::cpu()));
  }
  Random rng;
};

TEST_P(Optimizers, MatchKerasFormulasOverSeveralSteps) {
  SCOPED_TRACE(seed());
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.name);
    ParameterStore store = make_store();
    std::map<std::string, std::vector<double>> ref;
    for (std::size_t i = 0; i < store.size(); ++i) {
      ref[store.name(i)] = widen(rng.floats(shape_numel(store.shape(i)), -1.f, 1.f));
      set(store.value(i), ref[store.name(i)]);
    }
    Optimizer opt(c.config, store);
    RefOptimizer r{c.config, {}, {}, {}, 0};
    for (int step = 0; step < 5; ++step) {
      SCOPED_TRACE(::testing::Message() << "step " << step);
      std::map<std::string, std::vector<double>> grads;
      for (std::size_t i = 0; i < store.size(); ++i) {
        // Rounded to float first: both sides see the same gradient.
        grads[store.name(i)] = widen(rng.floats(shape_numel(store.shape(i)), -2.f, 2.f));
        set(store.grad(i), grads[store.name(i)]);
      }
      EXPECT_EQ(opt.iterations(), step);
      opt.step();
      r.step(ref, grads, c.config.learning_rate);
      for (std::size_t i = 0; i < store.size(); ++i) {
        const auto& want = ref[store.name(i)];
        // float32 state over a few steps: relative to the value plus a step's size.
        EXPECT_TRUE(close_to(store.value(i), want, {0.05}, 2e-5)) << store.name(i);
      }
    }
    EXPECT_EQ(opt.iterations(), 5);
    // Alignment padding stays zero.
    const auto flat = store.values().to_vector<float>();
    std::vector<bool> used(flat.size(), false);
    for (std::size_t i = 0; i < store.size(); ++i)
      for (std::int64_t k = 0; k < shape_numel(store.shape(i)); ++k) used[std::size_t(store.offset(i) + k)] = true;
    for (std::size_t k = 0; k < flat.size(); ++k)
      if (!used[k]) {
        EXPECT_EQ(flat[k], 0.f) << "padding element " << k;
      }
  }
}

// The optimizer's step is exactly one optimizer op over the flat buffers: the
// same call made by hand on a copy gives the same bits.
TEST_P(Optimizers, OneStepIsOneOpOverTheFlatBuffer) {
  SCOPED_TRACE(seed());
  ParameterStore store = make_store();
  const auto p0 = rng.floats(store.buffer_numel()), g0 = rng.floats(store.buffer_numel());
  Tensor(store.values()).copy_from(Tensor::from_vector(p0, {store.buffer_numel()}, Device::cpu()));
  Tensor(store.grads()).copy_from(Tensor::from_vector(g0, {store.buffer_numel()}, Device::cpu()));
  // Every parameter's views lie inside the two flat buffers, at their offsets.
  for (std::size_t i = 0; i < store.size(); ++i) {
    EXPECT_EQ(store.value(i).raw_data(),
              static_cast<char*>(store.values().raw_data()) + store.offset(i) * 4);
    EXPECT_EQ(store.grad(i).raw_data(),
              static_cast<char*>(store.grads().raw_data()) + store.offset(i) * 4);
    EXPECT_EQ(store.offset(i) % ParameterStore::kAlign, 0);
  }
  Tensor param = Tensor::from_vector(p0, {store.buffer_numel()}, dev());
  Tensor grad = Tensor::from_vector(g0, {store.buffer_numel()}, dev());
  Tensor m = Tensor::zeros({store.buffer_numel()}, DType::f32, dev());
  Tensor v = Tensor::zeros({store.buffer_numel()}, DType::f32, dev());
  const OptimizerConfig cfg = OptimizerConfig::adamw(0.01, 0.05);
  Optimizer opt(cfg, store);
  opt.step();
  OptimizerStep s;
  s.kind = OptimizerKind::Adam;
  s.param = param, s.grad = grad, s.slot0 = m, s.slot1 = v;
  s.lr = 0.01, s.weight_decay = 0.05, s.epsilon = 1e-7;
  s.alpha = 0.01 * std::sqrt(1 - 0.999) / (1 - 0.9);
  ops::optimizer_step(s);
  EXPECT_EQ(store.values().to_vector<float>(), param.to_vector<float>());
  const auto st = opt.state();
  EXPECT_EQ(st[2].second.to_vector<float>(), m.to_vector<float>()) << "m";
  EXPECT_EQ(st[3].second.to_vector<float>(), v.to_vector<float>()) << "v";
}

TEST_P(Optimizers, ClippingGivesTheAskedNorm) {
  SCOPED_TRACE(seed());
  for (std::int64_t n : {1, 7, 1000, 300000}) {
    SCOPED_TRACE(::testing::Message() << "n " << n);
    const auto g = rng.floats(n, -1.f, 1.f);
    double sq = 0;
    for (float x : g) sq += double(x) * x;
    const double norm = std::sqrt(sq);
    const double got = ops::sum_squares(Tensor::from_vector(g, {n}, dev())).to_vector<double>()[0];
    EXPECT_NEAR(got, sq, 1e-12 * sq) << "sum of squares";
    for (double clipnorm : {0.5 * norm, 2.0 * norm}) {
      Tensor G = Tensor::from_vector(g, {n}, dev());
      const double before = ops::clip_by_global_norm(G, clipnorm).to_vector<double>()[0];
      EXPECT_NEAR(before, sq, 1e-9 * sq);
      double after = 0;
      const auto out = G.to_vector<float>();
      for (float x : out) after += double(x) * x;
      EXPECT_NEAR(std::sqrt(after), std::min(norm, clipnorm), 1e-5 * norm);
      // The direction is kept: every element scaled by the same factor.
      const double f = std::min(1.0, clipnorm / norm);
      std::vector<double> want(g.size());
      for (std::size_t i = 0; i < g.size(); ++i) want[i] = g[i] * f;
      EXPECT_TRUE(close_to(out, want, {0.0}, 1e-6));
    }
    Tensor V = Tensor::from_vector(g, {n}, dev());
    ops::clip_by_value(V, 0.25);
    std::vector<double> want(g.size());
    for (std::size_t i = 0; i < g.size(); ++i) want[i] = std::clamp(double(g[i]), -0.25, 0.25);
    EXPECT_TRUE(close_to(V, want, {0.0}, 1e-7));
  }
  // An empty buffer has norm 0; bad arguments are clear errors.
  EXPECT_EQ(ops::sum_squares(Tensor::empty({0}, DType::f32, dev())).to_vector<double>()[0], 0.0);
  Tensor G = Tensor::from_vector(rng.floats(4), {4}, dev());
  EXPECT_THROW(ops::clip_by_global_norm(G, 0.0), ValueError);
  EXPECT_THROW(ops::clip_gradients(G, Tensor(), 1.0, 0.0), ValueError);
}

TEST_P(Optimizers, BadArgumentsAreClearErrors) {
  ParameterStore store = make_store();
  OptimizerConfig both = OptimizerConfig::sgd();
  both.global_clipnorm = 1, both.clipvalue = 1;
  EXPECT_THROW(Optimizer(both, store), ValueError);
  EXPECT_THROW(Optimizer(OptimizerConfig::sgd(-1.0), store), ValueError);
  ParameterStore unallocated(dev());
  EXPECT_THROW(Optimizer(OptimizerConfig::adam(), unallocated), ValueError);
  OptimizerStep s;
  s.kind = OptimizerKind::Adam;
  s.param = store.values();
  s.grad = store.grads();
  EXPECT_THROW(ops::optimizer_step(s), ValueError);  // Adam without its slots
  s.slot0 = store.values(), s.slot1 = Tensor::zeros({store.buffer_numel()}, DType::f32, dev());
  EXPECT_THROW(ops::optimizer_step(s), ValueError);  // a slot overlapping the parameters
  s.param = store.value(0);
  EXPECT_THROW(ops::optimizer_step(s), ShapeError);  // not flat
}

INSTANTIATE_TEST_SUITE_P(CPU, Optimizers, ::testing::Values(Device::cpu()),
                         [](const auto&) { return std::string("cpu"); });
INSTANTIATE_TEST_SUITE_P(CUDA, Optimizers, ::testing::Values(Device::cuda(0)),
                         [](const auto&) { return std::string("cuda0"); });

// ---- state, schedules and plateaus (host logic; CPU) ------------------------------
TEST(OptimizerState, RestoresARunExactly) {
  Random rng;
  SCOPED_TRACE("seed " + std::to_string(rng.seed()) + " (RECUR_TEST_SEED)");
  for (const OptimizerConfig& cfg : {OptimizerConfig::adamw(0.01), OptimizerConfig::rmsprop(0.01, 0.9, 0.5, 1e-7, true),
                                     OptimizerConfig::sgd(0.1, 0.9, true)}) {
    auto make = [&] {
      auto s = std::make_unique<ParameterStore>(Device::cpu());
      s->declare("w", {6, 3});
      s->declare("b", {3});
      s->allocate();
      return s;
    };
    auto a = make(), b = make();
    const auto p0 = rng.floats(a->buffer_numel());
    std::vector<std::vector<float>> grads;
    for (int i = 0; i < 4; ++i) grads.push_back(rng.floats(a->buffer_numel()));
    auto put = [](const Tensor& t, const std::vector<float>& v) {
      Tensor(t).copy_from(Tensor::from_vector(v, t.shape(), Device::cpu()));
    };
    put(a->values(), p0);
    put(b->values(), p0);
    Optimizer oa(cfg, *a);
    for (int i = 0; i < 4; ++i) put(a->grads(), grads[i]), oa.step();
    std::vector<NamedTensor> saved;
    {
      Optimizer ob(cfg, *b);
      for (int i = 0; i < 2; ++i) put(b->grads(), grads[i]), ob.step();
      for (const auto& [name, t] : ob.state()) saved.emplace_back(name, t.to(Device::cpu()));
    }
    EXPECT_EQ(saved[0].first, "iterations");
    EXPECT_EQ(saved[0].second.to_vector<double>()[0], 2.0);
    Optimizer oc(cfg, *b);
    oc.load_state(saved);
    EXPECT_EQ(oc.iterations(), 2);
    for (int i = 2; i < 4; ++i) put(b->grads(), grads[i]), oc.step();
    EXPECT_EQ(a->values().to_vector<float>(), b->values().to_vector<float>());
    auto bad = saved;
    bad[2].first = "nonsense";
    EXPECT_THROW(oc.load_state(bad), ValueError);
  }
}

// Plain RMSprop on the CPU skips the square root and division in blocks of
// all-zero gradients (the untouched rows of an Embedding). It must give the
// bits of the per-element formulas (optimizer_update_at) over several steps:
// blocks of zeros, blocks with one nonzero, -0 gradients (on -0 parameters,
// where p - inc differs in the sign of zero), and a partial last block.
template <class T>
void check_plain_rmsprop_bits(Random& rng) {
  const std::int64_t n = 16 * 24 + 7;
  auto vals = [&](float lo, float hi) {
    const auto f = rng.floats(n, lo, hi);
    return std::vector<T>(f.begin(), f.end());
  };
  std::vector<T> p = vals(-1.f, 1.f), v = vals(0.f, 0.01f);
  for (std::int64_t i = 0; i < 5; ++i) p[std::size_t(i)] = T(-0.0);
  std::vector<T> p_ref = p, v_ref = v;
  for (int step = 0; step < 3; ++step) {
    std::vector<T> g = vals(-1.f, 1.f);
    for (std::int64_t i = 0; i < n; ++i) {
      const std::int64_t block = i / 16;
      if (block % 3 == 0) g[std::size_t(i)] = T(0);                         // all zero
      if (block % 3 == 1 && i % 16 != (block + step) % 16) g[std::size_t(i)] = T(0);  // one nonzero
    }
    for (std::int64_t i = 0; i < 5; ++i) g[std::size_t(i)] = T(-0.0);  // block 0: only -0 and +0
    kernels::OptimizerArgs<T> a;
    a.n = n;
    a.grad = g.data();
    a.lr = T(0.01);
    a.rho = T(0.9);
    a.epsilon = T(1e-7);
    kernels::OptimizerArgs<T> r = a;
    a.param = p.data(), a.slot0 = v.data();
    r.param = p_ref.data(), r.slot0 = v_ref.data();
    const std::vector<T> p_before = p, v_before = v;
    kernels::cpu::optimizer_step(OptimizerKind::RMSprop, a);
    for (std::int64_t i = 0; i < n; ++i)
      kernels::optimizer_update_at<OptimizerKind::RMSprop>(r, i, T(1));
    ASSERT_EQ(std::memcmp(p.data(), p_ref.data(), sizeof(T) * std::size_t(n)), 0) << "step " << step;
    ASSERT_EQ(std::memcmp(v.data(), v_ref.data(), sizeof(T) * std::size_t(n)), 0) << "step " << step;
    // The update did something: v decays where g is 0, p moves where g is not.
    EXPECT_EQ(v[16 * 3], T(0.9) * v_before[16 * 3]);
    EXPECT_EQ(p[16 * 3], p_before[16 * 3]);
    EXPECT_NE(p[16 * 2], p_before[16 * 2]);
  }
  EXPECT_FALSE(std::signbit(p[0]));  // -0 - -0 = +0, as the full formula gives
}

TEST(Optimizers, PlainRmspropSkipsZeroGradientBlocksBitForBit) {
  Random rng;
  SCOPED_TRACE("seed " + std::to_string(rng.seed()) + " (RECUR_TEST_SEED)");
  check_plain_rmsprop_bits<float>(rng);
  check_plain_rmsprop_bits<double>(rng);
}

TEST(Schedules, ExponentialDecayByHand) {
  ExponentialDecay smooth(0.1, 10, 0.5), stairs(0.1, 10, 0.5, true);
  const std::int64_t steps[] = {0, 5, 10, 15, 20};
  const double want_smooth[] = {0.1, 0.1 * std::sqrt(0.5), 0.05, 0.05 * std::sqrt(0.5), 0.025};
  const double want_stairs[] = {0.1, 0.1, 0.05, 0.05, 0.025};
  for (int i = 0; i < 5; ++i) {
    EXPECT_NEAR(smooth(steps[i]), want_smooth[i], 1e-15) << "step " << steps[i];
    EXPECT_NEAR(stairs(steps[i]), want_stairs[i], 1e-15) << "step " << steps[i];
  }
  EXPECT_THROW(ExponentialDecay(0.1, 0, 0.5), ValueError);
  // The optimizer asks the schedule at its iteration count: SGD moves a
  // parameter by exactly lr(step) * g.
  ParameterStore store(Device::cpu(), DType::f64);
  store.declare("x", {1});
  store.allocate();
  ops::fill(store.grads(), 1.0);
  Optimizer opt(OptimizerConfig::sgd(), store);
  opt.set_schedule(std::make_shared<ExponentialDecay>(1.0, 1, 0.5, true));
  double x = 0;
  for (int i = 0; i < 4; ++i) {
    EXPECT_DOUBLE_EQ(opt.learning_rate(), std::pow(0.5, i));
    opt.step();
    x -= std::pow(0.5, i);
    EXPECT_DOUBLE_EQ(store.value(0).to_vector<double>()[0], x);
  }
  EXPECT_THROW(opt.set_learning_rate(0.1), ValueError);
}

TEST(Schedules, ReduceLROnPlateauByHand) {
  ReduceLROnPlateau plateau(/*factor*/ 0.5, /*patience*/ 2, /*min_delta*/ 0.0, /*cooldown*/ 1,
                            /*min_lr*/ 0.01);
  const double values[] = {1.0, 0.9, 0.95, 0.95, 0.95, 0.95, 0.8, 0.85, 0.85, 0.85, 0.85, 0.85};
  const double want[] = {0.1, 0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.025, 0.0125, 0.0125, 0.01, 0.01};
  double lr = 0.1;
  for (std::size_t i = 0; i < std::size(values); ++i) {
    lr = plateau.on_epoch_end(values[i], lr);
    EXPECT_DOUBLE_EQ(lr, want[i]) << "epoch " << i + 1;
  }
  // min_delta: an improvement smaller than it does not count.
  ReduceLROnPlateau strict(0.1, 1, 0.1);
  EXPECT_DOUBLE_EQ(strict.on_epoch_end(1.0, 1.0), 1.0);
  EXPECT_DOUBLE_EQ(strict.on_epoch_end(0.95, 1.0), 0.1);
  // Mode max (accuracy) and the optimizer overload.
  ParameterStore store(Device::cpu());
  store.declare("x", {2});
  store.allocate();
  Optimizer opt(OptimizerConfig::adam(0.2), store);
  ReduceLROnPlateau acc(0.5, 1, 0.0, 0, 0.0, ReduceLROnPlateau::Mode::Max);
  acc.on_epoch_end(0.5, opt);
  acc.on_epoch_end(0.6, opt);
  EXPECT_DOUBLE_EQ(opt.learning_rate(), 0.2);
  acc.on_epoch_end(0.55, opt);
  EXPECT_DOUBLE_EQ(opt.learning_rate(), 0.1);
  EXPECT_THROW(ReduceLROnPlateau(1.0), ValueError);
}

}  // namespace
}  // namespace recur::test
