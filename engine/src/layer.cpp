// The Layer base class: build/declare/bind/initialize bookkeeping and the
// argument checks every layer shares (see layer.h).
#include "recur/engine/layer.h"

#include <sstream>

#include "recur/engine/initializers.h"

namespace recur {

std::string keras_shape_str(const Shape& shape) {
  std::ostringstream s;
  s << "(None";
  for (std::int64_t d : shape) {
    s << ", ";
    if (d == kAnyDim)
      s << "None";
    else
      s << d;
  }
  if (shape.empty()) s << ",";
  s << ")";
  return s.str();
}

void Layer::set_name(std::string name) {
  RECUR_CHECK(!built_, Value, "layer '", name_, "': cannot be renamed after build()");
  RECUR_CHECK(!name.empty(), Value, "a layer name cannot be empty");
  name_ = std::move(name);
}

void Layer::shape_error(const std::string& what) const {
  RECUR_THROW(Shape, type(), " '", name_, "': ", what);
}

void Layer::build(const Shape& input_shape, DType dtype) {
  RECUR_CHECK(!built_, Value, type(), " '", name_, "' is already built (for input ",
              keras_shape_str(input_shape_), "); a layer belongs to one model");
  RECUR_CHECK(dtype == DType::f32 || dtype == DType::f64, DType, type(), " '", name_,
              "': compute dtype must be float32 or float64, not ", dtype_name(dtype));
  for (std::int64_t d : input_shape)
    if (d != kAnyDim && d < 1) shape_error("input shape " + keras_shape_str(input_shape) +
                                           " has a dimension below 1");
  dtype_ = dtype;
  input_shape_ = input_shape;
  params_.clear();
  output_shape_ = do_build(input_shape);
  built_ = true;
}

const Shape& Layer::input_shape() const {
  RECUR_CHECK(built_, Value, type(), " '", name_, "' is not built yet");
  return input_shape_;
}
const Shape& Layer::output_shape() const {
  RECUR_CHECK(built_, Value, type(), " '", name_, "' is not built yet");
  return output_shape_;
}

void Layer::add_param(std::string name, Shape shape, ParamInit init) {
  Param p;
  p.name = std::move(name);
  p.shape = std::move(shape);
  p.init = init;
  params_.push_back(std::move(p));
}

std::int64_t Layer::count_params() const {
  std::int64_t n = 0;
  for (const Param& p : params_) n += shape_numel(p.shape);
  return n;
}

void Layer::declare(ParameterStore& store) {
  RECUR_CHECK(built_, Value, type(), " '", name_, "': declare() before build()");
  RECUR_CHECK(store.dtype() == dtype_, DType, type(), " '", name_, "' computes in ",
              dtype_name(dtype_), ", the parameter store holds ", dtype_name(store.dtype()));
  for (Param& p : params_) p.index = store.declare(name_ + "." + p.name, p.shape);
}

void Layer::bind(ParameterStore& store) {
  RECUR_CHECK(built_, Value, type(), " '", name_, "': bind() before build()");
  RECUR_CHECK(store.allocated(), Value, type(), " '", name_,
              "': bind() needs the parameter store allocated");
  for (const Param& p : params_)
    RECUR_CHECK(p.index < store.size() && store.name(p.index) == name_ + "." + p.name, Value,
                type(), " '", name_, "': parameter '", p.name, "' was not declared in this store");
  store_ = &store;
  on_bind();
}

Tensor Layer::value(std::size_t k) const {
  RECUR_CHECK(store_ != nullptr, Value, type(), " '", name_, "' has no parameters bound");
  RECUR_CHECK(k < params_.size(), Value, type(), " '", name_, "': no parameter ", k);
  return store_->value(params_[k].index);
}
Tensor Layer::grad(std::size_t k) const {
  RECUR_CHECK(store_ != nullptr, Value, type(), " '", name_, "' has no parameters bound");
  RECUR_CHECK(k < params_.size(), Value, type(), " '", name_, "': no parameter ", k);
  return store_->grad(params_[k].index);
}

Device Layer::device() const {
  RECUR_CHECK(store_ != nullptr, Value, type(), " '", name_, "' has no parameters bound");
  return store_->device();
}

void Layer::initialize(std::uint64_t seed) {
  for (std::size_t k = 0; k < params_.size(); ++k) {
    const Tensor v = value(k);
    const std::uint64_t s = seed + k;
    switch (params_[k].init) {
      case ParamInit::Zeros: init::zeros(v); break;
      case ParamInit::Ones: init::ones(v); break;
      case ParamInit::GlorotUniform: init::glorot_uniform(v, s); break;
      case ParamInit::Orthogonal: init::orthogonal(v, s); break;
      case ParamInit::UnitForgetBias: init::unit_forget_bias(v); break;
      case ParamInit::Uniform005: init::uniform(v, -0.05, 0.05, s); break;
    }
  }
}

Tensor Layer::forward(const Tensor& x, const Tensor& mask, bool training) {
  RECUR_CHECK(built_, Value, type(), " '", name_, "': forward() before build()");
  RECUR_CHECK(params_.empty() || store_ != nullptr, Value, type(), " '", name_,
              "': forward() before its parameters are bound");
  RECUR_CHECK(x.defined(), Value, type(), " '", name_, "': the input is an undefined tensor");
  const Shape& s = x.shape();
  bool ok = s.size() == input_shape_.size() + 1;
  for (std::size_t i = 0; ok && i < input_shape_.size(); ++i)
    ok = input_shape_[i] == kAnyDim || input_shape_[i] == s[i + 1];
  if (!ok)
    shape_error("input of shape " + shape_str(s) + " does not match the expected " +
                keras_shape_str(input_shape_));
  const DType want = float_input() ? dtype_ : DType::i32;
  RECUR_CHECK(x.dtype() == want, DType, type(), " '", name_, "': input is ", dtype_name(x.dtype()),
              ", expected ", dtype_name(want));
  if (store_ != nullptr)
    RECUR_CHECK(x.device() == store_->device(), Device, type(), " '", name_, "': input is on ",
                x.device().str(), ", the layer's parameters on ", store_->device().str());
  if (mask.defined()) {
    RECUR_CHECK(s.size() >= 2 && mask.shape() == (Shape{s[0], s[1]}), Shape, type(), " '", name_,
                "': mask of shape ", shape_str(mask.shape()), " does not match input ",
                shape_str(s), " (expected [batch, time])");
    RECUR_CHECK(mask.dtype() == dtype_ && mask.device() == x.device(), DType, type(), " '",
                name_, "': mask must be ", dtype_name(dtype_), " on ", x.device().str());
  }
  trained_forward_ = false;
  Tensor y = do_forward(x, mask, training);
  trained_forward_ = training;
  return y;
}

Tensor Layer::output_mask(const Tensor& /*x*/, const Tensor& mask) const { return mask; }

void Layer::skip_backward() {
  RECUR_CHECK(trained_forward_, Value, type(), " '", name_,
              "': skip_backward() needs a forward() with training = true first");
  RECUR_CHECK(count_params() == 0, Value, type(), " '", name_,
              "': skip_backward() on a layer with parameters (their gradients would be missing)");
  release_saved();
  trained_forward_ = false;
}

Tensor Layer::backward(const Tensor& dy, bool input_grad) {
  RECUR_CHECK(trained_forward_, Value, type(), " '", name_,
              "': backward() needs a forward() with training = true first");
  RECUR_CHECK(dy.defined() && dy.dtype() == dtype_, DType, type(), " '", name_,
              "': the output gradient must be a ", dtype_name(dtype_), " tensor");
  const Shape& s = dy.shape();
  bool ok = s.size() == output_shape_.size() + 1;
  for (std::size_t i = 0; ok && i < output_shape_.size(); ++i)
    ok = output_shape_[i] == kAnyDim || output_shape_[i] == s[i + 1];
  if (!ok)
    shape_error("output gradient of shape " + shape_str(s) + " does not match the output " +
                keras_shape_str(output_shape_));
  input_grad_ = input_grad;
  Tensor dx;
  try {
    dx = do_backward(dy);
  } catch (...) {
    input_grad_ = true;
    throw;
  }
  input_grad_ = true;
  release_saved();
  trained_forward_ = false;
  return dx;
}

}  // namespace recur
