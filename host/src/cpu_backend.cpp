// The CPU backend: OpenBLAS for GEMM, recur's OpenMP twins (kernels/cpu) for
// everything else. float32 is the working type; float64 serves reference
// computations and finite-difference checks.
#include <cstdlib>
#include <cstring>
#include <new>
#include <thread>

#include "backends.h"
#include "recur/host/ops.h"
#include "recur/kernels/cpu.h"
#include "seq_args.h"
#include "step_args.h"

namespace recur {
namespace {

namespace kc = kernels::cpu;

class HostRawAllocator final : public RawAllocator {
 public:
  void* allocate(std::size_t bytes) noexcept override {
    // 64-byte alignment: cache lines and AVX-512 loads.
    return ::operator new(bytes, std::align_val_t(64), std::nothrow);
  }
  void deallocate(void* p, std::size_t) noexcept override {
    ::operator delete(p, std::align_val_t(64));
  }
  bool host_memory() const override { return true; }
};

// Calls f with a typed null pointer selecting float or double.
template <class F>
void dispatch_float(DType t, F&& f) {
  switch (t) {
    case DType::f32: return f(static_cast<float*>(nullptr));
    case DType::f64: return f(static_cast<double*>(nullptr));
    default: RECUR_THROW(Internal, "CPU backend dispatched on ", dtype_name(t));
  }
}

class CpuBackend final : public Backend {
 public:
  CpuBackend() : allocator_("cpu", std::make_unique<HostRawAllocator>()) {}

  Device device() const override { return Device::cpu(); }

  std::string describe() const override {
    return "cpu: " + std::to_string(kc::num_threads()) + " threads (OpenMP), " + kc::blas_info();
  }

  Support supports(const OpQuery& q) const override {
    if (q.fused_input && q.op != OpKind::GruSequence && q.op != OpKind::LstmSequence &&
        q.op != OpKind::RnnSequence)
      return Support::no(std::string(op_kind_name(q.op)) + " takes xproj, not the input itself");
    if (q.dtype == DType::f32 || q.dtype == DType::f64) return Support::yes();
    if ((q.op == OpKind::Fill || q.op == OpKind::Copy || q.op == OpKind::LengthBuckets) &&
        q.dtype == DType::i32)
      return Support::yes();
    return Support::no(std::string(dtype_name(q.dtype)) + " " + op_kind_name(q.op) +
                       " is not implemented on the CPU backend");
  }

  CachingAllocator& allocator() override { return allocator_; }
  void synchronize() override {}

  void copy_bytes(void* dst, Device, const void* src, Device, std::size_t n) override {
    std::memmove(dst, src, n);
  }

  void copy2d(void* dst, std::size_t dst_pitch, const void* src, std::size_t src_pitch,
              std::size_t width, std::size_t rows) override {
    auto* d = static_cast<char*>(dst);
    const auto* s = static_cast<const char*>(src);
    for (std::size_t r = 0; r < rows; ++r) std::memmove(d + r * dst_pitch, s + r * src_pitch, width);
  }

  void fill(const Tensor& y, double value) override {
    switch (y.dtype()) {
      case DType::f32: return kc::fill(y.data<float>(), y.numel(), float(value));
      case DType::f64: return kc::fill(y.data<double>(), y.numel(), value);
      case DType::i32:
        return kc::fill(y.data<std::int32_t>(), y.numel(), std::int32_t(value));
      default: RECUR_THROW(Internal, "fill on ", dtype_name(y.dtype()));
    }
  }

  void gemm(const GemmCall& g) override {
    dispatch_float(g.c.dtype(), [&](auto* tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      kc::gemm<T>(g.trans_a, g.trans_b, g.m, g.n, g.k, T(g.alpha), g.a.data<T>(), g.lda,
                  g.stride_a, g.b.data<T>(), g.ldb, g.stride_b, T(g.beta), g.c.data<T>(), g.ldc,
                  g.stride_c, g.batch);
    });
  }

  void unary(UnaryOp op, const Tensor& x, const Tensor& y) override {
    dispatch_float(x.dtype(), [&](auto* tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      kc::unary<T>(op, x.data<T>(), y.data<T>(), x.numel());
    });
  }

  void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& y) override {
    dispatch_float(a.dtype(), [&](auto* tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      kc::binary<T>(op, a.data<T>(), b.data<T>(), b.numel(), y.data<T>(), a.numel());
    });
  }

  void reduce(ReduceOp op, const Tensor& x, std::int64_t outer, std::int64_t n,
              std::int64_t inner, const Tensor& y) override {
    dispatch_float(x.dtype(), [&](auto* tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      kc::reduce<T>(op, x.data<T>(), outer, n, inner, y.data<T>());
    });
  }

  void lstm_step(const LstmStep& s) override {
    dispatch_float(s.h.dtype(), [&](auto* tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      kc::lstm_step(detail::lstm_args<T>(s));
    });
  }

  void gru_step(const GruStep& s) override {
    dispatch_float(s.h.dtype(), [&](auto* tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      kc::gru_step(detail::gru_args<T>(s));
    });
  }

  void rnn_step(const RnnStep& s) override {
    dispatch_float(s.h.dtype(), [&](auto* tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      kc::rnn_step(s.activation, detail::rnn_args<T>(s));
    });
  }

  void gru_rb_gates(const GruResetBeforeGates& s) override {
    dispatch_float(s.h_in.dtype(), [&](auto* tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      kc::gru_rb_gates(detail::gru_rb_gates_args<T>(s));
    });
  }
  void gru_rb_output(const GruResetBeforeOutput& s) override {
    dispatch_float(s.h.dtype(), [&](auto* tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      kc::gru_rb_output(detail::gru_rb_out_args<T>(s));
    });
  }
  void gru_rb_back_n(const GruResetBeforeBackN& s) override {
    dispatch_float(s.h_prev.dtype(), [&](auto* tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      kc::gru_rb_back_n(detail::gru_rb_back_n_args<T>(s));
    });
  }
  void gru_rb_back_r(const GruResetBeforeBackR& s) override {
    dispatch_float(s.h_in.dtype(), [&](auto* tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      kc::gru_rb_back_r(detail::gru_rb_back_r_args<T>(s));
    });
  }

  // A pass given the input itself projects each step in the pass, except
  // where a float32 pass splits the units over threads (small batches): there
  // one GEMM over all steps projects the input faster than a matrix-vector
  // product per step (GRU H256 B1: 1.7-2.3 ms against 2.2-2.7 ms in
  // alternated bench_rnn runs), so the projection is made here first.
  template <class S>
  static S with_projected_input(const S& s, std::int64_t G) {
    const std::int64_t B = s.x.dim(0), T = s.x.dim(1), I = s.x.dim(2), H = s.w_hh.dim(1);
    if (s.x.dtype() != DType::f32 || kc::rnn_unit_split_threads(B, H, G) == 0) return s;
    S p = s;
    p.xproj = ops::matmul(ops::transpose01(s.x, false, s.x_reversed).reshape({T * B, I}), s.w_ih, false, true)
                  .reshape({T, B, G * H});
    p.x = p.w_ih = Tensor();
    return p;
  }

  void gru_sequence(const GruSequence& given) override {
    const GruSequence s = given.x.defined() ? with_projected_input(given, 3) : given;
    const std::int64_t B = s.x.defined() ? s.x.dim(0) : s.xproj.dim(1), H = s.w_hh.dim(1);
    const Tensor hproj = Tensor::empty({B, 3 * H}, s.hs.dtype(), Device::cpu());
    const Tensor h_work = s.rec_mask.defined() ? Tensor::empty({B, H}, s.hs.dtype(), Device::cpu()) : Tensor();
    const Tensor x_work = s.x.defined() ? Tensor::empty({B, 3 * H}, s.hs.dtype(), Device::cpu()) : Tensor();
    dispatch_float(s.hs.dtype(), [&](auto* tag) {
      using T_ = std::remove_pointer_t<decltype(tag)>;
      kernels::GruSequenceArgs<T_> a = detail::gru_sequence_args<T_>(s);
      a.hproj = hproj.data<T_>();
      a.h_work = detail::opt_out<T_>(h_work);
      a.xproj_work = detail::opt_out<T_>(x_work);
      kc::gru_sequence(a);
    });
  }

  void gru_sequence_backward(const GruSequenceBackward& s) override {
    const std::int64_t B = s.saved.dim(1), H = s.w_hh.dim(1);
    const Tensor work = Tensor::empty({B, H}, s.dh.dtype(), Device::cpu());
    const Tensor rec_work = s.rec_mask.defined() ? Tensor::empty({B, H}, s.dh.dtype(), Device::cpu()) : Tensor();
    const Tensor sums = s.db_ih.defined() ? Tensor::empty({B, 4 * H}, DType::f64, Device::cpu()) : Tensor();
    dispatch_float(s.dh.dtype(), [&](auto* tag) {
      using T_ = std::remove_pointer_t<decltype(tag)>;
      kernels::GruSequenceBackArgs<T_> a = detail::gru_sequence_back_args<T_>(s);
      a.dh_work = work.data<T_>();
      a.rec_work = detail::opt_out<T_>(rec_work);
      a.sum_work = sums.defined() ? sums.data<double>() : nullptr;
      kc::gru_sequence_backward(a);
    });
  }

  void lstm_sequence(const LstmSequence& given) override {
    const LstmSequence s = given.x.defined() ? with_projected_input(given, 4) : given;
    const std::int64_t B = s.x.defined() ? s.x.dim(0) : s.xproj.dim(1), H = s.w_hh.dim(1);
    const Tensor hproj = Tensor::empty({B, 4 * H}, s.hs.dtype(), Device::cpu());
    const Tensor h_work = s.rec_mask.defined() ? Tensor::empty({B, H}, s.hs.dtype(), Device::cpu()) : Tensor();
    const Tensor x_work = s.x.defined() ? Tensor::empty({B, 4 * H}, s.hs.dtype(), Device::cpu()) : Tensor();
    dispatch_float(s.hs.dtype(), [&](auto* tag) {
      using T_ = std::remove_pointer_t<decltype(tag)>;
      kernels::LstmSequenceArgs<T_> a = detail::lstm_sequence_args<T_>(s);
      a.hproj = hproj.data<T_>();
      a.h_work = detail::opt_out<T_>(h_work);
      a.xproj_work = detail::opt_out<T_>(x_work);
      kc::lstm_sequence(a);
    });
  }

  void lstm_sequence_backward(const LstmSequenceBackward& s) override {
    const std::int64_t B = s.saved.dim(1), H = s.w_hh.dim(1);
    const Tensor work = Tensor::empty({B, H}, s.dh.dtype(), Device::cpu());
    const Tensor rec_work = s.rec_mask.defined() ? Tensor::empty({B, H}, s.dh.dtype(), Device::cpu()) : Tensor();
    const Tensor sums = s.db.defined() ? Tensor::empty({B, 4 * H}, DType::f64, Device::cpu()) : Tensor();
    dispatch_float(s.dh.dtype(), [&](auto* tag) {
      using T_ = std::remove_pointer_t<decltype(tag)>;
      kernels::LstmSequenceBackArgs<T_> a = detail::lstm_sequence_back_args<T_>(s);
      a.dh_work = work.data<T_>();
      a.rec_work = detail::opt_out<T_>(rec_work);
      a.sum_work = sums.defined() ? sums.data<double>() : nullptr;
      kc::lstm_sequence_backward(a);
    });
  }

  void rnn_sequence(const RnnSequence& given) override {
    const RnnSequence s = given.x.defined() ? with_projected_input(given, 1) : given;
    const std::int64_t B = s.x.defined() ? s.x.dim(0) : s.xproj.dim(1), H = s.w_hh.dim(1);
    const Tensor hproj = Tensor::empty({B, H}, s.hs.dtype(), Device::cpu());
    const Tensor h_work = s.rec_mask.defined() ? Tensor::empty({B, H}, s.hs.dtype(), Device::cpu()) : Tensor();
    const Tensor x_work = s.x.defined() ? Tensor::empty({B, H}, s.hs.dtype(), Device::cpu()) : Tensor();
    dispatch_float(s.hs.dtype(), [&](auto* tag) {
      using T_ = std::remove_pointer_t<decltype(tag)>;
      kernels::RnnSequenceArgs<T_> a = detail::rnn_sequence_args<T_>(s);
      a.hproj = hproj.data<T_>();
      a.h_work = detail::opt_out<T_>(h_work);
      a.xproj_work = detail::opt_out<T_>(x_work);
      kc::rnn_sequence(a);
    });
  }

  void rnn_sequence_backward(const RnnSequenceBackward& s) override {
    const std::int64_t B = s.dgates.dim(1), H = s.w_hh.dim(1);
    const Tensor work = Tensor::empty({B, H}, s.dh.dtype(), Device::cpu());
    const Tensor rec_work = s.rec_mask.defined() ? Tensor::empty({B, H}, s.dh.dtype(), Device::cpu()) : Tensor();
    const Tensor sums = s.db.defined() ? Tensor::empty({B, H}, DType::f64, Device::cpu()) : Tensor();
    dispatch_float(s.dh.dtype(), [&](auto* tag) {
      using T_ = std::remove_pointer_t<decltype(tag)>;
      kernels::RnnSequenceBackArgs<T_> a = detail::rnn_sequence_back_args<T_>(s);
      a.dh_work = work.data<T_>();
      a.rec_work = detail::opt_out<T_>(rec_work);
      a.sum_work = sums.defined() ? sums.data<double>() : nullptr;
      kc::rnn_sequence_backward(a);
    });
  }

  void gru_rb_sequence(const GruRbSequence& s) override {
    const std::int64_t B = s.xproj.dim(1), H = s.w_hh.dim(1);
    const DType dt = s.hs.dtype();
    const Tensor hproj = Tensor::empty({B, 2 * H}, dt, Device::cpu()), hn = Tensor::empty({B, H}, dt, Device::cpu()),
                 rh = Tensor::empty({B, H}, dt, Device::cpu());
    const Tensor h_work = s.rec_mask.defined() ? Tensor::empty({B, H}, dt, Device::cpu()) : Tensor();
    const Tensor saved_work = s.saved.defined() ? Tensor() : Tensor::empty({B, 4 * H}, dt, Device::cpu());
    dispatch_float(dt, [&](auto* tag) {
      using T_ = std::remove_pointer_t<decltype(tag)>;
      kernels::GruRbSequenceArgs<T_> a = detail::gru_rb_sequence_args<T_>(s);
      a.hproj = hproj.data<T_>();
      a.hn = hn.data<T_>();
      a.rh = rh.data<T_>();
      a.h_work = detail::opt_out<T_>(h_work);
      a.saved_work = detail::opt_out<T_>(saved_work);
      kc::gru_rb_sequence(a);
    });
  }

  void gru_rb_sequence_backward(const GruRbSequenceBackward& s) override {
    const std::int64_t B = s.saved.dim(1), H = s.w_hh.dim(1);
    const DType dt = s.dh.dtype();
    const Tensor work = Tensor::empty({B, H}, dt, Device::cpu()), drh = Tensor::empty({B, H}, dt, Device::cpu()),
                 dh_in = Tensor::empty({B, H}, dt, Device::cpu());
    const Tensor h_in = s.rec_mask.defined() ? Tensor::empty({B, H}, dt, Device::cpu()) : Tensor();
    const Tensor sums = s.db_ih.defined() ? Tensor::empty({B, 6 * H}, DType::f64, Device::cpu()) : Tensor();
    dispatch_float(dt, [&](auto* tag) {
      using T_ = std::remove_pointer_t<decltype(tag)>;
      kernels::GruRbSequenceBackArgs<T_> a = detail::gru_rb_sequence_back_args<T_>(s);
      a.dh_work = work.data<T_>();
      a.drh = drh.data<T_>();
      a.dh_in = dh_in.data<T_>();
      a.h_in = detail::opt_out<T_>(h_in);
      a.sum_work = sums.defined() ? sums.data<double>() : nullptr;
      kc::gru_rb_sequence_backward(a);
    });
  }

  void transpose01(const Tensor& x, bool rev_a, bool rev_b, const Tensor& y) override {
    dispatch_float(x.dtype(), [&](auto* tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      kc::transpose01<T>(x.data<T>(), x.dim(0), x.dim(1), x.dim(2), rev_a, rev_b, y.data<T>());
    });
  }

  void lstm_step_backward(const LstmStepBackward& s) override {
    dispatch_float(s.c.dtype(), [&](auto* tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      kc::lstm_step_backward(detail::lstm_back_args<T>(s));
    });
  }

  void gru_step_backward(const GruStepBackward& s) override {
    dispatch_float(s.h_prev.dtype(), [&](auto* tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      kc::gru_step_backward(detail::gru_back_args<T>(s));
    });
  }

  void rnn_step_backward(const RnnStepBackward& s) override {
    dispatch_float(s.h.dtype(), [&](auto* tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      kc::rnn_step_backward(s.activation, detail::rnn_back_args<T>(s));
    });
  }

  void loss(const LossCall& c) override {
    dispatch_float(c.pred.dtype(), [&](auto* tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      c.loss.data<T>()[0] = T(kc::loss(c.kind, detail::loss_args<T>(c)));
    });
  }

  void sum_squares(const Tensor& x, const Tensor& out) override {
    dispatch_float(x.dtype(), [&](auto* tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      out.data<double>()[0] = kc::sum_squares(x.data<T>(), x.numel());
    });
  }

  void clip(const Tensor& g, const Tensor& sq_sum, double clipnorm, double clipvalue) override {
    dispatch_float(g.dtype(), [&](auto* tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      kc::clip(g.data<T>(), g.numel(), sq_sum.defined() ? sq_sum.data<double>() : nullptr,
               T(clipnorm), T(clipvalue));
    });
  }

  void optimizer_step(const OptimizerStep& s) override {
    dispatch_float(s.param.dtype(), [&](auto* tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      kc::optimizer_step(s.kind, detail::optimizer_args<T>(s));
    });
  }

  void im2col1d(const kernels::Conv1dGeometry& g, const Tensor& x, const Tensor& cols) override {
    dispatch_float(x.dtype(), [&](auto* tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      kc::im2col1d<T>(g, x.data<T>(), cols.data<T>());
    });
  }
  void col2im1d(const kernels::Conv1dGeometry& g, const Tensor& dcols, const Tensor& dx) override {
    dispatch_float(dx.dtype(), [&](auto* tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      kc::col2im1d<T>(g, dcols.data<T>(), dx.data<T>());
    });
  }
  // The direct convolution where im2col + GEMM moves more memory than the
  // arithmetic needs: groups 1, at most kDirectMaxTaps input values per
  // output (C*K), where OpenBLAS's GEMM has a short inner dimension and
  // spends its time packing, and enough output channels (F forward, C for
  // the input gradient) to fill 3/4 of the kernel's 32-lane blocks: at C 6
  // the input gradient would compute 32 lanes for 6, and the GEMM path is
  // faster there. bench_ops --only conv1d times both on the conv model's
  // layers (RECUR_CONV1D=im2col or direct forces one; kc::set_conv1d_path).
  static bool direct_wanted(const kernels::Conv1dGeometry& g, std::int64_t outputs, DType t) {
    const kc::Conv1dPath p = kc::conv1d_path();
    if (g.groups != 1 || p == kc::Conv1dPath::Im2col) return false;
    return p == kc::Conv1dPath::Direct ||
           (g.C * g.K <= kDirectMaxTaps && kc::conv1d_direct_lane_use(outputs, t == DType::f64) >= 0.75);
  }
  static constexpr std::int64_t kDirectMaxTaps = 256;
  bool conv1d_direct(const kernels::Conv1dGeometry& g, const Tensor& x, const Tensor& w, const Tensor& b,
                     const Tensor& y) override {
    if (!direct_wanted(g, w.dim(0), x.dtype())) return false;
    dispatch_float(x.dtype(), [&](auto* tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      kc::conv1d_direct_forward<T>(g, x.data<T>(), w.data<T>(), b.defined() ? b.data<T>() : nullptr, y.data<T>(),
                                   w.dim(0));
    });
    return true;
  }
  bool conv1d_direct_backward_data(const kernels::Conv1dGeometry& g, const Tensor& dy, const Tensor& w,
                                   const Tensor& dx) override {
    if (!direct_wanted(g, g.C, dx.dtype())) return false;
    dispatch_float(dx.dtype(), [&](auto* tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      kc::conv1d_direct_backward_data<T>(g, dy.data<T>(), w.data<T>(), dx.data<T>(), w.dim(0));
    });
    return true;
  }
  bool conv1d_direct_backward_weights(const kernels::Conv1dGeometry& g, const Tensor& x, const Tensor& dy,
                                      const Tensor& dw) override {
    if (!direct_wanted(g, dw.dim(0), x.dtype())) return false;
    dispatch_float(x.dtype(), [&](auto* tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      kc::conv1d_direct_backward_weights<T>(g, x.data<T>(), dy.data<T>(), dw.data<T>(), dw.dim(0));
    });
    return true;
  }
  void pool1d(const Pool1dCall& c) override {
    dispatch_float(c.y.dtype(), [&](auto* tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      kc::pool_forward(c.kind, detail::pool_args<T>(c));
    });
  }
  void pool1d_backward(const Pool1dCall& c) override {
    dispatch_float(c.dx.dtype(), [&](auto* tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      kc::pool_backward(c.kind, detail::pool_args<T>(c));
    });
  }
  void embedding(const Tensor& w, const Tensor& ids, const Tensor& y) override {
    dispatch_float(w.dtype(), [&](auto* tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      kc::embedding_forward(detail::embedding_args<T>(w, ids, y, {}, {}));
    });
  }
  void embedding_backward(const Tensor& ids, const Tensor& dy, const Tensor& dw) override {
    dispatch_float(dw.dtype(), [&](auto* tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      kc::embedding_backward(detail::embedding_args<T>({}, ids, {}, dy, dw));
    });
  }
  void embedding_mask(const Tensor& ids, const Tensor& mask) override {
    dispatch_float(mask.dtype(), [&](auto* tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      kc::embedding_mask(ids.data<std::int32_t>(), mask.data<T>(), ids.numel());
    });
  }
  void activation(Activation act, const Tensor& x, const Tensor& y, std::int64_t cols) override {
    dispatch_float(x.dtype(), [&](auto* tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      kc::activation(act, x.data<T>(), y.data<T>(), x.numel() / cols, cols);
    });
  }
  void activation_backward(Activation act, const Tensor& y, const Tensor& dy, const Tensor& dx,
                           std::int64_t cols) override {
    dispatch_float(y.dtype(), [&](auto* tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      kc::activation_backward(act, y.data<T>(), dy.data<T>(), dx.data<T>(), y.numel() / cols, cols);
    });
  }
  void dropout(const Tensor& x, double rate, std::uint64_t seed, const Tensor& y,
               const Tensor& mask) override {
    dispatch_float(x.dtype(), [&](auto* tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      kc::dropout(detail::dropout_args<T>(x, rate, seed, y, mask));
    });
  }

  void length_buckets(const LengthBucketsCall& c) override {
    kc::length_buckets(detail::bucket_args(c));
  }

 private:
  CachingAllocator allocator_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<CpuBackend>(); }

}  // namespace recur
