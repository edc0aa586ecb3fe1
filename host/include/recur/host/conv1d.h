// 1D convolution over time, forward and backward, on any backend: Keras's
// Conv1D semantics (input [batch, time, channels]; padding valid, same,
// causal; strides; dilation; groups) with PyTorch's nn.Conv1d weight layout
// [filters, channels / groups, kernel_size] and bias [filters].
// Algorithm: im2col into [groups, B*T_out, C/groups*K], then one batched GEMM;
// backward: two batched GEMMs and the gather adjoint of im2col (deterministic).
// A backend may instead run a direct convolution for the forward and the input
// gradient where it judges that faster (Backend::conv1d_direct): the CPU does
// for groups 1, C*K <= 256 and enough output channels to fill its vector
// blocks (F forward, C for dx), the narrow layers of the book's models, where
// im2col + GEMM moves more memory than the arithmetic needs
// (kernels/cpu/conv1d_direct.cpp); dw stays a GEMM over the columns.
//
// On CUDA this stays recur's algorithm for now; issue 4 names two others,
// cuDNN's convolution (or an implicit GEMM) and a fused kernel of recur's own
// for small shapes. What argues for it without a measurement:
//  - One GEMM per direction and group: y = cols [B*T_out, C/groups*K] x
//    w^T [C/groups*K, F/groups], one cuBLAS SGEMM (batched over groups)
//    instead of K small ones (one per tap), so the convolution gets SGEMM's
//    efficiency for every K, stride, dilation and padding. Causal and Keras
//    'same' padding with more steps on the right only change which input
//    steps im2col reads; cuDNN pads symmetrically, so it would compute, then
//    drop, extra output steps. FP32 throughout, no TF32 (CUBLAS_DEFAULT_MATH),
//    as on the CPU backend; the benchmark holds cuDNN to the same.
//  - A deterministic backward without atomics: dw = dy^T cols and
//    dcols = dy w are GEMMs, and col2im is a gather (each dx element sums the
//    im2col entries it was copied to), so dx and dw are the same bits run to
//    run. cuDNN's fastest backward algorithm may be a non-deterministic one
//    (cudnn_ops.h marks BWD_DATA ALGO_0 and BWD_FILTER ALGO_0 / ALGO_3 so).
//  - Its cost is the im2col copy, K times the input. For the Jena conv model
//    (C 6 -> 32 -> 32, K 5, B 128) that buffer is 3.6, 6.1 and 1.6 MB for its
//    three layers: cheap to write and read, and it fits the L2 of an A100 or
//    H100. For wide layers (C 256, B 64, T 1000: 196 MB at K 3) an implicit
//    GEMM that never writes it, as cuDNN's are, may well be faster.
//  - A fused small-shape kernel is not written: the benchmark must first show
//    that the library path is slow there.
// The rows that decide this against cuDNN come from bench/bench_conv_cudnn:
// recur's conv1d and conv1d_backward against the algorithms cuDNN's Find
// picks per direction, per shape (the Jena and IMDB conv models' layers and
// two wide ones), on one GPU in one run. As of this commit it has not run on
// a GPU (no GPU in the session that wrote it), so no measured figure backs
// this choice yet.
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
// `cols`, when not null, receives the im2col buffer for conv1d_backward, or an
// undefined tensor when the backend took its direct path (conv1d_backward
// then builds the columns itself).
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
