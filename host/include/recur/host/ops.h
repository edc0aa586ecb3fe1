// recur's op set, as users and the engine call it. Each function checks its
// arguments (shapes, dtypes, devices: all tensors on one device), asks the
// device's backend whether it supports the call (UnsupportedError with the
// backend's reason if not), then runs it there. Ops are asynchronous on CUDA;
// to_vector() and Backend::synchronize() wait.
#pragma once

#include <cstdint>

#include "recur/host/backend.h"
#include "recur/host/tensor.h"

namespace recur::ops {

void fill(const Tensor& y, double value);

// c = alpha * op(a) op(b) + beta * c, row-major. Shapes: op(a) [M, K] or
// [batch, M, K]; op(b) [K, N] or [batch, K, N]; c [M, N] or [batch, M, N]. A 2-D
// operand with a 3-D c is shared by every batch entry (e.g. a weight matrix).
void gemm(const Tensor& a, const Tensor& b, const Tensor& c, bool trans_a = false,
          bool trans_b = false, double alpha = 1.0, double beta = 0.0);
Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false);

// y = op(a, b); b's shape must equal a's or a suffix of it (b repeats over
// a's leading dimensions, as a bias does). y has a's shape; y may alias a.
void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& y);
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);

// y = op(x), same shape; y may alias x.
void unary(UnaryOp op, const Tensor& x, const Tensor& y);
Tensor sigmoid(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor relu(const Tensor& x);

// Reduces dimension `axis` (negative counts from the end); the result drops
// that dimension, or keeps it as size 1 with keepdim. Max propagates NaN.
// Reducing an empty axis: sum 0, mean and max throw ValueError.
Tensor reduce(ReduceOp op, const Tensor& x, int axis, bool keepdim = false);
// Over all elements: a tensor of shape [1].
Tensor reduce_all(ReduceOp op, const Tensor& x);
inline Tensor sum(const Tensor& x, int axis, bool keepdim = false) { return reduce(ReduceOp::Sum, x, axis, keepdim); }
inline Tensor mean(const Tensor& x, int axis, bool keepdim = false) { return reduce(ReduceOp::Mean, x, axis, keepdim); }
inline Tensor max(const Tensor& x, int axis, bool keepdim = false) { return reduce(ReduceOp::Max, x, axis, keepdim); }

// Column blocks of row-major matrices (concatenation along the last axis):
// dst[r, offset : offset + w] = src[r, :] for src [R, w], dst [R, W] (both
// viewed 2-D over their last axis); and its inverse, which returns a new [R, w].
void copy_columns(const Tensor& src, const Tensor& dst, std::int64_t offset);
Tensor extract_columns(const Tensor& src, std::int64_t offset, std::int64_t width);

// Swaps the two leading axes: [A, B, ...] -> [B, A, ...] (a copy);
// reverse0 / reverse1 also reverse input axis 0 / 1 in the same pass
// (how the recurrent layers reverse time for go_backwards).
Tensor transpose01(const Tensor& x, bool reverse0 = false, bool reverse1 = false);

// Fused one-step cell kernels, forward and backward (equations in
// recur/kernels/rnn_cells.h).
void lstm_step(const LstmStep& step);
void gru_step(const GruStep& step);
void rnn_step(const RnnStep& step);
void lstm_step_backward(const LstmStepBackward& step);
void gru_step_backward(const GruStepBackward& step);
void rnn_step_backward(const RnnStepBackward& step);
// The four stages of a GRU step with the reset gate before the matmul.
void gru_rb_gates(const GruResetBeforeGates& s);
void gru_rb_output(const GruResetBeforeOutput& s);
void gru_rb_back_n(const GruResetBeforeBackN& s);
void gru_rb_back_r(const GruResetBeforeBackR& s);

// ---- training: losses, metrics, clipping, optimizer steps ---------------------
// Formulas, the Keras mean and the masking rule: recur/kernels/loss.h.
//   pred    [..., C]  logits or predictions; C is the last axis
//   target  elementwise kinds: pred's shape and dtype; sparse kinds
//           (SparseCategoricalCrossentropy, Accuracy): int32 class indices [...]
//           (pred's shape without the last axis)
//   weight  optional 0/1 mask (or non-negative weights): pred's shape, or [...]
//           (one per row, e.g. per time step of [B, T, C]); sparse kinds: per row
//           only. A weight-0 element or row contributes nothing, whatever its
//           values or label (padding may hold garbage).
//   grad    pred's shape, output: d(loss)/d(pred); must not overlap an input.
// Returns the loss as a [1] tensor on pred's device (asynchronous on CUDA).
// A sparse label outside [0, C) on a counted row is a ValueError on the CPU; on
// CUDA it cannot be checked without a host round trip, so that row's loss and
// gradient are NaN instead (the result is NaN, never silently wrong).
Tensor loss(LossKind kind, const Tensor& pred, const Tensor& target, const Tensor& grad,
            const Tensor& weight = {}, double huber_delta = 1.0);
// The value alone (no gradient): any LossKind, including Accuracy and BinaryAccuracy.
Tensor metric(LossKind kind, const Tensor& pred, const Tensor& target, const Tensor& weight = {});

// The sum of x^2 over all of x, accumulated in double: a [1] float64 tensor on
// x's device (also on CUDA, where it feeds clipping without a host round trip).
Tensor sum_squares(const Tensor& x);
// g in place, as Keras clips: with sq_sum ([1] float64, from sum_squares) and
// clipnorm > 0, g *= clipnorm / max(sqrt(sq_sum), clipnorm); with clipvalue > 0,
// g = clamp(g, -clipvalue, clipvalue).
void clip_gradients(const Tensor& g, const Tensor& sq_sum, double clipnorm, double clipvalue);
// Clipping by global norm over all of g (a flat gradient buffer); returns the
// sum of squares before clipping ([1] float64).
Tensor clip_by_global_norm(const Tensor& g, double clipnorm);
void clip_by_value(const Tensor& g, double clipvalue);

// One fused optimizer step over flat buffers (recur/kernels/optim.h); one
// kernel launch on CUDA whatever the number of parameters.
void optimizer_step(const OptimizerStep& step);

}  // namespace recur::ops
