// One fused pointwise step of each recurrent cell: biases, every gate, the
// new state and the saved activations in a single pass over [B, H]. The math
// is rnn_cells.h's, shared with the CPU twin kernels/cpu/rnn_step.cpp.
// This is the "standard" algorithm's per-step kernel; the persistent kernel
// (whole time loop in one launch) is a separate design.
#include "check.h"
#include "grid.cuh"
#include "launch.h"

namespace recur::kernels::cuda {
namespace {

template <class Args, class F>
__global__ void step_kernel(Args args, F element) {
  const std::int64_t n = args.B * args.H;
  for (std::int64_t idx = global_index(); idx < n; idx += global_stride())
    element(args, idx / args.H, idx % args.H);
}

// Adapts an element function (rnn_cells.h) to the functor step_kernel calls.
#define RECUR_ELEMENT_FUNCTOR(Name, Args, fn)                                               \
  struct Name {                                                                             \
    __device__ void operator()(const Args<float>& a, std::int64_t b, std::int64_t j) const { \
      fn(a, b, j);                                                                          \
    }                                                                                       \
  };
RECUR_ELEMENT_FUNCTOR(LstmElement, LstmStepArgs, lstm_step_element)
RECUR_ELEMENT_FUNCTOR(GruElement, GruStepArgs, gru_step_element)
RECUR_ELEMENT_FUNCTOR(LstmBack, LstmBackArgs, lstm_back_element)
RECUR_ELEMENT_FUNCTOR(GruBack, GruBackArgs, gru_back_element)
RECUR_ELEMENT_FUNCTOR(GruRbGates, GruRbGatesArgs, gru_rb_gates_element)
RECUR_ELEMENT_FUNCTOR(GruRbOut, GruRbOutArgs, gru_rb_out_element)
RECUR_ELEMENT_FUNCTOR(GruRbBackN, GruRbBackNArgs, gru_rb_back_n_element)
RECUR_ELEMENT_FUNCTOR(GruRbBackR, GruRbBackRArgs, gru_rb_back_r_element)
// SimpleRNN's activation is a template parameter of its element functions.
template <RnnActivation act>
struct RnnElement {
  __device__ void operator()(const RnnStepArgs<float>& a, std::int64_t b, std::int64_t j) const {
    rnn_step_element<act>(a, b, j);
  }
};
template <RnnActivation act>
struct RnnBack {
  __device__ void operator()(const RnnBackArgs<float>& a, std::int64_t b, std::int64_t j) const {
    rnn_back_element<act>(a, b, j);
  }
};
#undef RECUR_ELEMENT_FUNCTOR

template <class Args, class F>
void launch(const Args& a, F f, cudaStream_t s) {
  const std::int64_t n = a.B * a.H;
  if (n == 0) return;
  step_kernel<<<grid_for(n), kBlock, 0, s>>>(a, f);
  RECUR_CHECK_LAUNCH();
}

}  // namespace

void lstm_step_backward(const LstmBackArgs<float>& a, cudaStream_t s) { launch(a, LstmBack{}, s); }
void gru_rb_gates(const GruRbGatesArgs<float>& a, cudaStream_t s) { launch(a, GruRbGates{}, s); }
void gru_rb_output(const GruRbOutArgs<float>& a, cudaStream_t s) { launch(a, GruRbOut{}, s); }
void gru_rb_back_n(const GruRbBackNArgs<float>& a, cudaStream_t s) { launch(a, GruRbBackN{}, s); }
void gru_rb_back_r(const GruRbBackRArgs<float>& a, cudaStream_t s) { launch(a, GruRbBackR{}, s); }
void gru_step_backward(const GruBackArgs<float>& a, cudaStream_t s) { launch(a, GruBack{}, s); }
void rnn_step_backward(RnnActivation act, const RnnBackArgs<float>& a, cudaStream_t s) {
  if (act == RnnActivation::Tanh)
    launch(a, RnnBack<RnnActivation::Tanh>{}, s);
  else
    launch(a, RnnBack<RnnActivation::Relu>{}, s);
}

void lstm_step(const LstmStepArgs<float>& a, cudaStream_t s) { launch(a, LstmElement{}, s); }
void gru_step(const GruStepArgs<float>& a, cudaStream_t s) { launch(a, GruElement{}, s); }
void rnn_step(RnnActivation act, const RnnStepArgs<float>& a, cudaStream_t s) {
  if (act == RnnActivation::Tanh)
    launch(a, RnnElement<RnnActivation::Tanh>{}, s);
  else
    launch(a, RnnElement<RnnActivation::Relu>{}, s);
}

}  // namespace recur::kernels::cuda
