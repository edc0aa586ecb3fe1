// The persistent-RNN path (docs/persistent.md): the planner's decisions on an
// H100's limits over the issue's grid of H and B (CPU, pure arithmetic), the
// log it writes, and (suites named CUDA, label `gpu`) the persistent kernels
// against a float64 reference of the step ops.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>

#include "recur/common/log.h"
#include "recur/host/system_info.h"
#include "recur/kernels/persistent_plan.h"
#include "test_util.h"

namespace recur::test {
namespace {

using kernels::DeviceLimits;
using kernels::PersistentPlan;
using kernels::PersistentQuery;
using kernels::PersistentRegime;
using kernels::RnnCellKind;

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

PersistentPlan plan(RnnCellKind cell, std::int64_t H, std::int64_t B,
                    const DeviceLimits& d = DeviceLimits::h100_sxm(), DType dt = DType::f32) {
  return kernels::plan_persistent(PersistentQuery{cell, H, B, dt}, d);
}
PersistentPlan plan_backward(RnnCellKind cell, std::int64_t H, std::int64_t B,
                             const DeviceLimits& d = DeviceLimits::h100_sxm()) {
  return kernels::plan_persistent(PersistentQuery{cell, H, B, DType::f32, true}, d);
}

// Every plan must be launchable on the limits it was made for.
void expect_consistent(const PersistentPlan& p, const DeviceLimits& d, std::int64_t H, std::int64_t B) {
  SCOPED_TRACE(p.describe());
  EXPECT_FALSE(p.reason.empty());
  if (!p.persistent()) return;
  EXPECT_GE(p.threads, 1);
  EXPECT_LE(p.threads, d.max_threads_per_block);
  EXPECT_GT(p.smem_bytes, 0);
  EXPECT_LE(p.smem_bytes, d.smem_per_block_optin);
  EXPECT_GE(p.blocks_per_sm, 1);
  EXPECT_LE(p.blocks, std::int64_t(p.blocks_per_sm) * d.sm_count) << "more than one wave";
  EXPECT_GE(p.ksplit, 1);
  EXPECT_LE(p.ksplit, 32);
  EXPECT_EQ(p.ksplit & (p.ksplit - 1), 0) << "ksplit must be a power of two";
  EXPECT_GE(p.w_ld, H);
  switch (p.regime) {
    case PersistentRegime::BlockLocal: {
      EXPECT_EQ(p.units_per_block, H);
      EXPECT_EQ(p.cluster_size, 1);
      EXPECT_GE(std::int64_t(p.blocks) * p.rows_per_block, B) << "every row has a block";
      EXPECT_LT(std::int64_t(p.blocks - 1) * p.rows_per_block, B) << "no block without rows";
      EXPECT_EQ(p.threads, H * p.ksplit);
      bool tile = false;
      for (int r : kernels::kPersistentRowTiles) tile = tile || r == p.rows_per_block;
      EXPECT_TRUE(tile) << "rows_per_block must be a compiled row tile";
      if (p.ksplit < 32) {
        EXPECT_EQ(p.w_ld % 32, p.ksplit % 32) << "bank-conflict padding";
      }
      break;
    }
    case PersistentRegime::Cluster:
      EXPECT_GE(p.cluster_size, 2);
      EXPECT_LE(p.cluster_size, d.max_cluster_size);
      EXPECT_EQ(p.blocks % p.cluster_size, 0);
      EXPECT_GE(std::int64_t(p.cluster_size) * p.units_per_block, H);
      break;
    case PersistentRegime::Grid: {
      EXPECT_GT(std::int64_t(p.blocks), d.max_cluster_size);
      EXPECT_GE(std::int64_t(p.blocks) * p.units_per_block, H);
      EXPECT_LT(std::int64_t(p.blocks - 1) * p.units_per_block, H) << "no block without units";
      EXPECT_EQ(p.rows_per_block, B);
      EXPECT_EQ(p.threads, p.units_per_block * p.ksplit);
      EXPECT_TRUE(p.row_tile >= std::min<std::int64_t>(B, 8) && p.row_tile <= 8 &&
                  (p.row_tile & (p.row_tile - 1)) == 0) << p.row_tile;
      const int G = int(p.w_hh_bytes / (4 * H * H));
      EXPECT_EQ(p.smem_bytes, kernels::grid_layout(G, H, p.units_per_block, p.row_tile, p.w_ld).total * 4);
      break;
    }
    case PersistentRegime::Standard: break;
  }
}

TEST(PersistentPlan, JenaGruIsBlockLocalWithOneRowPerBlock) {
  // The Jena forecaster: GRU 32, batch 128. W_hh is 12 KiB: every block keeps
  // a copy and takes one row; no synchronisation between blocks.
  const DeviceLimits d = DeviceLimits::h100_sxm();
  const PersistentPlan p = plan(RnnCellKind::GRU, 32, 128, d);
  expect_consistent(p, d, 32, 128);
  EXPECT_EQ(p.regime, PersistentRegime::BlockLocal) << p.describe();
  EXPECT_EQ(p.blocks, 128);
  EXPECT_EQ(p.rows_per_block, 1);
  EXPECT_EQ(p.units_per_block, 32);
  EXPECT_EQ(p.w_hh_bytes, 3 * 32 * 32 * 4);
  EXPECT_TRUE(contains(p.reason, "no synchronisation between blocks")) << p.reason;
  EXPECT_TRUE(contains(p.describe(), "persistent/block-local")) << p.describe();
}

TEST(PersistentPlan, SmallHiddenSizesAreBlockLocalForEveryBatchOfTheIssue) {
  const DeviceLimits d = DeviceLimits::h100_sxm();
  for (RnnCellKind cell : {RnnCellKind::GRU, RnnCellKind::LSTM, RnnCellKind::SimpleRNN})
    for (std::int64_t H : {1, 7, 32, 64, 100})
      for (std::int64_t B : {1, 3, 32, 128, 256}) {
        SCOPED_TRACE(::testing::Message() << kernels::rnn_cell_kind_name(cell) << " H " << H << " B " << B);
        const PersistentPlan p = plan(cell, H, B, d);
        expect_consistent(p, d, H, B);
        EXPECT_EQ(p.regime, PersistentRegime::BlockLocal) << p.describe();
      }
}

TEST(PersistentPlan, BackwardIsBlockLocalWithItsOwnLayoutOrStandard) {
  // The backward kernel keeps W_hh^T (rows of G H, padded) and dgates_h of
  // two steps on chip; its lanes share dot products G H long.
  const DeviceLimits d = DeviceLimits::h100_sxm();
  for (RnnCellKind cell : {RnnCellKind::GRU, RnnCellKind::LSTM})
    for (std::int64_t H : {1, 7, 32, 64, 100})
      for (std::int64_t B : {1, 3, 32, 128, 256}) {
        SCOPED_TRACE(::testing::Message() << kernels::rnn_cell_kind_name(cell) << " H " << H << " B " << B);
        const PersistentPlan p = plan_backward(cell, H, B, d);
        expect_consistent(p, d, H, B);
        ASSERT_EQ(p.regime, PersistentRegime::BlockLocal) << p.describe();
        const int G = kernels::rnn_cell_gates(cell);
        EXPECT_GE(p.w_ld, G * H) << "a row of W_hh^T is G H long";
        EXPECT_EQ(p.ksplit, kernels::persistent_ksplit(G * H, H, kernels::kPersistentMaxThreads));
        EXPECT_EQ(p.smem_bytes, kernels::block_local_back_layout(G, H, p.rows_per_block, p.w_ld).total * 4);
        EXPECT_TRUE(contains(p.reason, "backward")) << p.reason;
      }
  // The Jena GRU: one row per block, as the forward.
  const PersistentPlan jena = plan_backward(RnnCellKind::GRU, 32, 128, d);
  EXPECT_EQ(jena.blocks, 128);
  EXPECT_EQ(jena.rows_per_block, 1);
  // Too big for one block: standard, never a grid (no multi-block backward kernel).
  for (std::int64_t H : {256, 1024}) {
    const PersistentPlan big = plan_backward(RnnCellKind::LSTM, H, 16, d);
    EXPECT_EQ(big.regime, PersistentRegime::Standard) << big.describe();
    EXPECT_TRUE(contains(big.reason, "no multi-block persistent kernel")) << big.reason;
  }
  // The layout: W_hh^T, dgates_h of two steps, dh (dc), and two steps of inputs.
  const auto l = kernels::block_local_back_layout(4, 8, 2, 33);
  EXPECT_EQ(l.dg, kernels::persistent_align4(8 * 33));
  EXPECT_EQ(l.dh - l.dg, 2 * 2 * 32);
  EXPECT_EQ(l.saved - l.dc, 2 * 8);  // LSTM keeps dc
  EXPECT_EQ(l.total - l.dy, 2 * 2 * 8);
  const auto g = kernels::block_local_back_layout(3, 8, 2, 25);
  EXPECT_EQ(g.saved, g.dc) << "no dc for the GRU";
  EXPECT_EQ(g.dy, g.st2) << "no second state for the GRU";
}

TEST(PersistentPlan, SimpleRnnAndResetBeforeGruHaveBlockLocalPlansBothWays) {
  const DeviceLimits d = DeviceLimits::h100_sxm();
  for (bool backward : {false, true})
    for (std::int64_t H : {1, 7, 32, 64, 100, 128})
      for (std::int64_t B : {1, 3, 32, 128, 256}) {
        SCOPED_TRACE(::testing::Message() << "H " << H << " B " << B << (backward ? " backward" : ""));
        const PersistentPlan rnn =
            kernels::plan_persistent(PersistentQuery{RnnCellKind::SimpleRNN, H, B, DType::f32, backward}, d);
        expect_consistent(rnn, d, H, B);
        EXPECT_EQ(rnn.regime, PersistentRegime::BlockLocal) << rnn.describe();
        if (backward) {
          EXPECT_EQ(rnn.smem_bytes, kernels::block_local_back_layout(1, H, rnn.rows_per_block, rnn.w_ld).total * 4);
        }
        const PersistentPlan rb =
            kernels::plan_persistent(PersistentQuery{RnnCellKind::GRU, H, B, DType::f32, backward, true}, d);
        expect_consistent(rb, d, H, B);
        ASSERT_EQ(rb.regime, PersistentRegime::BlockLocal) << rb.describe();
        EXPECT_TRUE(contains(rb.reason, "reset before")) << rb.reason;
        const std::int64_t floats = backward ? kernels::block_local_rb_back_layout(H, rb.rows_per_block, rb.w_ld).total
                                             : kernels::block_local_rb_layout(H, rb.rows_per_block, rb.w_ld).total;
        EXPECT_EQ(rb.smem_bytes, floats * 4);
        EXPECT_GE(rb.w_ld, backward ? 3 * H : H);
        EXPECT_EQ(rb.ksplit, kernels::persistent_ksplit(backward ? 2 * H : H, H, kernels::kPersistentMaxThreads));
      }
  // Beyond one block: standard for the reset-before GRU (no multi-block
  // kernel), and for every backward pass.
  const PersistentPlan big =
      kernels::plan_persistent(PersistentQuery{RnnCellKind::GRU, 256, 16, DType::f32, false, true}, d);
  EXPECT_EQ(big.regime, PersistentRegime::Standard) << big.describe();
  EXPECT_TRUE(contains(big.reason, "reset-before GRU has no multi-block persistent kernel")) << big.reason;
  // The layouts: a SimpleRNN backward copies no saved activations; the
  // reset-before layouts hold their two products' buffers.
  const auto r1 = kernels::block_local_back_layout(1, 8, 2, 9);
  EXPECT_EQ(r1.st, r1.saved) << "SimpleRNN: no saved activations";
  const auto f = kernels::block_local_rb_layout(8, 2, 9);
  EXPECT_EQ(f.hn - f.hproj, 2 * 2 * 8);
  EXPECT_EQ(f.xs - f.sv, 2 * 4 * 8);
  EXPECT_EQ(f.total - f.xs, 2 * 2 * 3 * 8);
  const auto b = kernels::block_local_rb_back_layout(8, 2, 25);
  EXPECT_EQ(b.dgn - b.dgrz, 2 * 2 * 2 * 8);
  EXPECT_EQ(b.st - b.saved, 2 * 2 * 4 * 8);
}

TEST(PersistentPlan, BatchOfOneUsesOneBlockWhenWeightsFit) {
  const PersistentPlan p = plan(RnnCellKind::LSTM, 64, 1);
  EXPECT_EQ(p.regime, PersistentRegime::BlockLocal);
  EXPECT_EQ(p.blocks, 1);
  EXPECT_EQ(p.rows_per_block, 1);
}

TEST(PersistentPlan, LargerBatchesTakeMoreRowsPerBlockWhenOnlyOneBlockFitsPerSm) {
  // GRU 128: W_hh is 192 KiB, one block per SM. 256 rows over 132 SMs: two
  // rows per block, 128 blocks, one wave.
  const DeviceLimits d = DeviceLimits::h100_sxm();
  const PersistentPlan p = plan(RnnCellKind::GRU, 128, 256, d);
  expect_consistent(p, d, 128, 256);
  EXPECT_EQ(p.regime, PersistentRegime::BlockLocal) << p.describe();
  EXPECT_EQ(p.blocks_per_sm, 1);
  EXPECT_EQ(p.rows_per_block, 2);
  EXPECT_EQ(p.blocks, 128);
}

TEST(PersistentPlan, WeightsOverOneBlockGoToAClusterThenTheGrid) {
  const DeviceLimits d = DeviceLimits::h100_sxm();
  // LSTM 128: 256 KiB of W_hh, more than a block's 227 KiB: a cluster of 2.
  PersistentPlan p = plan(RnnCellKind::LSTM, 128, 32, d);
  expect_consistent(p, d, 128, 32);
  EXPECT_EQ(p.regime, PersistentRegime::Cluster) << p.describe();
  EXPECT_EQ(p.cluster_size, 2);
  EXPECT_TRUE(contains(p.reason, "more than one block's shared memory")) << p.reason;
  // GRU 256 (768 KiB) and LSTM 256 (1 MiB): clusters of a handful of SMs.
  for (RnnCellKind cell : {RnnCellKind::GRU, RnnCellKind::LSTM}) {
    p = plan(cell, 256, 64, d);
    expect_consistent(p, d, 256, 64);
    EXPECT_EQ(p.regime, PersistentRegime::Cluster) << p.describe();
    EXPECT_LE(p.cluster_size, 8) << "portable cluster size expected";
  }
  // GRU 512 (3 MiB) just fits 16 SMs: a non-portable cluster.
  p = plan(RnnCellKind::GRU, 512, 16, d);
  expect_consistent(p, d, 512, 16);
  EXPECT_EQ(p.regime, PersistentRegime::Cluster) << p.describe();
  EXPECT_GT(p.cluster_size, 8);
  EXPECT_TRUE(contains(p.reason, "non-portable")) << p.reason;
  // LSTM 512 and H 1024: more than 16 SMs' worth: a grid-wide barrier.
  for (RnnCellKind cell : {RnnCellKind::GRU, RnnCellKind::LSTM})
    for (std::int64_t H : {512, 1024})
      for (std::int64_t B : {1, 16, 64}) {
        if (cell == RnnCellKind::GRU && H == 512) continue;
        SCOPED_TRACE(::testing::Message() << kernels::rnn_cell_kind_name(cell) << " H " << H << " B " << B);
        p = plan(cell, H, B, d);
        expect_consistent(p, d, H, B);
        EXPECT_EQ(p.regime, PersistentRegime::Grid) << p.describe();
        EXPECT_TRUE(contains(p.reason, "grid-wide barrier")) << p.reason;
      }
}

TEST(PersistentPlan, EveryPlanOverTheIssueGridIsLaunchable) {
  // With and without clusters (the CUDA backend plans without them until the
  // cluster kernel exists): every plan fits the limits and the kernels' layouts.
  for (int clusters : {16, 1}) {
    DeviceLimits d = DeviceLimits::h100_sxm();
    d.max_cluster_size = clusters;
    for (RnnCellKind cell : {RnnCellKind::GRU, RnnCellKind::LSTM, RnnCellKind::SimpleRNN})
      for (std::int64_t H : {1, 7, 32, 64, 100, 128, 256, 512, 1024, 2048})
        for (std::int64_t B : {1, 3, 32, 128, 256}) {
          SCOPED_TRACE(::testing::Message() << kernels::rnn_cell_kind_name(cell) << " H " << H << " B " << B
                                            << " clusters " << clusters);
          const PersistentPlan p = plan(cell, H, B, d);
          expect_consistent(p, d, H, B);
          if (clusters == 1) {
            EXPECT_NE(p.regime, PersistentRegime::Cluster);
          }
          if (H <= 1024 && cell != RnnCellKind::SimpleRNN) {
            EXPECT_TRUE(p.persistent()) << p.describe();
          }
        }
  }
}

TEST(PersistentPlan, WithoutClustersOrCooperativeLaunchTheReasonSaysSo) {
  DeviceLimits d = DeviceLimits::h100_sxm();
  d.max_cluster_size = 1;  // e.g. an A100: no clusters
  PersistentPlan p = plan(RnnCellKind::LSTM, 256, 16, d);
  expect_consistent(p, d, 256, 16);
  EXPECT_EQ(p.regime, PersistentRegime::Grid) << p.describe();
  d.cooperative_launch = false;
  p = plan(RnnCellKind::LSTM, 1024, 16, d);
  EXPECT_EQ(p.regime, PersistentRegime::Standard);
  EXPECT_TRUE(contains(p.reason, "no cooperative launch")) << p.reason;
}

TEST(PersistentPlan, TooBigForTheChipIsStandardWithTheReason) {
  const DeviceLimits d = DeviceLimits::h100_sxm();
  // LSTM 2048: 64 MiB of W_hh, more than 132 SMs x 227 KiB.
  PersistentPlan p = plan(RnnCellKind::LSTM, 2048, 16, d);
  EXPECT_EQ(p.regime, PersistentRegime::Standard);
  EXPECT_TRUE(contains(p.reason, "does not fit in the chip's shared memory")) << p.reason;
  EXPECT_TRUE(contains(p.describe(), "standard")) << p.describe();
  // A smaller chip: 16 SMs hold less than GRU 1024's 12 MiB.
  DeviceLimits small = d;
  small.sm_count = 16;
  p = plan(RnnCellKind::GRU, 1024, 16, small);
  EXPECT_EQ(p.regime, PersistentRegime::Standard) << p.describe();
}

TEST(PersistentPlan, MoreThanOneWaveOfBatchIsStandard) {
  const PersistentPlan p = plan(RnnCellKind::GRU, 32, 100000);
  EXPECT_EQ(p.regime, PersistentRegime::Standard);
  EXPECT_TRUE(contains(p.reason, "more than one wave")) << p.reason;
}

TEST(PersistentPlan, OtherDtypesAreStandard) {
  const PersistentPlan p = plan(RnnCellKind::GRU, 32, 128, DeviceLimits::h100_sxm(), DType::f64);
  EXPECT_EQ(p.regime, PersistentRegime::Standard);
  EXPECT_TRUE(contains(p.reason, "float32 only")) << p.reason;
}

TEST(PersistentPlan, BadInputIsAValueError) {
  const DeviceLimits d = DeviceLimits::h100_sxm();
  EXPECT_THROW(plan(RnnCellKind::GRU, 0, 4, d), ValueError);
  EXPECT_THROW(plan(RnnCellKind::GRU, 4, 0, d), ValueError);
  EXPECT_THROW(plan(RnnCellKind::GRU, -3, 4, d), ValueError);
  EXPECT_THROW(plan(RnnCellKind::GRU, 4, 4, DeviceLimits{}), ValueError);
  DeviceLimits no_smem = d;
  no_smem.smem_per_block_optin = 0;
  EXPECT_THROW(plan(RnnCellKind::GRU, 4, 4, no_smem), ValueError);
}

TEST(PersistentPlan, LayoutAndPaddingHelpers) {
  // ksplit: a power of two, about 16 multiply-adds per lane, within the block.
  EXPECT_EQ(kernels::persistent_ksplit(1, 1024), 1);
  EXPECT_EQ(kernels::persistent_ksplit(32, 1024), 2);
  EXPECT_EQ(kernels::persistent_ksplit(128, 1024), 8);
  EXPECT_EQ(kernels::persistent_ksplit(1024, 1024), 1);  // limited by threads
  EXPECT_EQ(kernels::persistent_w_ld(32, 2), 34);
  EXPECT_EQ(kernels::persistent_w_ld(100, 8), 104);
  EXPECT_EQ(kernels::persistent_w_ld(64, 32), 64);
  const auto l = kernels::block_local_layout(4, 10, 2, 12);
  EXPECT_EQ(l.w, 0);
  EXPECT_EQ(l.b_ih, 480);
  EXPECT_EQ(l.total % 4, 0);
  EXPECT_GT(l.xs, l.hproj);
  EXPECT_EQ(l.total - l.xs, 2 * 2 * 40);
}

TEST(Log, LevelsAndTheDebugMacro) {
  const LogLevel before = log_level();
  set_log_level(LogLevel::Info);
  EXPECT_TRUE(log_enabled(LogLevel::Info));
  EXPECT_FALSE(log_enabled(LogLevel::Debug));
  int evaluated = 0;
  RECUR_LOG_DEBUG("not shown ", ++evaluated);
  EXPECT_EQ(evaluated, 0) << "a disabled log must not evaluate its parts";
  set_log_level(LogLevel::Debug);
  ::testing::internal::CaptureStderr();
  RECUR_LOG_DEBUG("plan ", 42);
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(err, "recur[debug]: plan 42\n");
  set_log_level(before);
}


// ---- whole passes against a float64 reference -------------------------------------------
// One case of a whole recurrent pass (backend.h's GruSequence / LstmSequence).
struct SeqCase {
  RnnCellKind cell = RnnCellKind::GRU;
  std::int64_t H = 0, B = 0, T = 0;
  bool masked = false, dropout = false, training = true;
};

std::string case_name(const SeqCase& c) {
  return ::testing::PrintToString(kernels::rnn_cell_kind_name(c.cell)) + " H " + std::to_string(c.H) +
         " B " + std::to_string(c.B) + " T " + std::to_string(c.T) + (c.masked ? " masked" : "") +
         (c.dropout ? " recurrent-dropout" : "") + (c.training ? " training" : " inference");
}

// Random inputs of a case (never zeros): inputs' projection, weights, biases,
// initial states, a [T, B] mask from per-row lengths (one row of length 0,
// one full) and a recurrent-dropout mask of 0 and 1 / (1 - 0.3).
struct SeqData {
  std::vector<float> xproj, w_hh, b_ih, b_hh, h0, c0, mask, rec_mask;
};

SeqData make_data(Random& rng, const SeqCase& c) {
  const int G = kernels::rnn_cell_gates(c.cell);
  const std::int64_t GH = G * c.H;
  SeqData d;
  d.xproj = rng.floats(c.T * c.B * GH, -2, 2);
  const float bound = 1.f / std::sqrt(float(c.H));
  d.w_hh = rng.floats(GH * c.H, -bound, bound);
  d.b_ih = rng.floats(GH, -0.5f, 0.5f);
  d.b_hh = rng.floats(GH, -0.5f, 0.5f);
  d.h0 = rng.floats(c.B * c.H);
  d.c0 = rng.floats(c.B * c.H);
  if (c.masked) {
    d.mask.assign(std::size_t(c.T * c.B), 0.f);
    std::uniform_int_distribution<std::int64_t> len(0, c.T);
    for (std::int64_t b = 0; b < c.B; ++b) {
      const std::int64_t n = b == 0 ? c.T : b == 1 ? 0 : len(rng.gen());
      for (std::int64_t t = 0; t < n; ++t) d.mask[std::size_t(t * c.B + b)] = 1.f;
    }
  }
  if (c.dropout) {
    std::bernoulli_distribution keep(0.7);
    d.rec_mask.resize(std::size_t(c.B * c.H));
    for (float& v : d.rec_mask) v = keep(rng.gen()) ? float(1.0 / 0.7) : 0.f;
  }
  return d;
}

// What a pass writes, as doubles: all states (training) or the last ones.
struct SeqOut {
  std::vector<double> hs, cs, ys, saved;
};

// The float64 reference: rnn_cells.h's element functions (the one copy of the
// gate math) over a plain matmul, step by step, as the engine's step loop.
SeqOut reference(const SeqCase& c, const SeqData& d) {
  const int G = kernels::rnn_cell_gates(c.cell);
  const std::int64_t H = c.H, B = c.B, T = c.T, GH = G * H, BH = B * H;
  auto dbl = [](const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); };
  const auto x = dbl(d.xproj), w = dbl(d.w_hh), bi = dbl(d.b_ih), bh = dbl(d.b_hh), m = dbl(d.mask),
             rm = dbl(d.rec_mask);
  SeqOut r;
  r.hs.assign(std::size_t((T + 1) * BH), 0.0);
  r.cs.assign(std::size_t((T + 1) * BH), 0.0);
  r.ys.assign(std::size_t(T * BH), 0.0);
  r.saved.assign(std::size_t(T * B * 4 * H), 0.0);
  std::copy(d.h0.begin(), d.h0.end(), r.hs.begin());
  std::copy(d.c0.begin(), d.c0.end(), r.cs.begin());
  std::vector<double> hproj(static_cast<std::size_t>(B * GH)), hin(static_cast<std::size_t>(BH));
  for (std::int64_t t = 0; t < T; ++t) {
    const double* hp = r.hs.data() + t * BH;
    for (std::int64_t e = 0; e < BH; ++e) hin[std::size_t(e)] = hp[e] * (c.dropout ? rm[std::size_t(e)] : 1.0);
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t n = 0; n < GH; ++n) {
        double acc = 0;
        for (std::int64_t k = 0; k < H; ++k) acc += w[std::size_t(n * H + k)] * hin[std::size_t(b * H + k)];
        hproj[std::size_t(b * GH + n)] = acc;
      }
    const double* mt = c.masked ? m.data() + t * B : nullptr;
    if (c.cell == RnnCellKind::LSTM) {
      kernels::LstmStepArgs<double> a;
      a.B = B;
      a.H = H;
      a.xproj = x.data() + t * B * GH;
      a.hproj = hproj.data();
      a.ld_x = a.ld_h = GH;
      a.b_ih = bi.data();
      a.b_hh = bh.data();
      a.c_prev = r.cs.data() + t * BH;
      a.h_prev = hp;
      a.mask = mt;
      a.h = r.hs.data() + (t + 1) * BH;
      a.c = r.cs.data() + (t + 1) * BH;
      a.y = r.ys.data() + t * BH;
      a.saved = r.saved.data() + t * B * 4 * H;
      for (std::int64_t b = 0; b < B; ++b)
        for (std::int64_t j = 0; j < H; ++j) kernels::lstm_step_element(a, b, j);
    } else {
      kernels::GruStepArgs<double> a;
      a.B = B;
      a.H = H;
      a.xproj = x.data() + t * B * GH;
      a.hproj = hproj.data();
      a.ld_x = a.ld_h = GH;
      a.b_ih = bi.data();
      a.b_hh = bh.data();
      a.h_prev = hp;
      a.mask = mt;
      a.h = r.hs.data() + (t + 1) * BH;
      a.y = r.ys.data() + t * BH;
      a.saved = r.saved.data() + t * B * 4 * H;
      for (std::int64_t b = 0; b < B; ++b)
        for (std::int64_t j = 0; j < H; ++j) kernels::gru_step_element(a, b, j);
    }
  }
  return r;
}

// Runs the case through ops::gru_sequence / lstm_sequence on `dev` (float32),
// every output poisoned with NaN first. Inference returns the last states
// only (hs[T % 2], cs[0]) in hs and cs.
SeqOut run_sequence(const SeqCase& c, const SeqData& d, Device dev) {
  const int G = kernels::rnn_cell_gates(c.cell);
  const std::int64_t H = c.H, B = c.B, T = c.T, GH = G * H;
  auto in = [&](const std::vector<float>& v, const Shape& s) {
    return v.empty() ? Tensor() : Tensor::from_vector(v, s, dev);
  };
  auto at = [](const Tensor& t, std::int64_t i) {
    Shape s(t.shape().begin() + 1, t.shape().end());
    return t.slice(i, i + 1).reshape(s);
  };
  const Tensor xproj = in(d.xproj, {T, B, GH}), w = in(d.w_hh, {GH, H}), bi = in(d.b_ih, {GH}),
               bh = in(d.b_hh, {GH}), mask = in(d.mask, {T, B}), rmask = in(d.rec_mask, {B, H});
  const Tensor hs = empty_poisoned({c.training ? T + 1 : 2, B, H}, dev);
  const Tensor cs = empty_poisoned({c.training ? T + 1 : 1, B, H}, dev);
  const Tensor ys = empty_poisoned({T, B, H}, dev);
  const Tensor saved = c.training ? empty_poisoned({T, B, 4 * H}, dev) : Tensor();
  at(hs, 0).copy_from(in(d.h0, {B, H}));
  at(cs, 0).copy_from(in(d.c0, {B, H}));
  if (c.cell == RnnCellKind::LSTM)
    ops::lstm_sequence({xproj, w, bi, bh, mask, hs, cs, ys, saved, rmask});
  else
    ops::gru_sequence({xproj, w, bi, bh, mask, hs, ys, saved, rmask});
  auto values = [](const Tensor& t) { return widen(t.to_vector<float>()); };
  SeqOut o;
  o.ys = values(ys);
  if (c.training) {
    o.hs = values(hs);
    o.saved = values(saved);
    if (c.cell == RnnCellKind::LSTM) o.cs = values(cs);
  } else {
    o.hs = values(at(hs, T % 2));
    if (c.cell == RnnCellKind::LSTM) o.cs = values(at(cs, 0));
  }
  return o;
}

// float32 against float64: |out - ref| <= rtol (|ref| + 0.1) everywhere, NaN failing.
void expect_matches_reference(const SeqCase& c, const SeqOut& got, const SeqOut& want, double rtol) {
  const std::int64_t BH = c.B * c.H;
  auto last = [&](const std::vector<double>& all) {
    return std::vector<double>(all.begin() + c.T * BH, all.begin() + (c.T + 1) * BH);
  };
  auto f32 = [](const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); };
  EXPECT_TRUE(close_to(f32(got.ys), want.ys, {0.1}, rtol)) << "ys";
  EXPECT_TRUE(close_to(f32(got.hs), c.training ? want.hs : last(want.hs), {0.1}, rtol)) << "hs";
  if (c.cell == RnnCellKind::LSTM) {
    EXPECT_TRUE(close_to(f32(got.cs), c.training ? want.cs : last(want.cs), {0.1}, rtol)) << "cs";
  }
  if (c.training) {
    EXPECT_TRUE(close_to(f32(got.saved), want.saved, {0.1}, rtol)) << "saved";
  }
}

TEST(PersistentCpuTwin, WholePassesWithMasksAndRecurrentDropoutMatchTheReference) {
  // The CPU twin of the persistent kernels: the same cases, masks and
  // recurrent-dropout masks the CUDA tests below use, on the CPU backend.
  Random rng;
  SCOPED_TRACE("seed " + std::to_string(rng.seed()));
  for (RnnCellKind cell : {RnnCellKind::GRU, RnnCellKind::LSTM})
    for (auto [H, B, T] : {std::array<std::int64_t, 3>{7, 3, 20}, {32, 40, 12}, {1, 1, 2}})
      for (int variant = 0; variant < 8; ++variant) {
        const SeqCase c{cell, H, B, T, (variant & 1) != 0, (variant & 2) != 0, (variant & 4) != 0};
        SCOPED_TRACE(case_name(c));
        const SeqData d = make_data(rng, c);
        expect_matches_reference(c, run_sequence(c, d, Device::cpu()), reference(c, d), 1e-5);
      }
}

// ---- backward passes against a float64 reference ----------------------------------------
// The backward pass's inputs: the reference forward's saved activations and
// states rounded to float32 (so that only the backward's own rounding is
// measured), dL/dy of every step (none for an inference-flagged case: a layer
// without return_sequences), dL/dh_T and dL/dc_T.
struct BackIn {
  std::vector<float> saved, hs, cs, dys, dh, dc;
};
struct BackOut {
  std::vector<double> dgx, dgh, dh, dc, db_x, db_h;
};

BackIn make_back_input(Random& rng, const SeqCase& c, const SeqOut& fwd) {
  auto narrow = [](const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); };
  BackIn in;
  in.saved = narrow(fwd.saved);
  in.hs = narrow(fwd.hs);
  in.cs = narrow(fwd.cs);
  if (c.training) in.dys = rng.floats(c.T * c.B * c.H);
  in.dh = rng.floats(c.B * c.H);
  in.dc = rng.floats(c.B * c.H);
  return in;
}

// rnn_cells.h's backward element functions step by step in float64, with the
// recurrent product as a plain matmul, (dgates_h W_hh) * rec_mask.
BackOut reference_backward(const SeqCase& c, const SeqData& d, const BackIn& in) {
  const bool lstm = c.cell == RnnCellKind::LSTM;
  const int G = kernels::rnn_cell_gates(c.cell);
  const std::int64_t H = c.H, B = c.B, T = c.T, GH = G * H, BH = B * H;
  auto dbl = [](const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); };
  const auto w = dbl(d.w_hh), m = dbl(d.mask), rm = dbl(d.rec_mask), saved = dbl(in.saved), hs = dbl(in.hs),
             cs = dbl(in.cs), dys = dbl(in.dys);
  BackOut r;
  r.dgx.assign(std::size_t(T * B * GH), 0.0);
  r.dgh.assign(std::size_t(T * B * GH), 0.0);
  r.dh = dbl(in.dh);
  r.dc = dbl(in.dc);
  std::vector<double> dh_prev(static_cast<std::size_t>(BH));
  for (std::int64_t t = T - 1; t >= 0; --t) {
    const double* mt = c.masked ? m.data() + t * B : nullptr;
    const double* dyt = c.training ? dys.data() + t * BH : nullptr;
    double* dgx = r.dgx.data() + t * B * GH;
    double* dgh = lstm ? dgx : r.dgh.data() + t * B * GH;
    if (lstm) {
      kernels::LstmBackArgs<double> a;
      a.B = B;
      a.H = H;
      a.saved = saved.data() + t * B * 4 * H;
      a.c_prev = cs.data() + t * BH;
      a.c = cs.data() + (t + 1) * BH;
      a.dy = dyt;
      a.dh_next = r.dh.data();
      a.dc_next = r.dc.data();
      a.mask = mt;
      a.dgates = dgx;
      a.dh_prev = dh_prev.data();
      a.dc_prev = r.dc.data();
      for (std::int64_t b = 0; b < B; ++b)
        for (std::int64_t j = 0; j < H; ++j) kernels::lstm_back_element(a, b, j);
    } else {
      kernels::GruBackArgs<double> a;
      a.B = B;
      a.H = H;
      a.saved = saved.data() + t * B * 4 * H;
      a.h_prev = hs.data() + t * BH;
      a.dy = dyt;
      a.dh_next = r.dh.data();
      a.mask = mt;
      a.dgates_x = dgx;
      a.dgates_h = dgh;
      a.dh_prev = dh_prev.data();
      for (std::int64_t b = 0; b < B; ++b)
        for (std::int64_t j = 0; j < H; ++j) kernels::gru_back_element(a, b, j);
    }
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t k = 0; k < H; ++k) {
        double acc = 0;
        for (std::int64_t n = 0; n < GH; ++n) acc += dgh[b * GH + n] * w[std::size_t(n * H + k)];
        const std::size_t e = std::size_t(b * H + k);
        r.dh[e] = dh_prev[e] + acc * (c.dropout ? rm[e] : 1.0);
      }
  }
  if (lstm) r.dgh = r.dgx;
  r.db_x.assign(std::size_t(GH), 0.0);
  r.db_h.assign(std::size_t(GH), 0.0);
  for (std::int64_t row = 0; row < T * B; ++row)
    for (std::int64_t n = 0; n < GH; ++n) {
      r.db_x[std::size_t(n)] += r.dgx[std::size_t(row * GH + n)];
      r.db_h[std::size_t(n)] += r.dgh[std::size_t(row * GH + n)];
    }
  return r;
}

// ops::gru_sequence_backward / lstm_sequence_backward on `dev` (float32),
// every output poisoned with NaN first.
BackOut run_backward(const SeqCase& c, const SeqData& d, const BackIn& in, Device dev) {
  const bool lstm = c.cell == RnnCellKind::LSTM;
  const int G = kernels::rnn_cell_gates(c.cell);
  const std::int64_t H = c.H, B = c.B, T = c.T, GH = G * H;
  auto put = [&](const std::vector<float>& v, const Shape& s) {
    return v.empty() ? Tensor() : Tensor::from_vector(v, s, dev);
  };
  const Tensor saved = put(in.saved, {T, B, 4 * H}), hs = put(in.hs, {T + 1, B, H}),
               cs = put(in.cs, {T + 1, B, H}), dys = put(in.dys, {T, B, H}), mask = put(d.mask, {T, B}),
               w = put(d.w_hh, {GH, H}), rmask = put(d.rec_mask, {B, H});
  const Tensor dh = put(in.dh, {B, H}), dc = put(in.dc, {B, H});
  const Tensor dgx = empty_poisoned({T, B, GH}, dev), dgh = empty_poisoned({T, B, GH}, dev);
  const Tensor db_x = empty_poisoned({GH}, dev), db_h = empty_poisoned({GH}, dev);
  if (lstm)
    ops::lstm_sequence_backward({saved, cs, dys, mask, w, dh, dc, dgx, db_x, rmask});
  else
    ops::gru_sequence_backward({saved, hs, dys, mask, w, dh, dgx, dgh, db_x, db_h, rmask});
  auto values = [](const Tensor& t) { return widen(t.to_vector<float>()); };
  BackOut o;
  o.dgx = values(dgx);
  o.dgh = lstm ? o.dgx : values(dgh);
  o.dh = values(dh);
  o.dc = lstm ? values(dc) : std::vector<double>();
  o.db_x = values(db_x);
  o.db_h = lstm ? o.db_x : values(db_h);
  return o;
}

void expect_backward_matches(const SeqCase& c, const BackOut& got, const BackOut& want, double rtol) {
  auto f32 = [](const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); };
  EXPECT_TRUE(close_to(f32(got.dgx), want.dgx, {0.1}, rtol)) << "dgates_x";
  EXPECT_TRUE(close_to(f32(got.dgh), want.dgh, {0.1}, rtol)) << "dgates_h";
  EXPECT_TRUE(close_to(f32(got.dh), want.dh, {0.1}, rtol)) << "dh_0";
  if (c.cell == RnnCellKind::LSTM) {
    EXPECT_TRUE(close_to(f32(got.dc), want.dc, {0.1}, rtol)) << "dc_0";
  }
  // Sums over T B rows: the scale is the sum of magnitudes.
  const int G = kernels::rnn_cell_gates(c.cell);
  std::vector<double> scale(std::size_t(G * c.H), 0.0);
  for (std::size_t i = 0; i < want.dgx.size(); ++i)
    scale[i % scale.size()] += std::abs(want.dgx[i]) + std::abs(want.dgh[i]);
  EXPECT_TRUE(close_to(f32(got.db_x), want.db_x, scale, rtol)) << "db_ih";
  EXPECT_TRUE(close_to(f32(got.db_h), want.db_h, scale, rtol)) << "db_hh";
}

TEST(PersistentCpuTwin, BackwardPassesWithMasksAndRecurrentDropoutMatchTheReference) {
  // The CPU twin of the persistent backward kernel: whole backward passes
  // (masks with a fully padded row, recurrent dropout, with and without dy)
  // against the float64 step-by-step reference.
  Random rng;
  SCOPED_TRACE("seed " + std::to_string(rng.seed()));
  for (RnnCellKind cell : {RnnCellKind::GRU, RnnCellKind::LSTM})
    for (auto [H, B, T] : {std::array<std::int64_t, 3>{7, 3, 20}, {32, 40, 12}, {1, 1, 2}})
      for (int variant = 0; variant < 8; ++variant) {
        const SeqCase c{cell, H, B, T, (variant & 1) != 0, (variant & 2) != 0, (variant & 4) != 0};
        SCOPED_TRACE(case_name(c) + (c.training ? " with dy" : " without dy"));
        const SeqData d = make_data(rng, c);
        const BackIn in = make_back_input(rng, c, reference(c, d));
        expect_backward_matches(c, run_backward(c, d, in, Device::cpu()), reference_backward(c, d, in), 1e-5);
      }
}

TEST(PersistentCpuTwin, BackwardWithRecurrentDropoutIsAWholePassToo) {
  Backend& cpu = backend(Device::cpu());
  EXPECT_TRUE(cpu.supports({OpKind::GruSequence, DType::f32, 4, 4, true}).ok);
  EXPECT_TRUE(cpu.supports({OpKind::GruSequenceBackward, DType::f32, 4, 4, false}).ok);
  EXPECT_TRUE(cpu.supports({OpKind::LstmSequenceBackward, DType::f32, 4, 4, true}).ok);
  EXPECT_TRUE(cpu.supports({OpKind::GruSequenceBackward, DType::f64, 4, 4, true}).ok);
}

// ---- CUDA: the persistent kernels (label gpu; they skip without a GPU) --------------------
// RECUR_TEST_SMALL=1: only the smallest shapes, for compute-sanitizer runs
// (scripts/gpu.sh), which would not finish the whole sweep.
std::vector<std::array<std::int64_t, 3>> cut_for_sanitizers(std::vector<std::array<std::int64_t, 3>> shapes) {
  const char* v = std::getenv("RECUR_TEST_SMALL");
  if (v && std::string(v) == "1" && shapes.size() > 2) shapes.resize(2);
  return shapes;
}

// RECUR_PERSISTENT set to `value` for the scope (the backend reads it at every
// decision); nullptr: unset.
class PersistentOn {
 public:
  explicit PersistentOn(const char* value = "1") {
    if (const char* v = std::getenv("RECUR_PERSISTENT")) previous_ = v, had_ = true;
    if (value)
      ::setenv("RECUR_PERSISTENT", value, 1);
    else
      ::unsetenv("RECUR_PERSISTENT");
  }
  ~PersistentOn() {
    if (had_)
      ::setenv("RECUR_PERSISTENT", previous_.c_str(), 1);
    else
      ::unsetenv("RECUR_PERSISTENT");
  }
  PersistentOn(const PersistentOn&) = delete;
  PersistentOn& operator=(const PersistentOn&) = delete;

 private:
  std::string previous_;
  bool had_ = false;
};

TEST(PersistentCUDA, BlockLocalForwardByDefaultTheRestWithTheEnvironmentVariable) {
  RECUR_SKIP_IF_UNAVAILABLE(Device::cuda(0));
  Backend& gpu = backend(Device::cuda(0));
  {
    PersistentOn unset(nullptr);
    EXPECT_TRUE(gpu.supports({OpKind::GruSequence, DType::f32, 128, 32}).ok);  // block-local
    // The grid kernel by default only where the cost model fitted to the
    // H100 runs says it beats the step kernels (a batch of one on Hopper).
    const Support grid = gpu.supports({OpKind::LstmSequence, DType::f32, 16, 1024});
    EXPECT_FALSE(grid.ok);
    EXPECT_TRUE(contains(grid.reason, "RECUR_PERSISTENT=1")) << grid.reason;
    const SystemInfo info = system_info();
    ASSERT_FALSE(info.gpus.empty());
    const int major = info.gpus[0].cc_major;
    const Support one = gpu.supports({OpKind::LstmSequence, DType::f32, 1, 1024});
    EXPECT_EQ(one.ok, major >= 9) << one.reason;
    const Support back = gpu.supports({OpKind::GruSequenceBackward, DType::f32, 128, 32});
    EXPECT_FALSE(back.ok);
    EXPECT_TRUE(contains(back.reason, "RECUR_PERSISTENT=1")) << back.reason;
  }
  {
    PersistentOn off("0");
    const Support no = gpu.supports({OpKind::GruSequence, DType::f32, 128, 32});
    EXPECT_FALSE(no.ok);
    EXPECT_TRUE(contains(no.reason, "RECUR_PERSISTENT=0")) << no.reason;
  }
  PersistentOn on;
  const LogLevel before = log_level();
  set_log_level(LogLevel::Debug);
  ::testing::internal::CaptureStderr();
  const Support yes = gpu.supports({OpKind::GruSequence, DType::f32, 128, 32});
  const std::string log = ::testing::internal::GetCapturedStderr();
  set_log_level(before);
  EXPECT_TRUE(yes.ok) << yes.reason;
  EXPECT_TRUE(contains(log, "persistent/block-local")) << log;
  // H 1024: the grid kernel. The backward: block-local only; float64 stays
  // on the CPU; a huge H is standard.
  const Support grid = gpu.supports({OpKind::LstmSequence, DType::f32, 16, 1024});
  EXPECT_TRUE(grid.ok) << grid.reason;
  const Support back = gpu.supports({OpKind::GruSequenceBackward, DType::f32, 128, 32, true});
  EXPECT_TRUE(back.ok) << back.reason;
  EXPECT_FALSE(gpu.supports({OpKind::LstmSequenceBackward, DType::f32, 16, 1024}).ok);
  EXPECT_FALSE(gpu.supports({OpKind::LstmSequence, DType::f64, 128, 32}).ok);
  EXPECT_FALSE(gpu.supports({OpKind::LstmSequence, DType::f32, 16, 4096}).ok);
}

TEST(PersistentCUDA, ForwardMatchesTheReferenceOverTheIssueGrid) {
  RECUR_SKIP_IF_UNAVAILABLE(Device::cuda(0));
  PersistentOn on;
  Random rng;
  SCOPED_TRACE("seed " + std::to_string(rng.seed()));
  // (H, B, T): every H, B and T of the issue, in a subset of the cross
  // product (the float64 reference runs on the CPU). Up to H 128 (GRU) / 100
  // (LSTM) block-local; H 100 B 255 and H 128 B 263 take two rows per block
  // and leave the last block one. Above: the grid kernel (LSTM 128 over 2
  // blocks; H 256 to 1024 over 4 to 94), B 263 leaves a partial row tile.
  const std::int64_t shapes[][3] = {{1, 1, 1},      {7, 3, 2},      {32, 128, 240}, {32, 257, 2},
                                    {64, 32, 240},  {100, 3, 1000}, {100, 255, 2},  {128, 1, 240},
                                    {128, 263, 2},  {64, 1, 1000},  {256, 3, 30},   {256, 1, 1000},
                                    {512, 16, 20},  {1024, 4, 10},  {1024, 64, 2}};
  for (RnnCellKind cell : {RnnCellKind::GRU, RnnCellKind::LSTM})
    for (auto [H, B, T] : shapes)
      for (int variant = 0; variant < 8; ++variant) {
        const SeqCase c{cell, H, B, T, (variant & 1) != 0, (variant & 2) != 0, (variant & 4) != 0};
        SCOPED_TRACE(case_name(c));
        const OpKind op = cell == RnnCellKind::LSTM ? OpKind::LstmSequence : OpKind::GruSequence;
        const Support s = backend(Device::cuda(0)).supports({op, DType::f32, B, H, c.dropout});
        ASSERT_TRUE(s.ok) << s.reason;  // every shape here is block-local or grid on an H100
        const SeqData d = make_data(rng, c);
        expect_matches_reference(c, run_sequence(c, d, Device::cuda(0)), reference(c, d), 1e-5);
      }
}

TEST(PersistentCUDA, BackwardMatchesTheReference) {
  // The block-local backward kernel: every row tile (1, 2, 4, 8 rows per
  // block: B 257 and 263 leave partial last blocks), masks with a fully
  // padded row, recurrent dropout, with and without dy, long sequences.
  RECUR_SKIP_IF_UNAVAILABLE(Device::cuda(0));
  PersistentOn on;
  Random rng;
  SCOPED_TRACE("seed " + std::to_string(rng.seed()));
  const std::vector<std::array<std::int64_t, 3>> shapes = cut_for_sanitizers(
      {{1, 1, 1}, {7, 3, 2}, {32, 128, 240}, {32, 257, 2}, {64, 32, 240}, {100, 3, 1000}, {100, 255, 2},
       {64, 1, 1000}, {128, 263, 2}, {96, 200, 30}});
  for (RnnCellKind cell : {RnnCellKind::GRU, RnnCellKind::LSTM})
    for (const auto& [H, B, T] : shapes)
      for (int variant = 0; variant < 8; ++variant) {
        const SeqCase c{cell, H, B, T, (variant & 1) != 0, (variant & 2) != 0, (variant & 4) != 0};
        SCOPED_TRACE(case_name(c) + (c.training ? " with dy" : " without dy"));
        const OpKind op = cell == RnnCellKind::LSTM ? OpKind::LstmSequenceBackward : OpKind::GruSequenceBackward;
        const Support s = backend(Device::cuda(0)).supports({op, DType::f32, B, H, c.dropout});
        if (!s.ok) {  // LSTM H 128 does not fit one block: the step kernels run it
          EXPECT_TRUE(cell == RnnCellKind::LSTM && H >= 128) << s.reason;
          continue;
        }
        const SeqData d = make_data(rng, c);
        const BackIn in = make_back_input(rng, c, reference(c, d));
        expect_backward_matches(c, run_backward(c, d, in, Device::cuda(0)), reference_backward(c, d, in), 1e-5);
      }
}

TEST(PersistentCUDA, SimpleRnnAndResetBeforeGruMatchTheCpuTwinInFloat64) {
  // Their persistent kernels, forward (training and inference) and backward,
  // against the CPU twin in float64 (itself checked against the step ops in
  // SequenceOps.SimpleRnnAndResetBeforeGruMatchTheStepOpsLoop): every row
  // tile, masks with a fully padded row, recurrent dropout, with and without
  // dy; outputs poisoned.
  RECUR_SKIP_IF_UNAVAILABLE(Device::cuda(0));
  PersistentOn on;
  Random rng;
  SCOPED_TRACE("seed " + std::to_string(rng.seed()));
  const Device cpu = Device::cpu(), gpu = Device::cuda(0);
  const std::vector<std::array<std::int64_t, 3>> shapes = cut_for_sanitizers(
      {{1, 1, 1}, {7, 3, 2}, {32, 128, 240}, {32, 257, 3}, {64, 1, 1000}, {100, 255, 2}, {128, 263, 2},
       {128, 3, 50}});
  auto dbl = [](const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); };
  for (int cell = 0; cell < 3; ++cell)  // SimpleRNN tanh, relu; reset-before GRU
    for (const auto& [H, B, T] : shapes)
      for (int variant = 0; variant < 8; ++variant) {
        const bool masked = variant & 1, drop = variant & 2, with_dy = variant & 4, rb = cell == 2;
        const RnnActivation act = cell == 1 ? RnnActivation::Relu : RnnActivation::Tanh;
        SCOPED_TRACE(::testing::Message() << (rb ? "GRU reset-before" : cell == 1 ? "SimpleRNN relu" : "SimpleRNN tanh")
                                          << " H " << H << " B " << B << " T " << T << (masked ? " masked" : "")
                                          << (drop ? " dropout" : "") << (with_dy ? " dy" : ""));
        const OpKind fwd = rb ? OpKind::GruRbSequence : OpKind::RnnSequence;
        const OpKind bwd = rb ? OpKind::GruRbSequenceBackward : OpKind::RnnSequenceBackward;
        ASSERT_TRUE(backend(gpu).supports({fwd, DType::f32, B, H, drop}).ok);
        ASSERT_TRUE(backend(gpu).supports({bwd, DType::f32, B, H, drop}).ok);
        const SeqCase sc{RnnCellKind::GRU, H, B, T, masked, drop, true};
        SeqData d = make_data(rng, sc);
        const std::int64_t G = (rb ? 3 : 1) * H;
        d.xproj.resize(std::size_t(T * B * G));
        d.w_hh.resize(std::size_t(G * H));
        d.b_ih.resize(std::size_t(G));
        d.b_hh.resize(std::size_t(G));
        const auto dys = with_dy ? rng.floats(T * B * H) : std::vector<float>();
        const auto dhT = rng.floats(B * H);
        // Runs forward (training and inference) and backward on `dev` in `dt`.
        auto run = [&](Device dev, DType dt) {
          auto put = [&](const std::vector<float>& v, const Shape& s) {
            if (v.empty()) return Tensor();
            return dt == DType::f64 ? Tensor::from_vector(dbl(v), s, dev) : Tensor::from_vector(v, s, dev);
          };
          auto out = [&](const Shape& s) {
            Tensor t = dt == DType::f32 ? empty_poisoned(s, dev) : Tensor::empty(s, dt, dev);
            return t;
          };
          auto vals = [&](const Tensor& t) {
            return dt == DType::f64 ? t.to_vector<double>() : widen(t.to_vector<float>());
          };
          auto at0 = [](const Tensor& t, std::int64_t i) {
            Shape s(t.shape().begin() + 1, t.shape().end());
            return t.slice(i, i + 1).reshape(s);
          };
          const Tensor x = put(d.xproj, {T, B, G}), w = put(d.w_hh, {G, H}), bi = put(d.b_ih, {G}),
                       bh = put(d.b_hh, {G}), m = put(d.mask, {T, B}), rm = put(d.rec_mask, {B, H});
          const Tensor hs = out({T + 1, B, H}), ys = out({T, B, H}), saved = out({T, B, 4 * H});
          at0(hs, 0).copy_from(put(d.h0, {B, H}));
          const Tensor hs2 = out({2, B, H});
          at0(hs2, 0).copy_from(put(d.h0, {B, H}));
          if (rb) {
            ops::gru_rb_sequence({x, w, bi, bh, m, hs, ys, saved, rm});
            ops::gru_rb_sequence({x, w, bi, bh, m, hs2, {}, {}, rm});
          } else {
            ops::rnn_sequence({x, w, bi, bh, m, hs, ys, rm, act, true});
            ops::rnn_sequence({x, w, bi, bh, m, hs2, {}, rm, act, false});
          }
          const Tensor dh = put(dhT, {B, H}), dgx = out({T, B, G}), drz = out({T, B, 2 * H}), dgn = out({T, B, H}),
                       dbx = out({G}), dbh = out({G});
          if (rb)
            ops::gru_rb_sequence_backward({saved, hs, put(dys, {T, B, H}), m, w, dh, dgx, drz, dgn, dbx, dbh, rm});
          else
            ops::rnn_sequence_backward({hs, put(dys, {T, B, H}), m, w, dh, dgx, dbx, rm, act});
          std::vector<std::vector<double>> o = {vals(hs), vals(ys), vals(at0(hs2, T % 2)), vals(dh), vals(dgx),
                                                vals(dbx)};
          if (rb) {
            o.push_back(vals(saved));
            o.push_back(vals(drz));
            o.push_back(vals(dgn));
            o.push_back(vals(dbh));
          }
          return o;
        };
        const auto want = run(cpu, DType::f64);
        const auto got = run(gpu, DType::f32);
        const char* names[] = {"hs", "ys", "inference h_T", "dh_0", "dgates", "db_ih", "saved", "dgates_rz",
                               "dgates_n", "db_hh"};
        for (std::size_t k = 0; k < want.size(); ++k) {
          const bool sum = k == 5 || k == 9;  // bias sums over T B rows
          std::vector<double> scale(want[k].size(), sum ? double(T * B) * 0.1 : 0.1);
          EXPECT_TRUE(close_to(std::vector<float>(got[k].begin(), got[k].end()), want[k], scale, 1e-5))
              << names[k];
        }
      }
}

TEST(PersistentCUDA, LayersTrainInEveryPersistentMode) {
  // The engine against the CPU layer, in each RECUR_PERSISTENT mode: "1"
  // (H 32: persistent forward and backward; H 256: grid forward for GRU and
  // LSTM, step backward), unset (H 32: block-local forward for GRU and LSTM,
  // step backward; H 256: steps) and "0" (steps only); every cell.
  RECUR_SKIP_IF_UNAVAILABLE(Device::cuda(0));
  Random rng;
  SCOPED_TRACE("seed " + std::to_string(rng.seed()));
  const Device cpu = Device::cpu(), gpu = Device::cuda(0);
  for (const char* mode : {"1", static_cast<const char*>(nullptr), "0"})
  for (int c = 0; c < 4; ++c)  // GRU, LSTM, SimpleRNN, reset-before GRU
    for (std::int64_t H : {32, 256})  // block-local, grid
    for (bool dropout : {false, true}) {
      const CellType cell = c == 1 ? CellType::LSTM : c == 2 ? CellType::SimpleRNN : CellType::GRU;
      SCOPED_TRACE(std::string("RECUR_PERSISTENT=") + (mode ? mode : "(unset)") + " " + cell_name(cell) +
                   (c == 3 ? " reset-before" : "") + " H " + std::to_string(H) + (dropout ? " recurrent dropout" : ""));
      PersistentOn env(mode);
      const std::int64_t B = 9, T = 37, I = 5;
      RecurrentOptions o;
      o.cell = cell;
      o.reset_after = c != 3;
      o.input_size = I;
      o.units = H;
      o.return_sequences = true;
      o.return_state = true;
      const std::uint64_t seed = rng.gen()();
      Recurrent lc(o, cpu, seed), lg(o, gpu, seed);
      if (dropout) {
        SeqCase sc{RnnCellKind::GRU, H, B, 1, false, true, true};
        const Tensor m = Tensor::from_vector(make_data(rng, sc).rec_mask, {B, H}, cpu);
        lc.set_dropout_masks({}, m);
        lg.set_dropout_masks({}, m);
      }
      std::vector<std::int64_t> lengths(static_cast<std::size_t>(B));
      std::uniform_int_distribution<std::int64_t> len(0, T);
      for (auto& n : lengths) n = len(rng.gen());
      lengths[0] = T;
      const Tensor x = Tensor::from_vector(rng.floats(B * T * I), {B, T, I}, cpu);
      const Tensor mask = lengths_to_mask(lengths, T, DType::f32, cpu);
      const Tensor dy = Tensor::from_vector(rng.floats(B * T * H), {B, T, H}, cpu);
      const auto oc = lc.forward(x, mask, {}, true);
      const auto og = lg.forward(x.to(gpu), mask.to(gpu), {}, true);
      const auto gc = lc.backward(dy);
      const auto gg = lg.backward(dy.to(gpu));
      const double rtol = 1e-4;  // float32 on both sides, as RecurrentCUDA.MatchesCpuOnShapeSweep
      EXPECT_TRUE(close_to(og.y, widen(oc.y.to_vector<float>()), {0.1}, rtol)) << "y";
      EXPECT_TRUE(close_to(gg.dx, widen(gc.dx.to_vector<float>()), {0.1}, rtol)) << "dx";
      EXPECT_TRUE(close_to(lg.grads().w_hh, widen(lc.grads().w_hh.to_vector<float>()), {1.0}, rtol)) << "dW_hh";
      EXPECT_TRUE(close_to(lg.grads().b_hh, widen(lc.grads().b_hh.to_vector<float>()), {1.0}, rtol)) << "db_hh";
    }
}

}  // namespace
}  // namespace recur::test
