// A model's parameters in one place: declared by name and shape, then stored
// in ONE contiguous values buffer and ONE contiguous gradients buffer per
// device. Each parameter's value and grad are Tensor views into them, so
//  - an optimizer step is one fused launch over the flat buffers (optimizer.h),
//  - clipping by global norm is one reduction over the flat gradient buffer,
//  - a data-parallel all-reduce (NCCL, later) moves one buffer.
// Each parameter starts at a multiple of kAlign elements (64 bytes in
// float32); the padding between parameters is zero in both buffers and stays
// zero through every optimizer step (zero gradient, zero value, zero slots).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "recur/host/tensor.h"

namespace recur {

class ParameterStore {
 public:
  static constexpr std::int64_t kAlign = 16;

  explicit ParameterStore(Device device = default_device(), DType dtype = DType::f32);
  // A copy would share the buffers but not later declarations; moving is fine.
  ParameterStore(const ParameterStore&) = delete;
  ParameterStore& operator=(const ParameterStore&) = delete;
  ParameterStore(ParameterStore&&) = default;
  ParameterStore& operator=(ParameterStore&&) = default;

  // Declares a parameter (before allocate()); returns its index. Names are
  // unique; a dimension may be 0 (an empty parameter takes no space).
  std::size_t declare(const std::string& name, const Shape& shape);
  // Allocates the two flat buffers, both zero-filled. After this, declare() throws.
  void allocate();
  bool allocated() const { return values_.defined(); }

  std::size_t size() const { return entries_.size(); }
  // Index of a declared name; ValueError naming it when unknown.
  std::size_t index(const std::string& name) const;
  const std::string& name(std::size_t i) const;
  const Shape& shape(std::size_t i) const;
  // Element offset of parameter i in the flat buffers.
  std::int64_t offset(std::size_t i) const;

  // Views (after allocate()): shape(i), sharing the flat buffers' storage.
  Tensor value(std::size_t i) const;
  Tensor grad(std::size_t i) const;
  Tensor value(const std::string& name) const { return value(index(name)); }
  Tensor grad(const std::string& name) const { return grad(index(name)); }

  // The flat buffers, [buffer_numel()] each.
  const Tensor& values() const;
  const Tensor& grads() const;
  // Elements of all parameters (what Keras's count_params reports), and of
  // the buffers including alignment padding.
  std::int64_t numel() const;
  std::int64_t buffer_numel() const { return total_; }

  void zero_grads();
  Device device() const { return device_; }
  DType dtype() const { return dtype_; }

 private:
  struct Entry {
    std::string name;
    Shape shape;
    std::int64_t offset = 0, numel = 0;
  };
  const Entry& entry(std::size_t i) const;
  Tensor view(const Tensor& flat, std::size_t i) const;

  Device device_;
  DType dtype_;
  std::vector<Entry> entries_;
  std::int64_t total_ = 0;
  Tensor values_, grads_;
};

}  // namespace recur
