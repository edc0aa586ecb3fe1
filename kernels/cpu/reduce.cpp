// CPU twin of kernels/cuda/reduce.cu: sum/mean/max over the middle axis of
// x viewed as [outer, n, inner]. float accumulates in double, so the CPU
// result is the accurate one the GPU is compared against.
#include <omp.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "recur/kernels/cpu.h"

namespace recur::kernels::cpu {
namespace {

template <class T>
using Acc = std::conditional_t<std::is_same_v<T, float>, double, T>;

template <ReduceOp op, class T>
Acc<T> reduce_range(const T* x, std::int64_t begin, std::int64_t end, std::int64_t inner) {
  Acc<T> acc = reduce_identity<op, Acc<T>>();
  for (std::int64_t k = begin; k < end; ++k)
    acc = reduce_combine<op, Acc<T>>(acc, Acc<T>(x[k * inner]));
  return acc;
}

template <ReduceOp op, class T>
void reduce_impl(const T* x, std::int64_t outer, std::int64_t n, std::int64_t inner, T* y) {
  const std::int64_t outputs = outer * inner;
  const bool big = outputs * n >= kParallelThreshold;
  if (inner > 1 && (!big || outputs >= num_threads())) {
    // Columns: walk the rows in memory order with a block of kCols running
    // accumulators, rather than one strided pass per output. Each output still
    // adds its n values in order, so the result is the same as reduce_range's.
    constexpr std::int64_t kCols = 16;
    const std::int64_t blocks = (inner + kCols - 1) / kCols, tasks = outer * blocks;
#pragma omp parallel for schedule(static) if (big && tasks > 1)
    for (std::int64_t task = 0; task < tasks; ++task) {
      const std::int64_t a = task / blocks, c0 = (task % blocks) * kCols;
      const std::int64_t w = std::min(kCols, inner - c0);
      Acc<T> acc[kCols];
      for (std::int64_t i = 0; i < w; ++i) acc[i] = reduce_identity<op, Acc<T>>();
      const T* base = x + a * n * inner + c0;
      for (std::int64_t k = 0; k < n; ++k) {
        const T* row = base + k * inner;
        for (std::int64_t i = 0; i < w; ++i) acc[i] = reduce_combine<op, Acc<T>>(acc[i], Acc<T>(row[i]));
      }
      for (std::int64_t i = 0; i < w; ++i) y[a * inner + c0 + i] = T(reduce_finish<op>(acc[i], n));
    }
    return;
  }
  if (!big || outputs >= num_threads()) {
    // Enough independent outputs: one thread each.
#pragma omp parallel for schedule(static) if (big)
    for (std::int64_t o = 0; o < outputs; ++o) {
      const std::int64_t a = o / inner, i = o % inner;
      y[o] = T(reduce_finish<op>(reduce_range<op>(x + a * n * inner + i, 0, n, inner), n));
    }
    return;
  }
  // Few outputs over a long axis: split the axis across threads, then combine.
  for (std::int64_t o = 0; o < outputs; ++o) {
    const std::int64_t a = o / inner, i = o % inner;
    const T* base = x + a * n * inner + i;
    const int p = num_threads();
    std::vector<Acc<T>> part(p, reduce_identity<op, Acc<T>>());
#pragma omp parallel num_threads(p)
    {
      const int t = omp_get_thread_num(), nt = omp_get_num_threads();
      const std::int64_t chunk = (n + nt - 1) / nt;
      const std::int64_t b = std::min<std::int64_t>(n, t * chunk);
      const std::int64_t e = std::min<std::int64_t>(n, b + chunk);
      part[t] = reduce_range<op>(base, b, e, inner);
    }
    Acc<T> acc = reduce_identity<op, Acc<T>>();
    for (auto v : part) acc = reduce_combine<op, Acc<T>>(acc, v);
    y[o] = T(reduce_finish<op>(acc, n));
  }
}

}  // namespace

template <class T>
void reduce(ReduceOp op, const T* x, std::int64_t outer, std::int64_t n, std::int64_t inner, T* y) {
  switch (op) {
    case ReduceOp::Sum: return reduce_impl<ReduceOp::Sum>(x, outer, n, inner, y);
    case ReduceOp::Mean: return reduce_impl<ReduceOp::Mean>(x, outer, n, inner, y);
    case ReduceOp::Max: return reduce_impl<ReduceOp::Max>(x, outer, n, inner, y);
  }
}

template void reduce<float>(ReduceOp, const float*, std::int64_t, std::int64_t, std::int64_t, float*);
template void reduce<double>(ReduceOp, const double*, std::int64_t, std::int64_t, std::int64_t,
                             double*);

}  // namespace recur::kernels::cpu
