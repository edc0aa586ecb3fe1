// The CPU twins of the CUDA kernels. Templates over the element type: the CPU
// backend instantiates float (and double for reference work and gradient
// checks). Multi-threaded with OpenMP where the work is large enough to pay.
//
// All pointers are to contiguous row-major storage unless a leading dimension
// says otherwise.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "recur/kernels/bucketing.h"
#include "recur/kernels/loss.h"
#include "recur/kernels/optim.h"
#include "recur/kernels/conv1d.h"
#include "recur/kernels/pointwise.h"
#include "recur/kernels/rnn_cells.h"
#include "recur/kernels/rnn_sequence.h"
#include "recur/kernels/seq_ops.h"

namespace recur::kernels::cpu {

// Work (in elements) below which kernels run on one thread: about a
// millisecond of memory-bound work. Smaller kernels gain little from a second
// thread on an idle machine (tens of microseconds), while on a loaded one each
// OpenMP region can cost milliseconds: libgomp's waiting threads spin, use up
// their share of the CPU and are then scheduled late (docs/architecture.md).
inline constexpr std::int64_t kParallelThreshold = 1 << 20;

int num_threads();
void set_num_threads(int n);
// "OpenBLAS 0.3.21 (pthread, 2 threads, Haswell)" or similar.
std::string blas_info();

template <class T> void fill(T* y, std::int64_t n, T value);
// y[i] = op(x[i]), i < n.
template <class T> void unary(UnaryOp op, const T* x, T* y, std::int64_t n);
// y[i] = op(a[i], b[i % nb]), i < n: b of shorter length broadcasts over the
// leading dimensions of a (nb must divide n).
template <class T>
void binary(BinaryOp op, const T* a, const T* b, std::int64_t nb, T* y, std::int64_t n);
// x viewed as [outer, n, inner]; y[o, i] = reduce over the middle axis.
// float accumulates in double.
template <class T>
void reduce(ReduceOp op, const T* x, std::int64_t outer, std::int64_t n, std::int64_t inner, T* y);

// C[b] = alpha * op(A[b]) op(B[b]) + beta * C[b] for b < batch, row-major;
// op(A) is [M, K], op(B) is [K, N]; a stride of 0 broadcasts one matrix.
template <class T>
void gemm(bool trans_a, bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K, T alpha,
          const T* A, std::int64_t lda, std::int64_t stride_a, const T* B, std::int64_t ldb,
          std::int64_t stride_b, T beta, T* C, std::int64_t ldc, std::int64_t stride_c,
          std::int64_t batch);

// The recurrent product of the float32 sequence kernels (packed_gemm.cpp):
// c[M, N] = a[M, K] op(w), or c += that, with op(w) packed once per pass into
// panels of kPanel columns so that each step's product does not copy the
// weight again (the BLAS does at every call). Each element of c is one sum
// over k in order, independent of the row split. Only where the CPU has
// AVX-512F: pack_weight() returns false elsewhere, and callers use gemm().
struct PackedWeight {
  static constexpr std::int64_t kPanel = 32;
  std::int64_t K = 0, N = 0;
  std::vector<float> data;  // [ceil(N / kPanel)][K][kPanel], zero-padded
};
bool packed_product_available();
// op(w) is [K, N]: w is [N, K] when trans (c = a w^T, as for x W_hh^T), else [K, N].
bool pack_weight(const float* w, bool trans, std::int64_t K, std::int64_t N, PackedWeight& p);
void packed_product(std::int64_t M, const float* a, std::int64_t lda, const PackedWeight& p,
                    bool accumulate, float* c, std::int64_t ldc);
// Threads a float32 forward pass of B rows, H units and G gates runs with
// the units split over them (rnn_sequence.cpp), or 0 where it splits rows.
int rnn_unit_split_threads(std::int64_t B, std::int64_t H, std::int64_t G);

template <class T> void lstm_step(const LstmStepArgs<T>& args);
template <class T> void gru_step(const GruStepArgs<T>& args);
template <class T> void rnn_step(RnnActivation act, const RnnStepArgs<T>& args);
template <class T> void lstm_step_backward(const LstmBackArgs<T>& args);
template <class T> void gru_step_backward(const GruBackArgs<T>& args);
template <class T> void rnn_step_backward(RnnActivation act, const RnnBackArgs<T>& args);
template <class T> void gru_rb_gates(const GruRbGatesArgs<T>& args);
// Whole recurrent passes (rnn_sequence.h): rows split over threads, each
// thread running every step of its rows, GEMMs included.
template <class T> void gru_sequence(const GruSequenceArgs<T>& args);
template <class T> void gru_sequence_backward(const GruSequenceBackArgs<T>& args);
template <class T> void lstm_sequence(const LstmSequenceArgs<T>& args);
template <class T> void lstm_sequence_backward(const LstmSequenceBackArgs<T>& args);
template <class T> void rnn_sequence(const RnnSequenceArgs<T>& args);
template <class T> void rnn_sequence_backward(const RnnSequenceBackArgs<T>& args);
template <class T> void gru_rb_sequence(const GruRbSequenceArgs<T>& args);
template <class T> void gru_rb_sequence_backward(const GruRbSequenceBackArgs<T>& args);
template <class T> void gru_rb_output(const GruRbOutArgs<T>& args);
template <class T> void gru_rb_back_n(const GruRbBackNArgs<T>& args);
template <class T> void gru_rb_back_r(const GruRbBackRArgs<T>& args);

// 1D convolution layout kernels (conv1d.h).
template <class T> void im2col1d(const Conv1dGeometry& g, const T* x, T* cols);
template <class T> void col2im1d(const Conv1dGeometry& g, const T* dcols, T* dx);
// Direct 1D convolution (conv1d_direct.cpp), groups 1 only: y [B, T_out, F]
// from x [B, T, C], w [F, C, K] and bias [F] (may be null); dx [B, T, C]
// (overwritten) from dy [B, T_out, F] and w.
template <class T>
void conv1d_direct_forward(const Conv1dGeometry& g, const T* x, const T* w, const T* bias, T* y, std::int64_t F);
template <class T>
void conv1d_direct_backward_data(const Conv1dGeometry& g, const T* dy, const T* w, T* dx, std::int64_t F);
// dw [F, C, K] (overwritten) from x and dy.
template <class T>
void conv1d_direct_backward_weights(const Conv1dGeometry& g, const T* x, const T* dy, T* dw, std::int64_t F);
// Which path the CPU backend's conv1d takes: Auto (by shape), Direct (always,
// groups 1), Im2col (never direct). Starts from the environment variable
// RECUR_CONV1D (auto, direct or im2col); tests and benchmarks set it.
enum class Conv1dPath : int { Auto = 0, Direct = 1, Im2col = 2 };
// The direct kernels compute output channels in blocks of 32 float32 (16
// float64); the share of a block's lanes that `outputs` channels fill.
double conv1d_direct_lane_use(std::int64_t outputs, bool f64);
Conv1dPath conv1d_path();
void set_conv1d_path(Conv1dPath p);

// y[b, a, :] = x[ra(a), rb(b), :] for x of shape [A, B, C]: swaps the two
// leading axes; ra(a) = A-1-a when rev_a (likewise rb), which reverses time
// for go_backwards in the same pass.
template <class T>
void transpose01(const T* x, std::int64_t A, std::int64_t B, std::int64_t C, bool rev_a,
                 bool rev_b, T* y);

// Losses and metrics (recur/kernels/loss.h): writes args.grad (when set) and
// returns the weighted mean. Throws ValueError, naming the row, for a sparse
// label outside [0, cols) on a row whose weight is not 0. Sums run over
// fixed chunks in double, so the result does not depend on the thread count.
template <class T> double loss(LossKind kind, const LossArgs<T>& args);
// Sum of x^2 over n elements, accumulated in double (for clipping by global norm).
template <class T> double sum_squares(const T* x, std::int64_t n);
// One fused optimizer step over the flat buffers (recur/kernels/optim.h);
// args.grad_sq_sum, when set, points at host memory.
template <class T> void optimizer_step(OptimizerKind kind, const OptimizerArgs<T>& args);
// In place: g = clip_gradient(g, ...) with the global-norm scale from *sq_sum
// (when not null) and clipvalue (when > 0).
template <class T> void clip(T* g, std::int64_t n, const double* sq_sum, T clipnorm, T clipvalue);

// ---- pooling over time, embedding, activations, dropout (seq_ops.h) ----------
template <class T> void pool_forward(PoolKind kind, const PoolArgs<T>& args);
template <class T> void pool_backward(PoolKind kind, const PoolArgs<T>& args);
// Both throw ValueError, naming the position, for an id outside [0, V).
template <class T> void embedding_forward(const EmbeddingArgs<T>& args);
// args.dw += the rows of args.dy, deterministically (rows summed in order).
template <class T> void embedding_backward(const EmbeddingArgs<T>& args);
// mask[i] = ids[i] != 0.
template <class T> void embedding_mask(const std::int32_t* ids, T* mask, std::int64_t n);
// x and y are [rows, cols]; Softmax runs over each row.
template <class T>
void activation(Activation act, const T* x, T* y, std::int64_t rows, std::int64_t cols);
template <class T>
void activation_backward(Activation act, const T* y, const T* dy, T* dx, std::int64_t rows,
                         std::int64_t cols);
template <class T> void dropout(const DropoutArgs<T>& args);

// ---- length bucketing (bucketing.h) -----------------------------------------------
// Gather, stable sort per window, cut; throws ValueError naming the position
// for an index outside [0, N) or a negative length.
void length_buckets(const BucketArgs& args);

}  // namespace recur::kernels::cpu
