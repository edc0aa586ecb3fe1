// The persistent-RNN planner's decisions on an H100's limits over the
// issue's grid of H and B (CPU, pure arithmetic), and the log it writes.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>

#include "recur/common/log.h"
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
    case PersistentRegime::Grid:
      EXPECT_GT(std::int64_t(p.blocks), d.max_cluster_size);
      EXPECT_GE(std::int64_t(p.blocks) * p.units_per_block, H);
      EXPECT_EQ(p.rows_per_block, B);
      break;
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
  // H 512 and 1024: more than 16 SMs' worth: a grid-wide barrier.
  for (RnnCellKind cell : {RnnCellKind::GRU, RnnCellKind::LSTM})
    for (std::int64_t H : {512, 1024})
      for (std::int64_t B : {1, 16, 64}) {
        SCOPED_TRACE(::testing::Message() << kernels::rnn_cell_kind_name(cell) << " H " << H << " B " << B);
        p = plan(cell, H, B, d);
        expect_consistent(p, d, H, B);
        EXPECT_EQ(p.regime, PersistentRegime::Grid) << p.describe();
        EXPECT_TRUE(contains(p.reason, "grid-wide barrier")) << p.reason;
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


}  // namespace
}  // namespace recur::test
