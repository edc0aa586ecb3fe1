// A small functional graph with Keras's vocabulary: Input, layers applied to
// symbolic nodes, merge layers (Concatenate, Add, Multiply, Average) and a
// Model made from its inputs and outputs (Keras's functional API).
//
//   NodeRef x = Input({kAnyDim, 14}, "x");            // a sequence of 14 features
//   NodeRef s = Input({4}, "static");                 // a feature vector
//   NodeRef h = call(std::make_shared<Conv1D>(16, 5, Activation::Relu), x);
//   h = call(GRU(32), h);
//   NodeRef d = call(std::make_shared<Dense>(8, Activation::Relu), s);
//   NodeRef y = call(std::make_shared<Dense>(1), concatenate({h, d}));
//   Model model({x, s}, {y});
//   model.build(Device::cpu());
//   model.compile({OptimizerConfig::adam(1e-3), LossKind::MeanSquaredError});
//   model.train_on_batch({xb, sb}, yb);
//
// Graph rules:
//  - A node refers only to nodes made before it and never changes, so a graph
//    cannot hold a cycle. Model() walks back from the outputs; every listed
//    input must be reached (an unused input is an error) and every Input
//    reached must be listed (a dangling one is an error).
//  - Layers are single-use: a layer applied twice (Keras shares its weights
//    then) is refused, since shared layers are not supported; so is a layer
//    that belongs to another model.
//  - Layers build in Model::build() (they need the compute dtype), so shape
//    errors are raised there, naming the layer and the shapes.
//  - Order: topological (Kahn's algorithm; among ready nodes, the one made
//    first). layers(), the parameters' declaration order and the seeds follow
//    it, so a chain gives Sequential's order: the same seed gives the same
//    parameters as the Sequential of the same layers.
//  - An Input takes int32 ids when it feeds a layer that takes ids (Embedding),
//    else the compute dtype; such a layer must be applied to an Input.
//  - Masks: one per input (or none) travel as in Sequential; a single-input
//    layer uses Layer::output_mask, a merge combines its inputs' masks with a
//    logical AND (the product of the 0/1 masks; an input without one counts as
//    all ones), as Keras's merge layers do.
//  - backward() runs the nodes in reverse order; the gradient of a node
//    consumed several times (branches, or twice by one merge) is the sum of
//    its consumers'. Inputs get no gradient.
//  - compile / train_on_batch / test_on_batch have Sequential's semantics
//    (loss weights from the output mask and sample weights) and need a model
//    with one output; forward / backward take any number of outputs.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "recur/engine/layer.h"
#include "recur/engine/model.h"
#include "recur/engine/optimizer.h"
#include "recur/engine/parameters.h"

namespace recur {

// ---- merge layers -------------------------------------------------------------------
// Layers of several inputs (at least 2), without parameters. They replace
// Layer's one-input build / forward / backward with the list versions below;
// Layer::forward on a merge layer is an error that says so.
class MergeLayer : public Layer {
 public:
  explicit MergeLayer(std::string name) : Layer(std::move(name)) {}

  // Checks the inputs' shapes (no batch dimension) against each other and
  // fixes the output shape; ShapeError naming the layer and the shapes.
  void build(const std::vector<Shape>& input_shapes, DType dtype);
  const std::vector<Shape>& input_shapes() const;

  // xs: one tensor per input, [B, ...input_shapes[i]]; masks: empty or one
  // per input ([B, T] or undefined).
  Tensor forward(const std::vector<Tensor>& xs, const std::vector<Tensor>& masks = {},
                 bool training = false);
  // Keras's Merge.compute_mask: undefined when no input has a mask, else the
  // product of the defined masks.
  Tensor merged_mask(const std::vector<Tensor>& masks) const;
  // dy: the gradient of the last training forward's output. Returns one dx
  // per input; they may share storage with dy or each other (read them only).
  std::vector<Tensor> backward(const Tensor& dy);

 protected:
  // The output shape for these input shapes (kAnyDim: known at run time);
  // shape_error() when they do not fit together.
  virtual Shape merge_build(const std::vector<Shape>& input_shapes) = 0;
  // Checks the actual shapes of a forward's inputs against each other.
  virtual void check_runtime_shapes(const std::vector<Tensor>& xs) const = 0;
  virtual Tensor merge_forward(const std::vector<Tensor>& xs, bool training) = 0;
  virtual std::vector<Tensor> merge_backward(const Tensor& dy) = 0;
  // "(None, 5, 3), (None, 6, 4)": the shapes in errors.
  static std::string shapes_str(const std::vector<Shape>& shapes);
  static std::string shapes_str(const std::vector<Tensor>& xs);

 private:
  Shape do_build(const Shape& first_input) final;
  Tensor do_forward(const Tensor& x, const Tensor& mask, bool training) final;
  Tensor do_backward(const Tensor& dy) final;

  std::vector<Shape> pending_, input_shapes_;
  bool trained_forward_ = false;
};

// Concatenation along the last axis (Keras's default axis=-1); every other
// axis must agree.
class Concatenate final : public MergeLayer {
 public:
  explicit Concatenate(std::string name = "concatenate") : MergeLayer(std::move(name)) {}
  const char* type() const override { return "Concatenate"; }
  std::string config_str() const override { return "axis=-1"; }

 protected:
  Shape merge_build(const std::vector<Shape>& in) override;
  void check_runtime_shapes(const std::vector<Tensor>& xs) const override;
  Tensor merge_forward(const std::vector<Tensor>& xs, bool training) override;
  std::vector<Tensor> merge_backward(const Tensor& dy) override;

 private:
  std::vector<std::int64_t> widths_;  // of the last training forward's inputs
};

// Elementwise merges of inputs of one shape (no broadcasting): Add (sum),
// Multiply (product), Average (mean).
class ElementwiseMerge : public MergeLayer {
 public:
  using MergeLayer::MergeLayer;

 protected:
  Shape merge_build(const std::vector<Shape>& in) override;
  void check_runtime_shapes(const std::vector<Tensor>& xs) const override;
};

class Add final : public ElementwiseMerge {
 public:
  explicit Add(std::string name = "add") : ElementwiseMerge(std::move(name)) {}
  const char* type() const override { return "Add"; }

 protected:
  Tensor merge_forward(const std::vector<Tensor>& xs, bool training) override;
  std::vector<Tensor> merge_backward(const Tensor& dy) override;

 private:
  std::size_t n_ = 0;
};

class Multiply final : public ElementwiseMerge {
 public:
  explicit Multiply(std::string name = "multiply") : ElementwiseMerge(std::move(name)) {}
  const char* type() const override { return "Multiply"; }

 protected:
  Tensor merge_forward(const std::vector<Tensor>& xs, bool training) override;
  std::vector<Tensor> merge_backward(const Tensor& dy) override;

 private:
  std::vector<Tensor> xs_;  // saved by a training forward
};

class Average final : public ElementwiseMerge {
 public:
  explicit Average(std::string name = "average") : ElementwiseMerge(std::move(name)) {}
  const char* type() const override { return "Average"; }

 protected:
  Tensor merge_forward(const std::vector<Tensor>& xs, bool training) override;
  std::vector<Tensor> merge_backward(const Tensor& dy) override;

 private:
  std::size_t n_ = 0;
};

// ---- symbolic nodes -----------------------------------------------------------------
struct NodeFactory;

// A node of the graph (Keras's KerasTensor): a model input, or a layer applied
// to earlier nodes. Made by Input() and call(); read-only to users.
class Node {
 public:
  bool is_input() const { return layer_ == nullptr; }
  // The Input's name, or the layer's.
  const std::string& name() const;
  // The layer (null for an Input) and the nodes it is applied to.
  const LayerPtr& layer() const { return layer_; }
  const std::vector<std::shared_ptr<Node>>& inputs() const { return inputs_; }
  // An Input's shape (no batch dimension); for a layer, its output shape once built.
  const Shape& shape() const;
  // Order of creation (the tie-break of the topological order).
  std::uint64_t serial() const { return serial_; }

 private:
  friend class Model;
  friend struct NodeFactory;  // Input() and call()
  Node() = default;

  std::string input_name_;
  Shape input_shape_;
  LayerPtr layer_;
  std::vector<std::shared_ptr<Node>> inputs_;
  std::uint64_t serial_ = 0;
};
using NodeRef = std::shared_ptr<Node>;

// keras.Input(shape, name): shape without the batch dimension, kAnyDim for an
// axis known only at run time. Inputs named alike get suffixes in a Model.
NodeRef Input(const Shape& shape, std::string name = "input_layer");
// Keras's layer(inputs): the layer applied to earlier nodes. A single-input
// layer takes exactly one node, a MergeLayer at least two (the same node may
// appear twice). (Named call, not apply: std::apply would win overload
// resolution by argument-dependent lookup on std::shared_ptr.)
NodeRef call(const LayerPtr& layer, const std::vector<NodeRef>& inputs);
NodeRef call(const LayerPtr& layer, const NodeRef& input);
// keras.layers.concatenate / add / multiply / average.
NodeRef concatenate(const std::vector<NodeRef>& inputs, std::string name = "concatenate");
NodeRef add(const std::vector<NodeRef>& inputs, std::string name = "add");
NodeRef multiply(const std::vector<NodeRef>& inputs, std::string name = "multiply");
NodeRef average(const std::vector<NodeRef>& inputs, std::string name = "average");

// ---- the model ----------------------------------------------------------------------
class Model final : public TrainableModel {
 public:
  // keras.Model(inputs, outputs): checks the graph (see the top of this file)
  // and gives the layers and inputs unique names (Keras's suffixes).
  Model(std::vector<NodeRef> inputs, std::vector<NodeRef> outputs, std::string name = "functional");
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  // Builds every layer in topological order for its inputs' shapes, declares
  // all parameters into one store on `device` and initializes them from `seed`.
  void build(Device device = default_device(), DType dtype = DType::f32, std::uint64_t seed = 0);
  bool built() const override { return store_ != nullptr; }

  const std::string& name() const override { return name_; }
  // Layers in topological order (merge layers included, inputs not).
  const std::vector<LayerPtr>& layers() const override { return layers_; }
  Layer& layer(const std::string& name) const override;
  const std::vector<NodeRef>& inputs() const { return inputs_; }
  const std::vector<NodeRef>& outputs() const { return outputs_; }
  const Shape& input_shape(std::size_t i) const;
  const Shape& output_shape(std::size_t i) const;  // after build()
  DType input_dtype(std::size_t i) const;          // after build()
  Device device() const;
  DType dtype() const { return dtype_; }
  std::int64_t count_params() const;
  // Keras's functional table: layer (type), output shape, parameter count,
  // "Connected to" (the nodes each layer reads), and the totals.
  std::string summary() const;

  ParameterStore& parameters() override;
  const ParameterStore& parameters() const override;

  struct Output {
    Tensor y;
    Tensor mask;  // the mask that reached this output, or undefined
  };
  // inputs: one tensor per model input, in the order given to Model(); masks:
  // empty or one per input (undefined: none). Returns one Output per output.
  std::vector<Output> forward(const std::vector<Tensor>& inputs, const std::vector<Tensor>& masks = {},
                              bool training = false);
  // d_outputs: one gradient per output (undefined: none) of the last training
  // forward; adds into the parameter gradients.
  void backward(const std::vector<Tensor>& d_outputs);
  // Inference of a model with one output.
  Tensor predict(const std::vector<Tensor>& inputs, const std::vector<Tensor>& masks = {});
  void reset_states();

  void compile(const CompileOptions& options);
  bool compiled() const override { return optimizer_ != nullptr; }
  const CompileOptions& compile_options() const override;
  Optimizer& optimizer() override;
  const Optimizer& optimizer() const override;

  using Logs = BatchLogs;
  // As Sequential's, for a model with one output: x one tensor per input,
  // masks empty or one per input.
  Logs train_on_batch(const std::vector<Tensor>& x, const Tensor& y,
                      const std::vector<Tensor>& masks = {}, const Tensor& sample_weight = {});
  Logs test_on_batch(const std::vector<Tensor>& x, const Tensor& y,
                     const std::vector<Tensor>& masks = {}, const Tensor& sample_weight = {});
  double last_batch_weight() const override { return last_weight_; }
  PendingBatchLogs train_step_async(const std::vector<Tensor>& x, const Tensor& y,
                                    const std::vector<Tensor>& masks, const Tensor& sample_weight) override {
    return run_batch(x, y, masks, sample_weight, true);
  }
  PendingBatchLogs test_step_async(const std::vector<Tensor>& x, const Tensor& y,
                                   const std::vector<Tensor>& masks, const Tensor& sample_weight) override {
    return run_batch(x, y, masks, sample_weight, false);
  }

 private:
  // One node of the schedule: where its inputs are in the schedule.
  struct Step {
    NodeRef node;
    MergeLayer* merge = nullptr;  // node->layer() when it is a merge layer
    std::vector<std::size_t> in;  // schedule indices of node->inputs()
    std::size_t last_use = 0;     // the last step that reads this one's value
    Shape shape;                  // output shape (no batch), after build()
    DType dtype = DType::f32;     // of the value (int32 for an ids Input)
  };
  std::string who() const;  // "Model '<name>'" for errors
  std::size_t output_index(std::size_t i) const;
  void check_inputs(const std::vector<Tensor>& inputs, const std::vector<Tensor>& masks) const;
  PendingBatchLogs run_batch(const std::vector<Tensor>& x, const Tensor& y, const std::vector<Tensor>& masks,
                 const Tensor& sample_weight, bool train);

  std::string name_;
  std::vector<NodeRef> inputs_, outputs_;
  std::vector<Step> steps_;                  // topological order
  std::vector<std::size_t> input_steps_;     // schedule index of each model input
  std::vector<std::size_t> output_steps_;    // and of each output
  std::vector<LayerPtr> layers_;
  std::unique_ptr<ParameterStore> store_;
  DType dtype_ = DType::f32;
  std::unique_ptr<CompileOptions> compile_;
  std::unique_ptr<Optimizer> optimizer_;
  std::vector<Shape> last_output_shapes_;  // of the last forward, for backward's checks
  double last_weight_ = 0;
};

}  // namespace recur
