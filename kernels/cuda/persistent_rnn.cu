// Persistent-RNN kernels (docs/persistent.md): forward in the BlockLocal and
// Grid regimes; below them the BlockLocal backward kernels and the
// reset-before GRU's pair of BlockLocal kernels.
//
// BlockLocal forward:
// one launch runs all T steps of a GRU (reset_after), LSTM or SimpleRNN layer. Each
// block owns `RT` rows of the batch and all H units, keeps W_hh in shared
// memory for the whole pass, and synchronises only with itself, once per
// step. The gate math is rnn_cells.h's element functions, the same the CPU
// twin (kernels/cpu/rnn_sequence.cpp) and the step kernels call.
//
// The GRU/LSTM BlockLocal and Grid forward kernels passed their tests on an
// H100 (2026-12-05); the backward kernels, the SimpleRNN path and the
// reset-before kernels were written afterwards and have NOT YET RUN ON A GPU
// (the CUDA backend uses them only with RECUR_PERSISTENT=1).
//
// Per step t, in one block (threads = H * ksplit; `ksplit` lanes share the
// dot products of one unit j, over k = lane, lane + ksplit, ...):
//   1. start copying the input projection of step t + 1 into shared memory
//      (cp.async, completes while this step computes);
//   2. each lane group computes, for its unit j and every row r of the block,
//      the G dot products W_hh[g H + j, :] . hin[r, :]; a butterfly of
//      shuffles leaves the sums in every lane of the group;
//   3. lane (r mod ksplit) of the group runs the cell's element function for
//      (r, j): it writes the step's hproj into shared memory and reads it
//      back itself, so no barrier is needed between matmul and gates;
//      the new state goes to the other state buffer (double-buffered), the
//      recurrent-dropout product to the other `hin` buffer, outputs and
//      saved activations straight to global memory;
//   4. wait for the copy of step t + 1, then __syncthreads(): the one barrier.
//
// Grid (W_hh larger than a block's shared memory): block i keeps the G gate
// rows of `units` consecutive hidden units, for all B rows; the grid is
// launched cooperatively (all blocks resident) and ends every step with
// grid.sync(). Per step and tile of RT rows: the previous state of the tile
// (all H units, written by every block in the previous step) is read from
// global memory through L2 (__ldcg: L1 is not coherent across SMs) into
// shared memory, recurrent dropout applied; then the dot products as above,
// and the element function for (r, j) with everything else in global memory:
// hproj goes to a [B, G H] scratch and is read back by the thread that wrote
// it, states are hs/cs themselves (each element read and written by one
// thread, the same at every step).
#include <cooperative_groups.h>
#include <cuda_pipeline.h>

#include <climits>
#include <string>

#include "check.h"
#include "persistent_rnn.h"
#include "recur/common/error.h"
#include "recur/kernels/rnn_cells.h"

namespace recur::kernels::cuda {
namespace {

// The kernel's view of a pass (both cells).
struct PassParams {
  int T = 0, B = 0, H = 0, ksplit = 1, w_ld = 0;
  const float* xproj = nullptr;  // [T, B, G H]
  const float* w_hh = nullptr;   // [G H, H]
  const float* b_ih = nullptr;   // [G H] or nullptr
  const float* b_hh = nullptr;
  const float* mask = nullptr;      // [T, B] or nullptr
  const float* rec_mask = nullptr;  // [B, H] or nullptr
  float* hs = nullptr;  // all_states: [T + 1, B, H]; else [2, B, H] (last state into hs[T % 2])
  float* cs = nullptr;  // LSTM: all_states: [T + 1, B, H]; else [1, B, H] (in place)
  bool all_states = true;
  float* ys = nullptr;     // [T, B, H] or nullptr
  float* saved = nullptr;  // [T, B, 4H] or nullptr
};

// The cell a block-local kernel is compiled for (SimpleRNN with its activation).
enum CellKind : int { kCellGru = 0, kCellLstm = 1, kCellRnnTanh = 2, kCellRnnRelu = 3 };
__host__ __device__ constexpr int cell_gates(int cell) {
  return cell == kCellLstm ? 4 : cell == kCellGru ? 3 : 1;
}
__host__ __device__ constexpr bool is_rnn(int cell) { return cell == kCellRnnTanh || cell == kCellRnnRelu; }
constexpr const char* cell_label(int cell) {
  return cell == kCellLstm ? "LSTM" : cell == kCellGru ? "GRU" : "SimpleRNN";
}

// Copies `n` floats global -> shared with cp.async (4-byte pieces: rows of
// G H floats need not be 16-byte aligned). The caller commits and waits.
__device__ __forceinline__ void copy_async(float* dst, const float* src, int n) {
  for (int i = threadIdx.x; i < n; i += blockDim.x) __pipeline_memcpy_async(dst + i, src + i, sizeof(float));
  __pipeline_commit();
}

// Registers for a tile's G x RT dot products of one unit over k = lane, lane
// + ks, ...: w(g, k) returns the unit's weight of gate g at k, h from `tile`
// ([RT, H], `rows` valid). Leaves the sums in every lane of the group.
template <int G, int RT, class W>
__device__ __forceinline__ void unit_dot(float (&acc)[G][RT], const float* tile, int rows, int H, int lane,
                                         int ks, unsigned group_mask, W w) {
#pragma unroll
  for (int g = 0; g < G; ++g)
#pragma unroll
    for (int r = 0; r < RT; ++r) acc[g][r] = 0.f;
  for (int k = lane; k < H; k += ks) {
    float hv[RT];
#pragma unroll
    for (int r = 0; r < RT; ++r) hv[r] = r < rows ? tile[r * H + k] : 0.f;
#pragma unroll
    for (int g = 0; g < G; ++g) {
      const float wv = w(g, k);
#pragma unroll
      for (int r = 0; r < RT; ++r) acc[g][r] = fmaf(wv, hv[r], acc[g][r]);
    }
  }
  for (int off = ks >> 1; off > 0; off >>= 1)
#pragma unroll
    for (int g = 0; g < G; ++g)
#pragma unroll
      for (int r = 0; r < RT; ++r) acc[g][r] += __shfl_xor_sync(group_mask, acc[g][r], off);
}

// One step of the cell for element (r, j) of a tile of `rows` rows: the gate
// math of rnn_cells.h on the tile's pointers (each [rows, ...]; hproj and
// xproj with leading dimension G H; c_prev/c for the LSTM only).
struct TilePtrs {
  const float* xproj = nullptr;
  const float* hproj = nullptr;
  const float* b_ih = nullptr;
  const float* b_hh = nullptr;
  const float* c_prev = nullptr;
  float* c = nullptr;
  const float* h_prev = nullptr;
  const float* mask = nullptr;
  float* h = nullptr;
  float* y = nullptr;
  float* saved = nullptr;
};

template <int kCell>
__device__ __forceinline__ void tile_cell(const TilePtrs& t, int rows, int H, int r, int j) {
  constexpr int G = cell_gates(kCell);
  if constexpr (is_rnn(kCell)) {
    RnnStepArgs<float> a;
    a.B = rows;
    a.H = H;
    a.xproj = t.xproj;
    a.hproj = t.hproj;
    a.ld_x = a.ld_h = H;
    a.b_ih = t.b_ih;
    a.b_hh = t.b_hh;
    a.h_prev = t.h_prev;
    a.mask = t.mask;
    a.h = t.h;
    a.y = t.y;
    rnn_step_element<kCell == kCellRnnTanh ? RnnActivation::Tanh : RnnActivation::Relu>(a, r, j);
  } else if constexpr (kCell == kCellLstm) {
    LstmStepArgs<float> a;
    a.B = rows;
    a.H = H;
    a.xproj = t.xproj;
    a.hproj = t.hproj;
    a.ld_x = a.ld_h = G * H;
    a.b_ih = t.b_ih;
    a.b_hh = t.b_hh;
    a.c_prev = t.c_prev;
    a.c = t.c;
    a.h_prev = t.h_prev;
    a.mask = t.mask;
    a.h = t.h;
    a.y = t.y;
    a.saved = t.saved;
    lstm_step_element(a, r, j);
  } else {
    GruStepArgs<float> a;
    a.B = rows;
    a.H = H;
    a.xproj = t.xproj;
    a.hproj = t.hproj;
    a.ld_x = a.ld_h = G * H;
    a.b_ih = t.b_ih;
    a.b_hh = t.b_hh;
    a.h_prev = t.h_prev;
    a.mask = t.mask;
    a.h = t.h;
    a.y = t.y;
    a.saved = t.saved;
    gru_step_element(a, r, j);
  }
}

template <int kCell, int RT>
__global__ void __launch_bounds__(kPersistentMaxThreads) block_local_forward(PassParams p) {
  constexpr bool kLstm = kCell == kCellLstm;
  constexpr int G = cell_gates(kCell);
  extern __shared__ float4 smem_raw[];  // float4: 16-byte alignment for every array
  float* sm = reinterpret_cast<float*>(smem_raw);
  const int H = p.H, GH = G * H, B = p.B, T = p.T;
  const BlockLocalLayout L = block_local_layout(G, H, RT, p.w_ld);
  float* w = sm + L.w;
  float* s_bih = p.b_ih ? sm + L.b_ih : nullptr;
  float* s_bhh = p.b_hh ? sm + L.b_hh : nullptr;
  float* hbuf = sm + L.h;  // [2][RT][H]
  float* hin = p.rec_mask ? sm + L.hin : hbuf;  // what the matmul reads
  float* cst = sm + L.c;   // [RT][H], LSTM
  float* hproj = sm + L.hproj;
  float* xs = sm + L.xs;   // [2][RT][G H]

  const int row0 = blockIdx.x * RT;
  const int rows = min(RT, B - row0);
  const int tid = threadIdx.x, nthreads = blockDim.x;
  const std::int64_t BH = std::int64_t(B) * H;

  // ---- once: weights, biases, initial states, step 0's inputs ----
  if (T > 0) copy_async(xs, p.xproj + std::int64_t(row0) * GH, rows * GH);
  for (int i = tid; i < GH * H; i += nthreads) w[(i / H) * p.w_ld + i % H] = p.w_hh[i];
  for (int i = tid; i < GH; i += nthreads) {
    if (s_bih) s_bih[i] = p.b_ih[i];
    if (s_bhh) s_bhh[i] = p.b_hh[i];
  }
  for (int i = tid; i < rows * H; i += nthreads) {
    const std::int64_t g = std::int64_t(row0) * H + i;
    const float h0 = p.hs[g];
    hbuf[i] = h0;
    if (p.rec_mask) hin[i] = h0 * p.rec_mask[g];
    if (kLstm) cst[i] = p.cs[g];
  }
  __pipeline_wait_prior(0);
  __syncthreads();

  // ---- this thread's unit, lane and rows ----
  const int ks = p.ksplit;
  const int j = tid / ks, lane = tid % ks;
  const bool active = j < H;  // threads beyond H * ksplit only copy and wait
  const int warp_lane = tid & 31;
  const unsigned group_mask =
      ks >= 32 ? 0xffffffffu : (((1u << ks) - 1u) << (warp_lane & ~(ks - 1)));
  float drop[RT];  // recurrent-dropout mask of (r, j) for the rows this lane updates
#pragma unroll
  for (int r = 0; r < RT; ++r)
    drop[r] = p.rec_mask && active && r < rows ? p.rec_mask[std::int64_t(row0 + r) * H + j] : 1.f;

  for (int t = 0; t < T; ++t) {
    const int cur = t & 1, nxt = cur ^ 1;
    // 1. the next step's inputs, while this one computes
    if (t + 1 < T)
      copy_async(xs + nxt * RT * GH, p.xproj + (std::int64_t(t + 1) * B + row0) * GH, rows * GH);

    if (active) {
      // 2. the G dot products of unit j for every row
      float acc[G][RT];
      unit_dot<G, RT>(acc, hin + cur * RT * H, rows, H, lane, ks, group_mask,
                      [&](int g, int k) { return w[(g * H + j) * p.w_ld + k]; });

      // 3. the cell for (r, j), rows spread over the group's lanes
      float* h_prev = hbuf + cur * RT * H;
      float* h_next = hbuf + nxt * RT * H;
      const float* mask_t = p.mask ? p.mask + std::int64_t(t) * B + row0 : nullptr;
      float* y_t = p.ys ? p.ys + std::int64_t(t) * BH + std::int64_t(row0) * H : nullptr;
      float* saved_t = p.saved ? p.saved + (std::int64_t(t) * B + row0) * 4 * H : nullptr;
#pragma unroll
      for (int r = 0; r < RT; ++r) {
        if (r >= rows || r % ks != lane) continue;
#pragma unroll
        for (int g = 0; g < G; ++g) hproj[r * GH + g * H + j] = acc[g][r];
        TilePtrs tp;
        tp.xproj = xs + cur * RT * GH;
        tp.hproj = hproj;
        tp.b_ih = s_bih;
        tp.b_hh = s_bhh;
        tp.c_prev = cst;  // in place: element (r, j) reads c_prev[e] before writing c[e]
        tp.c = cst;
        tp.h_prev = h_prev;
        tp.mask = mask_t;
        tp.h = h_next;
        tp.y = y_t;
        tp.saved = saved_t;
        tile_cell<kCell>(tp, rows, H, r, j);
        const int e = r * H + j;
        const float hn = h_next[e];
        if (p.rec_mask) hin[nxt * RT * H + e] = hn * drop[r];
        if (p.all_states) {
          const std::int64_t g = std::int64_t(t + 1) * BH + std::int64_t(row0 + r) * H + j;
          p.hs[g] = hn;
          if (kLstm) p.cs[g] = cst[e];
        }
      }
    }
    // 4. the next step's inputs have landed; the new state is complete
    __pipeline_wait_prior(0);
    __syncthreads();
  }

  // ---- inference: only the last states leave the chip ----
  if (!p.all_states) {
    const float* h_last = hbuf + (T & 1) * RT * H;
    for (int i = tid; i < rows * H; i += nthreads) {
      const std::int64_t g = std::int64_t(row0) * H + i;
      p.hs[std::int64_t(T % 2) * BH + g] = h_last[i];
      if (kLstm) p.cs[g] = cst[i];
    }
  }
}

// ---- BlockLocal backward --------------------------------------------------------------
// Backpropagation through the whole sequence in one launch. Each block owns
// RT rows and all H units, keeps W_hh^T in shared memory (row k: column k of
// W_hh, GH long) and dL/dh (and dL/dc) of its rows on chip for the whole
// pass. Per step t, from T - 1 down to 0 (threads = H * ksplit, lane group j
// owns unit j, lane r mod ksplit of it row r, for both phases):
//   1. start copying step t - 1's saved activations, states and dy into
//      shared memory (cp.async);
//   2. element phase: rnn_cells.h's backward element function for (r, j)
//      (the one copy of the gate math, as the CPU twin's step loop): dgates
//      to global memory (the weight gradients' GEMMs read them after the
//      pass) and dgates_h to shared memory; the part of dh_prev that does not
//      go through W_hh in place of dh;
//   3. wait for step t - 1's copies, __syncthreads(): the one barrier;
//   4. dot phase: dh[r, j] += (dgates_h[r, :] . W_hh[:, j]) * rec_mask[r, j],
//      by the thread that runs (r, j)'s element next step, so dh needs no
//      other barrier. dgates_h is double-buffered: a thread may start step
//      t - 1's element phase while others still read step t's.
struct BackParams {
  int T = 0, B = 0, H = 0, ksplit = 1, w_ld = 0;
  const float* saved = nullptr;     // [T, B, 4H] (not SimpleRNN)
  const float* hs = nullptr;        // GRU, SimpleRNN: [T + 1, B, H]
  const float* cs = nullptr;        // LSTM: [T + 1, B, H]
  const float* dys = nullptr;       // [T, B, H] or nullptr
  const float* mask = nullptr;      // [T, B] or nullptr
  const float* w_hh = nullptr;      // [G H, H]
  const float* rec_mask = nullptr;  // [B, H] or nullptr
  float* dh = nullptr;              // [B, H] in/out
  float* dc = nullptr;              // LSTM: [B, H] in/out
  float* dgates_x = nullptr;        // [T, B, G H] (LSTM, SimpleRNN: the one dgates)
  float* dgates_h = nullptr;        // GRU: [T, B, 3H]
};

template <int kCell, int RT>
__global__ void __launch_bounds__(kPersistentMaxThreads) block_local_backward(BackParams p) {
  constexpr bool kLstm = kCell == kCellLstm;
  constexpr bool kRnn = is_rnn(kCell);
  constexpr int G = cell_gates(kCell);
  extern __shared__ float4 smem_raw[];
  float* sm = reinterpret_cast<float*>(smem_raw);
  const int H = p.H, GH = G * H, B = p.B, T = p.T;
  const BlockLocalBackLayout L = block_local_back_layout(G, H, RT, p.w_ld);
  float* wt = sm + L.w;
  float* dg = sm + L.dg;        // [2][RT][GH]
  float* dh = sm + L.dh;        // [RT][H]
  float* dc = sm + L.dc;        // [RT][H]
  float* s_saved = sm + L.saved;  // [2][RT][4H]
  float* s_st = sm + L.st;      // [2][RT][H]: GRU h_prev, LSTM c_prev, SimpleRNN h (this step's)
  float* s_st2 = sm + L.st2;    // [2][RT][H]
  float* s_dy = sm + L.dy;      // [2][RT][H]

  const int row0 = blockIdx.x * RT;
  const int rows = min(RT, B - row0);
  const int tid = threadIdx.x, nthreads = blockDim.x;
  const std::int64_t BH = std::int64_t(B) * H;

  // Step t's inputs into buffer `buf` (the caller commits through copy_async's commit).
  auto fetch = [&](int t, int buf) {
    const std::int64_t off = std::int64_t(t) * BH + std::int64_t(row0) * H;
    for (int i = tid; i < rows * H; i += nthreads) {
      if (kLstm) {
        __pipeline_memcpy_async(s_st + buf * RT * H + i, p.cs + off + i, sizeof(float));
        __pipeline_memcpy_async(s_st2 + buf * RT * H + i, p.cs + off + BH + i, sizeof(float));
      } else {
        // GRU: h_prev = hs[t]; SimpleRNN: the step's own output h = hs[t + 1]
        __pipeline_memcpy_async(s_st + buf * RT * H + i, p.hs + off + (kRnn ? BH : 0) + i, sizeof(float));
      }
      if (p.dys) __pipeline_memcpy_async(s_dy + buf * RT * H + i, p.dys + off + i, sizeof(float));
    }
    if constexpr (kRnn)
      __pipeline_commit();
    else
      copy_async(s_saved + buf * RT * 4 * H, p.saved + (std::int64_t(t) * B + row0) * 4 * H, rows * 4 * H);
  };

  // ---- once: W_hh^T, dL/dh and dL/dc of the last step, step T - 1's inputs ----
  fetch(T - 1, 0);
  for (int i = tid; i < GH * H; i += nthreads) {
    const int n = i / H, k = i % H;  // W_hh[n, k]: coalesced reads
    wt[k * p.w_ld + n] = p.w_hh[i];
  }
  for (int i = tid; i < rows * H; i += nthreads) {
    dh[i] = p.dh[std::int64_t(row0) * H + i];
    if (kLstm) dc[i] = p.dc[std::int64_t(row0) * H + i];
  }
  __pipeline_wait_prior(0);
  __syncthreads();

  const int ks = p.ksplit;
  const int j = tid / ks, lane = tid % ks;
  const bool active = j < H;
  const int warp_lane = tid & 31;
  const unsigned group_mask =
      ks >= 32 ? 0xffffffffu : (((1u << ks) - 1u) << (warp_lane & ~(ks - 1)));
  float drop[RT];
#pragma unroll
  for (int r = 0; r < RT; ++r)
    drop[r] = p.rec_mask && active && r < rows ? p.rec_mask[std::int64_t(row0 + r) * H + j] : 1.f;

  for (int t = T - 1; t >= 0; --t) {
    const int cur = (T - 1 - t) & 1, nxt = cur ^ 1;
    // 1. step t - 1's inputs, while this step computes
    if (t > 0) fetch(t - 1, nxt);

    // 2. the element phase for (r, j), rows spread over the group's lanes
    if (active) {
      const std::int64_t gate_row0 = std::int64_t(t) * B + row0;  // row of [T B, ...]
      const float* mask_t = p.mask ? p.mask + std::int64_t(t) * B + row0 : nullptr;
      float* dg_cur = dg + cur * RT * GH;
#pragma unroll
      for (int r = 0; r < RT; ++r) {
        if (r >= rows || r % ks != lane) continue;
        if constexpr (kRnn) {
          RnnBackArgs<float> a;
          a.B = rows;
          a.H = H;
          a.h = s_st + cur * RT * H;
          a.dy = p.dys ? s_dy + cur * RT * H : nullptr;
          a.dh_next = dh;
          a.mask = mask_t;
          a.dgates = dg_cur;
          a.dh_prev = dh;  // in place
          rnn_back_element<kCell == kCellRnnTanh ? RnnActivation::Tanh : RnnActivation::Relu>(a, r, j);
        } else if constexpr (kLstm) {
          LstmBackArgs<float> a;
          a.B = rows;
          a.H = H;
          a.saved = s_saved + cur * RT * 4 * H;
          a.c_prev = s_st + cur * RT * H;
          a.c = s_st2 + cur * RT * H;
          a.dy = p.dys ? s_dy + cur * RT * H : nullptr;
          a.dh_next = dh;
          a.dc_next = dc;
          a.mask = mask_t;
          a.dgates = dg_cur;
          a.dh_prev = dh;  // in place: (r, j) reads dh[e] before writing it
          a.dc_prev = dc;
          lstm_back_element(a, r, j);
        } else {
          GruBackArgs<float> a;
          a.B = rows;
          a.H = H;
          a.saved = s_saved + cur * RT * 4 * H;
          a.h_prev = s_st + cur * RT * H;
          a.dy = p.dys ? s_dy + cur * RT * H : nullptr;
          a.dh_next = dh;
          a.mask = mask_t;
          a.dgates_x = p.dgates_x + gate_row0 * GH;
          a.dgates_h = dg_cur;
          a.dh_prev = dh;
          gru_back_element(a, r, j);
        }
        // dgates_h (LSTM, SimpleRNN: the one dgates) to global memory for the weight GEMMs
        float* out = (kCell == kCellGru ? p.dgates_h : p.dgates_x) + (gate_row0 + r) * GH;
#pragma unroll
        for (int g = 0; g < G; ++g) out[g * H + j] = dg_cur[r * GH + g * H + j];
      }
    }
    // 3. step t's dgates_h complete; step t - 1's inputs landed
    __pipeline_wait_prior(0);
    __syncthreads();

    // 4. dh_prev[r, j] += (dgates_h[r, :] . W_hh[:, j]) * rec_mask[r, j]
    if (active) {
      float acc[1][RT];
      unit_dot<1, RT>(acc, dg + cur * RT * GH, rows, GH, lane, ks, group_mask,
                      [&](int, int n) { return wt[j * p.w_ld + n]; });
#pragma unroll
      for (int r = 0; r < RT; ++r)
        if (r < rows && r % ks == lane) dh[r * H + j] += acc[0][r] * drop[r];
    }
  }

  // ---- dL/d(initial state) ----
  __syncthreads();
  for (int i = tid; i < rows * H; i += nthreads) {
    p.dh[std::int64_t(row0) * H + i] = dh[i];
    if (kLstm) p.dc[std::int64_t(row0) * H + i] = dc[i];
  }
}

// ---- BlockLocal, the reset-before GRU ---------------------------------------------------
// Keras's reset_after=False: two recurrent products per step, the second on
// r * h_in, which needs every unit's r first, so two barriers per step.
// Forward, per step t (threads = H * ksplit; lane group j owns unit j, lane
// r mod ksplit of it row r):
//   1. cp.async the next step's input projection;
//   2. the r and z dot products over h_in (W_h[r,z] rows), then stage 1 of
//      rnn_cells.h (gru_rb_gates_element): r, z and rh = r * h_in;
//   3. __syncthreads(): every unit's rh is in shared memory;
//   4. the n dot product over rh (W_hn rows), then stage 2
//      (gru_rb_out_element): n and h'; recurrent dropout into hin;
//   5. wait for the copy, __syncthreads().
template <int RT>
__global__ void __launch_bounds__(kPersistentMaxThreads) block_local_rb_forward(PassParams p) {
  extern __shared__ float4 smem_raw[];
  float* sm = reinterpret_cast<float*>(smem_raw);
  const int H = p.H, GH = 3 * H, B = p.B, T = p.T;
  const BlockLocalRbLayout L = block_local_rb_layout(H, RT, p.w_ld);
  float* w = sm + L.w;
  float* s_bih = p.b_ih ? sm + L.b_ih : nullptr;
  float* s_bhh = p.b_hh ? sm + L.b_hh : nullptr;
  float* hbuf = sm + L.h;                       // [2][RT][H]
  float* hin = p.rec_mask ? sm + L.hin : hbuf;  // what the products read
  float* hproj = sm + L.hproj;                  // [RT][2H]
  float* hn = sm + L.hn;                        // [RT][H]
  float* rh = sm + L.rh;                        // [RT][H]
  float* sv = sm + L.sv;                        // [RT][4H], inference
  float* xs = sm + L.xs;                        // [2][RT][3H]

  const int row0 = blockIdx.x * RT;
  const int rows = min(RT, B - row0);
  const int tid = threadIdx.x, nthreads = blockDim.x;
  const std::int64_t BH = std::int64_t(B) * H;

  if (T > 0) copy_async(xs, p.xproj + std::int64_t(row0) * GH, rows * GH);
  for (int i = tid; i < GH * H; i += nthreads) w[(i / H) * p.w_ld + i % H] = p.w_hh[i];
  for (int i = tid; i < GH; i += nthreads) {
    if (s_bih) s_bih[i] = p.b_ih[i];
    if (s_bhh) s_bhh[i] = p.b_hh[i];
  }
  for (int i = tid; i < rows * H; i += nthreads) {
    const std::int64_t g = std::int64_t(row0) * H + i;
    const float h0 = p.hs[g];
    hbuf[i] = h0;
    if (p.rec_mask) hin[i] = h0 * p.rec_mask[g];
  }
  __pipeline_wait_prior(0);
  __syncthreads();

  const int ks = p.ksplit;
  const int j = tid / ks, lane = tid % ks;
  const bool active = j < H;
  const int warp_lane = tid & 31;
  const unsigned group_mask =
      ks >= 32 ? 0xffffffffu : (((1u << ks) - 1u) << (warp_lane & ~(ks - 1)));
  float drop[RT];
#pragma unroll
  for (int r = 0; r < RT; ++r)
    drop[r] = p.rec_mask && active && r < rows ? p.rec_mask[std::int64_t(row0 + r) * H + j] : 1.f;

  for (int t = 0; t < T; ++t) {
    const int cur = t & 1, nxt = cur ^ 1;
    if (t + 1 < T)
      copy_async(xs + nxt * RT * GH, p.xproj + (std::int64_t(t + 1) * B + row0) * GH, rows * GH);
    float* h_prev = hbuf + cur * RT * H;
    float* h_in = hin + cur * RT * H;
    float* saved_t = p.saved ? p.saved + (std::int64_t(t) * B + row0) * 4 * H : sv;
    const float* xp = xs + cur * RT * GH;

    // 2. r, z and rh
    if (active) {
      float acc[2][RT];
      unit_dot<2, RT>(acc, h_in, rows, H, lane, ks, group_mask,
                      [&](int g, int k) { return w[(g * H + j) * p.w_ld + k]; });
#pragma unroll
      for (int r = 0; r < RT; ++r) {
        if (r >= rows || r % ks != lane) continue;
        hproj[r * 2 * H + j] = acc[0][r];
        hproj[r * 2 * H + H + j] = acc[1][r];
        GruRbGatesArgs<float> a;
        a.B = rows;
        a.H = H;
        a.xproj = xp;
        a.hproj_rz = hproj;
        a.b_ih = s_bih;
        a.b_hh = s_bhh;
        a.h_in = h_in;
        a.rh = rh;
        a.saved = saved_t;
        gru_rb_gates_element(a, r, j);
      }
    }
    // 3. every unit's rh
    __syncthreads();

    // 4. n and the new state
    if (active) {
      float acc[1][RT];
      unit_dot<1, RT>(acc, rh, rows, H, lane, ks, group_mask,
                      [&](int, int k) { return w[(2 * H + j) * p.w_ld + k]; });
      float* h_next = hbuf + nxt * RT * H;
      const float* mask_t = p.mask ? p.mask + std::int64_t(t) * B + row0 : nullptr;
      float* y_t = p.ys ? p.ys + std::int64_t(t) * BH + std::int64_t(row0) * H : nullptr;
#pragma unroll
      for (int r = 0; r < RT; ++r) {
        if (r >= rows || r % ks != lane) continue;
        hn[r * H + j] = acc[0][r];
        GruRbOutArgs<float> a;
        a.B = rows;
        a.H = H;
        a.xproj = xp;
        a.hn = hn;
        a.b_ih = s_bih;
        a.b_hh = s_bhh;
        a.h_prev = h_prev;
        a.mask = mask_t;
        a.saved = saved_t;
        a.h = h_next;
        a.y = y_t;
        gru_rb_out_element(a, r, j);
        const int e = r * H + j;
        const float hv = h_next[e];
        if (p.rec_mask) hin[nxt * RT * H + e] = hv * drop[r];
        if (p.all_states) p.hs[std::int64_t(t + 1) * BH + std::int64_t(row0 + r) * H + j] = hv;
      }
    }
    // 5. the next step's inputs have landed; the new state is complete
    __pipeline_wait_prior(0);
    __syncthreads();
  }

  if (!p.all_states) {
    const float* h_last = hbuf + (T & 1) * RT * H;
    for (int i = tid; i < rows * H; i += nthreads)
      p.hs[std::int64_t(T % 2) * BH + std::int64_t(row0) * H + i] = h_last[i];
  }
}

// Backward, per step t from T - 1 down to 0:
//   1. cp.async step t - 1's saved activations, h_prev and dy;
//   2. stage 1 (gru_rb_back_n_element): the z and n gradients, dh's direct
//      part in place;
//   3. __syncthreads(): every unit's n gradient is in shared memory;
//   4. drh = dgates_n W_hn (column j), then stage 2 (gru_rb_back_r_element):
//      the r gradient and dL/dh_in through r * h_in;
//   5. wait for the copies, __syncthreads(): every unit's r, z gradients;
//   6. dh[r, j] += (dh_in + dgates_rz W_h[r,z] (column j)) * rec_mask.
// dgates_rz is double-buffered (step 6 of t and step 2 of t - 1 overlap
// across threads); dgates_n is not (step 4 of t ends before the barrier of
// step 5 that step 2 of t - 1 comes after).
struct RbBackParams {
  int T = 0, B = 0, H = 0, ksplit = 1, w_ld = 0;
  const float* saved = nullptr;     // [T, B, 4H]
  const float* hs = nullptr;        // [T + 1, B, H]
  const float* dys = nullptr;       // [T, B, H] or nullptr
  const float* mask = nullptr;      // [T, B] or nullptr
  const float* w_hh = nullptr;      // [3H, H]
  const float* rec_mask = nullptr;  // [B, H] or nullptr
  float* dh = nullptr;              // [B, H] in/out
  float* dgates_x = nullptr;        // [T, B, 3H]
  float* dgates_rz = nullptr;       // [T, B, 2H]
  float* dgates_n = nullptr;        // [T, B, H]
};

template <int RT>
__global__ void __launch_bounds__(kPersistentMaxThreads) block_local_rb_backward(RbBackParams p) {
  extern __shared__ float4 smem_raw[];
  float* sm = reinterpret_cast<float*>(smem_raw);
  const int H = p.H, GH = 3 * H, B = p.B, T = p.T;
  const BlockLocalRbBackLayout L = block_local_rb_back_layout(H, RT, p.w_ld);
  float* wt = sm + L.w;       // [H][w_ld]: row k = W_hh[0..3H, k]
  float* dgrz = sm + L.dgrz;  // [2][RT][2H]
  float* dgn = sm + L.dgn;    // [RT][H]
  float* dh = sm + L.dh;      // [RT][H]
  float* drh = sm + L.drh;    // [RT][H]
  float* dhin = sm + L.dhin;  // [RT][H]
  float* hin = sm + L.hin;    // [RT][H]
  float* s_saved = sm + L.saved;  // [2][RT][4H]
  float* s_st = sm + L.st;        // [2][RT][H]
  float* s_dy = sm + L.dy;        // [2][RT][H]

  const int row0 = blockIdx.x * RT;
  const int rows = min(RT, B - row0);
  const int tid = threadIdx.x, nthreads = blockDim.x;
  const std::int64_t BH = std::int64_t(B) * H;

  auto fetch = [&](int t, int buf) {
    const std::int64_t off = std::int64_t(t) * BH + std::int64_t(row0) * H;
    for (int i = tid; i < rows * H; i += nthreads) {
      __pipeline_memcpy_async(s_st + buf * RT * H + i, p.hs + off + i, sizeof(float));
      if (p.dys) __pipeline_memcpy_async(s_dy + buf * RT * H + i, p.dys + off + i, sizeof(float));
    }
    copy_async(s_saved + buf * RT * 4 * H, p.saved + (std::int64_t(t) * B + row0) * 4 * H, rows * 4 * H);
  };

  fetch(T - 1, 0);
  for (int i = tid; i < GH * H; i += nthreads) {
    const int n = i / H, k = i % H;
    wt[k * p.w_ld + n] = p.w_hh[i];
  }
  for (int i = tid; i < rows * H; i += nthreads) dh[i] = p.dh[std::int64_t(row0) * H + i];
  __pipeline_wait_prior(0);
  __syncthreads();

  const int ks = p.ksplit;
  const int j = tid / ks, lane = tid % ks;
  const bool active = j < H;
  const int warp_lane = tid & 31;
  const unsigned group_mask =
      ks >= 32 ? 0xffffffffu : (((1u << ks) - 1u) << (warp_lane & ~(ks - 1)));
  float drop[RT];
#pragma unroll
  for (int r = 0; r < RT; ++r)
    drop[r] = p.rec_mask && active && r < rows ? p.rec_mask[std::int64_t(row0 + r) * H + j] : 1.f;

  for (int t = T - 1; t >= 0; --t) {
    const int cur = (T - 1 - t) & 1, nxt = cur ^ 1;
    if (t > 0) fetch(t - 1, nxt);
    const std::int64_t gate_row0 = std::int64_t(t) * B + row0;
    const float* mask_t = p.mask ? p.mask + std::int64_t(t) * B + row0 : nullptr;
    const float* saved = s_saved + cur * RT * 4 * H;
    const float* h_prev = s_st + cur * RT * H;
    float* drz = dgrz + cur * RT * 2 * H;

    // 2. the z and n gradients
    if (active) {
#pragma unroll
      for (int r = 0; r < RT; ++r) {
        if (r >= rows || r % ks != lane) continue;
        GruRbBackNArgs<float> a;
        a.B = rows;
        a.H = H;
        a.saved = saved;
        a.h_prev = h_prev;
        a.dy = p.dys ? s_dy + cur * RT * H : nullptr;
        a.dh_next = dh;
        a.mask = mask_t;
        a.dgates_x = p.dgates_x + gate_row0 * GH;
        a.dgates_rz = drz;
        a.dgates_n = dgn;
        a.dh_prev = dh;  // in place
        gru_rb_back_n_element(a, r, j);
        p.dgates_n[(gate_row0 + r) * H + j] = dgn[r * H + j];
      }
    }
    // 3. every unit's n gradient
    __syncthreads();

    // 4. drh = dgates_n W_hn, then the r gradient
    if (active) {
      float acc[1][RT];
      unit_dot<1, RT>(acc, dgn, rows, H, lane, ks, group_mask,
                      [&](int, int k) { return wt[j * p.w_ld + 2 * H + k]; });
#pragma unroll
      for (int r = 0; r < RT; ++r) {
        if (r >= rows || r % ks != lane) continue;
        const int e = r * H + j;
        drh[e] = acc[0][r];
        hin[e] = h_prev[e] * drop[r];
        GruRbBackRArgs<float> a;
        a.B = rows;
        a.H = H;
        a.saved = saved;
        a.h_in = hin;
        a.drh = drh;
        a.mask = mask_t;
        a.dgates_x = p.dgates_x + gate_row0 * GH;
        a.dgates_rz = drz;
        a.dh_in = dhin;
        gru_rb_back_r_element(a, r, j);
        float* out = p.dgates_rz + (gate_row0 + r) * 2 * H;
        out[j] = drz[r * 2 * H + j];
        out[H + j] = drz[r * 2 * H + H + j];
      }
    }
    // 5. every unit's r and z gradients; step t - 1's inputs landed
    __pipeline_wait_prior(0);
    __syncthreads();

    // 6. dh_prev += (dh_in + dgates_rz W_h[r,z]) * rec_mask
    if (active) {
      float acc[1][RT];
      unit_dot<1, RT>(acc, drz, rows, 2 * H, lane, ks, group_mask,
                      [&](int, int n) { return wt[j * p.w_ld + n]; });
#pragma unroll
      for (int r = 0; r < RT; ++r)
        if (r < rows && r % ks == lane) dh[r * H + j] += (dhin[r * H + j] + acc[0][r]) * drop[r];
    }
  }

  __syncthreads();
  for (int i = tid; i < rows * H; i += nthreads) p.dh[std::int64_t(row0) * H + i] = dh[i];
}

// The Grid kernel's extra arguments.
struct GridParams {
  int units = 0;           // hidden units per block (the last block may have fewer)
  float* hproj = nullptr;  // [B, G H] scratch
};

template <bool kLstm, int RT>
__global__ void __launch_bounds__(kPersistentMaxThreads) grid_forward(PassParams p, GridParams q) {
  namespace cg = cooperative_groups;
  constexpr int G = kLstm ? 4 : 3;
  extern __shared__ float4 smem_raw[];
  float* sm = reinterpret_cast<float*>(smem_raw);
  const int H = p.H, GH = G * H, B = p.B, T = p.T, Hb = q.units;
  const GridLayout L = grid_layout(G, H, Hb, RT, p.w_ld);
  float* w = sm + L.w;      // [G Hb][w_ld]
  float* tile = sm + L.h;   // [RT][H]
  const int u0 = blockIdx.x * Hb;
  const int units = min(Hb, H - u0);
  const int tid = threadIdx.x, nthreads = blockDim.x;
  const std::int64_t BH = std::int64_t(B) * H;
  cg::grid_group grid = cg::this_grid();

  for (int i = tid; i < G * units * H; i += nthreads) {
    const int n = i / H, k = i % H, g = n / units, u = n % units;
    w[(g * Hb + u) * p.w_ld + k] = p.w_hh[std::int64_t(g * H + u0 + u) * H + k];
  }
  __syncthreads();

  const int ks = p.ksplit;
  const int u = tid / ks, lane = tid % ks, j = u0 + u;
  const bool active = u < units;
  const int warp_lane = tid & 31;
  const unsigned group_mask =
      ks >= 32 ? 0xffffffffu : (((1u << ks) - 1u) << (warp_lane & ~(ks - 1)));

  for (int t = 0; t < T; ++t) {
    const float* h_prev = p.hs + std::int64_t(p.all_states ? t : t % 2) * BH;
    float* h_next = p.hs + std::int64_t(p.all_states ? t + 1 : (t + 1) % 2) * BH;
    float* c_prev = kLstm ? p.cs + std::int64_t(p.all_states ? t : 0) * BH : nullptr;
    float* c_next = kLstm ? p.cs + std::int64_t(p.all_states ? t + 1 : 0) * BH : nullptr;
    for (int row0 = 0; row0 < B; row0 += RT) {
      const int rows = min(RT, B - row0);
      // The tile of the previous state, all units, from L2.
      for (int i = tid; i < rows * H; i += nthreads) {
        const std::int64_t g = std::int64_t(row0) * H + i;
        const float v = __ldcg(h_prev + g);
        tile[i] = p.rec_mask ? v * p.rec_mask[g] : v;
      }
      __syncthreads();
      if (active) {
        float acc[G][RT];
        unit_dot<G, RT>(acc, tile, rows, H, lane, ks, group_mask,
                        [&](int g, int k) { return w[(g * Hb + u) * p.w_ld + k]; });
        float* hproj = q.hproj + std::int64_t(row0) * GH;
#pragma unroll
        for (int r = 0; r < RT; ++r) {
          if (r >= rows || r % ks != lane) continue;
#pragma unroll
          for (int g = 0; g < G; ++g) hproj[std::int64_t(r) * GH + g * H + j] = acc[g][r];
          const float* xproj = p.xproj + (std::int64_t(t) * B + row0) * GH;
          const float* mask_t = p.mask ? p.mask + std::int64_t(t) * B + row0 : nullptr;
          float* y_t = p.ys ? p.ys + std::int64_t(t) * BH + std::int64_t(row0) * H : nullptr;
          float* saved_t = p.saved ? p.saved + (std::int64_t(t) * B + row0) * 4 * H : nullptr;
          const std::int64_t off = std::int64_t(row0) * H;
          TilePtrs tp;
          tp.xproj = xproj;
          tp.hproj = hproj;
          tp.b_ih = p.b_ih;
          tp.b_hh = p.b_hh;
          tp.c_prev = kLstm ? c_prev + off : nullptr;  // inference: the same buffer, element by element
          tp.c = kLstm ? c_next + off : nullptr;
          tp.h_prev = h_prev + off;
          tp.mask = mask_t;
          tp.h = h_next + off;
          tp.y = y_t;
          tp.saved = saved_t;
          tile_cell<kLstm ? kCellLstm : kCellGru>(tp, rows, H, r, j);
        }
      }
      __syncthreads();  // the tile is reused by the next rows
    }
    // Every unit of the new state is written before any block reads it.
    grid.sync();
  }
}

// A cooperative launch needs every block resident at once: checked with the
// real kernel (registers included), not the planner's estimate. Empty when
// the plan fits, else why not.
template <bool kLstm, int RT>
std::string grid_residency(const PersistentPlan& plan) {
  auto* kernel = grid_forward<kLstm, RT>;
  const int smem = int(plan.smem_bytes);
  RECUR_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  int per_sm = 0, device = 0, sms = 0;
  RECUR_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, plan.threads, smem));
  RECUR_CUDA_CHECK(cudaGetDevice(&device));
  RECUR_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  if (std::int64_t(per_sm) * sms >= plan.blocks) return {};
  return "persistent grid pass: " + std::to_string(plan.blocks) + " blocks of " +
         std::to_string(plan.threads) + " threads and " + std::to_string(plan.smem_bytes) +
         " bytes of shared memory cannot all be resident (" + std::to_string(per_sm) + " per SM x " +
         std::to_string(sms) + " SMs)";
}

template <bool kLstm>
std::string grid_residency(const PersistentPlan& plan) {
  switch (plan.row_tile) {
    case 1: return grid_residency<kLstm, 1>(plan);
    case 2: return grid_residency<kLstm, 2>(plan);
    case 4: return grid_residency<kLstm, 4>(plan);
    case 8: return grid_residency<kLstm, 8>(plan);
    default: break;
  }
  return "persistent grid pass: no kernel for a row tile of " + std::to_string(plan.row_tile);
}

template <bool kLstm, int RT>
void launch_grid_tile(const PassParams& p, const GridParams& q, const PersistentPlan& plan,
                      cudaStream_t stream) {
  auto* kernel = grid_forward<kLstm, RT>;
  const int smem = int(plan.smem_bytes);
  const std::string why = grid_residency<kLstm, RT>(plan);  // also sets the shared-memory limit
  RECUR_CHECK(why.empty(), Unsupported, why);
  PassParams pp = p;
  GridParams qq = q;
  void* args[] = {&pp, &qq};
  RECUR_CUDA_CHECK(cudaLaunchCooperativeKernel(reinterpret_cast<const void*>(kernel), dim3(plan.blocks),
                                               dim3(plan.threads), args, std::size_t(smem), stream));
  RECUR_CHECK_LAUNCH();
}

template <bool kLstm>
void launch_grid(const PassParams& p, float* hproj, const PersistentPlan& plan, cudaStream_t stream) {
  constexpr int G = kLstm ? 4 : 3;
  const std::int64_t smem = grid_layout(G, p.H, plan.units_per_block, plan.row_tile, plan.w_ld).total * 4;
  RECUR_CHECK(hproj != nullptr && plan.units_per_block >= 1 &&
                  std::int64_t(plan.blocks) * plan.units_per_block >= p.H &&
                  std::int64_t(plan.blocks - 1) * plan.units_per_block < p.H &&
                  plan.threads == plan.units_per_block * plan.ksplit && plan.smem_bytes == smem &&
                  plan.w_ld == p.w_ld && plan.ksplit == p.ksplit && plan.rows_per_block == p.B,
              Internal, "persistent grid pass: the plan (", plan.describe(), ") does not fit H = ", p.H,
              ", B = ", p.B, " (or no hproj scratch)");
  const GridParams q{plan.units_per_block, hproj};
  switch (plan.row_tile) {
    case 1: return launch_grid_tile<kLstm, 1>(p, q, plan, stream);
    case 2: return launch_grid_tile<kLstm, 2>(p, q, plan, stream);
    case 4: return launch_grid_tile<kLstm, 4>(p, q, plan, stream);
    case 8: return launch_grid_tile<kLstm, 8>(p, q, plan, stream);
    default: break;
  }
  RECUR_THROW(Internal, "persistent grid pass: no kernel for a row tile of ", plan.row_tile);
}

// One launch of a block-local kernel with the plan's geometry and shared memory.
template <class Kernel, class Params>
void launch_block_local(Kernel* kernel, const Params& p, const PersistentPlan& plan, cudaStream_t stream) {
  const std::size_t smem = std::size_t(plan.smem_bytes);
  RECUR_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  kernel<<<plan.blocks, plan.threads, smem, stream>>>(p);
  RECUR_CHECK_LAUNCH();
}

template <int kCell>
void launch(const PassParams& p, float* hproj, const PersistentPlan& plan, cudaStream_t stream) {
  constexpr int G = cell_gates(kCell);
  if constexpr (!is_rnn(kCell)) {
    if (plan.regime == PersistentRegime::Grid) return launch_grid<kCell == kCellLstm>(p, hproj, plan, stream);
  }
  RECUR_CHECK(plan.regime == PersistentRegime::BlockLocal, Unsupported,
              "persistent ", cell_label(kCell), " pass: only the block-local", is_rnn(kCell) ? "" : " and grid",
              " regimes have kernels; the plan is ", plan.describe());
  // The plan must be the one plan_persistent() gives for this H and B.
  const std::int64_t smem = block_local_layout(G, p.H, plan.rows_per_block, plan.w_ld).total * 4;
  RECUR_CHECK(plan.units_per_block == p.H && plan.threads == p.H * plan.ksplit &&
                  std::int64_t(plan.blocks) * plan.rows_per_block >= p.B &&
                  std::int64_t(plan.blocks - 1) * plan.rows_per_block < p.B && plan.smem_bytes == smem &&
                  plan.w_ld == p.w_ld && plan.ksplit == p.ksplit,
              Internal, "persistent pass: the plan (", plan.describe(), ") does not fit H = ", p.H,
              ", B = ", p.B);
  switch (plan.rows_per_block) {
    case 1: return launch_block_local(block_local_forward<kCell, 1>, p, plan, stream);
    case 2: return launch_block_local(block_local_forward<kCell, 2>, p, plan, stream);
    case 4: return launch_block_local(block_local_forward<kCell, 4>, p, plan, stream);
    case 8: return launch_block_local(block_local_forward<kCell, 8>, p, plan, stream);
    default: break;
  }
  RECUR_THROW(Internal, "persistent pass: no kernel for ", plan.rows_per_block, " rows per block");
}

void check_sizes(const char* what, std::int64_t T, std::int64_t B, std::int64_t H) {
  RECUR_CHECK(T <= INT_MAX && B <= INT_MAX && H <= INT_MAX && T * B * H < (std::int64_t(1) << 40), Value, what,
              ": T = ", T, ", B = ", B, ", H = ", H, " out of range");
}

// The fields every forward pass's arguments have (rnn_sequence.h); the
// caller adds the cell's own (saved, cs).
template <class Args>
PassParams params_of(const Args& a, const PersistentPlan& plan) {
  check_sizes("persistent pass", a.T, a.B, a.H);
  PassParams p;
  p.T = int(a.T);
  p.B = int(a.B);
  p.H = int(a.H);
  p.ksplit = plan.ksplit;
  p.w_ld = plan.w_ld;
  p.xproj = a.xproj;
  p.w_hh = a.w_hh;
  p.b_ih = a.b_ih;
  p.b_hh = a.b_hh;
  p.mask = a.mask;
  p.rec_mask = a.rec_mask;
  p.hs = a.hs;
  p.all_states = a.all_states;
  p.ys = a.ys;
  return p;
}



template <int kCell>
void launch_back(const BackParams& p, const PersistentPlan& plan, cudaStream_t stream) {
  constexpr int G = cell_gates(kCell);
  RECUR_CHECK(plan.regime == PersistentRegime::BlockLocal, Unsupported, "persistent ", cell_label(kCell),
              " backward pass: only the block-local regime has a kernel; the plan is ", plan.describe());
  const std::int64_t smem = block_local_back_layout(G, p.H, plan.rows_per_block, plan.w_ld).total * 4;
  RECUR_CHECK(plan.units_per_block == p.H && plan.threads == p.H * plan.ksplit &&
                  std::int64_t(plan.blocks) * plan.rows_per_block >= p.B &&
                  std::int64_t(plan.blocks - 1) * plan.rows_per_block < p.B && plan.smem_bytes == smem &&
                  plan.w_ld == p.w_ld && plan.ksplit == p.ksplit && plan.w_ld >= G * p.H,
              Internal, "persistent backward pass: the plan (", plan.describe(), ") does not fit H = ", p.H,
              ", B = ", p.B);
  switch (plan.rows_per_block) {
    case 1: return launch_block_local(block_local_backward<kCell, 1>, p, plan, stream);
    case 2: return launch_block_local(block_local_backward<kCell, 2>, p, plan, stream);
    case 4: return launch_block_local(block_local_backward<kCell, 4>, p, plan, stream);
    case 8: return launch_block_local(block_local_backward<kCell, 8>, p, plan, stream);
    default: break;
  }
  RECUR_THROW(Internal, "persistent backward pass: no kernel for ", plan.rows_per_block, " rows per block");
}

// The fields every backward pass's arguments have (rnn_sequence.h), into
// BackParams or RbBackParams; the caller adds the cell's own.
template <class Params, class Args>
Params back_params_of(const Args& a, const PersistentPlan& plan) {
  check_sizes("persistent backward pass", a.T, a.B, a.H);
  Params p;
  p.T = int(a.T);
  p.B = int(a.B);
  p.H = int(a.H);
  p.ksplit = plan.ksplit;
  p.w_ld = plan.w_ld;
  p.dys = a.dys;
  p.mask = a.mask;
  p.w_hh = a.w_hh;
  p.rec_mask = a.rec_mask;
  p.dh = a.dh;
  return p;
}

// ---- launchers of the SimpleRNN and reset-before GRU kernels ----

// The plan must be the block-local plan for this H and B with `smem` floats.
void check_block_local(const char* what, const PersistentPlan& plan, int H, int B, int ksplit, int w_ld,
                       std::int64_t smem_floats) {
  RECUR_CHECK(plan.regime == PersistentRegime::BlockLocal, Unsupported, what,
              ": only the block-local regime has a kernel; the plan is ", plan.describe());
  RECUR_CHECK(plan.units_per_block == H && plan.threads == H * plan.ksplit &&
                  std::int64_t(plan.blocks) * plan.rows_per_block >= B &&
                  std::int64_t(plan.blocks - 1) * plan.rows_per_block < B && plan.smem_bytes == smem_floats * 4 &&
                  plan.w_ld == w_ld && plan.ksplit == ksplit,
              Internal, what, ": the plan (", plan.describe(), ") does not fit H = ", H, ", B = ", B);
}

void launch_rb_forward(const PassParams& p, const PersistentPlan& plan, cudaStream_t stream) {
  check_block_local("persistent reset-before GRU pass", plan, p.H, p.B, p.ksplit, p.w_ld,
                    block_local_rb_layout(p.H, plan.rows_per_block, p.w_ld).total);
  switch (plan.rows_per_block) {
    case 1: return launch_block_local(block_local_rb_forward<1>, p, plan, stream);
    case 2: return launch_block_local(block_local_rb_forward<2>, p, plan, stream);
    case 4: return launch_block_local(block_local_rb_forward<4>, p, plan, stream);
    case 8: return launch_block_local(block_local_rb_forward<8>, p, plan, stream);
    default: break;
  }
  RECUR_THROW(Internal, "persistent reset-before GRU pass: no kernel for ", plan.rows_per_block, " rows per block");
}

void launch_rb_backward(const RbBackParams& p, const PersistentPlan& plan, cudaStream_t stream) {
  check_block_local("persistent reset-before GRU backward pass", plan, p.H, p.B, p.ksplit, p.w_ld,
                    block_local_rb_back_layout(p.H, plan.rows_per_block, p.w_ld).total);
  RECUR_CHECK(p.w_ld >= 3 * p.H, Internal, "persistent reset-before GRU backward pass: W_hh^T rows of ", p.w_ld,
              " floats cannot hold 3H = ", 3 * p.H);
  switch (plan.rows_per_block) {
    case 1: return launch_block_local(block_local_rb_backward<1>, p, plan, stream);
    case 2: return launch_block_local(block_local_rb_backward<2>, p, plan, stream);
    case 4: return launch_block_local(block_local_rb_backward<4>, p, plan, stream);
    case 8: return launch_block_local(block_local_rb_backward<8>, p, plan, stream);
    default: break;
  }
  RECUR_THROW(Internal, "persistent reset-before GRU backward pass: no kernel for ", plan.rows_per_block,
              " rows per block");
}
}  // namespace

std::string persistent_plan_check(RnnCellKind cell, const PersistentPlan& plan) {
  if (plan.regime == PersistentRegime::BlockLocal) return {};
  if (plan.regime != PersistentRegime::Grid || (cell != RnnCellKind::GRU && cell != RnnCellKind::LSTM))
    return std::string("persistent kernels: no kernel for ") + rnn_cell_kind_name(cell) + " in regime " +
           persistent_regime_name(plan.regime) + " (block-local and grid exist, for GRU and LSTM)";
  return cell == RnnCellKind::LSTM ? grid_residency<true>(plan) : grid_residency<false>(plan);
}

void gru_sequence_persistent(const GruSequenceArgs<float>& a, const PersistentPlan& plan,
                             cudaStream_t stream) {
  if (a.B == 0 || a.H == 0) return;
  PassParams p = params_of(a, plan);
  p.saved = a.saved;
  launch<kCellGru>(p, a.hproj, plan, stream);
}

void lstm_sequence_persistent(const LstmSequenceArgs<float>& a, const PersistentPlan& plan,
                              cudaStream_t stream) {
  if (a.B == 0 || a.H == 0) return;
  PassParams p = params_of(a, plan);
  p.saved = a.saved;
  p.cs = a.cs;
  launch<kCellLstm>(p, a.hproj, plan, stream);
}

void gru_sequence_backward_persistent(const GruSequenceBackArgs<float>& a, const PersistentPlan& plan,
                                      cudaStream_t stream) {
  if (a.T == 0 || a.B == 0 || a.H == 0) return;  // dh passes through unchanged
  BackParams p = back_params_of<BackParams>(a, plan);
  p.saved = a.saved;
  p.hs = a.hs;
  p.dgates_x = a.dgates_x;
  p.dgates_h = a.dgates_h;
  launch_back<kCellGru>(p, plan, stream);
}

void lstm_sequence_backward_persistent(const LstmSequenceBackArgs<float>& a, const PersistentPlan& plan,
                                       cudaStream_t stream) {
  if (a.T == 0 || a.B == 0 || a.H == 0) return;
  BackParams p = back_params_of<BackParams>(a, plan);
  p.saved = a.saved;
  p.cs = a.cs;
  p.dc = a.dc;
  p.dgates_x = a.dgates;
  launch_back<kCellLstm>(p, plan, stream);
}


void rnn_sequence_persistent(const RnnSequenceArgs<float>& a, const PersistentPlan& plan, cudaStream_t stream) {
  if (a.B == 0 || a.H == 0) return;
  const PassParams p = params_of(a, plan);
  if (a.activation == RnnActivation::Tanh)
    launch<kCellRnnTanh>(p, nullptr, plan, stream);
  else
    launch<kCellRnnRelu>(p, nullptr, plan, stream);
}

void rnn_sequence_backward_persistent(const RnnSequenceBackArgs<float>& a, const PersistentPlan& plan,
                                      cudaStream_t stream) {
  if (a.T == 0 || a.B == 0 || a.H == 0) return;
  BackParams p = back_params_of<BackParams>(a, plan);
  p.hs = a.hs;
  p.dgates_x = a.dgates;
  if (a.activation == RnnActivation::Tanh)
    launch_back<kCellRnnTanh>(p, plan, stream);
  else
    launch_back<kCellRnnRelu>(p, plan, stream);
}

void gru_rb_sequence_persistent(const GruRbSequenceArgs<float>& a, const PersistentPlan& plan,
                                cudaStream_t stream) {
  if (a.B == 0 || a.H == 0) return;
  PassParams p = params_of(a, plan);
  p.saved = a.saved;
  launch_rb_forward(p, plan, stream);
}

void gru_rb_sequence_backward_persistent(const GruRbSequenceBackArgs<float>& a, const PersistentPlan& plan,
                                         cudaStream_t stream) {
  if (a.T == 0 || a.B == 0 || a.H == 0) return;
  RbBackParams p = back_params_of<RbBackParams>(a, plan);
  p.saved = a.saved;
  p.hs = a.hs;
  p.dgates_x = a.dgates_x;
  p.dgates_rz = a.dgates_rz;
  p.dgates_n = a.dgates_n;
  launch_rb_backward(p, plan, stream);
}

}  // namespace recur::kernels::cuda
