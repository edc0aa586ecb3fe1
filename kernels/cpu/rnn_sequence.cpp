// Whole recurrent passes on the CPU (recur/kernels/rnn_sequence.h): one
// parallel region per pass instead of two or more per time step. A step of
// the Jena GRU ([128, 32]) is a few microseconds of work, so per-step thread
// wake-ups and barriers cost as much as the work on an idle machine, and far
// more on a loaded one, where every barrier waits for a descheduled thread.
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "recur/common/error.h"
#include "recur/kernels/cpu.h"
#include "rnn_rows.h"

namespace recur::kernels::cpu {
namespace {

// Rows per chunk at the least: below that a chunk's GEMM is too thin to pay
// for the thread that runs it.
constexpr std::int64_t kMinRows = 16;

// Runs f(b0, b1) once per chunk of contiguous rows covering [0, B). Chunks
// are twice as many as threads (when the rows allow), handed out dynamically,
// so a thread that the OS runs less of does less of the work. Inside the
// region the BLAS calls are single-threaded (OpenBLAS runs one thread inside
// an active OpenMP region).
template <class F>
void for_row_chunks(std::int64_t B, F&& f) {
  const std::int64_t nt = num_threads();
  const std::int64_t chunks = std::min<std::int64_t>(2 * nt, B / kMinRows);
  if (nt < 2 || chunks < 2) return f(std::int64_t(0), B);
#pragma omp parallel for schedule(dynamic, 1) num_threads(int(std::min(nt, chunks)))
  for (std::int64_t c = 0; c < chunks; ++c) {
    const std::int64_t b0 = B * c / chunks, b1 = B * (c + 1) / chunks;
    f(b0, b1);
  }
}

// Rows [b0, b1) of c[B, N] = alpha a[B, K] op(w) + beta c, with op(w) = w^T
// for w [N, K] (trans) or w for w [K, N].
template <class T>
void gemm_rows(std::int64_t b0, std::int64_t b1, std::int64_t N, std::int64_t K, const T* a,
               const T* w, bool trans, T beta, T* c) {
  gemm<T>(false, trans, b1 - b0, N, K, T(1), a + b0 * K, K, 0, w, trans ? K : N, 0, beta, c + b0 * N,
          N, 0, 1);
}

// The recurrent product of a pass, rows [b0, b1) at a time: c = a op(w)
// (+ c when accumulating), op(w) [K, N] = w^T (trans, w [N, K]) or w [K, N].
// float32 packs op(w) once per pass where packed_product() runs (cpu.h says
// why); otherwise, and for float64, each step calls the BLAS.
template <class T>
struct Recurrent {
  const T* w;
  bool trans;
  std::int64_t K, N;
  const PackedWeight* packed;
  void operator()(std::int64_t b0, std::int64_t b1, const T* a, bool accumulate, T* c) const {
    if constexpr (std::is_same_v<T, float>) {
      if (packed) return packed_product(b1 - b0, a + b0 * K, K, *packed, accumulate, c + b0 * N, N);
    }
    gemm_rows(b0, b1, N, K, a, w, trans, accumulate ? T(1) : T(0), c);
  }
};

// The packed weight lives in a buffer of the calling thread, kept between
// passes (the team reads it through the pointer); one pass packs one weight.
template <class T>
Recurrent<T> recurrent(const T* w, bool trans, std::int64_t K, std::int64_t N) {
  Recurrent<T> r{w, trans, K, N, nullptr};
  if constexpr (std::is_same_v<T, float>) {
    thread_local PackedWeight buffer;
    if (pack_weight(w, trans, K, N, buffer)) r.packed = &buffer;
  }
  return r;
}

// acc[b, :] += rows [b0, b1) of x [B, n] (columns [off, off + n) of rows ld apart).
template <class T>
void add_rows(double* acc, const T* x, std::int64_t ld, std::int64_t off, std::int64_t n,
              std::int64_t b0, std::int64_t b1) {
  for (std::int64_t b = b0; b < b1; ++b) {
    double* a = acc + b * n;
    const T* r = x + b * ld + off;
#pragma omp simd
    for (std::int64_t j = 0; j < n; ++j) a[j] += double(r[j]);
  }
}

// out[j] = sum over rows b of acc[b, j], rows in order.
template <class T>
void sum_rows(const double* acc, std::int64_t B, std::int64_t n, T* out) {
  for (std::int64_t j = 0; j < n; ++j) {
    double s = 0;
    for (std::int64_t b = 0; b < B; ++b) s += acc[b * n + j];
    out[j] = T(s);
  }
}

// The state the recurrent matmul reads for rows [b0, b1): h_prev itself, or
// with recurrent dropout h_prev * rec_mask written into `work`.
template <class T>
const T* matmul_input(const T* h_prev, const T* rec_mask, T* work, std::int64_t H,
                      std::int64_t b0, std::int64_t b1) {
  if (!rec_mask) return h_prev;
  for (std::int64_t e = b0 * H; e < b1 * H; ++e) work[e] = h_prev[e] * rec_mask[e];
  return work;
}

// Rows [b0, b1) of dh_prev += (g [B, GH] w [GH, H]) * rec_mask, or without a
// mask straight into dh_prev (beta 1).
template <class T>
void add_recurrent_grad(std::int64_t b0, std::int64_t b1, std::int64_t H, const Recurrent<T>& gw,
                        const T* g, const T* rec_mask, T* work, T* dh_prev) {
  if (!rec_mask) return gw(b0, b1, g, true, dh_prev);
  gw(b0, b1, g, false, work);
  for (std::int64_t e = b0 * H; e < b1 * H; ++e) dh_prev[e] += work[e] * rec_mask[e];
}

// A forward pass's step inputs x_t W_ih^T ([B, G H] per step): precomputed
// (xproj, [T, B, G H]), or computed in the pass from the batch-major input
// (rnn_sequence.h's x and w_ih) into work, step by step, each thread its
// rows just before the recurrent product: then neither a time-major copy of x
// nor all steps' projections (tens of MB at H 256) go through memory.
template <class T>
struct StepInputs {
  const T* xproj = nullptr;
  const T* x = nullptr;
  const T* w_ih = nullptr;
  std::int64_t T_ = 0, I = 0, BGH = 0;
  bool reversed = false;
  T* work = nullptr;
  // Step t's projection, [B, G H] (work's once computed).
  const T* step(std::int64_t t) const { return xproj ? xproj + t * BGH : work; }
  // Row 0 of step t's input; rows lda() apart.
  const T* x_step(std::int64_t t) const { return x + (reversed ? T_ - 1 - t : t) * I; }
  std::int64_t lda() const { return T_ * I; }
};

template <class T, class A>
StepInputs<T> step_inputs(const A& a, std::int64_t G) {
  StepInputs<T> in;
  in.xproj = a.x ? nullptr : a.xproj;
  in.x = a.x;
  in.w_ih = a.w_ih;
  in.T_ = a.T;
  in.I = a.I;
  in.BGH = a.B * G * a.H;
  in.reversed = a.x_reversed;
  in.work = a.xproj_work;
  return in;
}

// W_ih^T packed for a pass (float32 where packed_product runs), in a buffer
// of the calling thread apart from recurrent()'s; else nullptr (the BLAS).
template <class T>
const PackedWeight* packed_input_weight(const T* w_ih, std::int64_t I, std::int64_t GH) {
  if constexpr (std::is_same_v<T, float>) {
    thread_local PackedWeight buffer;
    if (pack_weight(w_ih, true, I, GH, buffer)) return &buffer;
  }
  return nullptr;
}

// Rows [b0, b1) of step t's projection into in.work (row stride G H): each
// element one sum over I in order, as the whole-input GEMM's packed path.
template <class T>
void project_rows(const StepInputs<T>& in, const PackedWeight* packed, std::int64_t GH, std::int64_t t,
                  std::int64_t b0, std::int64_t b1) {
  const T* a = in.x_step(t) + b0 * in.lda();
  T* c = in.work + b0 * GH;
  if constexpr (std::is_same_v<T, float>) {
    if (packed) return packed_product(b1 - b0, a, in.lda(), *packed, false, c, GH);
  }
  gemm<T>(false, true, b1 - b0, GH, in.I, T(1), a, in.lda(), 0, in.w_ih, in.I, 0, T(0), c, GH, 0, 1);
}

// ---- Small batches: the units split over threads ------------------------------------
//
// Below 2 * kMinRows rows for_row_chunks runs one thread, and at batch 1 the
// step is a matrix-vector product that streams all of W_hh from L2 every
// step (768 KB for a GRU at H 256). Here each thread owns a range of units
// instead: it packs only its columns of W_hh (each gate's rows [u0, u1)),
// which stay in its own L2, computes those columns of the product and the
// gates of its units, and the team meets at a barrier once per step, since
// every unit's next product reads the whole state. The sums are those of the
// one-thread pass (each column's sum over k in order), so the output is
// bit for bit the same (SequenceOps.SmallBatchUnitSplitIsBitExact in
// tests/test_backend_ops.cpp checks).

// A sense-reversing barrier that spins (a step is microseconds, far less
// than a futex wake-up) and yields after a while, so that on a loaded
// machine a waiting thread gives its core to the one it waits for.
class SpinBarrier {
 public:
  // Before the team uses it (the team's size, which OpenMP may make smaller
  // than asked for, as inside another parallel region).
  void reset(int n) {
    n_ = n;
    count_.store(0, std::memory_order_relaxed);
  }
  void wait(int& sense) {
    sense ^= 1;
    if (count_.fetch_add(1, std::memory_order_acq_rel) == n_ - 1) {
      count_.store(0, std::memory_order_relaxed);
      flag_.store(sense, std::memory_order_release);
      return;
    }
    for (int spins = 0; flag_.load(std::memory_order_acquire) != sense; ++spins) {
      if (spins < 2000) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
      } else {
        std::this_thread::yield();
      }
    }
  }

 private:
  int n_ = 1;
  std::atomic<int> count_{0}, flag_{0};
};

// Threads for a pass of B rows, H units and G gates split by units, or 0
// where the rows split (or one thread) is the better plan: float32 with the
// packed product, too few rows for two row chunks, and at least 32 units and
// 64 K multiply-adds of W_hh per thread and step (below that a barrier per
// step costs about what the split saves). RECUR_RNN_UNIT_SPLIT=0 turns it off.
template <class T>
int unit_split_threads(std::int64_t B, std::int64_t H, std::int64_t G) {
  if constexpr (!std::is_same_v<T, float>) {
    return 0;
  } else {
    const std::int64_t nt = num_threads();
    if (nt < 2 || B >= 2 * kMinRows || !packed_product_available()) return 0;
    if (const char* e = std::getenv("RECUR_RNN_UNIT_SPLIT"); e && *e == '0') return 0;
    const std::int64_t by_units = H / 32, by_work = B * G * H * H / 65536;
    const std::int64_t n = std::min({nt, by_units, by_work});
    return n >= 2 ? int(n) : 0;
  }
}

// Runs a forward pass with the units split over n threads (in.xproj given):
// gates(t, j0, j1, xp) computes step t's gates of units [j0, j1) for every
// row from xp (its input projection, [B, G*H]) and hproj (the product of h_in
// with W_hh^T, [B, G*H]) and writes
// h(t+1) = state(t+1) for those units; state(t) is h(t), the input of step t.
// With rec_mask (recurrent dropout, [B, H]) the product reads h * rec_mask,
// which each thread writes for its own units into one of two buffers.
template <class State, class Gates>
void unit_split_pass(int n, std::int64_t T_, std::int64_t B, std::int64_t H, std::int64_t G,
                     const float* w_hh, const StepInputs<float>& in, const float* rec_mask, float* hproj,
                     State state, Gates gates) {
  SpinBarrier barrier;
  std::vector<float> masked(rec_mask ? std::size_t(2 * B * H) : 0);
#pragma omp parallel num_threads(n)
  {
#pragma omp single
    barrier.reset(omp_get_num_threads());  // (the single's own barrier follows)
    const std::int64_t i = omp_get_thread_num(), team = omp_get_num_threads();
    // Unit ranges in multiples of 16 (a vector of floats), as even as that allows.
    const std::int64_t j0 = (H * i / team) / 16 * 16;
    const std::int64_t j1 = i + 1 == team ? H : (H * (i + 1) / team) / 16 * 16;
    thread_local std::vector<PackedWeight> packed;
    if (std::int64_t(packed.size()) < G) packed.resize(std::size_t(G));
    for (std::int64_t g = 0; g < G; ++g)  // op(w) = rows [g H + j0, g H + j1) of W_hh, transposed
      pack_weight(w_hh + (g * H + j0) * H, true, H, j1 - j0, packed[std::size_t(g)]);
    auto mask_units = [&](const float* h, float* out) {
      for (std::int64_t b = 0; b < B; ++b)
        for (std::int64_t j = j0; j < j1; ++j) out[b * H + j] = h[b * H + j] * rec_mask[b * H + j];
    };
    int sense = 0;
    if (rec_mask) {
      mask_units(state(0), masked.data());
      barrier.wait(sense);
    }
    for (std::int64_t t = 0; t < T_; ++t) {
      const float* h_in = rec_mask ? masked.data() + (t % 2) * B * H : state(t);
      for (std::int64_t g = 0; g < G; ++g)
        packed_product(B, h_in, H, packed[std::size_t(g)], false, hproj + g * H + j0, G * H);
      gates(t, j0, j1, in.step(t));
      if (rec_mask) mask_units(state(t + 1), masked.data() + ((t + 1) % 2) * B * H);
      barrier.wait(sense);
    }
  }
}

template <class T>
const T* step_of(const T* p, std::int64_t t, std::int64_t n) {
  return p ? p + t * n : nullptr;
}
// Step t of ys / dys, whose steps are `step` apart (0: n, time-major).
template <class T>
T* strided_step(T* p, std::int64_t t, std::int64_t step, std::int64_t n) {
  return p ? p + t * (step ? step : n) : nullptr;
}
template <class T>
T* step_of(T* p, std::int64_t t, std::int64_t n) {
  return p ? p + t * n : nullptr;
}

}  // namespace

namespace {
// The fields every cell's step arguments share, for step t of a forward
// pass with G gates per unit (state(t): h(t); xp: the step's input
// projection, [B, G H]).
template <class S, class A, class State, class T>
void common_step_fields(S& s, const A& a, std::int64_t t, std::int64_t G, State state, const T* xp) {
  s.B = a.B;
  s.H = a.H;
  s.xproj = xp;
  s.hproj = a.hproj;
  s.ld_x = s.ld_h = G * a.H;
  s.b_ih = a.b_ih;
  s.b_hh = a.b_hh;
  s.h_prev = state(t);
  s.mask = step_of(a.mask, t, a.B);
  s.h = state(t + 1);
  s.y = strided_step(a.ys, t, a.ys_step, a.B * a.H);
  s.ld_y = a.ys_row;
}

// A forward pass over time of a cell with G gates: state(t) is h(t) ([B, H]),
// step(t, b0, b1, j0, j1, xp) runs step t's gates for rows [b0, b1) and units
// [j0, j1) from xp (the step's input projection, [B, G H]) and hproj and
// writes state(t + 1) there. Small float32 batches
// split the units over threads; otherwise the rows are split into chunks,
// each thread running every step of its rows.
template <class T, class State, class Step>
void forward_pass(const T* w_hh, const StepInputs<T>& in, const T* rec_mask, T* hproj, T* h_work,
                  std::int64_t T_, std::int64_t B, std::int64_t H, std::int64_t G, State state, Step step) {
  if constexpr (std::is_same_v<T, float>) {
    if (const int n = unit_split_threads<T>(B, H, G)) {
      RECUR_CHECK(!in.x, Value, "a recurrent pass of ", B, " rows splits its units over threads and takes "
                  "xproj, not the input itself (rnn_unit_split_threads)");
      return unit_split_pass(n, T_, B, H, G, w_hh, in, rec_mask, hproj, state,
                             [&](std::int64_t t, std::int64_t j0, std::int64_t j1, const float* xp) {
                               step(t, 0, B, j0, j1, xp);
                             });
    }
  }
  const Recurrent<T> hw = recurrent(w_hh, true, H, G * H);  // h [rows, H] W_hh^T
  const PackedWeight* w_ih = in.x ? packed_input_weight(in.w_ih, in.I, G * H) : nullptr;
  for_row_chunks(B, [&](std::int64_t b0, std::int64_t b1) {
    for (std::int64_t t = 0; t < T_; ++t) {
      if (in.x) project_rows(in, w_ih, G * H, t, b0, b1);
      hw(b0, b1, matmul_input<T>(state(t), rec_mask, h_work, H, b0, b1), false, hproj);
      step(t, b0, b1, 0, H, in.step(t));
    }
  });
}

// forward_pass for a cell whose step arguments are S, with G gates: its
// states in a.hs (all T + 1, or two alternating), each step's S given the
// common fields, then run(s, t, b0, b1, j0, j1) adds the cell's own and runs
// the rows.
template <class S, class A, class Run>
void cell_pass(const A& a, std::int64_t G, Run run) {
  using T = std::remove_const_t<std::remove_pointer_t<decltype(a.xproj)>>;
  const std::int64_t BH = a.B * a.H;
  auto state = [&](std::int64_t t) { return a.hs + (a.all_states ? t : t % 2) * BH; };
  auto step = [&](std::int64_t t, std::int64_t b0, std::int64_t b1, std::int64_t j0, std::int64_t j1,
                  const T* xp) {
    S s;
    common_step_fields(s, a, t, G, state, xp);
    run(s, t, b0, b1, j0, j1);
  };
  forward_pass(a.w_hh, step_inputs<T>(a, G), a.rec_mask, a.hproj, a.h_work, a.T, a.B, a.H, G, state, step);
}
}  // namespace

int rnn_unit_split_threads(std::int64_t B, std::int64_t H, std::int64_t G) {
  return unit_split_threads<float>(B, H, G);
}

template <class T>
void gru_sequence(const GruSequenceArgs<T>& a) {
  cell_pass<GruStepArgs<T>>(a, 3, [&](GruStepArgs<T>& s, std::int64_t t, std::int64_t b0, std::int64_t b1,
                                      std::int64_t j0, std::int64_t j1) {
    s.saved = step_of(a.saved, t, 4 * a.B * a.H);
    gru_rows(s, b0, b1, j0, j1);
  });
}

template <class T>
void gru_sequence_backward(const GruSequenceBackArgs<T>& a) {
  const std::int64_t T_ = a.T, B = a.B, H = a.H, BH = B * H;
  // Bias sums: dgates_h equals dgates_x in the r and z blocks, so per row
  // the 3H sums of dgates_x and the H of dgates_h's n block.
  const bool sums = a.db_x != nullptr;
  double* acc_x = a.sum_work;
  double* acc_n = sums ? a.sum_work + B * 3 * H : nullptr;
  if (sums) std::fill(a.sum_work, a.sum_work + B * 4 * H, 0.0);
  const Recurrent<T> gw = recurrent(a.w_hh, false, 3 * H, H);  // dgates [rows, G] W_hh
  for_row_chunks(B, [&](std::int64_t b0, std::int64_t b1) {
    T* dh = a.dh;
    T* dh_other = a.dh_work;
    for (std::int64_t t = T_ - 1; t >= 0; --t) {
      GruBackArgs<T> s;
      s.B = B;
      s.H = H;
      s.saved = a.saved + t * 4 * BH;
      s.h_prev = a.hs + t * BH;
      s.dy = strided_step(a.dys, t, a.dys_step, BH);
      s.ld_dy = a.dys_row;
      s.dh_next = dh;
      s.mask = step_of(a.mask, t, B);
      s.dgates_x = a.dgates_x + t * 3 * BH;
      s.dgates_h = a.dgates_h + t * 3 * BH;
      s.dh_prev = dh_other;
      gru_back_rows(s, b0, b1);
      if (sums) {
        add_rows(acc_x, s.dgates_x, 3 * H, 0, 3 * H, b0, b1);
        add_rows(acc_n, s.dgates_h, 3 * H, 2 * H, H, b0, b1);
      }
      // dh_prev += (dgates_h W_hh) [* rec_mask]: [rows, 3H] x [3H, H].
      add_recurrent_grad(b0, b1, H, gw, s.dgates_h, a.rec_mask, a.rec_work, dh_other);
      std::swap(dh, dh_other);
    }
    if (dh != a.dh) copy_row(a.dh + b0 * H, dh + b0 * H, (b1 - b0) * H);
  });
  if (sums) {
    sum_rows(acc_x, B, 3 * H, a.db_x);
    std::copy(a.db_x, a.db_x + 2 * H, a.db_h);
    sum_rows(acc_n, B, H, a.db_h + 2 * H);
  }
}

template <class T>
void lstm_sequence(const LstmSequenceArgs<T>& a) {
  const std::int64_t BH = a.B * a.H;
  cell_pass<LstmStepArgs<T>>(a, 4, [&](LstmStepArgs<T>& s, std::int64_t t, std::int64_t b0, std::int64_t b1,
                                       std::int64_t j0, std::int64_t j1) {
    s.c_prev = a.cs + (a.all_states ? t : 0) * BH;
    s.c = a.cs + (a.all_states ? t + 1 : 0) * BH;
    s.saved = step_of(a.saved, t, 4 * BH);
    lstm_rows(s, b0, b1, j0, j1);
  });
}

template <class T>
void lstm_sequence_backward(const LstmSequenceBackArgs<T>& a) {
  const std::int64_t T_ = a.T, B = a.B, H = a.H, BH = B * H;
  const bool sums = a.db != nullptr;
  if (sums) std::fill(a.sum_work, a.sum_work + B * 4 * H, 0.0);
  const Recurrent<T> gw = recurrent(a.w_hh, false, 4 * H, H);  // dgates [rows, G] W_hh
  for_row_chunks(B, [&](std::int64_t b0, std::int64_t b1) {
    T* dh = a.dh;
    T* dh_other = a.dh_work;
    for (std::int64_t t = T_ - 1; t >= 0; --t) {
      LstmBackArgs<T> s;
      s.B = B;
      s.H = H;
      s.saved = a.saved + t * 4 * BH;
      s.c_prev = a.cs + t * BH;
      s.c = a.cs + (t + 1) * BH;
      s.dy = strided_step(a.dys, t, a.dys_step, BH);
      s.ld_dy = a.dys_row;
      s.dh_next = dh;
      s.dc_next = a.dc;
      s.mask = step_of(a.mask, t, B);
      s.dgates = a.dgates + t * 4 * BH;
      s.dh_prev = dh_other;
      s.dc_prev = a.dc;  // in place
      lstm_back_rows(s, b0, b1);
      if (sums) add_rows(a.sum_work, s.dgates, 4 * H, 0, 4 * H, b0, b1);
      add_recurrent_grad(b0, b1, H, gw, s.dgates, a.rec_mask, a.rec_work, dh_other);
      std::swap(dh, dh_other);
    }
    if (dh != a.dh) copy_row(a.dh + b0 * H, dh + b0 * H, (b1 - b0) * H);
  });
  if (sums) sum_rows(a.sum_work, B, 4 * H, a.db);
}

template <class T>
void rnn_sequence(const RnnSequenceArgs<T>& a) {
  cell_pass<RnnStepArgs<T>>(a, 1, [&](RnnStepArgs<T>& s, std::int64_t, std::int64_t b0, std::int64_t b1,
                                      std::int64_t j0, std::int64_t j1) {
    if (a.activation == RnnActivation::Tanh)
      rnn_rows<RnnActivation::Tanh>(s, b0, b1, j0, j1);
    else
      rnn_rows<RnnActivation::Relu>(s, b0, b1, j0, j1);
  });
}

template <class T>
void rnn_sequence_backward(const RnnSequenceBackArgs<T>& a) {
  const std::int64_t T_ = a.T, B = a.B, H = a.H, BH = B * H;
  const bool sums = a.db != nullptr;
  if (sums) std::fill(a.sum_work, a.sum_work + BH, 0.0);
  const Recurrent<T> gw = recurrent(a.w_hh, false, H, H);  // dgates [rows, G] W_hh
  for_row_chunks(B, [&](std::int64_t b0, std::int64_t b1) {
    T* dh = a.dh;
    T* dh_other = a.dh_work;
    for (std::int64_t t = T_ - 1; t >= 0; --t) {
      RnnBackArgs<T> s;
      s.B = B;
      s.H = H;
      s.h = a.hs + (t + 1) * BH;
      s.dy = strided_step(a.dys, t, a.dys_step, BH);
      s.ld_dy = a.dys_row;
      s.dh_next = dh;
      s.mask = step_of(a.mask, t, B);
      s.dgates = a.dgates + t * BH;
      s.dh_prev = dh_other;
      if (a.activation == RnnActivation::Tanh)
        rnn_back_rows<RnnActivation::Tanh>(s, b0, b1);
      else
        rnn_back_rows<RnnActivation::Relu>(s, b0, b1);
      if (sums) add_rows(a.sum_work, s.dgates, H, 0, H, b0, b1);
      add_recurrent_grad(b0, b1, H, gw, s.dgates, a.rec_mask, a.rec_work, dh_other);
      std::swap(dh, dh_other);
    }
    if (dh != a.dh) copy_row(a.dh + b0 * H, dh + b0 * H, (b1 - b0) * H);
  });
  if (sums) sum_rows(a.sum_work, B, H, a.db);
}

template <class T>
void gru_rb_sequence(const GruRbSequenceArgs<T>& a) {
  const std::int64_t T_ = a.T, B = a.B, H = a.H, BH = B * H;
  for_row_chunks(B, [&](std::int64_t b0, std::int64_t b1) {
    for (std::int64_t t = 0; t < T_; ++t) {
      T* h_prev = a.hs + (a.all_states ? t : t % 2) * BH;
      T* h_next = a.hs + (a.all_states ? t + 1 : (t + 1) % 2) * BH;
      T* saved = a.saved ? a.saved + t * 4 * BH : a.saved_work;
      const T* h_in = matmul_input<T>(h_prev, a.rec_mask, a.h_work, H, b0, b1);
      // hproj_rz = h_in W_h[r,z]^T: [rows, H] x [H, 2H] (the first 2H rows of W_hh)
      gemm_rows(b0, b1, 2 * H, H, h_in, a.w_hh, true, T(0), a.hproj);
      GruRbGatesArgs<T> g;
      g.B = B;
      g.H = H;
      g.xproj = a.xproj + t * 3 * BH;
      g.hproj_rz = a.hproj;
      g.b_ih = a.b_ih;
      g.b_hh = a.b_hh;
      g.h_in = h_in;
      g.rh = a.rh;
      g.saved = saved;
      for (std::int64_t b = b0; b < b1; ++b)
        for (std::int64_t j = 0; j < H; ++j) gru_rb_gates_element(g, b, j);
      // hn = rh W_hn^T
      gemm_rows(b0, b1, H, H, static_cast<const T*>(a.rh), a.w_hh + 2 * H * H, true, T(0), a.hn);
      GruRbOutArgs<T> o;
      o.B = B;
      o.H = H;
      o.xproj = g.xproj;
      o.hn = a.hn;
      o.b_ih = a.b_ih;
      o.b_hh = a.b_hh;
      o.h_prev = h_prev;
      o.mask = step_of(a.mask, t, B);
      o.saved = saved;
      o.h = h_next;
      o.y = strided_step(a.ys, t, a.ys_step, BH);
      o.ld_y = a.ys_row;
      for (std::int64_t b = b0; b < b1; ++b)
        for (std::int64_t j = 0; j < H; ++j) gru_rb_out_element(o, b, j);
    }
  });
}

template <class T>
void gru_rb_sequence_backward(const GruRbSequenceBackArgs<T>& a) {
  const std::int64_t T_ = a.T, B = a.B, H = a.H, BH = B * H;
  // Per row: 3H sums of dgates_x, 2H of dgates_rz, H of dgates_n.
  const bool sums = a.db_x != nullptr;
  double* acc_x = a.sum_work;
  double* acc_rz = sums ? a.sum_work + B * 3 * H : nullptr;
  double* acc_n = sums ? a.sum_work + B * 5 * H : nullptr;
  if (sums) std::fill(a.sum_work, a.sum_work + B * 6 * H, 0.0);
  for_row_chunks(B, [&](std::int64_t b0, std::int64_t b1) {
    T* dh = a.dh;
    T* dh_other = a.dh_work;
    for (std::int64_t t = T_ - 1; t >= 0; --t) {
      const T* saved = a.saved + t * 4 * BH;
      const T* h_prev = a.hs + t * BH;
      const T* mask = step_of(a.mask, t, B);
      T* dgx = a.dgates_x + t * 3 * BH;
      T* drz = a.dgates_rz + t * 2 * BH;
      T* dgn = a.dgates_n + t * BH;
      GruRbBackNArgs<T> n;
      n.B = B;
      n.H = H;
      n.saved = saved;
      n.h_prev = h_prev;
      n.dy = strided_step(a.dys, t, a.dys_step, BH);
      n.ld_dy = a.dys_row;
      n.dh_next = dh;
      n.mask = mask;
      n.dgates_x = dgx;
      n.dgates_rz = drz;
      n.dgates_n = dgn;
      n.dh_prev = dh_other;
      for (std::int64_t b = b0; b < b1; ++b)
        for (std::int64_t j = 0; j < H; ++j) gru_rb_back_n_element(n, b, j);
      // drh = dgates_n W_hn: [rows, H] x [H, H]
      gemm_rows(b0, b1, H, H, static_cast<const T*>(dgn), a.w_hh + 2 * H * H, false, T(0), a.drh);
      GruRbBackRArgs<T> r;
      r.B = B;
      r.H = H;
      r.saved = saved;
      r.h_in = matmul_input<T>(h_prev, a.rec_mask, a.h_in, H, b0, b1);
      r.drh = a.drh;
      r.mask = mask;
      r.dgates_x = dgx;
      r.dgates_rz = drz;
      r.dh_in = a.dh_in;
      for (std::int64_t b = b0; b < b1; ++b)
        for (std::int64_t j = 0; j < H; ++j) gru_rb_back_r_element(r, b, j);
      // dh_in += dgates_rz W_h[r,z]: [rows, 2H] x [2H, H]; then through the dropout mask
      gemm_rows(b0, b1, H, 2 * H, static_cast<const T*>(drz), a.w_hh, false, T(1), a.dh_in);
      for (std::int64_t e = b0 * H; e < b1 * H; ++e)
        dh_other[e] += a.rec_mask ? a.dh_in[e] * a.rec_mask[e] : a.dh_in[e];
      if (sums) {
        add_rows(acc_x, dgx, 3 * H, 0, 3 * H, b0, b1);
        add_rows(acc_rz, drz, 2 * H, 0, 2 * H, b0, b1);
        add_rows(acc_n, dgn, H, 0, H, b0, b1);
      }
      std::swap(dh, dh_other);
    }
    if (dh != a.dh) copy_row(a.dh + b0 * H, dh + b0 * H, (b1 - b0) * H);
  });
  if (sums) {
    sum_rows(acc_x, B, 3 * H, a.db_x);
    sum_rows(acc_rz, B, 2 * H, a.db_h);
    sum_rows(acc_n, B, H, a.db_h + 2 * H);
  }
}

#define RECUR_INSTANTIATE(T)                                                          \
  template void gru_sequence<T>(const GruSequenceArgs<T>&);                           \
  template void gru_sequence_backward<T>(const GruSequenceBackArgs<T>&);              \
  template void lstm_sequence<T>(const LstmSequenceArgs<T>&);                         \
  template void lstm_sequence_backward<T>(const LstmSequenceBackArgs<T>&);            \
  template void rnn_sequence<T>(const RnnSequenceArgs<T>&);                           \
  template void rnn_sequence_backward<T>(const RnnSequenceBackArgs<T>&);              \
  template void gru_rb_sequence<T>(const GruRbSequenceArgs<T>&);                      \
  template void gru_rb_sequence_backward<T>(const GruRbSequenceBackArgs<T>&);
RECUR_INSTANTIATE(float)
RECUR_INSTANTIATE(double)
#undef RECUR_INSTANTIATE

}  // namespace recur::kernels::cpu
