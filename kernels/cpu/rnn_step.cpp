// CPU twin of kernels/cuda/rnn_step.cu: one fused pointwise step of each cell.
// The math is rnn_cells.h's, shared with the CUDA kernels; the row loops are
// rnn_rows.h's (vectorised for float32).
#include <omp.h>

#include <algorithm>

#include "recur/kernels/cpu.h"
#include "rnn_rows.h"

namespace recur::kernels::cpu {
namespace {
// Runs f(b, j) over the [B, H] grid, in parallel when it pays.
template <class F>
void for_each_bh(std::int64_t B, std::int64_t H, F&& f) {
  const std::int64_t n = B * H;
#pragma omp parallel for schedule(static) if (n >= kParallelThreshold / 16)
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t j = 0; j < H; ++j) f(b, j);
}

// Runs f(b0, b1) over contiguous row ranges covering [0, B): one range per
// thread when the step is large enough to pay for waking the threads (the
// vectorised row loops do a [128, 32] step in microseconds), else one range.
template <class F>
void for_rows(std::int64_t B, std::int64_t H, F&& f) {
  if (B * H < kParallelThreshold || B < 2 || num_threads() < 2) return f(std::int64_t(0), B);
#pragma omp parallel
  {
    const std::int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
    const std::int64_t chunk = (B + nt - 1) / nt;
    const std::int64_t b0 = std::min(B, t * chunk), b1 = std::min(B, b0 + chunk);
    if (b0 < b1) f(b0, b1);
  }
}
}  // namespace

template <class T>
void lstm_step(const LstmStepArgs<T>& a) {
  for_rows(a.B, a.H, [&](std::int64_t b0, std::int64_t b1) { lstm_rows(a, b0, b1); });
}

template <class T>
void gru_step(const GruStepArgs<T>& a) {
  for_rows(a.B, a.H, [&](std::int64_t b0, std::int64_t b1) { gru_rows(a, b0, b1); });
}

template <class T>
void rnn_step(RnnActivation act, const RnnStepArgs<T>& a) {
  for_rows(a.B, a.H, [&](std::int64_t b0, std::int64_t b1) {
    if (act == RnnActivation::Tanh) rnn_rows<RnnActivation::Tanh>(a, b0, b1);
    else rnn_rows<RnnActivation::Relu>(a, b0, b1);
  });
}

template <class T>
void lstm_step_backward(const LstmBackArgs<T>& a) {
  for_rows(a.B, a.H, [&](std::int64_t b0, std::int64_t b1) { lstm_back_rows(a, b0, b1); });
}

template <class T>
void gru_step_backward(const GruBackArgs<T>& a) {
  for_rows(a.B, a.H, [&](std::int64_t b0, std::int64_t b1) { gru_back_rows(a, b0, b1); });
}

template <class T>
void rnn_step_backward(RnnActivation act, const RnnBackArgs<T>& a) {
  for_rows(a.B, a.H, [&](std::int64_t b0, std::int64_t b1) {
    if (act == RnnActivation::Tanh) rnn_back_rows<RnnActivation::Tanh>(a, b0, b1);
    else rnn_back_rows<RnnActivation::Relu>(a, b0, b1);
  });
}

template <class T>
void gru_rb_gates(const GruRbGatesArgs<T>& a) {
  for_each_bh(a.B, a.H, [&](std::int64_t b, std::int64_t j) { gru_rb_gates_element(a, b, j); });
}
template <class T>
void gru_rb_output(const GruRbOutArgs<T>& a) {
  for_each_bh(a.B, a.H, [&](std::int64_t b, std::int64_t j) { gru_rb_out_element(a, b, j); });
}
template <class T>
void gru_rb_back_n(const GruRbBackNArgs<T>& a) {
  for_each_bh(a.B, a.H, [&](std::int64_t b, std::int64_t j) { gru_rb_back_n_element(a, b, j); });
}
template <class T>
void gru_rb_back_r(const GruRbBackRArgs<T>& a) {
  for_each_bh(a.B, a.H, [&](std::int64_t b, std::int64_t j) { gru_rb_back_r_element(a, b, j); });
}

// A copy: bound by memory bandwidth, which two threads barely add to, so it
// takes threads only from 2^20 elements (the Jena GRU's input, 184K, is
// 0.1-0.2 ms on one thread; an OpenMP region costs more than that on a
// loaded machine).
template <class T>
void transpose01(const T* x, std::int64_t A, std::int64_t B, std::int64_t C, bool rev_a,
                 bool rev_b, T* y) {
#pragma omp parallel for schedule(static) if (A * B * C >= (std::int64_t(1) << 20))
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t a = 0; a < A; ++a) {
      const std::int64_t sa = rev_a ? A - 1 - a : a, sb = rev_b ? B - 1 - b : b;
      const T* src = x + (sa * B + sb) * C;
      T* dst = y + (b * A + a) * C;
      for (std::int64_t c = 0; c < C; ++c) dst[c] = src[c];
    }
}

#define RECUR_INSTANTIATE(T)                                                          \
  template void lstm_step_backward<T>(const LstmBackArgs<T>&);                        \
  template void gru_step_backward<T>(const GruBackArgs<T>&);                          \
  template void rnn_step_backward<T>(RnnActivation, const RnnBackArgs<T>&);           \
  template void gru_rb_gates<T>(const GruRbGatesArgs<T>&);                            \
  template void gru_rb_output<T>(const GruRbOutArgs<T>&);                             \
  template void gru_rb_back_n<T>(const GruRbBackNArgs<T>&);                           \
  template void gru_rb_back_r<T>(const GruRbBackRArgs<T>&);                           \
  template void transpose01<T>(const T*, std::int64_t, std::int64_t, std::int64_t, bool, bool, T*);
RECUR_INSTANTIATE(float)
RECUR_INSTANTIATE(double)
#undef RECUR_INSTANTIATE

template void lstm_step<float>(const LstmStepArgs<float>&);
template void lstm_step<double>(const LstmStepArgs<double>&);
template void gru_step<float>(const GruStepArgs<float>&);
template void gru_step<double>(const GruStepArgs<double>&);
template void rnn_step<float>(RnnActivation, const RnnStepArgs<float>&);
template void rnn_step<double>(RnnActivation, const RnnStepArgs<double>&);

}  // namespace recur::kernels::cpu
