// Training loops with Keras's vocabulary: fit, evaluate, callbacks (early
// stopping, best checkpoint, reduce-on-plateau, CSV/JSON history), a progress
// line, and Ctrl-C that stops at the end of the current step.
//
// Data comes from a BatchSource: batch i of epoch e, as a pure function of
// (e, i), so a run resumed at (epoch, step) sees exactly the batches an
// uninterrupted run would (exact resume, checkpoint.h).
//
// Reported means follow Keras 3: an epoch's loss (and each metric) is the mean
// of the batch values weighted by the batch size.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "recur/engine/model.h"  // TrainableModel: Sequential, and Model in functional.h
#include "recur/host/communicator.h"

namespace recur {

struct Batch {
  Tensor x, y;
  Tensor mask;           // [B, T] or undefined
  Tensor sample_weight;  // [B] (or [B, T]) or undefined
  // Models with several inputs (functional.h): one tensor (and optionally one
  // mask) per input; when set, x and mask are not used.
  std::vector<Tensor> inputs, masks;
};

class BatchSource {
 public:
  virtual ~BatchSource() = default;
  // Batches in one pass over the data.
  virtual std::int64_t size() const = 0;
  // Batch `index` (0 <= index < size()) of `epoch`; the same arguments give
  // the same batch.
  virtual Batch get(std::int64_t epoch, std::int64_t index) const = 0;
  // Batches in `epoch` (fit's steps when steps_per_epoch is 0): size(), unless
  // the count differs between epochs (length bucketing with a token budget).
  virtual std::int64_t epoch_size(std::int64_t /*epoch*/) const { return size(); }
  // Data-parallel training (data_parallel.h): rank `part` of `parts`'s share of
  // batch `index` of `epoch`, rows shard_rows(rows, part, parts) of get()'s
  // batch, with *rows set to the whole batch's rows. The default reads the
  // whole batch and slices it; a source that can read rows alone overrides it.
  // May return a batch with no rows (an undefined x and inputs).
  virtual Batch get_shard(std::int64_t epoch, std::int64_t index, int part, int parts, std::int64_t* rows) const;
};

// Rows [begin, end) of every tensor of `b` (x, y, mask, sample_weight, inputs, masks).
Batch slice_batch(const Batch& b, std::int64_t begin, std::int64_t end);

// Host arrays x [N, ...] and y [N, ...] (CPU tensors), cut into batches of
// batch_size rows (the last one smaller), reshuffled each epoch from `seed`
// when shuffle is set, and copied to `device`.
class ArrayBatches final : public BatchSource {
 public:
  ArrayBatches(Tensor x, Tensor y, std::int64_t batch_size, bool shuffle = false,
               std::uint64_t seed = 0, Device device = default_device());
  std::int64_t size() const override;
  Batch get(std::int64_t epoch, std::int64_t index) const override;
  // Gathers this rank's rows alone.
  Batch get_shard(std::int64_t epoch, std::int64_t index, int part, int parts, std::int64_t* rows) const override;

 private:
  Batch rows(std::int64_t epoch, std::int64_t index, int part, int parts, std::int64_t* total) const;
  Tensor x_, y_;
  std::int64_t batch_;
  bool shuffle_;
  std::uint64_t seed_;
  Device device_;
};

// One epoch's figures: "loss", each metric by name ("mae"), their "val_"
// versions, "lr", "seconds", "samples_per_second".
using Logs = std::map<std::string, double>;

struct History {
  std::vector<Logs> epochs;
  // One row per epoch, an "epoch" column first, then the keys in sorted order.
  std::string to_csv() const;
  std::string to_json() const;
  // Atomically (temporary file, then rename).
  void write_csv(const std::string& path) const;
  void write_json(const std::string& path) const;
};

class Callback {
 public:
  virtual ~Callback() = default;
  virtual void on_train_begin(TrainableModel& /*model*/) {}
  // Before an epoch's first training step (a resumed epoch's too).
  virtual void on_epoch_begin(int /*epoch*/, TrainableModel& /*model*/) {}
  // Before fit's validation pass at the end of each epoch (not called by a
  // standalone evaluate()).
  virtual void on_test_begin(TrainableModel& /*model*/) {}
  virtual void on_epoch_end(int /*epoch*/, const Logs& /*logs*/, TrainableModel& /*model*/) {}
  // After every callback's on_epoch_end, with fit_state holding the state
  // after this epoch: where checkpoints that a run resumes from are written.
  virtual void on_epoch_committed(int /*epoch*/, TrainableModel& /*model*/) {}
  // interrupted: Ctrl-C, SIGTERM or request_stop ended the run early.
  virtual void on_train_end(TrainableModel& /*model*/, bool /*interrupted*/) {}
  // Resume. A callback that learns across epochs (a best value, patience
  // counters, the history so far) names its state with state_key() and
  // returns it as JSON text from save_state(); fit gives it back through
  // load_state() after on_train_begin when FitOptions::resume_state holds it.
  // The default: no state.
  virtual std::string state_key() const { return ""; }
  virtual std::string save_state() const { return ""; }
  virtual void load_state(const std::string& /*json*/) {}
  // Data-parallel fit: a callback that writes files (checkpoints, history)
  // runs on rank 0 alone; the others run on every rank (they see the same
  // logs, reduced across ranks, and so decide alike).
  virtual bool rank_zero_only() const { return false; }
  // Set by a callback to end training after this epoch (Keras's model.stop_training).
  bool stop_training = false;
  // Set by fit before on_epoch_end and on_train_end: where a resumed run would
  // continue (FitOptions::initial_epoch, initial_step).
  int current_epoch = 0;
  std::int64_t next_step = 0;
  // Set by fit before on_epoch_committed and on_train_end: every callback's
  // state and the current epoch's partial sums, as JSON; a checkpoint stores it
  // ("recur.fit_state", checkpoint.h) and FitOptions::resume_state takes it back.
  std::string fit_state;
};

// Keras's EarlyStopping: stops after `patience` epochs without an improvement
// of `monitor` by more than min_delta; restore_best_weights puts back the best
// epoch's parameters at the end.
class EarlyStopping final : public Callback {
 public:
  explicit EarlyStopping(std::string monitor = "val_loss", int patience = 0, double min_delta = 0,
                         bool restore_best_weights = false);
  void on_train_begin(TrainableModel& model) override;
  void on_epoch_end(int epoch, const Logs& logs, TrainableModel& model) override;
  void on_train_end(TrainableModel& model, bool interrupted) override;
  int best_epoch() const { return best_epoch_; }
  int stopped_epoch() const { return stopped_epoch_; }
  // best value, best epoch, wait; not the best weights of restore_best_weights
  // (after a resume they are restored only if the resumed part improves).
  std::string state_key() const override { return "EarlyStopping"; }
  std::string save_state() const override;
  void load_state(const std::string& json) override;

 private:
  std::string monitor_;
  int patience_;
  double min_delta_;
  bool restore_;
  double best_ = 0;
  int best_epoch_ = -1, wait_ = 0, stopped_epoch_ = -1;
  Tensor best_values_;
};

// Keras's ReduceLROnPlateau as a callback on `monitor` (optimizer.h).
class ReduceLROnPlateauCallback final : public Callback {
 public:
  explicit ReduceLROnPlateauCallback(std::string monitor = "val_loss", double factor = 0.1,
                                     int patience = 10, double min_delta = 1e-4, int cooldown = 0,
                                     double min_lr = 0.0);
  void on_epoch_end(int epoch, const Logs& logs, TrainableModel& model) override;
  std::string state_key() const override { return "ReduceLROnPlateau"; }
  std::string save_state() const override;
  void load_state(const std::string& json) override;

 private:
  std::string monitor_;
  ReduceLROnPlateau plateau_;
};

// Stateful recurrent layers (recurrent.h) carry their states from batch to
// batch; this callback makes them forget at the start of every epoch and
// before validation, so that each pass over a split starts from zero states
// (what Keras users write by hand with model.reset_states()).
class ResetStatesCallback final : public Callback {
 public:
  void on_epoch_begin(int epoch, TrainableModel& model) override;
  void on_test_begin(TrainableModel& model) override;
};

// Calls `save(model, epoch, logs)` when `monitor` improves (save_best_only) or
// every epoch: decided in on_epoch_end, saved in on_epoch_committed (so the
// save sees every callback's state after the epoch, Callback::fit_state).
// (checkpoint.h's ModelCheckpoint builds on this with files.)
class LambdaCheckpoint : public Callback {
 public:
  using SaveFn = std::function<void(TrainableModel&, int epoch, const Logs&)>;
  LambdaCheckpoint(SaveFn save, std::string monitor = "val_loss", bool save_best_only = true);
  void on_epoch_end(int epoch, const Logs& logs, TrainableModel& model) override;
  void on_epoch_committed(int epoch, TrainableModel& model) override;
  double best() const { return best_; }
  int best_epoch() const { return best_epoch_; }
  bool rank_zero_only() const override { return true; }
  // The best value and its epoch: a resumed run saves only on a real improvement.
  std::string state_key() const override { return "ModelCheckpoint"; }
  std::string save_state() const override;
  void load_state(const std::string& json) override;

 private:
  SaveFn save_;
  std::string monitor_;
  bool best_only_;
  double best_ = 0;
  int best_epoch_ = -1;
  bool pending_ = false;
  Logs pending_logs_;
};

// Writes the history after every epoch (CSV, or JSON when the path ends in .json).
// Its state is the history so far: a resumed run writes every epoch, numbered on.
class HistoryLogger final : public Callback {
 public:
  explicit HistoryLogger(std::string path) : path_(std::move(path)) {}
  void on_epoch_end(int epoch, const Logs& logs, TrainableModel& model) override;
  // Every epoch of the run, resumed parts included.
  const History& history() const { return history_; }
  bool rank_zero_only() const override { return true; }
  std::string state_key() const override { return "HistoryLogger"; }
  std::string save_state() const override;
  void load_state(const std::string& json) override;

 private:
  std::string path_;
  History history_;
};

struct FitOptions {
  int epochs = 1;
  int initial_epoch = 0;              // resume: the first epoch to run
  std::int64_t initial_step = 0;      // resume: the first step of initial_epoch
  std::int64_t steps_per_epoch = 0;   // 0: the source's size
  std::int64_t validation_steps = 0;  // 0: the validation source's size
  // 0: silent; 1: a progress line per epoch (a live bar with ETA and samples/s
  // on a terminal, one plain line per epoch otherwise).
  int verbose = 1;
  std::ostream* out = nullptr;  // nullptr: std::cout
  // Stop at the end of the current step on SIGINT or SIGTERM (the handlers
  // are installed for the duration of fit and the previous ones restored).
  bool stop_on_sigint = true;
  // Resume: Callback::fit_state of the checkpoint resumed from ("recur.fit_state"
  // in its metadata, CheckpointInfo::fit_state): the callbacks' states and the
  // sums of a partly run initial_epoch, so the resumed run's logs, history and
  // best-so-far equal an uninterrupted run's. Empty: callbacks start afresh.
  std::string resume_state;
  // Stop as request_stop does after this many training steps of this call
  // (0: no limit): for time-boxed runs and for tests of interruption.
  std::int64_t stop_after_steps = 0;
  // Data-parallel training (data_parallel.h, docs/distributed.md). Auto: when
  // the process was launched as one of several ranks (mpirun, srun:
  // launch_info()), train on the job's world communicator; Off: never; On:
  // always (an error in a build without MPI). `communicator`, when set, is used
  // instead of the world's. With several ranks: each trains on its share of
  // every batch (the BatchSource's batches are the whole job's), gradients
  // are summed in buckets during backward, epoch logs and validation metrics
  // are reduced over the ranks, and only rank 0 prints progress and runs the
  // callbacks that write files (Callback::rank_zero_only).
  enum class Distributed { Auto, Off, On };
  Distributed distributed = Distributed::Auto;
  std::shared_ptr<Communicator> communicator;
};

// Trains `model` (compiled): a Sequential or a functional Model. Returns the history (also on interruption).
History fit(TrainableModel& model, const BatchSource& train, const FitOptions& options = {},
            const BatchSource* validation = nullptr,
            const std::vector<std::shared_ptr<Callback>>& callbacks = {});

// Mean loss and metrics over `steps` batches (0: all) of epoch 0 of `data`.
Logs evaluate(TrainableModel& model, const BatchSource& data, std::int64_t steps = 0);

// Asks a running fit to stop at the end of its current step (what Ctrl-C and SIGTERM do).
void request_stop();
// Whether the last fit ended because of request_stop / Ctrl-C.
bool last_fit_interrupted();

}  // namespace recur
