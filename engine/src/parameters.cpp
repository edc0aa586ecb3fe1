// ParameterStore: the flat values/gradients buffers and their per-parameter views.
#include "recur/engine/parameters.h"

#include "recur/host/ops.h"

namespace recur {

ParameterStore::ParameterStore(Device device, DType dtype) : device_(device), dtype_(dtype) {
  RECUR_CHECK(dtype == DType::f32 || dtype == DType::f64, DType,
              "ParameterStore: parameters are float32 or float64, not ", dtype_name(dtype));
}

std::size_t ParameterStore::declare(const std::string& name, const Shape& shape) {
  RECUR_CHECK(!allocated(), Value, "ParameterStore::declare('", name,
              "'): the buffers are already allocated; declare every parameter first");
  RECUR_CHECK(!name.empty(), Value, "ParameterStore::declare: a parameter needs a name");
  for (const Entry& e : entries_)
    RECUR_CHECK(e.name != name, Value, "ParameterStore::declare: '", name, "' is declared twice");
  Entry e;
  e.name = name;
  e.shape = shape;
  e.numel = shape_numel(shape);
  e.offset = total_;
  total_ += (e.numel + kAlign - 1) / kAlign * kAlign;
  entries_.push_back(std::move(e));
  return entries_.size() - 1;
}

void ParameterStore::allocate() {
  RECUR_CHECK(!allocated(), Value, "ParameterStore::allocate: already allocated");
  values_ = Tensor::zeros({total_}, dtype_, device_);
  grads_ = Tensor::zeros({total_}, dtype_, device_);
}

const ParameterStore::Entry& ParameterStore::entry(std::size_t i) const {
  RECUR_CHECK(i < entries_.size(), Value, "ParameterStore: parameter index ", i,
              " out of range (", entries_.size(), " declared)");
  return entries_[i];
}

std::size_t ParameterStore::index(const std::string& name) const {
  for (std::size_t i = 0; i < entries_.size(); ++i)
    if (entries_[i].name == name) return i;
  RECUR_THROW(Value, "ParameterStore: no parameter named '", name, "'");
}

const std::string& ParameterStore::name(std::size_t i) const { return entry(i).name; }
const Shape& ParameterStore::shape(std::size_t i) const { return entry(i).shape; }
std::int64_t ParameterStore::offset(std::size_t i) const { return entry(i).offset; }

Tensor ParameterStore::view(const Tensor& flat, std::size_t i) const {
  const Entry& e = entry(i);
  RECUR_CHECK(allocated(), Value, "ParameterStore: '", e.name,
              "' has no storage before allocate()");
  return flat.slice(e.offset, e.offset + e.numel).reshape(e.shape);
}

Tensor ParameterStore::value(std::size_t i) const { return view(values_, i); }
Tensor ParameterStore::grad(std::size_t i) const { return view(grads_, i); }

const Tensor& ParameterStore::values() const {
  RECUR_CHECK(allocated(), Value, "ParameterStore::values() before allocate()");
  return values_;
}
const Tensor& ParameterStore::grads() const {
  RECUR_CHECK(allocated(), Value, "ParameterStore::grads() before allocate()");
  return grads_;
}

std::int64_t ParameterStore::numel() const {
  std::int64_t n = 0;
  for (const Entry& e : entries_) n += e.numel;
  return n;
}

void ParameterStore::zero_grads() { ops::fill(grads(), 0.0); }

}  // namespace recur
