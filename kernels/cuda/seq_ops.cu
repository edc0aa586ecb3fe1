// Pooling over time, embedding, activations and dropout: grid-stride kernels
// over the shared math in recur/kernels/seq_ops.h (CPU twin: kernels/cpu/seq_ops.cpp).
#include "check.h"
#include "grid.cuh"
#include "launch.h"

namespace recur::kernels::cuda {
namespace {

__global__ void pool_forward_kernel(PoolKind kind, PoolArgs<float> a) {
  const PoolGeometry g = a.g;
  const std::int64_t n = g.B * g.out * g.C;
  for (std::int64_t i = global_index(); i < n; i += global_stride())
    pool_forward_element(kind, a, i / (g.out * g.C), (i / g.C) % g.out, i % g.C);
}

__global__ void pool_backward_kernel(PoolKind kind, PoolArgs<float> a) {
  const PoolGeometry g = a.g;
  const std::int64_t n = g.B * g.T * g.C;
  for (std::int64_t i = global_index(); i < n; i += global_stride())
    pool_backward_element(kind, a, i / (g.T * g.C), (i / g.C) % g.T, i % g.C);
}

__global__ void embedding_forward_kernel(EmbeddingArgs<float> a) {
  const std::int64_t n = a.n * a.D;
  for (std::int64_t i = global_index(); i < n; i += global_stride())
    embedding_element(a, i / a.D, i % a.D);
}

// Rows sharing an id add into one dW row: atomicAdd, so the order of the
// float additions (and the last bits of dW) may vary from run to run.
__global__ void embedding_backward_kernel(EmbeddingArgs<float> a) {
  const std::int64_t n = a.n * a.D;
  for (std::int64_t i = global_index(); i < n; i += global_stride()) {
    const std::int64_t id = a.ids[i / a.D];
    if (id >= 0 && id < a.V) atomicAdd(a.dw + id * a.D + i % a.D, a.dy[i]);
  }
}

__global__ void embedding_mask_kernel(const std::int32_t* ids, float* mask, std::int64_t n) {
  for (std::int64_t i = global_index(); i < n; i += global_stride())
    mask[i] = ids[i] != 0 ? 1.f : 0.f;
}

template <Activation act>
__global__ void activation_kernel(const float* x, float* y, std::int64_t n) {
  for (std::int64_t i = global_index(); i < n; i += global_stride())
    y[i] = activation_value<act>(x[i]);
}

template <Activation act>
__global__ void activation_backward_kernel(const float* y, const float* dy, float* dx,
                                           std::int64_t n) {
  for (std::int64_t i = global_index(); i < n; i += global_stride())
    dx[i] = activation_grad<act>(y[i], dy[i]);
}

// One thread per row: simple and exact; rows are the last axis of small
// classifier heads here. (A block-per-row kernel is the upgrade for wide rows.)
__global__ void softmax_kernel(const float* x, float* y, std::int64_t rows, std::int64_t cols) {
  for (std::int64_t r = global_index(); r < rows; r += global_stride())
    softmax_row(x + r * cols, y + r * cols, cols);
}

__global__ void softmax_backward_kernel(const float* y, const float* dy, float* dx,
                                        std::int64_t rows, std::int64_t cols) {
  for (std::int64_t r = global_index(); r < rows; r += global_stride())
    softmax_backward_row(y + r * cols, dy + r * cols, dx + r * cols, cols);
}

__global__ void dropout_kernel(DropoutArgs<float> a) {
  for (std::int64_t i = global_index(); i < a.n; i += global_stride()) dropout_element(a, i);
}

template <Activation act>
void launch_activation(const float* x, float* y, std::int64_t n, cudaStream_t s) {
  activation_kernel<act><<<grid_for(n), kBlock, 0, s>>>(x, y, n);
  RECUR_CHECK_LAUNCH();
}

template <Activation act>
void launch_activation_backward(const float* y, const float* dy, float* dx, std::int64_t n,
                                cudaStream_t s) {
  activation_backward_kernel<act><<<grid_for(n), kBlock, 0, s>>>(y, dy, dx, n);
  RECUR_CHECK_LAUNCH();
}

}  // namespace

void pool_forward(PoolKind kind, const PoolArgs<float>& a, cudaStream_t s) {
  const std::int64_t n = a.g.B * a.g.out * a.g.C;
  if (n == 0) return;
  pool_forward_kernel<<<grid_for(n), kBlock, 0, s>>>(kind, a);
  RECUR_CHECK_LAUNCH();
}

void pool_backward(PoolKind kind, const PoolArgs<float>& a, cudaStream_t s) {
  const std::int64_t n = a.g.B * a.g.T * a.g.C;
  if (n == 0) return;
  pool_backward_kernel<<<grid_for(n), kBlock, 0, s>>>(kind, a);
  RECUR_CHECK_LAUNCH();
}

void embedding_forward(const EmbeddingArgs<float>& a, cudaStream_t s) {
  const std::int64_t n = a.n * a.D;
  if (n == 0) return;
  embedding_forward_kernel<<<grid_for(n), kBlock, 0, s>>>(a);
  RECUR_CHECK_LAUNCH();
}

void embedding_backward(const EmbeddingArgs<float>& a, cudaStream_t s) {
  const std::int64_t n = a.n * a.D;
  if (n == 0) return;
  embedding_backward_kernel<<<grid_for(n), kBlock, 0, s>>>(a);
  RECUR_CHECK_LAUNCH();
}

void embedding_mask(const std::int32_t* ids, float* mask, std::int64_t n, cudaStream_t s) {
  if (n == 0) return;
  embedding_mask_kernel<<<grid_for(n), kBlock, 0, s>>>(ids, mask, n);
  RECUR_CHECK_LAUNCH();
}

void activation(Activation act, const float* x, float* y, std::int64_t rows, std::int64_t cols,
                cudaStream_t s) {
  const std::int64_t n = rows * cols;
  if (n == 0) return;
  switch (act) {
    case Activation::Linear: return launch_activation<Activation::Linear>(x, y, n, s);
    case Activation::Relu: return launch_activation<Activation::Relu>(x, y, n, s);
    case Activation::Tanh: return launch_activation<Activation::Tanh>(x, y, n, s);
    case Activation::Sigmoid: return launch_activation<Activation::Sigmoid>(x, y, n, s);
    case Activation::Softmax:
      softmax_kernel<<<grid_for(rows), kBlock, 0, s>>>(x, y, rows, cols);
      RECUR_CHECK_LAUNCH();
      return;
  }
}

void activation_backward(Activation act, const float* y, const float* dy, float* dx,
                         std::int64_t rows, std::int64_t cols, cudaStream_t s) {
  const std::int64_t n = rows * cols;
  if (n == 0) return;
  switch (act) {
    case Activation::Linear: return launch_activation_backward<Activation::Linear>(y, dy, dx, n, s);
    case Activation::Relu: return launch_activation_backward<Activation::Relu>(y, dy, dx, n, s);
    case Activation::Tanh: return launch_activation_backward<Activation::Tanh>(y, dy, dx, n, s);
    case Activation::Sigmoid:
      return launch_activation_backward<Activation::Sigmoid>(y, dy, dx, n, s);
    case Activation::Softmax:
      softmax_backward_kernel<<<grid_for(rows), kBlock, 0, s>>>(y, dy, dx, rows, cols);
      RECUR_CHECK_LAUNCH();
      return;
  }
}

void dropout(const DropoutArgs<float>& a, cudaStream_t s) {
  if (a.n == 0) return;
  dropout_kernel<<<grid_for(a.n), kBlock, 0, s>>>(a);
  RECUR_CHECK_LAUNCH();
}

}  // namespace recur::kernels::cuda
