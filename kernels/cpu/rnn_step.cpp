// CPU twin of kernels/cuda/rnn_step.cu: one fused pointwise step of each cell.
// The math is rnn_cells.h's, shared with the CUDA kernels.
#include "recur/kernels/cpu.h"

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
}  // namespace

template <class T>
void lstm_step(const LstmStepArgs<T>& a) {
  for_each_bh(a.B, a.H, [&](std::int64_t b, std::int64_t j) { lstm_step_element(a, b, j); });
}

template <class T>
void gru_step(const GruStepArgs<T>& a) {
  for_each_bh(a.B, a.H, [&](std::int64_t b, std::int64_t j) { gru_step_element(a, b, j); });
}

template <class T>
void rnn_step(RnnActivation act, const RnnStepArgs<T>& a) {
  if (act == RnnActivation::Tanh)
    for_each_bh(a.B, a.H, [&](std::int64_t b, std::int64_t j) {
      rnn_step_element<RnnActivation::Tanh>(a, b, j);
    });
  else
    for_each_bh(a.B, a.H, [&](std::int64_t b, std::int64_t j) {
      rnn_step_element<RnnActivation::Relu>(a, b, j);
    });
}

template <class T>
void lstm_step_backward(const LstmBackArgs<T>& a) {
  for_each_bh(a.B, a.H, [&](std::int64_t b, std::int64_t j) { lstm_back_element(a, b, j); });
}

template <class T>
void gru_step_backward(const GruBackArgs<T>& a) {
  for_each_bh(a.B, a.H, [&](std::int64_t b, std::int64_t j) { gru_back_element(a, b, j); });
}

template <class T>
void rnn_step_backward(RnnActivation act, const RnnBackArgs<T>& a) {
  if (act == RnnActivation::Tanh)
    for_each_bh(a.B, a.H, [&](std::int64_t b, std::int64_t j) {
      rnn_back_element<RnnActivation::Tanh>(a, b, j);
    });
  else
    for_each_bh(a.B, a.H, [&](std::int64_t b, std::int64_t j) {
      rnn_back_element<RnnActivation::Relu>(a, b, j);
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

template <class T>
void transpose01(const T* x, std::int64_t A, std::int64_t B, std::int64_t C, bool rev_a,
                 bool rev_b, T* y) {
#pragma omp parallel for schedule(static) if (A * B * C >= kParallelThreshold)
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
