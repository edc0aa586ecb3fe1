// Model checkpoints: one safetensors file (recur/host/safetensors.h) holding
//  - every parameter under its store name, "<layer>.<param>", in PyTorch's
//    layout (a model whose layers are named "0", "1", ... has an
//    nn.Sequential's state_dict keys);
//  - with the optimizer: "optimizer.iterations", "optimizer.learning_rate"
//    and the flat slot buffers ("optimizer.momentum", "optimizer.velocity", ...
//    as Optimizer::state() names them), which share the parameter buffer's
//    order and padding;
//  - metadata: "recur.format" = "recur.checkpoint/1", "recur.model" (the model
//    config, model_config.h), "recur.rng" (each layer's dropout position),
//    "recur.epoch" and "recur.step" (where a resumed fit continues), and any
//    caller metadata.
// For PyTorch, recurrent layers that train one bias (Keras's LSTM and
// SimpleRNN: has_recurrent_bias in layers.h) also get "<layer>.bias_hh_l0" (and
// "_reverse") as zeros, so nn.LSTM.load_state_dict(strict=True) accepts the
// file; loading a file that has them adds them into bias_ih_l0 (only the sum
// matters). docs/checkpoints.md has the names and layouts.
//
// Saving is atomic (a failed save leaves the previous file). Loading is all or
// nothing: the file, every name, shape and dtype are checked before any value
// is copied, and a mismatch is an error naming the tensor.
//
// Resuming is exact: load_checkpoint restores parameters, optimizer state and
// dropout positions, and fit(..., initial_epoch, initial_step) sees the same
// batches, so N steps, save, load, M steps equals N + M steps bit for bit on
// the CPU. (Stateful layers' carried states are not saved: a resumed stateful
// model starts from zero states, as after reset_states().)
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "recur/engine/fit.h"
#include "recur/engine/model.h"

namespace recur {

struct CheckpointPosition {
  int epoch = 0;          // the epoch a resumed fit starts with (FitOptions::initial_epoch)
  std::int64_t step = 0;  // and its first step (FitOptions::initial_step)
};

struct CheckpointInfo {
  CheckpointPosition position;
  bool has_optimizer = false;
  std::map<std::string, std::string> metadata;  // everything in the file's metadata
  // "recur.fit_state": the callbacks' states for a resumed fit (FitOptions::resume_state); empty when absent.
  std::string fit_state;
};

// `model` must be built; with_optimizer needs it compiled.
void save_checkpoint(const TrainableModel& model, const std::string& path, bool with_optimizer = true,
                     CheckpointPosition position = {},
                     const std::map<std::string, std::string>& metadata = {});

// Into a built model with the same parameters (names and shapes). With
// load_optimizer (the model compiled with the same optimizer kind), the
// optimizer state and dropout positions too; a file without optimizer state
// is then an error. A PyTorch state_dict saved as safetensors loads as well.
CheckpointInfo load_checkpoint(TrainableModel& model, const std::string& path, bool load_optimizer = true);

// Just the metadata (and position) of a checkpoint file, without tensors.
CheckpointInfo read_checkpoint_info(const std::string& path);

// Keras's ModelCheckpoint: saves to `path` when `monitor` improves (or every
// epoch), with the optimizer, the position to resume from and every callback's
// state ("recur.fit_state": a resumed run goes on with the best value, history
// and patience counters); if fit is interrupted (Ctrl-C, SIGTERM) and
// interrupt_path is not empty, saves the state there too. The interrupted file
// is removed once it is stale: when `path` is saved at a later position, or
// when a run ends without interruption.
class ModelCheckpoint final : public Callback {
 public:
  explicit ModelCheckpoint(std::string path, std::string monitor = "val_loss", bool save_best_only = true,
                           std::string interrupt_path = "");
  void on_epoch_end(int epoch, const Logs& logs, TrainableModel& model) override;
  void on_epoch_committed(int epoch, TrainableModel& model) override;
  void on_train_end(TrainableModel& model, bool interrupted) override;
  int best_epoch() const { return inner_.best_epoch(); }
  double best() const { return inner_.best(); }
  bool rank_zero_only() const override { return true; }  // data-parallel fit: rank 0 writes
  std::string state_key() const override { return inner_.state_key(); }
  std::string save_state() const override { return inner_.save_state(); }
  void load_state(const std::string& json) override { inner_.load_state(json); }

 private:
  std::map<std::string, std::string> state_metadata() const;
  void remove_stale_interrupted(CheckpointPosition now) const;

  std::string path_, interrupt_path_;
  LambdaCheckpoint inner_;
};

}  // namespace recur
