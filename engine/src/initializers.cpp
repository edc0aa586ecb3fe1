// Initializers: values drawn in double on the host from an explicit seed,
// then copied into the tensor's dtype and device.
#include "recur/engine/initializers.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "recur/host/ops.h"

namespace recur::init {
namespace {

constexpr double kPi = 3.14159265358979323846;

// Uniform in [0, 1) from the top 53 bits of one mt19937_64 output.
double unit(std::mt19937_64& g) { return double(g() >> 11) * 0x1.0p-53; }

// Standard normal by Box-Muller (both values of each pair used).
std::vector<double> standard_normal(std::int64_t n, std::uint64_t seed) {
  std::mt19937_64 g(seed);
  std::vector<double> v(static_cast<std::size_t>(n));
  for (std::size_t i = 0; i < v.size(); i += 2) {
    const double u1 = 1.0 - unit(g);  // (0, 1]: log is finite
    const double u2 = unit(g);
    const double r = std::sqrt(-2.0 * std::log(u1));
    v[i] = r * std::cos(2 * kPi * u2);
    if (i + 1 < v.size()) v[i + 1] = r * std::sin(2 * kPi * u2);
  }
  return v;
}

void require_float(const char* what, const Tensor& t) {
  RECUR_CHECK(t.defined(), Value, "init::", what, ": undefined tensor");
  RECUR_CHECK(t.dtype() == DType::f32 || t.dtype() == DType::f64, DType, "init::", what,
              ": needs a float32 or float64 tensor, got ", dtype_name(t.dtype()));
}

// Copies host doubles into t, converting to its dtype.
void store(const Tensor& t, const std::vector<double>& v) {
  Tensor dst = t;  // a handle to the same storage
  if (t.dtype() == DType::f64)
    dst.copy_from(Tensor::from_vector(v, t.shape(), Device::cpu()));
  else
    dst.copy_from(Tensor::from_vector(std::vector<float>(v.begin(), v.end()), t.shape(), Device::cpu()));
}

// Thin QR of a [m, n] row-major matrix (m >= n) by Householder reflections.
// Returns Q [m, n] with its columns multiplied by sign(diag(R)), which makes
// it the unique Q of the factorisation with a positive diagonal in R.
std::vector<double> orthonormal_columns(std::vector<double> a, std::int64_t m, std::int64_t n) {
  auto A = [&](std::int64_t i, std::int64_t j) -> double& { return a[std::size_t(i * n + j)]; };
  std::vector<std::vector<double>> vs;  // reflectors, v_k of length m - k
  std::vector<double> rdiag(static_cast<std::size_t>(n));
  for (std::int64_t k = 0; k < n; ++k) {
    double norm = 0;
    for (std::int64_t i = k; i < m; ++i) norm += A(i, k) * A(i, k);
    norm = std::sqrt(norm);
    // alpha has the opposite sign of A(k, k): no cancellation in v_0.
    const double alpha = A(k, k) > 0 ? -norm : norm;
    std::vector<double> v(std::size_t(m - k));
    for (std::int64_t i = k; i < m; ++i) v[std::size_t(i - k)] = A(i, k);
    v[0] -= alpha;
    double vn = 0;
    for (double x : v) vn += x * x;
    vn = std::sqrt(vn);
    if (vn > 0)
      for (double& x : v) x /= vn;
    // A[k:, k:] -= 2 v (v^T A[k:, k:])
    for (std::int64_t j = k; j < n; ++j) {
      double dot = 0;
      for (std::int64_t i = k; i < m; ++i) dot += v[std::size_t(i - k)] * A(i, j);
      for (std::int64_t i = k; i < m; ++i) A(i, j) -= 2 * dot * v[std::size_t(i - k)];
    }
    rdiag[std::size_t(k)] = A(k, k);
    vs.push_back(std::move(v));
  }
  // Q = H_0 H_1 ... H_{n-1} applied to the first n columns of the identity.
  std::vector<double> q(std::size_t(m * n), 0.0);
  auto Q = [&](std::int64_t i, std::int64_t j) -> double& { return q[std::size_t(i * n + j)]; };
  for (std::int64_t j = 0; j < n; ++j) Q(j, j) = 1.0;
  for (std::int64_t k = n - 1; k >= 0; --k) {
    const std::vector<double>& v = vs[std::size_t(k)];
    for (std::int64_t j = 0; j < n; ++j) {
      double dot = 0;
      for (std::int64_t i = k; i < m; ++i) dot += v[std::size_t(i - k)] * Q(i, j);
      for (std::int64_t i = k; i < m; ++i) Q(i, j) -= 2 * dot * v[std::size_t(i - k)];
    }
  }
  for (std::int64_t j = 0; j < n; ++j)
    if (rdiag[std::size_t(j)] < 0)
      for (std::int64_t i = 0; i < m; ++i) Q(i, j) = -Q(i, j);
  return q;
}

}  // namespace

std::pair<double, double> fans(const Shape& shape) {
  if (shape.empty()) return {1.0, 1.0};
  if (shape.size() == 1) return {double(shape[0]), double(shape[0])};
  double receptive = 1;
  for (std::size_t i = 2; i < shape.size(); ++i) receptive *= double(shape[i]);
  return {double(shape[1]) * receptive, double(shape[0]) * receptive};
}

void constant(const Tensor& t, double value) {
  require_float("constant", t);
  ops::fill(t, value);
}
void zeros(const Tensor& t) { constant(t, 0.0); }
void ones(const Tensor& t) { constant(t, 1.0); }

void uniform(const Tensor& t, double lo, double hi, std::uint64_t seed) {
  require_float("uniform", t);
  RECUR_CHECK(lo <= hi, Value, "init::uniform: lo (", lo, ") > hi (", hi, ")");
  std::mt19937_64 g(seed);
  std::vector<double> v(static_cast<std::size_t>(t.numel()));
  for (double& x : v) x = lo + (hi - lo) * unit(g);
  store(t, v);
}

void normal(const Tensor& t, double mean, double stddev, std::uint64_t seed) {
  require_float("normal", t);
  RECUR_CHECK(stddev >= 0, Value, "init::normal: stddev must be >= 0, got ", stddev);
  std::vector<double> v = standard_normal(t.numel(), seed);
  for (double& x : v) x = mean + stddev * x;
  store(t, v);
}

void glorot_uniform(const Tensor& t, std::uint64_t seed) {
  require_float("glorot_uniform", t);
  const auto [fan_in, fan_out] = fans(t.shape());
  const double limit = std::sqrt(6.0 / std::max(1.0, fan_in + fan_out));
  uniform(t, -limit, limit, seed);
}

void orthogonal(const Tensor& t, std::uint64_t seed, double gain) {
  require_float("orthogonal", t);
  RECUR_CHECK(t.ndim() >= 2, Shape, "init::orthogonal needs a tensor of at least 2 dimensions, got ",
              shape_str(t.shape()));
  const std::int64_t rows = t.dim(0), cols = rows ? t.numel() / rows : 0;
  if (t.numel() == 0) return;
  const std::int64_t m = std::max(rows, cols), n = std::min(rows, cols);
  std::vector<double> q = orthonormal_columns(standard_normal(m * n, seed), m, n);
  for (double& x : q) x *= gain;
  if (rows < cols) {  // wide: the transpose, with orthonormal rows
    std::vector<double> qt(q.size());
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t j = 0; j < n; ++j) qt[std::size_t(j * m + i)] = q[std::size_t(i * n + j)];
    q.swap(qt);
  }
  store(t, q);
}

void unit_forget_bias(const Tensor& bias) {
  require_float("unit_forget_bias", bias);
  RECUR_CHECK(bias.ndim() == 1 && bias.dim(0) % 4 == 0, Shape,
              "init::unit_forget_bias: an LSTM bias is [4H], got ", shape_str(bias.shape()));
  const std::int64_t H = bias.dim(0) / 4;
  std::vector<double> v(static_cast<std::size_t>(4 * H), 0.0);
  for (std::int64_t j = H; j < 2 * H; ++j) v[std::size_t(j)] = 1.0;
  store(bias, v);
}

}  // namespace recur::init
