// The backend-consistency test: every op, on every backend present, against an
// independent float64 reference written here in plain loops. Inputs are drawn
// fresh each run (seed in every failure message; RECUR_TEST_SEED repeats one),
// outputs are poisoned with NaN first, and NaN never passes.
// Suites: CPU/... runs everywhere; CUDA/... is labelled `gpu` in CTest and skips,
// saying why, where no CUDA device exists.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "recur/common/log.h"
#include "recur/kernels/cpu.h"
#include "recur/kernels/vec_math.h"
#include "test_util.h"

namespace recur::test {
namespace {

class BackendOps : public ::testing::TestWithParam<Device> {
 protected:
  void SetUp() override { RECUR_SKIP_IF_UNAVAILABLE(GetParam()); }
  Device dev() const { return GetParam(); }
  Tensor put(const std::vector<float>& v, const Shape& s) { return Tensor::from_vector(v, s, dev()); }
  std::string seed() const { return "seed " + std::to_string(rng.seed()) + " (RECUR_TEST_SEED)"; }
  Random rng;
};

constexpr double kRtol = 1e-5;  // float32 against float64

// ---- GEMM -------------------------------------------------------------------
struct GemmCase {
  std::int64_t m, n, k;
  bool ta, tb;
  std::int64_t batch;  // 0: plain 2-D
  bool a_batched, b_batched;
  double alpha, beta;
};

TEST_P(BackendOps, Gemm) {
  SCOPED_TRACE(seed());
  std::vector<GemmCase> cases;
  const std::int64_t dims[][3] = {{1, 1, 1},   {7, 33, 1},  {33, 7, 1000}, {1000, 7, 33},
                                  {1, 1000, 7}, {33, 33, 33}, {7, 1, 33},
                                  // above the CPU's split threshold: row blocks, column blocks
                                  {301, 37, 60}, {37, 301, 60}};
  for (auto& d : dims)
    for (int t = 0; t < 4; ++t) cases.push_back({d[0], d[1], d[2], bool(t & 1), bool(t & 2), 0, false, false, 1.0, 0.0});
  cases.push_back({7, 33, 7, false, true, 0, false, false, 0.5, 0.0});
  cases.push_back({33, 7, 33, true, false, 0, false, false, 1.0, 1.0});
  cases.push_back({7, 33, 33, false, false, 0, false, false, -2.0, 0.75});
  cases.push_back({7, 33, 33, false, true, 3, true, true, 1.0, 0.0});
  cases.push_back({7, 33, 33, false, true, 3, false, true, 1.0, 0.0});   // shared A
  cases.push_back({33, 7, 1, true, false, 5, true, false, 1.0, 0.5});    // shared B (a weight)
  cases.push_back({1000, 33, 7, false, true, 2, true, false, 1.0, 0.0});
  cases.push_back({301, 37, 60, true, true, 0, false, false, 1.0, 0.5});
  cases.push_back({37, 301, 60, false, true, 0, false, false, -2.0, 0.75});

  for (const GemmCase& g : cases) {
    SCOPED_TRACE(::testing::Message() << "m " << g.m << " n " << g.n << " k " << g.k << " ta "
                                      << g.ta << " tb " << g.tb << " batch " << g.batch
                                      << " alpha " << g.alpha << " beta " << g.beta);
    const std::int64_t nb = std::max<std::int64_t>(g.batch, 1);
    const std::int64_t na = g.a_batched ? nb : 1, nbb = g.b_batched ? nb : 1;
    Shape as = g.ta ? Shape{g.k, g.m} : Shape{g.m, g.k};
    Shape bs = g.tb ? Shape{g.n, g.k} : Shape{g.k, g.n};
    Shape cs{g.m, g.n};
    if (g.a_batched) as.insert(as.begin(), nb);
    if (g.b_batched) bs.insert(bs.begin(), nb);
    if (g.batch) cs.insert(cs.begin(), nb);
    const auto a = rng.floats(na * g.m * g.k), b = rng.floats(nbb * g.k * g.n);
    const auto c0 = rng.floats(nb * g.m * g.n);
    Tensor A = put(a, as), B = put(b, bs);
    Tensor C = g.beta != 0.0 ? put(c0, cs) : empty_poisoned(cs, dev());

    std::vector<double> ref(std::size_t(nb * g.m * g.n)), scale(ref.size());
    for (std::int64_t p = 0; p < nb; ++p)
      for (std::int64_t i = 0; i < g.m; ++i)
        for (std::int64_t j = 0; j < g.n; ++j) {
          double acc = 0, mag = 0;
          for (std::int64_t q = 0; q < g.k; ++q) {
            const double av = a[(g.a_batched ? p * g.m * g.k : 0) + (g.ta ? q * g.m + i : i * g.k + q)];
            const double bv = b[(g.b_batched ? p * g.k * g.n : 0) + (g.tb ? j * g.k + q : q * g.n + j)];
            acc += av * bv;
            mag += std::abs(av * bv);
          }
          const std::size_t o = std::size_t((p * g.m + i) * g.n + j);
          ref[o] = g.alpha * acc + g.beta * c0[o];
          scale[o] = std::abs(g.alpha) * mag + std::abs(g.beta * c0[o]);
        }
    ops::gemm(A, B, C, g.ta, g.tb, g.alpha, g.beta);
    EXPECT_TRUE(close_to(C, ref, scale, kRtol));
  }
}

TEST_P(BackendOps, GemmWithEmptyInnerDimensionScalesC) {
  const auto c0 = rng.floats(7 * 3);
  Tensor A = Tensor::empty({7, 0}, DType::f32, dev()), B = Tensor::empty({0, 3}, DType::f32, dev());
  Tensor C = put(c0, {7, 3});
  ops::gemm(A, B, C, false, false, 1.0, 0.5);
  std::vector<double> ref(c0.begin(), c0.end());
  for (double& r : ref) r *= 0.5;
  EXPECT_TRUE(close_to(C, ref, {0.0}, 1e-7));
  poison(C);
  ops::gemm(A, B, C);
  EXPECT_TRUE(close_to(C, std::vector<double>(21, 0.0), {0.0}, 1e-7));
}

// One 2-D GEMM: inputs drawn once, the float64 reference, and a run on any
// device. With `offset` > 0 each operand is a view `offset` rows into a larger
// tensor whose other rows are NaN (as the recurrent layers pass a slice of
// W_hh or one step of a sequence), so its address is less aligned than a
// fresh allocation and a read outside it shows up as NaN.
struct Gemm2d {
  GemmCase g;
  std::int64_t offset;
  std::vector<float> a, b, c0;
  std::vector<double> ref, scale;

  Gemm2d(Random& rng, const GemmCase& gc, std::int64_t off) : g(gc), offset(off) {
    a = rng.floats(g.m * g.k);
    b = rng.floats(g.k * g.n);
    c0 = rng.floats(g.m * g.n);
    ref.resize(std::size_t(g.m * g.n));
    scale.resize(ref.size());
    for (std::int64_t i = 0; i < g.m; ++i)
      for (std::int64_t j = 0; j < g.n; ++j) {
        double acc = 0, mag = 0;
        for (std::int64_t q = 0; q < g.k; ++q) {
          const double av = a[std::size_t(g.ta ? q * g.m + i : i * g.k + q)];
          const double bv = b[std::size_t(g.tb ? j * g.k + q : q * g.n + j)];
          acc += av * bv;
          mag += std::abs(av * bv);
        }
        const std::size_t o = std::size_t(i * g.n + j);
        const double c = g.beta != 0.0 ? double(c0[o]) : 0.0;
        ref[o] = g.alpha * acc + g.beta * c;
        scale[o] = std::abs(g.alpha) * mag + std::abs(g.beta * c);
      }
  }

  // `rows` x `cols` holding v, as a view `offset` rows into a NaN-padded tensor.
  Tensor view(const std::vector<float>& v, std::int64_t rows, std::int64_t cols, Device dev) const {
    std::vector<float> big(std::size_t((rows + offset) * cols), std::numeric_limits<float>::quiet_NaN());
    std::copy(v.begin(), v.end(), big.begin() + std::ptrdiff_t(offset * cols));
    return Tensor::from_vector(big, {rows + offset, cols}, dev).slice(offset, offset + rows);
  }

  std::vector<float> run(Device dev) const {
    const Tensor A = g.ta ? view(a, g.k, g.m, dev) : view(a, g.m, g.k, dev);
    const Tensor B = g.tb ? view(b, g.n, g.k, dev) : view(b, g.k, g.n, dev);
    // beta 0: C starts as NaN, which must not leak into the result.
    const Tensor C = view(g.beta != 0.0 ? c0 : std::vector<float>(c0.size(), std::numeric_limits<float>::quiet_NaN()),
                          g.m, g.n, dev);
    ops::gemm(A, B, C, g.ta, g.tb, g.alpha, g.beta);
    return C.to_vector<float>();
  }
};

std::string gemm_case_str(const GemmCase& g, std::int64_t offset) {
  return ::testing::PrintToString(g.m) + "x" + ::testing::PrintToString(g.n) + "x" +
         ::testing::PrintToString(g.k) + " ta " + (g.ta ? "1" : "0") + " tb " + (g.tb ? "1" : "0") +
         " alpha " + ::testing::PrintToString(g.alpha) + " beta " + ::testing::PrintToString(g.beta) +
         " offset " + ::testing::PrintToString(offset) + " rows";
}

// The per-step products of the recurrent layers' standard path, which the CUDA
// backend runs through cuBLASLt without split-K (host/src/cuda/lt_gemm.h):
// forward h [B, H] x W_hh^T (W_hh [G H, H]) -> [B, G H], backward
// dgates [B, G H] x W_hh -> [B, H] added onto C (beta 1); alpha/beta variants,
// every transpose combination, and views at less aligned addresses.
std::vector<std::pair<GemmCase, std::int64_t>> recurrent_gemm_cases() {
  std::vector<std::pair<GemmCase, std::int64_t>> cases;
  for (std::int64_t m : {1, 8, 128})
    for (std::int64_t gh : {96, 128, 512})
      for (std::int64_t h : {32, 128}) {
        cases.push_back({{m, gh, h, false, true, 0, false, false, 1.0, 0.0}, 0});  // forward
        cases.push_back({{m, h, gh, false, false, 0, false, false, 1.0, 1.0}, 0});  // backward
      }
  for (int t = 0; t < 4; ++t) {
    cases.push_back({{8, 96, 32, bool(t & 1), bool(t & 2), 0, false, false, 1.0, 0.0}, 0});
    cases.push_back({{128, 32, 512, bool(t & 1), bool(t & 2), 0, false, false, -2.0, 0.75}, 0});
  }
  cases.push_back({{8, 512, 128, false, true, 0, false, false, 0.5, 0.0}, 0});
  cases.push_back({{1, 128, 96, false, false, 0, false, false, -1.0, 1.0}, 0});
  // Views: offsets of one row of 33 or 97 floats leave 4-byte alignment only.
  cases.push_back({{8, 96, 32, false, true, 0, false, false, 1.0, 0.0}, 1});
  cases.push_back({{8, 97, 33, false, true, 0, false, false, 1.0, 0.0}, 1});
  cases.push_back({{8, 33, 97, false, false, 0, false, false, 1.0, 1.0}, 1});
  cases.push_back({{7, 97, 33, true, true, 0, false, false, -2.0, 0.75}, 3});
  // Just outside the rule (K above 1024; M*N above 2^20): cuBLAS as before.
  cases.push_back({{8, 32, 1025, false, false, 0, false, false, 1.0, 1.0}, 0});
  cases.push_back({{1025, 1024, 4, false, true, 0, false, false, 1.0, 0.0}, 0});
  return cases;
}

TEST_P(BackendOps, GemmRecurrentShapes) {
  SCOPED_TRACE(seed());
  for (const auto& [g, offset] : recurrent_gemm_cases()) {
    SCOPED_TRACE(gemm_case_str(g, offset));
    const Gemm2d x(rng, g, offset);
    EXPECT_TRUE(close_to(x.run(dev()), x.ref, x.scale, kRtol));
  }
}

// Tall products, M at least 4 max(N, K) with K in 64..512 and N >= 64: the
// CPU runs float32 ones through the packed recurrent kernel (kernels/cpu/
// gemm.cpp), op(B) packed once and the rows split over threads in blocks of
// 8. Row counts off the block size, a partial last panel (N 130), beta 0
// over a NaN C and beta 1, both layouts of B, a less aligned view of A; and
// the cases just outside the rule (alpha 2, K 513), which keep the BLAS.
TEST_P(BackendOps, GemmTallProducts) {
  SCOPED_TRACE(seed());
  const int threads = kernels::cpu::num_threads();
  kernels::cpu::set_num_threads(std::max(threads, 2));
  std::vector<std::pair<GemmCase, std::int64_t>> cases;
  for (bool tb : {false, true})
    for (double beta : {0.0, 1.0}) {
      cases.push_back({{1100, 130, 257, false, tb, 0, false, false, 1.0, beta}, 0});
      cases.push_back({{259, 64, 64, false, tb, 0, false, false, 1.0, beta}, 1});
    }
  cases.push_back({{600, 96, 64, false, true, 0, false, false, 2.0, 0.0}, 0});
  cases.push_back({{2100, 64, 513, false, true, 0, false, false, 1.0, 0.0}, 0});
  for (const auto& [g, offset] : cases) {
    SCOPED_TRACE(gemm_case_str(g, offset));
    const Gemm2d x(rng, g, offset);
    EXPECT_TRUE(close_to(x.run(dev()), x.ref, x.scale, kRtol));
  }
  kernels::cpu::set_num_threads(threads);
}

// An environment variable set (or, with nullptr, unset) for the scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* v = std::getenv(name)) previous_ = v, had_ = true;
    if (value)
      ::setenv(name, value, 1);
    else
      ::unsetenv(name);
  }
  ~ScopedEnv() {
    if (had_)
      ::setenv(name_.c_str(), previous_.c_str(), 1);
    else
      ::unsetenv(name_.c_str());
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_, previous_;
  bool had_ = false;
};

// RECUR_CUBLASLT=0 (cublasSgemmStridedBatched for every GEMM) and =1 (the
// small ones through cuBLASLt) both match the reference and agree with each
// other to float rounding. On the CPU backend the variable changes nothing.
TEST_P(BackendOps, GemmCublasLtSwitchAgrees) {
  SCOPED_TRACE(seed());
  for (const auto& [g, offset] : recurrent_gemm_cases()) {
    SCOPED_TRACE(gemm_case_str(g, offset));
    const Gemm2d x(rng, g, offset);
    std::vector<float> off, on;
    {
      ScopedEnv env("RECUR_CUBLASLT", "0");
      off = x.run(dev());
    }
    {
      ScopedEnv env("RECUR_CUBLASLT", "1");
      on = x.run(dev());
    }
    EXPECT_TRUE(close_to(off, x.ref, x.scale, kRtol));
    EXPECT_TRUE(close_to(on, x.ref, x.scale, kRtol));
    EXPECT_TRUE(close_to(on, widen(off), x.scale, 2 * kRtol));  // each is within kRtol of ref
  }
}

// With RECUR_LOG=debug the CUDA backend names what runs a small GEMM the first
// time it sees its shape: a cuBLASLt algorithm (or that it found none without
// split-K); nothing with RECUR_CUBLASLT=0, for a large K, or on the CPU.
TEST_P(BackendOps, GemmCublasLtPathSaysWhatRuns) {
  static int calls = 0;  // a shape this process has not run yet, also under --gtest_repeat
  const std::int64_t n = 1001 + 2 * calls++;
  const LogLevel before = log_level();
  set_log_level(LogLevel::Debug);
  auto logged = [&](const char* cublaslt, std::int64_t m, std::int64_t k) {
    ScopedEnv env("RECUR_CUBLASLT", cublaslt);
    Tensor A = put(rng.floats(m * k), {m, k}), B = put(rng.floats(k * n), {k, n});
    Tensor C = Tensor::empty({m, n}, DType::f32, dev());
    ::testing::internal::CaptureStderr();
    ops::gemm(A, B, C);
    (void)C.to_vector<float>();  // waits for the GPU
    return ::testing::internal::GetCapturedStderr();
  };
  const std::string on = logged(nullptr, 3, 5), off = logged("0", 5, 5), big_k = logged(nullptr, 3, 2000);
  set_log_level(before);
  if (dev().is_cpu()) {
    EXPECT_EQ(on.find("cuBLASLt"), std::string::npos) << on;
  } else {
    EXPECT_NE(on.find("cuBLASLt"), std::string::npos) << on;
    std::cout << "[ info     ] " << on;  // which algorithm, for the GPU run's record
  }
  EXPECT_EQ(off.find("cuBLASLt"), std::string::npos) << off;
  EXPECT_EQ(big_k.find("cuBLASLt"), std::string::npos) << big_k;
}

// ---- elementwise ------------------------------------------------------------
double ref_unary(UnaryOp op, double x) {
  switch (op) {
    case UnaryOp::Sigmoid: return 1.0 / (1.0 + std::exp(-x));
    case UnaryOp::Tanh: return std::tanh(x);
    case UnaryOp::Relu: return x > 0 ? x : 0.0;
  }
  return NAN;
}

TEST_P(BackendOps, Unary) {
  SCOPED_TRACE(seed());
  for (UnaryOp op : {UnaryOp::Sigmoid, UnaryOp::Tanh, UnaryOp::Relu})
    for (std::int64_t n : {1, 7, 33, 1000, 33000}) {
      SCOPED_TRACE(::testing::Message() << op_name(op) << " n " << n);
      const auto x = rng.floats(n, -12.f, 12.f);  // includes saturation
      std::vector<double> ref(x.size());
      for (std::size_t i = 0; i < x.size(); ++i) ref[i] = ref_unary(op, x[i]);
      Tensor X = put(x, {n}), Y = empty_poisoned({n}, dev());
      ops::unary(op, X, Y);
      EXPECT_TRUE(close_to(Y, ref, {0.1}, kRtol));
      ops::unary(op, X, X);  // in place
      EXPECT_TRUE(close_to(X, ref, {0.1}, kRtol));
    }
  // NaN in, NaN out, for every activation (relu included, as in PyTorch).
  for (UnaryOp op : {UnaryOp::Sigmoid, UnaryOp::Tanh, UnaryOp::Relu}) {
    Tensor Y = empty_poisoned({2}, dev());
    ops::unary(op, put({NAN, 1.f}, {2}), Y);
    const auto y = Y.to_vector<float>();
    EXPECT_TRUE(std::isnan(y[0])) << op_name(op) << "(NaN) = " << y[0];
  }
}

TEST_P(BackendOps, Binary) {
  SCOPED_TRACE(seed());
  const std::pair<Shape, Shape> shapes[] = {
      {{1}, {1}}, {{7}, {7}}, {{1000, 33}, {1000, 33}}, {{1000, 33}, {33}}, {{3, 7, 33}, {7, 33}},
      {{33, 1}, {1}}};
  for (BinaryOp op : {BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul})
    for (const auto& [as, bs] : shapes) {
      SCOPED_TRACE(::testing::Message() << op_name(op) << " " << shape_str(as) << " " << shape_str(bs));
      const auto a = rng.floats(shape_numel(as)), b = rng.floats(shape_numel(bs));
      std::vector<double> ref(a.size()), scale(a.size());
      for (std::size_t i = 0; i < a.size(); ++i) {
        const double x = a[i], y = b[i % b.size()];
        ref[i] = op == BinaryOp::Add ? x + y : op == BinaryOp::Sub ? x - y : x * y;
        scale[i] = op == BinaryOp::Mul ? 0.0 : std::abs(x) + std::abs(y);
      }
      Tensor A = put(a, as), B = put(b, bs), Y = empty_poisoned(as, dev());
      ops::binary(op, A, B, Y);
      EXPECT_TRUE(close_to(Y, ref, scale, kRtol));
      ops::binary(op, A, B, A);  // in place into a
      EXPECT_TRUE(close_to(A, ref, scale, kRtol));
    }
}

// ---- reductions -------------------------------------------------------------
TEST_P(BackendOps, Reduce) {
  SCOPED_TRACE(seed());
  const std::pair<Shape, int> cases[] = {{{1}, 0},       {{7}, 0},          {{1000, 33}, 0},
                                         {{1000, 33}, 1}, {{7, 33, 1000}, -1}, {{7, 33, 1000}, 1},
                                         {{33, 1, 7}, 1},  {{33000}, 0},
                                         // columns over many rows: the bias gradients of
                                         // the Jena GRU ([T B, 3H]); split over blocks on CUDA
                                         {{30720, 96}, 0}, {{3, 5000, 40}, 1}, {{2, 70, 1}, 1}};
  for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max})
    for (const auto& [shape, axis_in] : cases) {
      SCOPED_TRACE(::testing::Message() << op_name(op) << " " << shape_str(shape) << " axis " << axis_in);
      const int nd = int(shape.size());
      const int axis = axis_in < 0 ? axis_in + nd : axis_in;
      std::int64_t outer = 1, inner = 1, n = shape[axis];
      for (int i = 0; i < axis; ++i) outer *= shape[i];
      for (int i = axis + 1; i < nd; ++i) inner *= shape[i];
      const auto x = rng.floats(shape_numel(shape), -2.f, 2.f);
      std::vector<double> ref(std::size_t(outer * inner)), scale(ref.size());
      for (std::int64_t o = 0; o < outer; ++o)
        for (std::int64_t i = 0; i < inner; ++i) {
          double acc = op == ReduceOp::Max ? -INFINITY : 0.0, mag = 0;
          for (std::int64_t k = 0; k < n; ++k) {
            const double v = x[std::size_t((o * n + k) * inner + i)];
            acc = op == ReduceOp::Max ? std::max(acc, v) : acc + v;
            mag += std::abs(v);
          }
          if (op == ReduceOp::Mean) acc /= double(n), mag /= double(n);
          ref[std::size_t(o * inner + i)] = acc;
          scale[std::size_t(o * inner + i)] = op == ReduceOp::Max ? 0.0 : mag;
        }
      Tensor X = put(x, shape);
      Tensor Y = ops::reduce(op, X, axis_in);
      Shape want = shape;
      want.erase(want.begin() + axis);
      EXPECT_EQ(Y.shape(), want);
      EXPECT_TRUE(close_to(Y, ref, scale, kRtol));
      EXPECT_EQ(ops::reduce(op, X, axis_in, true).shape()[std::size_t(axis)], 1);
    }
}

TEST_P(BackendOps, ReduceAllAndNaN) {
  SCOPED_TRACE(seed());
  auto x = rng.floats(33000);
  double sum = 0, mag = 0;
  for (float v : x) sum += v, mag += std::abs(v);
  EXPECT_TRUE(close_to(ops::reduce_all(ReduceOp::Sum, put(x, {33, 1000})), {sum}, {mag}, kRtol));
  // A long row: on CUDA this takes the split (two-pass) path.
  const auto big = rng.floats(std::int64_t(1) << 21, 0.f, 1.f);
  double bsum = 0, bmax = 0;
  for (float v : big) bsum += v, bmax = std::max(bmax, double(v));
  const Tensor B = put(big, {std::int64_t(1) << 21});
  EXPECT_TRUE(close_to(ops::reduce_all(ReduceOp::Sum, B), {bsum}, {bsum}, kRtol));
  EXPECT_TRUE(close_to(ops::reduce_all(ReduceOp::Mean, B), {bsum / double(big.size())}, {0.0}, kRtol));
  EXPECT_TRUE(close_to(ops::reduce_all(ReduceOp::Max, B), {bmax}, {0.0}, 1e-7));
  x[4321] = NAN;  // max must not hide a NaN
  const auto m = ops::reduce_all(ReduceOp::Max, put(x, {33000})).to_vector<float>();
  EXPECT_TRUE(std::isnan(m[0])) << "max over data containing NaN returned " << m[0];
  // Nor a column max or sum split over chunks of rows (column 4321 mod 33 of [1000, 33]).
  const auto cm = ops::reduce(ReduceOp::Max, put(x, {1000, 33}), 0).to_vector<float>();
  const auto cs = ops::reduce(ReduceOp::Sum, put(x, {1000, 33}), 0).to_vector<float>();
  EXPECT_TRUE(std::isnan(cm[4321 % 33]) && std::isnan(cs[4321 % 33]))
      << "column reductions over data containing NaN returned " << cm[4321 % 33] << ", " << cs[4321 % 33];
  EXPECT_FALSE(std::isnan(cm[(4321 + 1) % 33])) << "NaN leaked into another column";
}

// ---- host <-> device: staged uploads, asynchronous reads --------------------
// On CUDA, uploads return once the bytes are in a pinned staging slot (four
// slots of 4 MiB, reused in turn, big uploads in pieces) and reads are queued
// behind the work before them. Values must survive the host buffer being
// overwritten at once, slot reuse, and work queued after a read.
TEST_P(BackendOps, StagedUploadsAndAsyncReadsKeepTheirValues) {
  SCOPED_TRACE(seed());
  std::vector<Tensor> uploaded;
  std::vector<std::vector<float>> want;
  for (std::int64_t n : {std::int64_t(1), std::int64_t(1000), std::int64_t(3) << 20, std::int64_t(5),
                         std::int64_t(1) << 20, std::int64_t(7), std::int64_t(2) << 20, std::int64_t(33),
                         std::int64_t(9), std::int64_t(1) << 22}) {
    std::vector<float> v = rng.floats(n);
    want.push_back(v);
    uploaded.push_back(put(v, {n}));
    std::fill(v.begin(), v.end(), NAN);  // the host buffer is reused at once
  }
  for (std::size_t i = 0; i < uploaded.size(); ++i)
    EXPECT_EQ(uploaded[i].to_vector<float>(), want[i]) << "upload " << i << " of " << want[i].size();

  const auto fv = rng.floats(3);
  const Tensor a = put(fv, {3});
  const Tensor b = Tensor::from_vector(std::vector<double>{0.125, -3.5}, {2}, dev());
  const Tensor c = Tensor::from_vector(std::vector<std::int32_t>{7, -9}, {2}, dev());
  std::unique_ptr<HostRead> r = ops::read_async({a, b, c});
  ops::fill(a, 42.0);  // queued after the read: must not show in it
  std::unique_ptr<HostRead> dropped = ops::read_async({a});
  dropped.reset();  // never waited for; its pinned block goes back to the pool
  const std::vector<double> got = r->wait();
  EXPECT_EQ(got, (std::vector<double>{fv[0], fv[1], fv[2], 0.125, -3.5, 7, -9}));
  EXPECT_EQ(r->wait(), got) << "waiting twice";
  const std::vector<double> again = ops::read_async({a})->wait();
  EXPECT_EQ(again, (std::vector<double>{42, 42, 42}));
  EXPECT_THROW(ops::read_async({}), ValueError);
  EXPECT_THROW(ops::read_async({a, Tensor()}), ValueError);
}

// ---- recurrent cell steps ---------------------------------------------------
double sigm(double x) { return 1.0 / (1.0 + std::exp(-x)); }

struct StepCase {
  std::int64_t B, H;
  bool bias, saved;
};
const StepCase kStepCases[] = {{1, 1, true, true},   {1, 7, false, false}, {7, 33, true, true},
                               {33, 7, true, false},  {3, 1000, true, true}, {64, 32, false, true},
                               {257, 7, true, true},  {256, 160, true, true}};  // the last splits rows over threads

TEST_P(BackendOps, LstmStep) {
  SCOPED_TRACE(seed());
  for (const StepCase& sc : kStepCases) {
    const std::int64_t B = sc.B, H = sc.H, G = 4 * H;
    SCOPED_TRACE(::testing::Message() << "B " << B << " H " << H << " bias " << sc.bias << " saved " << sc.saved);
    const auto x = rng.floats(B * G, -2, 2), hp = rng.floats(B * G, -2, 2);
    const auto bi = rng.floats(G), bh = rng.floats(G), cp = rng.floats(B * H, -3, 3);
    LstmStep s;
    s.xproj = put(x, {B, G});
    s.hproj = put(hp, {B, G});
    if (sc.bias) s.b_ih = put(bi, {G}), s.b_hh = put(bh, {G});
    s.c_prev = put(cp, {B, H});
    s.h = empty_poisoned({B, H}, dev());
    s.c = empty_poisoned({B, H}, dev());
    if (sc.saved) s.saved = empty_poisoned({B, G}, dev());
    std::vector<double> rh(std::size_t(B * H)), rc(rh.size()), rs(std::size_t(B * G));
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t j = 0; j < H; ++j) {
        double a[4];
        for (int k = 0; k < 4; ++k) {
          const std::size_t col = std::size_t(k * H + j);
          a[k] = double(x[b * G + col]) + hp[b * G + col] + (sc.bias ? double(bi[col]) + bh[col] : 0.0);
        }
        const double i = sigm(a[0]), f = sigm(a[1]), g = std::tanh(a[2]), o = sigm(a[3]);
        const double c = f * cp[b * H + j] + i * g;
        rc[b * H + j] = c;
        rh[b * H + j] = o * std::tanh(c);
        const double gates[4] = {i, f, g, o};
        for (int k = 0; k < 4; ++k) rs[b * G + k * H + j] = gates[k];
      }
    ops::lstm_step(s);
    EXPECT_TRUE(close_to(s.h, rh, {0.1}, kRtol)) << "h";
    EXPECT_TRUE(close_to(s.c, rc, {0.1}, kRtol)) << "c";
    if (sc.saved) {
      EXPECT_TRUE(close_to(s.saved, rs, {0.1}, kRtol)) << "saved gates";
    }
    // In place: c overwrites c_prev.
    s.c = s.c_prev;
    ops::lstm_step(s);
    EXPECT_TRUE(close_to(s.c_prev, rc, {0.1}, kRtol)) << "c in place";
  }
}

TEST_P(BackendOps, GruStep) {
  SCOPED_TRACE(seed());
  for (const StepCase& sc : kStepCases) {
    const std::int64_t B = sc.B, H = sc.H, G = 3 * H;
    SCOPED_TRACE(::testing::Message() << "B " << B << " H " << H << " bias " << sc.bias << " saved " << sc.saved);
    const auto x = rng.floats(B * G, -2, 2), hp = rng.floats(B * G, -2, 2);
    const auto bi = rng.floats(G), bh = rng.floats(G), h0 = rng.floats(B * H);
    GruStep s;
    s.xproj = put(x, {B, G});
    s.hproj = put(hp, {B, G});
    if (sc.bias) s.b_ih = put(bi, {G}), s.b_hh = put(bh, {G});
    s.h_prev = put(h0, {B, H});
    s.h = empty_poisoned({B, H}, dev());
    if (sc.saved) s.saved = empty_poisoned({B, 4 * H}, dev());
    std::vector<double> rh(std::size_t(B * H)), rs(std::size_t(B * 4 * H));
    auto bias = [&](const std::vector<float>& v, std::int64_t k) { return sc.bias ? double(v[k]) : 0.0; };
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t j = 0; j < H; ++j) {
        const float* xr = &x[b * G];
        const float* hr = &hp[b * G];
        const double r = sigm(double(xr[j]) + bias(bi, j) + hr[j] + bias(bh, j));
        const double z = sigm(double(xr[H + j]) + bias(bi, H + j) + hr[H + j] + bias(bh, H + j));
        const double hn = double(hr[2 * H + j]) + bias(bh, 2 * H + j);
        const double n = std::tanh(double(xr[2 * H + j]) + bias(bi, 2 * H + j) + r * hn);
        rh[b * H + j] = (1 - z) * n + z * h0[b * H + j];
        const double sv[4] = {r, z, n, hn};
        for (int k = 0; k < 4; ++k) rs[b * 4 * H + k * H + j] = sv[k];
      }
    ops::gru_step(s);
    EXPECT_TRUE(close_to(s.h, rh, {0.1}, kRtol)) << "h";
    if (sc.saved) {
      EXPECT_TRUE(close_to(s.saved, rs, {0.1}, kRtol)) << "saved";
    }
  }
}

TEST_P(BackendOps, RnnStep) {
  SCOPED_TRACE(seed());
  for (RnnActivation act : {RnnActivation::Tanh, RnnActivation::Relu})
    for (const StepCase& sc : kStepCases) {
      const std::int64_t B = sc.B, H = sc.H;
      SCOPED_TRACE(::testing::Message() << (act == RnnActivation::Tanh ? "tanh" : "relu") << " B " << B << " H " << H);
      const auto x = rng.floats(B * H, -2, 2), hp = rng.floats(B * H, -2, 2);
      const auto bi = rng.floats(H), bh = rng.floats(H);
      RnnStep s;
      s.xproj = put(x, {B, H});
      s.hproj = put(hp, {B, H});
      if (sc.bias) s.b_ih = put(bi, {H}), s.b_hh = put(bh, {H});
      s.h = empty_poisoned({B, H}, dev());
      s.activation = act;
      std::vector<double> rh(std::size_t(B * H)), scale(rh.size());
      for (std::int64_t b = 0; b < B; ++b)
        for (std::int64_t j = 0; j < H; ++j) {
          const std::size_t e = std::size_t(b * H + j);
          const double pre = double(x[e]) + hp[e] + (sc.bias ? double(bi[j]) + bh[j] : 0.0);
          rh[e] = act == RnnActivation::Tanh ? std::tanh(pre) : std::max(pre, 0.0);
          scale[e] = std::abs(double(x[e])) + std::abs(double(hp[e])) + 2.0;
        }
      ops::rnn_step(s);
      EXPECT_TRUE(close_to(s.h, rh, scale, kRtol));
    }
}

// ---- masked steps and backward steps, against the float64 CPU backend ------------
// The float64 CPU path of these kernels is itself checked by finite differences
// (test_recurrent.cpp); here every backend's float32 run must match it.
Tensor f64_of(const std::vector<float>& v, const Shape& s) {
  return Tensor::from_vector(std::vector<double>(v.begin(), v.end()), s, Device::cpu());
}

TEST_P(BackendOps, StepsMaskedAndBackward) {
  SCOPED_TRACE(seed());
  for (auto [B, H] : {std::pair<std::int64_t, std::int64_t>{1, 1}, {7, 33}, {33, 7}, {3, 1000}}) {
    SCOPED_TRACE(::testing::Message() << "B " << B << " H " << H);
    std::vector<float> mask(std::size_t(B), 1.f);
    mask[std::size_t(B / 2)] = 0.f;  // one padded row
    const auto x4 = rng.floats(B * 4 * H, -2, 2), h4 = rng.floats(B * 4 * H, -2, 2);
    const auto bi = rng.floats(4 * H), bh = rng.floats(4 * H), hp = rng.floats(B * H), cp = rng.floats(B * H);
    const auto dy = rng.floats(B * H), dhn = rng.floats(B * H), dcn = rng.floats(B * H);
    for (int cell = 0; cell < 3; ++cell) {
      const std::int64_t G = (cell == 0 ? 4 : cell == 1 ? 3 : 1) * H;
      const auto xg = std::vector<float>(x4.begin(), x4.begin() + B * G);
      const auto hg = std::vector<float>(h4.begin(), h4.begin() + B * G);
      const auto big = std::vector<float>(bi.begin(), bi.begin() + G), bhg = std::vector<float>(bh.begin(), bh.begin() + G);
      // Runs forward + backward of `cell` on device d (f32) or the CPU (f64) and
      // returns every output, flattened, in float64.
      auto run = [&](Device d, bool ref) {
        auto T = [&](const std::vector<float>& v, const Shape& sh) {
          return ref ? f64_of(v, sh) : Tensor::from_vector(v, sh, d);
        };
        auto out = [&](const Shape& sh) {
          Tensor t = Tensor::empty(sh, ref ? DType::f64 : DType::f32, d);
          poison(t);
          return t;
        };
        std::vector<Tensor> outs;
        const Tensor m = T(mask, {B}), hprev = T(hp, {B, H});
        if (cell == 0) {
          LstmStep f{T(xg, {B, G}), T(hg, {B, G}), T(big, {G}), T(bhg, {G}), T(cp, {B, H}), hprev, m,
                     out({B, H}), out({B, H}), out({B, H}), out({B, 4 * H})};
          ops::lstm_step(f);
          LstmStepBackward bw{f.saved, f.c_prev, f.c, T(dy, {B, H}), T(dhn, {B, H}), T(dcn, {B, H}), m,
                              out({B, 4 * H}), out({B, H}), out({B, H})};
          ops::lstm_step_backward(bw);
          outs = {f.h, f.c, f.y, f.saved, bw.dgates, bw.dh_prev, bw.dc_prev};
        } else if (cell == 1) {
          GruStep f{T(xg, {B, G}), T(hg, {B, G}), T(big, {G}), T(bhg, {G}), hprev, m, out({B, H}),
                    out({B, H}), out({B, 4 * H})};
          ops::gru_step(f);
          GruStepBackward bw{f.saved, hprev, T(dy, {B, H}), T(dhn, {B, H}), m, out({B, G}), out({B, G}),
                             out({B, H})};
          ops::gru_step_backward(bw);
          outs = {f.h, f.y, f.saved, bw.dgates_x, bw.dgates_h, bw.dh_prev};
        } else {
          RnnStep f{T(xg, {B, G}), T(hg, {B, G}), T(big, {G}), T(bhg, {G}), hprev, m, out({B, H}),
                    out({B, H}), RnnActivation::Tanh};
          ops::rnn_step(f);
          RnnStepBackward bw{f.h, T(dy, {B, H}), T(dhn, {B, H}), m, out({B, H}), out({B, H}),
                             RnnActivation::Tanh};
          ops::rnn_step_backward(bw);
          outs = {f.h, f.y, bw.dgates, bw.dh_prev};
        }
        std::vector<std::vector<double>> flat;
        for (const Tensor& t : outs)
          flat.push_back(ref ? t.to_vector<double>() : widen(t.to_vector<float>()));
        return flat;
      };
      const auto want = run(Device::cpu(), true), got = run(dev(), false);
      for (std::size_t k = 0; k < want.size(); ++k) {
        std::vector<float> g(got[k].begin(), got[k].end());
        EXPECT_TRUE(close_to(g, want[k], {0.1}, kRtol)) << "cell " << cell << " output " << k;
      }
      // The padded row carries its state and has zero output and zero gate gradients.
      const std::size_t pb = std::size_t(B / 2);
      for (std::int64_t j = 0; j < H; ++j) {
        EXPECT_EQ(got[0][pb * H + j], double(hp[pb * H + j])) << "padded row keeps h";
        EXPECT_EQ(got[cell == 0 ? 2 : 1][pb * H + j], 0.0) << "padded row outputs 0";
      }
    }
  }
}

TEST_P(BackendOps, Transpose01WithReversal) {
  SCOPED_TRACE(seed());
  for (const Shape& s : {Shape{1, 1, 1}, Shape{7, 33, 3}, Shape{33, 7, 1}, Shape{3, 1000}}) {
    const auto x = rng.floats(shape_numel(s));
    const std::int64_t A = s[0], B = s[1], C = shape_numel(s) / (A * B);
    for (int rev = 0; rev < 4; ++rev) {
      SCOPED_TRACE(::testing::Message() << shape_str(s) << " rev " << rev);
      std::vector<double> ref(x.size());
      for (std::int64_t b = 0; b < B; ++b)
        for (std::int64_t a = 0; a < A; ++a)
          for (std::int64_t c = 0; c < C; ++c) {
            const std::int64_t sa = rev & 1 ? A - 1 - a : a, sb = rev & 2 ? B - 1 - b : b;
            ref[std::size_t((b * A + a) * C + c)] = x[std::size_t((sa * B + sb) * C + c)];
          }
      const Tensor y = ops::transpose01(put(x, s), rev & 1, rev & 2);
      Shape want = s;
      std::swap(want[0], want[1]);
      EXPECT_EQ(y.shape(), want);
      EXPECT_TRUE(close_to(y, ref, {0.0}, 1e-12));
    }
  }
}

// ---- what a backend supports --------------------------------------------------
TEST_P(BackendOps, Float64IsCpuOnlyAndSaysSo) {
  const OpQuery q{OpKind::Gemm, DType::f64};
  const Support s = backend(dev()).supports(q);
  if (dev().is_cpu()) {
    EXPECT_TRUE(s.ok);
    // The CPU's float64 path is the reference-grade one: exact to 1e-12.
    const auto a = rng.floats(7 * 33), b = rng.floats(33 * 5);
    std::vector<double> ad(a.begin(), a.end()), bd(b.begin(), b.end()), ref(35, 0.0), scale(35, 0.0);
    for (int i = 0; i < 7; ++i)
      for (int j = 0; j < 5; ++j)
        for (int k = 0; k < 33; ++k) ref[i * 5 + j] += ad[i * 33 + k] * bd[k * 5 + j], scale[i * 5 + j] += std::abs(ad[i * 33 + k] * bd[k * 5 + j]);
    const Tensor C = ops::matmul(Tensor::from_vector(ad, {7, 33}, dev()), Tensor::from_vector(bd, {33, 5}, dev()));
    const auto c = C.to_vector<double>();
    for (int i = 0; i < 35; ++i) EXPECT_NEAR(c[i], ref[i], 1e-12 * (scale[i] + 1));
  } else {
    EXPECT_FALSE(s.ok);
    EXPECT_NE(s.reason.find("CPU"), std::string::npos) << s.reason;
    const Tensor a = Tensor::zeros({2, 2}, DType::f64, Device::cpu()).to(dev());
    EXPECT_THROW(ops::matmul(a, a), UnsupportedError);
  }
}

// ---- the CPU cell kernels' float math (recur/kernels/vec_math.h) ------------------
// Error in units of the float spacing at the exact value.
double ulps(float got, double want) {
  const double w = std::abs(want);
  const float wf = float(w);
  double u = double(std::nextafter(wf, std::numeric_limits<float>::infinity())) - double(wf);
  if (w < double(std::numeric_limits<float>::min())) u = double(std::numeric_limits<float>::denorm_min());
  return std::abs(double(got) - want) / u;
}

TEST(VecMath, WithinTwoAndAHalfUlpsOfTheExactValues) {
  namespace kc = kernels::cpu;
  double e_exp = 0, e_sig = 0, e_tanh = 0;
  float at_exp = 0, at_sig = 0, at_tanh = 0;
  // Every 997th float in [-100, 100] (about 2.2 million), both signs.
  const std::uint32_t top = [] { float f = 100.f; std::uint32_t u; std::memcpy(&u, &f, 4); return u; }();
  for (std::uint32_t u = 0; u <= top; u += 997)
    for (float sign : {1.f, -1.f}) {
      float x;
      std::memcpy(&x, &u, 4);
      x *= sign;
      const double xd = x;
      if (xd < 88.5) {  // e^x overflows float above 88.72
        const double d = ulps(kc::vexp(x), std::exp(xd));
        if (d > e_exp) e_exp = d, at_exp = x;
      }
      const double ds = ulps(kc::vsigmoid(x), 1 / (1 + std::exp(-xd)));
      if (ds > e_sig) e_sig = ds, at_sig = x;
      const double dt = ulps(kc::vtanh(x), std::tanh(xd));
      if (dt > e_tanh) e_tanh = dt, at_tanh = x;
    }
  // Float evaluation: over every float in [-100, 100] (not only this sweep's)
  // the largest errors are 1.04, 2.40 and 1.51 ulp compiled as here (no FMA),
  // 1.02, 2.40 and 1.51 with FMAs, as the cell kernels' clones are.
  EXPECT_LE(e_exp, 1.1) << "at " << at_exp;
  EXPECT_LE(e_sig, 2.45) << "at " << at_sig;
  EXPECT_LE(e_tanh, 1.55) << "at " << at_tanh;
}

TEST(VecMath, LimitsAndNaN) {
  namespace kc = kernels::cpu;
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_TRUE(std::isnan(kc::vexp(nan)));
  EXPECT_TRUE(std::isnan(kc::vsigmoid(nan)));
  EXPECT_TRUE(std::isnan(kc::vtanh(nan)));
  EXPECT_EQ(kc::vexp(inf), inf);
  EXPECT_EQ(kc::vexp(-inf), 0.f);
  EXPECT_EQ(kc::vexp(0.f), 1.f);
  EXPECT_EQ(kc::vsigmoid(inf), 1.f);
  EXPECT_EQ(kc::vsigmoid(-inf), 0.f);
  EXPECT_EQ(kc::vsigmoid(0.f), 0.5f);
  EXPECT_EQ(kc::vtanh(inf), 1.f);
  EXPECT_EQ(kc::vtanh(-inf), -1.f);
  EXPECT_EQ(kc::vtanh(0.f), 0.f);
  EXPECT_EQ(kc::vtanh(1e-30f), 1e-30f);
  EXPECT_EQ(kc::vtanh(-3e-5f), -3e-5f);
}

// ---- the packed recurrent product (CPU float32) -------------------------------------
// packed_product against a float64 sum on fresh random inputs: row counts that
// hit every row block of the kernel (1-8 and 8 + remainders), column counts
// that leave a partly padded panel, both weight orientations, writing (over
// NaN) and accumulating. Bound: 1e-5 relative to the magnitude of the terms.
TEST(PackedProduct, MatchesADoubleSum) {
  namespace kc = kernels::cpu;
  if (!kc::packed_product_available()) GTEST_SKIP() << "no AVX-512F on this CPU: the sequence kernels use the BLAS";
  Random rng;
  SCOPED_TRACE("seed " + std::to_string(rng.seed()) + " (RECUR_TEST_SEED)");
  const std::int64_t shapes[][2] = {{9, 27}, {1, 1}, {16, 100}, {33, 32}, {128, 384}, {64, 31}, {7, 129}};
  kc::PackedWeight p;
  for (const auto& kn : shapes)
    for (bool trans : {false, true})
      for (std::int64_t M : {1, 2, 3, 4, 5, 6, 7, 8, 11, 17, 32})
        for (bool acc : {false, true}) {
          const std::int64_t K = kn[0], N = kn[1];
          SCOPED_TRACE("M " + std::to_string(M) + " K " + std::to_string(K) + " N " + std::to_string(N) +
                       (trans ? " trans" : "") + (acc ? " accumulate" : ""));
          const std::int64_t lda = K + 3, ldc = N + 5;  // leading dimensions wider than the rows
          const auto a = rng.floats(M * lda), w = rng.floats(K * N), c0 = rng.floats(M * ldc);
          ASSERT_TRUE(kc::pack_weight(w.data(), trans, K, N, p));
          std::vector<float> c = c0;
          if (!acc)
            for (std::int64_t i = 0; i < M; ++i)
              for (std::int64_t j = 0; j < N; ++j) c[std::size_t(i * ldc + j)] = std::numeric_limits<float>::quiet_NaN();
          kc::packed_product(M, a.data(), lda, p, acc, c.data(), ldc);
          double worst = 0;
          for (std::int64_t i = 0; i < M; ++i) {
            for (std::int64_t j = 0; j < N; ++j) {
              double ref = acc ? double(c0[std::size_t(i * ldc + j)]) : 0.0, scale = std::abs(ref);
              for (std::int64_t k = 0; k < K; ++k) {
                const double t = double(a[std::size_t(i * lda + k)]) *
                                 double(trans ? w[std::size_t(j * K + k)] : w[std::size_t(k * N + j)]);
                ref += t;
                scale += std::abs(t);
              }
              const double got = c[std::size_t(i * ldc + j)];
              ASSERT_FALSE(std::isnan(got)) << "at [" << i << ", " << j << "]";
              worst = std::max(worst, std::abs(got - ref) / (scale + 1e-30));
            }
            // the padding past column N is left as it was
            for (std::int64_t j = N; j < ldc; ++j)
              ASSERT_EQ(c[std::size_t(i * ldc + j)], c0[std::size_t(i * ldc + j)]) << "column " << j;
          }
          EXPECT_LE(worst, 1e-5);
        }
}

// ---- whole recurrent passes (CPU) against the step ops ------------------------------
// The CPU runs GRU and LSTM layers as one pass over time, rows split into chunks
// over threads. Against a loop of the (separately checked) step ops in float64:
// 70 rows, so two threads give four chunks of 17-18 rows; padded rows, rows
// ending early and a fully padded row; forward with and without the saved
// activations, then backward; with and without a recurrent-dropout mask.
TEST(SequenceOps, MatchTheStepOpsLoop) {
  const int threads = kernels::cpu::num_threads();
  kernels::cpu::set_num_threads(std::max(threads, 2));
  Random rng;
  SCOPED_TRACE("seed " + std::to_string(rng.seed()) + " (RECUR_TEST_SEED)");
  const std::int64_t T = 6, B = 70, H = 9;
  std::vector<float> mask(std::size_t(T * B), 1.f);
  for (std::int64_t b = 0; b < B; ++b) {
    const std::int64_t len = b == 5 ? 0 : b % 3 == 0 ? T - b % 5 : T;  // row 5 fully padded
    for (std::int64_t t = len; t < T; ++t) mask[std::size_t(t * B + b)] = 0.f;
  }
  for (bool drop : {false, true})
  for (bool lstm : {false, true}) {
    const std::int64_t G = (lstm ? 4 : 3) * H;
    SCOPED_TRACE(std::string(lstm ? "lstm" : "gru") + (drop ? " recurrent dropout" : ""));
    const auto x = rng.floats(T * B * G, -2, 2), w = rng.floats(G * H, -0.5f, 0.5f);
    const auto bi = rng.floats(G), bh = rng.floats(G), h0 = rng.floats(B * H), c0 = rng.floats(B * H);
    const auto dys = rng.floats(T * B * H), dhT = rng.floats(B * H), dcT = rng.floats(B * H);
    std::vector<float> rmask;  // 0 or 1 / 0.7, about 30 % dropped
    if (drop) {
      rmask = rng.floats(B * H, 0.f, 1.f);
      for (float& v : rmask) v = v < 0.3f ? 0.f : float(1.0 / 0.7);
    }
    auto f64 = [](const std::vector<float>& v, const Shape& sh) { return f64_of(v, sh); };
    auto f32 = [](const std::vector<float>& v, const Shape& sh) { return Tensor::from_vector(v, sh, Device::cpu()); };
    auto step = [](const Tensor& t, std::int64_t i) {  // [T, ...] -> [...] at i
      Shape sh(t.shape().begin() + 1, t.shape().end());
      return t.slice(i, i + 1).reshape(sh);
    };

    // Reference: the step ops in float64, as the engine loops over them.
    const Tensor rx = f64(x, {T, B, G}), rw = f64(w, {G, H}), rbi = f64(bi, {G}), rbh = f64(bh, {G});
    const Tensor rm = f64(mask, {T, B});
    const Tensor rhs = Tensor::empty({T + 1, B, H}, DType::f64, Device::cpu());
    const Tensor rcs = Tensor::empty({T + 1, B, H}, DType::f64, Device::cpu());
    const Tensor rys = Tensor::empty({T, B, H}, DType::f64, Device::cpu());
    const Tensor rsaved = Tensor::empty({T, B, 4 * H}, DType::f64, Device::cpu());
    step(rhs, 0).copy_from(f64(h0, {B, H}));
    step(rcs, 0).copy_from(f64(c0, {B, H}));
    const Tensor hproj = Tensor::empty({B, G}, DType::f64, Device::cpu());
    const Tensor rrm = drop ? f64(rmask, {B, H}) : Tensor();
    const Tensor hin = Tensor::empty({B, H}, DType::f64, Device::cpu());
    for (std::int64_t t = 0; t < T; ++t) {
      if (drop) ops::binary(BinaryOp::Mul, step(rhs, t), rrm, hin);
      ops::gemm(drop ? hin : step(rhs, t), rw, hproj, false, true);
      if (lstm)
        ops::lstm_step({step(rx, t), hproj, rbi, rbh, step(rcs, t), step(rhs, t), step(rm, t),
                        step(rhs, t + 1), step(rcs, t + 1), step(rys, t), step(rsaved, t)});
      else
        ops::gru_step({step(rx, t), hproj, rbi, rbh, step(rhs, t), step(rm, t), step(rhs, t + 1),
                       step(rys, t), step(rsaved, t)});
    }
    Tensor rdh = f64(dhT, {B, H}), rdc = f64(dcT, {B, H});
    const Tensor rdh2 = Tensor::empty({B, H}, DType::f64, Device::cpu());
    const Tensor rdgx = Tensor::empty({T, B, G}, DType::f64, Device::cpu());
    const Tensor rdgh = Tensor::zeros({T, B, G}, DType::f64, Device::cpu());  // GRU only
    const Tensor rdys = f64(dys, {T, B, H});
    Tensor a = rdh, b2 = rdh2;
    for (std::int64_t t = T - 1; t >= 0; --t) {
      if (lstm)
        ops::lstm_step_backward({step(rsaved, t), step(rcs, t), step(rcs, t + 1), step(rdys, t), a, rdc,
                                 step(rm, t), step(rdgx, t), b2, rdc});
      else
        ops::gru_step_backward({step(rsaved, t), step(rhs, t), step(rdys, t), a, step(rm, t),
                                step(rdgx, t), step(rdgh, t), b2});
      if (drop) {  // dh_prev += (dgates_h W_hh) * rec_mask
        const Tensor rec = ops::matmul(lstm ? step(rdgx, t) : step(rdgh, t), rw);
        ops::binary(BinaryOp::Mul, rec, rrm, rec);
        ops::binary(BinaryOp::Add, b2, rec, b2);
      } else {
        ops::gemm(lstm ? step(rdgx, t) : step(rdgh, t), rw, b2, false, false, 1.0, 1.0);
      }
      std::swap(a, b2);
    }
    auto flat = [](const Tensor& t) { return t.to_vector<double>(); };
    const std::vector<std::vector<double>> want = {
        flat(rhs), flat(rcs), flat(rys), flat(rsaved), flat(a), flat(rdc), flat(rdgx), flat(rdgh)};

    for (DType dt : {DType::f64, DType::f32}) {
      SCOPED_TRACE(dtype_name(dt));
      auto in = [&](const std::vector<float>& v, const Shape& sh) { return dt == DType::f64 ? f64(v, sh) : f32(v, sh); };
      auto out = [&](const Shape& sh) {
        Tensor t = Tensor::empty(sh, dt, Device::cpu());
        poison(t);
        return t;
      };
      auto values = [&](const Tensor& t) {
        return dt == DType::f64 ? t.to_vector<double>() : widen(t.to_vector<float>());
      };
      ASSERT_TRUE(backend(Device::cpu()).supports({lstm ? OpKind::LstmSequence : OpKind::GruSequence, dt, B, H}).ok);
      const Tensor sx = in(x, {T, B, G}), sw = in(w, {G, H}), sbi = in(bi, {G}), sbh = in(bh, {G});
      const Tensor sm = in(mask, {T, B});
      const Tensor srm = drop ? in(rmask, {B, H}) : Tensor();
      const Tensor hs = out({T + 1, B, H}), cs = out({T + 1, B, H}), ys = out({T, B, H});
      const Tensor saved = out({T, B, 4 * H});
      step(hs, 0).copy_from(in(h0, {B, H}));
      step(cs, 0).copy_from(in(c0, {B, H}));
      ASSERT_TRUE(backend(Device::cpu())
                      .supports({lstm ? OpKind::LstmSequenceBackward : OpKind::GruSequenceBackward, dt, B, H, drop})
                      .ok);
      if (lstm) ops::lstm_sequence({sx, sw, sbi, sbh, sm, hs, cs, ys, saved, srm});
      else ops::gru_sequence({sx, sw, sbi, sbh, sm, hs, ys, saved, srm});
      const Tensor dh = in(dhT, {B, H}), dc = in(dcT, {B, H}), dgx = out({T, B, G}), dgh = out({T, B, G});
      const Tensor db_x = out({G}), db_h = out({G});
      if (lstm) ops::lstm_sequence_backward({saved, cs, in(dys, {T, B, H}), sm, sw, dh, dc, dgx, db_x, srm});
      else ops::gru_sequence_backward({saved, hs, in(dys, {T, B, H}), sm, sw, dh, dgx, dgh, db_x, db_h, srm});
      // Inference: alternating state buffers, the last state in hs2[T % 2].
      const Tensor hs2 = out({2, B, H}), cs2 = out({1, B, H});
      step(hs2, 0).copy_from(in(h0, {B, H}));
      step(cs2, 0).copy_from(in(c0, {B, H}));
      if (lstm) ops::lstm_sequence({sx, sw, sbi, sbh, sm, hs2, cs2, {}, {}, srm});
      else ops::gru_sequence({sx, sw, sbi, sbh, sm, hs2, {}, {}, srm});

      const std::vector<std::vector<double>> got = {
          values(hs), lstm ? values(cs) : want[1], values(ys), values(saved), values(dh),
          lstm ? values(dc) : want[5], values(dgx), lstm ? want[7] : values(dgh)};
      const double rtol = dt == DType::f64 ? 1e-12 : kRtol;
      for (std::size_t k = 0; k < want.size(); ++k) {
        std::vector<float> g(got[k].begin(), got[k].end());
        if (dt == DType::f64) {
          for (std::size_t i = 0; i < got[k].size(); ++i)
            ASSERT_NEAR(got[k][i], want[k][i], rtol * (std::abs(want[k][i]) + 1)) << "output " << k << " at " << i;
        } else {
          EXPECT_TRUE(close_to(g, want[k], {0.1}, rtol)) << "output " << k;
        }
      }
      // The bias sums: over every step and row of the gate gradients.
      std::vector<double> want_bx(std::size_t(G), 0.0), want_bh(std::size_t(G), 0.0);
      for (std::int64_t r = 0; r < T * B; ++r)
        for (std::int64_t j = 0; j < G; ++j) {
          want_bx[std::size_t(j)] += want[6][std::size_t(r * G + j)];
          want_bh[std::size_t(j)] += want[7][std::size_t(r * G + j)];
        }
      const auto got_bx = values(db_x);
      const auto got_bh = values(db_h);
      for (std::size_t j = 0; j < std::size_t(G); ++j) {
        EXPECT_NEAR(got_bx[j], want_bx[j], rtol * (std::abs(want_bx[j]) + 1)) << "db_ih " << j;
        if (!lstm) {
          EXPECT_NEAR(got_bh[j], want_bh[j], rtol * (std::abs(want_bh[j]) + 1)) << "db_hh " << j;
        }
      }
      const auto last = values(step(hs2, T % 2)), want_last = values(step(hs, T));
      for (std::size_t i = 0; i < last.size(); ++i) EXPECT_EQ(last[i], want_last[i]) << "inference h_T " << i;
      if (lstm) {
        const auto lc = values(step(cs2, 0)), want_c = values(step(cs, T));
        for (std::size_t i = 0; i < lc.size(); ++i) EXPECT_EQ(lc[i], want_c[i]) << "inference c_T " << i;
      }
    }
  }
  kernels::cpu::set_num_threads(threads);
}

// Small batches split each step's units over threads (rnn_sequence.cpp).
// Each column's sum is the same as the rows path's, so the outputs must be
// bit for bit those with the split off (RECUR_RNN_UNIT_SPLIT=0), a path the
// tests above hold to the float64 step loop: every state, output and saved
// activation of a training pass and the inference pass's last state; with a
// padded row and a row ending early, with and without recurrent dropout;
// unit ranges that do not fall on vector boundaries (H 200).
TEST(SequenceOps, SmallBatchUnitSplitIsBitExact) {
  namespace kc = kernels::cpu;
  if (!kc::packed_product_available()) GTEST_SKIP() << "no AVX-512F on this CPU: no unit split";
  const int threads = kc::num_threads();
  kc::set_num_threads(std::max(threads, 2));
  Random rng;
  SCOPED_TRACE("seed " + std::to_string(rng.seed()) + " (RECUR_TEST_SEED)");
  const std::int64_t T = 7;
  struct Case {
    int cell;  // 0 GRU, 1 LSTM, 2 SimpleRNN (tanh)
    std::int64_t B, H;
  };
  for (const Case c : {Case{0, 1, 256}, Case{1, 1, 256}, Case{0, 2, 200}, Case{1, 17, 64}, Case{2, 2, 256}})
    for (bool drop : {false, true}) {
      const std::int64_t B = c.B, H = c.H, G = (c.cell == 0 ? 3 : c.cell == 1 ? 4 : 1) * H;
      SCOPED_TRACE("cell " + std::to_string(c.cell) + " B " + std::to_string(B) + " H " + std::to_string(H) +
                   (drop ? " recurrent dropout" : ""));
      {
        ScopedEnv on("RECUR_RNN_UNIT_SPLIT", nullptr);
        ASSERT_GE(kc::rnn_unit_split_threads(B, H, G / H), 2) << "this case must take the split path";
      }
      const auto x = rng.floats(T * B * G, -2, 2), w = rng.floats(G * H, -0.1f, 0.1f);
      const auto bi = rng.floats(G), bh = rng.floats(G), h0 = rng.floats(B * H), c0 = rng.floats(B * H);
      std::vector<float> mask(std::size_t(T * B), 1.f), rmask;
      if (B > 1) {
        for (std::int64_t t = 0; t < T; ++t) mask[std::size_t(t * B + 1)] = 0.f;  // row 1 fully padded
        if (B > 2) mask[std::size_t((T - 1) * B)] = mask[std::size_t((T - 2) * B)] = 0.f;  // row 0 ends early
      }
      if (drop) {
        rmask = rng.floats(B * H, 0.f, 1.f);
        for (float& v : rmask) v = v < 0.3f ? 0.f : float(1.0 / 0.7);
      }
      auto in = [](const std::vector<float>& v, const Shape& sh) { return Tensor::from_vector(v, sh, Device::cpu()); };
      auto out = [](const Shape& sh) {
        Tensor t = Tensor::empty(sh, DType::f32, Device::cpu());
        poison(t);
        return t;
      };
      auto step = [](const Tensor& t, std::int64_t i) {
        Shape sh(t.shape().begin() + 1, t.shape().end());
        return t.slice(i, i + 1).reshape(sh);
      };
      auto run = [&](const char* split) {
        ScopedEnv env("RECUR_RNN_UNIT_SPLIT", split);
        const Tensor sx = in(x, {T, B, G}), sw = in(w, {G, H}), sbi = in(bi, {G}), sbh = in(bh, {G});
        const Tensor sm = in(mask, {T, B}), srm = drop ? in(rmask, {B, H}) : Tensor();
        const Tensor hs = out({T + 1, B, H}), cs = out({T + 1, B, H}), ys = out({T, B, H});
        const Tensor saved = out({T, B, 4 * H}), hs2 = out({2, B, H}), cs2 = out({1, B, H});
        step(hs, 0).copy_from(in(h0, {B, H}));
        step(cs, 0).copy_from(in(c0, {B, H}));
        step(hs2, 0).copy_from(in(h0, {B, H}));
        step(cs2, 0).copy_from(in(c0, {B, H}));
        if (c.cell == 0) {
          ops::gru_sequence({sx, sw, sbi, sbh, sm, hs, ys, saved, srm});
          ops::gru_sequence({sx, sw, sbi, sbh, sm, hs2, {}, {}, srm});
        } else if (c.cell == 1) {
          ops::lstm_sequence({sx, sw, sbi, sbh, sm, hs, cs, ys, saved, srm});
          ops::lstm_sequence({sx, sw, sbi, sbh, sm, hs2, cs2, {}, {}, srm});
        } else {
          ops::rnn_sequence({sx, sw, sbi, sbh, sm, hs, ys, srm, RnnActivation::Tanh, true});
          ops::rnn_sequence({sx, sw, sbi, sbh, sm, hs2, {}, srm, RnnActivation::Tanh, false});
        }
        std::vector<std::vector<float>> r = {hs.to_vector<float>(), ys.to_vector<float>(),
                                             step(hs2, T % 2).to_vector<float>()};
        if (c.cell == 1) {
          r.push_back(cs.to_vector<float>());
          r.push_back(cs2.to_vector<float>());
        }
        if (c.cell != 2) r.push_back(saved.to_vector<float>());
        return r;
      };
      const auto split = run(nullptr), rows = run("0");
      // Inside another parallel region OpenMP gives the pass a team of one
      // (nested regions are inactive): its barrier must not wait for a
      // second thread that never comes, and the result is the same.
      std::vector<std::vector<float>> nested;
#pragma omp parallel num_threads(2)
      {
#pragma omp single
        nested = run(nullptr);
      }
      ASSERT_EQ(split.size(), rows.size());
      ASSERT_EQ(nested.size(), rows.size());
      for (std::size_t k = 0; k < split.size(); ++k)
        for (std::size_t i = 0; i < split[k].size(); ++i) {
          ASSERT_FALSE(std::isnan(split[k][i])) << "output " << k << " at " << i;
          ASSERT_EQ(split[k][i], rows[k][i]) << "output " << k << " at " << i;
          ASSERT_EQ(nested[k][i], rows[k][i]) << "nested, output " << k << " at " << i;
        }
    }
  kc::set_num_threads(threads);
}

// SimpleRNN (tanh and relu) and the reset-before GRU as whole passes, the same
// way: against the step ops the engine loops over, in float64; float64 to
// 1e-12, float32 to 1e-5; masks with a fully padded row; recurrent dropout.
TEST(SequenceOps, SimpleRnnAndResetBeforeGruMatchTheStepOpsLoop) {
  const int threads = kernels::cpu::num_threads();
  kernels::cpu::set_num_threads(std::max(threads, 2));
  Random rng;
  SCOPED_TRACE("seed " + std::to_string(rng.seed()) + " (RECUR_TEST_SEED)");
  const std::int64_t T = 6, B = 70, H = 9;
  const Device cpu = Device::cpu();
  std::vector<float> mask(std::size_t(T * B), 1.f);
  for (std::int64_t b = 0; b < B; ++b) {
    const std::int64_t len = b == 5 ? 0 : b % 3 == 0 ? T - b % 5 : T;
    for (std::int64_t t = len; t < T; ++t) mask[std::size_t(t * B + b)] = 0.f;
  }
  auto step = [](const Tensor& t, std::int64_t i) {
    Shape sh(t.shape().begin() + 1, t.shape().end());
    return t.slice(i, i + 1).reshape(sh);
  };
  for (int cell = 0; cell < 3; ++cell)  // 0: SimpleRNN tanh, 1: SimpleRNN relu, 2: reset-before GRU
    for (bool drop : {false, true}) {
      const bool rb = cell == 2;
      const RnnActivation act = cell == 1 ? RnnActivation::Relu : RnnActivation::Tanh;
      const std::int64_t G = (rb ? 3 : 1) * H;
      SCOPED_TRACE(std::string(rb ? "gru reset_before" : cell == 1 ? "rnn relu" : "rnn tanh") +
                   (drop ? " recurrent dropout" : ""));
      const auto x = rng.floats(T * B * G, -2, 2), w = rng.floats(G * H, -0.5f, 0.5f);
      const auto bi = rng.floats(G), bh = rng.floats(G), h0 = rng.floats(B * H);
      const auto dys = rng.floats(T * B * H), dhT = rng.floats(B * H);
      std::vector<float> rmask;
      if (drop) {
        rmask = rng.floats(B * H, 0.f, 1.f);
        for (float& v : rmask) v = v < 0.3f ? 0.f : float(1.0 / 0.7);
      }
      // Reference: the step ops in float64, as Recurrent's step loop runs them.
      const Tensor rx = f64_of(x, {T, B, G}), rw = f64_of(w, {G, H}), rbi = f64_of(bi, {G}), rbh = f64_of(bh, {G});
      const Tensor rm = f64_of(mask, {T, B}), rrm = drop ? f64_of(rmask, {B, H}) : Tensor();
      const Tensor rhs = Tensor::empty({T + 1, B, H}, DType::f64, cpu), rys = Tensor::empty({T, B, H}, DType::f64, cpu);
      const Tensor rsaved = Tensor::zeros({T, B, 4 * H}, DType::f64, cpu);
      step(rhs, 0).copy_from(f64_of(h0, {B, H}));
      const Tensor hin = Tensor::empty({B, H}, DType::f64, cpu), hproj = Tensor::empty({B, 2 * H}, DType::f64, cpu);
      const Tensor rh = Tensor::empty({B, H}, DType::f64, cpu), hn = Tensor::empty({B, H}, DType::f64, cpu);
      const Tensor hp1 = Tensor::empty({B, H}, DType::f64, cpu);
      for (std::int64_t t = 0; t < T; ++t) {
        const Tensor h_prev = step(rhs, t), h_in = drop ? hin : h_prev;
        if (drop) ops::binary(BinaryOp::Mul, h_prev, rrm, hin);
        if (rb) {
          ops::gemm(h_in, rw.slice(0, 2 * H), hproj, false, true);
          ops::gru_rb_gates({step(rx, t), hproj, rbi, rbh, h_in, rh, step(rsaved, t)});
          ops::gemm(rh, rw.slice(2 * H, 3 * H), hn, false, true);
          ops::gru_rb_output({step(rx, t), hn, rbi, rbh, h_prev, step(rm, t), step(rsaved, t), step(rhs, t + 1),
                              step(rys, t)});
        } else {
          ops::gemm(h_in, rw, hp1, false, true);
          ops::rnn_step({step(rx, t), hp1, rbi, rbh, h_prev, step(rm, t), step(rhs, t + 1), step(rys, t), act});
        }
      }
      Tensor rdh = f64_of(dhT, {B, H});
      Tensor rdh2 = Tensor::empty({B, H}, DType::f64, cpu);
      const Tensor rdgx = Tensor::empty({T, B, G}, DType::f64, cpu), rdrz = Tensor::empty({T, B, 2 * H}, DType::f64, cpu),
                   rdgn = Tensor::empty({T, B, H}, DType::f64, cpu), rdys = f64_of(dys, {T, B, H});
      const Tensor drh = Tensor::empty({B, H}, DType::f64, cpu), dh_in = Tensor::empty({B, H}, DType::f64, cpu);
      for (std::int64_t t = T - 1; t >= 0; --t) {
        const Tensor h_prev = step(rhs, t);
        if (rb) {
          ops::gru_rb_back_n({step(rsaved, t), h_prev, step(rdys, t), rdh, step(rm, t), step(rdgx, t), step(rdrz, t),
                              step(rdgn, t), rdh2});
          ops::gemm(step(rdgn, t), rw.slice(2 * H, 3 * H), drh);
          if (drop) ops::binary(BinaryOp::Mul, h_prev, rrm, hin);
          ops::gru_rb_back_r({step(rsaved, t), drop ? hin : h_prev, drh, step(rm, t), step(rdgx, t), step(rdrz, t),
                              dh_in});
          ops::gemm(step(rdrz, t), rw.slice(0, 2 * H), dh_in, false, false, 1.0, 1.0);
        } else {
          ops::rnn_step_backward({step(rhs, t + 1), step(rdys, t), rdh, step(rm, t), step(rdgx, t), rdh2, act});
          ops::gemm(step(rdgx, t), rw, dh_in);
        }
        if (drop) ops::binary(BinaryOp::Mul, dh_in, rrm, dh_in);
        ops::binary(BinaryOp::Add, rdh2, dh_in, rdh2);
        std::swap(rdh, rdh2);
      }
      auto flat = [](const Tensor& t) { return t.to_vector<double>(); };
      std::vector<std::vector<double>> want = {flat(rhs), flat(rys), flat(rdh), flat(rdgx)};
      if (rb) {
        want.push_back(flat(rsaved));
        want.push_back(flat(rdrz));
        want.push_back(flat(rdgn));
      }
      std::vector<double> want_bx(std::size_t(G), 0.0), want_bh(std::size_t(G), 0.0);
      const auto& dgx = want[3];
      for (std::int64_t r = 0; r < T * B; ++r)
        for (std::int64_t j = 0; j < G; ++j) want_bx[std::size_t(j)] += dgx[std::size_t(r * G + j)];
      if (rb) {
        for (std::int64_t r = 0; r < T * B; ++r) {
          for (std::int64_t j = 0; j < 2 * H; ++j) want_bh[std::size_t(j)] += want[5][std::size_t(r * 2 * H + j)];
          for (std::int64_t j = 0; j < H; ++j) want_bh[std::size_t(2 * H + j)] += want[6][std::size_t(r * H + j)];
        }
      }

      for (DType dt : {DType::f64, DType::f32}) {
        SCOPED_TRACE(dtype_name(dt));
        auto in = [&](const std::vector<float>& v, const Shape& sh) {
          return v.empty() ? Tensor() : dt == DType::f64 ? f64_of(v, sh) : Tensor::from_vector(v, sh, cpu);
        };
        auto out = [&](const Shape& sh) {
          Tensor t = Tensor::empty(sh, dt, cpu);
          poison(t);
          return t;
        };
        auto values = [&](const Tensor& t) { return dt == DType::f64 ? t.to_vector<double>() : widen(t.to_vector<float>()); };
        const OpKind fwd = rb ? OpKind::GruRbSequence : OpKind::RnnSequence;
        const OpKind bwd = rb ? OpKind::GruRbSequenceBackward : OpKind::RnnSequenceBackward;
        ASSERT_TRUE(backend(cpu).supports({fwd, dt, B, H, drop}).ok);
        ASSERT_TRUE(backend(cpu).supports({bwd, dt, B, H, drop}).ok);
        const Tensor sx = in(x, {T, B, G}), sw = in(w, {G, H}), sbi = in(bi, {G}), sbh = in(bh, {G}),
                     sm = in(mask, {T, B}), srm = in(rmask, {B, H});
        const Tensor hs = out({T + 1, B, H}), ys = out({T, B, H}), saved = out({T, B, 4 * H});
        step(hs, 0).copy_from(in(h0, {B, H}));
        if (rb) ops::gru_rb_sequence({sx, sw, sbi, sbh, sm, hs, ys, saved, srm});
        else ops::rnn_sequence({sx, sw, sbi, sbh, sm, hs, ys, srm, act, true});
        const Tensor dh = in(dhT, {B, H}), dgx_o = out({T, B, G}), drz_o = out({T, B, 2 * H}), dgn_o = out({T, B, H});
        const Tensor db_x = out({G}), db_h = out({G});
        if (rb)
          ops::gru_rb_sequence_backward({saved, hs, in(dys, {T, B, H}), sm, sw, dh, dgx_o, drz_o, dgn_o, db_x, db_h, srm});
        else
          ops::rnn_sequence_backward({hs, in(dys, {T, B, H}), sm, sw, dh, dgx_o, db_x, srm, act});
        // Inference: two alternating state buffers, the last state in hs2[T % 2].
        const Tensor hs2 = out({2, B, H});
        step(hs2, 0).copy_from(in(h0, {B, H}));
        if (rb) ops::gru_rb_sequence({sx, sw, sbi, sbh, sm, hs2, {}, {}, srm});
        else ops::rnn_sequence({sx, sw, sbi, sbh, sm, hs2, {}, srm, act, false});

        std::vector<std::vector<double>> got = {values(hs), values(ys), values(dh), values(dgx_o)};
        if (rb) {
          got.push_back(values(saved));
          got.push_back(values(drz_o));
          got.push_back(values(dgn_o));
        }
        got.push_back(values(db_x));
        want.push_back(want_bx);
        if (rb) {
          got.push_back(values(db_h));
          want.push_back(want_bh);
        }
        const double rtol = dt == DType::f64 ? 1e-12 : kRtol;
        for (std::size_t k = 0; k < want.size(); ++k) {
          ASSERT_EQ(got[k].size(), want[k].size()) << "output " << k;
          const bool sum = k + (rb ? 2 : 1) >= want.size();  // the bias sums: scale by the row count
          for (std::size_t i = 0; i < got[k].size(); ++i)
            ASSERT_NEAR(got[k][i], want[k][i], rtol * (std::abs(want[k][i]) + (sum ? double(T * B) : 1.0)))
                << "output " << k << " at " << i;
        }
        want.resize(rb ? 7 : 4);
        const auto last = values(step(hs2, T % 2)), want_last = values(step(hs, T));
        for (std::size_t i = 0; i < last.size(); ++i) ASSERT_EQ(last[i], want_last[i]) << "inference h_T " << i;
      }
    }
  kernels::cpu::set_num_threads(threads);
}

// The two layout tests' tensors: one float type on the CPU, outputs poisoned,
// and a mask that pads every other row's last 1-3 steps.
struct SeqTensors {
  DType dt;
  Tensor in(const std::vector<float>& v, const Shape& sh) const {
    return dt == DType::f64 ? f64_of(v, sh) : Tensor::from_vector(v, sh, Device::cpu());
  }
  Tensor out(const Shape& sh) const {
    Tensor t = Tensor::empty(sh, dt, Device::cpu());
    poison(t);
    return t;
  }
  std::vector<double> values(const Tensor& t) const {
    return dt == DType::f64 ? t.to_vector<double>() : widen(t.to_vector<float>());
  }
  static std::vector<float> padded_mask(std::int64_t T, std::int64_t B) {
    std::vector<float> mask(std::size_t(T * B), 1.f);
    for (std::int64_t b = 0; b < B; b += 2)
      for (std::int64_t t = T - 1 - b % 3; t < T; ++t) mask[std::size_t(t * B + b)] = 0.f;
    return mask;
  }
};

// ys and dys batch-major ([B, T, H], or reversed in time for a go_backwards
// layer's outputs in input order) instead of time-major: the same values, bit
// for bit, in the other places (only where a pass writes ys and reads dys
// moves), for each cell and float type, with padded rows and recurrent
// dropout, through the row split (B 37) and the unit split (B 3, H 128).
TEST(SequenceOps, BatchMajorOutputsAndGradientsMatchTimeMajor) {
  const int threads = kernels::cpu::num_threads();
  kernels::cpu::set_num_threads(std::max(threads, 2));
  Random rng;
  SCOPED_TRACE("seed " + std::to_string(rng.seed()) + " (RECUR_TEST_SEED)");
  const std::int64_t T = 5;
  for (auto [B, H] : {std::pair<std::int64_t, std::int64_t>{37, 20}, {3, 128}})
    for (int cell = 0; cell < 4; ++cell)  // GRU, LSTM, SimpleRNN, reset-before GRU
      for (DType dt : {DType::f64, DType::f32}) {
        const std::int64_t G = (cell == 1 ? 4 : cell == 2 ? 1 : 3) * H;
        SCOPED_TRACE(::testing::Message() << "B " << B << " H " << H << " cell " << cell << " " << dtype_name(dt));
        const SeqTensors st{dt};
        const std::vector<float> mask = SeqTensors::padded_mask(T, B);
        std::vector<float> rmask = rng.floats(B * H, 0.f, 1.f);
        for (float& v : rmask) v = v < 0.3f ? 0.f : float(1.0 / 0.7);
        auto in = [&](const std::vector<float>& v, const Shape& sh) { return st.in(v, sh); };
        auto out = [&](const Shape& sh) { return st.out(sh); };
        auto values = [&](const Tensor& t) { return st.values(t); };
        const Tensor x = in(rng.floats(T * B * G, -2, 2), {T, B, G}), w = in(rng.floats(G * H, -0.5f, 0.5f), {G, H});
        const Tensor bi = in(rng.floats(G), {G}), bh = in(rng.floats(G), {G}), m = in(mask, {T, B});
        const Tensor rm = in(rmask, {B, H});
        const auto h0 = rng.floats(B * H), c0 = rng.floats(B * H), dhT = rng.floats(B * H), dcT = rng.floats(B * H);
        const auto dys_tm = rng.floats(T * B * H);
        const RnnActivation act = RnnActivation::Tanh;
        // One forward and backward pass with ys / dys in `layout`: every output.
        auto run = [&](SeqLayout layout, const Tensor& dys) {
          const bool tm = layout == SeqLayout::TimeMajor;
          const Tensor hs = out({T + 1, B, H}), cs = out({T + 1, B, H}), saved = out({T, B, 4 * H});
          const Tensor ys = tm ? out({T, B, H}) : out({B, T, H});
          hs.slice(0, 1).copy_from(in(h0, {1, B, H}));
          cs.slice(0, 1).copy_from(in(c0, {1, B, H}));
          const Tensor dh = in(dhT, {B, H}), dc = in(dcT, {B, H});
          const Tensor dgx = out({T, B, G}), dgh = out({T, B, G}), drz = out({T, B, 2 * H}), dgn = out({T, B, H});
          const Tensor db_x = out({G}), db_h = out({G});
          switch (cell) {
            case 0:
              ops::gru_sequence({x, w, bi, bh, m, hs, ys, saved, rm, layout});
              ops::gru_sequence_backward({saved, hs, dys, m, w, dh, dgx, dgh, db_x, db_h, rm, layout});
              return std::vector<Tensor>{ys, hs, saved, dh, dgx, dgh, db_x, db_h};
            case 1:
              ops::lstm_sequence({x, w, bi, bh, m, hs, cs, ys, saved, rm, layout});
              ops::lstm_sequence_backward({saved, cs, dys, m, w, dh, dc, dgx, db_x, rm, layout});
              return std::vector<Tensor>{ys, hs, cs, saved, dh, dc, dgx, db_x};
            case 2:
              ops::rnn_sequence({x, w, bi, bh, m, hs, ys, rm, act, true, layout});
              ops::rnn_sequence_backward({hs, dys, m, w, dh, dgx, db_x, rm, act, layout});
              return std::vector<Tensor>{ys, hs, dh, dgx, db_x};
            default:
              ops::gru_rb_sequence({x, w, bi, bh, m, hs, ys, saved, rm, layout});
              ops::gru_rb_sequence_backward({saved, hs, dys, m, w, dh, dgx, drz, dgn, db_x, db_h, rm, layout});
              return std::vector<Tensor>{ys, hs, saved, dh, dgx, drz, dgn, db_x, db_h};
          }
        };
        const std::vector<Tensor> want = run(SeqLayout::TimeMajor, in(dys_tm, {T, B, H}));
        const std::vector<double> want_ys = values(want[0]);
        for (SeqLayout layout : {SeqLayout::BatchMajor, SeqLayout::BatchMajorReversed}) {
          const bool rev = layout == SeqLayout::BatchMajorReversed;
          SCOPED_TRACE(rev ? "batch-major reversed" : "batch-major");
          auto at = [&](std::int64_t t, std::int64_t b, std::int64_t j) {  // step t's (b, j) in [B, T, H]
            return std::size_t((b * T + (rev ? T - 1 - t : t)) * H + j);
          };
          std::vector<float> dys_bm(dys_tm.size());
          for (std::int64_t t = 0; t < T; ++t)
            for (std::int64_t b = 0; b < B; ++b)
              for (std::int64_t j = 0; j < H; ++j) dys_bm[at(t, b, j)] = dys_tm[std::size_t((t * B + b) * H + j)];
          const std::vector<Tensor> got = run(layout, in(dys_bm, {B, T, H}));
          ASSERT_EQ(got[0].shape(), (Shape{B, T, H}));
          const std::vector<double> ys = values(got[0]);
          for (std::int64_t t = 0; t < T; ++t)
            for (std::int64_t b = 0; b < B; ++b)
              for (std::int64_t j = 0; j < H; ++j) {
                const double g = ys[at(t, b, j)], e = want_ys[std::size_t((t * B + b) * H + j)];
                ASSERT_TRUE(g == e) << "ys step " << t << " row " << b << " unit " << j << ": " << g << " vs " << e;
              }
          for (std::size_t k = 1; k < want.size(); ++k) {
            const std::vector<double> g = values(got[k]), e = values(want[k]);
            for (std::size_t i = 0; i < e.size(); ++i)
              ASSERT_TRUE(g[i] == e[i]) << "output " << k << " at " << i << ": " << g[i] << " vs " << e[i];
          }
        }
        // A batch-major ys must be [B, T, H].
        const Tensor hs = out({T + 1, B, H}), saved = out({T, B, 4 * H}), cs = out({T + 1, B, H});
        if (cell == 1) {
          EXPECT_THROW(ops::lstm_sequence({x, w, bi, bh, m, hs, cs, out({T, B, H}), saved, rm, SeqLayout::BatchMajor}),
                       ShapeError);
        }
      }
  kernels::cpu::set_num_threads(threads);
}

// A forward pass given the input itself (x [B, T, I] and w_ih; the pass
// projects each step) against the same pass given xproj = (time-major x)
// W_ih^T from one GEMM: the same outputs up to the GEMMs' rounding, for GRU,
// LSTM and SimpleRNN, both float types, in input order and reversed
// (go_backwards), with padded rows, in the row split (B 37); at B 3, H 128,
// where a float32 pass splits its units, the CPU backend makes xproj itself
// first. The CUDA passes take xproj only.
TEST(SequenceOps, InputProjectedInThePassMatchesXproj) {
  const int threads = kernels::cpu::num_threads();
  kernels::cpu::set_num_threads(std::max(threads, 2));
  Random rng;
  SCOPED_TRACE("seed " + std::to_string(rng.seed()) + " (RECUR_TEST_SEED)");
  const Device cpu = Device::cpu();
  const std::int64_t T = 5, I = 24;
  for (auto [B, H] : {std::pair<std::int64_t, std::int64_t>{37, 20}, {3, 128}})
    for (int cell = 0; cell < 3; ++cell)  // GRU, LSTM, SimpleRNN
      for (DType dt : {DType::f64, DType::f32})
        for (bool rev : {false, true}) {
          const std::int64_t G = (cell == 1 ? 4 : cell == 2 ? 1 : 3) * H;
          SCOPED_TRACE(::testing::Message() << "B " << B << " H " << H << " cell " << cell << " "
                                            << dtype_name(dt) << (rev ? " reversed" : ""));
          const SeqTensors st{dt};
          const std::vector<float> mask = SeqTensors::padded_mask(T, B);
          auto in = [&](const std::vector<float>& v, const Shape& sh) { return st.in(v, sh); };
          auto out = [&](const Shape& sh) { return st.out(sh); };
          auto values = [&](const Tensor& t) { return st.values(t); };
          const Tensor x = in(rng.floats(B * T * I, -2, 2), {B, T, I}), w_ih = in(rng.floats(G * I, -0.5f, 0.5f), {G, I});
          const Tensor w = in(rng.floats(G * H, -0.5f, 0.5f), {G, H}), bi = in(rng.floats(G), {G}),
                       bh = in(rng.floats(G), {G}), m = in(mask, {T, B});
          const auto h0 = rng.floats(B * H), c0 = rng.floats(B * H);
          const Tensor xproj = ops::matmul(ops::transpose01(x, false, rev).reshape({T * B, I}), w_ih, false, true)
                                   .reshape({T, B, G});
          auto run = [&](bool fused) {  // inference: two state buffers, h_T in hs[T % 2]
            const Tensor hs = out({2, B, H}), cs = out({1, B, H}), ys = out({B, T, H});
            hs.slice(0, 1).copy_from(in(h0, {1, B, H}));
            cs.copy_from(in(c0, {1, B, H}));
            const Tensor xp = fused ? Tensor() : xproj, xi = fused ? x : Tensor(), wi = fused ? w_ih : Tensor();
            const SeqLayout bm = SeqLayout::BatchMajor;
            if (cell == 0) ops::gru_sequence({xp, w, bi, bh, m, hs, ys, {}, {}, bm, xi, wi, rev});
            if (cell == 1) ops::lstm_sequence({xp, w, bi, bh, m, hs, cs, ys, {}, {}, bm, xi, wi, rev});
            if (cell == 2) ops::rnn_sequence({xp, w, bi, bh, m, hs, ys, {}, RnnActivation::Tanh, false, bm, xi, wi, rev});
            return std::vector<double>(values(ys));
          };
          const std::vector<double> want = run(false), got = run(true);
          const double rtol = dt == DType::f64 ? 1e-12 : 2e-5;
          for (std::size_t i = 0; i < want.size(); ++i)
            ASSERT_NEAR(got[i], want[i], rtol * (1 + std::abs(want[i]))) << "ys at " << i;
        }
  // Exactly one of xproj and x.
  const Tensor z = Tensor::zeros({2, 3, 4}, DType::f32, cpu), w = Tensor::zeros({3, 1}, DType::f32, cpu);
  const Tensor hs = Tensor::zeros({2, 2, 1}, DType::f32, cpu), wi = Tensor::zeros({3, 4}, DType::f32, cpu);
  EXPECT_THROW(ops::gru_sequence({Tensor::zeros({3, 2, 3}, DType::f32, cpu), w, {}, {}, {}, hs, {}, {}, {},
                                  SeqLayout::TimeMajor, z, wi, false}),
               ValueError);
  EXPECT_THROW(ops::gru_sequence({{}, w, {}, {}, {}, hs, {}, {}, {}, SeqLayout::TimeMajor, z, Tensor::zeros({2, 4}, DType::f32, cpu), false}),
               ShapeError);
  kernels::cpu::set_num_threads(threads);
}

// Whole passes: the CPU's always; on CUDA (docs/persistent.md) the block-local
// forward unless RECUR_PERSISTENT=0, the backward only with RECUR_PERSISTENT=1.
TEST_P(BackendOps, SequenceOpsSayWhereTheyRun) {
  const char* env = std::getenv("RECUR_PERSISTENT");
  const std::string mode = env ? env : "";
  const Support s = backend(dev()).supports({OpKind::GruSequence, DType::f32, 4, 4});
  EXPECT_EQ(s.ok, dev().is_cpu() || mode != "0") << s.reason;
  const Support back = backend(dev()).supports({OpKind::GruSequenceBackward, DType::f32, 4, 4});
  EXPECT_EQ(back.ok, dev().is_cpu() || mode == "1") << back.reason;
  if (!s.ok) {
    GruSequence g{Tensor::zeros({1, 4, 12}, DType::f32, dev()), Tensor::zeros({12, 4}, DType::f32, dev()),
                  {}, {}, {}, Tensor::zeros({2, 4, 4}, DType::f32, dev()), {}, {}, {}};
    EXPECT_THROW(ops::gru_sequence(g), UnsupportedError);
  }
}

INSTANTIATE_TEST_SUITE_P(CPU, BackendOps, ::testing::Values(Device::cpu()),
                         [](const auto&) { return std::string("cpu"); });
INSTANTIATE_TEST_SUITE_P(CUDA, BackendOps, ::testing::Values(Device::cuda(0)),
                         [](const auto&) { return std::string("cuda0"); });

}  // namespace
}  // namespace recur::test
