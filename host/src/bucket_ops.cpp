// recur::ops::length_buckets: argument checks, then the device's backend
// (CPU twin or CUB on the GPU; recur/kernels/bucketing.h).
#include <climits>
#include <vector>

#include "recur/host/ops.h"

namespace recur::ops {

LengthBuckets length_buckets(const Tensor& lengths, const Tensor& order, std::int64_t window,
                             const kernels::BucketCut& cut, bool sort) {
  const char* op = "length_buckets";
  RECUR_CHECK(lengths.defined() && order.defined(), Value, op,
              ": 'lengths' and 'order' must be defined tensors");
  for (const auto& [name, t] : {std::pair<const char*, const Tensor&>{"lengths", lengths},
                                {"order", order}}) {
    RECUR_CHECK(t.dtype() == DType::i32, DType, op, ": '", name, "' is ", dtype_name(t.dtype()),
                ", expected int32");
    RECUR_CHECK(t.ndim() == 1, Shape, op, ": '", name, "' has shape ", shape_str(t.shape()),
                ", expected a vector");
    RECUR_CHECK(t.numel() <= INT_MAX, Value, op, ": '", name, "' has ", t.numel(),
                " elements; at most 2^31-1 are supported");
  }
  RECUR_CHECK(lengths.device() == order.device(), Device, op, ": 'lengths' is on ",
              lengths.device().str(), " but 'order' is on ", order.device().str());
  RECUR_CHECK(window >= 1, Value, op, ": window = ", window, "; it must be >= 1");
  RECUR_CHECK(cut.batch_size >= 1, Value, op, ": batch_size = ", cut.batch_size,
              "; it must be >= 1");
  RECUR_CHECK(cut.pad_multiple >= 1, Value, op, ": pad_multiple = ", cut.pad_multiple,
              "; it must be >= 1");
  RECUR_CHECK(cut.max_tokens >= 0 && cut.max_length >= 0 && cut.fixed_length >= 0, Value, op,
              ": max_tokens = ", cut.max_tokens, ", max_length = ", cut.max_length,
              ", fixed_length = ", cut.fixed_length, "; none may be negative (0: unused)");
  RECUR_CHECK(cut.max_length <= INT_MAX && cut.fixed_length <= INT_MAX &&
                  cut.pad_multiple <= INT_MAX,
              Value, op, ": max_length, fixed_length and pad_multiple must fit in int32");

  const Device dev = order.device();
  const std::int64_t n = order.numel();
  LengthBuckets r;
  r.indices = Tensor::empty({n}, DType::i32, dev);
  r.lengths = Tensor::empty({n}, DType::i32, dev);
  if (n == 0) {
    r.batch_begin = r.batch_size = r.batch_padded = Tensor::empty({0}, DType::i32, dev);
    return r;
  }
  Backend& b = backend(dev);
  const Support s = b.supports({OpKind::LengthBuckets, DType::i32, n, 0});
  RECUR_CHECK(s.ok, Unsupported, op, " on ", dev.str(), ": ", s.reason);
  LengthBucketsCall c;
  c.lengths = lengths;
  c.order = order;
  c.window = window;
  c.sort = sort;
  c.cut = cut;
  c.indices = r.indices;
  c.keys = r.lengths;
  c.batch_begin = Tensor::empty({n}, DType::i32, dev);
  c.batch_size = Tensor::empty({n}, DType::i32, dev);
  c.batch_padded = Tensor::empty({n}, DType::i32, dev);
  c.info = Tensor::empty({2}, DType::i32, dev);
  b.length_buckets(c);
  const std::vector<std::int32_t> info = c.info.to_vector<std::int32_t>();
  if (info[1] < 0) {
    // A GPU flags bad input; the CPU twin says exactly where it is.
    (void)length_buckets(lengths.to(Device::cpu()), order.to(Device::cpu()), window, cut, sort);
    RECUR_THROW(Internal, op, ": ", dev.str(), " flagged bad input (code ", info[1],
                ") that the CPU twin accepts");
  }
  r.num_batches = info[0];
  r.batch_begin = c.batch_begin.slice(0, r.num_batches);
  r.batch_size = c.batch_size.slice(0, r.num_batches);
  r.batch_padded = c.batch_padded.slice(0, r.num_batches);
  return r;
}

}  // namespace recur::ops
