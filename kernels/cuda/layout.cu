// Layout changes. transpose01 swaps the two leading axes of [A, B, C]: the
// recurrent layers take Keras's batch-major [B, T, F] and run time-major
// [T, B, F] so that each step's rows are contiguous. One thread per output
// element; neighbouring threads write neighbouring addresses (and read them
// too when C > 1). CPU twin: transpose01 in kernels/cpu/rnn_step.cpp.
#include "check.h"
#include "grid.cuh"
#include "launch.h"

namespace recur::kernels::cuda {
namespace {
__global__ void transpose01_kernel(const float* __restrict__ x, std::int64_t A, std::int64_t B,
                                   std::int64_t C, bool rev_a, bool rev_b, float* __restrict__ y) {
  const std::int64_t n = A * B * C;
  for (std::int64_t o = global_index(); o < n; o += global_stride()) {
    const std::int64_t c = o % C, ba = o / C, a = ba % A, b = ba / A;
    const std::int64_t sa = rev_a ? A - 1 - a : a, sb = rev_b ? B - 1 - b : b;
    y[o] = x[(sa * B + sb) * C + c];
  }
}
}  // namespace

void transpose01(const float* x, std::int64_t A, std::int64_t B, std::int64_t C, bool rev_a,
                 bool rev_b, float* y, cudaStream_t s) {
  const std::int64_t n = A * B * C;
  if (n == 0) return;
  transpose01_kernel<<<grid_for(n), kBlock, 0, s>>>(x, A, B, C, rev_a, rev_b, y);
  RECUR_CHECK_LAUNCH();
}

}  // namespace recur::kernels::cuda
