// Launch-geometry helpers shared by the elementwise-style kernels.
#pragma once

#include <algorithm>
#include <cstdint>

namespace recur::kernels::cuda {

inline constexpr int kBlock = 256;

// Blocks for a grid-stride loop over n elements: enough to fill the GPU,
// capped so huge tensors loop instead of launching millions of blocks.
inline unsigned grid_for(std::int64_t n) {
  const std::int64_t blocks = (n + kBlock - 1) / kBlock;
  return static_cast<unsigned>(std::clamp<std::int64_t>(blocks, 1, 1 << 16));
}

__device__ __forceinline__ std::int64_t global_index() {
  return std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ std::int64_t global_stride() {
  return std::int64_t(gridDim.x) * blockDim.x;
}

}  // namespace recur::kernels::cuda
