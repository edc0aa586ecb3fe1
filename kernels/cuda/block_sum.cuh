// Deterministic sums on the GPU: a fixed number of blocks each write one
// partial (a CUB block reduction in double), then one block adds the
// partials in a fixed order. No atomics, so a loss or a gradient norm is the
// same from run to run. Used by loss.cu and optim.cu.
#pragma once

#include <cub/block/block_reduce.cuh>

#include <algorithm>
#include <cstdint>

#include "grid.cuh"

namespace recur::kernels::cuda {

inline constexpr std::int64_t kMaxPartials = 1024;

// Blocks of a partial-sum pass over n items.
inline unsigned partial_blocks(std::int64_t n) {
  return static_cast<unsigned>(std::min<std::int64_t>(grid_for(n), kMaxPartials));
}

// Block-wide sum of each thread's v; thread 0 writes it to *out.
__device__ __forceinline__ void block_sum_to(double v, double* out) {
  using BlockReduce = cub::BlockReduce<double, kBlock>;
  __shared__ typename BlockReduce::TempStorage temp;
  const double s = BlockReduce(temp).Sum(v);
  if (threadIdx.x == 0) *out = s;
}

// One block: out[0] = factor * sum(part[0..parts)).
__global__ void sum_partials_kernel(const double* __restrict__ part, std::int64_t parts,
                                    double factor, double* __restrict__ out);

}  // namespace recur::kernels::cuda
