// Elementwise kernels: fill, unary, broadcasting binary. Memory-bound grid-
// stride loops; the op is a template parameter (see pointwise.h).
// CPU twin: kernels/cpu/elementwise.cpp.
#include "check.h"
#include "grid.cuh"
#include "launch.h"

namespace recur::kernels::cuda {
namespace {

template <class T>
__global__ void fill_kernel(T* y, std::int64_t n, T value) {
  for (std::int64_t i = global_index(); i < n; i += global_stride()) y[i] = value;
}

template <UnaryOp op>
__global__ void unary_kernel(const float* x, float* y, std::int64_t n) {  // y may alias x
  for (std::int64_t i = global_index(); i < n; i += global_stride()) y[i] = apply_unary<op>(x[i]);
}

template <BinaryOp op, bool kBroadcast>
__global__ void binary_kernel(const float* a, const float* b, std::int64_t nb, float* y,
                              std::int64_t n) {
  for (std::int64_t i = global_index(); i < n; i += global_stride())
    y[i] = apply_binary<op>(a[i], b[kBroadcast ? i % nb : i]);
}

template <UnaryOp op>
void launch_unary(const float* x, float* y, std::int64_t n, cudaStream_t s) {
  unary_kernel<op><<<grid_for(n), kBlock, 0, s>>>(x, y, n);
  RECUR_CHECK_LAUNCH();
}

template <BinaryOp op>
void launch_binary(const float* a, const float* b, std::int64_t nb, float* y, std::int64_t n,
                   cudaStream_t s) {
  if (nb == n)
    binary_kernel<op, false><<<grid_for(n), kBlock, 0, s>>>(a, b, nb, y, n);
  else
    binary_kernel<op, true><<<grid_for(n), kBlock, 0, s>>>(a, b, nb, y, n);
  RECUR_CHECK_LAUNCH();
}

}  // namespace

cudaError_t probe_kernel_image() {
  cudaFuncAttributes attr{};
  return cudaFuncGetAttributes(&attr, fill_kernel<float>);
}

template <class T>
void launch_fill(T* y, std::int64_t n, T value, cudaStream_t s) {
  if (n == 0) return;
  fill_kernel<T><<<grid_for(n), kBlock, 0, s>>>(y, n, value);
  RECUR_CHECK_LAUNCH();
}

void fill(float* y, std::int64_t n, float value, cudaStream_t s) { launch_fill(y, n, value, s); }
void fill(std::int32_t* y, std::int64_t n, std::int32_t value, cudaStream_t s) {
  launch_fill(y, n, value, s);
}

void unary(UnaryOp op, const float* x, float* y, std::int64_t n, cudaStream_t s) {
  if (n == 0) return;
  switch (op) {
    case UnaryOp::Sigmoid: return launch_unary<UnaryOp::Sigmoid>(x, y, n, s);
    case UnaryOp::Tanh: return launch_unary<UnaryOp::Tanh>(x, y, n, s);
    case UnaryOp::Relu: return launch_unary<UnaryOp::Relu>(x, y, n, s);
  }
}

void binary(BinaryOp op, const float* a, const float* b, std::int64_t nb, float* y,
            std::int64_t n, cudaStream_t s) {
  if (n == 0) return;
  switch (op) {
    case BinaryOp::Add: return launch_binary<BinaryOp::Add>(a, b, nb, y, n, s);
    case BinaryOp::Sub: return launch_binary<BinaryOp::Sub>(a, b, nb, y, n, s);
    case BinaryOp::Mul: return launch_binary<BinaryOp::Mul>(a, b, nb, y, n, s);
  }
}

}  // namespace recur::kernels::cuda
