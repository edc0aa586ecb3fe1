// CPU twin of kernels/cuda/seq_ops.cu: pooling over time, embedding,
// activations and dropout over the shared math in recur/kernels/seq_ops.h.
#include <omp.h>

#include <algorithm>
#include <string>
#include <vector>

#include "recur/common/error.h"
#include "recur/kernels/cpu.h"

namespace recur::kernels::cpu {

// Pooling runs row by row ([b, o] or [b, t] over all C channels), so the
// window arithmetic and the mask are evaluated once per row, not per element.
// Each element is computed as seq_ops.h's element functions compute it (the
// same comparisons and sums in the same order), so the results are the same.
template <class T>
void pool_forward(PoolKind kind, const PoolArgs<T>& a) {
  const PoolGeometry& g = a.g;
  const std::int64_t rows = g.B * g.out, C = g.C;
  if (kind == PoolKind::Max && a.mask == nullptr) {
    // Unmasked max pooling: the window's counted steps are [max(start, 0),
    // min(start + pool, T)), known without a test per step, and the first
    // one initialises the row (the element function's arg < 0 case); the
    // same comparisons in the same order after it, so the same y and argmax.
#pragma omp parallel for schedule(static) if (rows * C * g.pool >= kParallelThreshold)
    for (std::int64_t b = 0; b < g.B; ++b) {
      const T* xb = a.x + b * g.T * C;
      for (std::int64_t o = 0; o < g.out; ++o) {
        const std::int64_t start = o * g.stride - g.pad;
        const std::int64_t t0 = std::max<std::int64_t>(start, 0), t1 = std::min(start + g.pool, g.T);
        T* y = a.y + (b * g.out + o) * C;
        std::int32_t* arg = a.argmax + (b * g.out + o) * C;
        if (t0 >= t1) {
          for (std::int64_t c = 0; c < C; ++c) y[c] = T(0), arg[c] = -1;
          continue;
        }
        const T* x0 = xb + t0 * C;
        const std::int32_t first = std::int32_t(t0);
        for (std::int64_t c = 0; c < C; ++c) y[c] = x0[c], arg[c] = first;
        for (std::int64_t t = t0 + 1; t < t1; ++t) {
          const T* x = xb + t * C;
          const std::int32_t t32 = std::int32_t(t);
#pragma omp simd
          for (std::int64_t c = 0; c < C; ++c) {
            const T v = x[c], best = y[c];
            const bool take = (v > best) | (is_nan(v) & !is_nan(best));
            y[c] = take ? v : best;
            arg[c] = take ? t32 : arg[c];
          }
        }
      }
    }
    return;
  }
#pragma omp parallel if (rows * C * g.pool >= kParallelThreshold)
  {
    std::vector<double> sum(kind == PoolKind::Max ? 0 : std::size_t(C));
#pragma omp for schedule(static)
    for (std::int64_t row = 0; row < rows; ++row) {
      const std::int64_t b = row / g.out, o = row % g.out, start = o * g.stride - g.pad;
      T* y = a.y + row * C;
      if (kind == PoolKind::Max) {
        std::int32_t* arg = a.argmax + row * C;
        for (std::int64_t c = 0; c < C; ++c) y[c] = T(0), arg[c] = -1;  // 0 when nothing counts
        for (std::int64_t k = 0; k < g.pool; ++k) {
          const std::int64_t t = start + k;
          if (!pool_counted(a, b, t)) continue;
          const T* x = a.x + (b * g.T + t) * C;
          const std::int32_t t32 = std::int32_t(t);
          // The element function's test, as selects so that the loop vectorises.
#pragma omp simd
          for (std::int64_t c = 0; c < C; ++c) {
            const T v = x[c], best = y[c];
            const bool take = (arg[c] < 0) | (v > best) | (is_nan(v) & !is_nan(best));
            y[c] = take ? v : best;
            arg[c] = take ? t32 : arg[c];
          }
        }
      } else {
        std::fill(sum.begin(), sum.end(), 0.0);
        std::int64_t n = 0;
        for (std::int64_t k = 0; k < g.pool; ++k) {
          const std::int64_t t = start + k;
          if (!pool_counted(a, b, t)) continue;
          const T* x = a.x + (b * g.T + t) * C;
          for (std::int64_t c = 0; c < C; ++c) sum[std::size_t(c)] += double(x[c]);
          ++n;
        }
        for (std::int64_t c = 0; c < C; ++c) y[c] = n > 0 ? T(sum[std::size_t(c)] / double(n)) : T(0);
      }
    }
  }
}

template <class T>
void pool_backward(PoolKind kind, const PoolArgs<T>& a) {
  const PoolGeometry& g = a.g;
  const std::int64_t rows = g.B * g.T, C = g.C;
  if (kind == PoolKind::Max && (g.stride >= g.pool || g.out == 1)) {
    // Windows that do not overlap (Keras's default strides = pool_size, and
    // global pooling): each step lies in at most one window, so the gather
    // below sums at most one term, 0.0 + dy at the window's argmax. Written as
    // a scatter of dy to the argmax rows of a zeroed dx: the same values
    // (T(0) + dy, as the gather's 0.0 + dy gives +0 for -0) without the
    // gather's window search per step, which made it 10x slower than the
    // forward pass on the conv model's shapes (bench_ops --only pool1d).
    // Masked steps are never an argmax, so they stay 0 as in the gather.
#pragma omp parallel for schedule(static) if (rows * C >= kParallelThreshold)
    for (std::int64_t b = 0; b < g.B; ++b) {
      T* dx = a.dx + b * g.T * C;
      std::fill(dx, dx + g.T * C, T(0));
      for (std::int64_t o = 0; o < g.out; ++o) {
        const std::int64_t i = (b * g.out + o) * C;
        const std::int32_t* arg = a.argmax + i;
        const T* dy = a.dy + i;
        for (std::int64_t c = 0; c < C; ++c)
          if (arg[c] >= 0) dx[std::int64_t(arg[c]) * C + c] = T(0) + dy[c];
      }
    }
    return;
  }
#pragma omp parallel if (rows * C >= kParallelThreshold)
  {
    std::vector<double> acc(static_cast<std::size_t>(C));
#pragma omp for schedule(static)
    for (std::int64_t row = 0; row < rows; ++row) {
      const std::int64_t b = row / g.T, t = row % g.T;
      T* dx = a.dx + row * C;
      if (!pool_counted(a, b, t)) {
        for (std::int64_t c = 0; c < C; ++c) dx[c] = T(0);
        continue;
      }
      // o*stride - pad <= t <= o*stride - pad + pool - 1
      const std::int64_t lo_num = t + g.pad - g.pool + 1;
      const std::int64_t lo = lo_num <= 0 ? 0 : (lo_num + g.stride - 1) / g.stride;
      const std::int64_t hi = std::min((t + g.pad) / g.stride, g.out - 1);
      std::fill(acc.begin(), acc.end(), 0.0);
      for (std::int64_t o = lo; o <= hi; ++o) {
        const std::int64_t i = (b * g.out + o) * C;
        if (kind == PoolKind::Max) {
          // Adding 0.0 where the window's maximum is elsewhere leaves acc as it is.
          const std::int32_t* arg = a.argmax + i;
          const T* dy = a.dy + i;
          double* ac = acc.data();
          const std::int32_t t32 = std::int32_t(t);
#pragma omp simd
          for (std::int64_t c = 0; c < C; ++c) ac[c] += arg[c] == t32 ? double(dy[c]) : 0.0;
        } else {
          const double n = double(pool_count(a, b, o));
          for (std::int64_t c = 0; c < C; ++c) acc[std::size_t(c)] += double(a.dy[i + c]) / n;
        }
      }
      for (std::int64_t c = 0; c < C; ++c) dx[c] = T(acc[std::size_t(c)]);
    }
  }
}

namespace {
void check_ids(const std::int32_t* ids, std::int64_t n, std::int64_t V, const char* op) {
  for (std::int64_t i = 0; i < n; ++i)
    RECUR_CHECK(ids[i] >= 0 && ids[i] < V, Value, op, ": id ", ids[i], " at flat position ", i,
                " is outside [0, ", V, ") (the vocabulary size of 'weights')");
}
}  // namespace

template <class T>
void embedding_forward(const EmbeddingArgs<T>& a) {
  check_ids(a.ids, a.n, a.V, "embedding_forward");
  // Row by row (the ids were checked above): a copy of D values per token,
  // not a division and a bounds test per element.
#pragma omp parallel for schedule(static) if (a.n * a.D >= kParallelThreshold)
  for (std::int64_t i = 0; i < a.n; ++i)
    std::copy_n(a.w + std::int64_t(a.ids[i]) * a.D, a.D, a.y + i * a.D);
}

template <class T>
void embedding_backward(const EmbeddingArgs<T>& a) {
  check_ids(a.ids, a.n, a.V, "embedding_backward");
  // Each thread owns a range of columns and adds the rows in order into them:
  // every element gets the same sums in the same order whatever the thread
  // count, and a token's D values are contiguous (one thread: one pass over
  // the tokens, not one per column).
  const bool parallel = a.n * a.D >= kParallelThreshold && a.D >= 8;
#pragma omp parallel if (parallel)
  {
    const std::int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
    const std::int64_t d0 = a.D * t / nt, d1 = a.D * (t + 1) / nt;
    for (std::int64_t i = 0; i < a.n; ++i) {
      T* dw = a.dw + std::int64_t(a.ids[i]) * a.D;
      const T* dy = a.dy + i * a.D;
#pragma omp simd
      for (std::int64_t d = d0; d < d1; ++d) dw[d] += dy[d];
    }
  }
}

template <class T>
void embedding_mask(const std::int32_t* ids, T* mask, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) mask[i] = ids[i] != 0 ? T(1) : T(0);
}

namespace {
template <Activation act, class T>
void act_impl(const T* x, T* y, std::int64_t n) {
#pragma omp parallel for schedule(static) if (n >= kParallelThreshold / 8)
  for (std::int64_t i = 0; i < n; ++i) y[i] = activation_value<act>(x[i]);
}
template <Activation act, class T>
void act_back_impl(const T* y, const T* dy, T* dx, std::int64_t n) {
#pragma omp parallel for schedule(static) if (n >= kParallelThreshold)
  for (std::int64_t i = 0; i < n; ++i) dx[i] = activation_grad<act>(y[i], dy[i]);
}
}  // namespace

template <class T>
void activation(Activation act, const T* x, T* y, std::int64_t rows, std::int64_t cols) {
  const std::int64_t n = rows * cols;
  switch (act) {
    case Activation::Linear: return act_impl<Activation::Linear>(x, y, n);
    case Activation::Relu: return act_impl<Activation::Relu>(x, y, n);
    case Activation::Tanh: return act_impl<Activation::Tanh>(x, y, n);
    case Activation::Sigmoid: return act_impl<Activation::Sigmoid>(x, y, n);
    case Activation::Softmax:
#pragma omp parallel for schedule(static) if (n >= kParallelThreshold / 8)
      for (std::int64_t r = 0; r < rows; ++r) softmax_row(x + r * cols, y + r * cols, cols);
      return;
  }
}

template <class T>
void activation_backward(Activation act, const T* y, const T* dy, T* dx, std::int64_t rows,
                         std::int64_t cols) {
  const std::int64_t n = rows * cols;
  switch (act) {
    case Activation::Linear: return act_back_impl<Activation::Linear>(y, dy, dx, n);
    case Activation::Relu: return act_back_impl<Activation::Relu>(y, dy, dx, n);
    case Activation::Tanh: return act_back_impl<Activation::Tanh>(y, dy, dx, n);
    case Activation::Sigmoid: return act_back_impl<Activation::Sigmoid>(y, dy, dx, n);
    case Activation::Softmax:
#pragma omp parallel for schedule(static) if (n >= kParallelThreshold)
      for (std::int64_t r = 0; r < rows; ++r)
        softmax_backward_row(y + r * cols, dy + r * cols, dx + r * cols, cols);
      return;
  }
}

template <class T>
void dropout(const DropoutArgs<T>& a) {
#pragma omp parallel for schedule(static) if (a.n >= kParallelThreshold)
  for (std::int64_t i = 0; i < a.n; ++i) dropout_element(a, i);
}

#define RECUR_INSTANTIATE(T)                                                                 \
  template void pool_forward<T>(PoolKind, const PoolArgs<T>&);                               \
  template void pool_backward<T>(PoolKind, const PoolArgs<T>&);                              \
  template void embedding_forward<T>(const EmbeddingArgs<T>&);                               \
  template void embedding_backward<T>(const EmbeddingArgs<T>&);                              \
  template void embedding_mask<T>(const std::int32_t*, T*, std::int64_t);                    \
  template void activation<T>(Activation, const T*, T*, std::int64_t, std::int64_t);         \
  template void activation_backward<T>(Activation, const T*, const T*, T*, std::int64_t,     \
                                       std::int64_t);                                        \
  template void dropout<T>(const DropoutArgs<T>&);
RECUR_INSTANTIATE(float)
RECUR_INSTANTIATE(double)
#undef RECUR_INSTANTIATE

}  // namespace recur::kernels::cpu
