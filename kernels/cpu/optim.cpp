// CPU twin of kernels/cuda/optim.cu: one fused optimizer step over the flat
// parameter buffer, gradient clipping, and the sum of squares that clipping by
// global norm needs. Math from recur/kernels/optim.h.
#include <algorithm>
#include <cmath>
#include <vector>

#include "recur/common/error.h"
#include "recur/kernels/cpu.h"

namespace recur::kernels::cpu {
namespace {

#if defined(__x86_64__) && defined(__GNUC__) && !defined(RECUR_SANITIZE) && \
    (!defined(__clang__) || __clang_major__ >= 14)
#define RECUR_CPU_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define RECUR_CPU_CLONES
#endif

// RMSprop as Keras compiles it by default (not centered, no momentum, no
// weight decay, no clipping by value): optimizer_update_at's arithmetic, in
// the same order, as one vectorised loop (the element function's branches on
// the options kept the per-element loop scalar: a fifth of the dense model's
// training step). Cloned per instruction set; optim.cpp is compiled without
// FMA contraction, so every clone rounds as the element function does.
template <class T>
__attribute__((always_inline)) inline void rmsprop_plain(const OptimizerArgs<T>& a, T scale, std::int64_t i0,
                                                         std::int64_t i1) {
  T* __restrict p = a.param;
  const T* __restrict gr = a.grad;
  T* __restrict s0 = a.slot0;
  const T rho = a.rho, omr = T(1) - a.rho, lr = a.lr, eps = a.epsilon;
#pragma omp simd
  for (std::int64_t i = i0; i < i1; ++i) {
    const T g = gr[i] * scale;
    const T v = rho * s0[i] + omr * g * g;
    s0[i] = v;
    p[i] = p[i] - lr * g / std::sqrt(v + eps);
  }
}

RECUR_CPU_CLONES
void rmsprop_plain_f32(const OptimizerArgs<float>& a, float scale, std::int64_t i0, std::int64_t i1) {
  rmsprop_plain(a, scale, i0, i1);
}
void rmsprop_plain_range(const OptimizerArgs<float>& a, float scale, std::int64_t i0, std::int64_t i1) {
  rmsprop_plain_f32(a, scale, i0, i1);
}
void rmsprop_plain_range(const OptimizerArgs<double>& a, double scale, std::int64_t i0, std::int64_t i1) {
  rmsprop_plain(a, scale, i0, i1);
}

template <OptimizerKind k, class T>
void step_impl(const OptimizerArgs<T>& a) {
  const T scale = a.grad_sq_sum ? global_norm_scale(*a.grad_sq_sum, a.clipnorm) : T(1);
  if constexpr (k == OptimizerKind::RMSprop) {
    if (!a.centered && !(a.momentum > T(0)) && !(a.weight_decay > T(0)) && !(a.clipvalue > T(0))) {
      constexpr std::int64_t kChunk = 1 << 14;
      const std::int64_t chunks = (a.n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (a.n >= kParallelThreshold)
      for (std::int64_t c = 0; c < chunks; ++c)
        rmsprop_plain_range(a, scale, c * kChunk, std::min(a.n, (c + 1) * kChunk));
      return;
    }
  }
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
