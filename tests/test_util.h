// Helpers shared by recur's tests: fresh random inputs (seed printed, and
// fixable with RECUR_TEST_SEED), output poisoning, the float64 comparison that
// fails on NaN, and GPU-skipping.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "recur/recur.h"

namespace recur {
// Readable test names and failure messages for Device parameters.
inline void PrintTo(const Device& d, std::ostream* os) { *os << d.str(); }
}  // namespace recur

namespace recur::test {

// A fresh seed per test unless RECUR_TEST_SEED is set; the seed is printed in
// every failure so a run can be repeated exactly.
inline std::uint64_t test_seed() {
  if (const char* s = std::getenv("RECUR_TEST_SEED")) return std::strtoull(s, nullptr, 10);
  return (std::uint64_t(std::random_device{}()) << 32) ^ std::random_device{}();
}

class Random {
 public:
  explicit Random(std::uint64_t seed = test_seed()) : seed_(seed), gen_(seed) {}
  std::uint64_t seed() const { return seed_; }
  // Uniform floats in [lo, hi), never all zero; returned as float so the
  // reference computes on exactly the values the kernels see.
  std::vector<float> floats(std::int64_t n, float lo = -1.f, float hi = 1.f) {
    std::uniform_real_distribution<float> d(lo, hi);
    std::vector<float> v(static_cast<std::size_t>(n));
    for (float& x : v) x = d(gen_);
    return v;
  }
  std::mt19937_64& gen() { return gen_; }

 private:
  std::uint64_t seed_;
  std::mt19937_64 gen_;
};

inline std::vector<double> widen(const std::vector<float>& v) { return {v.begin(), v.end()}; }

// Skips the current test, visibly, when `device` cannot be used.
#define RECUR_SKIP_IF_UNAVAILABLE(device)                                                     \
  do {                                                                                        \
    if ((device).is_cuda() && ::recur::cuda_device_count() <= (device).index)                 \
      GTEST_SKIP() << "no CUDA device " << (device).str() << ": "                             \
                   << (::recur::cuda_device_count() ? std::string("index out of range")       \
                                                    : ::recur::cuda_unavailable_reason());    \
  } while (0)

// Fills a tensor with NaN so that any element a kernel fails to write fails the
// comparison.
inline void poison(const Tensor& t) { ops::fill(t, std::numeric_limits<double>::quiet_NaN()); }

inline Tensor empty_poisoned(const Shape& shape, Device device) {
  Tensor t = Tensor::empty(shape, DType::f32, device);
  poison(t);
  return t;
}

// Passes when every |out_i - ref_i| <= rtol * (|ref_i| + scale_i), where scale_i
// is the magnitude of the terms that produced ref_i (sum of |a_k b_k| for a
// GEMM, sum of |x| for a reduction) or a constant for bounded pointwise
// results. NaN or inf in out fails unless ref has the same.
inline ::testing::AssertionResult close_to(const std::vector<float>& out,
                                           const std::vector<double>& ref,
                                           const std::vector<double>& scale, double rtol) {
  if (out.size() != ref.size())
    return ::testing::AssertionFailure() << "size " << out.size() << " != " << ref.size();
  std::size_t bad = 0, worst = 0;
  double worst_ratio = 0;
  for (std::size_t i = 0; i < out.size(); ++i) {
    const double o = out[i], r = ref[i];
    const double s = scale.size() == 1 ? scale[0] : scale[i];
    double ratio;
    if (std::isnan(r))
      ratio = std::isnan(o) ? 0.0 : std::numeric_limits<double>::infinity();
    else if (!std::isfinite(o))
      ratio = std::numeric_limits<double>::infinity();
    else
      ratio = std::abs(o - r) / (rtol * (std::abs(r) + s) + 1e-300);
    if (!(ratio <= 1.0)) ++bad;
    if (!(ratio <= worst_ratio)) {
      worst_ratio = ratio;
      worst = i;
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << bad << " of " << out.size() << " elements off; worst at " << worst << ": got "
         << out[worst] << ", want " << ref[worst] << " (error " << worst_ratio
         << "x the bound, rtol " << rtol << ")";
}

inline ::testing::AssertionResult close_to(const Tensor& out, const std::vector<double>& ref,
                                           const std::vector<double>& scale, double rtol) {
  return close_to(out.to_vector<float>(), ref, scale, rtol);
}

// f() must throw a recur::Error whose text contains `what`.
template <class F>
void expect_error(F f, const char* what) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one mentioning " << what;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
  }
}

// Central differences (step 1e-6) of loss() with respect to every element of
// `param` (float64 on the CPU, perturbed in place and restored) against
// `analytic`; each must agree to 1e-6 (1 + |numeric|).
inline void expect_finite_differences(const Tensor& param, const std::vector<double>& analytic,
                                      const std::function<double()>& loss, const std::string& name) {
  const double eps = 1e-6;
  double* p = param.data<double>();
  ASSERT_EQ(std::int64_t(analytic.size()), param.numel()) << name;
  for (std::int64_t i = 0; i < param.numel(); ++i) {
    const double v = p[i];
    p[i] = v + eps;
    const double lp = loss();
    p[i] = v - eps;
    const double lm = loss();
    p[i] = v;
    const double numeric = (lp - lm) / (2 * eps);
    EXPECT_NEAR(analytic[std::size_t(i)], numeric, 1e-6 * (1 + std::abs(numeric))) << name << "[" << i << "]";
  }
}

}  // namespace recur::test
