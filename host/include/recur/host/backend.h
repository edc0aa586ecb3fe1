// The backend interface: one op set, implemented by the CPU backend (OpenBLAS
// + OpenMP twins) and the CUDA backend (cuBLAS + recur's kernels). Backends see
// only validated calls: recur::ops (ops.h) checks shapes, dtypes and devices,
// asks supports(), then dispatches. A backend says honestly what it cannot do.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "recur/host/allocator.h"
#include "recur/host/tensor.h"
#include "recur/kernels/bucketing.h"
#include "recur/kernels/conv1d.h"
#include "recur/kernels/loss.h"
#include "recur/kernels/optim.h"
#include "recur/kernels/pointwise.h"
#include "recur/kernels/rnn_cells.h"
#include "recur/kernels/seq_ops.h"

namespace recur {

enum class OpKind : unsigned char {
  Fill, Copy, Gemm, Unary, Binary, Reduce, Transpose01,
  LstmStep, GruStep, RnnStep, LstmStepBackward, GruStepBackward, RnnStepBackward,
  GruResetBefore, Loss, SumSquares, Clip, OptimizerStep, Conv1d,
  Pool1d, Embedding, Activation, Dropout, LengthBuckets, GruSequence, LstmSequence,
  GruSequenceBackward, LstmSequenceBackward, RnnSequence, RnnSequenceBackward, GruRbSequence,
  GruRbSequenceBackward
};
const char* op_kind_name(OpKind op);

// What supports() is asked. Sizes are 0 where they do not apply.
struct OpQuery {
  OpKind op;
  DType dtype = DType::f32;
  std::int64_t batch = 0;
  std::int64_t hidden = 0;
  // Whole passes (GruSequence and the like): a recurrent-dropout mask is given.
  bool recurrent_dropout = false;
  // Whole passes: ys (dys) in a batch-major SeqLayout.
  bool batch_major = false;
  // Forward whole passes: given the input x and w_ih instead of xproj.
  bool fused_input = false;
};

struct Support {
  bool ok = true;
  std::string reason;  // why not, when !ok
  static Support yes() { return {}; }
  static Support no(std::string why) { return {false, std::move(why)}; }
  explicit operator bool() const { return ok; }
};

// C[b] = alpha * op(A[b]) op(B[b]) + beta * C[b]; row-major; strides in elements.
struct GemmCall {
  Tensor a, b, c;
  bool trans_a = false, trans_b = false;
  double alpha = 1.0, beta = 0.0;
  std::int64_t m = 0, n = 0, k = 0, batch = 1;
  std::int64_t lda = 0, ldb = 0, ldc = 0;
  std::int64_t stride_a = 0, stride_b = 0, stride_c = 0;  // 0 broadcasts
};

// One time step of each cell; see recur/kernels/rnn_cells.h for the equations,
// layouts and masking. Optional tensors may be left undefined. `mask` is [B]
// (1: valid, 0: padding; needs h_prev); `y` receives the step's output.
struct LstmStep {
  Tensor xproj, hproj;  // [B, 4H] each
  Tensor b_ih, b_hh;    // [4H], optional
  Tensor c_prev;        // [B, H]
  Tensor h_prev;        // [B, H], required with a mask
  Tensor mask;          // [B], optional
  Tensor h, c;          // [B, H] outputs
  Tensor y;             // [B, H] output, optional
  Tensor saved;         // [B, 4H] output (i, f, g, o), optional
};
struct GruStep {
  Tensor xproj, hproj;  // [B, 3H] each
  Tensor b_ih, b_hh;    // [3H], optional
  Tensor h_prev;        // [B, H]
  Tensor mask;          // [B], optional
  Tensor h;             // [B, H] output
  Tensor y;             // [B, H] output, optional
  Tensor saved;         // [B, 4H] output (r, z, n, hn + b_hn), optional
};
struct RnnStep {
  Tensor xproj, hproj;  // [B, H] each
  Tensor b_ih, b_hh;    // [H], optional
  Tensor h_prev;        // [B, H], required with a mask
  Tensor mask;          // [B], optional
  Tensor h;             // [B, H] output
  Tensor y;             // [B, H] output, optional
  RnnActivation activation = RnnActivation::Tanh;
};

// Backward of one step (rnn_cells.h): pre-activation gradients and the part
// of dL/dh_prev that does not pass through W_hh. dy, dh_next, dc_next and
// mask are optional.
struct LstmStepBackward {
  Tensor saved;                 // [B, 4H] from the forward step
  Tensor c_prev, c;             // [B, H]
  Tensor dy, dh_next, dc_next;  // [B, H]
  Tensor mask;                  // [B]
  Tensor dgates;                // [B, 4H] output
  Tensor dh_prev, dc_prev;      // [B, H] outputs (may be dh_next / dc_next)
};
struct GruStepBackward {
  Tensor saved;              // [B, 4H]
  Tensor h_prev;             // [B, H]
  Tensor dy, dh_next;        // [B, H]
  Tensor mask;               // [B]
  Tensor dgates_x, dgates_h;  // [B, 3H] outputs
  Tensor dh_prev;            // [B, H] output (may be dh_next)
};
struct RnnStepBackward {
  Tensor h;             // [B, H] the step's output state
  Tensor dy, dh_next;   // [B, H]
  Tensor mask;          // [B]
  Tensor dgates;        // [B, H] output
  Tensor dh_prev;       // [B, H] output (may be dh_next)
  RnnActivation activation = RnnActivation::Tanh;
};

// GRU with the reset gate before the recurrent matmul (Keras reset_after=False):
// the four pointwise stages around its two GEMMs (rnn_cells.h). Optional:
// b_ih, b_hh, mask, dy, dh_next, y.
struct GruResetBeforeGates {
  Tensor xproj;     // [B, 3H]
  Tensor hproj_rz;  // [B, 2H]
  Tensor b_ih, b_hh;  // [3H]
  Tensor h_in;      // [B, H]
  Tensor rh;        // [B, H] output
  Tensor saved;     // [B, 4H] output (r, z, -, r*h)
};
struct GruResetBeforeOutput {
  Tensor xproj;       // [B, 3H]
  Tensor hn;          // [B, H]
  Tensor b_ih, b_hh;  // [3H]
  Tensor h_prev;      // [B, H]
  Tensor mask;        // [B]
  Tensor saved;       // [B, 4H] in and out (n)
  Tensor h, y;        // [B, H] outputs
};
struct GruResetBeforeBackN {
  Tensor saved, h_prev, dy, dh_next, mask;
  Tensor dgates_x;   // [B, 3H] output (z, n blocks)
  Tensor dgates_rz;  // [B, 2H] output (z block)
  Tensor dgates_n;   // [B, H] output
  Tensor dh_prev;    // [B, H] output
};
struct GruResetBeforeBackR {
  Tensor saved, h_in, drh, mask;
  Tensor dgates_x;   // [B, 3H] output (r block)
  Tensor dgates_rz;  // [B, 2H] output (r block)
  Tensor dh_in;      // [B, H] output
};

// A whole recurrent pass over time in one call (recur/kernels/rnn_sequence.h):
// the step ops' equations and masking for every step, with the recurrent GEMM
// inside. The CPU backend runs it with its batch rows split over threads and
// no synchronisation between steps; the CUDA backend, with RECUR_PERSISTENT=1,
// runs the forward pass as one persistent kernel (docs/persistent.md). A
// backend without it says so in supports() (OpKind::GruSequence /
// LstmSequence, and GruSequenceBackward / LstmSequenceBackward for the
// backward passes, which are asked apart) and callers loop over the step ops
// instead. Tensors are time-major in processing order; optional: b_ih, b_hh,
// mask, ys, saved, dys, rec_mask.
//
// rec_mask [B, H] is recurrent dropout (one inverted mask per sequence, the
// same at every step): the recurrent matmul reads h_prev * rec_mask; the GRU's
// blend z * h_prev and a masked step's carried state use the undropped h_prev
// (as the engine's step loop). Backward passes take the forward's mask: dh_prev
// gets (dgates_h W_hh) * rec_mask.
// Where a whole pass's per-step outputs ys (and its backward's dys) are:
// TimeMajor [T, B, H] in processing order; BatchMajor [B, T, H], step t at
// t; BatchMajorReversed [B, T, H], step t at T - 1 - t (a go_backwards
// layer's outputs in input order). Batch-major spares the layer a transpose
// of its [B, T, H] output (or of dy) around the pass. The CPU backend takes
// all three; the CUDA backend's passes write time-major only (its supports()
// says no to OpQuery::batch_major).
enum class SeqLayout : std::uint8_t { TimeMajor, BatchMajor, BatchMajorReversed };

struct GruSequence {
  Tensor xproj;       // [T, B, 3H] (or x and w_ih below)
  Tensor w_hh;        // [3H, H]
  Tensor b_ih, b_hh;  // [3H]
  Tensor mask;        // [T, B]
  Tensor hs;          // [T + 1, B, H]: hs[0] in, hs[t + 1] out; or [2, B, H], alternating
                      // (the last state in hs[T % 2]) when saved is undefined
  Tensor ys;          // [T, B, H] output
  Tensor saved;       // [T, B, 4H] output (r, z, n, hn + b_hn per step)
  Tensor rec_mask;    // [B, H], optional
  SeqLayout ys_layout = SeqLayout::TimeMajor;  // ys: [T, B, H] or, batch-major, [B, T, H]
  // Instead of xproj (CPU backend): the input, x [B, T, I] batch-major in input
  // order, read from T - 1 down with x_reversed (go_backwards), and w_ih
  // [G H, I]; the pass projects each step as it goes (rnn_sequence.h).
  // OpQuery::fused_input asks.
  Tensor x{}, w_ih{};
  bool x_reversed = false;
};
struct GruSequenceBackward {
  Tensor saved;               // [T, B, 4H]
  Tensor hs;                  // [T + 1, B, H]
  Tensor dys;                 // [T, B, H]
  Tensor mask;                // [T, B]
  Tensor w_hh;                // [3H, H]
  Tensor dh;                  // [B, H] in: dL/dh_T; out: dL/dh_0
  Tensor dgates_x, dgates_h;  // [T, B, 3H] outputs
  Tensor db_ih, db_hh;        // [3H] outputs, optional (both or neither): the sums of
                              // dgates_x and dgates_h over every step and row
  Tensor rec_mask;            // [B, H], optional: the forward pass's recurrent-dropout mask
  SeqLayout dys_layout = SeqLayout::TimeMajor;  // as the forward's ys_layout
};
struct LstmSequence {
  Tensor xproj;       // [T, B, 4H] (or x and w_ih below)
  Tensor w_hh;        // [4H, H]
  Tensor b_ih, b_hh;  // [4H]
  Tensor mask;        // [T, B]
  Tensor hs, cs;      // [T + 1, B, H] as GruSequence::hs; without saved, hs [2, B, H]
                      // alternating and cs [1, B, H] updated in place
  Tensor ys;          // [T, B, H] output
  Tensor saved;       // [T, B, 4H] output (i, f, g, o per step)
  Tensor rec_mask;    // [B, H], optional
  SeqLayout ys_layout = SeqLayout::TimeMajor;  // ys: [T, B, H] or, batch-major, [B, T, H]
  // Instead of xproj (CPU backend): the input, x [B, T, I] batch-major in input
  // order, read from T - 1 down with x_reversed (go_backwards), and w_ih
  // [G H, I]; the pass projects each step as it goes (rnn_sequence.h).
  // OpQuery::fused_input asks.
  Tensor x{}, w_ih{};
  bool x_reversed = false;
};
struct LstmSequenceBackward {
  Tensor saved;   // [T, B, 4H]
  Tensor cs;      // [T + 1, B, H]
  Tensor dys;     // [T, B, H]
  Tensor mask;    // [T, B]
  Tensor w_hh;    // [4H, H]
  Tensor dh, dc;  // [B, H] in: dL/dh_T, dL/dc_T; out: dL/dh_0, dL/dc_0
  Tensor dgates;  // [T, B, 4H] output
  Tensor db;      // [4H] output, optional: the sum of dgates over every step and row
  Tensor rec_mask;  // [B, H], optional: the forward pass's recurrent-dropout mask
  SeqLayout dys_layout = SeqLayout::TimeMajor;  // as the forward's ys_layout
};

// SimpleRNN (G = 1). Nothing is saved; the backward pass reads hs.
struct RnnSequence {
  Tensor xproj;       // [T, B, H] (or x and w_ih below)
  Tensor w_hh;        // [H, H]
  Tensor b_ih, b_hh;  // [H]
  Tensor mask;        // [T, B]
  Tensor hs;          // [T + 1, B, H] (training) or [2, B, H] alternating (inference)
  Tensor ys;          // [T, B, H] output
  Tensor rec_mask;    // [B, H], optional
  RnnActivation activation = RnnActivation::Tanh;
  bool all_states = true;  // hs holds all T + 1 states
  SeqLayout ys_layout = SeqLayout::TimeMajor;  // ys: [T, B, H] or, batch-major, [B, T, H]
  // Instead of xproj (CPU backend): the input, x [B, T, I] batch-major in input
  // order, read from T - 1 down with x_reversed (go_backwards), and w_ih
  // [G H, I]; the pass projects each step as it goes (rnn_sequence.h).
  // OpQuery::fused_input asks.
  Tensor x{}, w_ih{};
  bool x_reversed = false;
};
struct RnnSequenceBackward {
  Tensor hs;          // [T + 1, B, H] from the forward pass
  Tensor dys;         // [T, B, H]
  Tensor mask;        // [T, B]
  Tensor w_hh;        // [H, H]
  Tensor dh;          // [B, H] in: dL/dh_T; out: dL/dh_0
  Tensor dgates;      // [T, B, H] output
  Tensor db;          // [H] output, optional: the sum of dgates over every step and row
  Tensor rec_mask;    // [B, H], optional
  RnnActivation activation = RnnActivation::Tanh;
  SeqLayout dys_layout = SeqLayout::TimeMajor;  // as the forward's ys_layout
};
// GRU with the reset gate before the recurrent matmul (Keras reset_after=False).
struct GruRbSequence {
  Tensor xproj;       // [T, B, 3H]
  Tensor w_hh;        // [3H, H]
  Tensor b_ih, b_hh;  // [3H]
  Tensor mask;        // [T, B]
  Tensor hs;          // as GruSequence::hs
  Tensor ys;          // [T, B, H] output
  Tensor saved;       // [T, B, 4H] output (r, z, n, r * h_in per step); undefined: inference
  Tensor rec_mask;    // [B, H], optional
  SeqLayout ys_layout = SeqLayout::TimeMajor;  // ys: [T, B, H] or, batch-major, [B, T, H]
};
struct GruRbSequenceBackward {
  Tensor saved;       // [T, B, 4H]
  Tensor hs;          // [T + 1, B, H]
  Tensor dys;         // [T, B, H]
  Tensor mask;        // [T, B]
  Tensor w_hh;        // [3H, H]
  Tensor dh;          // [B, H] in: dL/dh_T; out: dL/dh_0
  Tensor dgates_x;    // [T, B, 3H] output (xproj, b_ih)
  Tensor dgates_rz;   // [T, B, 2H] output (hproj_rz: W_h[r,z], b_h[r,z])
  Tensor dgates_n;    // [T, B, H] output (hn: W_hn, b_hn)
  Tensor db_ih, db_hh;  // [3H] outputs, optional (both or neither)
  Tensor rec_mask;    // [B, H], optional
  SeqLayout dys_layout = SeqLayout::TimeMajor;  // as the forward's ys_layout
};

// A loss or metric (see recur/kernels/loss.h for formulas and the reduction).
// pred and grad are viewed as [rows, cols]; exactly one of target (float,
// pred's shape) and labels (int32, [rows]) is defined; weight is optional.
struct LossCall {
  LossKind kind = LossKind::MeanSquaredError;
  Tensor pred, target, labels, weight;
  Tensor grad;  // pred's shape, output; undefined for metrics
  Tensor loss;  // [1], pred's dtype, output
  std::int64_t rows = 0, cols = 0;
  bool weight_per_row = false;
  double delta = 1.0;
};

// One fused optimizer step over flat [n] buffers (see recur/kernels/optim.h).
struct OptimizerStep {
  OptimizerKind kind = OptimizerKind::SGD;
  Tensor param, grad;           // [n]
  Tensor slot0, slot1, slot2;   // [n] each where the kind and options use them
  Tensor grad_sq_sum;           // [1] float64 (from sum_squares), for clipping by global norm
  double lr = 0.001, momentum = 0.0, rho = 0.9, beta1 = 0.9, beta2 = 0.999;
  double alpha = 0.0;  // Adam: lr sqrt(1 - beta2^t) / (1 - beta1^t)
  double epsilon = 1e-7, weight_decay = 0.0, clipnorm = 0.0, clipvalue = 0.0;
  bool nesterov = false, centered = false;
};

// Pooling over time (recur/kernels/seq_ops.h). Forward reads x and mask and
// writes y (and argmax for max); backward reads dy, mask and argmax and writes dx.
struct Pool1dCall {
  PoolKind kind = PoolKind::Max;
  Tensor x, mask, y, argmax;  // x [B, T, C]; mask [B, T], optional; y, argmax [B, out, C]
  Tensor dy, dx;              // [B, out, C], [B, T, C]
  kernels::PoolGeometry geometry;
};

// Length bucketing (recur/kernels/bucketing.h): sorts the windows of `order`
// by the lengths of its samples and cuts them into batches. All int32.
struct LengthBucketsCall {
  Tensor lengths;           // [N] per sample
  Tensor order;             // [n] indices into lengths, e.g. a shuffled 0..N-1
  std::int64_t window = 1;  // positions per sorted window
  bool sort = true;         // false: keep `order` (batches padded to cut.fixed_length)
  kernels::BucketCut cut;
  Tensor indices, keys;     // [n] outputs: order sorted per window, and the clipped lengths
  Tensor batch_begin, batch_size, batch_padded;  // [n] outputs, the first info[0] written
  Tensor info;              // [2] output: number of batches, smallest key (< 0: bad input)
};

// Values of device tensors on their way to the host (Backend::read_async):
// the copies are enqueued when it is made; wait() blocks until they have
// arrived, not for work enqueued after them, and returns every element of
// every tensor, in order, as doubles. Waiting twice returns the same values.
class HostRead {
 public:
  virtual ~HostRead() = default;
  virtual const std::vector<double>& wait() = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;
  // One line: "cpu: 2 threads, OpenBLAS ..." / "cuda:0: NVIDIA H100 ...".
  virtual std::string describe() const = 0;
  virtual Support supports(const OpQuery& query) const = 0;
  virtual CachingAllocator& allocator() = 0;
  // Waits for all work queued on this backend.
  virtual void synchronize() = 0;
  // For interoperation: the cudaStream_t this backend runs everything on, as
  // void* (nullptr on the CPU). Work a caller enqueues there is ordered with
  // recur's.
  virtual void* native_stream() { return nullptr; }
  // Copies n bytes; src and dst are each on this backend's device or the host
  // (or, for a GPU, another GPU: the caller orders that copy, see Tensor::copy_from).
  // Returns once host memory on either side may be reused or read.
  virtual void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device,
                          std::size_t n) = 0;
  // Starts copying `tensors` (float32, float64 or int32, on this device) to
  // the host behind the work already queued; the tensors may be released at
  // once. The default reads them synchronously.
  virtual std::unique_ptr<HostRead> read_async(const std::vector<Tensor>& tensors);

  virtual void fill(const Tensor& y, double value) = 0;
  virtual void gemm(const GemmCall& call) = 0;
  virtual void unary(UnaryOp op, const Tensor& x, const Tensor& y) = 0;
  // y = op(a, b); b may have fewer elements, repeating over a's leading dims.
  virtual void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& y) = 0;
  // x viewed as [outer, n, inner]; y is [outer, inner].
  virtual void reduce(ReduceOp op, const Tensor& x, std::int64_t outer, std::int64_t n,
                      std::int64_t inner, const Tensor& y) = 0;
  // Copies `rows` rows of `width` bytes from src (rows src_pitch bytes apart)
  // to dst (dst_pitch apart), both on this device.
  virtual void copy2d(void* dst, std::size_t dst_pitch, const void* src, std::size_t src_pitch,
                      std::size_t width, std::size_t rows) = 0;
  // y[b, a, :] = x[ra(a), rb(b), :]; x is [A, B, C]; rev_a/rev_b reverse an axis.
  virtual void transpose01(const Tensor& x, bool rev_a, bool rev_b, const Tensor& y) = 0;
  virtual void lstm_step(const LstmStep& step) = 0;
  virtual void gru_step(const GruStep& step) = 0;
  virtual void rnn_step(const RnnStep& step) = 0;
  virtual void lstm_step_backward(const LstmStepBackward& step) = 0;
  virtual void gru_step_backward(const GruStepBackward& step) = 0;
  virtual void rnn_step_backward(const RnnStepBackward& step) = 0;
  virtual void gru_rb_gates(const GruResetBeforeGates& s) = 0;
  virtual void gru_rb_output(const GruResetBeforeOutput& s) = 0;
  virtual void gru_rb_back_n(const GruResetBeforeBackN& s) = 0;
  virtual void gru_rb_back_r(const GruResetBeforeBackR& s) = 0;
  // Whole passes; only for backends whose supports() says yes (the default
  // throws UnsupportedError).
  virtual void gru_sequence(const GruSequence& s);
  virtual void gru_sequence_backward(const GruSequenceBackward& s);
  virtual void lstm_sequence(const LstmSequence& s);
  virtual void lstm_sequence_backward(const LstmSequenceBackward& s);
  virtual void rnn_sequence(const RnnSequence& s);
  virtual void rnn_sequence_backward(const RnnSequenceBackward& s);
  virtual void gru_rb_sequence(const GruRbSequence& s);
  virtual void gru_rb_sequence_backward(const GruRbSequenceBackward& s);

  // Writes call.loss[0] and, for losses, call.grad, in one fused pass.
  virtual void loss(const LossCall& call) = 0;
  // out [1] float64 = sum of x^2 over all of x, accumulated in double.
  virtual void sum_squares(const Tensor& x, const Tensor& out) = 0;
  // g in place: scaled for clipping by global norm when sq_sum ([1] float64)
  // is defined, then clamped to [-clipvalue, clipvalue] when clipvalue > 0.
  virtual void clip(const Tensor& g, const Tensor& sq_sum, double clipnorm, double clipvalue) = 0;
  virtual void optimizer_step(const OptimizerStep& step) = 0;

  // 1D convolution's layout kernels (recur/kernels/conv1d.h): cols [G, B*T_out,
  // C/G*K] from x [B, T, C]; dx [B, T, C] from dcols (overwritten, not added).
  virtual void im2col1d(const kernels::Conv1dGeometry& g, const Tensor& x, const Tensor& cols) = 0;
  virtual void col2im1d(const kernels::Conv1dGeometry& g, const Tensor& dcols, const Tensor& dx) = 0;
  // A direct convolution (no im2col) where the backend has one and judges it
  // the faster path for this shape: y [B, T_out, F] = conv(x, w) + b (b may be
  // undefined), or dx [B, T, C] (overwritten) from dy. Return false, writing
  // nothing, to have ops::conv1d take the im2col + GEMM path.
  virtual bool conv1d_direct(const kernels::Conv1dGeometry&, const Tensor& /*x*/, const Tensor& /*w*/,
                             const Tensor& /*b*/, const Tensor& /*y*/) {
    return false;
  }
  virtual bool conv1d_direct_backward_data(const kernels::Conv1dGeometry&, const Tensor& /*dy*/,
                                           const Tensor& /*w*/, const Tensor& /*dx*/) {
    return false;
  }
  // dw [F, C, K] (overwritten) from x and dy, without the columns.
  virtual bool conv1d_direct_backward_weights(const kernels::Conv1dGeometry&, const Tensor& /*x*/,
                                              const Tensor& /*dy*/, const Tensor& /*dw*/) {
    return false;
  }

  // ---- pooling over time, embedding, activations, dropout (seq_ops.h) --------
  virtual void pool1d(const Pool1dCall& call) = 0;
  virtual void pool1d_backward(const Pool1dCall& call) = 0;
  // y [n, D] = weights[ids] (ids int32 [n]); dweights [V, D] += rows of dy.
  virtual void embedding(const Tensor& weights, const Tensor& ids, const Tensor& y) = 0;
  virtual void embedding_backward(const Tensor& ids, const Tensor& dy, const Tensor& dweights) = 0;
  // mask (float, ids' element count) = ids != 0.
  virtual void embedding_mask(const Tensor& ids, const Tensor& mask) = 0;
  // x, y viewed as [rows, cols]; Softmax runs over each row.
  virtual void activation(Activation act, const Tensor& x, const Tensor& y, std::int64_t cols) = 0;
  virtual void activation_backward(Activation act, const Tensor& y, const Tensor& dy,
                                   const Tensor& dx, std::int64_t cols) = 0;
  // y = x * mask, mask = (uniform(seed, i) >= rate) / (1 - rate).
  virtual void dropout(const Tensor& x, double rate, std::uint64_t seed, const Tensor& y,
                       const Tensor& mask) = 0;

  // ---- length bucketing ------------------------------------------------------------
  // The CPU backend throws ValueError on bad input; the CUDA backend flags it
  // in info[1] (a kernel cannot throw) for the caller to check.
  virtual void length_buckets(const LengthBucketsCall& call) = 0;
};

// The backend of a device (created on first use, alive for the process).
// Throws DeviceError when the device cannot be used, saying why.
Backend& backend(Device device);

}  // namespace recur
