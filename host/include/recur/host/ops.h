// recur's op set, as users and the engine call it. Each function checks its
// arguments (shapes, dtypes, devices: all tensors on one device), asks the
// device's backend whether it supports the call (UnsupportedError with the
// backend's reason if not), then runs it there. Ops are asynchronous on CUDA;
// to_vector() and Backend::synchronize() wait.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

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

// Whole recurrent passes over time (backend.h's GruSequence and the like),
// for backends that support them: ask backend(device).supports({OpKind::
// GruSequence or LstmSequence, dtype, B, H}) first; where not, loop over the
// step ops. hs (and cs, dh, dc) are read and written.
void gru_sequence(const GruSequence& s);
void gru_sequence_backward(const GruSequenceBackward& s);
void lstm_sequence(const LstmSequence& s);
void lstm_sequence_backward(const LstmSequenceBackward& s);
void rnn_sequence(const RnnSequence& s);
void rnn_sequence_backward(const RnnSequenceBackward& s);
void gru_rb_sequence(const GruRbSequence& s);
void gru_rb_sequence_backward(const GruRbSequenceBackward& s);

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
// Starts copying `tensors` (all on one device; float32, float64 or int32) to
// the host without waiting for the device: HostRead::wait() waits for them
// alone, not for the work queued after them (a training loop reads a step's
// loss while the next step runs). They may be released at once.
std::unique_ptr<HostRead> read_async(const std::vector<Tensor>& tensors);
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

// ---- pooling over time, embedding, activations, dropout ------------------------
// Semantics and the shared math: recur/kernels/seq_ops.h. Every function
// returns new tensors on the input's device; float32 on CPU and CUDA, float64
// on the CPU. Masks are [B, T] of 0/1 in x's dtype (0: padding, ignored).

// Keras's padding of pooling windows (named apart from any convolution padding).
enum class PoolPadding : std::uint8_t { Valid, Same };

// Keras's MaxPooling1D / AveragePooling1D on x [B, T, C] (channels last).
struct Pool1dOptions {
  PoolKind kind = PoolKind::Max;
  std::int64_t pool_size = 2;
  std::int64_t strides = 0;  // 0: pool_size (Keras's strides=None)
  PoolPadding padding = PoolPadding::Valid;
};
// Keras's output length: valid (T - pool_size) / strides + 1 (T >= pool_size),
// same ceil(T / strides), padded floor(total / 2) before and the rest after.
// Throws ValueError naming the bad option.
std::int64_t pool1d_output_length(std::int64_t T, const Pool1dOptions& options);

struct PoolResult {
  Tensor y;       // [B, out, C] (global: [B, C])
  Tensor argmax;  // int32, y's shape: the t each max came from (-1: none); undefined for average
};
// Padded and masked steps are ignored: max over the rest; average = their sum /
// their number; a window (or row, for global) with none outputs 0.
PoolResult pool1d_forward(const Tensor& x, const Pool1dOptions& options, const Tensor& mask = {});
// dx [B, T, C] from dy [B, out, C]; `argmax` (from the forward) is required for
// max and ignored for average; mask as in the forward.
Tensor pool1d_backward(const Tensor& dy, std::int64_t T, const Pool1dOptions& options,
                       const Tensor& mask = {}, const Tensor& argmax = {});
// GlobalMaxPooling1D / GlobalAveragePooling1D over T (mask-aware): y [B, C].
PoolResult global_pool1d_forward(PoolKind kind, const Tensor& x, const Tensor& mask = {});
Tensor global_pool1d_backward(PoolKind kind, const Tensor& dy, std::int64_t T,
                              const Tensor& mask = {}, const Tensor& argmax = {});

// y [..., D] = weights [V, D] rows at ids (int32 [...], e.g. [B, T]). An id
// outside [0, V) is a ValueError on the CPU; on CUDA it is not checked (that
// would cost a host round trip) and its row of y is NaN.
Tensor embedding_forward(const Tensor& weights, const Tensor& ids);
// dweights [V, D] += sum of the dy rows [..., D] of each id (accumulates: zero
// it first for a fresh gradient). CPU: deterministic, and a ValueError for an
// id outside [0, V); CUDA: atomicAdd (the last bits may vary from run to run),
// ids outside [0, V) skipped.
void embedding_backward(const Tensor& ids, const Tensor& dy, const Tensor& dweights);
// Keras's mask_zero: 1 where id != 0, else 0; ids' shape, dtype `dtype` (f32/f64).
Tensor embedding_mask(const Tensor& ids, DType dtype = DType::f32);

// y = act(x), x's shape; Softmax over the last axis (the row maximum subtracted).
Tensor activation_forward(Activation act, const Tensor& x);
Tensor softmax(const Tensor& x);
// dx from the forward output y and dy: relu dy (y > 0), tanh dy (1 - y^2),
// sigmoid dy y (1 - y), linear dy, softmax y (dy - sum(dy y)) per row.
Tensor activation_backward(Activation act, const Tensor& y, const Tensor& dy);

// Inverted dropout (Keras's Dropout): in training, mask = 0 with probability
// `rate` else 1 / (1 - rate), y = x mask, drawn from a counter-based hash of
// (seed, flat index) so the CPU and CUDA masks agree bit for bit and a seed
// repeats a mask. Not training: y is a copy of x and mask all ones.
// rate must be in [0, 1).
struct DropoutResult {
  Tensor y, mask;  // x's shape and dtype
};
DropoutResult dropout_forward(const Tensor& x, double rate, std::uint64_t seed, bool training);
// dx = dy * mask.
Tensor dropout_backward(const Tensor& dy, const Tensor& mask);

// ---- length bucketing (recur/kernels/bucketing.h) --------------------------------
// lengths int32 [N] (per sample) and order int32 [n] (indices into lengths,
// e.g. a shuffled 0..N-1), both on one device. Each window of `window`
// consecutive positions of order (the last may be shorter) is sorted stably
// by length clipped to cut.max_length (with sort false, order is kept), then
// cut greedily into batches as bucketing.h says. The CPU and CUDA (CUB)
// results are identical. Reads the number of batches back to the host, so
// it synchronises with the device.
// Throws ValueError for an index outside [0, N), a negative length, or
// options out of range (window, batch_size, pad_multiple >= 1; the rest >= 0);
// a sample whose padded length alone exceeds cut.max_tokens gets a batch of its own.
struct LengthBuckets {
  Tensor indices;  // int32 [n]: order, each window sorted by length
  Tensor lengths;  // int32 [n]: their clipped lengths
  // int32 [num_batches] each: a batch's first position in indices, its number
  // of samples and its padded length.
  Tensor batch_begin, batch_size, batch_padded;
  std::int64_t num_batches = 0;
};
LengthBuckets length_buckets(const Tensor& lengths, const Tensor& order, std::int64_t window,
                             const kernels::BucketCut& cut, bool sort = true);

}  // namespace recur::ops
