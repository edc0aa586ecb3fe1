// The optimizer step on the GPU: one launch updates every parameter of a
// model, because parameters, gradients and slots are each one flat buffer
// (engine/parameters.h). Memory-bound grid-stride loop; the kind is a
// template parameter. Clipping by global norm reads the sum of squares from
// device memory, so no value travels to the host between the norm and the
// step. Math: recur/kernels/optim.h. CPU twin: kernels/cpu/optim.cpp.
#include "block_sum.cuh"
#include "check.h"
#include "launch.h"

namespace recur::kernels::cuda {
namespace {

template <OptimizerKind k>
__global__ void optimizer_kernel(OptimizerArgs<float> a) {
  const float scale = a.grad_sq_sum ? global_norm_scale(*a.grad_sq_sum, a.clipnorm) : 1.f;
  for (std::int64_t i = global_index(); i < a.n; i += global_stride())
    optimizer_update_at<k>(a, i, scale);
}

__global__ void clip_kernel(float* g, std::int64_t n, const double* sq_sum, float clipnorm,
                            float clipvalue) {
  const float scale = sq_sum ? global_norm_scale(*sq_sum, clipnorm) : 1.f;
  for (std::int64_t i = global_index(); i < n; i += global_stride())
    g[i] = clip_gradient(g[i], scale, clipvalue);
}

__global__ void sum_squares_partials_kernel(const float* __restrict__ x, std::int64_t n,
                                            double* __restrict__ part) {
  double acc = 0;
  for (std::int64_t i = global_index(); i < n; i += global_stride()) {
    const double v = x[i];
    acc += v * v;
  }
  block_sum_to(acc, part + blockIdx.x);
}

template <OptimizerKind k>
void launch(const OptimizerArgs<float>& a, cudaStream_t s) {
  optimizer_kernel<k><<<grid_for(a.n), kBlock, 0, s>>>(a);
  RECUR_CHECK_LAUNCH();
}

}  // namespace

std::int64_t sum_squares_workspace_size() { return kMaxPartials; }

void sum_squares(const float* x, std::int64_t n, double* out, double* ws, cudaStream_t s) {
  const unsigned p = partial_blocks(n);
  sum_squares_partials_kernel<<<p, kBlock, 0, s>>>(x, n, ws);
  RECUR_CHECK_LAUNCH();
  sum_partials_kernel<<<1, kBlock, 0, s>>>(ws, p, 1.0, out);
  RECUR_CHECK_LAUNCH();
}

void optimizer_step(OptimizerKind kind, const OptimizerArgs<float>& a, cudaStream_t s) {
  if (a.n == 0) return;
  switch (kind) {
    case OptimizerKind::SGD: return launch<OptimizerKind::SGD>(a, s);
    case OptimizerKind::RMSprop: return launch<OptimizerKind::RMSprop>(a, s);
    case OptimizerKind::Adam: return launch<OptimizerKind::Adam>(a, s);
  }
}

void clip(float* g, std::int64_t n, const double* sq_sum, float clipnorm, float clipvalue,
          cudaStream_t s) {
  if (n == 0) return;
  clip_kernel<<<grid_for(n), kBlock, 0, s>>>(g, n, sq_sum, clipnorm, clipvalue);
  RECUR_CHECK_LAUNCH();
}

}  // namespace recur::kernels::cuda
