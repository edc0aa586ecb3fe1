// Sequential models with Keras's vocabulary: add, build, summary, compile,
// train_on_batch, test_on_batch, predict (fit/evaluate over datasets: fit.h).
//
// A model owns one ParameterStore (every parameter a view into one flat buffer
// per device, so an optimizer step is one fused launch) and one Optimizer.
// Layers named alike get Keras's suffixes ("dense", "dense_1", ...), and
// parameter k of the model draws its initial values from the model's seed, so
// two models built with the same seed are identical on the CPU.
//
// Masks: an input mask (or Embedding(mask_zero)'s) flows through the layers as
// layer.h describes; when the output is a sequence and a mask reaches it, the
// loss and metrics count only its real steps (Keras's behaviour).
//
// Targets: for the elementwise losses, a target with the prediction's element
// count is viewed in the prediction's shape (so y [B] trains Dense(1)'s [B, 1]);
// sparse categorical targets are int32 class ids of the prediction's shape
// without its last axis.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "recur/engine/layer.h"
#include "recur/engine/optimizer.h"
#include "recur/host/allocator.h"
#include "recur/host/backend.h"
#include "recur/engine/parameters.h"
#include "recur/kernels/loss.h"

namespace recur {

// "mae" / "mean_absolute_error", "mse", "huber", "binary_crossentropy",
// "sparse_categorical_crossentropy", "accuracy", "binary_accuracy".
LossKind parse_loss(const std::string& name);

struct CompileOptions {
  OptimizerConfig optimizer = OptimizerConfig::rmsprop();
  LossKind loss = LossKind::MeanSquaredError;
  std::vector<LossKind> metrics;
  double huber_delta = 1.0;
};

// Loss and metrics of one batch (host values; reading them is the one sync).
struct BatchLogs {
  double loss = 0;
  std::vector<double> metrics;  // in compile order
};

// A batch's loss and metrics on their way to the host (train_step_async):
// read() waits for them alone, not for work queued after them, so a training
// loop can queue the next step first and read this one while it runs.
class PendingBatchLogs {
 public:
  PendingBatchLogs() = default;
  explicit PendingBatchLogs(BatchLogs ready) : logs_(std::move(ready)), ready_(true) {}
  explicit PendingBatchLogs(std::shared_ptr<HostRead> values) : values_(std::move(values)) {}
  bool valid() const { return ready_ || values_ != nullptr; }
  // The loss, then the metrics in compile order.
  const BatchLogs& read();

 private:
  std::shared_ptr<HostRead> values_;
  BatchLogs logs_;
  bool ready_ = false;
};

// Called by a model's training step around its backward pass (data_parallel.h
// sums the gradients across ranks through one): loss_scale() multiplies
// d(loss)/d(prediction) before backward; on_layer_backward(layer) follows each
// layer's backward, when that layer's parameter gradients are complete; after
// on_backward_end() the gradients are the ones the optimizer steps with.
class GradientHook {
 public:
  virtual ~GradientHook() = default;
  virtual double loss_scale() const = 0;
  virtual void on_backward_begin() = 0;
  virtual void on_layer_backward(const Layer& layer) = 0;
  virtual void on_backward_end() = 0;
};

// What training loops, callbacks and checkpoints need from a model: Sequential
// and the functional Model (functional.h) both provide it, so fit, evaluate and
// checkpoints work on either. Inputs are given as a list (one tensor per model
// input; a Sequential has one).
class TrainableModel {
 public:
  TrainableModel() = default;
  TrainableModel(const TrainableModel&) = delete;
  TrainableModel& operator=(const TrainableModel&) = delete;
  virtual ~TrainableModel();
  virtual const std::string& name() const = 0;
  virtual bool built() const = 0;
  virtual const std::vector<LayerPtr>& layers() const = 0;
  virtual Layer& layer(const std::string& name) const = 0;
  virtual ParameterStore& parameters() = 0;
  virtual const ParameterStore& parameters() const = 0;
  virtual bool compiled() const = 0;
  virtual const CompileOptions& compile_options() const = 0;
  virtual Optimizer& optimizer() = 0;
  virtual const Optimizer& optimizer() const = 0;
  virtual double last_batch_weight() const = 0;
  // Stateful recurrent layers forget their carried states (others: nothing).
  virtual void reset_states() = 0;
  // One training step / one evaluation batch (masks: empty or one per input),
  // queued on the device; the logs arrive when read.
  virtual PendingBatchLogs train_step_async(const std::vector<Tensor>& x, const Tensor& y,
                                            const std::vector<Tensor>& masks, const Tensor& sample_weight) = 0;
  virtual PendingBatchLogs test_step_async(const std::vector<Tensor>& x, const Tensor& y,
                                           const std::vector<Tensor>& masks, const Tensor& sample_weight) = 0;
  // The same, waiting for the logs.
  BatchLogs train_step(const std::vector<Tensor>& x, const Tensor& y, const std::vector<Tensor>& masks,
                       const Tensor& sample_weight) {
    return train_step_async(x, y, masks, sample_weight).read();
  }
  BatchLogs test_step(const std::vector<Tensor>& x, const Tensor& y, const std::vector<Tensor>& masks,
                      const Tensor& sample_weight) {
    return test_step_async(x, y, masks, sample_weight).read();
  }

  // The gradient hook of training steps (not owned; nullptr: none).
  void set_gradient_hook(GradientHook* hook) { hook_ = hook; }
  GradientHook* gradient_hook() const { return hook_; }
  // A training step without data, for a data-parallel rank whose share of a
  // batch is empty: zero gradients, the hook's begin and end (its all-reduce),
  // the optimizer step.
  void train_step_without_data();

  // Memory of the last batch (train_on_batch or test_on_batch), from the
  // device's allocator. Peak: bytes in use at the batch's high point
  // (parameters, optimizer state, inputs and activations). Working: the part
  // above what was in use when the batch began; saved activations are
  // released by each layer's backward, so it peaks at the end of the forward
  // pass. Arena: the step arena that served the batch (allocator.h: planned by
  // liveness from the first batch of these shapes, reused by every later one),
  // 0 while the batch's shapes were being recorded or when arenas are off;
  // live: the most bytes the batch's blocks held at once, a lower bound for
  // any arena.
  struct StepMemory {
    std::size_t peak = 0, working = 0, arena = 0, live = 0;
  };
  const StepMemory& last_step_memory() const { return step_memory_; }
  // The same for the last training batch.
  const StepMemory& last_train_step_memory() const { return train_step_memory_; }
  std::size_t last_step_peak_bytes() const { return step_memory_.peak; }
  std::size_t last_step_working_bytes() const { return step_memory_.working; }

 protected:
  // Names this model's step arenas in its device's allocator.
  std::uint64_t region_owner() const { return region_owner_; }
  // The device whose allocator the destructor tells to drop this model's arenas.
  Device arena_device_ = Device::cpu();
  StepMemory step_memory_, train_step_memory_;
  GradientHook* hook_ = nullptr;
  // d(loss)/d(pred) as the hook wants it (scaled by loss_scale()), and the
  // hook's begin, around which the model's run_batch calls backward.
  Tensor scaled_loss_grad(const Tensor& grad) const;

 private:
  std::uint64_t region_owner_ = CachingAllocator::new_region_owner();
};

class Sequential final : public TrainableModel {
 public:
  explicit Sequential(std::string name = "sequential") : name_(std::move(name)) {}
  Sequential(const Sequential&) = delete;
  Sequential& operator=(const Sequential&) = delete;

  // Appends a layer (before build()); renames it with Keras's suffix if its
  // name is taken. Returns *this for chaining.
  Sequential& add(LayerPtr layer);

  // Builds every layer for inputs of `input_shape` (no batch dimension; int32
  // ids when the first layer is an Embedding, else `dtype`), allocates the
  // parameters on `device` and initializes them from `seed`.
  void build(const Shape& input_shape, Device device = default_device(), DType dtype = DType::f32,
             std::uint64_t seed = 0);
  bool built() const override { return store_ != nullptr; }

  const std::string& name() const override { return name_; }
  const std::vector<LayerPtr>& layers() const override { return layers_; }
  Layer& layer(const std::string& name) const override;
  const Shape& input_shape() const;
  const Shape& output_shape() const;
  Device device() const;
  DType dtype() const { return dtype_; }
  DType input_dtype() const;
  std::int64_t count_params() const;
  // Keras's table: layer (type), output shape, parameter count, and the totals.
  std::string summary() const;

  ParameterStore& parameters() override;
  const ParameterStore& parameters() const override;

  struct Output {
    Tensor y;
    Tensor mask;  // the mask that reached the output, or undefined
  };
  // x: [B, ...input_shape]; mask [B, T] or undefined.
  Output forward(const Tensor& x, const Tensor& mask = {}, bool training = false);
  // Backward through every layer from d(loss)/d(output); adds into the
  // gradients. Nobody reads the input's gradient, so the lowest layer with
  // parameters skips dx and the parameter-free layers under it skip backward.
  void backward(const Tensor& dy);
  // Inference.
  Tensor predict(const Tensor& x, const Tensor& mask = {}) { return forward(x, mask, false).y; }
  // Stateful recurrent layers forget their states.
  void reset_states() override;

  void compile(const CompileOptions& options);
  bool compiled() const override { return optimizer_ != nullptr; }
  const CompileOptions& compile_options() const override;
  Optimizer& optimizer() override;
  const Optimizer& optimizer() const override;

  using Logs = BatchLogs;
  // One optimizer step on (x, y): zero gradients, forward (training),
  // loss, backward, step. sample_weight: optional per-sample (or, for sequence
  // outputs, per-step) weights; the output mask multiplies in.
  Logs train_on_batch(const Tensor& x, const Tensor& y, const Tensor& mask = {},
                      const Tensor& sample_weight = {});
  Logs test_on_batch(const Tensor& x, const Tensor& y, const Tensor& mask = {},
                     const Tensor& sample_weight = {});
  // The count the last batch's loss averaged over (Keras's denominator), to
  // weight means over batches of unequal size.
  double last_batch_weight() const override { return last_weight_; }
  PendingBatchLogs train_step_async(const std::vector<Tensor>& x, const Tensor& y,
                                    const std::vector<Tensor>& masks, const Tensor& sample_weight) override;
  PendingBatchLogs test_step_async(const std::vector<Tensor>& x, const Tensor& y,
                                   const std::vector<Tensor>& masks, const Tensor& sample_weight) override;
 private:
  std::string who() const;  // "Sequential '<name>'" for errors
  PendingBatchLogs run_batch(const Tensor& x, const Tensor& y, const Tensor& mask, const Tensor& sample_weight,
                             bool train);

  std::string name_;
  std::vector<LayerPtr> layers_;
  std::unique_ptr<ParameterStore> store_;
  DType dtype_ = DType::f32;
  std::unique_ptr<CompileOptions> compile_;
  std::unique_ptr<Optimizer> optimizer_;
  double last_weight_ = 0;
};

}  // namespace recur
