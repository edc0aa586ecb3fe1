// CPU twin of kernels/cuda/optim.cu: one fused optimizer step over the flat
// parameter buffer, gradient clipping, and the sum of squares that clipping by
// global norm needs. Math from recur/kernels/optim.h.
#include <algorithm>
#include <cmath>
#include <vector>

#include "recur/common/error.h"
#include "recur/kernels/cpu.h"

#include "cpu_clones.h"

namespace recur::kernels::cpu {
namespace {

// Plain RMSprop (no momentum, centring, weight decay or clipping: Keras's
// defaults, the IMDB zoo's optimizer), the same formulas as
// optimizer_update_at in the same order, in blocks of kPlainBlock elements.
// A block whose gradients are all zero (rows of an Embedding that no token
// of the batch used: most of its rows at each step) only decays v, since
// there the other terms of the formulas are exact zeros: v = rho v + (1 -
// rho) 0 0 = rho v, and with epsilon > 0 the increment lr 0 / sqrt(v + eps)
// is +0, so p - 0 = p (v >= 0 always; where v is NaN, p is NaN already; a
// gradient of -0 takes the full formulas, whose -0 - -0 is +0). The result
// is bit for bit the dense update's (tests/test_optimizers.cpp).
constexpr std::int64_t kPlainBlock = 16;

template <class T>
inline void rmsprop_plain_block(T* p, const T* g, T* v, std::int64_t n, T lr, T rho, T eps) {
  bool any = false;
  for (std::int64_t i = 0; i < n; ++i) any |= (g[i] != T(0)) | std::signbit(g[i]);  // -0 too
  if (!any) {
#pragma omp simd
    for (std::int64_t i = 0; i < n; ++i) v[i] = rho * v[i];
    return;
  }
#pragma omp simd
  for (std::int64_t i = 0; i < n; ++i) {
    const T vi = rho * v[i] + (T(1) - rho) * g[i] * g[i];
    v[i] = vi;
    p[i] -= lr * g[i] / square_root(vi + eps);
  }
}

template <class T>
inline void rmsprop_plain_range(const OptimizerArgs<T>& a, std::int64_t i0, std::int64_t i1) {
  for (std::int64_t i = i0; i < i1; i += kPlainBlock)
    rmsprop_plain_block(a.param + i, a.grad + i, a.slot0 + i, std::min(kPlainBlock, i1 - i), a.lr,
                        a.rho, a.epsilon);
}

RECUR_CPU_CLONES
void rmsprop_plain_f32(const OptimizerArgs<float>& a, std::int64_t i0, std::int64_t i1) {
  rmsprop_plain_range(a, i0, i1);
}
RECUR_CPU_CLONES
void rmsprop_plain_f64(const OptimizerArgs<double>& a, std::int64_t i0, std::int64_t i1) {
  rmsprop_plain_range(a, i0, i1);
}
void rmsprop_plain(const OptimizerArgs<float>& a, std::int64_t i0, std::int64_t i1) {
  rmsprop_plain_f32(a, i0, i1);
}
void rmsprop_plain(const OptimizerArgs<double>& a, std::int64_t i0, std::int64_t i1) {
  rmsprop_plain_f64(a, i0, i1);
}

template <class T>
bool is_plain_rmsprop(OptimizerKind k, const OptimizerArgs<T>& a) {
  return k == OptimizerKind::RMSprop && !a.centered && a.momentum == T(0) &&
         a.weight_decay == T(0) && !a.grad_sq_sum && a.clipvalue == T(0) && a.epsilon > T(0);
}

template <OptimizerKind k, class T>
void step_impl(const OptimizerArgs<T>& a) {
  if (is_plain_rmsprop(k, a)) {
    // Chunks of whole blocks, so the blocks are the same whatever the thread count.
    constexpr std::int64_t kChunk = 64 * kPlainBlock;
    const std::int64_t chunks = (a.n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (a.n >= kParallelThreshold)
    for (std::int64_t c = 0; c < chunks; ++c)
      rmsprop_plain(a, c * kChunk, std::min(a.n, (c + 1) * kChunk));
    return;
  }
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
