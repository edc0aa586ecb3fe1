// A whole recurrent pass over time in one call, for the CPU: the batch rows
// are split into contiguous chunks, and each thread runs every time step of
// its chunk, the recurrent GEMM included (rows of a GEMM are independent), so
// the threads never wait for each other between steps. Per step that is the
// work of rnn_cells.h's step kernels and one GEMM, with their equations,
// layouts and masking; the inputs' projection x W_ih^T (one GEMM over all
// steps) and the weight gradients (GEMMs over all steps) stay with the caller.
//
// Layouts: time-major, in processing order (ys and dys may be strided).
// T steps, B rows, H units, G gates.
#pragma once

#include <cstdint>

#include "recur/kernels/rnn_cells.h"

namespace recur::kernels {

// GRU with reset_after (G = 3).
template <class Real>
struct GruSequenceArgs {
  std::int64_t T = 0, B = 0, H = 0;
  const Real* xproj = nullptr;  // [T, B, 3H] (or nullptr with x below)
  const Real* w_hh = nullptr;   // [3H, H]
  const Real* b_ih = nullptr;   // [3H] or nullptr
  const Real* b_hh = nullptr;   // [3H] or nullptr
  const Real* mask = nullptr;   // [T, B] or nullptr
  // all_states: [T + 1, B, H], hs[0] the initial state (in), hs[t + 1] the
  // state after step t (out). Else [2, B, H]: the states alternate, the
  // initial one in hs[0] and the last in hs[T % 2].
  Real* hs = nullptr;
  bool all_states = true;
  Real* ys = nullptr;     // [T, B, H] out, or nullptr
  // Step t's row b of ys at ys[t ys_step + b ys_row]; 0, 0: time-major
  // (B H, H). The CPU passes take any strides (a batch-major [B, T, H]:
  // H, T H), the CUDA ones time-major only.
  std::int64_t ys_step = 0, ys_row = 0;
  Real* saved = nullptr;  // [T, B, 4H] out, or nullptr
  Real* hproj = nullptr;  // [B, 3H] workspace
  // Recurrent dropout: the recurrent matmul reads h_prev * rec_mask; the
  // blend z * h_prev and masked steps use h_prev itself (rnn_cells.h).
  const Real* rec_mask = nullptr;  // [B, H] or nullptr
  Real* h_work = nullptr;          // [B, H] workspace, needed with rec_mask
  // CPU only, instead of xproj: the input itself, x [B, T, I] batch-major in
  // input order (step t reads x[:, t], or x[:, T - 1 - t] with x_reversed),
  // and w_ih [G H, I]. Each step's rows of x W_ih^T are then computed in the
  // pass, just before the recurrent product, into xproj_work [B, G H]: no
  // time-major copy of x and no [T, B, G H] projection in memory. Not for a
  // float32 pass that splits its units (cpu.h's rnn_unit_split_threads).
  const Real* x = nullptr;
  const Real* w_ih = nullptr;
  std::int64_t I = 0;
  bool x_reversed = false;
  Real* xproj_work = nullptr;
};

template <class Real>
struct GruSequenceBackArgs {
  std::int64_t T = 0, B = 0, H = 0;
  const Real* saved = nullptr;  // [T, B, 4H] from the forward pass
  const Real* hs = nullptr;     // [T + 1, B, H] from the forward pass
  const Real* dys = nullptr;    // [T, B, H] dL/dy per step, or nullptr
  std::int64_t dys_step = 0, dys_row = 0;  // as ys_step, ys_row of the forward pass
  const Real* mask = nullptr;   // [T, B] or nullptr
  const Real* w_hh = nullptr;   // [3H, H]
  Real* dh = nullptr;           // [B, H] in: dL/dh after the last step; out: dL/d(initial state)
  Real* dh_work = nullptr;      // [B, H] workspace
  Real* dgates_x = nullptr;     // [T, B, 3H] out
  Real* dgates_h = nullptr;     // [T, B, 3H] out
  // Optional: the sums of dgates_x and dgates_h over every step and row (the
  // bias gradients), accumulated in double per row, then over the rows in
  // order, so they do not depend on the thread count. sum_work: [B, 4H]
  // doubles, needed with them.
  Real* db_x = nullptr;         // [3H] out, or nullptr
  Real* db_h = nullptr;         // [3H] out, or nullptr (both or neither)
  double* sum_work = nullptr;
  // Recurrent dropout of the forward pass: its matmul read h_prev * rec_mask,
  // so dh_prev gets (dgates_h W_hh) * rec_mask. rec_work: [B, H], needed with it.
  const Real* rec_mask = nullptr;  // [B, H] or nullptr
  Real* rec_work = nullptr;
};

// LSTM (G = 4).
template <class Real>
struct LstmSequenceArgs {
  std::int64_t T = 0, B = 0, H = 0;
  const Real* xproj = nullptr;  // [T, B, 4H] (or nullptr with x below)
  const Real* w_hh = nullptr;   // [4H, H]
  const Real* b_ih = nullptr;   // [4H] or nullptr
  const Real* b_hh = nullptr;   // [4H] or nullptr
  const Real* mask = nullptr;   // [T, B] or nullptr
  // all_states: hs and cs [T + 1, B, H] as GruSequenceArgs::hs. Else hs is
  // [2, B, H] (alternating) and cs [1, B, H], updated in place.
  Real* hs = nullptr;
  Real* cs = nullptr;
  bool all_states = true;
  Real* ys = nullptr;     // [T, B, H] out, or nullptr
  // Step t's row b of ys at ys[t ys_step + b ys_row]; 0, 0: time-major
  // (B H, H). The CPU passes take any strides (a batch-major [B, T, H]:
  // H, T H), the CUDA ones time-major only.
  std::int64_t ys_step = 0, ys_row = 0;
  Real* saved = nullptr;  // [T, B, 4H] out, or nullptr
  Real* hproj = nullptr;  // [B, 4H] workspace
  const Real* rec_mask = nullptr;  // [B, H] or nullptr, as GruSequenceArgs
  Real* h_work = nullptr;          // [B, H] workspace, needed with rec_mask
  // CPU only, instead of xproj: the input itself, x [B, T, I] batch-major in
  // input order (step t reads x[:, t], or x[:, T - 1 - t] with x_reversed),
  // and w_ih [G H, I]. Each step's rows of x W_ih^T are then computed in the
  // pass, just before the recurrent product, into xproj_work [B, G H]: no
  // time-major copy of x and no [T, B, G H] projection in memory. Not for a
  // float32 pass that splits its units (cpu.h's rnn_unit_split_threads).
  const Real* x = nullptr;
  const Real* w_ih = nullptr;
  std::int64_t I = 0;
  bool x_reversed = false;
  Real* xproj_work = nullptr;
};

template <class Real>
struct LstmSequenceBackArgs {
  std::int64_t T = 0, B = 0, H = 0;
  const Real* saved = nullptr;  // [T, B, 4H] from the forward pass
  const Real* cs = nullptr;     // [T + 1, B, H] from the forward pass
  const Real* dys = nullptr;    // [T, B, H] or nullptr
  std::int64_t dys_step = 0, dys_row = 0;  // as ys_step, ys_row of the forward pass
  const Real* mask = nullptr;   // [T, B] or nullptr
  const Real* w_hh = nullptr;   // [4H, H]
  Real* dh = nullptr;           // [B, H] in: dL/dh after the last step; out: dL/dh_0
  Real* dc = nullptr;           // [B, H] in: dL/dc after the last step; out: dL/dc_0
  Real* dh_work = nullptr;      // [B, H] workspace
  Real* dgates = nullptr;       // [T, B, 4H] out
  // Optional: the sum of dgates over every step and row, as GruSequenceBackArgs.
  Real* db = nullptr;           // [4H] out, or nullptr
  double* sum_work = nullptr;   // [B, 4H] doubles, needed with db
  const Real* rec_mask = nullptr;  // [B, H] or nullptr, as GruSequenceBackArgs
  Real* rec_work = nullptr;        // [B, H] workspace, needed with rec_mask
};

// SimpleRNN (G = 1): h' = act(xproj + b_ih + (h * rec_mask) W_hh^T + b_hh).
// Nothing is saved: the backward pass reads the states.
template <class Real>
struct RnnSequenceArgs {
  std::int64_t T = 0, B = 0, H = 0;
  RnnActivation activation = RnnActivation::Tanh;
  const Real* xproj = nullptr;  // [T, B, H] (or nullptr with x below)
  const Real* w_hh = nullptr;   // [H, H]
  const Real* b_ih = nullptr;   // [H] or nullptr
  const Real* b_hh = nullptr;   // [H] or nullptr
  const Real* mask = nullptr;   // [T, B] or nullptr
  Real* hs = nullptr;           // as GruSequenceArgs::hs
  bool all_states = true;
  Real* ys = nullptr;           // [T, B, H] out, or nullptr
  // Step t's row b of ys at ys[t ys_step + b ys_row]; 0, 0: time-major
  // (B H, H). The CPU passes take any strides (a batch-major [B, T, H]:
  // H, T H), the CUDA ones time-major only.
  std::int64_t ys_step = 0, ys_row = 0;
  Real* hproj = nullptr;        // [B, H] workspace
  const Real* rec_mask = nullptr;  // [B, H] or nullptr
  Real* h_work = nullptr;          // [B, H] workspace, needed with rec_mask
  // CPU only, instead of xproj: the input itself, x [B, T, I] batch-major in
  // input order (step t reads x[:, t], or x[:, T - 1 - t] with x_reversed),
  // and w_ih [G H, I]. Each step's rows of x W_ih^T are then computed in the
  // pass, just before the recurrent product, into xproj_work [B, G H]: no
  // time-major copy of x and no [T, B, G H] projection in memory. Not for a
  // float32 pass that splits its units (cpu.h's rnn_unit_split_threads).
  const Real* x = nullptr;
  const Real* w_ih = nullptr;
  std::int64_t I = 0;
  bool x_reversed = false;
  Real* xproj_work = nullptr;
};

template <class Real>
struct RnnSequenceBackArgs {
  std::int64_t T = 0, B = 0, H = 0;
  RnnActivation activation = RnnActivation::Tanh;
  const Real* hs = nullptr;     // [T + 1, B, H] from the forward pass
  const Real* dys = nullptr;    // [T, B, H] or nullptr
  std::int64_t dys_step = 0, dys_row = 0;  // as ys_step, ys_row of the forward pass
  const Real* mask = nullptr;   // [T, B] or nullptr
  const Real* w_hh = nullptr;   // [H, H]
  Real* dh = nullptr;           // [B, H] in/out, as GruSequenceBackArgs
  Real* dh_work = nullptr;      // [B, H] workspace
  Real* dgates = nullptr;       // [T, B, H] out
  Real* db = nullptr;           // [H] out, or nullptr (the sum of dgates)
  double* sum_work = nullptr;   // [B, H] doubles, needed with db
  const Real* rec_mask = nullptr;  // [B, H] or nullptr
  Real* rec_work = nullptr;        // [B, H] workspace, needed with rec_mask
};

// GRU with the reset gate before the recurrent matmul (Keras
// reset_after=False; rnn_cells.h's two stages): per step h_in = h * rec_mask,
// hproj_rz = h_in W_h[r,z]^T, r, z and rh = r * h_in, hn = rh W_hn^T, then n
// and h'. saved [T, B, 4H]: r, z, n, rh (what the step ops save).
template <class Real>
struct GruRbSequenceArgs {
  std::int64_t T = 0, B = 0, H = 0;
  const Real* xproj = nullptr;  // [T, B, 3H]
  const Real* w_hh = nullptr;   // [3H, H]
  const Real* b_ih = nullptr;   // [3H] or nullptr
  const Real* b_hh = nullptr;   // [3H] or nullptr
  const Real* mask = nullptr;   // [T, B] or nullptr
  Real* hs = nullptr;           // as GruSequenceArgs::hs
  bool all_states = true;
  Real* ys = nullptr;           // [T, B, H] out, or nullptr
  // Step t's row b of ys at ys[t ys_step + b ys_row]; 0, 0: time-major
  // (B H, H). The CPU passes take any strides (a batch-major [B, T, H]:
  // H, T H), the CUDA ones time-major only.
  std::int64_t ys_step = 0, ys_row = 0;
  Real* saved = nullptr;        // [T, B, 4H] out, or nullptr (inference)
  const Real* rec_mask = nullptr;  // [B, H] or nullptr
  // Workspaces: hproj_rz [B, 2H], hn [B, H], rh [B, H], h_work [B, H] (with
  // rec_mask), saved_work [B, 4H] (without saved).
  Real* hproj = nullptr;
  Real* hn = nullptr;
  Real* rh = nullptr;
  Real* h_work = nullptr;
  Real* saved_work = nullptr;
};

template <class Real>
struct GruRbSequenceBackArgs {
  std::int64_t T = 0, B = 0, H = 0;
  const Real* saved = nullptr;  // [T, B, 4H] from the forward pass
  const Real* hs = nullptr;     // [T + 1, B, H] from the forward pass
  const Real* dys = nullptr;    // [T, B, H] or nullptr
  std::int64_t dys_step = 0, dys_row = 0;  // as ys_step, ys_row of the forward pass
  const Real* mask = nullptr;   // [T, B] or nullptr
  const Real* w_hh = nullptr;   // [3H, H]
  Real* dh = nullptr;           // [B, H] in/out
  Real* dgates_x = nullptr;     // [T, B, 3H] out: for xproj and b_ih
  Real* dgates_rz = nullptr;    // [T, B, 2H] out: for hproj_rz (W_h[r,z], b_h[r,z])
  Real* dgates_n = nullptr;     // [T, B, H] out: for hn (W_hn, b_hn)
  // Optional sums over every step and row: db_x [3H] of dgates_x; db_h [3H]
  // of dgates_rz then dgates_n (both or neither); sum_work [B, 6H] doubles.
  Real* db_x = nullptr;
  Real* db_h = nullptr;
  double* sum_work = nullptr;
  const Real* rec_mask = nullptr;  // [B, H] or nullptr
  // Workspaces [B, H]: dh_work, drh, dh_in, h_in (with rec_mask).
  Real* dh_work = nullptr;
  Real* drh = nullptr;
  Real* dh_in = nullptr;
  Real* h_in = nullptr;
};

}  // namespace recur::kernels
