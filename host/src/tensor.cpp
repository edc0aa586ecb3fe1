// Tensor and Storage: allocation through the device's caching allocator,
// explicit copies through the backend, contiguous views.
#include "recur/host/tensor.h"

#include <cstring>
#include <sstream>

#include "recur/host/backend.h"
#include "recur/host/ops.h"

namespace recur {

std::string shape_str(const Shape& shape) {
  std::ostringstream os;
  os << '[';
  for (std::size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << ']';
  return os.str();
}

std::int64_t shape_numel(const Shape& shape) {
  std::int64_t n = 1;
  for (auto d : shape) {
    RECUR_CHECK(d >= 0, Shape, "negative dimension in shape ", shape_str(shape));
    RECUR_CHECK(!__builtin_mul_overflow(n, d, &n), Shape, "shape ", shape_str(shape),
                " has more elements than 2^63");
  }
  return n;
}

Storage::Storage(Device device, std::size_t bytes)
    : device_(device), allocator_(&backend(device).allocator()), bytes_(bytes) {
  data_ = allocator_->allocate(bytes, block_bytes_);
}

Storage::~Storage() { allocator_->release(data_, block_bytes_); }

Tensor::Tensor(std::shared_ptr<Storage> storage, std::size_t offset, Shape shape, DType dtype)
    : storage_(std::move(storage)),
      offset_(offset),
      shape_(std::move(shape)),
      numel_(shape_numel(shape_)),
      dtype_(dtype),
      device_(storage_->device()) {}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  const std::int64_t n = shape_numel(shape);
  std::size_t bytes = 0;
  RECUR_CHECK(!__builtin_mul_overflow(std::size_t(n), dtype_size(dtype), &bytes), OutOfMemory,
              "a ", dtype_name(dtype), " tensor of shape ", shape_str(shape),
              " needs more bytes than memory can address");
  auto storage = std::make_shared<Storage>(device, bytes);
  return Tensor(std::move(storage), 0, shape, dtype);
}

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  ops::fill(t, value);
  return t;
}

template <class T>
Tensor Tensor::from_vector(const std::vector<T>& values, const Shape& shape, Device device) {
  const std::int64_t n = shape_numel(shape);
  RECUR_CHECK(std::int64_t(values.size()) == n, Shape, "from_vector: ", values.size(),
              " values for shape ", shape_str(shape), " (", n, " elements)");
  Tensor t = empty(shape, dtype_of<T>, device);
  if (n) backend(device).copy_bytes(t.raw_data(), device, values.data(), Device::cpu(), t.nbytes());
  return t;
}

std::int64_t Tensor::dim(int i) const {
  const int n = ndim();
  RECUR_CHECK(i >= -n && i < n, Shape, "dimension ", i, " out of range for shape ",
              shape_str(shape_));
  return shape_[i < 0 ? i + n : i];
}

void* Tensor::raw_data() const {
  return storage_ ? static_cast<char*>(storage_->data()) + offset_ : nullptr;
}

Tensor Tensor::to(Device device) const {
  RECUR_CHECK(defined(), Value, "to(", device.str(), ") of an undefined tensor");
  Tensor t = empty(shape_, dtype_, device);
  t.copy_from(*this);
  return t;
}

void Tensor::copy_from(const Tensor& src) const {
  RECUR_CHECK(defined() && src.defined(), Value, "copy_from with an undefined tensor");
  RECUR_CHECK(dtype_ == src.dtype_, DType, "copy_from: ", dtype_name(src.dtype_), " into ",
              dtype_name(dtype_), "; convert explicitly");
  RECUR_CHECK(numel_ == src.numel_, Shape, "copy_from: ", shape_str(src.shape_), " into ",
              shape_str(shape_), ": element counts differ");
  if (nbytes() == 0) return;
  if (device_.is_cpu() && src.device_.is_cpu()) {
    std::memmove(raw_data(), src.raw_data(), nbytes());
    return;
  }
  // The CUDA side drives any copy that involves a GPU. Between two GPUs, the
  // source's stream must finish producing the data first, and the copy must
  // finish before the source's block can be reused on its own stream.
  const bool two_gpus = device_.is_cuda() && src.device_.is_cuda() && device_ != src.device_;
  if (two_gpus) backend(src.device_).synchronize();
  Backend& b = backend(device_.is_cuda() ? device_ : src.device_);
  b.copy_bytes(raw_data(), device_, src.raw_data(), src.device_, nbytes());
  if (two_gpus) b.synchronize();
}

template <class T>
std::vector<T> Tensor::to_vector() const {
  RECUR_CHECK(defined(), Value, "to_vector of an undefined tensor");
  RECUR_CHECK(dtype_ == dtype_of<T>, DType, "to_vector: tensor holds ", dtype_name(dtype_),
              ", asked for ", dtype_name(dtype_of<T>));
  std::vector<T> out(static_cast<std::size_t>(numel_));
  if (numel_ == 0) return out;
  if (device_.is_cpu())
    std::memcpy(out.data(), raw_data(), nbytes());
  else
    backend(device_).copy_bytes(out.data(), Device::cpu(), raw_data(), device_, nbytes());
  return out;
}

Tensor Tensor::reshape(const Shape& shape) const {
  RECUR_CHECK(defined(), Value, "reshape of an undefined tensor");
  Shape s = shape;
  int infer = -1;
  std::int64_t known = 1;
  for (int i = 0; i < int(s.size()); ++i) {
    if (s[i] == -1) {
      RECUR_CHECK(infer < 0, Shape, "reshape to ", shape_str(shape), ": more than one -1");
      infer = i;
    } else {
      RECUR_CHECK(s[i] >= 0, Shape, "reshape to ", shape_str(shape), ": negative dimension");
      known *= s[i];
    }
  }
  if (infer >= 0) {
    RECUR_CHECK(known > 0 && numel_ % known == 0, Shape, "cannot reshape ", shape_str(shape_),
                " (", numel_, " elements) to ", shape_str(shape));
    s[infer] = numel_ / known;
  }
  RECUR_CHECK(shape_numel(s) == numel_, Shape, "cannot reshape ", shape_str(shape_), " (", numel_,
              " elements) to ", shape_str(shape), " (", shape_numel(s), " elements)");
  return Tensor(storage_, offset_, s, dtype_);
}

Tensor Tensor::slice(std::int64_t begin, std::int64_t end) const {
  RECUR_CHECK(defined() && ndim() >= 1, Shape, "slice needs a tensor with at least one dimension");
  RECUR_CHECK(0 <= begin && begin <= end && end <= shape_[0], Shape, "slice [", begin, ", ", end,
              ") out of range for dimension 0 of ", shape_str(shape_));
  const std::int64_t row = shape_[0] ? numel_ / shape_[0] : 0;
  Shape s = shape_;
  s[0] = end - begin;
  return Tensor(storage_, offset_ + std::size_t(begin * row) * dtype_size(dtype_), s, dtype_);
}

std::string Tensor::str() const {
  if (!defined()) return "Tensor(undefined)";
  return "Tensor" + shape_str(shape_) + " " + std::string(dtype_name(dtype_)) + " " + device_.str();
}

#define RECUR_INSTANTIATE(T)                                                                  \
  template Tensor Tensor::from_vector<T>(const std::vector<T>&, const Shape&, Device);        \
  template std::vector<T> Tensor::to_vector<T>() const;
RECUR_INSTANTIATE(float)
RECUR_INSTANTIATE(double)
RECUR_INSTANTIATE(std::int32_t)
#undef RECUR_INSTANTIATE

}  // namespace recur
