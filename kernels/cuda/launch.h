// Host-side launchers of recur's CUDA kernels (float32). Each enqueues on the
// given stream and checks the launch; none synchronises. Private to recur:
// host/ calls these from the CUDA backend.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "recur/kernels/bucketing.h"
#include "recur/kernels/loss.h"
#include "recur/kernels/optim.h"
#include "recur/kernels/conv1d.h"
#include "recur/kernels/pointwise.h"
#include "recur/kernels/rnn_cells.h"
#include "recur/kernels/seq_ops.h"

namespace recur::kernels::cuda {

void fill(float* y, std::int64_t n, float value, cudaStream_t stream);
void fill(std::int32_t* y, std::int64_t n, std::int32_t value, cudaStream_t stream);
void unary(UnaryOp op, const float* x, float* y, std::int64_t n, cudaStream_t stream);
// y[i] = op(a[i], b[i % nb]).
void binary(BinaryOp op, const float* a, const float* b, std::int64_t nb, float* y,
            std::int64_t n, cudaStream_t stream);
// x viewed as [outer, n, inner]; y[o, i] reduces the middle axis, accumulating
// in double. `workspace` holds reduce_workspace_size() doubles (none when 0);
// it must stay allocated until the stream has run the reduction.
std::int64_t reduce_workspace_size(std::int64_t outer, std::int64_t n, std::int64_t inner);
void reduce(ReduceOp op, const float* x, std::int64_t outer, std::int64_t n, std::int64_t inner,
            float* y, double* workspace, cudaStream_t stream);
// cudaSuccess when this binary holds kernels that run on the current device;
// else the error (e.g. cudaErrorNoKernelImageForDevice).
cudaError_t probe_kernel_image();

void lstm_step(const LstmStepArgs<float>& args, cudaStream_t stream);
void gru_step(const GruStepArgs<float>& args, cudaStream_t stream);
void rnn_step(RnnActivation act, const RnnStepArgs<float>& args, cudaStream_t stream);
void lstm_step_backward(const LstmBackArgs<float>& args, cudaStream_t stream);
void gru_step_backward(const GruBackArgs<float>& args, cudaStream_t stream);
void rnn_step_backward(RnnActivation act, const RnnBackArgs<float>& args, cudaStream_t stream);
void gru_rb_gates(const GruRbGatesArgs<float>& args, cudaStream_t stream);
void gru_rb_output(const GruRbOutArgs<float>& args, cudaStream_t stream);
void gru_rb_back_n(const GruRbBackNArgs<float>& args, cudaStream_t stream);
void gru_rb_back_r(const GruRbBackRArgs<float>& args, cudaStream_t stream);

// 1D convolution layout kernels (conv1d.h).
void im2col1d(const Conv1dGeometry& g, const float* x, float* cols, cudaStream_t stream);
void col2im1d(const Conv1dGeometry& g, const float* dcols, float* dx, cudaStream_t stream);

// y[b, a, :] = x[ra(a), rb(b), :] for x of shape [A, B, C] (see cpu.h).
void transpose01(const float* x, std::int64_t A, std::int64_t B, std::int64_t C, bool rev_a,
                 bool rev_b, float* y, cudaStream_t stream);

// Losses and metrics (recur/kernels/loss.h): writes loss[0] (device) and
// args.grad. `workspace` holds loss_workspace_size() doubles and must stay
// allocated until the stream has run the call.
std::int64_t loss_workspace_size();
void loss(LossKind kind, const LossArgs<float>& args, float* loss, double* workspace,
          cudaStream_t stream);
// *out (device, double) = sum of x^2; workspace: sum_squares_workspace_size() doubles.
std::int64_t sum_squares_workspace_size();
void sum_squares(const float* x, std::int64_t n, double* out, double* workspace,
                 cudaStream_t stream);
// One fused step over the flat buffers; args.grad_sq_sum, when set, is device memory.
void optimizer_step(OptimizerKind kind, const OptimizerArgs<float>& args, cudaStream_t stream);
// In place clipping of g (sq_sum: device memory or null).
void clip(float* g, std::int64_t n, const double* sq_sum, float clipnorm, float clipvalue,
          cudaStream_t stream);

// ---- pooling over time, embedding, activations, dropout (seq_ops.h) ----------
void pool_forward(PoolKind kind, const PoolArgs<float>& args, cudaStream_t stream);
void pool_backward(PoolKind kind, const PoolArgs<float>& args, cudaStream_t stream);
// An id outside [0, V) gives a NaN row in y (a kernel cannot throw; ops.h).
void embedding_forward(const EmbeddingArgs<float>& args, cudaStream_t stream);
// args.dw += rows of args.dy by atomicAdd (not bitwise deterministic); ids
// outside [0, V) are skipped.
void embedding_backward(const EmbeddingArgs<float>& args, cudaStream_t stream);
void embedding_mask(const std::int32_t* ids, float* mask, std::int64_t n, cudaStream_t stream);
void activation(Activation act, const float* x, float* y, std::int64_t rows, std::int64_t cols,
                cudaStream_t stream);
void activation_backward(Activation act, const float* y, const float* dy, float* dx,
                         std::int64_t rows, std::int64_t cols, cudaStream_t stream);
void dropout(const DropoutArgs<float>& args, cudaStream_t stream);

// ---- length bucketing (bucketing.h), with CUB -------------------------------------
// Workspace bytes length_buckets() needs for n positions (1 <= n <= INT_MAX)
// in windows of `window`; it must stay allocated until the stream has run the call.
std::size_t length_buckets_workspace(std::int64_t n, std::int64_t window, bool sort);
// Writes every output of `args`; info[1] < 0 flags bad input (the caller checks).
void length_buckets(const BucketArgs& args, void* workspace, std::size_t workspace_bytes,
                    cudaStream_t stream);

}  // namespace recur::kernels::cuda
