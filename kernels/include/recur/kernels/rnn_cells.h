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
// GRU with the reset gate before the recurrent matmul (Keras reset_after=False,
// the original GRU), in two stages around a second GEMM:
//   stage 1: r, z as above from hproj_rz = h W_h[r,z]^T; rh = r * h
//   GEMM:    hn = rh W_hn^T
//   stage 2: n = tanh(xn + b_in + hn + b_hn);  h' = (1 - z) * n + z * h
// (h in r * h is the recurrent-dropout-masked state when that is active.)
// SimpleRNN, G = 1:  h' = act(xproj + b_ih + hproj + b_hh), act = tanh or relu.
//
// Saved activations (for backward, when `saved` is not nullptr), per row:
//   LSTM [B, 4H]: i, f, g, o        GRU [B, 4H]: r, z, n, hn + b_hn
//   GRU reset-before [B, 4H]: r, z, n, r * h
//
// Masking (mask != nullptr; mask[b] == 0 marks row b's step as padding): the
// state carries over unchanged (h' = h, c' = c), the output y is 0, saved
// activations are 0. Outputs y (optional) are the step's h for valid rows.
//
// Backward of one step, per element (b, j), with dh = dh_next + dy (dy only
// for valid rows): the pre-activation gradients `dgates` (LSTM, SimpleRNN: one
// set, the same for xproj, hproj and both biases; GRU: dgates_x for xproj and
// b_ih, dgates_h for hproj and b_hh, which differ in the n block), and the part
// of dh_prev that does not go through W_hh (masked rows: all of dh; GRU: z dh).
// The caller then adds dgates_h W_hh into dh_prev with one GEMM.
#pragma once

#include <cstdint>
#include <type_traits>

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
  const T* h_prev = nullptr;  // [B, H], needed only with a mask
  const T* mask = nullptr;    // [B] or nullptr (all valid)
  T* h = nullptr;      // [B, H] out
  T* c = nullptr;      // [B, H] out
  T* y = nullptr;      // [B, H] out (row stride ld_y), or nullptr
  T* saved = nullptr;  // [B, 4H] out, or nullptr (inference)
  std::int64_t ld_y = 0;  // y's row stride; 0: H
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
  const T* mask = nullptr;    // [B] or nullptr
  T* h = nullptr;             // [B, H] out
  T* y = nullptr;             // [B, H] out (row stride ld_y), or nullptr
  T* saved = nullptr;         // [B, 4H] out, or nullptr
  std::int64_t ld_y = 0;      // y's row stride; 0: H
};

template <class T>
struct RnnStepArgs {
  std::int64_t B = 0, H = 0;
  const T* xproj = nullptr;  // [B, H], row stride ld_x
  const T* hproj = nullptr;  // [B, H], row stride ld_h
  std::int64_t ld_x = 0, ld_h = 0;
  const T* b_ih = nullptr;  // [H] or nullptr
  const T* b_hh = nullptr;  // [H] or nullptr
  const T* h_prev = nullptr;  // [B, H], needed only with a mask
  const T* mask = nullptr;    // [B] or nullptr
  T* h = nullptr;             // [B, H] out
  T* y = nullptr;             // [B, H] out (row stride ld_y), or nullptr
  std::int64_t ld_y = 0;      // y's row stride; 0: H
};

template <class T>
struct LstmBackArgs {
  std::int64_t B = 0, H = 0;
  const T* saved = nullptr;    // [B, 4H] i, f, g, o from the forward step
  const T* c_prev = nullptr;   // [B, H]
  const T* c = nullptr;        // [B, H] this step's cell state
  const T* dy = nullptr;       // [B, H] dL/dy of this step (row stride ld_dy), or nullptr
  const T* dh_next = nullptr;  // [B, H] dL/dh from later steps, or nullptr
  const T* dc_next = nullptr;  // [B, H] dL/dc from later steps, or nullptr
  const T* mask = nullptr;     // [B] or nullptr
  T* dgates = nullptr;         // [B, 4H] out
  T* dh_prev = nullptr;        // [B, H] out: the part not through W_hh
  T* dc_prev = nullptr;        // [B, H] out (may alias dc_next)
  std::int64_t ld_dy = 0;      // dy's row stride; 0: H
};

template <class T>
struct GruBackArgs {
  std::int64_t B = 0, H = 0;
  const T* saved = nullptr;    // [B, 4H] r, z, n, hn
  const T* h_prev = nullptr;   // [B, H]
  const T* dy = nullptr;       // [B, H] (row stride ld_dy) or nullptr
  const T* dh_next = nullptr;  // [B, H] or nullptr
  const T* mask = nullptr;     // [B] or nullptr
  T* dgates_x = nullptr;       // [B, 3H] out
  T* dgates_h = nullptr;       // [B, 3H] out
  T* dh_prev = nullptr;        // [B, H] out: the part not through W_hh
  std::int64_t ld_dy = 0;      // dy's row stride; 0: H
};

template <class T>
struct RnnBackArgs {
  std::int64_t B = 0, H = 0;
  const T* h = nullptr;        // [B, H] this step's output state
  const T* dy = nullptr;       // [B, H] (row stride ld_dy) or nullptr
  const T* dh_next = nullptr;  // [B, H] or nullptr
  const T* mask = nullptr;     // [B] or nullptr
  T* dgates = nullptr;         // [B, H] out
  T* dh_prev = nullptr;        // [B, H] out: the part not through W_hh
  std::int64_t ld_dy = 0;      // dy's row stride; 0: H
};

// GRU reset-before, forward stage 1: r, z and r * h.
template <class T>
struct GruRbGatesArgs {
  std::int64_t B = 0, H = 0;
  const T* xproj = nullptr;    // [B, 3H] (r, z, n blocks)
  const T* hproj_rz = nullptr;  // [B, 2H] = h W_h[r,z]^T
  const T* b_ih = nullptr;     // [3H] or nullptr
  const T* b_hh = nullptr;     // [3H] or nullptr
  const T* h_in = nullptr;     // [B, H] the state the matmuls see (dropout-masked)
  T* rh = nullptr;             // [B, H] out: r * h_in
  T* saved = nullptr;          // [B, 4H] out: r, z (and r*h) written here
};
// GRU reset-before, forward stage 2: n and the new state.
template <class T>
struct GruRbOutArgs {
  std::int64_t B = 0, H = 0;
  const T* xproj = nullptr;   // [B, 3H]
  const T* hn = nullptr;      // [B, H] = (r * h) W_hn^T
  const T* b_ih = nullptr;    // [3H] or nullptr
  const T* b_hh = nullptr;    // [3H] or nullptr
  const T* h_prev = nullptr;  // [B, H]
  const T* mask = nullptr;    // [B] or nullptr
  T* saved = nullptr;         // [B, 4H] in: r, z; out: n
  T* h = nullptr;             // [B, H] out
  T* y = nullptr;             // [B, H] out (row stride ld_y), or nullptr
  std::int64_t ld_y = 0;      // y's row stride; 0: H
};
// GRU reset-before, backward stage 1: everything but the reset gate.
template <class T>
struct GruRbBackNArgs {
  std::int64_t B = 0, H = 0;
  const T* saved = nullptr;    // [B, 4H] r, z, n, r*h
  const T* h_prev = nullptr;   // [B, H]
  const T* dy = nullptr;       // [B, H] (row stride ld_dy) or nullptr
  const T* dh_next = nullptr;  // [B, H] or nullptr
  const T* mask = nullptr;     // [B] or nullptr
  T* dgates_x = nullptr;       // [B, 3H] out: z and n blocks (r in stage 2)
  T* dgates_rz = nullptr;      // [B, 2H] out: z block (r in stage 2)
  T* dgates_n = nullptr;       // [B, H] out: d pre-activation of n
  T* dh_prev = nullptr;        // [B, H] out: the direct part
  std::int64_t ld_dy = 0;      // dy's row stride; 0: H
};
// GRU reset-before, backward stage 2, after drh = dgates_n W_hn: the reset gate.
template <class T>
struct GruRbBackRArgs {
  std::int64_t B = 0, H = 0;
  const T* saved = nullptr;   // [B, 4H]
  const T* h_in = nullptr;    // [B, H] the state the matmuls saw
  const T* drh = nullptr;     // [B, H] dL/d(r * h_in)
  const T* mask = nullptr;    // [B] or nullptr
  T* dgates_x = nullptr;      // [B, 3H] out: r block
  T* dgates_rz = nullptr;     // [B, 2H] out: r block
  T* dh_in = nullptr;         // [B, H] out: dL/dh_in through r * h_in
};

template <class T>
RECUR_HD T bias_at(const T* b, std::int64_t k) {
  return b ? b[k] : T(0);
}

template <class T>
RECUR_HD bool row_valid(const T* mask, std::int64_t b) {
  return !mask || mask[b] != T(0);
}

// A row stride given as 0 means H (rows packed).
RECUR_HD std::int64_t row_stride(std::int64_t ld, std::int64_t H) { return ld ? ld : H; }

// dL/dh of a step's output state, element (b, j): from later steps, plus the
// step's own output for valid rows (a padded step's output is the constant 0).
template <class A, class T = std::remove_const_t<std::remove_pointer_t<decltype(A::dy)>>>
RECUR_HD T step_dh(const A& a, bool valid, std::int64_t b, std::int64_t j) {
  return (a.dh_next ? a.dh_next[b * a.H + j] : T(0)) +
         (valid && a.dy ? a.dy[b * row_stride(a.ld_dy, a.H) + j] : T(0));
}

// One element (b, j) of one LSTM step.
template <class T>
RECUR_HD void lstm_step_element(const LstmStepArgs<T>& a, std::int64_t b, std::int64_t j) {
  const std::int64_t H = a.H, e = b * H + j;
  if (!row_valid(a.mask, b)) {
    a.c[e] = a.c_prev[e];
    a.h[e] = a.h_prev[e];
    if (a.y) a.y[b * row_stride(a.ld_y, a.H) + j] = T(0);
    if (a.saved)
      for (int k = 0; k < 4; ++k) a.saved[b * 4 * H + k * H + j] = T(0);
    return;
  }
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
  const T c = f * a.c_prev[e] + i * g;
  const T h = o * rtanh(c);
  a.c[e] = c;
  a.h[e] = h;
  if (a.y) a.y[b * row_stride(a.ld_y, a.H) + j] = h;
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
  const std::int64_t H = a.H, e = b * H + j;
  if (!row_valid(a.mask, b)) {
    a.h[e] = a.h_prev[e];
    if (a.y) a.y[b * row_stride(a.ld_y, a.H) + j] = T(0);
    if (a.saved)
      for (int k = 0; k < 4; ++k) a.saved[b * 4 * H + k * H + j] = T(0);
    return;
  }
  const T* xp = a.xproj + b * a.ld_x;
  const T* hp = a.hproj + b * a.ld_h;
  const T r = sigmoid(xp[j] + bias_at(a.b_ih, j) + hp[j] + bias_at(a.b_hh, j));
  const T z = sigmoid(xp[H + j] + bias_at(a.b_ih, H + j) + hp[H + j] + bias_at(a.b_hh, H + j));
  const T hn = hp[2 * H + j] + bias_at(a.b_hh, 2 * H + j);
  const T n = rtanh(xp[2 * H + j] + bias_at(a.b_ih, 2 * H + j) + r * hn);
  const T h = (T(1) - z) * n + z * a.h_prev[e];
  a.h[e] = h;
  if (a.y) a.y[b * row_stride(a.ld_y, a.H) + j] = h;
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
  const std::int64_t e = b * a.H + j;
  if (!row_valid(a.mask, b)) {
    a.h[e] = a.h_prev[e];
    if (a.y) a.y[b * row_stride(a.ld_y, a.H) + j] = T(0);
    return;
  }
  const T pre = a.xproj[b * a.ld_x + j] + a.hproj[b * a.ld_h + j] + bias_at(a.b_ih, j) +
                bias_at(a.b_hh, j);
  const T h = act == RnnActivation::Tanh ? rtanh(pre) : relu(pre);
  a.h[e] = h;
  if (a.y) a.y[b * row_stride(a.ld_y, a.H) + j] = h;
}

// Backward of one LSTM step, element (b, j).
template <class T>
RECUR_HD void lstm_back_element(const LstmBackArgs<T>& a, std::int64_t b, std::int64_t j) {
  const std::int64_t H = a.H, e = b * H + j;
  const bool valid = row_valid(a.mask, b);
  const T dh = step_dh(a, valid, b, j);
  const T dc_next = a.dc_next ? a.dc_next[e] : T(0);
  T* dg = a.dgates + b * 4 * H;
  if (!valid) {
    for (int k = 0; k < 4; ++k) dg[k * H + j] = T(0);
    a.dh_prev[e] = dh;
    a.dc_prev[e] = dc_next;
    return;
  }
  const T* s = a.saved + b * 4 * H;
  const T i = s[j], f = s[H + j], g = s[2 * H + j], o = s[3 * H + j];
  const T tc = rtanh(a.c[e]);
  const T dc = dc_next + dh * o * (T(1) - tc * tc);
  dg[j] = dc * g * i * (T(1) - i);
  dg[H + j] = dc * a.c_prev[e] * f * (T(1) - f);
  dg[2 * H + j] = dc * i * (T(1) - g * g);
  dg[3 * H + j] = dh * tc * o * (T(1) - o);
  a.dc_prev[e] = dc * f;
  a.dh_prev[e] = T(0);
}

// Backward of one GRU step (reset_after = true), element (b, j).
template <class T>
RECUR_HD void gru_back_element(const GruBackArgs<T>& a, std::int64_t b, std::int64_t j) {
  const std::int64_t H = a.H, e = b * H + j;
  const bool valid = row_valid(a.mask, b);
  const T dh = step_dh(a, valid, b, j);
  T* dx = a.dgates_x + b * 3 * H;
  T* dhg = a.dgates_h + b * 3 * H;
  if (!valid) {
    for (int k = 0; k < 3; ++k) dx[k * H + j] = dhg[k * H + j] = T(0);
    a.dh_prev[e] = dh;
    return;
  }
  const T* s = a.saved + b * 4 * H;
  const T r = s[j], z = s[H + j], n = s[2 * H + j], hn = s[3 * H + j];
  const T dan = dh * (T(1) - z) * (T(1) - n * n);
  const T dar = dan * hn * r * (T(1) - r);
  const T daz = dh * (a.h_prev[e] - n) * z * (T(1) - z);
  dx[j] = dhg[j] = dar;
  dx[H + j] = dhg[H + j] = daz;
  dx[2 * H + j] = dan;
  dhg[2 * H + j] = dan * r;
  a.dh_prev[e] = dh * z;
}

// Backward of one SimpleRNN step, element (b, j).
template <RnnActivation act, class T>
RECUR_HD void rnn_back_element(const RnnBackArgs<T>& a, std::int64_t b, std::int64_t j) {
  const std::int64_t e = b * a.H + j;
  const bool valid = row_valid(a.mask, b);
  const T dh = step_dh(a, valid, b, j);
  if (!valid) {
    a.dgates[e] = T(0);
    a.dh_prev[e] = dh;
    return;
  }
  const T h = a.h[e];
  a.dgates[e] = act == RnnActivation::Tanh ? dh * (T(1) - h * h) : (h > T(0) ? dh : T(0));
  a.dh_prev[e] = T(0);
}

// GRU reset-before: forward stage 1, element (b, j).
template <class T>
RECUR_HD void gru_rb_gates_element(const GruRbGatesArgs<T>& a, std::int64_t b, std::int64_t j) {
  const std::int64_t H = a.H, e = b * H + j;
  const T* xp = a.xproj + b * 3 * H;
  const T* hp = a.hproj_rz + b * 2 * H;
  const T r = sigmoid(xp[j] + bias_at(a.b_ih, j) + hp[j] + bias_at(a.b_hh, j));
  const T z = sigmoid(xp[H + j] + bias_at(a.b_ih, H + j) + hp[H + j] + bias_at(a.b_hh, H + j));
  const T rh = r * a.h_in[e];
  a.rh[e] = rh;
  T* s = a.saved + b * 4 * H;
  s[j] = r;
  s[H + j] = z;
  s[3 * H + j] = rh;
}

// GRU reset-before: forward stage 2, element (b, j).
template <class T>
RECUR_HD void gru_rb_out_element(const GruRbOutArgs<T>& a, std::int64_t b, std::int64_t j) {
  const std::int64_t H = a.H, e = b * H + j;
  T* s = a.saved + b * 4 * H;
  if (!row_valid(a.mask, b)) {
    a.h[e] = a.h_prev[e];
    if (a.y) a.y[b * row_stride(a.ld_y, a.H) + j] = T(0);
    for (int k = 0; k < 4; ++k) s[k * H + j] = T(0);
    return;
  }
  const T z = s[H + j];
  const T n = rtanh(a.xproj[b * 3 * H + 2 * H + j] + bias_at(a.b_ih, 2 * H + j) + a.hn[e] +
                    bias_at(a.b_hh, 2 * H + j));
  s[2 * H + j] = n;
  const T h = (T(1) - z) * n + z * a.h_prev[e];
  a.h[e] = h;
  if (a.y) a.y[b * row_stride(a.ld_y, a.H) + j] = h;
}

// GRU reset-before: backward stage 1, element (b, j).
template <class T>
RECUR_HD void gru_rb_back_n_element(const GruRbBackNArgs<T>& a, std::int64_t b, std::int64_t j) {
  const std::int64_t H = a.H, e = b * H + j;
  const bool valid = row_valid(a.mask, b);
  const T dh = step_dh(a, valid, b, j);
  T* dx = a.dgates_x + b * 3 * H;
  T* drz = a.dgates_rz + b * 2 * H;
  if (!valid) {
    dx[H + j] = dx[2 * H + j] = drz[H + j] = a.dgates_n[e] = T(0);
    a.dh_prev[e] = dh;
    return;
  }
  const T* s = a.saved + b * 4 * H;
  const T z = s[H + j], n = s[2 * H + j];
  const T dan = dh * (T(1) - z) * (T(1) - n * n);
  const T daz = dh * (a.h_prev[e] - n) * z * (T(1) - z);
  dx[H + j] = drz[H + j] = daz;
  dx[2 * H + j] = a.dgates_n[e] = dan;
  a.dh_prev[e] = dh * z;
}

// GRU reset-before: backward stage 2, element (b, j).
template <class T>
RECUR_HD void gru_rb_back_r_element(const GruRbBackRArgs<T>& a, std::int64_t b, std::int64_t j) {
  const std::int64_t H = a.H, e = b * H + j;
  T* dx = a.dgates_x + b * 3 * H;
  T* drz = a.dgates_rz + b * 2 * H;
  if (!row_valid(a.mask, b)) {
    dx[j] = drz[j] = a.dh_in[e] = T(0);
    return;
  }
  const T r = a.saved[b * 4 * H + j];
  const T dar = a.drh[e] * a.h_in[e] * r * (T(1) - r);
  dx[j] = drz[j] = dar;
  a.dh_in[e] = a.drh[e] * r;
}

}  // namespace kernels
}  // namespace recur
