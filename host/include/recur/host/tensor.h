// Tensors: a shape, an element type, a device and contiguous row-major storage
// from that device's caching allocator. A Tensor is a handle: copies share
// storage (like torch.Tensor); data is copied only by the explicit calls
// to(), copy_from(), from_vector() and to_vector(). Views (reshape, slice)
// share storage and stay contiguous.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "recur/common/dtype.h"
#include "recur/common/error.h"
#include "recur/host/device.h"

namespace recur {

using Shape = std::vector<std::int64_t>;
std::string shape_str(const Shape& shape);  // "[2, 3]"
std::int64_t shape_numel(const Shape& shape);

class CachingAllocator;

// One allocation; returned to its allocator when the last view goes.
class Storage {
 public:
  Storage(Device device, std::size_t bytes);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  void* data() const { return data_; }
  std::size_t bytes() const { return bytes_; }
  Device device() const { return device_; }

 private:
  Device device_;
  CachingAllocator* allocator_;
  void* data_ = nullptr;
  std::size_t bytes_ = 0, block_bytes_ = 0;
};

class Tensor {
 public:
  Tensor() = default;  // undefined: no storage

  // Uninitialised contents.
  static Tensor empty(const Shape& shape, DType dtype = DType::f32,
                      Device device = default_device());
  static Tensor full(const Shape& shape, double value, DType dtype = DType::f32,
                     Device device = default_device());
  static Tensor zeros(const Shape& shape, DType dtype = DType::f32,
                      Device device = default_device()) {
    return full(shape, 0.0, dtype, device);
  }
  // Copies host values into a new tensor on `device`.
  template <class T>
  static Tensor from_vector(const std::vector<T>& values, const Shape& shape,
                            Device device = default_device());

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int ndim() const { return static_cast<int>(shape_.size()); }
  // Size of dimension i; negative i counts from the end. Throws ShapeError.
  std::int64_t dim(int i) const;
  std::int64_t numel() const { return numel_; }
  std::size_t nbytes() const { return std::size_t(numel_) * dtype_size(dtype_); }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }

  // Raw pointer to the first element (device memory for CUDA tensors).
  // A handle's constness does not extend to the data, as with torch.Tensor.
  void* raw_data() const;
  template <class T>
  T* data() const {
    RECUR_CHECK(defined(), Value, "data() of an undefined tensor");
    RECUR_CHECK(dtype_ == dtype_of<T>, DType, "tensor holds ", dtype_name(dtype_),
                ", accessed as ", dtype_name(dtype_of<T>));
    return static_cast<T*>(raw_data());
  }

  // Explicit copies.
  Tensor to(Device device) const;       // a new tensor on `device` (always copies)
  void copy_from(const Tensor& source) const;  // same dtype and element count; any devices
  template <class T>
  std::vector<T> to_vector() const;  // to host memory

  // Views sharing storage. reshape: one dimension may be -1.
  Tensor reshape(const Shape& shape) const;
  // Rows [begin, end) of dimension 0.
  Tensor slice(std::int64_t begin, std::int64_t end) const;

  // "Tensor[2, 3] float32 cpu"
  std::string str() const;

 private:
  Tensor(std::shared_ptr<Storage> storage, std::size_t offset, Shape shape, DType dtype);

  std::shared_ptr<Storage> storage_;
  std::size_t offset_ = 0;  // bytes into storage
  Shape shape_;
  std::int64_t numel_ = 0;
  DType dtype_ = DType::f32;
  Device device_;
};

}  // namespace recur
