// 1D convolution geometry and the two layout kernels it needs, written once
// for the CPU twin and CUDA. The convolution itself is GEMMs (host/src/conv1d.cpp):
//
//   x     [B, T, C]              channels last (Keras's layout)
//   w     [F, C/G, K]            PyTorch's nn.Conv1d layout, G = groups
//   cols  [G, B*T_out, (C/G)*K]  im2col, group-major; column c'*K + k of group
//                                g holds x[b, t*stride - pad_left + k*dilation, g*C/G + c']
//                                (0 outside [0, T))
//   y[g] = cols[g] w[g]^T        one batched GEMM: [G, B*T_out, F/G]
//
// col2im is the adjoint of im2col, written as a gather (each x element sums
// the columns that read it), so it is deterministic and needs no atomics.
#pragma once

#include <cstdint>

#include "recur/common/macros.h"

namespace recur::kernels {

struct Conv1dGeometry {
  std::int64_t B = 0, T = 0, C = 0;  // input
  std::int64_t T_out = 0;
  std::int64_t K = 1, stride = 1, dilation = 1, pad_left = 0, groups = 1;

  RECUR_HD std::int64_t channels_per_group() const { return C / groups; }
  RECUR_HD std::int64_t rows() const { return B * T_out; }
  RECUR_HD std::int64_t cols_per_group() const { return channels_per_group() * K; }
  RECUR_HD std::int64_t cols_size() const { return groups * rows() * cols_per_group(); }
};

// Element i of cols (i < cols_size()).
template <class T>
RECUR_HD void im2col1d_element(const Conv1dGeometry& g, const T* x, T* cols, std::int64_t i) {
  const std::int64_t CgK = g.cols_per_group(), R = g.rows();
  const std::int64_t col = i % CgK, gr = i / CgK;
  const std::int64_t r = gr % R, grp = gr / R;
  const std::int64_t cp = col / g.K, k = col % g.K;
  const std::int64_t b = r / g.T_out, t = r % g.T_out;
  const std::int64_t pos = t * g.stride - g.pad_left + k * g.dilation;
  const std::int64_t c = grp * g.channels_per_group() + cp;
  cols[i] = (pos >= 0 && pos < g.T) ? x[(b * g.T + pos) * g.C + c] : T(0);
}

// Element i of dx (i < B*T*C): the sum of every cols entry that im2col read it into.
template <class T>
RECUR_HD void col2im1d_element(const Conv1dGeometry& g, const T* dcols, T* dx, std::int64_t i) {
  const std::int64_t c = i % g.C, bt = i / g.C;
  const std::int64_t pos = bt % g.T, b = bt / g.T;
  const std::int64_t Cg = g.channels_per_group(), grp = c / Cg, cp = c % Cg;
  const std::int64_t CgK = g.cols_per_group(), R = g.rows();
  T acc = T(0);
  for (std::int64_t k = 0; k < g.K; ++k) {
    const std::int64_t num = pos + g.pad_left - k * g.dilation;
    if (num < 0 || num % g.stride != 0) continue;
    const std::int64_t t = num / g.stride;
    if (t >= g.T_out) continue;
    acc += dcols[(grp * R + b * g.T_out + t) * CgK + cp * g.K + k];
  }
  dx[i] = acc;
}

}  // namespace recur::kernels
