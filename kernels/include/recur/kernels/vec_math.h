// float sigmoid and tanh (and e^x) written for loops the compiler vectorises:
// no branches (selects on bit patterns), no library calls. The CPU cell
// kernels use them for float32; float64 keeps libm (math.h), the reference.
//
// Each evaluates in double and rounds once to float, so the result is the
// exact value's float rounding up to a few 1e-13 of relative error: as close
// as libm's expf/tanhf, or closer. That matters: the recurrent gradients
// multiply by 1 - tanh^2 and sigma (1 - sigma), which magnify an ulp of error
// near saturation, and the float32 gradients are held to 1e-5 of the exact
// ones (tests/test_pytorch_golden.cpp). tests/test_backend_ops.cpp (VecMath)
// checks the accuracy over sweeps. NaN in gives NaN out; +-inf give the limits.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace recur::kernels::cpu {

inline double bits_to_double(std::uint64_t u) {
  double d;
  std::memcpy(&d, &u, sizeof d);
  return d;
}
inline std::uint64_t double_to_bits(double d) {
  std::uint64_t u;
  std::memcpy(&u, &d, sizeof u);
  return u;
}
inline float bits_to_float(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
inline std::uint32_t float_to_bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

// c ? a : b on the bit patterns. A plain ?: on floats followed by arithmetic
// is not if-converted under GCC's default -ftrapping-math, which keeps the
// loop scalar; this form vectorises under any flags. (Selects stay on float
// values: a double-compare mask does not vectorise on plain SSE2.)
inline float select(bool c, float a, float b) {
  const std::uint32_t m = 0u - std::uint32_t(c);
  return bits_to_float((float_to_bits(a) & m) | (float_to_bits(b) & ~m));
}

// x clamped to [lo, hi]; NaN passes through (both comparisons are false).
inline float clamp_keep_nan(float x, float lo, float hi) {
  return select(x > hi, hi, select(x < lo, lo, x));
}

// e^x in double for |x| <= 300 (or NaN), relative error below 1e-13.
inline double vexp_d(double x) {
  // n = round(x / ln 2), by adding 1.5 * 2^52: the sum's low mantissa bits hold n.
  constexpr double kShift = 6755399441055744.0;
  const double t = x * 1.4426950408889634 + kShift;
  const double n = t - kShift;
  // r = x - n ln 2 in two parts (ln 2's high part ends in zero bits, so n * hi is exact).
  const double r = (x - n * 6.93147180369123816490e-01) - n * 1.90821492927058770002e-10;
  // e^r, |r| <= ln(2)/2, from its Taylor series to r^11 (truncation < 1e-14).
  double p = 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  // 2^n from n's bits: n = bits(t) - bits(kShift), then into the exponent field.
  const std::uint64_t scale = (double_to_bits(t) - double_to_bits(kShift) + 1023ull) << 52;
  return p * bits_to_double(scale);
}

// e^x, x clamped to [-150, 150] first: below, e^x underflows float anyway
// (the result is e^-150 ~ 7e-66, which rounds to 0); above, +inf.
inline float vexp(float x) { return float(vexp_d(double(clamp_keep_nan(x, -150.0f, 150.0f)))); }

// 1 / (1 + e^-x); beyond +-150 the float result is already 0 or 1.
inline float vsigmoid(float x) {
  return float(1.0 / (1.0 + vexp_d(-double(clamp_keep_nan(x, -150.0f, 150.0f)))));
}

// tanh = 1 - 2 / (e^2|x| + 1) with x's sign: in double the cancellation near 0
// costs under 1e-12 absolute, which is below a float ulp of tanh for |x| >=
// 1e-4; below that tanh(x) rounds to x itself (x^3/3 is under 0.1 ulp).
// tanh(10) is 1 in float.
inline float vtanh(float x) {
  const float a = clamp_keep_nan(std::fabs(x), 0.0f, 10.0f);
  const double e = vexp_d(2.0 * double(a));
  const float t = float(1.0 - 2.0 / (e + 1.0));
  return select(a < 1e-4f, x, std::copysign(t, x));
}

}  // namespace recur::kernels::cpu
