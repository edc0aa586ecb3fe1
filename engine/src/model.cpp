// Sequential models: see model.h.
#include "recur/engine/model.h"

#include <algorithm>
#include <cctype>
#include <iomanip>
#include <set>
#include <sstream>

#include "recur/host/allocator.h"
#include "recur/host/ops.h"

namespace recur {

LossKind parse_loss(const std::string& text) {
  std::string s = text;
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  if (s == "mae" || s == "mean_absolute_error") return LossKind::MeanAbsoluteError;
  if (s == "mse" || s == "mean_squared_error") return LossKind::MeanSquaredError;
  if (s == "huber") return LossKind::Huber;
  if (s == "binary_crossentropy") return LossKind::BinaryCrossentropy;
  if (s == "sparse_categorical_crossentropy") return LossKind::SparseCategoricalCrossentropy;
  if (s == "accuracy" || s == "acc" || s == "sparse_categorical_accuracy") return LossKind::Accuracy;
  if (s == "binary_accuracy") return LossKind::BinaryAccuracy;
  RECUR_THROW(Value, "unknown loss or metric '", text,
              "' (expected mae, mse, huber, binary_crossentropy, sparse_categorical_crossentropy, "
              "accuracy or binary_accuracy)");
}

Sequential& Sequential::add(LayerPtr layer) {
  RECUR_CHECK(layer != nullptr, Value, "Sequential '", name_, "': add() of a null layer");
  RECUR_CHECK(!built(), Value, "Sequential '", name_, "': add() after build()");
  RECUR_CHECK(!layer->built(), Value, "Sequential '", name_, "': layer '", layer->name(),
              "' is already built (it belongs to another model)");
  std::set<std::string> names;
  for (const LayerPtr& l : layers_) {
    RECUR_CHECK(l != layer, Value, "Sequential '", name_, "': layer '", layer->name(), "' added twice");
    names.insert(l->name());
  }
  if (names.count(layer->name())) {  // Keras's suffixes: dense, dense_1, dense_2, ...
    const std::string base = layer->name();
    for (int k = 1;; ++k) {
      const std::string n = base + "_" + std::to_string(k);
      if (!names.count(n)) {
        layer->set_name(n);
        break;
      }
    }
  }
  layers_.push_back(std::move(layer));
  return *this;
}

void Sequential::build(const Shape& input_shape, Device device, DType dtype, std::uint64_t seed) {
  RECUR_CHECK(!built(), Value, "Sequential '", name_, "' is already built");
  RECUR_CHECK(!layers_.empty(), Value, "Sequential '", name_, "': build() with no layers");
  for (std::size_t i = 1; i < layers_.size(); ++i)
    RECUR_CHECK(layers_[i]->float_input(), Value, "Sequential '", name_, "': ", layers_[i]->type(),
                " '", layers_[i]->name(), "' takes integer ids, so it must be the first layer");
  dtype_ = dtype;
  Shape shape = input_shape;
  for (const LayerPtr& l : layers_) {
    l->build(shape, dtype);
    shape = l->output_shape();
  }
  auto store = std::make_unique<ParameterStore>(device, dtype);
  for (const LayerPtr& l : layers_) l->declare(*store);
  store->allocate();
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    // Each layer its own stream of seeds: parameters, then dropout masks.
    const std::uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1000003ull * (i + 1);
    layers_[i]->set_seed(s ^ 0x5bd1e995ull);
    layers_[i]->bind(*store);
    layers_[i]->initialize(s);
  }
  store_ = std::move(store);
}

Layer& Sequential::layer(const std::string& name) const {
  for (const LayerPtr& l : layers_)
    if (l->name() == name) return *l;
  RECUR_THROW(Value, "Sequential '", name_, "': no layer named '", name, "'");
}

const Shape& Sequential::input_shape() const {
  RECUR_CHECK(built(), Value, "Sequential '", name_, "' is not built");
  return layers_.front()->input_shape();
}
const Shape& Sequential::output_shape() const {
  RECUR_CHECK(built(), Value, "Sequential '", name_, "' is not built");
  return layers_.back()->output_shape();
}
Device Sequential::device() const { return parameters().device(); }
DType Sequential::input_dtype() const {
  return !layers_.empty() && !layers_.front()->float_input() ? DType::i32 : dtype_;
}

std::int64_t Sequential::count_params() const {
  std::int64_t n = 0;
  for (const LayerPtr& l : layers_) n += l->count_params();
  return n;
}

ParameterStore& Sequential::parameters() {
  RECUR_CHECK(built(), Value, "Sequential '", name_, "' is not built");
  return *store_;
}
const ParameterStore& Sequential::parameters() const {
  RECUR_CHECK(built(), Value, "Sequential '", name_, "' is not built");
  return *store_;
}

namespace {
double host_scalar(const Tensor& t) {
  return t.dtype() == DType::f64 ? t.to_vector<double>().at(0) : double(t.to_vector<float>().at(0));
}
std::string thousands(std::int64_t n) {
  std::string s = std::to_string(n);
  for (int i = int(s.size()) - 3; i > 0; i -= 3) s.insert(std::size_t(i), ",");
  return s;
}
std::string bytes_str(double b) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(2);
  if (b >= 1 << 30) s << b / (1 << 30) << " GB";
  else if (b >= 1 << 20) s << b / (1 << 20) << " MB";
  else if (b >= 1 << 10) s << b / (1 << 10) << " KB";
  else s << b << " B";
  return s.str();
}
}  // namespace

std::string Sequential::summary() const {
  std::ostringstream s;
  const std::string rule(78, '_'), dbl(78, '=');
  s << "Model: \"" << name_ << "\"\n" << rule << "\n";
  s << std::left << std::setw(34) << " Layer (type)" << std::setw(28) << "Output Shape"
    << std::right << std::setw(16) << "Param #" << "\n"
    << dbl << "\n";
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    const Layer& l = *layers_[i];
    const std::string shape = l.built() ? keras_shape_str(l.output_shape()) : "?";
    s << std::left << std::setw(34) << (" " + l.name() + " (" + l.type() + ")") << std::setw(28)
      << shape << std::right << std::setw(16) << thousands(l.count_params()) << "\n";
    s << (i + 1 < layers_.size() ? std::string(78, ' ') : dbl) << "\n";
  }
  const std::int64_t n = count_params();
  const double bytes = double(n) * double(dtype_size(dtype_));
  s << "Total params: " << thousands(n) << " (" << bytes_str(bytes) << ")\n"
    << "Trainable params: " << thousands(n) << " (" << bytes_str(bytes) << ")\n"
    << "Non-trainable params: 0 (0.00 B)\n"
    << rule << "\n";
  return s.str();
}

Sequential::Output Sequential::forward(const Tensor& x, const Tensor& mask, bool training) {
  RECUR_CHECK(built(), Value, "Sequential '", name_, "': forward() before build()");
  Output o{x, mask};
  for (const LayerPtr& l : layers_) {
    Tensor y = l->forward(o.y, o.mask, training);
    o.mask = l->output_mask(o.y, o.mask);
    o.y = y;
  }
  return o;
}

void Sequential::backward(const Tensor& dy) {
  Tensor d = dy;
  for (auto it = layers_.rbegin(); it != layers_.rend(); ++it) {
    d = (*it)->backward(d);
    if (!d.defined()) break;  // the input has no gradient (token ids)
  }
}

void Sequential::reset_states() {
  for (const LayerPtr& l : layers_) l->reset_states();
}

void Sequential::compile(const CompileOptions& options) {
  RECUR_CHECK(built(), Value, "Sequential '", name_, "': compile() before build()");
  RECUR_CHECK(options.loss != LossKind::Accuracy && options.loss != LossKind::BinaryAccuracy, Value,
              "Sequential '", name_, "': ", loss_name(options.loss),
              " is a metric, not a loss (it has no gradient)");
  compile_ = std::make_unique<CompileOptions>(options);
  optimizer_ = std::make_unique<Optimizer>(options.optimizer, *store_);
}

const CompileOptions& Sequential::compile_options() const {
  RECUR_CHECK(compile_ != nullptr, Value, "Sequential '", name_, "' is not compiled");
  return *compile_;
}

Optimizer& Sequential::optimizer() {
  RECUR_CHECK(optimizer_ != nullptr, Value, "Sequential '", name_, "' is not compiled");
  return *optimizer_;
}
const Optimizer& Sequential::optimizer() const {
  RECUR_CHECK(optimizer_ != nullptr, Value, "Sequential '", name_, "' is not compiled");
  return *optimizer_;
}

Tensor Sequential::shaped_target(const Tensor& y, const Tensor& pred) const {
  RECUR_CHECK(y.defined(), Value, "Sequential '", name_, "': the target is an undefined tensor");
  RECUR_CHECK(y.device() == pred.device(), Device, "Sequential '", name_, "': target on ",
              y.device().str(), ", model on ", pred.device().str());
  RECUR_CHECK(y.dim(0) == pred.dim(0), Shape, "Sequential '", name_, "': target batch ", y.dim(0),
              " != input batch ", pred.dim(0));
  return y;
}

// The loss weight: the output mask, if the output is a sequence it covers,
// times any sample weight, as [B] or [B, T].
Tensor Sequential::loss_weight(const Output& out, const Tensor& sample_weight, const Tensor& y) const {
  (void)y;
  Tensor w;
  if (out.mask.defined() && out.y.ndim() == 3) w = out.mask;
  if (sample_weight.defined()) {
    RECUR_CHECK(sample_weight.dtype() == dtype_ && sample_weight.device() == out.y.device(), DType,
                "Sequential '", name_, "': sample_weight must be ", dtype_name(dtype_), " on ",
                out.y.device().str());
    RECUR_CHECK(sample_weight.dim(0) == out.y.dim(0), Shape, "Sequential '", name_,
                "': sample_weight has ", sample_weight.dim(0), " rows for a batch of ", out.y.dim(0));
    if (!w.defined()) {
      w = sample_weight;
    } else if (sample_weight.shape() == w.shape()) {
      w = ops::mul(w, sample_weight);
    } else {  // per-sample weight over a per-step mask: [T, B] * [B] broadcasts
      RECUR_CHECK(sample_weight.ndim() == 1, Shape, "Sequential '", name_, "': sample_weight ",
                  shape_str(sample_weight.shape()), " fits neither [batch] nor the mask ",
                  shape_str(w.shape()));
      w = ops::transpose01(ops::mul(ops::transpose01(w), sample_weight));
    }
  }
  // A per-sample weight [B] over a per-step output [B, T, C] counts per row [B, T].
  if (w.defined() && out.y.ndim() == 3 && w.ndim() == 1)
    w = ops::transpose01(ops::mul(Tensor::full({out.y.dim(1), out.y.dim(0)}, 1.0, dtype_, out.y.device()), w));
  return w;
}

Sequential::Logs Sequential::run_batch(const Tensor& x, const Tensor& y, const Tensor& mask,
                                       const Tensor& sample_weight, bool train) {
  RECUR_CHECK(compiled(), Value, "Sequential '", name_, "': compile() before training or evaluating");
  const CompileOptions& c = *compile_;
  CachingAllocator& allocator = backend(store_->device()).allocator();
  allocator.reset_peak();
  const std::size_t in_use_before = allocator.stats().in_use;
  if (train) store_->zero_grads();
  const Output out = forward(x, mask, train);
  Tensor target = shaped_target(y, out.y);
  const bool sparse = c.loss == LossKind::SparseCategoricalCrossentropy;
  if (!sparse && target.numel() == out.y.numel() && target.shape() != out.y.shape())
    target = target.reshape(out.y.shape());
  const Tensor w = loss_weight(out, sample_weight, y);
  Tensor grad = Tensor::empty(out.y.shape(), dtype_, out.y.device());
  const Tensor loss = ops::loss(c.loss, out.y, target, grad, w, c.huber_delta);
  std::vector<Tensor> metric_values;
  for (LossKind m : c.metrics) {
    // Accuracy compares against class ids (int32); the other metrics against
    // the target in the prediction's shape.
    const bool ids = m == LossKind::Accuracy || m == LossKind::SparseCategoricalCrossentropy;
    metric_values.push_back(ops::metric(m, out.y, ids ? y : target, w));
  }
  if (train) {
    backward(grad);
    optimizer_->step();
  }
  Logs logs;
  logs.loss = host_scalar(loss);
  for (const Tensor& m : metric_values) logs.metrics.push_back(host_scalar(m));
  last_weight_ = double(x.dim(0));
  last_peak_ = allocator.stats().peak_in_use;
  last_working_ = last_peak_ > in_use_before ? last_peak_ - in_use_before : 0;
  return logs;
}

Sequential::Logs Sequential::train_on_batch(const Tensor& x, const Tensor& y, const Tensor& mask,
                                            const Tensor& sample_weight) {
  return run_batch(x, y, mask, sample_weight, true);
}

Sequential::Logs Sequential::test_on_batch(const Tensor& x, const Tensor& y, const Tensor& mask,
                                           const Tensor& sample_weight) {
  return run_batch(x, y, mask, sample_weight, false);
}

}  // namespace recur
