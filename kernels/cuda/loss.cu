// The fused loss/metric pass on the GPU: every element's (or row's) term and
// gradient in one kernel, the mean accumulated in double through per-block
// partials (block_sum.cuh), so the value is deterministic. A weight/mask
// needs its sum before the gradient can be scaled, so a weighted call first
// sums the weights (two small launches), then runs the fused pass.
// Math: recur/kernels/loss.h. CPU twin: kernels/cpu/loss.cpp.
//
// Sparse kinds run one thread per row over its classes: right for the
// class counts of sequence classifiers (tens to hundreds); a vocabulary-sized
// softmax would want a block per row.
#include "block_sum.cuh"
#include "check.h"
#include "launch.h"

namespace recur::kernels::cuda {
namespace {

// Workspace layout (doubles): [0] denominator, [1..1+kMaxPartials) partials.
constexpr std::int64_t kPartOffset = 1;

template <class Wt>
__global__ void weight_partials_kernel(const Wt* __restrict__ w, std::int64_t n,
                                       double* __restrict__ part) {
  double acc = 0;
  for (std::int64_t i = global_index(); i < n; i += global_stride()) acc += double(w[i]);
  block_sum_to(acc, part + blockIdx.x);
}

// denom_dev: device denominator (weighted) or null (use denom_host).
template <LossKind k>
__global__ void loss_kernel(LossArgs<float> a, const double* denom_dev, double denom_host,
                            double* __restrict__ part) {
  const double denom = denom_dev ? *denom_dev : denom_host;
  const float inv = denom > 0 ? float(1.0 / denom) : 0.f;
  double acc = 0;
  if constexpr (is_sparse(k)) {
    for (std::int64_t r = global_index(); r < a.rows; r += global_stride())
      acc += double(sparse_loss_at<k>(a, r, inv));
  } else {
    const std::int64_t n = a.rows * a.cols;
    for (std::int64_t e = global_index(); e < n; e += global_stride())
      acc += double(elementwise_loss_at<k>(a, e, inv));
  }
  block_sum_to(acc, part + blockIdx.x);
}

__global__ void finish_loss_kernel(const double* __restrict__ part, std::int64_t parts,
                                   const double* denom_dev, double denom_host,
                                   float* __restrict__ loss) {
  double acc = 0;
  for (std::int64_t i = threadIdx.x; i < parts; i += kBlock) acc += part[i];
  __shared__ double total;
  block_sum_to(acc, &total);
  __syncthreads();
  if (threadIdx.x == 0) {
    const double denom = denom_dev ? *denom_dev : denom_host;
    loss[0] = denom > 0 ? float(total / denom) : 0.f;
  }
}

template <LossKind k>
void launch(const LossArgs<float>& a, float* loss, double* ws, cudaStream_t s) {
  const bool sparse = is_sparse(k);
  const std::int64_t units = sparse ? a.rows : a.rows * a.cols;
  double* part = ws + kPartOffset;
  const double* denom_dev = nullptr;
  if (a.weight) {
    const bool per_row = sparse || a.weight_per_row;
    const std::int64_t nw = per_row ? a.rows : units;
    const unsigned pw = partial_blocks(nw);
    weight_partials_kernel<<<pw, kBlock, 0, s>>>(a.weight, nw, part);
    RECUR_CHECK_LAUNCH();
    // A per-row weight counts once per element of an elementwise kind.
    sum_partials_kernel<<<1, kBlock, 0, s>>>(part, pw, per_row && !sparse ? double(a.cols) : 1.0, ws);
    RECUR_CHECK_LAUNCH();
    denom_dev = ws;
  }
  const unsigned p = partial_blocks(units);
  loss_kernel<k><<<p, kBlock, 0, s>>>(a, denom_dev, double(units), part);
  RECUR_CHECK_LAUNCH();
  finish_loss_kernel<<<1, kBlock, 0, s>>>(part, p, denom_dev, double(units), loss);
  RECUR_CHECK_LAUNCH();
}

}  // namespace

__global__ void sum_partials_kernel(const double* __restrict__ part, std::int64_t parts,
                                    double factor, double* __restrict__ out) {
  double acc = 0;
  for (std::int64_t i = threadIdx.x; i < parts; i += kBlock) acc += part[i];
  __shared__ double total;
  block_sum_to(acc, &total);
  __syncthreads();
  if (threadIdx.x == 0) out[0] = factor * total;
}

std::int64_t loss_workspace_size() { return kPartOffset + kMaxPartials; }

void loss(LossKind kind, const LossArgs<float>& a, float* out, double* ws, cudaStream_t s) {
  switch (kind) {
    case LossKind::MeanAbsoluteError: return launch<LossKind::MeanAbsoluteError>(a, out, ws, s);
    case LossKind::MeanSquaredError: return launch<LossKind::MeanSquaredError>(a, out, ws, s);
    case LossKind::Huber: return launch<LossKind::Huber>(a, out, ws, s);
    case LossKind::BinaryCrossentropy: return launch<LossKind::BinaryCrossentropy>(a, out, ws, s);
    case LossKind::SparseCategoricalCrossentropy:
      return launch<LossKind::SparseCategoricalCrossentropy>(a, out, ws, s);
    case LossKind::Accuracy: return launch<LossKind::Accuracy>(a, out, ws, s);
    case LossKind::BinaryAccuracy: return launch<LossKind::BinaryAccuracy>(a, out, ws, s);
  }
}

}  // namespace recur::kernels::cuda
