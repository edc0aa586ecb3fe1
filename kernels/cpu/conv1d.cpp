// CPU twin of kernels/cuda/conv1d.cu: im2col and its adjoint for 1D
// convolution (conv1d.h).
#include "recur/kernels/cpu.h"

namespace recur::kernels::cpu {

// Both run row by row (a row of cols, a [b, t] row of dx) so that index
// arithmetic happens per row and the channels are contiguous copies or sums;
// each element gets the same value, summed in the same order, as the element
// functions in conv1d.h give it.
template <class T>
void im2col1d(const Conv1dGeometry& g, const T* x, T* cols) {
  const std::int64_t Cg = g.channels_per_group(), CgK = g.cols_per_group(), R = g.rows();
  const std::int64_t rows = g.groups * R;
#pragma omp parallel for schedule(static) if (rows * CgK >= kParallelThreshold)
  for (std::int64_t gr = 0; gr < rows; ++gr) {
    const std::int64_t grp = gr / R, r = gr % R, b = r / g.T_out, t = r % g.T_out;
    T* dst = cols + gr * CgK;
    for (std::int64_t k = 0; k < g.K; ++k) {
      const std::int64_t pos = t * g.stride - g.pad_left + k * g.dilation;
      if (pos >= 0 && pos < g.T) {
        const T* src = x + (b * g.T + pos) * g.C + grp * Cg;
        for (std::int64_t cp = 0; cp < Cg; ++cp) dst[cp * g.K + k] = src[cp];
      } else {
        for (std::int64_t cp = 0; cp < Cg; ++cp) dst[cp * g.K + k] = T(0);
      }
    }
  }
}

template <class T>
void col2im1d(const Conv1dGeometry& g, const T* dcols, T* dx) {
  const std::int64_t Cg = g.channels_per_group(), CgK = g.cols_per_group(), R = g.rows();
  const std::int64_t rows = g.B * g.T;
#pragma omp parallel for schedule(static) if (rows * g.C * g.K >= kParallelThreshold)
  for (std::int64_t bt = 0; bt < rows; ++bt) {
    const std::int64_t b = bt / g.T, pos = bt % g.T;
    T* d = dx + bt * g.C;
    for (std::int64_t c = 0; c < g.C; ++c) d[c] = T(0);
    for (std::int64_t k = 0; k < g.K; ++k) {
      const std::int64_t num = pos + g.pad_left - k * g.dilation;
      if (num < 0 || num % g.stride != 0) continue;
      const std::int64_t t = num / g.stride;
      if (t >= g.T_out) continue;
      for (std::int64_t grp = 0; grp < g.groups; ++grp) {
        const T* src = dcols + (grp * R + b * g.T_out + t) * CgK + k;
        T* dg = d + grp * Cg;
        for (std::int64_t cp = 0; cp < Cg; ++cp) dg[cp] += src[cp * g.K];
      }
    }
  }
}

template void im2col1d<float>(const Conv1dGeometry&, const float*, float*);
template void im2col1d<double>(const Conv1dGeometry&, const double*, double*);
template void col2im1d<float>(const Conv1dGeometry&, const float*, float*);
template void col2im1d<double>(const Conv1dGeometry&, const double*, double*);

}  // namespace recur::kernels::cpu
