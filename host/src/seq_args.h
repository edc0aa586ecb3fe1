// Turns validated pooling / embedding / dropout / length-bucketing tensors
// into the kernels' pointer structs (recur/kernels/seq_ops.h, bucketing.h);
// shared by the CPU and CUDA backends.
#pragma once

#include "step_args.h"

namespace recur::detail {

template <class T>
kernels::PoolArgs<T> pool_args(const Pool1dCall& c) {
  kernels::PoolArgs<T> a;
  a.g = c.geometry;
  a.x = opt_ptr<T>(c.x);
  a.mask = opt_ptr<T>(c.mask);
  a.y = opt_out<T>(c.y);
  a.argmax = c.argmax.defined() ? c.argmax.data<std::int32_t>() : nullptr;
  a.dy = opt_ptr<T>(c.dy);
  a.dx = opt_out<T>(c.dx);
  return a;
}

// weights/y for forward, dy/dweights for backward; the others undefined.
template <class T>
kernels::EmbeddingArgs<T> embedding_args(const Tensor& w, const Tensor& ids, const Tensor& y,
                                         const Tensor& dy, const Tensor& dw) {
  kernels::EmbeddingArgs<T> a;
  const Tensor& table = w.defined() ? w : dw;
  a.w = opt_ptr<T>(w);
  a.ids = ids.data<std::int32_t>();
  a.y = opt_out<T>(y);
  a.dy = opt_ptr<T>(dy);
  a.dw = opt_out<T>(dw);
  a.n = ids.numel();
  a.V = table.dim(0);
  a.D = table.dim(1);
  return a;
}

template <class T>
kernels::DropoutArgs<T> dropout_args(const Tensor& x, double rate, std::uint64_t seed,
                                     const Tensor& y, const Tensor& mask) {
  kernels::DropoutArgs<T> a;
  a.x = x.data<T>();
  a.y = y.data<T>();
  a.mask = mask.data<T>();
  a.n = x.numel();
  a.rate = rate;
  a.scale = T(1.0 / (1.0 - rate));
  a.seed = seed;
  return a;
}

inline kernels::BucketArgs bucket_args(const LengthBucketsCall& c) {
  kernels::BucketArgs a;
  a.lengths = c.lengths.data<std::int32_t>();
  a.N = c.lengths.numel();
  a.order = c.order.data<std::int32_t>();
  a.n = c.order.numel();
  a.window = c.window;
  a.sort = c.sort;
  a.cut = c.cut;
  a.indices = c.indices.data<std::int32_t>();
  a.keys = c.keys.data<std::int32_t>();
  a.batch_begin = c.batch_begin.data<std::int32_t>();
  a.batch_size = c.batch_size.data<std::int32_t>();
  a.batch_padded = c.batch_padded.data<std::int32_t>();
  a.info = c.info.data<std::int32_t>();
  return a;
}

}  // namespace recur::detail
