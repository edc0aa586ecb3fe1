// 1D convolution over time, forward and backward, on any backend: Keras's
// Conv1D semantics (input [batch, time, channels]; padding valid, same,
// causal; strides; dilation; groups) with PyTorch's nn.Conv1d weight layout
// [filters, channels / groups, kernel_size] and bias [filters].
// Algorithm: im2col into [groups, B*T_out, C/groups*K], then one batched GEMM;
// backward: two batched GEMMs and the gather adjoint of im2col (deterministic).
#pragma once

#include <cstdint>

#include "recur/host/tensor.h"

namespace recur {

enum class Conv1dPadding : unsigned char { Valid, Same, Causal };
const char* conv1d_padding_name(Conv1dPadding p);

struct Conv1dOptions {
  std::int64_t kernel_size = 1;
  std::int64_t stride = 1;
  std::int64_t dilation = 1;
  std::int64_t groups = 1;
  Conv1dPadding padding = Conv1dPadding::Valid;
};

// Output length and left padding for T input steps, as Keras computes them:
// valid: floor((T - span) / stride) + 1 with span = dilation (K - 1) + 1;
// same: ceil(T / stride), padding split with the extra step on the right;
// causal: span - 1 steps on the left only. Throws ShapeError for a valid
// convolution whose span exceeds T.
struct Conv1dShape {
  std::int64_t T_out = 0, pad_left = 0;
};
Conv1dShape conv1d_shape(std::int64_t T, const Conv1dOptions& o);

namespace ops {
// y [B, T_out, F] = conv1d(x [B, T, C], w [F, C/groups, K]) + b [F] (b optional).
// `cols`, when not null, receives the im2col buffer for conv1d_backward.
Tensor conv1d(const Tensor& x, const Tensor& w, const Tensor& b, const Conv1dOptions& o,
              Tensor* cols = nullptr);

struct Conv1dGrads {
  Tensor dx;  // [B, T, C]
  Tensor dw;  // w's shape
  Tensor db;  // [F]
};
// Gradients of conv1d for dy [B, T_out, F]. `cols` from the forward call
// avoids recomputing the im2col buffer. input_grad false: dx is left
// undefined (its GEMM and col2im skipped).
Conv1dGrads conv1d_backward(const Tensor& x, const Tensor& w, const Tensor& dy,
                            const Conv1dOptions& o, const Tensor& cols = {}, bool input_grad = true);
}  // namespace ops
}  // namespace recur
