// Sequential models: see model.h.
#include "recur/engine/model.h"

#include <algorithm>
#include <cctype>
#include <iomanip>
#include <iterator>
#include <set>
#include <sstream>

#include "model_detail.h"
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
  // Keras's suffixes: dense, dense_1, dense_2, ...
  if (names.count(layer->name())) layer->set_name(detail::unique_name(names, layer->name()));
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
  store_ = detail::make_parameters(layers_, device, dtype, seed);
  arena_device_ = device;
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

Tensor TrainableModel::scaled_loss_grad(const Tensor& grad) const {
  if (hook_ == nullptr) return grad;
  const double s = hook_->loss_scale();
  if (s == 1.0) return grad;
  return ops::mul(grad, Tensor::full(grad.shape(), s, grad.dtype(), grad.device()));
}

void TrainableModel::train_step_without_data() {
  RECUR_CHECK(compiled(), Value, "train_step_without_data: compile the model first");
  parameters().zero_grads();
  if (hook_ != nullptr) hook_->on_backward_begin();
  if (hook_ != nullptr) hook_->on_backward_end();
  optimizer().step();
}

TrainableModel::~TrainableModel() {
  try {
    backend(arena_device_).allocator().drop_arenas(region_owner_);
  } catch (...) {  // no backend for the device: nothing was planned on it
  }
}

namespace detail {

std::string unique_name(const std::set<std::string>& taken, const std::string& base) {
  if (!taken.count(base)) return base;
  for (int k = 1;; ++k) {
    std::string n = base + "_" + std::to_string(k);
    if (!taken.count(n)) return n;
  }
}

std::unique_ptr<ParameterStore> make_parameters(const std::vector<LayerPtr>& layers, Device device,
                                                DType dtype, std::uint64_t seed) {
  auto store = std::make_unique<ParameterStore>(device, dtype);
  for (const LayerPtr& l : layers) l->declare(*store);
  store->allocate();
  for (std::size_t i = 0; i < layers.size(); ++i) {
    // Each layer its own stream of seeds: parameters, then dropout masks.
    const std::uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1000003ull * (i + 1);
    layers[i]->set_seed(s ^ 0x5bd1e995ull);
    layers[i]->bind(*store);
    layers[i]->initialize(s);
  }
  return store;
}

namespace {
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

StepScope::StepScope(Device device, std::uint64_t owner, bool train,
                     std::initializer_list<const Tensor*> tensors, const std::vector<Tensor>& more,
                     TrainableModel::StepMemory& out, TrainableModel::StepMemory& train_out)
    : allocator_(backend(device).allocator()), out_(out), train_out_(train ? &train_out : nullptr) {
  // FNV-1a over what decides the step's allocations.
  std::uint64_t h = 1469598103934665603ull;
  auto mix = [&](std::uint64_t v) {
    h ^= v;
    h *= 1099511628211ull;
  };
  mix(train ? 1 : 2);
  auto add = [&](const Tensor& t) {
    mix(t.defined() ? 0x100u + unsigned(t.dtype()) : 0);
    if (!t.defined()) return;
    mix(std::uint64_t(t.ndim()));
    for (std::int64_t d : t.shape()) mix(std::uint64_t(d));
  };
  for (const Tensor* t : tensors) add(*t);
  for (const Tensor& t : more) add(t);
  allocator_.reset_peak();
  in_use_before_ = allocator_.stats().in_use;
  replayed_before_ = allocator_.arena_stats().regions_replayed;
  allocator_.begin_region(owner, h);
}

StepScope::~StepScope() {
  allocator_.end_region();
  const AllocatorStats s = allocator_.stats();
  const ArenaStats a = allocator_.arena_stats();
  out_.peak = s.peak_in_use;
  out_.working = s.peak_in_use > in_use_before_ ? s.peak_in_use - in_use_before_ : 0;
  const bool replayed = a.regions_replayed > replayed_before_;
  out_.arena = replayed ? a.last_arena : 0;
  out_.live = replayed ? a.last_live_peak : 0;
  if (train_out_) *train_out_ = out_;
}

std::vector<std::string> wrap_cell(const std::string& text, std::size_t width) {
  std::vector<std::string> lines;
  std::string line;
  std::istringstream words(text);
  std::string w;
  while (words >> w) {
    while (w.size() > width) {  // a word longer than the cell: hard breaks
      if (!line.empty()) lines.push_back(std::move(line)), line.clear();
      lines.push_back(w.substr(0, width));
      w.erase(0, width);
    }
    if (line.empty()) {
      line = w;
    } else if (line.size() + 1 + w.size() <= width) {
      line += " " + w;
    } else {
      lines.push_back(std::move(line));
      line = w;
    }
  }
  if (!line.empty() || lines.empty()) lines.push_back(line);
  return lines;
}

std::string thousands(std::int64_t n) {
  std::string s = std::to_string(n);
  for (int i = int(s.size()) - 3; i > 0; i -= 3) s.insert(std::size_t(i), ",");
  return s;
}

std::string param_totals(std::int64_t n, DType dtype) {
  std::ostringstream s;
  const double bytes = double(n) * double(dtype_size(dtype));
  s << "Total params: " << thousands(n) << " (" << bytes_str(bytes) << ")\n"
    << "Trainable params: " << thousands(n) << " (" << bytes_str(bytes) << ")\n"
    << "Non-trainable params: 0 (0.00 B)\n";
  return s.str();
}

}  // namespace detail

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
    const std::vector<std::string> cell = detail::wrap_cell(l.name() + " (" + l.type() + ")", 32);
    s << std::left << std::setw(34) << (" " + cell[0]) << std::setw(28) << shape << std::right << std::setw(16)
      << detail::thousands(l.count_params()) << "\n";
    for (std::size_t k = 1; k < cell.size(); ++k) s << " " << cell[k] << "\n";
    s << (i + 1 < layers_.size() ? std::string(78, ' ') : dbl) << "\n";
  }
  s << detail::param_totals(count_params(), dtype_) << rule << "\n";
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
  // Nobody reads the gradient of the model's input, so nobody needs dx below
  // the lowest layer with parameters: that layer skips computing it (a GEMM
  // for Dense, Conv1D and the recurrent layers), and the parameter-free
  // layers under it (Flatten, Dropout, Masking) skip their backward.
  std::size_t first = layers_.size();
  for (std::size_t i = 0; i < layers_.size(); ++i)
    if (layers_[i]->count_params() > 0) {
      first = i;
      break;
    }
  Tensor d = dy;
  for (std::size_t k = layers_.size(); k-- > first;) {
    Layer& l = *layers_[k];
    d = l.backward(d, k > first);
    if (hook_ != nullptr) hook_->on_layer_backward(l);
    if (!d.defined()) break;  // the input has no gradient (token ids)
  }
  for (std::size_t k = first; k-- > 0;) layers_[k]->skip_backward();
}

void Sequential::reset_states() {
  for (const LayerPtr& l : layers_) l->reset_states();
}

void Sequential::compile(const CompileOptions& options) {
  RECUR_CHECK(built(), Value, "Sequential '", name_, "': compile() before build()");
  detail::check_compile_options(who(), options);
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

std::string Sequential::who() const { return "Sequential '" + name_ + "'"; }

namespace detail {

void check_compile_options(const std::string& who, const CompileOptions& options) {
  RECUR_CHECK(options.loss != LossKind::Accuracy && options.loss != LossKind::BinaryAccuracy, Value,
              who, ": ", loss_name(options.loss), " is a metric, not a loss (it has no gradient)");
}

namespace {

void check_target(const std::string& who, const Tensor& y, const Tensor& pred) {
  RECUR_CHECK(y.defined(), Value, who, ": the target is an undefined tensor");
  RECUR_CHECK(y.device() == pred.device(), Device, who, ": target on ", y.device().str(),
              ", model on ", pred.device().str());
  RECUR_CHECK(y.dim(0) == pred.dim(0), Shape, who, ": target batch ", y.dim(0), " != input batch ",
              pred.dim(0));
}

// The loss weight: the output mask, if the output is a sequence it covers,
// times any sample weight, as [B] or [B, T].
Tensor loss_weight(const std::string& who, DType dtype, const Tensor& pred, const Tensor& pred_mask,
                   const Tensor& sample_weight) {
  Tensor w;
  if (pred_mask.defined() && pred.ndim() == 3) w = pred_mask;
  if (sample_weight.defined()) {
    RECUR_CHECK(sample_weight.dtype() == dtype && sample_weight.device() == pred.device(), DType,
                who, ": sample_weight must be ", dtype_name(dtype), " on ", pred.device().str());
    RECUR_CHECK(sample_weight.dim(0) == pred.dim(0), Shape, who, ": sample_weight has ",
                sample_weight.dim(0), " rows for a batch of ", pred.dim(0));
    if (!w.defined()) {
      w = sample_weight;
    } else if (sample_weight.shape() == w.shape()) {
      w = ops::mul(w, sample_weight);
    } else {  // per-sample weight over a per-step mask: [T, B] * [B] broadcasts
      RECUR_CHECK(sample_weight.ndim() == 1, Shape, who, ": sample_weight ",
                  shape_str(sample_weight.shape()), " fits neither [batch] nor the mask ",
                  shape_str(w.shape()));
      w = ops::transpose01(ops::mul(ops::transpose01(w), sample_weight));
    }
  }
  // A per-sample weight [B] over a per-step output [B, T, C] counts per row [B, T].
  if (w.defined() && pred.ndim() == 3 && w.ndim() == 1)
    w = ops::transpose01(ops::mul(Tensor::full({pred.dim(1), pred.dim(0)}, 1.0, dtype, pred.device()), w));
  return w;
}

}  // namespace

BatchLoss batch_loss(const std::string& who, const CompileOptions& c, DType dtype, const Tensor& pred,
                     const Tensor& pred_mask, const Tensor& y, const Tensor& sample_weight) {
  check_target(who, y, pred);
  Tensor target = y;
  const bool sparse = c.loss == LossKind::SparseCategoricalCrossentropy;
  if (!sparse && target.numel() == pred.numel() && target.shape() != pred.shape())
    target = target.reshape(pred.shape());
  const Tensor w = loss_weight(who, dtype, pred, pred_mask, sample_weight);
  BatchLoss out;
  out.grad = Tensor::empty(pred.shape(), dtype, pred.device());
  out.loss = ops::loss(c.loss, pred, target, out.grad, w, c.huber_delta);
  for (LossKind m : c.metrics) {
    // Accuracy compares against class ids (int32); the other metrics against
    // the target in the prediction's shape.
    const bool ids = m == LossKind::Accuracy || m == LossKind::SparseCategoricalCrossentropy;
    out.metrics.push_back(ops::metric(m, pred, ids ? y : target, w));
  }
  return out;
}

PendingBatchLogs read_logs_async(const BatchLoss& loss) {
  std::vector<Tensor> values{loss.loss.reshape({1})};
  for (const Tensor& m : loss.metrics) values.push_back(m.reshape({1}));
  return PendingBatchLogs(std::shared_ptr<HostRead>(ops::read_async(values)));
}

}  // namespace detail

PendingBatchLogs Sequential::run_batch(const Tensor& x, const Tensor& y, const Tensor& mask,
                                       const Tensor& sample_weight, bool train) {
  RECUR_CHECK(compiled(), Value, "Sequential '", name_, "': compile() before training or evaluating");
  const detail::StepScope scope(store_->device(), region_owner(), train, {&x, &y, &mask, &sample_weight}, {},
                                step_memory_, train_step_memory_);
  if (train) store_->zero_grads();
  const Output out = forward(x, mask, train);
  const detail::BatchLoss l =
      detail::batch_loss(who(), *compile_, dtype_, out.y, out.mask, y, sample_weight);
  if (train) {
    if (hook_ != nullptr) hook_->on_backward_begin();
    backward(scaled_loss_grad(l.grad));
    if (hook_ != nullptr) hook_->on_backward_end();
    optimizer_->step();
  }
  last_weight_ = double(x.dim(0));
  return detail::read_logs_async(l);
}

Sequential::Logs Sequential::train_on_batch(const Tensor& x, const Tensor& y, const Tensor& mask,
                                            const Tensor& sample_weight) {
  return run_batch(x, y, mask, sample_weight, true).read();
}

Sequential::Logs Sequential::test_on_batch(const Tensor& x, const Tensor& y, const Tensor& mask,
                                           const Tensor& sample_weight) {
  return run_batch(x, y, mask, sample_weight, false).read();
}

namespace {
const Tensor& single_input(const std::string& who, const std::vector<Tensor>& x, const std::vector<Tensor>& masks) {
  RECUR_CHECK(x.size() == 1 && masks.size() <= 1, Value, who, " has one input; got ", x.size(), " inputs and ",
              masks.size(), " masks");
  return x[0];
}
}  // namespace

PendingBatchLogs Sequential::train_step_async(const std::vector<Tensor>& x, const Tensor& y,
                                              const std::vector<Tensor>& masks, const Tensor& sample_weight) {
  const Tensor& in = single_input(who(), x, masks);
  return run_batch(in, y, masks.empty() ? Tensor() : masks[0], sample_weight, true);
}

PendingBatchLogs Sequential::test_step_async(const std::vector<Tensor>& x, const Tensor& y,
                                             const std::vector<Tensor>& masks, const Tensor& sample_weight) {
  const Tensor& in = single_input(who(), x, masks);
  return run_batch(in, y, masks.empty() ? Tensor() : masks[0], sample_weight, false);
}

const BatchLogs& PendingBatchLogs::read() {
  RECUR_CHECK(valid(), Value, "PendingBatchLogs: nothing to read (a default-constructed value)");
  if (!ready_) {
    const std::vector<double>& v = values_->wait();
    RECUR_CHECK(!v.empty(), Internal, "PendingBatchLogs: the read returned no values");
    logs_.loss = v[0];
    logs_.metrics.assign(v.begin() + 1, v.end());
    ready_ = true;
    values_.reset();
  }
  return logs_;
}

}  // namespace recur
