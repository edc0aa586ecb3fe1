// Optimizer, schedules and ReduceLROnPlateau. The per-element math lives in
// recur/kernels/optim.h; this file holds the per-step scalars (learning rate,
// Adam's bias correction) and the state.
#include "recur/engine/optimizer.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "recur/host/ops.h"

namespace recur {

OptimizerConfig OptimizerConfig::sgd(double learning_rate, double momentum, bool nesterov) {
  OptimizerConfig c;
  c.kind = OptimizerKind::SGD;
  c.learning_rate = learning_rate;
  c.momentum = momentum;
  c.nesterov = nesterov;
  return c;
}

OptimizerConfig OptimizerConfig::rmsprop(double learning_rate, double rho, double momentum,
                                         double epsilon, bool centered) {
  OptimizerConfig c;
  c.kind = OptimizerKind::RMSprop;
  c.learning_rate = learning_rate;
  c.rho = rho;
  c.momentum = momentum;
  c.epsilon = epsilon;
  c.centered = centered;
  return c;
}

OptimizerConfig OptimizerConfig::adam(double learning_rate, double beta_1, double beta_2,
                                      double epsilon) {
  OptimizerConfig c;
  c.kind = OptimizerKind::Adam;
  c.learning_rate = learning_rate;
  c.beta_1 = beta_1;
  c.beta_2 = beta_2;
  c.epsilon = epsilon;
  return c;
}

OptimizerConfig OptimizerConfig::adamw(double learning_rate, double weight_decay, double beta_1,
                                       double beta_2, double epsilon) {
  OptimizerConfig c = adam(learning_rate, beta_1, beta_2, epsilon);
  c.weight_decay = weight_decay;
  return c;
}

ExponentialDecay::ExponentialDecay(double initial_learning_rate, std::int64_t decay_steps,
                                   double decay_rate, bool staircase)
    : initial_(initial_learning_rate), rate_(decay_rate), steps_(decay_steps),
      staircase_(staircase) {
  RECUR_CHECK(decay_steps > 0, Value, "ExponentialDecay: decay_steps must be > 0, got ",
              decay_steps);
}

double ExponentialDecay::operator()(std::int64_t step) const {
  double p = double(step) / double(steps_);
  if (staircase_) p = std::floor(p);
  return initial_ * std::pow(rate_, p);
}

Optimizer::Optimizer(const OptimizerConfig& config, ParameterStore& params)
    : config_(config), params_(&params), lr_(config.learning_rate) {
  const OptimizerConfig& c = config_;
  RECUR_CHECK(params.allocated(), Value,
              "Optimizer: allocate the ParameterStore before creating its optimizer");
  RECUR_CHECK(std::isfinite(c.learning_rate) && c.learning_rate >= 0, Value,
              "Optimizer: learning_rate must be finite and >= 0, got ", c.learning_rate);
  RECUR_CHECK(!(c.global_clipnorm > 0 && c.clipvalue > 0), Value,
              "Optimizer: set at most one of global_clipnorm and clipvalue (as Keras)");
  RECUR_CHECK(c.global_clipnorm >= 0 && c.clipvalue >= 0 && c.weight_decay >= 0 &&
                  c.epsilon >= 0,
              Value, "Optimizer: global_clipnorm, clipvalue, weight_decay and epsilon must be >= 0");
  RECUR_CHECK(c.momentum >= 0 && c.momentum <= 1, Value,
              "Optimizer: momentum must be in [0, 1], got ", c.momentum);
  RECUR_CHECK(!c.nesterov || c.kind == OptimizerKind::SGD, Value,
              "Optimizer: nesterov applies to SGD only");
  const bool uses[3] = {
      (c.kind == OptimizerKind::SGD && c.momentum != 0) || c.kind != OptimizerKind::SGD,
      (c.kind == OptimizerKind::RMSprop && c.momentum > 0) || c.kind == OptimizerKind::Adam,
      c.kind == OptimizerKind::RMSprop && c.centered};
  const char* names[3];
  switch (c.kind) {
    case OptimizerKind::SGD: names[0] = "momentum", names[1] = names[2] = nullptr; break;
    case OptimizerKind::RMSprop:
      names[0] = "velocity", names[1] = "momentum", names[2] = "average_gradient";
      break;
    case OptimizerKind::Adam: names[0] = "momentum", names[1] = "velocity", names[2] = nullptr; break;
  }
  for (int k = 0; k < 3; ++k)
    if (uses[k]) {
      slots_[k] = Tensor::zeros({params.buffer_numel()}, params.dtype(), params.device());
      slot_names_[k] = names[k];
    }
}

double Optimizer::learning_rate() const { return schedule_ ? (*schedule_)(iterations_) : lr_; }

void Optimizer::set_learning_rate(double lr) {
  RECUR_CHECK(!schedule_, Value, "Optimizer::set_learning_rate: a schedule drives the rate");
  RECUR_CHECK(std::isfinite(lr) && lr >= 0, Value, "Optimizer: learning rate ", lr,
              " must be finite and >= 0");
  lr_ = lr;
}

void Optimizer::set_schedule(std::shared_ptr<const LearningRateSchedule> schedule) {
  schedule_ = std::move(schedule);
}

void Optimizer::step() {
  const OptimizerConfig& c = config_;
  OptimizerStep s;
  s.kind = c.kind;
  s.param = params_->values();
  s.grad = params_->grads();
  s.slot0 = slots_[0];
  s.slot1 = slots_[1];
  s.slot2 = slots_[2];
  s.lr = learning_rate();
  s.momentum = c.momentum;
  s.nesterov = c.nesterov;
  s.rho = c.rho;
  s.centered = c.centered;
  s.beta1 = c.beta_1;
  s.beta2 = c.beta_2;
  s.epsilon = c.epsilon;
  s.weight_decay = c.weight_decay;
  s.clipvalue = c.clipvalue;
  if (c.kind == OptimizerKind::Adam) {
    const double t = double(iterations_ + 1);
    s.alpha = s.lr * std::sqrt(1 - std::pow(c.beta_2, t)) / (1 - std::pow(c.beta_1, t));
  }
  if (c.global_clipnorm > 0) {
    s.clipnorm = c.global_clipnorm;
    s.grad_sq_sum = ops::sum_squares(s.grad);
  }
  ops::optimizer_step(s);
  ++iterations_;
}

std::vector<NamedTensor> Optimizer::state() const {
  std::vector<NamedTensor> out;
  out.emplace_back("iterations", Tensor::from_vector(std::vector<double>{double(iterations_)},
                                                     {1}, Device::cpu()));
  out.emplace_back("learning_rate",
                   Tensor::from_vector(std::vector<double>{lr_}, {1}, Device::cpu()));
  for (int k = 0; k < 3; ++k)
    if (slot_names_[k]) out.emplace_back(slot_names_[k], slots_[k]);
  return out;
}

void Optimizer::load_state(const std::vector<NamedTensor>& state) {
  const auto mine = this->state();
  RECUR_CHECK(state.size() == mine.size(), Value, "Optimizer::load_state: ", state.size(),
              " tensors given, this optimizer has ", mine.size());
  for (std::size_t i = 0; i < mine.size(); ++i) {
    RECUR_CHECK(state[i].first == mine[i].first, Value, "Optimizer::load_state: entry ", i,
                " is '", state[i].first, "', expected '", mine[i].first, "'");
    RECUR_CHECK(state[i].second.defined() && state[i].second.numel() == mine[i].second.numel(),
                Shape, "Optimizer::load_state: '", mine[i].first, "' must have ",
                mine[i].second.numel(), " elements");
  }
  const double it = state[0].second.to_vector<double>()[0];
  RECUR_CHECK(it >= 0 && it == std::floor(it), Value,
              "Optimizer::load_state: 'iterations' must be a whole number >= 0, got ", it);
  iterations_ = std::int64_t(it);
  lr_ = state[1].second.to_vector<double>()[0];
  for (std::size_t i = 2; i < mine.size(); ++i) {
    Tensor slot = mine[i].second;  // a handle to the live slot buffer
    slot.copy_from(state[i].second);
  }
}

ReduceLROnPlateau::ReduceLROnPlateau(double factor, int patience, double min_delta, int cooldown,
                                     double min_lr, Mode mode)
    : factor_(factor), min_delta_(std::abs(min_delta)), min_lr_(min_lr), patience_(patience),
      cooldown_(cooldown), mode_(mode),
      best_(mode == Mode::Min ? std::numeric_limits<double>::infinity()
                              : -std::numeric_limits<double>::infinity()) {
  RECUR_CHECK(factor < 1.0 && factor >= 0, Value,
              "ReduceLROnPlateau does not support a factor >= 1.0 (or < 0), got ", factor);
  RECUR_CHECK(patience >= 0 && cooldown >= 0 && min_lr >= 0, Value,
              "ReduceLROnPlateau: patience, cooldown and min_lr must be >= 0");
}

void ReduceLROnPlateau::restore(double best, int wait, int cooldown_counter) {
  RECUR_CHECK(wait >= 0 && cooldown_counter >= 0, Value, "ReduceLROnPlateau: wait and cooldown must be >= 0");
  best_ = best;
  wait_ = wait;
  cooldown_counter_ = cooldown_counter;
}

bool ReduceLROnPlateau::improved(double value) const {
  return mode_ == Mode::Min ? value < best_ - min_delta_ : value > best_ + min_delta_;
}

double ReduceLROnPlateau::on_epoch_end(double value, double lr) {
  // Keras's order: the cooldown counts down first, then improvement resets
  // the wait, else (outside cooldown) the wait grows and may cut the rate.
  if (cooldown_counter_ > 0) {
    --cooldown_counter_;
    wait_ = 0;
  }
  if (improved(value)) {
    best_ = value;
    wait_ = 0;
  } else if (cooldown_counter_ == 0) {
    if (++wait_ >= patience_) {
      if (lr > double(float(min_lr_))) {
        lr = std::max(lr * factor_, min_lr_);
        cooldown_counter_ = cooldown_;
        wait_ = 0;
      }
    }
  }
  return lr;
}

void ReduceLROnPlateau::on_epoch_end(double value, Optimizer& optimizer) {
  const double lr = optimizer.learning_rate();
  const double next = on_epoch_end(value, lr);
  if (next != lr) optimizer.set_learning_rate(next);
}

}  // namespace recur
