// Data-parallel training (docs/distributed.md): N ranks (processes launched
// by mpirun or srun, communicator.h) each train on their share of every batch
// and sum their gradients, so N ranks together take the steps that one process
// would take on the whole batch.
//
// DataParallel is the GradientHook that fit() installs on the model when it
// runs distributed (FitOptions::distributed). Per training step:
//  - the loss gradient is scaled by this rank's rows / the batch's rows, so the
//    sum over ranks of the gradients is the whole batch's mean-loss gradient
//    (the loss is a mean over rows; uneven shares are weighted by their rows);
//  - the flat gradient buffer (parameters.h) is cut into buckets at parameter
//    boundaries (about RECUR_DIST_BUCKET_MB MiB each, default 4); a bucket's
//    all-reduce starts as soon as the backward pass has completed every
//    parameter in it, buckets in a fixed order (last to first) on every rank,
//    and runs while the backward pass goes on through earlier layers;
//  - on_backward_end waits for all of them (against the collective timeout),
//    and the optimizer takes its one fused step over the summed buffer.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "recur/engine/model.h"
#include "recur/host/communicator.h"

namespace recur {

// Rows [begin, end) of a batch of `rows` rows that rank `part` of `parts` trains
// on: contiguous, in rank order, sizes differing by at most one (rank r's share
// of 128 rows on 2 ranks: rows 64r .. 64r + 63). May be empty when rows < parts.
std::pair<std::int64_t, std::int64_t> shard_rows(std::int64_t rows, int part, int parts);

class DataParallel final : public GradientHook {
 public:
  // Installs itself as `model`'s gradient hook (removed by the destructor).
  // bucket_bytes 0: RECUR_DIST_BUCKET_MB MiB, else 4 MiB.
  DataParallel(TrainableModel& model, std::shared_ptr<Communicator> comm, std::size_t bucket_bytes = 0);
  ~DataParallel() override;
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  Communicator& communicator() const { return *comm_; }
  int rank() const { return comm_->rank(); }
  int size() const { return comm_->size(); }

  // Copies rank 0's parameter values to every rank (fit does it first).
  void broadcast_parameters();
  // This step: `local` of the batch's `global` rows are this rank's.
  void set_step_rows(std::int64_t local, std::int64_t global);

  double loss_scale() const override { return scale_; }
  void on_backward_begin() override;
  void on_layer_backward(const Layer& layer) override;
  void on_backward_end() override;

  // Buckets: element ranges [begin, end) of the flat gradient buffer.
  const std::vector<std::pair<std::int64_t, std::int64_t>>& buckets() const { return buckets_; }
  // Steps synchronised so far, buckets whose all-reduce was started inside the
  // backward pass (overlapped), and seconds spent in on_backward_end (starting
  // the remaining buckets and waiting for all: the part not hidden).
  std::int64_t steps() const { return steps_; }
  std::int64_t overlapped_buckets() const { return overlapped_; }
  double end_seconds() const { return end_seconds_; }

 private:
  void start(std::size_t b);

  TrainableModel& model_;
  std::shared_ptr<Communicator> comm_;
  std::vector<std::pair<std::int64_t, std::int64_t>> buckets_;
  std::vector<std::size_t> param_bucket_;              // parameter index -> bucket
  std::vector<int> bucket_params_;                     // parameters in each bucket
  std::map<const Layer*, std::vector<std::size_t>> layer_params_;
  // Per step:
  bool active_ = false;
  std::vector<int> remaining_;
  std::vector<bool> ready_;
  std::int64_t next_ = -1;  // the next bucket to start (they start last to first)
  std::vector<std::unique_ptr<PendingCollective>> pending_;
  double scale_ = 1.0;
  std::int64_t steps_ = 0, overlapped_ = 0;
  double end_seconds_ = 0;
};

}  // namespace recur
