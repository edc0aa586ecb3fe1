// Keras's layers on recur's ops (Layer interface: layer.h). Each takes Keras's
// arguments and defaults; weights have PyTorch's layouts and names.
//
//   Dense(units, activation, use_bias)   weight [units, in], bias [units];
//       on 3-D input [B, T, in] applied per time step (mask passed on).
//   Activation(relu | tanh | sigmoid | softmax | linear)   mask passed on.
//   Flatten()                            [B, d1, d2, ...] -> [B, d1*d2*...]; mask dropped.
//   Dropout(rate, seed)                  inverted, training only; mask passed on.
//   Embedding(input_dim, output_dim, mask_zero)   int32 ids [B, T] -> [B, T, D];
//       weight [input_dim, D] from uniform(-0.05, 0.05); mask_zero makes the mask.
//   Conv1D(filters, kernel_size, ...)    [B, T, C] -> [B, T', filters]; weight
//       [filters, C / groups, kernel_size] (nn.Conv1d), bias [filters]; glorot
//       kernel, zero bias. Keras's Conv1D does not support masking: a mask in is
//       dropped (padded steps are convolved as data).
//   MaxPooling1D / AveragePooling1D      masked steps ignored in each window; the
//       mask is dropped after pooling (Keras's pooling layers drop it too).
//   GlobalMaxPooling1D / GlobalAveragePooling1D   [B, T, C] -> [B, C], masked steps ignored.
//   LSTM / GRU / SimpleRNN               recurrent.h semantics; Keras's
//       initializers (glorot kernel, orthogonal recurrent kernel, zero bias, LSTM
//       unit_forget_bias) in PyTorch's layout; consume the mask, pass it on with
//       return_sequences.
//   Bidirectional(layer, merge_mode)     bidirectional.h; "_reverse" parameters.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "recur/engine/bidirectional.h"
#include "recur/engine/layer.h"
#include "recur/engine/recurrent.h"
#include "recur/host/conv1d.h"
#include "recur/host/ops.h"

namespace recur {

// "relu", "tanh", "sigmoid", "softmax", "linear" (or "" / "none": linear).
// ValueError naming the text otherwise.
Activation parse_activation(const std::string& name);

class Dense final : public Layer {
 public:
  explicit Dense(std::int64_t units, Activation activation = Activation::Linear,
                 bool use_bias = true, std::string name = "dense");
  const char* type() const override { return "Dense"; }
  std::string config_str() const override;
  std::int64_t units() const { return units_; }
  Activation activation() const { return act_; }
  bool use_bias() const { return use_bias_; }

 protected:
  Shape do_build(const Shape& in) override;
  Tensor do_forward(const Tensor& x, const Tensor& mask, bool training) override;
  Tensor do_backward(const Tensor& dy) override;
  void release_saved() override { x2_ = y_ = Tensor(); }

 private:
  std::int64_t units_;
  Activation act_;
  bool use_bias_;
  Tensor x2_, y_;  // saved: input as [N, in], output
};

class ActivationLayer final : public Layer {
 public:
  explicit ActivationLayer(Activation activation, std::string name = "activation");
  const char* type() const override { return "Activation"; }
  std::string config_str() const override;
  Activation activation() const { return act_; }

 protected:
  Shape do_build(const Shape& in) override { return in; }
  Tensor do_forward(const Tensor& x, const Tensor& mask, bool training) override;
  Tensor do_backward(const Tensor& dy) override;
  void release_saved() override { y_ = Tensor(); }

 private:
  Activation act_;
  Tensor y_;
};

class Flatten final : public Layer {
 public:
  explicit Flatten(std::string name = "flatten") : Layer(std::move(name)) {}
  const char* type() const override { return "Flatten"; }
  Tensor output_mask(const Tensor&, const Tensor&) const override { return {}; }

 protected:
  Shape do_build(const Shape& in) override;
  Tensor do_forward(const Tensor& x, const Tensor& mask, bool training) override;
  Tensor do_backward(const Tensor& dy) override;

 private:
  Shape x_shape_;
};

class Dropout final : public Layer {
 public:
  // seed: the first mask's; each training call draws a new mask from seed and
  // the call count (a model reseeds its layers from its own seed).
  explicit Dropout(double rate, std::uint64_t seed = 0, std::string name = "dropout");
  const char* type() const override { return "Dropout"; }
  std::string config_str() const override;
  double rate() const { return rate_; }
  void set_seed(std::uint64_t seed) override { seed_ = seed; calls_ = 0; }
  std::vector<std::uint64_t> rng_state() const override { return {seed_, calls_}; }
  void set_rng_state(const std::vector<std::uint64_t>& s) override;

 protected:
  Shape do_build(const Shape& in) override { return in; }
  Tensor do_forward(const Tensor& x, const Tensor& mask, bool training) override;
  Tensor do_backward(const Tensor& dy) override;
  void release_saved() override { mask_ = Tensor(); }

 private:
  double rate_;
  std::uint64_t seed_, calls_ = 0;
  Tensor mask_;  // undefined after an inference forward
};

class Embedding final : public Layer {
 public:
  // input_length: Keras 2's argument, fixing the time axis (0: any).
  Embedding(std::int64_t input_dim, std::int64_t output_dim, bool mask_zero = false,
            std::int64_t input_length = 0, std::string name = "embedding");
  const char* type() const override { return "Embedding"; }
  std::string config_str() const override;
  std::int64_t input_dim() const { return input_dim_; }
  std::int64_t output_dim() const { return output_dim_; }
  std::int64_t input_length() const { return input_length_; }
  bool mask_zero() const { return mask_zero_; }
  Tensor output_mask(const Tensor& ids, const Tensor& mask) const override;
  bool float_input() const override { return false; }

 protected:
  Shape do_build(const Shape& in) override;
  Tensor do_forward(const Tensor& ids, const Tensor& mask, bool training) override;
  Tensor do_backward(const Tensor& dy) override;
  void release_saved() override { ids_ = Tensor(); }

 private:
  std::int64_t input_dim_, output_dim_, input_length_;
  bool mask_zero_;
  Tensor ids_;
};

struct Conv1DOptions {
  std::int64_t filters = 0;
  std::int64_t kernel_size = 1;
  std::int64_t strides = 1;
  Conv1dPadding padding = Conv1dPadding::Valid;
  std::int64_t dilation_rate = 1;
  std::int64_t groups = 1;
  Activation activation = Activation::Linear;
  bool use_bias = true;
};

class Conv1D final : public Layer {
 public:
  explicit Conv1D(const Conv1DOptions& options, std::string name = "conv1d");
  Conv1D(std::int64_t filters, std::int64_t kernel_size, Activation activation = Activation::Linear,
         std::string name = "conv1d");
  const char* type() const override { return "Conv1D"; }
  std::string config_str() const override;
  const Conv1DOptions& options() const { return o_; }
  Tensor output_mask(const Tensor&, const Tensor&) const override { return {}; }

 protected:
  Shape do_build(const Shape& in) override;
  Tensor do_forward(const Tensor& x, const Tensor& mask, bool training) override;
  Tensor do_backward(const Tensor& dy) override;
  void release_saved() override { x_ = cols_ = y_ = Tensor(); }

 private:
  Conv1dOptions conv_options() const;
  Conv1DOptions o_;
  Tensor x_, cols_, y_;
};

// MaxPooling1D / AveragePooling1D.
class Pooling1D final : public Layer {
 public:
  explicit Pooling1D(const ops::Pool1dOptions& options, std::string name = "");
  const char* type() const override;
  std::string config_str() const override;
  Tensor output_mask(const Tensor&, const Tensor&) const override { return {}; }
  const ops::Pool1dOptions& options() const { return o_; }

 protected:
  Shape do_build(const Shape& in) override;
  Tensor do_forward(const Tensor& x, const Tensor& mask, bool training) override;
  Tensor do_backward(const Tensor& dy) override;
  void release_saved() override { mask_ = argmax_ = Tensor(); }

 private:
  ops::Pool1dOptions o_;
  std::int64_t T_ = 0;
  Tensor mask_, argmax_;
};
std::shared_ptr<Pooling1D> MaxPooling1D(std::int64_t pool_size = 2, std::int64_t strides = 0,
                                        ops::PoolPadding padding = ops::PoolPadding::Valid);
std::shared_ptr<Pooling1D> AveragePooling1D(std::int64_t pool_size = 2, std::int64_t strides = 0,
                                            ops::PoolPadding padding = ops::PoolPadding::Valid);

// GlobalMaxPooling1D / GlobalAveragePooling1D.
class GlobalPooling1D final : public Layer {
 public:
  explicit GlobalPooling1D(PoolKind kind, std::string name = "");
  const char* type() const override;
  PoolKind kind() const { return kind_; }
  Tensor output_mask(const Tensor&, const Tensor&) const override { return {}; }

 protected:
  Shape do_build(const Shape& in) override;
  Tensor do_forward(const Tensor& x, const Tensor& mask, bool training) override;
  Tensor do_backward(const Tensor& dy) override;
  void release_saved() override { mask_ = argmax_ = Tensor(); }

 private:
  PoolKind kind_;
  std::int64_t T_ = 0;
  Tensor mask_, argmax_;
};

// Whether a recurrent layer trains a separate recurrent bias b_hh. Keras gives
// LSTM, SimpleRNN and GRU(reset_after=False) one bias, PyTorch two whose sum
// is all that matters; recur's layers follow Keras's parameter count: the one
// trainable bias is bias_ih_l0 and b_hh is a constant zero. GRU with
// reset_after (the default) trains both, as Keras's [2, 3H] bias does.
// Checkpoints write the zero bias_hh_l0 for PyTorch and fold a loaded one into
// bias_ih_l0 (docs/checkpoints.md).
bool has_recurrent_bias(const RecurrentOptions& options);

// LSTM, GRU, SimpleRNN. options.input_size and dtype are set by build().
// Initializers: Keras's (glorot kernel, orthogonal recurrent kernel, zero
// bias, unit_forget_bias for LSTM when set, as LSTM() does).
class RNN final : public Layer {
 public:
  explicit RNN(const RecurrentOptions& options, std::string name = "");
  const char* type() const override { return cell_name(o_.cell); }
  std::string config_str() const override;
  Tensor output_mask(const Tensor& x, const Tensor& mask) const override;
  void reset_states() override;
  void set_seed(std::uint64_t seed) override;
  std::vector<std::uint64_t> rng_state() const override;
  void set_rng_state(const std::vector<std::uint64_t>& s) override;
  const RecurrentOptions& options() const { return o_; }
  Recurrent& recurrent();  // after bind()

 protected:
  Shape do_build(const Shape& in) override;
  Tensor do_forward(const Tensor& x, const Tensor& mask, bool training) override;
  Tensor do_backward(const Tensor& dy) override;
  void release_saved() override { if (rnn_) rnn_->release_saved(); }
  void on_bind() override;

 private:
  RecurrentOptions o_;
  std::unique_ptr<Recurrent> rnn_;
  std::uint64_t seed_ = 0;
  Tensor zero_bias_, scratch_[1];
};
std::shared_ptr<RNN> LSTM(std::int64_t units, bool return_sequences = false);
std::shared_ptr<RNN> GRU(std::int64_t units, bool return_sequences = false);
std::shared_ptr<RNN> SimpleRNN(std::int64_t units, bool return_sequences = false);

class BidirectionalLayer final : public Layer {
 public:
  BidirectionalLayer(const RecurrentOptions& layer, MergeMode merge = MergeMode::Concat,
                     std::string name = "");
  const char* type() const override { return "Bidirectional"; }
  std::string config_str() const override;
  const RecurrentOptions& options() const { return o_; }
  MergeMode merge_mode() const { return merge_; }
  Tensor output_mask(const Tensor& x, const Tensor& mask) const override;
  void reset_states() override;
  void set_seed(std::uint64_t seed) override;
  std::vector<std::uint64_t> rng_state() const override;
  void set_rng_state(const std::vector<std::uint64_t>& s) override;
  Bidirectional& bidirectional();  // after bind()

 protected:
  Shape do_build(const Shape& in) override;
  Tensor do_forward(const Tensor& x, const Tensor& mask, bool training) override;
  Tensor do_backward(const Tensor& dy) override;
  void release_saved() override { if (bi_) bi_->release_saved(); }
  void on_bind() override;

 private:
  RecurrentOptions o_;
  MergeMode merge_;
  std::unique_ptr<Bidirectional> bi_;
  std::uint64_t seed_ = 0;
  Tensor zero_bias_, scratch_[2];
};

}  // namespace recur
