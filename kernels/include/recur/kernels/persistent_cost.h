// What a persistent plan is expected to cost per time step, what any kernel
// in its regime could at best reach (the latency floor), and whether the plan
// is worth running instead of the step kernels (docs/persistent.md, "Cost
// model and floor"). Pure host arithmetic, like the planner.
//
// Two different things, kept apart:
//   - the cost model predicts recur's *current* kernels. Its constants are
//     fitted to measurements (PersistentCostModel::h100_fp32() names them),
//     and tests/test_persistent.cpp checks it against the committed rows of
//     that run. It decides between a persistent regime and the step kernels,
//     and only ever chooses a regime whose prediction, with a margin, beats
//     the fastest step-kernel time measured.
//   - the floor is what the regime's structure allows on this GPU: the
//     dependent chain of one step, the arithmetic of the step on the SMs the
//     regime uses, and the regime's barrier. bench_cudnn reports every row's
//     time as a multiple of it.
#pragma once

#include <string>

#include "recur/kernels/persistent_plan.h"

namespace recur::kernels {

struct PersistentCostModel {
  // Block-local forward: a + b * G * H * s (the G dot products of H each
  // step, split over the lanes; s blocks share an SM when there are more
  // blocks than SMs), + c per extra row of the block's tile.
  double local_base_us = 0;
  double local_per_gate_unit_us = 0;
  double local_per_extra_row_us = 0;
  // Grid forward: a + b * B. Every block re-reads the whole previous state
  // of all B rows from L2 each step, so the step grows with B.
  double grid_base_us = 0;
  double grid_per_row_us = 0;
  // The fastest forward step the step kernels took at any measured shape:
  // a lower bound for the step path (a launch or two per step).
  double standard_min_us = 0;
  // A persistent regime is chosen when its prediction times this margin is
  // below standard_min_us.
  double margin = 1;
  std::string source;  // where the constants come from

  // Fitted to bench_cudnn's forward rows on an H100 SXM at commit bc79d97,
  // 2026-12-05 (bench/results/nvidia-h100-80gb-hbm3/2026-12-05-bc79d97/,
  // tests/data/h100_bc79d97_forward.csv).
  static PersistentCostModel h100_fp32();
};

// Predicted microseconds per step of the plan's kernel, forward. NaN where
// nothing measured backs a prediction: the backward kernels, the cluster
// regime (no kernel yet), SimpleRNN, the reset-before GRU, Standard.
double persistent_estimate_us(const PersistentQuery& query, const PersistentPlan& plan,
                              const PersistentCostModel& model, int sm_count);

struct PersistentChoice {
  bool use = false;          // run the persistent kernel rather than the step kernels
  double estimate_us = 0;    // persistent_estimate_us (NaN when unknown)
  std::string reason;
};

// Whether to run `plan` instead of the step kernels: Standard never; a
// forward plan with a prediction when prediction * margin < standard_min_us;
// a plan without a prediction (unmeasured kernels) only when `unmeasured_ok`
// (the backend's opt-in mode), and the reason says it is unmeasured.
PersistentChoice choose_persistent(const PersistentQuery& query, const PersistentPlan& plan,
                                   const PersistentCostModel& model, int sm_count, bool unmeasured_ok);

// The latency floor's parameters.
struct LatencyFloorModel {
  // The dependent chain of one step, whatever the size: broadcast h, the dot
  // products' last reduction, the gate functions, write h (a few hundred
  // cycles: ../shared/notes/rnn-performance.md gives 0.1-0.25 us; the floor
  // takes the low end).
  double chain_us = 0;
  double fp32_gflops_per_sm = 0;  // dense FP32 FMA rate of one SM
  // The barrier one step needs beyond __syncthreads(). ASSUMED, not measured:
  // replace with a measurement when one exists (docs/persistent.md).
  double cluster_barrier_us = 0;
  double grid_barrier_us = 0;
  // One kernel launch per step (the step path), the note's low end.
  double launch_us = 0;
  std::string source;

  // H100 SXM: 67 TFLOP/s FP32 over 132 SMs (NVIDIA's datasheet figure).
  static LatencyFloorModel h100_sxm();
};

// The floor per step in a regime, in microseconds, with the regime's best
// geometry (not a particular plan's): the chain + the step's recurrent
// product B x 2 G H^2 on the busiest SM + the regime's barrier + the input
// projection (2 G H I B) at the whole chip's rate.
//   BlockLocal  a row stays on one SM: ceil(B / SMs) rows on the busiest;
//   Cluster     all SMs, a row over at most one cluster; + cluster barrier;
//   Grid        all SMs; + grid barrier;
//   Standard    all SMs; + one launch per step.
// query.backward: a training step (forward and backward): twice the chain,
// product and barrier, plus the gradient GEMMs (dW_ih, dx, dW_hh) at the
// chip's rate.
double step_floor_us(const PersistentQuery& query, PersistentRegime regime, const DeviceLimits& limits,
                     const LatencyFloorModel& floor, std::int64_t input_size);

}  // namespace recur::kernels
