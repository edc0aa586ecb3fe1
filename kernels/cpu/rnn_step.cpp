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

template void lstm_step<float>(const LstmStepArgs<float>&);
template void lstm_step<double>(const LstmStepArgs<double>&);
template void gru_step<float>(const GruStepArgs<float>&);
template void gru_step<double>(const GruStepArgs<double>&);
template void rnn_step<float>(RnnActivation, const RnnStepArgs<float>&);
template void rnn_step<double>(RnnActivation, const RnnStepArgs<double>&);

}  // namespace recur::kernels::cpu
