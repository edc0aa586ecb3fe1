// CPU twin of kernels/cuda/loss.cu: the fused loss/metric pass (value and
// gradient in one sweep), math from recur/kernels/loss.h. Partial sums are
// kept per fixed chunk of the input and added in order, so results do not
// depend on the number of OpenMP threads.
#include <algorithm>
#include <vector>

#include "recur/common/error.h"
#include "recur/kernels/cpu.h"

namespace recur::kernels::cpu {
namespace {

constexpr std::int64_t kChunk = 4096;

// sum over i < n of f(i), in double, chunked as above.
template <class F>
double chunked_sum(std::int64_t n, std::int64_t work_per_item, F&& f) {
  const std::int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> part(std::size_t(chunks), 0.0);
#pragma omp parallel for schedule(static) if (n * work_per_item >= kParallelThreshold)
  for (std::int64_t c = 0; c < chunks; ++c) {
    double acc = 0;
    const std::int64_t end = std::min(n, (c + 1) * kChunk);
    for (std::int64_t i = c * kChunk; i < end; ++i) acc += double(f(i));
    part[std::size_t(c)] = acc;
  }
  double total = 0;
  for (double v : part) total += v;
  return total;
}

template <class T>
double denominator(LossKind kind, const LossArgs<T>& a) {
  const bool sparse = is_sparse(kind);
  const std::int64_t units = sparse ? a.rows : a.rows * a.cols;
  if (!a.weight) return double(units);
  if (sparse || a.weight_per_row)
    return chunked_sum(a.rows, 1, [&](std::int64_t r) { return a.weight[r]; }) *
           (sparse ? 1.0 : double(a.cols));
  return chunked_sum(units, 1, [&](std::int64_t e) { return a.weight[e]; });
}

template <LossKind k, class T>
double loss_impl(const LossArgs<T>& a) {
  const double denom = denominator(k, a);
  // A zero denominator (everything masked): loss 0, gradient 0, no NaN.
  const T inv = denom > 0 ? T(1.0 / denom) : T(0);
  double num;
  if constexpr (is_sparse(k)) {
    for (std::int64_t r = 0; r < a.rows; ++r) {
      const std::int32_t t = a.labels[r];
      const bool counted = !a.weight || a.weight[r] != T(0);
      RECUR_CHECK(!counted || (t >= 0 && t < a.cols), Value, loss_name(k), ": label ", t,
                  " in row ", r, " is not a class index in [0, ", a.cols, ")");
    }
    num = chunked_sum(a.rows, a.cols, [&](std::int64_t r) { return sparse_loss_at<k>(a, r, inv); });
  } else {
    num = chunked_sum(a.rows * a.cols, 1,
                      [&](std::int64_t e) { return elementwise_loss_at<k>(a, e, inv); });
  }
  return denom > 0 ? num / denom : 0.0;
}

}  // namespace

template <class T>
double loss(LossKind kind, const LossArgs<T>& a) {
  switch (kind) {
    case LossKind::MeanAbsoluteError: return loss_impl<LossKind::MeanAbsoluteError>(a);
    case LossKind::MeanSquaredError: return loss_impl<LossKind::MeanSquaredError>(a);
    case LossKind::Huber: return loss_impl<LossKind::Huber>(a);
    case LossKind::BinaryCrossentropy: return loss_impl<LossKind::BinaryCrossentropy>(a);
    case LossKind::SparseCategoricalCrossentropy:
      return loss_impl<LossKind::SparseCategoricalCrossentropy>(a);
    case LossKind::Accuracy: return loss_impl<LossKind::Accuracy>(a);
    case LossKind::BinaryAccuracy: return loss_impl<LossKind::BinaryAccuracy>(a);
  }
  RECUR_THROW(Internal, "loss kind ", int(kind));
}

template double loss<float>(LossKind, const LossArgs<float>&);
template double loss<double>(LossKind, const LossArgs<double>&);

}  // namespace recur::kernels::cpu

namespace recur {
const char* loss_name(LossKind kind) {
  switch (kind) {
    case LossKind::MeanAbsoluteError: return "mean_absolute_error";
    case LossKind::MeanSquaredError: return "mean_squared_error";
    case LossKind::Huber: return "huber";
    case LossKind::BinaryCrossentropy: return "binary_crossentropy";
    case LossKind::SparseCategoricalCrossentropy: return "sparse_categorical_crossentropy";
    case LossKind::Accuracy: return "accuracy";
    case LossKind::BinaryAccuracy: return "binary_accuracy";
  }
  return "?";
}
}  // namespace recur
