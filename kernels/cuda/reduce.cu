// Reductions over the middle axis of x viewed as [outer, n, inner].
//  - inner == 1 (rows): one block per row, strided accumulation then a CUB
//    block reduction; coalesced along the row. A long row with few rows
//    beside it is split across several blocks (partials in a workspace, then
//    a second pass), so one reduce_all does not run on a single SM.
//  - inner > 1 (columns): one thread per output column, looping over n;
//    neighbouring threads read neighbouring addresses, so loads coalesce.
// Accumulates in double, like the CPU twin (kernels/cpu/reduce.cpp): these
// kernels are bound by memory, and a float accumulator loses whole percents
// of a sum over 10^7 elements.
#include <cub/block/block_reduce.cuh>

#include <algorithm>

#include "check.h"
#include "grid.cuh"
#include "launch.h"

namespace recur::kernels::cuda {
namespace {

using Acc = double;
constexpr std::int64_t kRowChunk = 1 << 15;    // elements per block when a row is split
constexpr std::int64_t kMaxChunksPerRow = 1024;
constexpr std::int64_t kManyRows = 512;        // enough rows to fill the GPU unsplit

template <ReduceOp op>
struct Combine {
  __device__ __forceinline__ Acc operator()(Acc a, Acc b) const { return reduce_combine<op, Acc>(a, b); }
};

template <ReduceOp op, class In>
__device__ Acc block_reduce_range(const In* __restrict__ p, std::int64_t begin, std::int64_t end) {
  using BlockReduce = cub::BlockReduce<Acc, kBlock>;
  __shared__ typename BlockReduce::TempStorage temp;
  Acc acc = reduce_identity<op, Acc>();
  for (std::int64_t k = begin + threadIdx.x; k < end; k += kBlock)
    acc = reduce_combine<op, Acc>(acc, Acc(p[k]));
  return BlockReduce(temp).Reduce(acc, Combine<op>{});  // valid in thread 0
}

// One block per row: y[row] = finish(reduce(row)).
template <ReduceOp op>
__global__ void reduce_rows_kernel(const float* __restrict__ x, std::int64_t n, float* __restrict__ y) {
  const Acc acc = block_reduce_range<op>(x + std::int64_t(blockIdx.x) * n, 0, n);
  if (threadIdx.x == 0) y[blockIdx.x] = float(reduce_finish<op, Acc>(acc, n));
}

// Pass 1 of a split row: block (p, row) reduces chunk p into part[row * P + p].
template <ReduceOp op>
__global__ void reduce_chunks_kernel(const float* __restrict__ x, std::int64_t n,
                                     std::int64_t chunk, Acc* __restrict__ part) {
  const std::int64_t row = blockIdx.y, p = blockIdx.x;
  const std::int64_t begin = p * chunk, end = std::min(n, begin + chunk);
  const Acc acc = block_reduce_range<op>(x + row * n, begin, end);
  if (threadIdx.x == 0) part[row * gridDim.x + p] = acc;
}

// Pass 2: one block per row combines its P partials; Mean divides by n.
template <ReduceOp op>
__global__ void reduce_partials_kernel(const Acc* __restrict__ part, std::int64_t parts,
                                       std::int64_t n, float* __restrict__ y) {
  const Acc acc = block_reduce_range<op>(part + std::int64_t(blockIdx.x) * parts, 0, parts);
  if (threadIdx.x == 0) y[blockIdx.x] = float(reduce_finish<op, Acc>(acc, n));
}

template <ReduceOp op>
__global__ void reduce_cols_kernel(const float* __restrict__ x, std::int64_t outer,
                                   std::int64_t n, std::int64_t inner, float* __restrict__ y) {
  for (std::int64_t o = global_index(); o < outer * inner; o += global_stride()) {
    const std::int64_t a = o / inner, i = o % inner;
    const float* base = x + a * n * inner + i;
    Acc acc = reduce_identity<op, Acc>();
    for (std::int64_t k = 0; k < n; ++k) acc = reduce_combine<op, Acc>(acc, Acc(base[k * inner]));
    y[o] = float(reduce_finish<op, Acc>(acc, n));
  }
}

// Blocks per row for the rows path (1: no split, no workspace).
std::int64_t chunks_per_row(std::int64_t outer, std::int64_t n, std::int64_t inner) {
  if (inner != 1 || outer >= kManyRows || n <= kRowChunk) return 1;
  return std::min(kMaxChunksPerRow, (n + kRowChunk - 1) / kRowChunk);
}

template <ReduceOp op>
void launch(const float* x, std::int64_t outer, std::int64_t n, std::int64_t inner, float* y,
            double* workspace, cudaStream_t s) {
  if (inner != 1) {
    reduce_cols_kernel<op><<<grid_for(outer * inner), kBlock, 0, s>>>(x, outer, n, inner, y);
    RECUR_CHECK_LAUNCH();
    return;
  }
  // The grid's x dimension allows 2^31 - 1 blocks.
  RECUR_CHECK(outer <= 0x7fffffff, Value, "reduce: ", outer, " rows exceed one grid");
  const std::int64_t parts = chunks_per_row(outer, n, inner);
  if (parts == 1) {
    reduce_rows_kernel<op><<<unsigned(outer), kBlock, 0, s>>>(x, n, y);
    RECUR_CHECK_LAUNCH();
    return;
  }
  RECUR_CHECK(workspace != nullptr, Internal, "reduce: split rows need a workspace");
  const std::int64_t chunk = (n + parts - 1) / parts;
  reduce_chunks_kernel<op><<<dim3(unsigned(parts), unsigned(outer)), kBlock, 0, s>>>(x, n, chunk, workspace);
  RECUR_CHECK_LAUNCH();
  reduce_partials_kernel<op><<<unsigned(outer), kBlock, 0, s>>>(workspace, parts, n, y);
  RECUR_CHECK_LAUNCH();
}

}  // namespace

std::int64_t reduce_workspace_size(std::int64_t outer, std::int64_t n, std::int64_t inner) {
  const std::int64_t parts = chunks_per_row(outer, n, inner);
  return parts == 1 ? 0 : outer * parts;
}

void reduce(ReduceOp op, const float* x, std::int64_t outer, std::int64_t n, std::int64_t inner,
            float* y, double* workspace, cudaStream_t s) {
  if (outer * inner == 0) return;
  switch (op) {
    case ReduceOp::Sum: return launch<ReduceOp::Sum>(x, outer, n, inner, y, workspace, s);
    case ReduceOp::Mean: return launch<ReduceOp::Mean>(x, outer, n, inner, y, workspace, s);
    case ReduceOp::Max: return launch<ReduceOp::Max>(x, outer, n, inner, y, workspace, s);
  }
}

}  // namespace recur::kernels::cuda
