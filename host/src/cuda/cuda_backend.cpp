// The CUDA backend: one non-blocking stream per device, cuBLAS (pure FP32 math,
// no TF32, so results match the CPU to float rounding) for GEMM, recur's
// kernels (kernels/cuda) for the rest, memory from a caching allocator over
// cudaMalloc. Every CUDA and cuBLAS call is checked.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "../cuda_api.h"
#include "../seq_args.h"
#include "../step_args.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/persistent_rnn.h"
#include "recur/common/log.h"
#include "recur/kernels/persistent_cost.h"
#include "recur/kernels/persistent_plan.h"
#include "library_check.h"
#include "lt_gemm.h"
#include "recur/host/system_info.h"

namespace recur {
namespace cuda_host {
namespace {

namespace kc = kernels::cuda;

// Which persistent-RNN kernels run (docs/persistent.md), from RECUR_PERSISTENT,
// read at every decision so that a process (or a test) can switch them:
//  - unset (or anything else): the block-local GRU (reset_after) and LSTM
//    forward, the regime measured on an H100 (2026-12-05: 1.47 us/step at the
//    Jena shape against the standard path's 22.1; its tests pass there); the
//    grid regime, measured 4-34x slower than the standard path, is not used;
//    backward passes, SimpleRNN and the reset-before GRU run step by step,
//    because their kernels have not yet run on a GPU (they become the default
//    once their GPU tests pass);
//  - "1": every persistent kernel the plan allows, forward (block-local, and
//    grid for GRU/LSTM) and backward (block-local);
//  - "0": none: the step kernels only.
enum class PersistentMode { Off, Default, All };
PersistentMode persistent_mode() {
  const char* v = std::getenv("RECUR_PERSISTENT");
  if (v && std::strcmp(v, "1") == 0) return PersistentMode::All;
  if (v && std::strcmp(v, "0") == 0) return PersistentMode::Off;
  return PersistentMode::Default;
}

// Makes `index` current for the scope, restoring the caller's device after.
class DeviceScope {
 public:
  explicit DeviceScope(int index) {
    RECUR_CUDA_CHECK(cudaGetDevice(&previous_));
    if (previous_ != index) RECUR_CUDA_CHECK(cudaSetDevice(index));
  }
  ~DeviceScope() {
    int now = -1;
    if (cudaGetDevice(&now) == cudaSuccess && now != previous_) (void)cudaSetDevice(previous_);
  }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int previous_ = 0;
};

class CudaRawAllocator final : public RawAllocator {
 public:
  explicit CudaRawAllocator(int index) : index_(index) {}
  // Both run with this allocator's device current, restore the caller's, and
  // clear any error they leave so that it is not blamed on a later launch.
  void* allocate(std::size_t bytes) noexcept override {
    int previous = 0;
    void* p = nullptr;
    if (cudaGetDevice(&previous) == cudaSuccess && cudaSetDevice(index_) == cudaSuccess) {
      if (cudaMalloc(&p, bytes) != cudaSuccess) p = nullptr;
      (void)cudaSetDevice(previous);
    }
    (void)cudaGetLastError();
    return p;
  }
  void deallocate(void* p, std::size_t) noexcept override {
    int previous = 0;
    if (cudaGetDevice(&previous) == cudaSuccess && cudaSetDevice(index_) == cudaSuccess) {
      (void)cudaFree(p);
      (void)cudaSetDevice(previous);
    }
    (void)cudaGetLastError();
  }
  std::string free_memory_note() const override {
    std::size_t free = 0, total = 0;
    int previous = 0;
    bool ok = cudaGetDevice(&previous) == cudaSuccess && cudaSetDevice(index_) == cudaSuccess &&
              cudaMemGetInfo(&free, &total) == cudaSuccess;
    (void)cudaSetDevice(previous);
    (void)cudaGetLastError();
    if (!ok) return {};
    return "the device reports " + format_bytes(free) + " free of " + format_bytes(total);
  }

 private:
  int index_;
};

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int index)
      : index_(index),
        allocator_("cuda:" + std::to_string(index), std::make_unique<CudaRawAllocator>(index)) {
    DeviceScope scope(index_);
    cudaDeviceProp prop{};
    RECUR_CUDA_CHECK(cudaGetDeviceProperties(&prop, index_));
    name_ = prop.name;
    sm_count_ = prop.multiProcessorCount;
    cc_ = prop.major * 10 + prop.minor;
    limits_ = device_limits(index_);
    // Fail here, clearly, rather than at the first launch when this build
    // holds no kernels for the GPU (e.g. an sm_75 GPU with the default archs).
    const cudaError_t image = kc::probe_kernel_image();
    (void)cudaGetLastError();
    RECUR_CHECK(image == cudaSuccess, Device, "cuda:", index_, " (", name_,
                ", compute capability ", prop.major, ".", prop.minor,
                ") cannot run this build's kernels (", cudaGetErrorName(image),
                "); rebuild with -DCMAKE_CUDA_ARCHITECTURES=", cc_, " or =native");
    RECUR_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    RECUR_CUBLAS_CHECK(cublasCreate(&cublas_));
    RECUR_CUBLAS_CHECK(cublasSetStream(cublas_, stream_));
    RECUR_CUBLAS_CHECK(cublasSetMathMode(cublas_, CUBLAS_DEFAULT_MATH));
    RECUR_CUBLAS_CHECK(cublasSetPointerMode(cublas_, CUBLAS_POINTER_MODE_HOST));
    lt_gemm_ = std::make_unique<LtGemm>("cuda:" + std::to_string(index_));
  }
  // Never destroyed (see backend.cpp), so no teardown of stream and handle.

  Device device() const override { return Device::cuda(index_); }

  std::string describe() const override {
    return device().str() + ": " + name_ + ", " + std::to_string(sm_count_) +
           " SMs, compute capability " + std::to_string(cc_ / 10) + "." + std::to_string(cc_ % 10);
  }

  Support supports(const OpQuery& q) const override {
    if (is_sequence(q.op)) return persistent_support(q);
    if (q.dtype == DType::f32) return Support::yes();
    if ((q.op == OpKind::Fill || q.op == OpKind::Copy || q.op == OpKind::LengthBuckets) &&
        q.dtype == DType::i32)
      return Support::yes();
    if (q.dtype == DType::f64)
      return Support::no("float64 runs on the CPU backend only (it serves reference checks)");
    return Support::no(std::string(dtype_name(q.dtype)) + " " + op_kind_name(q.op) +
                       " is not implemented on the CUDA backend yet");
  }

  CachingAllocator& allocator() override { return allocator_; }
  void* native_stream() override { return stream_; }

  void synchronize() override {
    DeviceScope scope(index_);
    RECUR_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device,
                  std::size_t n) override {
    DeviceScope scope(index_);
    // Uploads go through pinned staging buffers: the host returns as soon as
    // the bytes are staged, and the copy runs behind the queued work (a
    // training loop's next batch while the current step runs).
    if (src_device.is_cpu() && !dst_device.is_cpu() && upload_staged(dst, src, n)) return;
    // Unified addressing lets the runtime tell host from device pointers.
    RECUR_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDefault, stream_));
    // Host memory on either side must be done with when we return: a host
    // destination is read next, and the CUDA docs do not promise that a
    // pageable host source has been consumed when cudaMemcpyAsync returns.
    if (dst_device.is_cpu() || src_device.is_cpu()) RECUR_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  std::unique_ptr<HostRead> read_async(const std::vector<Tensor>& tensors) override {
    DeviceScope scope(index_);
    std::size_t bytes = 0;
    for (const Tensor& t : tensors) bytes += t.nbytes();
    std::unique_ptr<PinnedRead> r = acquire_read(bytes);
    if (!r) return Backend::read_async(tensors);  // no pinned memory: read synchronously
    std::size_t off = 0;
    for (const Tensor& t : tensors) {
      r->parts.push_back({t.dtype(), std::size_t(t.numel())});
      RECUR_CUDA_CHECK(cudaMemcpyAsync(static_cast<char*>(r->host()) + off, t.raw_data(), t.nbytes(),
                                       cudaMemcpyDeviceToHost, stream_));
      off += t.nbytes();
    }
    RECUR_CUDA_CHECK(cudaEventRecord(r->done(), stream_));
    return r;
  }

  void copy2d(void* dst, std::size_t dst_pitch, const void* src, std::size_t src_pitch,
              std::size_t width, std::size_t rows) override {
    DeviceScope scope(index_);
    RECUR_CUDA_CHECK(cudaMemcpy2DAsync(dst, dst_pitch, src, src_pitch, width, rows,
                                       cudaMemcpyDeviceToDevice, stream_));
  }

  void fill(const Tensor& y, double value) override {
    DeviceScope scope(index_);
    if (y.dtype() == DType::i32)
      kc::fill(y.data<std::int32_t>(), y.numel(), std::int32_t(value), stream_);
    else
      kc::fill(y.data<float>(), y.numel(), float(value), stream_);
  }

  void gemm(const GemmCall& g) override {
    DeviceScope scope(index_);
    // Small float32 GEMMs (the per-step recurrent products) run through
    // cuBLASLt with an algorithm that does not split K: one launch, no
    // split-K reduce (lt_gemm.h has the rule; RECUR_CUBLASLT=0 turns it off).
    if (lt_gemm_->run(g, stream_)) return;
    // Everything else, and those without such an algorithm: cuBLAS.
    // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T, so
    // cuBLAS gets B first and the dimensions swapped; no data moves.
    const float alpha = float(g.alpha), beta = float(g.beta);
    const cublasOperation_t opa = g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t opb = g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    RECUR_CUBLAS_CHECK(cublasSgemmStridedBatched(
        cublas_, opb, opa, int(g.n), int(g.m), int(g.k), &alpha, g.b.data<float>(), int(g.ldb),
        g.stride_b, g.a.data<float>(), int(g.lda), g.stride_a, &beta, g.c.data<float>(),
        int(g.ldc), g.stride_c, int(g.batch)));
  }

  void unary(UnaryOp op, const Tensor& x, const Tensor& y) override {
    DeviceScope scope(index_);
    kc::unary(op, x.data<float>(), y.data<float>(), x.numel(), stream_);
  }

  void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& y) override {
    DeviceScope scope(index_);
    kc::binary(op, a.data<float>(), b.data<float>(), b.numel(), y.data<float>(), a.numel(),
               stream_);
  }

  void reduce(ReduceOp op, const Tensor& x, std::int64_t outer, std::int64_t n,
              std::int64_t inner, const Tensor& y) override {
    DeviceScope scope(index_);
    // The workspace returns to the cache when this function ends, before the
    // kernels run; the one stream orders any reuse after them.
    const std::int64_t ws = kc::reduce_workspace_size(outer, n, inner);
    Tensor workspace = ws ? Tensor::empty({ws}, DType::f64, device()) : Tensor();
    kc::reduce(op, x.data<float>(), outer, n, inner, y.data<float>(),
               ws ? static_cast<double*>(workspace.raw_data()) : nullptr, stream_);
  }

  void lstm_step(const LstmStep& s) override {
    DeviceScope scope(index_);
    kc::lstm_step(detail::lstm_args<float>(s), stream_);
  }
  void gru_step(const GruStep& s) override {
    DeviceScope scope(index_);
    kc::gru_step(detail::gru_args<float>(s), stream_);
  }
  void rnn_step(const RnnStep& s) override {
    DeviceScope scope(index_);
    kc::rnn_step(s.activation, detail::rnn_args<float>(s), stream_);
  }
  void transpose01(const Tensor& x, bool rev_a, bool rev_b, const Tensor& y) override {
    DeviceScope scope(index_);
    kc::transpose01(x.data<float>(), x.dim(0), x.dim(1), x.dim(2), rev_a, rev_b, y.data<float>(),
                    stream_);
  }
  void gru_rb_gates(const GruResetBeforeGates& s) override {
    DeviceScope scope(index_);
    kc::gru_rb_gates(detail::gru_rb_gates_args<float>(s), stream_);
  }
  void gru_rb_output(const GruResetBeforeOutput& s) override {
    DeviceScope scope(index_);
    kc::gru_rb_output(detail::gru_rb_out_args<float>(s), stream_);
  }
  void gru_rb_back_n(const GruResetBeforeBackN& s) override {
    DeviceScope scope(index_);
    kc::gru_rb_back_n(detail::gru_rb_back_n_args<float>(s), stream_);
  }
  void gru_rb_back_r(const GruResetBeforeBackR& s) override {
    DeviceScope scope(index_);
    kc::gru_rb_back_r(detail::gru_rb_back_r_args<float>(s), stream_);
  }
  void im2col1d(const kernels::Conv1dGeometry& g, const Tensor& x, const Tensor& cols) override {
    DeviceScope scope(index_);
    kc::im2col1d(g, x.data<float>(), cols.data<float>(), stream_);
  }
  void col2im1d(const kernels::Conv1dGeometry& g, const Tensor& dcols, const Tensor& dx) override {
    DeviceScope scope(index_);
    kc::col2im1d(g, dcols.data<float>(), dx.data<float>(), stream_);
  }
  void lstm_step_backward(const LstmStepBackward& s) override {
    DeviceScope scope(index_);
    kc::lstm_step_backward(detail::lstm_back_args<float>(s), stream_);
  }
  void gru_step_backward(const GruStepBackward& s) override {
    DeviceScope scope(index_);
    kc::gru_step_backward(detail::gru_back_args<float>(s), stream_);
  }
  void rnn_step_backward(const RnnStepBackward& s) override {
    DeviceScope scope(index_);
    kc::rnn_step_backward(s.activation, detail::rnn_back_args<float>(s), stream_);
  }

  // Workspaces below go back to the cache when these functions return, before
  // the kernels run; the one stream orders any reuse after them (as reduce).
  void loss(const LossCall& c) override {
    DeviceScope scope(index_);
    Tensor ws = Tensor::empty({kc::loss_workspace_size()}, DType::f64, device());
    kc::loss(c.kind, detail::loss_args<float>(c), c.loss.data<float>(),
             static_cast<double*>(ws.raw_data()), stream_);
  }

  void sum_squares(const Tensor& x, const Tensor& out) override {
    DeviceScope scope(index_);
    Tensor ws = Tensor::empty({kc::sum_squares_workspace_size()}, DType::f64, device());
    kc::sum_squares(x.data<float>(), x.numel(), out.data<double>(),
                    static_cast<double*>(ws.raw_data()), stream_);
  }

  void clip(const Tensor& g, const Tensor& sq_sum, double clipnorm, double clipvalue) override {
    DeviceScope scope(index_);
    kc::clip(g.data<float>(), g.numel(), sq_sum.defined() ? sq_sum.data<double>() : nullptr,
             float(clipnorm), float(clipvalue), stream_);
  }

  void optimizer_step(const OptimizerStep& s) override {
    DeviceScope scope(index_);
    kc::optimizer_step(s.kind, detail::optimizer_args<float>(s), stream_);
  }

  void pool1d(const Pool1dCall& c) override {
    DeviceScope scope(index_);
    kc::pool_forward(c.kind, detail::pool_args<float>(c), stream_);
  }
  void pool1d_backward(const Pool1dCall& c) override {
    DeviceScope scope(index_);
    kc::pool_backward(c.kind, detail::pool_args<float>(c), stream_);
  }
  void embedding(const Tensor& w, const Tensor& ids, const Tensor& y) override {
    DeviceScope scope(index_);
    kc::embedding_forward(detail::embedding_args<float>(w, ids, y, {}, {}), stream_);
  }
  void embedding_backward(const Tensor& ids, const Tensor& dy, const Tensor& dw) override {
    DeviceScope scope(index_);
    kc::embedding_backward(detail::embedding_args<float>({}, ids, {}, dy, dw), stream_);
  }
  void embedding_mask(const Tensor& ids, const Tensor& mask) override {
    DeviceScope scope(index_);
    kc::embedding_mask(ids.data<std::int32_t>(), mask.data<float>(), ids.numel(), stream_);
  }
  void activation(Activation act, const Tensor& x, const Tensor& y, std::int64_t cols) override {
    DeviceScope scope(index_);
    kc::activation(act, x.data<float>(), y.data<float>(), x.numel() / cols, cols, stream_);
  }
  void activation_backward(Activation act, const Tensor& y, const Tensor& dy, const Tensor& dx,
                           std::int64_t cols) override {
    DeviceScope scope(index_);
    kc::activation_backward(act, y.data<float>(), dy.data<float>(), dx.data<float>(),
                            y.numel() / cols, cols, stream_);
  }
  void dropout(const Tensor& x, double rate, std::uint64_t seed, const Tensor& y,
               const Tensor& mask) override {
    DeviceScope scope(index_);
    kc::dropout(detail::dropout_args<float>(x, rate, seed, y, mask), stream_);
  }

  void length_buckets(const LengthBucketsCall& c) override {
    DeviceScope scope(index_);
    // The workspace returns to the cache before the kernels run; the one
    // stream orders any reuse after them (as in reduce).
    const std::size_t bytes = kc::length_buckets_workspace(c.order.numel(), c.window, c.sort);
    Tensor ws = Tensor::empty({std::int64_t((bytes + 7) / 8)}, DType::f64, device());
    kc::length_buckets(detail::bucket_args(c), ws.raw_data(), bytes, stream_);
  }

  void gru_sequence(const GruSequence& s) override {
    DeviceScope scope(index_);
    const std::int64_t B = s.xproj.dim(1), H = s.w_hh.dim(1);
    kernels::GruSequenceArgs<float> a = detail::gru_sequence_args<float>(s);
    const kernels::PersistentPlan p = plan({OpKind::GruSequence, DType::f32, B, H});
    // The grid kernel's hproj scratch; back in the cache when this returns,
    // reused only after the kernel (one stream).
    const Tensor hproj = p.regime == kernels::PersistentRegime::Grid ? Tensor::empty({B, 3 * H}, DType::f32, device())
                                                                     : Tensor();
    a.hproj = detail::opt_out<float>(hproj);
    kc::gru_sequence_persistent(a, p, stream_);
  }

  void lstm_sequence(const LstmSequence& s) override {
    DeviceScope scope(index_);
    const std::int64_t B = s.xproj.dim(1), H = s.w_hh.dim(1);
    kernels::LstmSequenceArgs<float> a = detail::lstm_sequence_args<float>(s);
    const kernels::PersistentPlan p = plan({OpKind::LstmSequence, DType::f32, B, H});
    const Tensor hproj = p.regime == kernels::PersistentRegime::Grid ? Tensor::empty({B, 4 * H}, DType::f32, device())
                                                                     : Tensor();
    a.hproj = detail::opt_out<float>(hproj);
    kc::lstm_sequence_persistent(a, p, stream_);
  }

  void rnn_sequence(const RnnSequence& s) override {
    DeviceScope scope(index_);
    const std::int64_t B = s.xproj.dim(1), H = s.w_hh.dim(1);
    kc::rnn_sequence_persistent(detail::rnn_sequence_args<float>(s), plan({OpKind::RnnSequence, DType::f32, B, H}),
                                stream_);
  }

  void gru_rb_sequence(const GruRbSequence& s) override {
    DeviceScope scope(index_);
    const std::int64_t B = s.xproj.dim(1), H = s.w_hh.dim(1);
    kc::gru_rb_sequence_persistent(detail::gru_rb_sequence_args<float>(s),
                                   plan({OpKind::GruRbSequence, DType::f32, B, H}), stream_);
  }

  void rnn_sequence_backward(const RnnSequenceBackward& s) override {
    DeviceScope scope(index_);
    const std::int64_t T = s.dgates.dim(0), B = s.dgates.dim(1), H = s.w_hh.dim(1);
    kc::rnn_sequence_backward_persistent(detail::rnn_sequence_back_args<float>(s),
                                         plan({OpKind::RnnSequenceBackward, DType::f32, B, H}), stream_);
    if (s.db.defined()) column_sums(s.dgates, T * B, H, s.db);
  }

  void gru_rb_sequence_backward(const GruRbSequenceBackward& s) override {
    DeviceScope scope(index_);
    const std::int64_t T = s.saved.dim(0), B = s.saved.dim(1), H = s.w_hh.dim(1);
    kc::gru_rb_sequence_backward_persistent(detail::gru_rb_sequence_back_args<float>(s),
                                            plan({OpKind::GruRbSequenceBackward, DType::f32, B, H}), stream_);
    if (s.db_ih.defined()) {
      column_sums(s.dgates_x, T * B, 3 * H, s.db_ih);
      column_sums(s.dgates_rz, T * B, 2 * H, s.db_hh.slice(0, 2 * H));
      column_sums(s.dgates_n, T * B, H, s.db_hh.slice(2 * H, 3 * H));
    }
  }

  // Backward passes: the persistent kernel for dh, dc and the gate gradients
  // of every step; the bias gradients as column sums of those over the T B
  // rows (a parallel reduction), as the CPU twin's sums. The weight
  // gradients are the caller's GEMMs.
  void gru_sequence_backward(const GruSequenceBackward& s) override {
    DeviceScope scope(index_);
    const std::int64_t T = s.saved.dim(0), B = s.saved.dim(1), H = s.w_hh.dim(1);
    const kernels::PersistentPlan p = plan({OpKind::GruSequenceBackward, DType::f32, B, H});
    kc::gru_sequence_backward_persistent(detail::gru_sequence_back_args<float>(s), p, stream_);
    if (s.db_ih.defined()) {
      column_sums(s.dgates_x, T * B, 3 * H, s.db_ih);
      column_sums(s.dgates_h, T * B, 3 * H, s.db_hh);
    }
  }

  void lstm_sequence_backward(const LstmSequenceBackward& s) override {
    DeviceScope scope(index_);
    const std::int64_t T = s.saved.dim(0), B = s.saved.dim(1), H = s.w_hh.dim(1);
    const kernels::PersistentPlan p = plan({OpKind::LstmSequenceBackward, DType::f32, B, H});
    kc::lstm_sequence_backward_persistent(detail::lstm_sequence_back_args<float>(s), p, stream_);
    if (s.db.defined()) column_sums(s.dgates, T * B, 4 * H, s.db);
  }

 private:
  // ---- pinned host memory: upload staging and asynchronous reads ----
  // Staging: kStagingSlots buffers of kStagingBytes, filled in turn. Uploads
  // are packed into the current slot (256-byte aligned) until it is full,
  // then the next slot is taken once the event after its last copy has
  // passed; an upload bigger than the room left goes through the slots in
  // pieces. So the host waits only when four slots' worth of uploads are
  // still queued behind the device's work. If pinned memory cannot be had,
  // staging is off for good and uploads are synchronous.
  static constexpr int kStagingSlots = 4;
  static constexpr std::size_t kStagingBytes = std::size_t(4) << 20;
  static constexpr std::size_t kStagingAlign = 256;
  struct Staging {
    void* host = nullptr;
    cudaEvent_t done = nullptr;
    std::size_t used = 0;  // bytes handed out since the slot was last taken
    bool pending = false;  // `done` was recorded after a copy from it
  };

  // Makes staging_[i] usable (allocated, its previous copies finished, empty).
  // False when its pinned memory cannot be had.
  bool take_slot(int i) {
    Staging& s = staging_[i];
    if (!s.host) {
      if (!s.done) RECUR_CUDA_CHECK(cudaEventCreateWithFlags(&s.done, cudaEventDisableTiming));
      if (cudaHostAlloc(&s.host, kStagingBytes, cudaHostAllocDefault) != cudaSuccess) {
        s.host = nullptr;
        (void)cudaGetLastError();
        return false;
      }
    }
    if (s.pending) RECUR_CUDA_CHECK(cudaEventSynchronize(s.done));
    s.pending = false;
    s.used = 0;
    return true;
  }

  // False when staging is off (the caller copies synchronously).
  bool upload_staged(void* dst, const void* src, std::size_t n) {
    std::lock_guard<std::mutex> lock(staging_mutex_);
    if (staging_off_) return false;
    for (std::size_t off = 0; off < n;) {
      Staging* s = &staging_[next_staging_];
      if (!s->host || s->used >= kStagingBytes || (s->used > 0 && n - off > kStagingBytes - s->used)) {
        // The current slot is full, or the rest does not fit: the next one.
        if (s->host && s->used > 0) next_staging_ = (next_staging_ + 1) % kStagingSlots;
        if (!take_slot(next_staging_)) {
          staging_off_ = true;
          if (off == 0) return false;
          return upload_rest(dst, src, n, off);
        }
        s = &staging_[next_staging_];
      }
      const std::size_t piece = std::min(kStagingBytes - s->used, n - off);
      char* host = static_cast<char*>(s->host) + s->used;
      std::memcpy(host, static_cast<const char*>(src) + off, piece);
      RECUR_CUDA_CHECK(cudaMemcpyAsync(static_cast<char*>(dst) + off, host, piece, cudaMemcpyHostToDevice, stream_));
      RECUR_CUDA_CHECK(cudaEventRecord(s->done, stream_));
      s->pending = true;
      s->used += (piece + kStagingAlign - 1) / kStagingAlign * kStagingAlign;
      off += piece;
    }
    return true;
  }
  // The rest of an upload whose staging failed part way: synchronously.
  bool upload_rest(void* dst, const void* src, std::size_t n, std::size_t off) {
    RECUR_CUDA_CHECK(cudaMemcpyAsync(static_cast<char*>(dst) + off, static_cast<const char*>(src) + off, n - off,
                                     cudaMemcpyHostToDevice, stream_));
    RECUR_CUDA_CHECK(cudaStreamSynchronize(stream_));
    return true;
  }

  // A read into pinned memory, returned to the backend's pool when dropped.
  struct PinnedBlock {
    void* host = nullptr;
    std::size_t bytes = 0;
    cudaEvent_t done = nullptr;
  };
  class PinnedRead final : public HostRead {
   public:
    PinnedRead(CudaBackend& owner, PinnedBlock b) : owner_(owner), block_(b) {}
    ~PinnedRead() override { owner_.release_read(block_); }
    void* host() const { return block_.host; }
    cudaEvent_t done() const { return block_.done; }
    const std::vector<double>& wait() override {
      if (!ready_) {
        RECUR_CUDA_CHECK(cudaEventSynchronize(block_.done));
        std::size_t off = 0;
        for (const auto& [dt, n] : parts) {
          const char* p = static_cast<const char*>(block_.host) + off;
          for (std::size_t i = 0; i < n; ++i) {
            if (dt == DType::f32) values_.push_back(double(reinterpret_cast<const float*>(p)[i]));
            else if (dt == DType::f64) values_.push_back(reinterpret_cast<const double*>(p)[i]);
            else values_.push_back(double(reinterpret_cast<const std::int32_t*>(p)[i]));
          }
          off += n * dtype_size(dt);
        }
        ready_ = true;
      }
      return values_;
    }
    std::vector<std::pair<DType, std::size_t>> parts;  // dtype and element count per tensor

   private:
    CudaBackend& owner_;
    PinnedBlock block_;
    std::vector<double> values_;
    bool ready_ = false;
  };

  // The smallest free block that holds `bytes`, else a new one (sizes in
  // powers of two from 256 bytes, so blocks are reused across similar reads).
  std::unique_ptr<PinnedRead> acquire_read(std::size_t bytes) {
    std::lock_guard<std::mutex> lock(read_mutex_);
    std::size_t best = free_reads_.size();
    for (std::size_t i = 0; i < free_reads_.size(); ++i)
      if (free_reads_[i].bytes >= bytes && (best == free_reads_.size() || free_reads_[i].bytes < free_reads_[best].bytes))
        best = i;
    if (best < free_reads_.size()) {
      const PinnedBlock b = free_reads_[best];
      free_reads_.erase(free_reads_.begin() + std::ptrdiff_t(best));
      return std::make_unique<PinnedRead>(*this, b);
    }
    PinnedBlock b;
    b.bytes = 256;
    while (b.bytes < bytes) b.bytes *= 2;
    RECUR_CUDA_CHECK(cudaEventCreateWithFlags(&b.done, cudaEventDisableTiming));
    if (cudaHostAlloc(&b.host, b.bytes, cudaHostAllocDefault) != cudaSuccess) {
      (void)cudaGetLastError();
      (void)cudaEventDestroy(b.done);
      return nullptr;
    }
    return std::make_unique<PinnedRead>(*this, b);
  }
  // Called by a PinnedRead's destructor: its copy may still be in flight, so
  // a later read that takes the block records a new event after it (one
  // stream). Beyond kMaxFreeReads free blocks the block is freed once its copy
  // has finished.
  static constexpr std::size_t kMaxFreeReads = 64;
  void release_read(const PinnedBlock& b) noexcept {
    std::lock_guard<std::mutex> lock(read_mutex_);
    if (free_reads_.size() < kMaxFreeReads) {
      free_reads_.push_back(b);
      return;
    }
    (void)cudaEventSynchronize(b.done);
    (void)cudaFreeHost(b.host);
    (void)cudaEventDestroy(b.done);
    (void)cudaGetLastError();
  }

  static bool is_sequence(OpKind op) {
    switch (op) {
      case OpKind::GruSequence: case OpKind::LstmSequence: case OpKind::RnnSequence: case OpKind::GruRbSequence:
      case OpKind::GruSequenceBackward: case OpKind::LstmSequenceBackward: case OpKind::RnnSequenceBackward:
      case OpKind::GruRbSequenceBackward: return true;
      default: return false;
    }
  }
  static bool is_backward(OpKind op) {
    return op == OpKind::GruSequenceBackward || op == OpKind::LstmSequenceBackward ||
           op == OpKind::RnnSequenceBackward || op == OpKind::GruRbSequenceBackward;
  }
  static bool is_reset_before(OpKind op) { return op == OpKind::GruRbSequence || op == OpKind::GruRbSequenceBackward; }
  static kernels::RnnCellKind cell_of(OpKind op) {
    if (op == OpKind::LstmSequence || op == OpKind::LstmSequenceBackward) return kernels::RnnCellKind::LSTM;
    if (op == OpKind::RnnSequence || op == OpKind::RnnSequenceBackward) return kernels::RnnCellKind::SimpleRNN;
    return kernels::RnnCellKind::GRU;
  }

  // y[cols] = the sums of x's [rows, cols] columns (a parallel reduction).
  void column_sums(const Tensor& x, std::int64_t rows, std::int64_t cols, const Tensor& y) {
    const std::int64_t ws = kc::reduce_workspace_size(1, rows, cols);
    const Tensor workspace = ws ? Tensor::empty({ws}, DType::f64, device()) : Tensor();
    kc::reduce(ReduceOp::Sum, x.data<float>(), 1, rows, cols, y.data<float>(),
               ws ? static_cast<double*>(workspace.raw_data()) : nullptr, stream_);
  }

  // The planner's answer for a whole pass on this GPU; with RECUR_LOG=debug
  // it is printed, once per distinct layer shape and direction.
  kernels::PersistentPlan plan(const OpQuery& q) const {
    const kernels::RnnCellKind cell = cell_of(q.op);
    // No cluster kernel yet: plan as for a GPU without clusters, so that what
    // would be a cluster becomes a grid (a grid barrier over a few blocks).
    kernels::DeviceLimits d = limits_;
    d.max_cluster_size = 1;
    kernels::PersistentPlan p =
        kernels::plan_persistent({cell, q.hidden, q.batch, q.dtype, is_backward(q.op), is_reset_before(q.op)}, d);
    if (log_enabled(LogLevel::Debug)) {
      std::lock_guard<std::mutex> lock(log_mutex_);
      if (logged_.insert({int(q.op), q.hidden, q.batch, int(q.dtype)}).second)
        log_message(LogLevel::Debug, device().str() + " " + op_kind_name(q.op) + ": " + p.describe());
    }
    return p;
  }

  Support persistent_support(const OpQuery& q) const {
    if (q.batch_major)
      return Support::no("the CUDA backend's whole passes write ys and read dys time-major ([T, B, H]) "
                         "only");
    if (q.fused_input)
      return Support::no("the CUDA backend's whole passes take xproj (one cuBLAS GEMM over all steps), "
                         "not the input itself");
    const PersistentMode mode = persistent_mode();
    const bool backward = is_backward(q.op);
    if (mode == PersistentMode::Off)
      return Support::no("RECUR_PERSISTENT=0: the CUDA backend runs recurrent layers step by step "
                         "(step kernels)");
    if (backward && mode == PersistentMode::Default)
      return Support::no("the CUDA backend runs the backward pass step by step (step kernels); the "
                         "persistent backward kernel is opt-in (RECUR_PERSISTENT=1) until it has "
                         "passed its tests on a GPU");
    if ((q.op == OpKind::RnnSequence || q.op == OpKind::GruRbSequence) && mode == PersistentMode::Default)
      return Support::no(std::string("the CUDA backend runs ") + op_kind_name(q.op) + " step by step (step "
                         "kernels); its persistent kernel is opt-in (RECUR_PERSISTENT=1) until it has passed "
                         "its tests on a GPU");
    if (q.dtype != DType::f32)
      return Support::no(std::string(dtype_name(q.dtype)) + " runs on the CPU backend only; the "
                         "persistent kernels are float32");
    if (q.batch <= 0 || q.hidden <= 0) return Support::yes();  // empty: nothing runs
    const kernels::PersistentPlan p = plan(q);
    if (!p.persistent()) return Support::no("persistent kernels: " + p.describe());
    if (mode == PersistentMode::Default && p.regime != kernels::PersistentRegime::BlockLocal) {
      // The grid kernel is measured (H100): faster than the step kernels at
      // a batch of one or two, slower beyond. The cost model fitted to those
      // runs decides, on the architecture it was measured on.
      const kernels::PersistentQuery pq{cell_of(q.op), q.hidden, q.batch, q.dtype, backward,
                                        is_reset_before(q.op)};
      const kernels::PersistentChoice c =
          kernels::choose_persistent(pq, p, kernels::PersistentCostModel::h100_fp32(), sm_count_, false);
      if (cc_ < 90)
        return Support::no("the persistent " + std::string(kernels::persistent_regime_name(p.regime)) +
                           " regime is opt-in (RECUR_PERSISTENT=1) below compute capability 9.0: its cost "
                           "was measured on an H100 only; the plan was " + p.describe());
      if (!c.use)
        return Support::no(c.reason + "; opt in with RECUR_PERSISTENT=1; the plan was " + p.describe());
    }
    if (backward || is_reset_before(q.op)) return Support::yes();  // block-local: the planner's layout is the kernel's
    DeviceScope scope(index_);
    const std::string why = kc::persistent_plan_check(cell_of(q.op), p);
    if (why.empty()) return Support::yes();
    return Support::no(why + "; the plan was " + p.describe());
  }

  int index_;
  CachingAllocator allocator_;
  std::string name_;
  int sm_count_ = 0, cc_ = 0;
  kernels::DeviceLimits limits_;
  std::unique_ptr<LtGemm> lt_gemm_;  // small GEMMs without split-K (gemm())
  mutable std::mutex log_mutex_;
  mutable std::set<std::tuple<int, std::int64_t, std::int64_t, int>> logged_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  std::mutex staging_mutex_, read_mutex_;
  Staging staging_[kStagingSlots];
  int next_staging_ = 0;
  bool staging_off_ = false;
  std::vector<PinnedBlock> free_reads_;
};

}  // namespace

std::unique_ptr<Backend> make_backend(int index) { return std::make_unique<CudaBackend>(index); }

}  // namespace cuda_host

namespace cuda_detail {
const char* cublas_status_name(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
  }
  return "unknown cuBLAS status";
}
}  // namespace cuda_detail
}  // namespace recur
