// The persistent-RNN planner: pure host code that decides, per layer, whether
// the whole time loop of a recurrent pass runs in one kernel launch with the
// recurrent weights W_hh kept on chip, and how (docs/persistent.md).
//
// Regimes, lightest synchronisation first:
//   BlockLocal  one thread block owns all H units of a slice of the batch and
//               keeps all of W_hh in its shared memory: the blocks never wait
//               for each other, only __syncthreads() between steps.
//   Cluster     W_hh spans 2..16 SMs: a thread-block cluster (Hopper) holds it,
//               one cluster per batch slice, states exchanged through
//               distributed shared memory, a cluster barrier per step.
//   Grid        W_hh spans more SMs than a cluster: every block owns a slice of
//               the units for all rows, a grid-wide barrier per step
//               (cooperative launch: all blocks resident at once).
//   Standard    none fits (W_hh larger than the chip's shared memory, a batch
//               that needs more than one wave of blocks, a dtype or cell the
//               kernels lack): the per-step GEMM + pointwise kernels.
//
// The planner only says what fits and why; which regimes have kernels is the
// backend's answer (supports()). All sizes are float32 (4 bytes).
#pragma once

#include <cstdint>
#include <string>

#include "recur/common/dtype.h"
#include "recur/common/macros.h"

namespace recur::kernels {

enum class RnnCellKind : std::uint8_t { SimpleRNN, LSTM, GRU };
enum class PersistentRegime : std::uint8_t { Standard, BlockLocal, Cluster, Grid };

const char* rnn_cell_kind_name(RnnCellKind cell);
const char* persistent_regime_name(PersistentRegime regime);
inline constexpr int rnn_cell_gates(RnnCellKind cell) {
  return cell == RnnCellKind::LSTM ? 4 : cell == RnnCellKind::GRU ? 3 : 1;
}

// What the planner needs to know about the GPU: filled from cudaDeviceProp on
// a GPU (host/src/cuda), from constants in tests.
struct DeviceLimits {
  int sm_count = 0;
  int regs_per_sm = 0;     // 32-bit registers
  int regs_per_block = 0;
  int max_threads_per_block = 0;
  int max_threads_per_sm = 0;
  int max_blocks_per_sm = 0;
  std::int64_t smem_per_sm = 0;             // bytes
  std::int64_t smem_per_block_optin = 0;    // bytes one block may have after cudaFuncSetAttribute
  std::int64_t smem_reserved_per_block = 0;  // bytes the runtime keeps per resident block
  bool cooperative_launch = false;          // grid-wide barrier possible
  int max_cluster_size = 1;                 // 1: no clusters; Hopper: 8 portable, 16 non-portable

  // An H100 SXM (compute capability 9.0): 132 SMs, 64K registers per SM, 227 KB
  // of shared memory per block (opt-in), 228 KB per SM, clusters of up to 16.
  static DeviceLimits h100_sxm();
};

struct PersistentQuery {
  RnnCellKind cell = RnnCellKind::GRU;
  std::int64_t hidden = 0;  // H
  std::int64_t batch = 0;   // B
  DType dtype = DType::f32;
  // The backward pass (backpropagation through the whole sequence): only the
  // block-local regime has a kernel, with its own layout
  // (block_local_back_layout()); everything else is Standard.
  bool backward = false;
  // GRU with the reset gate before the recurrent matmul (Keras
  // reset_after=False): block-local only, block_local_rb_layout() and
  // block_local_rb_back_layout(). SimpleRNN (cell) is block-local only too.
  bool reset_before = false;
};

struct PersistentPlan {
  PersistentRegime regime = PersistentRegime::Standard;
  int blocks = 0;            // grid size (all clusters' blocks)
  int threads = 0;           // per block
  int cluster_size = 1;      // blocks per cluster (Cluster), else 1
  int units_per_block = 0;   // hidden units a block owns (all G gate rows of each)
  int rows_per_block = 0;    // batch rows a block computes each step (BlockLocal: its slice)
  int row_tile = 0;          // rows per pass over W_hh (the kernel's compiled tile: 1, 2, 4, 8)
  int ksplit = 0;            // lanes that share one dot product over H (a power of two <= 32)
  int w_ld = 0;              // padded row length of W_hh in shared memory, in floats
  std::int64_t smem_bytes = 0;  // dynamic shared memory per block
  int blocks_per_sm = 0;     // resident blocks per SM the plan counts on
  std::int64_t w_hh_bytes = 0;  // G H H * 4
  std::string reason;        // why this regime (and why not the lighter ones)

  bool persistent() const { return regime != PersistentRegime::Standard; }
  // One line for RECUR_LOG=debug: regime, geometry and reason.
  std::string describe() const;
};

// Decides. Throws ValueError for a non-positive H or B or limits that
// describe no GPU.
PersistentPlan plan_persistent(const PersistentQuery& query, const DeviceLimits& limits);

// ---- shared with the kernel (kernels/cuda/persistent_rnn.cu) ----------------------------

// Threads per BlockLocal block at most: the kernel's __launch_bounds__. At
// 512 a thread may use 128 registers; at 1024 only 64, and the kernel spills
// (ptxas -v, sm_90: 24 bytes for GRU with one row, 224 for LSTM with eight).
inline constexpr int kPersistentMaxThreads = 512;
// Row tiles a BlockLocal kernel is compiled for; rows_per_block is one of them.
inline constexpr int kPersistentRowTiles[] = {1, 2, 4, 8};
inline constexpr int kPersistentMaxRowTile = 8;

// Lanes per dot product of length K: about 8 to 16 multiply-adds per lane
// and step, and no more than `max_threads` threads for `groups` units.
inline int persistent_ksplit(std::int64_t K, std::int64_t groups, int max_threads) {
  int k = 1;
  while (k < 32 && k * 16 < K && std::int64_t(2 * k) * groups <= max_threads) k *= 2;
  return k;
}
inline int persistent_ksplit(std::int64_t H, int max_threads) { return persistent_ksplit(H, H, max_threads); }

// W_hh rows are padded so that the ksplit lanes of 32 / ksplit consecutive
// units read 32 different banks: w_ld = ksplit (mod 32). With ksplit = 32
// one unit fills the warp and any w_ld is conflict-free.
inline int persistent_w_ld(std::int64_t H, int ksplit) {
  if (ksplit >= 32) return int(H);
  const int rem = int(H % 32);
  return int(H) + ((ksplit - rem) % 32 + 32) % 32;
}

// The BlockLocal kernel's shared memory, offsets in floats. R rows, H units,
// G gates. Every array a block touches each step lives here:
//   w      [G H, w_ld]  W_hh, loaded once
//   b_ih, b_hh [G H]    biases (b_sum would round differently from the CPU twin)
//   h      [2, R, H]    the state, double-buffered across steps
//   hin    [2, R, H]    the state the matmul reads (h * recurrent-dropout mask)
//   c      [R, H]       LSTM cell state, updated in place
//   hproj  [R, G H]     h W_hh^T of the step
//   xs     [2, R, G H]  the input projection, copied in a step ahead
struct BlockLocalLayout {
  std::int64_t w, b_ih, b_hh, h, hin, c, hproj, xs, total;
};
RECUR_HD std::int64_t persistent_align4(std::int64_t n) { return (n + 3) / 4 * 4; }  // 16 bytes
RECUR_HD BlockLocalLayout block_local_layout(int G, std::int64_t H, int R, int w_ld) {
  const std::int64_t GH = std::int64_t(G) * H;
  BlockLocalLayout l{};
  l.w = 0;
  l.b_ih = l.w + persistent_align4(GH * w_ld);
  l.b_hh = l.b_ih + persistent_align4(GH);
  l.h = l.b_hh + persistent_align4(GH);
  l.hin = l.h + persistent_align4(2 * R * H);
  l.c = l.hin + persistent_align4(2 * R * H);
  l.hproj = l.c + persistent_align4(G == 4 ? R * H : 0);
  l.xs = l.hproj + persistent_align4(R * GH);
  l.total = l.xs + persistent_align4(2 * R * GH);
  return l;
}

// The BlockLocal backward kernel's shared memory, offsets in floats. R rows,
// H units, G gates, GH = G H:
//   w      [H, w_ld]     W_hh transposed (row k: W_hh[0..GH, k]), w_ld >= GH
//   dg     [2, R, GH]    the step's dgates_h, what dh_prev's product reads
//   dh     [R, H]        dL/dh flowing back, in place
//   dc     [R, H]        LSTM: dL/dc flowing back, in place
//   saved  [2, R, 4H]    the step's saved activations, copied in a step ahead
//                        (none for SimpleRNN, G = 1)
//   st     [2, R, H]     GRU: h_prev; LSTM: c_prev (cs[t]); SimpleRNN: h (hs[t + 1])
//   st2    [2, R, H]     LSTM: c (cs[t + 1])
//   dy     [2, R, H]     dL/dy of the step
struct BlockLocalBackLayout {
  std::int64_t w, dg, dh, dc, saved, st, st2, dy, total;
};
RECUR_HD BlockLocalBackLayout block_local_back_layout(int G, std::int64_t H, int R, int w_ld) {
  const std::int64_t GH = std::int64_t(G) * H;
  BlockLocalBackLayout l{};
  l.w = 0;
  l.dg = l.w + persistent_align4(H * w_ld);
  l.dh = l.dg + persistent_align4(2 * R * GH);
  l.dc = l.dh + persistent_align4(R * H);
  l.saved = l.dc + persistent_align4(G == 4 ? R * H : 0);
  l.st = l.saved + persistent_align4(G == 1 ? 0 : 2 * R * 4 * H);
  l.st2 = l.st + persistent_align4(2 * R * H);
  l.dy = l.st2 + persistent_align4(G == 4 ? 2 * R * H : 0);
  l.total = l.dy + persistent_align4(2 * R * H);
  return l;
}

// The reset-before GRU's BlockLocal kernels (two recurrent products per step:
// h_in W_h[r,z]^T, then (r * h_in) W_hn^T), offsets in floats.
// Forward: w [3H, w_ld] (W_hh), b_ih, b_hh [3H], h and hin [2, R, H] as
// block_local_layout(), hproj [R, 2H], hn [R, H], rh [R, H] (what the second
// product reads), sv [R, 4H] (the saved activations of inference, which keeps
// none), xs [2, R, 3H].
struct BlockLocalRbLayout {
  std::int64_t w, b_ih, b_hh, h, hin, hproj, hn, rh, sv, xs, total;
};
RECUR_HD BlockLocalRbLayout block_local_rb_layout(std::int64_t H, int R, int w_ld) {
  BlockLocalRbLayout l{};
  l.w = 0;
  l.b_ih = l.w + persistent_align4(3 * H * w_ld);
  l.b_hh = l.b_ih + persistent_align4(3 * H);
  l.h = l.b_hh + persistent_align4(3 * H);
  l.hin = l.h + persistent_align4(2 * R * H);
  l.hproj = l.hin + persistent_align4(2 * R * H);
  l.hn = l.hproj + persistent_align4(R * 2 * H);
  l.rh = l.hn + persistent_align4(R * H);
  l.sv = l.rh + persistent_align4(R * H);
  l.xs = l.sv + persistent_align4(R * 4 * H);
  l.total = l.xs + persistent_align4(2 * R * 3 * H);
  return l;
}
// Backward: w [H, w_ld] (W_hh^T, rows 3H long), dgrz [2, R, 2H] (the
// r and z gate gradients, double-buffered), dgn [R, H], dh [R, H], drh, dhin,
// hin [R, H] (dL/d(r h_in), dL/dh_in through r h_in, h_in), saved [2, R, 4H],
// st [2, R, H] (h_prev), dy [2, R, H].
struct BlockLocalRbBackLayout {
  std::int64_t w, dgrz, dgn, dh, drh, dhin, hin, saved, st, dy, total;
};
RECUR_HD BlockLocalRbBackLayout block_local_rb_back_layout(std::int64_t H, int R, int w_ld) {
  BlockLocalRbBackLayout l{};
  l.w = 0;
  l.dgrz = l.w + persistent_align4(H * w_ld);
  l.dgn = l.dgrz + persistent_align4(2 * R * 2 * H);
  l.dh = l.dgn + persistent_align4(R * H);
  l.drh = l.dh + persistent_align4(R * H);
  l.dhin = l.drh + persistent_align4(R * H);
  l.hin = l.dhin + persistent_align4(R * H);
  l.saved = l.hin + persistent_align4(R * H);
  l.st = l.saved + persistent_align4(2 * R * 4 * H);
  l.dy = l.st + persistent_align4(2 * R * H);
  l.total = l.dy + persistent_align4(2 * R * H);
  return l;
}

// The Grid kernel's shared memory, offsets in floats: the G gate rows of the
// block's `units` units of W_hh ([G units, w_ld]; row g * units + u is
// W_hh's row g * H + first unit + u) and a tile of RT rows of the previous
// state ([RT, H], recurrent dropout applied). Everything else (states,
// inputs, hproj) stays in global memory, read back by the thread that wrote it.
struct GridLayout {
  std::int64_t w, h, total;
};
RECUR_HD GridLayout grid_layout(int G, std::int64_t H, int units, int RT, int w_ld) {
  GridLayout l{};
  l.w = 0;
  l.h = persistent_align4(std::int64_t(G) * units * w_ld);
  l.total = l.h + persistent_align4(std::int64_t(RT) * H);
  return l;
}

}  // namespace recur::kernels
