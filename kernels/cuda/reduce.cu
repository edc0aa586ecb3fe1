// Reductions over the middle axis of x viewed as [outer, n, inner].
//  - inner == 1 (rows): one block per row, strided accumulation then a CUB
//    block reduction; coalesced along the row.
//  - inner > 1 (columns): one thread per output column, looping over n;
//    neighbouring threads read neighbouring addresses, so loads coalesce.
// Accumulates in float. CPU twin: kernels/cpu/reduce.cpp (accumulates in double).
#include <cub/block/block_reduce.cuh>

#include "check.h"
#include "grid.cuh"
#include "launch.h"

namespace recur::kernels::cuda {
namespace {

template <ReduceOp op>
struct Combine {
  __device__ __forceinline__ float operator()(float a, float b) const {
    return reduce_combine<op, float>(a, b);
  }
};

template <ReduceOp op>
__global__ void reduce_rows_kernel(const float* __restrict__ x, std::int64_t n,
                                   float* __restrict__ y) {
  using BlockReduce = cub::BlockReduce<float, kBlock>;
  __shared__ typename BlockReduce::TempStorage temp;
  const float* row = x + std::int64_t(blockIdx.x) * n;
  float acc = reduce_identity<op, float>();
  for (std::int64_t k = threadIdx.x; k < n; k += kBlock)
    acc = reduce_combine<op, float>(acc, row[k]);
  acc = BlockReduce(temp).Reduce(acc, Combine<op>{});
  if (threadIdx.x == 0) y[blockIdx.x] = reduce_finish<op, float>(acc, n);
}

template <ReduceOp op>
__global__ void reduce_cols_kernel(const float* __restrict__ x, std::int64_t outer,
                                   std::int64_t n, std::int64_t inner, float* __restrict__ y) {
  for (std::int64_t o = global_index(); o < outer * inner; o += global_stride()) {
    const std::int64_t a = o / inner, i = o % inner;
    const float* base = x + a * n * inner + i;
    float acc = reduce_identity<op, float>();
    for (std::int64_t k = 0; k < n; ++k) acc = reduce_combine<op, float>(acc, base[k * inner]);
    y[o] = reduce_finish<op, float>(acc, n);
  }
}

template <ReduceOp op>
void launch(const float* x, std::int64_t outer, std::int64_t n, std::int64_t inner, float* y,
            cudaStream_t s) {
  if (inner == 1) {
    // One block per row; the grid's x dimension allows 2^31 - 1 blocks.
    RECUR_CHECK(outer <= 0x7fffffff, Value, "reduce: ", outer, " rows exceed one grid");
    reduce_rows_kernel<op><<<unsigned(outer), kBlock, 0, s>>>(x, n, y);
  } else {
    reduce_cols_kernel<op><<<grid_for(outer * inner), kBlock, 0, s>>>(x, outer, n, inner, y);
  }
  RECUR_CHECK_LAUNCH();
}

}  // namespace

void reduce(ReduceOp op, const float* x, std::int64_t outer, std::int64_t n, std::int64_t inner,
            float* y, cudaStream_t s) {
  if (outer * inner == 0) return;
  switch (op) {
    case ReduceOp::Sum: return launch<ReduceOp::Sum>(x, outer, n, inner, y, s);
    case ReduceOp::Mean: return launch<ReduceOp::Mean>(x, outer, n, inner, y, s);
    case ReduceOp::Max: return launch<ReduceOp::Max>(x, outer, n, inner, y, s);
  }
}

}  // namespace recur::kernels::cuda
