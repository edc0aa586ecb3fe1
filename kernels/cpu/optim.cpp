// CPU twin of kernels/cuda/optim.cu: one fused optimizer step over the flat
// parameter buffer, gradient clipping, and the sum of squares that clipping by
// global norm needs. Math from recur/kernels/optim.h.
#include <algorithm>
#include <vector>

#include "recur/common/error.h"
#include "recur/kernels/cpu.h"

namespace recur::kernels::cpu {
namespace {

template <OptimizerKind k, class T>
void step_impl(const OptimizerArgs<T>& a) {
  const T scale = a.grad_sq_sum ? global_norm_scale(*a.grad_sq_sum, a.clipnorm) : T(1);
#pragma omp parallel for schedule(static) if (a.n >= kParallelThreshold)
  for (std::int64_t i = 0; i < a.n; ++i) optimizer_update_at<k>(a, i, scale);
}

}  // namespace

template <class T>
double sum_squares(const T* x, std::int64_t n) {
  // Fixed chunks added in order: the same result for any thread count.
  constexpr std::int64_t kChunk = 4096;
  const std::int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> part(std::size_t(chunks), 0.0);
#pragma omp parallel for schedule(static) if (n >= kParallelThreshold)
  for (std::int64_t c = 0; c < chunks; ++c) {
    double acc = 0;
    const std::int64_t end = std::min(n, (c + 1) * kChunk);
    for (std::int64_t i = c * kChunk; i < end; ++i) acc += double(x[i]) * double(x[i]);
    part[std::size_t(c)] = acc;
  }
  double total = 0;
  for (double v : part) total += v;
  return total;
}

template <class T>
void optimizer_step(OptimizerKind kind, const OptimizerArgs<T>& a) {
  switch (kind) {
    case OptimizerKind::SGD: return step_impl<OptimizerKind::SGD>(a);
    case OptimizerKind::RMSprop: return step_impl<OptimizerKind::RMSprop>(a);
    case OptimizerKind::Adam: return step_impl<OptimizerKind::Adam>(a);
  }
}

template <class T>
void clip(T* g, std::int64_t n, const double* sq_sum, T clipnorm, T clipvalue) {
  const T scale = sq_sum ? global_norm_scale(*sq_sum, clipnorm) : T(1);
#pragma omp parallel for schedule(static) if (n >= kParallelThreshold)
  for (std::int64_t i = 0; i < n; ++i) g[i] = clip_gradient(g[i], scale, clipvalue);
}

#define RECUR_INSTANTIATE(T)                                                          \
  template double sum_squares<T>(const T*, std::int64_t);                             \
  template void optimizer_step<T>(OptimizerKind, const OptimizerArgs<T>&);           \
  template void clip<T>(T*, std::int64_t, const double*, T, T);
RECUR_INSTANTIATE(float)
RECUR_INSTANTIATE(double)
#undef RECUR_INSTANTIATE

}  // namespace recur::kernels::cpu
