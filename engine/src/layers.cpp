// Keras's layers on recur's ops: see layers.h.
#include "recur/engine/layers.h"

#include <algorithm>
#include <cctype>
#include <sstream>

namespace recur {

namespace {

void add_into(const Tensor& acc, const Tensor& v) { ops::binary(BinaryOp::Add, acc, v, acc); }

std::string or_default(std::string name, const char* fallback) {
  return name.empty() ? std::string(fallback) : name;
}

// [d0, d1, ...] -> [d0 * ... * d(n-2), d(n-1)].
Tensor as_rows(const Tensor& x) { return x.reshape({-1, x.dim(-1)}); }

Shape with_last(Shape s, std::int64_t last) {
  s.back() = last;
  return s;
}

const char* padding_name(ops::PoolPadding p) { return p == ops::PoolPadding::Valid ? "valid" : "same"; }

}  // namespace

Activation parse_activation(const std::string& text) {
  std::string s = text;
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  if (s.empty() || s == "none" || s == "linear") return Activation::Linear;
  if (s == "relu") return Activation::Relu;
  if (s == "tanh") return Activation::Tanh;
  if (s == "sigmoid") return Activation::Sigmoid;
  if (s == "softmax") return Activation::Softmax;
  RECUR_THROW(Value, "unknown activation '", text, "' (expected relu, tanh, sigmoid, softmax or linear)");
}

// ---- Dense ------------------------------------------------------------------------
Dense::Dense(std::int64_t units, Activation activation, bool use_bias, std::string name)
    : Layer(or_default(std::move(name), "dense")), units_(units), act_(activation), use_bias_(use_bias) {
  RECUR_CHECK(units > 0, Value, "Dense: units must be positive, got ", units);
}

std::string Dense::config_str() const {
  return "units=" + std::to_string(units_) + ", activation=" + activation_name(act_);
}

Shape Dense::do_build(const Shape& in) {
  if (in.empty()) shape_error("needs at least one feature axis, got input " + keras_shape_str(in));
  if (in.back() == kAnyDim) shape_error("the last input axis must be known, got " + keras_shape_str(in));
  add_param("weight", {units_, in.back()}, ParamInit::GlorotUniform);
  if (use_bias_) add_param("bias", {units_}, ParamInit::Zeros);
  return with_last(in, units_);
}

Tensor Dense::do_forward(const Tensor& x, const Tensor& /*mask*/, bool training) {
  const Tensor x2 = as_rows(x);
  Tensor y = ops::matmul(x2, value(0), false, true);  // [N, in] x [units, in]^T
  if (use_bias_) ops::binary(BinaryOp::Add, y, value(1), y);
  if (act_ != Activation::Linear) y = ops::activation_forward(act_, y);
  if (training) {
    x2_ = x2;
    y_ = y;
  }
  return y.reshape(with_last(x.shape(), units_));
}

Tensor Dense::do_backward(const Tensor& dy) {
  Tensor dz = as_rows(dy);
  if (act_ != Activation::Linear) dz = ops::activation_backward(act_, y_, dz);
  ops::gemm(dz, x2_, grad(0), true, false, 1.0, 1.0);  // [units, N] x [N, in]
  if (use_bias_) add_into(grad(1), ops::sum(dz, 0));
  if (!input_grad_wanted()) return {};
  Tensor dx = ops::matmul(dz, value(0));  // [N, units] x [units, in]
  return dx.reshape(with_last(dy.shape(), x2_.dim(1)));
}

// ---- Activation -------------------------------------------------------------------
ActivationLayer::ActivationLayer(Activation activation, std::string name)
    : Layer(or_default(std::move(name), "activation")), act_(activation) {}

std::string ActivationLayer::config_str() const { return std::string("activation=") + activation_name(act_); }

Tensor ActivationLayer::do_forward(const Tensor& x, const Tensor& /*mask*/, bool training) {
  Tensor y = ops::activation_forward(act_, x);
  if (training) y_ = y;
  return y;
}

Tensor ActivationLayer::do_backward(const Tensor& dy) { return ops::activation_backward(act_, y_, dy); }

// ---- Flatten ------------------------------------------------------------------------
Shape Flatten::do_build(const Shape& in) {
  std::int64_t n = 1;
  for (std::int64_t d : in) {
    if (d == kAnyDim) {
      shape_error("needs every non-batch axis known, got input " + keras_shape_str(in));
    }
    n *= d;
  }
  return {n};
}

Tensor Flatten::do_forward(const Tensor& x, const Tensor& /*mask*/, bool training) {
  if (training) x_shape_ = x.shape();
  return x.reshape({x.dim(0), -1});
}

Tensor Flatten::do_backward(const Tensor& dy) { return dy.reshape(x_shape_); }

// ---- Dropout ------------------------------------------------------------------------
Dropout::Dropout(double rate, std::uint64_t seed, std::string name)
    : Layer(or_default(std::move(name), "dropout")), rate_(rate), seed_(seed) {
  RECUR_CHECK(rate >= 0 && rate < 1, Value, "Dropout: rate must be in [0, 1), got ", rate);
}

std::string Dropout::config_str() const {
  std::ostringstream s;
  s << "rate=" << rate_;
  return s.str();
}

Tensor Dropout::do_forward(const Tensor& x, const Tensor& /*mask*/, bool training) {
  mask_ = Tensor();
  if (!training || rate_ == 0) return x;
  // A fresh mask per call, repeatable from the seed.
  ops::DropoutResult r =
      ops::dropout_forward(x, rate_, seed_ + 0x9e3779b97f4a7c15ull * ++calls_, true);
  mask_ = r.mask;
  return r.y;
}

void Dropout::set_rng_state(const std::vector<std::uint64_t>& s) {
  RECUR_CHECK(s.size() == 2, Value, "Dropout '", name(), "': RNG state has ", s.size(),
              " values, expected 2");
  seed_ = s[0];
  calls_ = s[1];
}

Tensor Dropout::do_backward(const Tensor& dy) {
  return mask_.defined() ? ops::dropout_backward(dy, mask_) : dy;
}

// ---- Embedding ----------------------------------------------------------------------
Embedding::Embedding(std::int64_t input_dim, std::int64_t output_dim, bool mask_zero,
                     std::int64_t input_length, std::string name)
    : Layer(or_default(std::move(name), "embedding")),
      input_dim_(input_dim),
      output_dim_(output_dim),
      input_length_(input_length),
      mask_zero_(mask_zero) {
  RECUR_CHECK(input_dim > 0 && output_dim > 0, Value,
              "Embedding: input_dim and output_dim must be positive, got ", input_dim, " and ",
              output_dim);
  RECUR_CHECK(input_length >= 0, Value, "Embedding: input_length must be >= 0, got ", input_length);
}

std::string Embedding::config_str() const {
  return "input_dim=" + std::to_string(input_dim_) + ", output_dim=" + std::to_string(output_dim_) +
         (mask_zero_ ? ", mask_zero" : "");
}

Shape Embedding::do_build(const Shape& in) {
  if (in.size() != 1) shape_error("input must be token ids [batch, time], got " + keras_shape_str(in));
  std::int64_t T = in[0];
  if (input_length_ > 0) {
    if (T != kAnyDim && T != input_length_)
      shape_error("input_length " + std::to_string(input_length_) + " disagrees with input " +
                  keras_shape_str(in));
    T = input_length_;
  }
  add_param("weight", {input_dim_, output_dim_}, ParamInit::Uniform005);
  return {T, output_dim_};
}

Tensor Embedding::do_forward(const Tensor& ids, const Tensor& /*mask*/, bool training) {
  if (training) ids_ = ids;
  return ops::embedding_forward(value(0), ids);
}

Tensor Embedding::output_mask(const Tensor& ids, const Tensor& /*mask*/) const {
  return mask_zero_ ? ops::embedding_mask(ids, dtype()) : Tensor();
}

Tensor Embedding::do_backward(const Tensor& dy) {
  ops::embedding_backward(ids_, dy, grad(0));
  return {};
}

// ---- Conv1D -------------------------------------------------------------------------
Conv1D::Conv1D(const Conv1DOptions& options, std::string name)
    : Layer(or_default(std::move(name), "conv1d")), o_(options) {
  RECUR_CHECK(o_.filters > 0 && o_.kernel_size > 0 && o_.strides > 0 && o_.dilation_rate > 0 &&
                  o_.groups > 0, Value,
              "Conv1D: filters, kernel_size, strides, dilation_rate and groups must be positive, got ",
              o_.filters, ", ", o_.kernel_size, ", ", o_.strides, ", ", o_.dilation_rate, ", ", o_.groups);
  RECUR_CHECK(o_.strides == 1 || o_.dilation_rate == 1, Value,
              "Conv1D: strides > 1 with dilation_rate > 1 is not supported (as Keras)");
  RECUR_CHECK(o_.filters % o_.groups == 0, Value, "Conv1D: filters (", o_.filters,
              ") must be a multiple of groups (", o_.groups, ")");
}

Conv1D::Conv1D(std::int64_t filters, std::int64_t kernel_size, Activation activation, std::string name)
    : Conv1D(Conv1DOptions{filters, kernel_size, 1, Conv1dPadding::Valid, 1, 1, activation, true},
             std::move(name)) {}

Conv1dOptions Conv1D::conv_options() const {
  Conv1dOptions c;
  c.kernel_size = o_.kernel_size;
  c.stride = o_.strides;
  c.dilation = o_.dilation_rate;
  c.groups = o_.groups;
  c.padding = o_.padding;
  return c;
}

std::string Conv1D::config_str() const {
  std::ostringstream s;
  s << "filters=" << o_.filters << ", kernel_size=" << o_.kernel_size;
  if (o_.strides != 1) s << ", strides=" << o_.strides;
  if (o_.padding != Conv1dPadding::Valid) s << ", padding=" << conv1d_padding_name(o_.padding);
  if (o_.dilation_rate != 1) s << ", dilation_rate=" << o_.dilation_rate;
  if (o_.groups != 1) s << ", groups=" << o_.groups;
  s << ", activation=" << activation_name(o_.activation);
  return s.str();
}

Shape Conv1D::do_build(const Shape& in) {
  if (in.size() != 2) shape_error("input must be [batch, time, channels], got " + keras_shape_str(in));
  const std::int64_t T = in[0], C = in[1];
  if (C == kAnyDim) shape_error("the channel axis must be known, got " + keras_shape_str(in));
  if (C % o_.groups != 0)
    shape_error(std::to_string(C) + " input channels are not a multiple of groups = " +
                std::to_string(o_.groups));
  std::int64_t T_out = kAnyDim;
  if (T != kAnyDim) {
    const std::int64_t span = o_.dilation_rate * (o_.kernel_size - 1) + 1;
    if (o_.padding == Conv1dPadding::Valid && span > T)
      shape_error("kernel span " + std::to_string(span) + " exceeds the " + std::to_string(T) +
                  " input steps with padding 'valid'");
    T_out = conv1d_shape(T, conv_options()).T_out;
  }
  add_param("weight", {o_.filters, C / o_.groups, o_.kernel_size}, ParamInit::GlorotUniform);
  if (o_.use_bias) add_param("bias", {o_.filters}, ParamInit::Zeros);
  return {T_out, o_.filters};
}

Tensor Conv1D::do_forward(const Tensor& x, const Tensor& /*mask*/, bool training) {
  const std::int64_t span = o_.dilation_rate * (o_.kernel_size - 1) + 1;
  if (o_.padding == Conv1dPadding::Valid && span > x.dim(1))
    shape_error("kernel span " + std::to_string(span) + " exceeds the " + std::to_string(x.dim(1)) +
                " input steps with padding 'valid'");
  Tensor cols;
  Tensor y = ops::conv1d(x, value(0), o_.use_bias ? value(1) : Tensor(), conv_options(),
                         training ? &cols : nullptr);
  if (o_.activation != Activation::Linear) y = ops::activation_forward(o_.activation, y);
  if (training) {
    x_ = x;
    cols_ = cols;
    y_ = y;
  }
  return y;
}

Tensor Conv1D::do_backward(const Tensor& dy) {
  Tensor dz = dy;
  if (o_.activation != Activation::Linear) dz = ops::activation_backward(o_.activation, y_, dy);
  ops::Conv1dGrads g = ops::conv1d_backward(x_, value(0), dz, conv_options(), cols_, input_grad_wanted());
  add_into(grad(0), g.dw);
  if (o_.use_bias) add_into(grad(1), g.db);
  return g.dx;
}

// ---- pooling ------------------------------------------------------------------------
Pooling1D::Pooling1D(const ops::Pool1dOptions& options, std::string name)
    : Layer(or_default(std::move(name),
                       options.kind == PoolKind::Max ? "max_pooling1d" : "average_pooling1d")),
      o_(options) {
  RECUR_CHECK(o_.pool_size > 0 && o_.strides >= 0, Value, type(),
              ": pool_size must be positive and strides >= 0 (0: pool_size), got ", o_.pool_size,
              " and ", o_.strides);
}

const char* Pooling1D::type() const {
  return o_.kind == PoolKind::Max ? "MaxPooling1D" : "AveragePooling1D";
}

std::string Pooling1D::config_str() const {
  return "pool_size=" + std::to_string(o_.pool_size) +
         ", strides=" + std::to_string(o_.strides ? o_.strides : o_.pool_size) +
         ", padding=" + padding_name(o_.padding);
}

Shape Pooling1D::do_build(const Shape& in) {
  if (in.size() != 2) shape_error("input must be [batch, time, channels], got " + keras_shape_str(in));
  const std::int64_t T = in[0];
  if (T != kAnyDim && o_.padding == ops::PoolPadding::Valid && T < o_.pool_size)
    shape_error("pool_size " + std::to_string(o_.pool_size) + " exceeds the " + std::to_string(T) +
                " input steps with padding 'valid'");
  return {T == kAnyDim ? kAnyDim : ops::pool1d_output_length(T, o_), in[1]};
}

Tensor Pooling1D::do_forward(const Tensor& x, const Tensor& mask, bool training) {
  ops::PoolResult r = ops::pool1d_forward(x, o_, mask);
  if (training) {
    T_ = x.dim(1);
    mask_ = mask;
    argmax_ = r.argmax;
  }
  return r.y;
}

Tensor Pooling1D::do_backward(const Tensor& dy) { return ops::pool1d_backward(dy, T_, o_, mask_, argmax_); }

std::shared_ptr<Pooling1D> MaxPooling1D(std::int64_t pool_size, std::int64_t strides,
                                        ops::PoolPadding padding) {
  return std::make_shared<Pooling1D>(ops::Pool1dOptions{PoolKind::Max, pool_size, strides, padding});
}
std::shared_ptr<Pooling1D> AveragePooling1D(std::int64_t pool_size, std::int64_t strides,
                                            ops::PoolPadding padding) {
  return std::make_shared<Pooling1D>(ops::Pool1dOptions{PoolKind::Average, pool_size, strides, padding});
}

GlobalPooling1D::GlobalPooling1D(PoolKind kind, std::string name)
    : Layer(or_default(std::move(name), kind == PoolKind::Max ? "global_max_pooling1d"
                                                              : "global_average_pooling1d")),
      kind_(kind) {}

const char* GlobalPooling1D::type() const {
  return kind_ == PoolKind::Max ? "GlobalMaxPooling1D" : "GlobalAveragePooling1D";
}

Shape GlobalPooling1D::do_build(const Shape& in) {
  if (in.size() != 2) shape_error("input must be [batch, time, channels], got " + keras_shape_str(in));
  return {in[1]};
}

Tensor GlobalPooling1D::do_forward(const Tensor& x, const Tensor& mask, bool training) {
  ops::PoolResult r = ops::global_pool1d_forward(kind_, x, mask);
  if (training) {
    T_ = x.dim(1);
    mask_ = mask;
    argmax_ = r.argmax;
  }
  return r.y;
}

Tensor GlobalPooling1D::do_backward(const Tensor& dy) {
  return ops::global_pool1d_backward(kind_, dy, T_, mask_, argmax_);
}

// ---- recurrent ----------------------------------------------------------------------
bool has_recurrent_bias(const RecurrentOptions& o) {
  return o.use_bias && o.cell == CellType::GRU && o.reset_after;
}

namespace {

const char* rnn_default_name(CellType c) {
  return c == CellType::LSTM ? "lstm" : c == CellType::GRU ? "gru" : "simple_rnn";
}

std::string recurrent_config(const RecurrentOptions& o) {
  std::ostringstream s;
  s << "units=" << o.units;
  if (o.return_sequences) s << ", return_sequences";
  if (o.go_backwards) s << ", go_backwards";
  if (o.stateful) s << ", stateful";
  if (o.dropout > 0) s << ", dropout=" << o.dropout;
  if (o.recurrent_dropout > 0) s << ", recurrent_dropout=" << o.recurrent_dropout;
  if (o.cell == CellType::GRU && !o.reset_after) s << ", reset_after=False";
  return s.str();
}

// Keras's initializers, PyTorch's names: appended to `layer` through `add`.
template <class Add>
void add_recurrent_params(const RecurrentOptions& o, const std::string& suffix, Add add) {
  const std::int64_t G = cell_gates(o.cell) * o.units;
  add("weight_ih_l0" + suffix, Shape{G, o.input_size}, ParamInit::GlorotUniform);
  add("weight_hh_l0" + suffix, Shape{G, o.units}, ParamInit::Orthogonal);
  if (o.use_bias) {
    const bool forget = o.cell == CellType::LSTM && o.unit_forget_bias;
    add("bias_ih_l0" + suffix, Shape{G}, forget ? ParamInit::UnitForgetBias : ParamInit::Zeros);
    if (has_recurrent_bias(o)) add("bias_hh_l0" + suffix, Shape{G}, ParamInit::Zeros);
  }
}

Shape recurrent_output(const Shape& in, const RecurrentOptions& o, std::int64_t width) {
  return o.return_sequences ? Shape{in[0], width} : Shape{width};
}

// Points a Recurrent's weights and gradients at parameters first, first + 1,
// ...; without a trainable recurrent bias, b_hh is the constant `zero` and its
// gradient goes to `scratch` (never read).
template <class Value, class Grad>
void point_at(Recurrent& r, std::size_t first, Value value, Grad grad, const Tensor& zero,
              const Tensor& scratch) {
  RecurrentWeights& w = r.weights();
  RecurrentWeights& g = r.grads();
  w.w_ih = value(first);
  w.w_hh = value(first + 1);
  g.w_ih = grad(first);
  g.w_hh = grad(first + 1);
  if (r.options().use_bias) {
    w.b_ih = value(first + 2);
    g.b_ih = grad(first + 2);
    const bool hh = has_recurrent_bias(r.options());
    w.b_hh = hh ? value(first + 3) : zero;
    g.b_hh = hh ? grad(first + 3) : scratch;
  }
}

}  // namespace

RNN::RNN(const RecurrentOptions& options, std::string name)
    : Layer(or_default(std::move(name), rnn_default_name(options.cell))), o_(options) {
  RECUR_CHECK(o_.units > 0, Value, cell_name(o_.cell), ": units must be positive, got ", o_.units);
}

std::string RNN::config_str() const { return recurrent_config(o_); }

Shape RNN::do_build(const Shape& in) {
  if (in.size() != 2) shape_error("input must be [batch, time, features], got " + keras_shape_str(in));
  if (in[1] == kAnyDim) shape_error("the feature axis must be known, got " + keras_shape_str(in));
  o_.input_size = in[1];
  o_.dtype = dtype();
  add_recurrent_params(o_, "", [this](std::string n, Shape s, ParamInit i) {
    add_param(std::move(n), std::move(s), i);
  });
  return recurrent_output(in, o_, o_.units);
}

void RNN::on_bind() {
  rnn_ = std::make_unique<Recurrent>(o_, device(), seed_);
  const Shape b{cell_gates(o_.cell) * o_.units};
  zero_bias_ = Tensor::zeros(b, dtype(), device());
  scratch_[0] = Tensor::zeros(b, dtype(), device());
  point_at(*rnn_, 0, [this](std::size_t k) { return value(k); },
           [this](std::size_t k) { return grad(k); }, zero_bias_, scratch_[0]);
}

Recurrent& RNN::recurrent() {
  RECUR_CHECK(rnn_ != nullptr, Value, type(), " '", name(), "': not bound to parameters yet");
  return *rnn_;
}

void RNN::set_seed(std::uint64_t seed) {
  RECUR_CHECK(rnn_ == nullptr, Value, type(), " '", name(), "': set_seed() before bind()");
  seed_ = seed;
}

std::vector<std::uint64_t> RNN::rng_state() const {
  if (!rnn_) return {0, 0};
  return {rnn_->dropout_seed(), rnn_->dropout_draws()};
}

void RNN::set_rng_state(const std::vector<std::uint64_t>& s) {
  RECUR_CHECK(s.size() == 2, Value, type(), " '", name(), "': RNG state has ", s.size(),
              " values, expected 2");
  recurrent().set_dropout_state(s[0], s[1]);
}

void RNN::reset_states() {
  if (rnn_) rnn_->reset_states();
}

Tensor RNN::output_mask(const Tensor& /*x*/, const Tensor& mask) const {
  return o_.return_sequences ? mask : Tensor();
}

Tensor RNN::do_forward(const Tensor& x, const Tensor& mask, bool training) {
  return recurrent().forward(x, mask, {}, training).y;
}

Tensor RNN::do_backward(const Tensor& dy) {
  if (scratch_[0].defined()) ops::fill(scratch_[0], 0.0);
  return recurrent().backward(dy, {}, input_grad_wanted()).dx;
}

namespace {
std::shared_ptr<RNN> make_rnn(CellType cell, std::int64_t units, bool return_sequences) {
  RecurrentOptions o;
  o.cell = cell;
  o.units = units;
  o.return_sequences = return_sequences;
  o.unit_forget_bias = cell == CellType::LSTM;  // Keras's default
  return std::make_shared<RNN>(o);
}
}  // namespace

std::shared_ptr<RNN> LSTM(std::int64_t units, bool return_sequences) {
  return make_rnn(CellType::LSTM, units, return_sequences);
}
std::shared_ptr<RNN> GRU(std::int64_t units, bool return_sequences) {
  return make_rnn(CellType::GRU, units, return_sequences);
}
std::shared_ptr<RNN> SimpleRNN(std::int64_t units, bool return_sequences) {
  return make_rnn(CellType::SimpleRNN, units, return_sequences);
}

// ---- Bidirectional ------------------------------------------------------------------
BidirectionalLayer::BidirectionalLayer(const RecurrentOptions& layer, MergeMode merge, std::string name)
    : Layer(or_default(std::move(name), "bidirectional")), o_(layer), merge_(merge) {
  RECUR_CHECK(o_.units > 0, Value, "Bidirectional: units must be positive, got ", o_.units);
  RECUR_CHECK(!o_.go_backwards, Value,
              "Bidirectional: the wrapped layer must not set go_backwards (the wrapper runs both directions)");
}

std::string BidirectionalLayer::config_str() const {
  return std::string(cell_name(o_.cell)) + "(" + recurrent_config(o_) + "), merge_mode=" +
         merge_mode_name(merge_);
}

Shape BidirectionalLayer::do_build(const Shape& in) {
  if (in.size() != 2) shape_error("input must be [batch, time, features], got " + keras_shape_str(in));
  if (in[1] == kAnyDim) shape_error("the feature axis must be known, got " + keras_shape_str(in));
  o_.input_size = in[1];
  o_.dtype = dtype();
  auto add = [this](std::string n, Shape s, ParamInit i) { add_param(std::move(n), std::move(s), i); };
  add_recurrent_params(o_, "", add);
  add_recurrent_params(o_, "_reverse", add);
  return recurrent_output(in, o_, merge_ == MergeMode::Concat ? 2 * o_.units : o_.units);
}

void BidirectionalLayer::on_bind() {
  bi_ = std::make_unique<Bidirectional>(o_, merge_, device(), seed_);
  const std::size_t per = params().size() / 2;
  auto v = [this](std::size_t k) { return value(k); };
  auto g = [this](std::size_t k) { return grad(k); };
  const Shape b{cell_gates(o_.cell) * o_.units};
  zero_bias_ = Tensor::zeros(b, dtype(), device());
  for (Tensor& t : scratch_) t = Tensor::zeros(b, dtype(), device());
  point_at(bi_->forward_layer(), 0, v, g, zero_bias_, scratch_[0]);
  point_at(bi_->backward_layer(), per, v, g, zero_bias_, scratch_[1]);
}

Bidirectional& BidirectionalLayer::bidirectional() {
  RECUR_CHECK(bi_ != nullptr, Value, "Bidirectional '", name(), "': not bound to parameters yet");
  return *bi_;
}

void BidirectionalLayer::set_seed(std::uint64_t seed) {
  RECUR_CHECK(bi_ == nullptr, Value, "Bidirectional '", name(), "': set_seed() before bind()");
  seed_ = seed;
}

std::vector<std::uint64_t> BidirectionalLayer::rng_state() const {
  if (!bi_) return {0, 0, 0, 0};
  Recurrent& f = bi_->forward_layer();
  Recurrent& b = bi_->backward_layer();
  return {f.dropout_seed(), f.dropout_draws(), b.dropout_seed(), b.dropout_draws()};
}

void BidirectionalLayer::set_rng_state(const std::vector<std::uint64_t>& s) {
  RECUR_CHECK(s.size() == 4, Value, "Bidirectional '", name(), "': RNG state has ", s.size(),
              " values, expected 4");
  bidirectional().forward_layer().set_dropout_state(s[0], s[1]);
  bidirectional().backward_layer().set_dropout_state(s[2], s[3]);
}

void BidirectionalLayer::reset_states() {
  if (bi_) bi_->reset_states();
}

Tensor BidirectionalLayer::output_mask(const Tensor& /*x*/, const Tensor& mask) const {
  return o_.return_sequences ? mask : Tensor();
}

Tensor BidirectionalLayer::do_forward(const Tensor& x, const Tensor& mask, bool training) {
  return bidirectional().forward(x, mask, {}, training).y;
}

Tensor BidirectionalLayer::do_backward(const Tensor& dy) {
  for (const Tensor& t : scratch_)
    if (t.defined()) ops::fill(t, 0.0);
  return bidirectional().backward(dy).dx;
}

}  // namespace recur
