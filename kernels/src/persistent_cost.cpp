// The persistent-RNN cost model and latency floor (recur/kernels/persistent_cost.h).
#include "recur/kernels/persistent_cost.h"

#include <cmath>
#include <algorithm>
#include <cstdio>
#include <limits>

namespace recur::kernels {
namespace {

std::string num(double v, const char* unit) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.2f%s", v, unit);
  return buf;
}
std::string us(double v) { return num(v, " us"); }

}  // namespace

PersistentCostModel PersistentCostModel::h100_fp32() {
  PersistentCostModel m;
  // Least-squares fits to the 40 forward rows of tests/data/h100_bc79d97_forward.csv
  // (docs/persistent.md shows the fit and its residuals). Block-local rows
  // (GRU H <= 128, LSTM H <= 64): 1.40-2.91 us; grid rows (LSTM H >= 128,
  // GRU H >= 256): 4.4 us at B 1, 19-22 at B 8, 72 at B 32, 143 at B 64.
  m.local_base_us = 1.05;
  m.local_per_gate_unit_us = 0.0042;
  m.local_per_extra_row_us = 0.25;
  m.grid_base_us = 2.85;
  m.grid_per_row_us = 2.23;
  // The step kernels' forward: 12.4-36.3 us per step over those rows.
  m.standard_min_us = 12.4;
  m.margin = 1.25;
  m.source = "fitted to bench_cudnn forward rows, H100 SXM, commit bc79d97, 2026-12-05";
  return m;
}

LatencyFloorModel LatencyFloorModel::h100_sxm() {
  LatencyFloorModel f;
  f.chain_us = 0.1;
  f.fp32_gflops_per_sm = 67000.0 / 132.0;
  f.cluster_barrier_us = 0.2;  // assumed
  f.grid_barrier_us = 0.5;     // assumed
  f.launch_us = 2.0;           // assumed: a launch as seen from the device
  f.source = "H100 SXM datasheet FP32 rate; chain from the performance notes; barriers and launch assumed";
  return f;
}

double persistent_estimate_us(const PersistentQuery& q, const PersistentPlan& p, const PersistentCostModel& m,
                              int sm_count) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  if (q.backward || q.reset_before || q.cell == RnnCellKind::SimpleRNN) return nan;
  const int G = rnn_cell_gates(q.cell);
  switch (p.regime) {
    case PersistentRegime::BlockLocal: {
      // Blocks beyond one per SM share an SM's issue slots.
      const double share = std::ceil(double(p.blocks) / double(std::max(sm_count, 1)));
      return m.local_base_us + m.local_per_gate_unit_us * double(G) * double(q.hidden) * share +
             m.local_per_extra_row_us * double(p.rows_per_block - 1);
    }
    case PersistentRegime::Grid:
      return m.grid_base_us + m.grid_per_row_us * double(q.batch);
    case PersistentRegime::Cluster:
    case PersistentRegime::Standard:
      return nan;
  }
  return nan;
}

PersistentChoice choose_persistent(const PersistentQuery& q, const PersistentPlan& p,
                                   const PersistentCostModel& m, int sm_count, bool unmeasured_ok) {
  PersistentChoice c;
  c.estimate_us = persistent_estimate_us(q, p, m, sm_count);
  if (!p.persistent()) {
    c.reason = "the plan is standard";
    return c;
  }
  if (std::isnan(c.estimate_us)) {
    c.use = unmeasured_ok;
    c.reason = std::string("no measured cost for the ") + persistent_regime_name(p.regime) +
               (q.backward ? " backward" : "") + " kernel of this cell" +
               (unmeasured_ok ? ": run because persistent kernels were asked for"
                              : ": the step kernels run until it is measured");
    return c;
  }
  c.use = c.estimate_us * m.margin < m.standard_min_us;
  c.reason = std::string("cost model (") + m.source + "): " + persistent_regime_name(p.regime) + " about " +
             us(c.estimate_us) + " per step " + (c.use ? "beats" : "does not beat") +
             " the step kernels' fastest measured " + us(m.standard_min_us) + " with a margin of " +
             num(m.margin, "x");
  return c;
}

double step_floor_us(const PersistentQuery& q, PersistentRegime regime, const DeviceLimits& d,
                     const LatencyFloorModel& f, std::int64_t input_size) {
  const double G = rnn_cell_gates(q.cell);
  const double H = double(q.hidden), B = double(q.batch), I = double(input_size), sms = double(d.sm_count);
  const double sm_rate = f.fp32_gflops_per_sm * 1e3;  // flops per microsecond
  // The recurrent product of one step for one row: G H x H multiply-adds.
  const double flops_row = 2.0 * G * H * H;
  double rec = 0, sync = 0;
  switch (regime) {
    case PersistentRegime::BlockLocal:  // a row stays on one SM: ceil(B / SMs) rows on the busiest
      rec = flops_row * std::ceil(B / sms) / sm_rate;
      break;
    case PersistentRegime::Cluster:  // every SM busy, a row over one cluster at most
      rec = flops_row * std::max(B / sms, 1.0 / double(d.max_cluster_size)) / sm_rate;
      sync = f.cluster_barrier_us;
      break;
    case PersistentRegime::Grid:
      rec = flops_row * B / (sms * sm_rate);
      sync = f.grid_barrier_us;
      break;
    case PersistentRegime::Standard:
      rec = flops_row * B / (sms * sm_rate);
      sync = f.launch_us;
      break;
  }
  // The input projection, a GEMM over all steps at the chip's rate.
  const double chip = sms * sm_rate;
  const double xproj = 2.0 * G * H * I * B / chip;
  if (!q.backward) return f.chain_us + rec + sync + xproj;
  // Training: the forward, the backward's recurrent chain (dh through W_hh:
  // the same product), and the weight and input gradients as GEMMs over all
  // steps (dW_ih, dx: 2 G H I B each; dW_hh: 2 G H H B).
  return 2.0 * (f.chain_us + rec + sync) + xproj + 2.0 * G * H * B * (2.0 * I + H) / chip;
}

}  // namespace recur::kernels
