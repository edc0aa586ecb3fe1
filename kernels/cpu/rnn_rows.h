// The CPU cell kernels over a range of batch rows [b0, b1) of one step: the
// per-step kernels (rnn_step.cpp) split a step's rows across threads, the
// sequence kernels (rnn_sequence.cpp) give each thread its rows for all steps.
//
// float32 (rnn_rows_f32.cpp) splits per row: a padded row (mask 0) is copied
// through, a valid row runs a branch-free loop over its H units with
// vec_math.h's sigmoid and tanh, which the compiler vectorises. float64, the reference type, runs
// rnn_cells.h's element functions with libm, unchanged. Both compute the
// equations of rnn_cells.h in the same order of operations; only the float
// transcendentals differ (vec_math.h's are within 2.4 ulp, libm's
// expf/tanhf within about one), and the float loops fuse multiply-adds.
//
// SimpleRNN's forward keeps libm's tanhf. One float32 golden gradient of the
// bidirectional masked SimpleRNN (weight_hh_l0_reverse[20] in
// tests/golden/pytorch_rnn.json.gz) is 0.00123 from terms of magnitude 1, so
// its 1e-5 bound (2.8e-7 absolute) is at float32's rounding noise: it holds
// with tanhf's roundings and did not with vtanh's, even when vtanh was
// evaluated in double and was the closer of the two on each value. SimpleRNN
// is not worth loosening that check for.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "recur/kernels/rnn_cells.h"
#include "recur/kernels/vec_math.h"

namespace recur::kernels::cpu {

// n zeros of type T that stay zero (a stand-in for an absent bias, dy or
// dh_next, so the row loops need no null checks); one buffer per thread.
template <class T>
const T* zeros(std::int64_t n) {
  thread_local std::vector<T> z;
  if (std::int64_t(z.size()) < n) z.resize(std::size_t(n), T(0));
  return z.data();
}
template <class T>
const T* or_zeros(const T* p, std::int64_t n) {
  return p ? p : zeros<T>(n);
}

template <class T>
void copy_row(T* dst, const T* src, std::int64_t n) {
  std::memcpy(dst, src, std::size_t(n) * sizeof(T));
}
template <class T>
void zero_row(T* dst, std::int64_t n) {
  std::memset(dst, 0, std::size_t(n) * sizeof(T));
}

// The float32 row loops (rnn_rows_f32.cpp, built for several instruction
// sets and picked at load time where the compiler can).
// The forward ones over units [j0, j1) of each row (the whole row: 0, H).
void gru_rows_f32(const GruStepArgs<float>& a, std::int64_t b0, std::int64_t b1, std::int64_t j0,
                  std::int64_t j1);
void gru_back_rows_f32(const GruBackArgs<float>& a, std::int64_t b0, std::int64_t b1);
void lstm_rows_f32(const LstmStepArgs<float>& a, std::int64_t b0, std::int64_t b1, std::int64_t j0,
                   std::int64_t j1);
void lstm_back_rows_f32(const LstmBackArgs<float>& a, std::int64_t b0, std::int64_t b1);
void rnn_rows_f32(RnnActivation act, const RnnStepArgs<float>& a, std::int64_t b0, std::int64_t b1,
                  std::int64_t j0, std::int64_t j1);
void rnn_back_rows_f32(RnnActivation act, const RnnBackArgs<float>& a, std::int64_t b0, std::int64_t b1);

// ---- GRU (reset_after) --------------------------------------------------------------
// Rows [b0, b1), units [j0, j1) (j1 < 0: to H).
template <class T>
void gru_rows(const GruStepArgs<T>& a, std::int64_t b0, std::int64_t b1, std::int64_t j0 = 0,
              std::int64_t j1 = -1) {
  if (j1 < 0) j1 = a.H;
  if constexpr (!std::is_same_v<T, float>) {
    for (std::int64_t b = b0; b < b1; ++b)
      for (std::int64_t j = j0; j < j1; ++j) gru_step_element(a, b, j);
  } else {
    gru_rows_f32(a, b0, b1, j0, j1);
  }
}

template <class T>
void gru_back_rows(const GruBackArgs<T>& a, std::int64_t b0, std::int64_t b1) {
  if constexpr (!std::is_same_v<T, float>) {
    const std::int64_t H = a.H;
    for (std::int64_t b = b0; b < b1; ++b)
      for (std::int64_t j = 0; j < H; ++j) gru_back_element(a, b, j);
  } else {
    gru_back_rows_f32(a, b0, b1);
  }
}

// ---- LSTM -------------------------------------------------------------------------
// Rows [b0, b1), units [j0, j1) (j1 < 0: to H).
template <class T>
void lstm_rows(const LstmStepArgs<T>& a, std::int64_t b0, std::int64_t b1, std::int64_t j0 = 0,
               std::int64_t j1 = -1) {
  if (j1 < 0) j1 = a.H;
  if constexpr (!std::is_same_v<T, float>) {
    for (std::int64_t b = b0; b < b1; ++b)
      for (std::int64_t j = j0; j < j1; ++j) lstm_step_element(a, b, j);
  } else {
    lstm_rows_f32(a, b0, b1, j0, j1);
  }
}

template <class T>
void lstm_back_rows(const LstmBackArgs<T>& a, std::int64_t b0, std::int64_t b1) {
  if constexpr (!std::is_same_v<T, float>) {
    const std::int64_t H = a.H;
    for (std::int64_t b = b0; b < b1; ++b)
      for (std::int64_t j = 0; j < H; ++j) lstm_back_element(a, b, j);
  } else {
    lstm_back_rows_f32(a, b0, b1);
  }
}

// ---- SimpleRNN ----------------------------------------------------------------------
template <RnnActivation act, class T>
void rnn_rows(const RnnStepArgs<T>& a, std::int64_t b0, std::int64_t b1, std::int64_t j0 = 0,
              std::int64_t j1 = -1) {
  if (j1 < 0) j1 = a.H;
  if constexpr (!std::is_same_v<T, float>) {
    for (std::int64_t b = b0; b < b1; ++b)
      for (std::int64_t j = j0; j < j1; ++j) rnn_step_element<act>(a, b, j);
  } else {
    rnn_rows_f32(act, a, b0, b1, j0, j1);
  }
}

template <RnnActivation act, class T>
void rnn_back_rows(const RnnBackArgs<T>& a, std::int64_t b0, std::int64_t b1) {
  if constexpr (!std::is_same_v<T, float>) {
    const std::int64_t H = a.H;
    for (std::int64_t b = b0; b < b1; ++b)
      for (std::int64_t j = 0; j < H; ++j) rnn_back_element<act>(a, b, j);
  } else {
    rnn_back_rows_f32(act, a, b0, b1);
  }
}

}  // namespace recur::kernels::cpu
