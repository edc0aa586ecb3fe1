// The persistent-RNN planner (recur/kernels/persistent_plan.h). Pure host
// arithmetic over the device's limits; docs/persistent.md explains each
// regime and the numbers used here.
#include "recur/kernels/persistent_plan.h"

#include <algorithm>
#include <cstdio>

#include "recur/common/error.h"

namespace recur::kernels {
namespace {

constexpr std::int64_t kFloat = 4;

std::string kib(std::int64_t bytes) {
  char buf[64];
  if (bytes >= (std::int64_t(1) << 20))
    std::snprintf(buf, sizeof buf, "%.1f MiB", double(bytes) / double(1 << 20));
  else
    std::snprintf(buf, sizeof buf, "%.1f KiB", double(bytes) / 1024.0);
  return buf;
}

std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

// Registers per thread of the BlockLocal kernel, estimated from ptxas -v
// (CUDA 13.0, sm_90, __launch_bounds__(512)): GRU 64, 96, 122, 128 and LSTM
// 85, 92, 108, 128 for R = 1, 2, 4, 8. Only used to count resident blocks.
int block_local_regs(int G, int R) { return std::min(128, 64 + 4 * G * R); }

int resident_blocks(const DeviceLimits& d, int threads, std::int64_t smem, int regs) {
  std::int64_t n = d.max_blocks_per_sm;
  n = std::min<std::int64_t>(n, d.max_threads_per_sm / std::max(threads, 1));
  n = std::min<std::int64_t>(n, d.smem_per_sm / std::max<std::int64_t>(smem + d.smem_reserved_per_block, 1));
  n = std::min<std::int64_t>(n, d.regs_per_sm / std::max<std::int64_t>(std::int64_t(threads) * regs, 1));
  return int(std::max<std::int64_t>(n, 0));
}

PersistentPlan standard(PersistentPlan p, std::string why) {
  p.regime = PersistentRegime::Standard;
  p.blocks = p.threads = p.units_per_block = p.rows_per_block = p.ksplit = p.w_ld = 0;
  p.cluster_size = 1;
  p.smem_bytes = 0;
  p.blocks_per_sm = 0;
  p.reason = std::move(why);
  return p;
}

}  // namespace

const char* rnn_cell_kind_name(RnnCellKind cell) {
  switch (cell) {
    case RnnCellKind::SimpleRNN: return "SimpleRNN";
    case RnnCellKind::LSTM: return "LSTM";
    case RnnCellKind::GRU: return "GRU";
  }
  return "?";
}

const char* persistent_regime_name(PersistentRegime regime) {
  switch (regime) {
    case PersistentRegime::Standard: return "standard";
    case PersistentRegime::BlockLocal: return "persistent/block-local";
    case PersistentRegime::Cluster: return "persistent/cluster";
    case PersistentRegime::Grid: return "persistent/grid";
  }
  return "?";
}

DeviceLimits DeviceLimits::h100_sxm() {
  DeviceLimits d;
  d.sm_count = 132;
  d.regs_per_sm = 65536;
  d.regs_per_block = 65536;
  d.max_threads_per_block = 1024;
  d.max_threads_per_sm = 2048;
  d.max_blocks_per_sm = 32;
  d.smem_per_sm = 228 * 1024;
  d.smem_per_block_optin = 227 * 1024;
  d.smem_reserved_per_block = 1024;
  d.cooperative_launch = true;
  d.max_cluster_size = 16;
  return d;
}

std::string PersistentPlan::describe() const {
  std::string s = persistent_regime_name(regime);
  if (persistent()) {
    s += ": " + std::to_string(blocks) + " blocks";
    if (cluster_size > 1) s += " (clusters of " + std::to_string(cluster_size) + ")";
    s += " x " + std::to_string(threads) + " threads, " + std::to_string(units_per_block) +
         " units and " + std::to_string(rows_per_block) + " rows per block, ksplit " +
         std::to_string(ksplit) + ", " + kib(smem_bytes) + " shared memory per block, " +
         std::to_string(blocks_per_sm) + " resident per SM";
  }
  return s + "; " + reason;
}

PersistentPlan plan_persistent(const PersistentQuery& q, const DeviceLimits& d) {
  RECUR_CHECK(q.hidden > 0 && q.batch > 0, Value, "plan_persistent: hidden size and batch must be "
              "positive, got H = ", q.hidden, ", B = ", q.batch);
  RECUR_CHECK(d.sm_count > 0 && d.max_threads_per_block >= 32 && d.max_threads_per_sm > 0 &&
                  d.max_blocks_per_sm > 0 && d.regs_per_sm > 0 && d.smem_per_sm > 0 &&
                  d.smem_per_block_optin > 0 && d.max_cluster_size >= 1,
              Value, "plan_persistent: the device limits describe no GPU (", d.sm_count, " SMs, ",
              d.max_threads_per_block, " threads per block, ", d.smem_per_block_optin,
              " bytes of shared memory per block)");
  const int G = rnn_cell_gates(q.cell);
  const std::int64_t H = q.hidden, B = q.batch;
  PersistentPlan p;
  p.w_hh_bytes = G * H * H * kFloat;
  const bool rb = q.reset_before && q.cell == RnnCellKind::GRU;
  const std::string shape = std::string(rnn_cell_kind_name(q.cell)) + (rb ? " (reset before)" : "") +
                            (q.backward ? " backward" : "") +
                            " H " + std::to_string(H) + " B " + std::to_string(B) + ": W_hh is " +
                            kib(p.w_hh_bytes);
  if (q.dtype != DType::f32)
    return standard(p, shape + "; the persistent kernels are float32 only, not " +
                           std::string(dtype_name(q.dtype)));

  // (a) BlockLocal: all of W_hh in one block's shared memory, the batch cut
  // into slices of R rows, one block per slice. The smallest R whose blocks
  // all fit on the GPU at once: fewer rows per block is less work per step,
  // and the step time is the layer's latency.
  // Backward: unit k's lanes share the dot product of dgates_h [GH] with
  // column k of W_hh (a row of W_hh^T, GH long); the reset-before GRU's
  // longest backward product is over its r and z gradients (2H).
  const int max_threads = std::min(d.max_threads_per_block, kPersistentMaxThreads);
  const std::int64_t dot_len = !q.backward ? H : rb ? 2 * H : G * H;
  const int ksplit = persistent_ksplit(dot_len, H, max_threads);
  const std::int64_t threads = H * ksplit;
  const int w_ld = persistent_w_ld(q.backward ? G * H : H, ksplit);
  auto layout_bytes = [&](int R) {
    const std::int64_t floats = rb ? (q.backward ? block_local_rb_back_layout(H, R, w_ld).total
                                                 : block_local_rb_layout(H, R, w_ld).total)
                                   : (q.backward ? block_local_back_layout(G, H, R, w_ld).total
                                                 : block_local_layout(G, H, R, w_ld).total);
    return floats * kFloat;
  };
  std::string why_not_local;
  const std::int64_t smem1 = layout_bytes(1);
  if (threads > max_threads) {
    why_not_local = std::to_string(H) + " units need more than the " + std::to_string(max_threads) +
                    " threads of a block";
  } else if (smem1 > d.smem_per_block_optin) {
    why_not_local = "one block would need " + kib(smem1) + " of shared memory (W_hh padded, " +
                    "state, input), more than the " + kib(d.smem_per_block_optin) + " a block can have";
  } else {
    for (int R : kPersistentRowTiles) {
      const std::int64_t smem = layout_bytes(R);
      if (smem > d.smem_per_block_optin) break;
      // The reset-before kernels use up to 128 registers (ptxas, sm_90).
      const int per_sm = resident_blocks(d, int(threads), smem, rb ? 128 : block_local_regs(G, R));
      const std::int64_t blocks = ceil_div(B, R);
      if (per_sm == 0) break;
      if (blocks > std::int64_t(per_sm) * d.sm_count) {
        why_not_local = std::to_string(blocks) + " blocks of " + std::to_string(R) +
                        " rows would need more than one wave (" + std::to_string(per_sm) +
                        " resident per SM x " + std::to_string(d.sm_count) + " SMs)";
        continue;
      }
      p.regime = PersistentRegime::BlockLocal;
      p.blocks = int(blocks);
      p.threads = int(threads);
      p.units_per_block = int(H);
      p.rows_per_block = R;
      p.row_tile = R;
      p.ksplit = ksplit;
      p.w_ld = w_ld;
      p.smem_bytes = smem;
      p.blocks_per_sm = per_sm;
      p.reason = shape + ", which fits in one block's shared memory (" + kib(smem) +
                 " with the state and inputs of " + std::to_string(R) + " row" + (R > 1 ? "s" : "") +
                 "): " + std::to_string(blocks) + " independent blocks, one per batch slice, " +
                 "no synchronisation between blocks";
      return p;
    }
    // W_hh fits one block; what failed is the batch (more than one wave) or
    // the SM (no block resident): cutting W_hh over more blocks would only
    // need more of them.
    if (why_not_local.empty()) why_not_local = "no block of this size can be resident on an SM";
    return standard(p, shape + ", which fits one block, but " + why_not_local);
  }
  if (q.backward || rb)
    return standard(p, shape + "; not one block-local plan (" + why_not_local + "), and " +
                           (q.backward ? "the backward pass" : "the reset-before GRU") +
                           " has no multi-block persistent kernel");

  // (b), (c): W_hh cut by hidden units over several blocks, each holding the
  // G gate rows of its units (grid_layout()); every block needs the whole
  // previous state each step, staged through shared memory in tiles of
  // `tile` rows. Sized with the widest row padding (31 floats), then padded
  // for the lanes actually chosen.
  int tile = 1;
  while (tile < kPersistentMaxRowTile && tile < B) tile *= 2;
  const std::int64_t staging = persistent_align4(tile * H) * kFloat;
  const std::int64_t per_unit = G * (H + 31) * kFloat;
  const std::int64_t room = d.smem_per_block_optin - staging - 16;
  const std::int64_t units_max = room > 0 ? std::min<std::int64_t>(room / per_unit, max_threads) : 0;
  if (units_max < 1)
    return standard(p, shape + "; not one block-local plan (" + why_not_local +
                           "), and a block cannot hold even one unit's weights with a state tile");
  std::int64_t nb = ceil_div(H, units_max);     // blocks that hold W_hh once
  const std::int64_t units = ceil_div(H, nb);
  nb = ceil_div(H, units);                      // no block without units
  const int ks = persistent_ksplit(H, units, max_threads);
  const int ld = persistent_w_ld(H, ks);
  const std::int64_t smem = grid_layout(G, H, int(units), tile, ld).total * kFloat;
  const int thr = int(units * ks);
  const int per_sm = resident_blocks(d, thr, smem, 128);
  p.units_per_block = int(units);
  p.row_tile = tile;
  p.ksplit = ks;
  p.w_ld = ld;
  p.threads = thr;
  p.smem_bytes = smem;
  p.blocks_per_sm = per_sm;
  const std::string spans = shape + ", more than one block's shared memory (" + why_not_local +
                            "); held once it spans " + std::to_string(nb) + " blocks of " +
                            std::to_string(units) + " units (" + kib(smem) + " each)";
  if (per_sm == 0) return standard(p, spans + ", but such a block does not fit on an SM");
  const std::int64_t resident = std::int64_t(per_sm) * d.sm_count;
  if (nb <= d.max_cluster_size && nb <= d.sm_count) {
    // Independent clusters, one per batch slice; a cluster barrier per step.
    const std::int64_t clusters = std::max<std::int64_t>(1, std::min(B, resident / nb));
    p.regime = PersistentRegime::Cluster;
    p.cluster_size = int(nb);
    p.blocks = int(clusters * nb);
    p.rows_per_block = int(ceil_div(B, clusters));
    p.reason = spans + ": a thread-block cluster of " + std::to_string(nb) +
               (nb > 8 ? " (non-portable size: needs cudaFuncAttributeNonPortableClusterSizeAllowed)" : "") +
               " per batch slice of " + std::to_string(p.rows_per_block) + " rows, " +
               std::to_string(clusters) + " clusters, states through distributed shared memory, " +
               "one cluster barrier per step";
    return p;
  }
  if (!d.cooperative_launch)
    return standard(p, spans + ", more than a cluster, and the device has no cooperative launch for a "
                           "grid-wide barrier");
  if (nb > resident)
    return standard(p, spans + ", more than the " + std::to_string(resident) +
                           " blocks the GPU holds at once: W_hh does not fit in the chip's shared memory");
  p.regime = PersistentRegime::Grid;
  p.blocks = int(nb);
  p.rows_per_block = int(B);
  p.reason = spans + ", more than a cluster of " + std::to_string(d.max_cluster_size) +
             ": one grid of " + std::to_string(nb) + " co-resident blocks (cooperative launch), " +
             "all " + std::to_string(B) + " rows in tiles of " + std::to_string(tile) +
             ", one grid-wide barrier per step";
  return p;
}

}  // namespace recur::kernels
