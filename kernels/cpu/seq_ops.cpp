// CPU twin of kernels/cuda/seq_ops.cu: pooling over time, embedding,
// activations and dropout over the shared math in recur/kernels/seq_ops.h.
#include <string>

#include "recur/common/error.h"
#include "recur/kernels/cpu.h"

namespace recur::kernels::cpu {

template <class T>
void pool_forward(PoolKind kind, const PoolArgs<T>& a) {
  const PoolGeometry& g = a.g;
  const std::int64_t n = g.B * g.out * g.C;
#pragma omp parallel for schedule(static) if (n * g.pool >= kParallelThreshold)
  for (std::int64_t i = 0; i < n; ++i)
    pool_forward_element(kind, a, i / (g.out * g.C), (i / g.C) % g.out, i % g.C);
}

template <class T>
void pool_backward(PoolKind kind, const PoolArgs<T>& a) {
  const PoolGeometry& g = a.g;
  const std::int64_t n = g.B * g.T * g.C;
#pragma omp parallel for schedule(static) if (n >= kParallelThreshold)
  for (std::int64_t i = 0; i < n; ++i)
    pool_backward_element(kind, a, i / (g.T * g.C), (i / g.C) % g.T, i % g.C);
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
  const std::int64_t n = a.n * a.D;
#pragma omp parallel for schedule(static) if (n >= kParallelThreshold)
  for (std::int64_t i = 0; i < n; ++i) embedding_element(a, i / a.D, i % a.D);
}

template <class T>
void embedding_backward(const EmbeddingArgs<T>& a) {
  check_ids(a.ids, a.n, a.V, "embedding_backward");
  // Rows in order for every column: the same sums whatever the thread count.
#pragma omp parallel for schedule(static) if (a.n * a.D >= kParallelThreshold && a.D >= 8)
  for (std::int64_t d = 0; d < a.D; ++d)
    for (std::int64_t i = 0; i < a.n; ++i) a.dw[std::int64_t(a.ids[i]) * a.D + d] += a.dy[i * a.D + d];
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
