// Gate math of the recurrent cells, written once and used by the CPU twins,
// the CUDA kernels and the float64 test reference.
//
// Conventions (PyTorch's, which Keras's layouts convert to):
//   xproj = x W_ih^T   [B, G*H]   input projection, from one GEMM over all steps
//   hproj = h W_hh^T   [B, G*H]   recurrent projection of the previous state
//   b_ih, b_hh         [G*H]      optional biases (nullptr: none)
// Gate blocks are laid out along G*H in the order below; every row b of
// xproj/hproj is contiguous; rows are ld_x / ld_h elements apart.
//
// LSTM, G = 4, gate order i, f, g, o (PyTorch and Keras agree):
//   i = sigmoid(a_i)  f = sigmoid(a_f)  g = tanh(a_g)  o = sigmoid(a_o)
//   c' = f * c + i * g          h' = o * tanh(c')
//   with a_k = xproj_k + hproj_k + b_ih_k + b_hh_k
// GRU, G = 3, gate order r, z, n (PyTorch; Keras orders z, r, h), reset gate
// applied after the recurrent matmul (cuDNN, PyTorch, Keras reset_after=True):
//   r = sigmoid(xr + b_ir + hr + b_hr)     z = sigmoid(xz + b_iz + hz + b_hz)
//   n = tanh(xn + b_in + r * (hn + b_hn))  h' = (1 - z) * n + z * h
// SimpleRNN, G = 1:  h' = act(xproj + b_ih + hproj + b_hh), act = tanh or relu.
//
// Saved activations (for backward, when `saved` is not nullptr), per row:
//   LSTM [B, 4H]: i, f, g, o        GRU [B, 4H]: r, z, n, hn + b_hn
#pragma once

#include <cstdint>

#include "recur/kernels/math.h"

namespace recur {

enum class RnnActivation : std::uint8_t { Tanh, Relu };

namespace kernels {

template <class T>
struct LstmStepArgs {
  std::int64_t B = 0, H = 0;
  const T* xproj = nullptr;  // [B, 4H], row stride ld_x
  const T* hproj = nullptr;  // [B, 4H], row stride ld_h
  std::int64_t ld_x = 0, ld_h = 0;
  const T* b_ih = nullptr;  // [4H] or nullptr
  const T* b_hh = nullptr;  // [4H] or nullptr
  const T* c_prev = nullptr;  // [B, H]
  T* h = nullptr;      // [B, H] out
  T* c = nullptr;      // [B, H] out
  T* saved = nullptr;  // [B, 4H] out, or nullptr (inference)
};

template <class T>
struct GruStepArgs {
  std::int64_t B = 0, H = 0;
  const T* xproj = nullptr;  // [B, 3H], row stride ld_x
  const T* hproj = nullptr;  // [B, 3H], row stride ld_h
  std::int64_t ld_x = 0, ld_h = 0;
  const T* b_ih = nullptr;    // [3H] or nullptr
  const T* b_hh = nullptr;    // [3H] or nullptr
  const T* h_prev = nullptr;  // [B, H]
  T* h = nullptr;             // [B, H] out
  T* saved = nullptr;         // [B, 4H] out, or nullptr
};

template <class T>
struct RnnStepArgs {
  std::int64_t B = 0, H = 0;
  const T* xproj = nullptr;  // [B, H], row stride ld_x
  const T* hproj = nullptr;  // [B, H], row stride ld_h
  std::int64_t ld_x = 0, ld_h = 0;
  const T* b_ih = nullptr;  // [H] or nullptr
  const T* b_hh = nullptr;  // [H] or nullptr
  T* h = nullptr;           // [B, H] out
};

template <class T>
RECUR_HD T bias_at(const T* b, std::int64_t k) {
  return b ? b[k] : T(0);
}

// One element (b, j) of one LSTM step.
template <class T>
RECUR_HD void lstm_step_element(const LstmStepArgs<T>& a, std::int64_t b, std::int64_t j) {
  const std::int64_t H = a.H;
  const T* xp = a.xproj + b * a.ld_x;
  const T* hp = a.hproj + b * a.ld_h;
  T pre[4];
  RECUR_UNROLL
  for (int k = 0; k < 4; ++k) {
    const std::int64_t col = k * H + j;
    pre[k] = xp[col] + hp[col] + bias_at(a.b_ih, col) + bias_at(a.b_hh, col);
  }
  const T i = sigmoid(pre[0]);
  const T f = sigmoid(pre[1]);
  const T g = rtanh(pre[2]);
  const T o = sigmoid(pre[3]);
  const T c = f * a.c_prev[b * H + j] + i * g;
  a.c[b * H + j] = c;
  a.h[b * H + j] = o * rtanh(c);
  if (a.saved) {
    T* s = a.saved + b * 4 * H;
    s[j] = i;
    s[H + j] = f;
    s[2 * H + j] = g;
    s[3 * H + j] = o;
  }
}

// One element (b, j) of one GRU step (reset_after = true).
template <class T>
RECUR_HD void gru_step_element(const GruStepArgs<T>& a, std::int64_t b, std::int64_t j) {
  const std::int64_t H = a.H;
  const T* xp = a.xproj + b * a.ld_x;
  const T* hp = a.hproj + b * a.ld_h;
  const T r = sigmoid(xp[j] + bias_at(a.b_ih, j) + hp[j] + bias_at(a.b_hh, j));
  const T z = sigmoid(xp[H + j] + bias_at(a.b_ih, H + j) + hp[H + j] + bias_at(a.b_hh, H + j));
  const T hn = hp[2 * H + j] + bias_at(a.b_hh, 2 * H + j);
  const T n = rtanh(xp[2 * H + j] + bias_at(a.b_ih, 2 * H + j) + r * hn);
  const T h_prev = a.h_prev[b * H + j];
  a.h[b * H + j] = (T(1) - z) * n + z * h_prev;
  if (a.saved) {
    T* s = a.saved + b * 4 * H;
    s[j] = r;
    s[H + j] = z;
    s[2 * H + j] = n;
    s[3 * H + j] = hn;
  }
}

// One element (b, j) of one SimpleRNN step.
template <RnnActivation act, class T>
RECUR_HD void rnn_step_element(const RnnStepArgs<T>& a, std::int64_t b, std::int64_t j) {
  const T pre = a.xproj[b * a.ld_x + j] + a.hproj[b * a.ld_h + j] + bias_at(a.b_ih, j) +
                bias_at(a.b_hh, j);
  a.h[b * a.H + j] = act == RnnActivation::Tanh ? rtanh(pre) : relu(pre);
}

}  // namespace kernels
}  // namespace recur
