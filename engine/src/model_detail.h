// What Sequential (model.cpp) and the functional Model (functional.cpp) share:
// Keras's name suffixes, the parameter store and seeds, the loss of a batch,
// and the summary's totals. Private to the engine (not installed).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "recur/engine/layer.h"
#include "recur/engine/model.h"
#include "recur/engine/parameters.h"

namespace recur::detail {

// `base` if it is free, else Keras's suffixes: base_1, base_2, ...
std::string unique_name(const std::set<std::string>& taken, const std::string& base);

// Declares the layers' parameters in order into a new store on `device`,
// allocates it, binds every layer and initializes layer i from its own stream
// of seeds derived from `seed` and i (parameters, then dropout masks), so the
// same layers in the same order give the same values.
std::unique_ptr<ParameterStore> make_parameters(const std::vector<LayerPtr>& layers, Device device,
                                                DType dtype, std::uint64_t seed);

// `who` names the model in errors: "Sequential 'sequential'", "Model 'functional'".
void check_compile_options(const std::string& who, const CompileOptions& options);

// The loss of one batch on the prediction `pred` (with the mask that reached
// it, or undefined), its gradient d(loss)/d(pred), and the metrics in compile
// order, as tensors (nothing read back yet).
struct BatchLoss {
  Tensor loss, grad;
  std::vector<Tensor> metrics;
};
BatchLoss batch_loss(const std::string& who, const CompileOptions& options, DType dtype,
                     const Tensor& pred, const Tensor& pred_mask, const Tensor& y,
                     const Tensor& sample_weight);
// Starts reading the loss and the metrics back to the host (the one sync of
// a batch, when the logs are read).
PendingBatchLogs read_logs_async(const BatchLoss& loss);

// One batch as a step-arena region of the device's allocator (allocator.h),
// keyed by the model, train/test and the shapes and dtypes of `tensors`; the
// destructor closes the region and writes the batch's memory figures. Declare
// it before anything the batch allocates, so that every block of the batch is
// released inside the region.
class StepScope {
 public:
  StepScope(Device device, std::uint64_t owner, bool train, std::initializer_list<const Tensor*> tensors,
            const std::vector<Tensor>& more, TrainableModel::StepMemory& out,
            TrainableModel::StepMemory& train_out);
  ~StepScope();
  StepScope(const StepScope&) = delete;
  StepScope& operator=(const StepScope&) = delete;

 private:
  CachingAllocator& allocator_;
  TrainableModel::StepMemory& out_;
  TrainableModel::StepMemory* train_out_;
  std::size_t in_use_before_ = 0;
  std::uint64_t replayed_before_ = 0;
};

// A summary cell's text in lines of at most `width` characters (Keras wraps
// long layer names the same way): breaks at spaces, or inside a word that
// alone is too long. Always at least one line.
std::vector<std::string> wrap_cell(const std::string& text, std::size_t width);

// 1315937 -> "1,315,937".
std::string thousands(std::int64_t n);
// The summary's last lines: total, trainable and non-trainable parameters.
std::string param_totals(std::int64_t count, DType dtype);

}  // namespace recur::detail
