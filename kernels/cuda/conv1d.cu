// im2col and its adjoint (a gather, no atomics) for 1D convolution; the
// convolution itself runs as cuBLAS GEMMs (host/src/conv1d.cpp). This is the
// simple, general choice; whether cuDNN's convolution or a fused small-shape
// kernel beats it for the forecaster's shapes is for the GPU benchmark to say
// (bench/bench_conv_cudnn; not yet run: no GPU so far; the reasoning is in
// recur/host/conv1d.h). CPU twin: kernels/cpu/conv1d.cpp.
#include "check.h"
#include "grid.cuh"
#include "launch.h"

namespace recur::kernels::cuda {
namespace {
__global__ void im2col1d_kernel(Conv1dGeometry g, const float* __restrict__ x, float* __restrict__ cols) {
  const std::int64_t n = g.cols_size();
  for (std::int64_t i = global_index(); i < n; i += global_stride()) im2col1d_element(g, x, cols, i);
}
__global__ void col2im1d_kernel(Conv1dGeometry g, const float* __restrict__ dcols, float* __restrict__ dx) {
  const std::int64_t n = g.B * g.T * g.C;
  for (std::int64_t i = global_index(); i < n; i += global_stride()) col2im1d_element(g, dcols, dx, i);
}
}  // namespace

void im2col1d(const Conv1dGeometry& g, const float* x, float* cols, cudaStream_t s) {
  const std::int64_t n = g.cols_size();
  if (n == 0) return;
  im2col1d_kernel<<<grid_for(n), kBlock, 0, s>>>(g, x, cols);
  RECUR_CHECK_LAUNCH();
}

void col2im1d(const Conv1dGeometry& g, const float* dcols, float* dx, cudaStream_t s) {
  const std::int64_t n = g.B * g.T * g.C;
  if (n == 0) return;
  col2im1d_kernel<<<grid_for(n), kBlock, 0, s>>>(g, dcols, dx);
  RECUR_CHECK_LAUNCH();
}

}  // namespace recur::kernels::cuda
