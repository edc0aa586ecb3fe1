// float sigmoid and tanh (and e^x) written for loops the compiler vectorises:
// no branches (selects on bit patterns), no library calls. The CPU cell
// kernels use them for float32; float64 keeps libm (math.h), the reference.
//
// All in float: a vector holds 16 of them under AVX-512 (8 doubles), the
// division is float's, and e^x needs a degree-7 polynomial where double
// needed degree 11. Over every float in [-100, 100] the largest errors are
// 1.04 ulp (vexp), 2.40 (vsigmoid) and 1.51 (vtanh) against the exact values
// (1.02, 2.40, 1.51 where the compiler fuses multiply-adds, as in the cell
// kernels' clones); libm's expf and tanhf are within about an ulp, CUDA's
// expf and tanhf within 2. Until 2026-12-06 these evaluated in double and
// rounded once (half an ulp) at about three times the cost, a sixth of an
// LSTM's forward pass at H 256. The float32 golden tests
// (tests/test_pytorch_golden.cpp, 1e-5 of PyTorch's float64 gradients) pass
// with either. tests/test_backend_ops.cpp (VecMath) checks the accuracy.
// NaN in gives NaN out; +-inf give the limits.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace recur::kernels::cpu {

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

// e^x for x in [-150, 89] (or NaN): below -103.9 the result rounds to 0,
// above 88.72 it is +inf.
inline float vexp_core(float x) {
  // n = round(x / ln 2), by adding 1.5 * 2^23: the sum's low mantissa bits
  // hold n. (x / ln 2 is rounded first, so n can be off by one near a
  // midpoint: |r| then grows a little past ln(2)/2, which the series covers.)
  constexpr float kShift = 12582912.0f;
  const float t = x * 1.44269504f + kShift;
  const float n = t - kShift;
  // r = x - n ln 2 in two parts: ln 2's high part has 15 significant bits, so
  // n * hi is exact for |n| < 512, and so is x minus it (the two are close).
  const float r = (x - n * 0.693145751953125f) - n * 1.42860682e-6f;
  // e^r from its Taylor series to r^7 (truncation below 6e-9, a tenth of an
  // ulp), in Estrin's order (a shorter chain of dependent operations than
  // Horner's), the small terms summed before the 1.
  const float r2 = r * r, r4 = r2 * r2;
  const float q = 1.0f + (r + (r2 * (0.5f + r * (1.0f / 6.0f)) +
                               r4 * ((1.0f / 24.0f + r * (1.0f / 120.0f)) +
                                     r2 * (1.0f / 720.0f + r * (1.0f / 5040.0f)))));
  // 2^n as two factors 2^n1 2^n2 (n1 = floor(n / 2)), each a normal float
  // for n in [-216, 128], so results that are subnormal or overflow come out
  // right: n from t's bits, then into the exponent field.
  const std::int32_t ni = std::int32_t(float_to_bits(t) - float_to_bits(kShift));
  const std::int32_t n1 = ni >> 1, n2 = ni - n1;
  return q * bits_to_float(std::uint32_t(n1 + 127) << 23) * bits_to_float(std::uint32_t(n2 + 127) << 23);
}

// e^x; x clamped to [-150, 89] first (beyond, the float result is 0 or +inf anyway).
inline float vexp(float x) { return vexp_core(clamp_keep_nan(x, -150.0f, 89.0f)); }

// 1 / (1 + e^-x) for x >= 0 and e^x / (1 + e^x) below: e = e^-|x| is in
// (0, 1], so nothing overflows and the tiny values of large negative x keep
// their relative accuracy.
inline float vsigmoid(float x) {
  const float e = vexp_core(-clamp_keep_nan(std::fabs(x), 0.0f, 150.0f));
  return select(x < 0.0f, e, 1.0f) / (1.0f + e);
}

// tanh |x| = (1 - e) / (1 + e), e = e^-2|x|, with x's sign, from |x| 0.55 up
// (there 1 - e >= 2/3, so the subtraction loses nothing); tanh(9.1) rounds to
// 1, so |x| is clamped to 10. Below 0.55, x + x^3 P(x^2) with P of degree 4,
// fitted here for the least relative error (2e-9) on [0, 0.55].
inline float vtanh(float x) {
  const float a = clamp_keep_nan(std::fabs(x), 0.0f, 10.0f);
  const float e = vexp_core(-2.0f * a);
  const float big = (1.0f - e) / (1.0f + e);
  const float u = x * x;
  const float u2 = u * u;
  const float q = (-0.33333319425582886f + u * 0.1333264708518982f) +
                  u2 * ((-0.05385904759168625f + u * 0.021100692451000214f) + u2 * -0.006316773593425751f);
  const float small = x + x * u * q;
  return select(a < 0.55f, small, std::copysign(big, x));
}

}  // namespace recur::kernels::cpu
