// Losses and metrics, written once for the CPU twin (kernels/cpu/loss.cpp), the
// CUDA kernels (kernels/cuda/loss.cu) and, in float64, reference work.
//
// pred is viewed as [rows, cols]: cols is the last axis (features, or classes
// for the sparse categorical kinds), rows everything before it (batch, time).
// Each element (or row, for the sparse kinds) gives a term l and, for losses,
// dl/dpred. The reduction is Keras's "sum_over_batch_size" mean: Keras means
// each row over its last axis, then the rows; with equal row lengths that is
// the mean over all elements. With a weight (a 0/1 mask of padded steps, or any
// non-negative weights), per element [rows, cols] or per row [rows]:
//     loss = sum_e w_e l_e / sum_e w_e        (0 when every weight is 0)
// which for a 0/1 mask is the mean over the unmasked elements only (Keras's
// apply_mask normalises by the valid count the same way). A per-row weight
// counts once for each of the row's elements (elementwise kinds). The gradient
// written is d(loss)/d(pred) of that weighted mean.
//
// Formulas (x = pred, y = target, d = x - y):
//   MeanAbsoluteError   |d|                         grad sign(d) (0 at d = 0, as TF's abs)
//   MeanSquaredError    d^2                         grad 2 d
//   Huber(delta)        0.5 d^2 if |d| <= delta, else delta (|d| - 0.5 delta)
//                                                   grad d, or delta sign(d)
//   BinaryCrossentropy  from logits, stable: max(x, 0) - x y + log1p(exp(-|x|))
//                                                   grad sigmoid(x) - y
//   SparseCategoricalCrossentropy  from logits over cols, label t:
//                       logsumexp(x) - x_t          grad softmax(x) - onehot(t)
//   Accuracy (metric)   argmax(x) == t (first maximum wins, as numpy's argmax)
//   BinaryAccuracy      (x > 0) == (y > 0.5): a logit above 0 is a probability above 0.5
#pragma once

#include <cstdint>
#include <limits>

#include "recur/kernels/math.h"

namespace recur {

enum class LossKind : std::uint8_t {
  MeanAbsoluteError,
  MeanSquaredError,
  Huber,
  BinaryCrossentropy,
  SparseCategoricalCrossentropy,
  Accuracy,        // metric only: no gradient
  BinaryAccuracy,  // metric only: no gradient
};

const char* loss_name(LossKind kind);

namespace kernels {

// True for the kinds whose target is an int32 class index per row.
constexpr bool is_sparse(LossKind k) {
  return k == LossKind::SparseCategoricalCrossentropy || k == LossKind::Accuracy;
}
constexpr bool has_gradient(LossKind k) {
  return k != LossKind::Accuracy && k != LossKind::BinaryAccuracy;
}

template <class T>
struct LossTerm {
  T value;
  T grad;  // d value / d pred (0 for metrics)
};

template <class T>
RECUR_HD T sign_of(T x) {
  return x > T(0) ? T(1) : (x < T(0) ? T(-1) : T(0));
}

// One element of an elementwise kind.
template <LossKind k, class T>
RECUR_HD LossTerm<T> elementwise_term(T x, T y, T delta) {
  if constexpr (k == LossKind::MeanAbsoluteError) {
    const T d = x - y;
    return {d < T(0) ? -d : d, sign_of(d)};
  } else if constexpr (k == LossKind::MeanSquaredError) {
    const T d = x - y;
    return {d * d, T(2) * d};
  } else if constexpr (k == LossKind::Huber) {
    const T d = x - y;
    const T a = d < T(0) ? -d : d;
    if (a <= delta) return {T(0.5) * d * d, d};
    return {delta * (a - T(0.5) * delta), delta * sign_of(d)};
  } else if constexpr (k == LossKind::BinaryCrossentropy) {
    const T a = x < T(0) ? -x : x;
    return {(x > T(0) ? x : T(0)) - x * y + rlog1p(rexp(-a)), sigmoid(x) - y};
  } else if constexpr (k == LossKind::BinaryAccuracy) {
    return {(x > T(0)) == (y > T(0.5)) ? T(1) : T(0), T(0)};
  } else {
    static_assert(k != k, "not an elementwise kind");
  }
}

// One row of a sparse kind: logits x[0..C), label t (0 <= t < C, checked by
// the caller). For the cross-entropy, grad (if not null) receives
// grad_scale * (softmax(x) - onehot(t)). Returns the row's term.
template <LossKind k, class T>
RECUR_HD T sparse_row_term(const T* x, std::int64_t C, std::int32_t t, T* grad, T grad_scale) {
  std::int64_t arg = 0;
  T mx = x[0];
  for (std::int64_t c = 1; c < C; ++c)
    if (x[c] > mx || is_nan(x[c])) {
      mx = x[c];
      arg = c;
      if (is_nan(mx)) break;
    }
  if constexpr (k == LossKind::Accuracy) {
    return arg == t ? T(1) : T(0);
  } else {
    static_assert(k == LossKind::SparseCategoricalCrossentropy, "not a sparse kind");
    // log-softmax with the maximum subtracted: no exp overflows.
    T s = T(0);
    for (std::int64_t c = 0; c < C; ++c) s += rexp(x[c] - mx);
    const T lse = mx + rlog(s);
    if (grad) {
      const T inv = T(1) / s;
      for (std::int64_t c = 0; c < C; ++c)
        grad[c] = grad_scale * (rexp(x[c] - mx) * inv - (c == t ? T(1) : T(0)));
    }
    return lse - x[t];
  }
}

// What one loss call computes. pred/grad [rows, cols]; target [rows, cols]
// (elementwise kinds) or labels [rows] (sparse kinds); weight [rows, cols],
// [rows] (weight_per_row) or null. The gradient is scaled by 1 / denominator,
// the weight sum (or element count / row count when there is no weight).
template <class T>
struct LossArgs {
  std::int64_t rows = 0, cols = 0;
  const T* pred = nullptr;
  const T* target = nullptr;
  const std::int32_t* labels = nullptr;
  const T* weight = nullptr;
  bool weight_per_row = false;
  T delta = T(1);  // Huber
  T* grad = nullptr;  // null: value only (metrics)
};

template <class T>
RECUR_HD T weight_at(const LossArgs<T>& a, std::int64_t row, std::int64_t e) {
  if (!a.weight) return T(1);
  return a.weight_per_row ? a.weight[row] : a.weight[e];
}

// Element e of an elementwise kind: writes grad[e] (scaled by inv_denom) and
// returns w_e * l_e, the element's share of the numerator.
template <LossKind k, class T>
RECUR_HD T elementwise_loss_at(const LossArgs<T>& a, std::int64_t e, T inv_denom) {
  const T w = weight_at(a, e / a.cols, e);
  const LossTerm<T> term = elementwise_term<k>(a.pred[e], a.target[e], a.delta);
  if (a.grad) a.grad[e] = w == T(0) ? T(0) : w * term.grad * inv_denom;
  return w == T(0) ? T(0) : w * term.value;
}

// Row r of a sparse kind: as above, per row. A sparse kind's weight is per
// row (the ops layer accepts no other). A label outside [0, cols) gives NaN
// (term and gradient row): the CPU twin rejects such labels before this runs,
// the CUDA path cannot throw from a kernel, and NaN cannot pass unnoticed.
template <LossKind k, class T>
RECUR_HD T sparse_loss_at(const LossArgs<T>& a, std::int64_t r, T inv_denom) {
  const T w = a.weight ? a.weight[r] : T(1);
  T* g = a.grad ? a.grad + r * a.cols : nullptr;
  const std::int32_t t = a.labels[r];
  if (w == T(0) || t < 0 || t >= a.cols) {
    const T fillv = w == T(0) ? T(0) : std::numeric_limits<T>::quiet_NaN();
    if (g)
      for (std::int64_t c = 0; c < a.cols; ++c) g[c] = fillv;
    return fillv;
  }
  return w * sparse_row_term<k>(a.pred + r * a.cols, a.cols, a.labels[r], g, w * inv_denom);
}

}  // namespace kernels
}  // namespace recur
