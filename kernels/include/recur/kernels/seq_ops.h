// Sequence-model ops outside the recurrent cells, written once for the CPU
// twins (kernels/cpu/seq_ops.cpp) and the CUDA kernels (kernels/cuda/seq_ops.cu):
//
// * Pooling over time on x [B, T, C] (Keras layout) with an optional [B, T]
//   0/1 mask. Window o covers t = o*stride - pad ... + pool - 1; an element
//   counts when 0 <= t < T and mask[b, t] != 0. Max takes the largest counted
//   element (the first on ties; NaN wins) and saves its t as int32 (-1: none);
//   average divides the sum of the counted elements by their number (as
//   Keras's AveragePooling1D with same padding counts only real elements). A
//   window with nothing counted outputs 0 and passes no gradient back.
//   Backward is a gather over input elements (no atomics, deterministic):
//   dx[b, t, c] sums dy over the windows that hold t (max: those whose argmax
//   is t; average: dy / count of each window).
// * Embedding: y[i, :] = w[ids[i], :]; the mask of Keras's mask_zero.
// * Activations with their derivatives from the forward output y (relu's from
//   y > 0); softmax over the last axis with the row maximum subtracted.
// * Dropout: a counter-based hash of (seed, element index), so CPU and CUDA
//   draw the same mask bit for bit; inverted scaling 1 / (1 - rate).
#pragma once

#include <cstdint>
#include <limits>

#include "recur/kernels/math.h"

namespace recur {

enum class PoolKind : std::uint8_t { Max, Average };
// Keras's activations; Linear is the identity.
enum class Activation : std::uint8_t { Linear, Relu, Tanh, Sigmoid, Softmax };

inline const char* pool_kind_name(PoolKind k) { return k == PoolKind::Max ? "max" : "average"; }
inline const char* activation_name(Activation a) {
  switch (a) {
    case Activation::Linear: return "linear";
    case Activation::Relu: return "relu";
    case Activation::Tanh: return "tanh";
    case Activation::Sigmoid: return "sigmoid";
    case Activation::Softmax: return "softmax";
  }
  return "?";
}

namespace kernels {

// ---- pooling over time ----------------------------------------------------------
struct PoolGeometry {
  std::int64_t B = 0, T = 0, C = 0;
  std::int64_t pool = 1, stride = 1, pad = 0;  // pad: elements before t = 0
  std::int64_t out = 0;                        // output length
};

template <class T>
struct PoolArgs {
  PoolGeometry g;
  const T* x = nullptr;        // [B, T, C]         (forward)
  const T* mask = nullptr;     // [B, T], optional
  T* y = nullptr;              // [B, out, C]       (forward output)
  std::int32_t* argmax = nullptr;  // [B, out, C]   (max: forward output, backward input)
  const T* dy = nullptr;       // [B, out, C]       (backward)
  T* dx = nullptr;             // [B, T, C]         (backward output)
};

template <class T>
RECUR_HD bool pool_counted(const PoolArgs<T>& a, std::int64_t b, std::int64_t t) {
  return t >= 0 && t < a.g.T && (a.mask == nullptr || a.mask[b * a.g.T + t] != T(0));
}

// Number of counted elements in window o of row b.
template <class T>
RECUR_HD std::int64_t pool_count(const PoolArgs<T>& a, std::int64_t b, std::int64_t o) {
  const std::int64_t start = o * a.g.stride - a.g.pad;
  if (a.mask == nullptr) {
    const std::int64_t lo = start < 0 ? 0 : start;
    const std::int64_t hi = start + a.g.pool < a.g.T ? start + a.g.pool : a.g.T;
    return hi > lo ? hi - lo : 0;
  }
  std::int64_t n = 0;
  for (std::int64_t k = 0; k < a.g.pool; ++k) n += pool_counted(a, b, start + k) ? 1 : 0;
  return n;
}

// Output element (b, o, c).
template <class T>
RECUR_HD void pool_forward_element(PoolKind kind, const PoolArgs<T>& a, std::int64_t b,
                                   std::int64_t o, std::int64_t c) {
  const PoolGeometry& g = a.g;
  const std::int64_t start = o * g.stride - g.pad;
  const std::int64_t out = (b * g.out + o) * g.C + c;
  if (kind == PoolKind::Max) {
    T best = T(0);
    std::int32_t arg = -1;
    for (std::int64_t k = 0; k < g.pool; ++k) {
      const std::int64_t t = start + k;
      if (!pool_counted(a, b, t)) continue;
      const T v = a.x[(b * g.T + t) * g.C + c];
      if (arg < 0 || v > best || (is_nan(v) && !is_nan(best))) {
        best = v;
        arg = std::int32_t(t);
      }
    }
    a.y[out] = best;  // 0 when nothing was counted
    a.argmax[out] = arg;
  } else {
    double sum = 0;
    std::int64_t n = 0;
    for (std::int64_t k = 0; k < g.pool; ++k) {
      const std::int64_t t = start + k;
      if (!pool_counted(a, b, t)) continue;
      sum += double(a.x[(b * g.T + t) * g.C + c]);
      ++n;
    }
    a.y[out] = n > 0 ? T(sum / double(n)) : T(0);
  }
}

// Input-gradient element (b, t, c): a gather over the windows holding t.
template <class T>
RECUR_HD void pool_backward_element(PoolKind kind, const PoolArgs<T>& a, std::int64_t b,
                                    std::int64_t t, std::int64_t c) {
  const PoolGeometry& g = a.g;
  T* dx = a.dx + (b * g.T + t) * g.C + c;
  if (!pool_counted(a, b, t)) {
    *dx = T(0);
    return;
  }
  // o*stride - pad <= t <= o*stride - pad + pool - 1
  const std::int64_t lo_num = t + g.pad - g.pool + 1;
  std::int64_t lo = lo_num <= 0 ? 0 : (lo_num + g.stride - 1) / g.stride;
  std::int64_t hi = (t + g.pad) / g.stride;
  if (hi > g.out - 1) hi = g.out - 1;
  double acc = 0;
  for (std::int64_t o = lo; o <= hi; ++o) {
    const std::int64_t i = (b * g.out + o) * g.C + c;
    if (kind == PoolKind::Max) {
      if (a.argmax[i] == t) acc += double(a.dy[i]);
    } else {
      acc += double(a.dy[i]) / double(pool_count(a, b, o));
    }
  }
  *dx = T(acc);
}

// ---- embedding -------------------------------------------------------------------
template <class T>
struct EmbeddingArgs {
  const T* w = nullptr;               // [V, D]
  const std::int32_t* ids = nullptr;  // [n]
  T* y = nullptr;                     // [n, D] (forward output)
  const T* dy = nullptr;              // [n, D] (backward)
  T* dw = nullptr;                    // [V, D] (backward, accumulated)
  std::int64_t n = 0, V = 0, D = 0;
};

// y[i, d]; an id outside [0, V) gives NaN (the CPU twin throws before this).
template <class T>
RECUR_HD void embedding_element(const EmbeddingArgs<T>& a, std::int64_t i, std::int64_t d) {
  const std::int64_t id = a.ids[i];
  a.y[i * a.D + d] = (id >= 0 && id < a.V) ? a.w[id * a.D + d]
                                           : std::numeric_limits<T>::quiet_NaN();
}

// ---- activations -----------------------------------------------------------------
// Elementwise kinds (not Softmax).
template <Activation act, class T>
RECUR_HD T activation_value(T x) {
  if constexpr (act == Activation::Relu) return relu(x);
  else if constexpr (act == Activation::Tanh) return rtanh(x);
  else if constexpr (act == Activation::Sigmoid) return sigmoid(x);
  else return x;
}

// dx from the forward output y and dy (elementwise kinds).
template <Activation act, class T>
RECUR_HD T activation_grad(T y, T dy) {
  if constexpr (act == Activation::Relu) return y > T(0) ? dy : T(0);
  else if constexpr (act == Activation::Tanh) return dy * (T(1) - y * y);
  else if constexpr (act == Activation::Sigmoid) return dy * y * (T(1) - y);
  else return dy;
}

// One row of n: y = exp(x - max) / sum(exp(x - max)), sums in double.
template <class T>
RECUR_HD void softmax_row(const T* x, T* y, std::int64_t n) {
  T m = x[0];
  for (std::int64_t j = 1; j < n; ++j) m = (x[j] > m || is_nan(x[j])) ? x[j] : m;
  double s = 0;
  for (std::int64_t j = 0; j < n; ++j) s += double(rexp(x[j] - m));
  const double inv = 1.0 / s;
  for (std::int64_t j = 0; j < n; ++j) y[j] = T(double(rexp(x[j] - m)) * inv);
}

// dx = y (dy - sum(dy y)) over one row.
template <class T>
RECUR_HD void softmax_backward_row(const T* y, const T* dy, T* dx, std::int64_t n) {
  double s = 0;
  for (std::int64_t j = 0; j < n; ++j) s += double(dy[j]) * double(y[j]);
  for (std::int64_t j = 0; j < n; ++j) dx[j] = T(double(y[j]) * (double(dy[j]) - s));
}

// ---- dropout ---------------------------------------------------------------------
RECUR_HD std::uint64_t splitmix64(std::uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Uniform in [0, 1) with 53 random bits, a pure function of (seed, i).
RECUR_HD double dropout_uniform(std::uint64_t seed, std::int64_t i) {
  return double(splitmix64(seed ^ splitmix64(std::uint64_t(i))) >> 11) * 0x1p-53;
}

template <class T>
struct DropoutArgs {
  const T* x = nullptr;
  T* y = nullptr;
  T* mask = nullptr;  // 0 (dropped) or scale (kept)
  std::int64_t n = 0;
  double rate = 0;
  T scale = T(1);     // 1 / (1 - rate), rounded once on the host
  std::uint64_t seed = 0;
};

template <class T>
RECUR_HD void dropout_element(const DropoutArgs<T>& a, std::int64_t i) {
  const bool keep = dropout_uniform(a.seed, i) >= a.rate;
  a.mask[i] = keep ? a.scale : T(0);
  a.y[i] = keep ? a.x[i] * a.scale : T(0);
}

}  // namespace kernels
}  // namespace recur
