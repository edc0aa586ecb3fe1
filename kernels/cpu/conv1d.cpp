// CPU twin of kernels/cuda/conv1d.cu: im2col and its adjoint for 1D
// convolution (conv1d.h), one element function each, shared with CUDA.
#include "recur/kernels/cpu.h"

namespace recur::kernels::cpu {

template <class T>
void im2col1d(const Conv1dGeometry& g, const T* x, T* cols) {
  const std::int64_t n = g.cols_size();
#pragma omp parallel for schedule(static) if (n >= kParallelThreshold)
  for (std::int64_t i = 0; i < n; ++i) im2col1d_element(g, x, cols, i);
}

template <class T>
void col2im1d(const Conv1dGeometry& g, const T* dcols, T* dx) {
  const std::int64_t n = g.B * g.T * g.C;
#pragma omp parallel for schedule(static) if (n * g.K >= kParallelThreshold)
  for (std::int64_t i = 0; i < n; ++i) col2im1d_element(g, dcols, dx, i);
}

template void im2col1d<float>(const Conv1dGeometry&, const float*, float*);
template void im2col1d<double>(const Conv1dGeometry&, const double*, double*);
template void col2im1d<float>(const Conv1dGeometry&, const float*, float*);
template void col2im1d<double>(const Conv1dGeometry&, const double*, double*);

}  // namespace recur::kernels::cpu
