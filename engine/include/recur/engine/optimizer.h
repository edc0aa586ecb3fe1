// Optimizers over a ParameterStore, as Keras 3 defines them: SGD (momentum,
// Nesterov), RMSprop, Adam and AdamW, with clipping by global norm or by value
// and learning-rate schedules. The update formulas, and the order Keras
// applies clipping, weight decay and the update in, are in
// recur/kernels/optim.h. One step is one fused kernel over the flat
// parameter, gradient and slot buffers (plus, for clipping by global norm,
// one sum-of-squares reduction before it), however many parameters there are.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "recur/engine/parameters.h"
#include "recur/kernels/optim.h"

namespace recur {

// Keras's defaults in each factory. global_clipnorm and clipvalue: 0 is off,
// and at most one may be set (as Keras). weight_decay > 0 decays every
// parameter (Keras's default, with no variables excluded).
struct OptimizerConfig {
  OptimizerKind kind = OptimizerKind::SGD;
  double learning_rate = 0.01;
  double momentum = 0.0;  // SGD, RMSprop
  bool nesterov = false;  // SGD
  double rho = 0.9;       // RMSprop
  bool centered = false;  // RMSprop
  double beta_1 = 0.9, beta_2 = 0.999;  // Adam, AdamW
  double epsilon = 1e-7;
  double weight_decay = 0.0;
  double global_clipnorm = 0.0, clipvalue = 0.0;

  static OptimizerConfig sgd(double learning_rate = 0.01, double momentum = 0.0,
                             bool nesterov = false);
  static OptimizerConfig rmsprop(double learning_rate = 0.001, double rho = 0.9,
                                 double momentum = 0.0, double epsilon = 1e-7,
                                 bool centered = false);
  static OptimizerConfig adam(double learning_rate = 0.001, double beta_1 = 0.9,
                              double beta_2 = 0.999, double epsilon = 1e-7);
  // Adam with decoupled weight decay: p -= p * weight_decay * lr before the Adam update.
  static OptimizerConfig adamw(double learning_rate = 0.001, double weight_decay = 0.004,
                               double beta_1 = 0.9, double beta_2 = 0.999, double epsilon = 1e-7);
};

// lr as a function of the optimizer's iteration count (Keras's
// LearningRateSchedule: called with the number of steps taken so far).
class LearningRateSchedule {
 public:
  virtual ~LearningRateSchedule() = default;
  virtual double operator()(std::int64_t step) const = 0;
};

// Keras ExponentialDecay: initial * decay_rate^(step / decay_steps), the
// exponent floored when staircase.
class ExponentialDecay final : public LearningRateSchedule {
 public:
  ExponentialDecay(double initial_learning_rate, std::int64_t decay_steps, double decay_rate,
                   bool staircase = false);
  double operator()(std::int64_t step) const override;

 private:
  double initial_, rate_;
  std::int64_t steps_;
  bool staircase_;
};

using NamedTensor = std::pair<std::string, Tensor>;

class Optimizer {
 public:
  // Allocates the slot buffers (zeros) beside `params`, which must be
  // allocated and must outlive the optimizer.
  Optimizer(const OptimizerConfig& config, ParameterStore& params);
  // A copy would share the slot buffers (tensors are handles); moving is fine.
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;
  Optimizer(Optimizer&&) = default;
  Optimizer& operator=(Optimizer&&) = default;

  // One step from params.grads() into params.values(): clipping, weight decay
  // and the update of every parameter in one fused launch.
  void step();

  std::int64_t iterations() const { return iterations_; }
  // The rate the next step uses: the schedule's at iterations(), else the set one.
  double learning_rate() const;
  // Sets a constant rate (what ReduceLROnPlateau does). ValueError when a
  // schedule drives the rate (Keras refuses this too).
  void set_learning_rate(double lr);
  void set_schedule(std::shared_ptr<const LearningRateSchedule> schedule);
  const OptimizerConfig& config() const { return config_; }

  // Everything a checkpoint must save to resume exactly, by Keras's names:
  // "iterations" ([1] float64 on the CPU, a copy), "learning_rate" (likewise),
  // then the flat slot buffers on the parameters' device (live views, in
  // ParameterStore order and padding): SGD with momentum "momentum"; RMSprop
  // "velocity", then "momentum" and "average_gradient" when used; Adam/AdamW
  // "momentum" (m) and "velocity" (v).
  std::vector<NamedTensor> state() const;
  // Restores what state() returned (same names and sizes; any device).
  void load_state(const std::vector<NamedTensor>& state);

 private:
  OptimizerConfig config_;
  ParameterStore* params_;
  std::shared_ptr<const LearningRateSchedule> schedule_;
  double lr_;
  std::int64_t iterations_ = 0;
  Tensor slots_[3];
  const char* slot_names_[3] = {nullptr, nullptr, nullptr};
};

// Keras's ReduceLROnPlateau callback: call on_epoch_end with the monitored
// value (e.g. the validation loss) after each epoch. After `patience` epochs
// without an improvement of more than min_delta, lr becomes
// max(lr * factor, min_lr), then `cooldown` epochs pass before counting again.
class ReduceLROnPlateau {
 public:
  enum class Mode { Min, Max };
  ReduceLROnPlateau(double factor = 0.1, int patience = 10, double min_delta = 1e-4,
                    int cooldown = 0, double min_lr = 0.0, Mode mode = Mode::Min);
  // Returns the rate for the next epoch given the current one.
  double on_epoch_end(double value, double lr);
  // Reads and sets the optimizer's rate.
  void on_epoch_end(double value, Optimizer& optimizer);

  double best() const { return best_; }
  int wait() const { return wait_; }
  int cooldown_counter() const { return cooldown_counter_; }
  // Puts back best(), wait() and cooldown_counter() (a resumed run).
  void restore(double best, int wait, int cooldown_counter);

 private:
  bool improved(double value) const;
  double factor_, min_delta_, min_lr_;
  int patience_, cooldown_;
  Mode mode_;
  double best_;
  int wait_ = 0, cooldown_counter_ = 0;
};

}  // namespace recur
