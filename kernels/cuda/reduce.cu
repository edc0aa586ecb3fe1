// Reductions over the middle axis of x viewed as [outer, n, inner].
//  - inner == 1 (rows): one block per row, strided accumulation then a CUB
//    block reduction; coalesced along the row. A long row with few rows
//    beside it is split across several blocks (partials in a workspace, then
//    a second pass), so one reduce_all does not run on a single SM.
//  - inner > 1 (columns): tiles of 32 columns x a chunk of rows per block
//    (32 x 8 threads: a warp reads 32 neighbouring columns of one row, so
//    loads coalesce), the chunks of one column spread over enough blocks to
//    fill the GPU; each block adds its 8 row lanes in a fixed order into one
//    partial per column and chunk, and a second pass adds a column's
//    partials in order. Deterministic, no atomics. (The bias gradients of a
//    recurrent layer are this: [T B, G H] summed over T B rows; one thread
//    per column took 12 ms per call on an H100 at the Jena shape.)
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

// Columns: 32 columns x kColLanes row lanes per block.
constexpr int kColTile = 32;
constexpr int kColLanes = kBlock / kColTile;        // 8
constexpr std::int64_t kMinColChunk = 64;           // rows per chunk at the least
constexpr std::int64_t kColBlocksTarget = 1024;     // enough blocks to fill any GPU

// Chunks of rows per column for the columns path (1: one pass, no workspace).
std::int64_t col_chunks(std::int64_t outer, std::int64_t n, std::int64_t inner) {
  if (inner == 1) return 1;
  const std::int64_t tiles = outer * ((inner + kColTile - 1) / kColTile);
  const std::int64_t by_rows = (n + kMinColChunk - 1) / kMinColChunk;
  const std::int64_t by_blocks = std::max<std::int64_t>(1, kColBlocksTarget / std::max<std::int64_t>(1, tiles));
  return std::max<std::int64_t>(1, std::min(by_rows, by_blocks));
}

// Block (a tiles + tile, p): columns [32 tile, 32 tile + 32) of slice a,
// rows of chunk p. With chunks == 1 it writes y (finished) itself, else
// part[(a * chunks + p) * inner + i] for the second pass.
template <ReduceOp op>
__global__ void reduce_cols_kernel(const float* __restrict__ x, std::int64_t n, std::int64_t inner,
                                   std::int64_t tiles, std::int64_t chunk, Acc* __restrict__ part,
                                   float* __restrict__ y) {
  __shared__ Acc lanes[kColLanes][kColTile];
  const int cx = threadIdx.x % kColTile, ly = threadIdx.x / kColTile;
  const std::int64_t a = blockIdx.x / tiles, tile = blockIdx.x % tiles;
  const std::int64_t i = tile * kColTile + cx;
  const std::int64_t p = blockIdx.y, chunks = gridDim.y;
  const std::int64_t begin = p * chunk, end = std::min(n, begin + chunk);
  Acc acc = reduce_identity<op, Acc>();
  if (i < inner) {
    const float* base = x + a * n * inner + i;
    for (std::int64_t k = begin + ly; k < end; k += kColLanes)
      acc = reduce_combine<op, Acc>(acc, Acc(base[k * inner]));
  }
  lanes[ly][cx] = acc;
  __syncthreads();
  if (ly != 0 || i >= inner) return;
  for (int l = 1; l < kColLanes; ++l) acc = reduce_combine<op, Acc>(acc, lanes[l][cx]);
  if (chunks == 1)
    y[a * inner + i] = float(reduce_finish<op, Acc>(acc, n));
  else
    part[(a * chunks + p) * inner + i] = acc;
}

// Second pass: y[a, i] combines the chunks' partials of column i in order.
template <ReduceOp op>
__global__ void reduce_col_partials_kernel(const Acc* __restrict__ part, std::int64_t outer,
                                           std::int64_t chunks, std::int64_t n, std::int64_t inner,
                                           float* __restrict__ y) {
  for (std::int64_t o = global_index(); o < outer * inner; o += global_stride()) {
    const std::int64_t a = o / inner, i = o % inner;
    const Acc* q = part + a * chunks * inner + i;
    Acc acc = reduce_identity<op, Acc>();
    for (std::int64_t p = 0; p < chunks; ++p) acc = reduce_combine<op, Acc>(acc, q[p * inner]);
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
    const std::int64_t tiles = (inner + kColTile - 1) / kColTile;
    RECUR_CHECK(tiles * outer <= 0x7fffffff, Value, "reduce: ", outer, " x ", inner,
                " columns exceed one grid");
    const std::int64_t chunks = col_chunks(outer, n, inner);  // <= kColBlocksTarget
    const std::int64_t chunk = (n + chunks - 1) / chunks;
    RECUR_CHECK(chunks == 1 || workspace != nullptr, Internal, "reduce: split columns need a workspace");
    reduce_cols_kernel<op><<<dim3(unsigned(tiles * outer), unsigned(chunks)), kBlock, 0, s>>>(
        x, n, inner, tiles, std::max<std::int64_t>(chunk, 1), workspace, y);
    RECUR_CHECK_LAUNCH();
    if (chunks > 1) {
      reduce_col_partials_kernel<op><<<grid_for(outer * inner), kBlock, 0, s>>>(workspace, outer, chunks, n,
                                                                                inner, y);
      RECUR_CHECK_LAUNCH();
    }
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
  if (inner != 1) {
    const std::int64_t chunks = col_chunks(outer, n, inner);
    return chunks == 1 ? 0 : outer * chunks * inner;
  }
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
