// The Layer interface: what a model chains. A layer is configured by its
// constructor (Keras's arguments), built once for an input shape, declares its
// parameters into the model's ParameterStore (one flat buffer per device; the
// layer's weights are views into it), then runs forward and backward.
//
// Shapes exclude the batch dimension, as Keras prints them; kAnyDim (-1) is a
// dimension known only at run time (Keras's None, e.g. the time axis of
// Input(shape=(None, 14))).
//
// Masks follow Keras: a [B, T] tensor of 0/1 in the compute dtype (1: a real
// step) travels beside a sequence. A layer consumes it (recurrent layers,
// pooling), passes it on (Dense, Activation, Dropout) or drops it (Flatten,
// Conv1D, a recurrent layer without return_sequences); Embedding(mask_zero)
// creates one. output_mask() says which.
//
// Parameter names are "<layer name>.<param>", with PyTorch's param names and
// layouts (nn.Linear weight [out, in], nn.Conv1d, nn.Embedding, nn.LSTM
// weight_ih_l0, ...), so a model whose layers are named "0", "1", ... has the
// keys of a PyTorch nn.Sequential's state_dict (docs/checkpoints.md).
//
// Lifecycle: build(shape, dtype) -> declare(store) -> store.allocate() ->
// bind(store) -> initialize(seed) -> forward/backward. forward(training=true)
// keeps what backward() needs; backward(dy) adds the parameter gradients into
// the store's gradient views, releases what forward kept, and returns dx
// (undefined where the input has no gradient, e.g. Embedding's integer ids).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "recur/engine/parameters.h"
#include "recur/host/tensor.h"

namespace recur {

inline constexpr std::int64_t kAnyDim = -1;
// "(None, 14)"-style text of a shape without its batch dimension: "(None, 240, 14)".
std::string keras_shape_str(const Shape& shape_without_batch);

// How a parameter starts (Keras's defaults per layer; see each layer).
enum class ParamInit : unsigned char {
  Zeros,
  Ones,
  GlorotUniform,   // Keras's default kernel initializer
  Orthogonal,      // Keras's default recurrent initializer
  UnitForgetBias,  // LSTM bias: zeros with ones on the forget block
  Uniform005,      // uniform(-0.05, 0.05): Keras's Embedding default
};

class Layer {
 public:
  explicit Layer(std::string name) : name_(std::move(name)) {}
  virtual ~Layer() = default;
  Layer(const Layer&) = delete;
  Layer& operator=(const Layer&) = delete;

  // Keras's class name: "Dense", "LSTM", ...
  virtual const char* type() const = 0;
  const std::string& name() const { return name_; }
  // Before build() only (parameter names derive from it).
  void set_name(std::string name);

  // Checks `input_shape` (no batch dimension) against the configuration and
  // fixes the output shape and the parameter shapes. dtype: the compute dtype
  // (float32 or float64). Once only.
  void build(const Shape& input_shape, DType dtype);
  bool built() const { return built_; }
  const Shape& input_shape() const;
  const Shape& output_shape() const;
  DType dtype() const { return dtype_; }

  // Parameters, known after build().
  struct Param {
    std::string name;  // without the layer prefix: "weight", "weight_ih_l0"
    Shape shape;
    ParamInit init = ParamInit::Zeros;
    std::size_t index = 0;  // in the store, after declare()
  };
  const std::vector<Param>& params() const { return params_; }
  std::int64_t count_params() const;

  // Declares every parameter as "<name>.<param>" into `store`.
  void declare(ParameterStore& store);
  // After store.allocate(): the layer's weights become views into the store.
  void bind(ParameterStore& store);
  // Draws every parameter from its ParamInit; parameter k from seed + k.
  void initialize(std::uint64_t seed);
  Tensor value(std::size_t k) const;  // parameter k's value view (after bind)
  Tensor grad(std::size_t k) const;   // and its gradient view

  // x [B, ...input_shape]; mask [B, T] or undefined. Returns y [B, ...output_shape].
  Tensor forward(const Tensor& x, const Tensor& mask = {}, bool training = false);
  // The mask that goes with forward(x, mask)'s output (Keras's compute_mask).
  virtual Tensor output_mask(const Tensor& x, const Tensor& mask) const;
  // dy: gradient of the last training forward's output. Adds the parameter
  // gradients into the store and returns dx (undefined when x has none).
  // input_grad false: the caller will not read dx (a Sequential for its first
  // layer), so layers that can skip computing it do (Dense, Conv1D and the
  // recurrent layers: a GEMM over every step) and return it undefined.
  Tensor backward(const Tensor& dy, bool input_grad = true);
  // Instead of backward() when nothing below needs this layer's dx and the
  // layer has no parameters (a Flatten under the model's first Dense): drops
  // what the training forward kept, as backward() would.
  void skip_backward();
  // Stateful recurrent layers forget their carried states; others: nothing.
  virtual void reset_states() {}
  // Layers whose output, e.g. a dropout mask, depends on a seed of their own.
  virtual void set_seed(std::uint64_t /*seed*/) {}
  // That seed and the position in its stream (masks drawn so far), which a
  // checkpoint saves so that a resumed run draws the same masks.
  virtual std::vector<std::uint64_t> rng_state() const { return {}; }
  virtual void set_rng_state(const std::vector<std::uint64_t>& /*state*/) {}

  // Whether the input is a float tensor of the compute dtype (else int32 ids).
  virtual bool float_input() const { return true; }

  // One line of Keras-style configuration for summary() and errors: "units=32, activation=relu".
  virtual std::string config_str() const { return {}; }

 protected:
  // build(): returns the output shape and fills params via add_param().
  virtual Shape do_build(const Shape& input_shape) = 0;
  virtual Tensor do_forward(const Tensor& x, const Tensor& mask, bool training) = 0;
  virtual Tensor do_backward(const Tensor& dy) = 0;
  // After bind(): layers that wrap another object point it at the views.
  virtual void on_bind() {}
  // After backward(): drop what forward kept for it, so that memory is free
  // for the layers below (each saved activation lives from its forward to its
  // backward, not until the next step).
  virtual void release_saved() {}
  // Within do_backward(): whether the caller wants dx (backward's input_grad).
  bool input_grad_wanted() const { return input_grad_; }
  void add_param(std::string name, Shape shape, ParamInit init);
  Device device() const;
  // A clear ShapeError naming the layer.
  [[noreturn]] void shape_error(const std::string& what) const;

 private:
  std::string name_;
  bool built_ = false;
  Shape input_shape_, output_shape_;
  DType dtype_ = DType::f32;
  std::vector<Param> params_;
  ParameterStore* store_ = nullptr;
  bool trained_forward_ = false;  // the last forward kept what backward needs
  bool input_grad_ = true;        // during backward(): its input_grad
};

using LayerPtr = std::shared_ptr<Layer>;

}  // namespace recur
