// Data-parallel checks, run under mpirun by tests/dist_test.sh (CTest dist.*).
//   dist_check equivalence
//       N ranks training with fit() on the global batches of 128 rows (each
//       rank its share) end with the weights of one process on the same
//       batches, to float32 rounding; 257 rows, so the last batch has one row
//       and a rank an empty share. Every rank ends with rank 0's weights, and
//       the epoch losses match. Also: DataParallel with small buckets starts
//       buckets inside the backward pass.
//   dist_check resume DIR PHASE   (PHASE a: N ranks, stop mid-epoch 2;
//       b: any N, resume, stop mid-epoch 3; c: any N, resume to the end and
//       compare with one uninterrupted process)
//   dist_check stall   rank 1 never joins; rank 0's fit must fail with the
//       collective timeout's message (RECUR_DIST_TIMEOUT), then the job is aborted.
//   dist_check kill DIR   rank 1 kills itself (SIGKILL) in epoch 2's second
//       step; rank 0 wrote a checkpoint after epoch 1.
//   dist_check verify FILE   one process: the checkpoint loads.
//   dist_check overhead   times training steps with and without the all-reduce
//       (a measurement for docs/distributed.md, not a CTest test).
// Exit 0 on success; failures print "FAIL: ..." and exit 1.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "recur/engine/data_parallel.h"
#include "recur/recur.h"

using namespace recur;

namespace {

constexpr std::int64_t kRows = 257, kBatch = 128, kSteps = 5, kFeatures = 3;

int g_rank = 0;

[[noreturn]] void fail(const std::string& what) {
  std::cerr << "FAIL (rank " << g_rank << "): " << what << std::endl;
  abort_job(1);
  std::exit(1);
}

struct Data {
  Tensor x, y;
};

// y = mean over time of feature 0 (fresh random inputs, a fixed seed).
Data make_data() {
  std::mt19937_64 g(1234);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> x(static_cast<std::size_t>(kRows * kSteps * kFeatures));
  std::vector<float> y(static_cast<std::size_t>(kRows));
  for (std::int64_t b = 0; b < kRows; ++b) {
    float s = 0;
    for (std::int64_t t = 0; t < kSteps; ++t) {
      for (std::int64_t f = 0; f < kFeatures; ++f) x[std::size_t((b * kSteps + t) * kFeatures + f)] = u(g);
      s += x[std::size_t((b * kSteps + t) * kFeatures)];
    }
    y[std::size_t(b)] = s / float(kSteps);
  }
  return {Tensor::from_vector(x, {kRows, kSteps, kFeatures}, Device::cpu()),
          Tensor::from_vector(y, {kRows, 1}, Device::cpu())};
}

// SGD with momentum for the equivalence (a wrongly scaled gradient shows; Adam
// would hide it), Adam for the resume (its slots travel in checkpoints).
std::unique_ptr<Sequential> make_model(bool adam = false) {
  auto m = std::make_unique<Sequential>();
  RecurrentOptions o;
  o.cell = CellType::GRU;
  o.units = 16;
  m->add(std::make_shared<RNN>(o)).add(std::make_shared<Dense>(8)).add(std::make_shared<Dense>(1));
  m->build({kSteps, kFeatures}, Device::cpu(), DType::f32, 7);
  m->compile({adam ? OptimizerConfig::adam(0.01) : OptimizerConfig::sgd(0.1, 0.9), LossKind::MeanSquaredError,
              {LossKind::MeanAbsoluteError}});
  return m;
}

std::vector<float> weights(TrainableModel& m) { return m.parameters().values().to_vector<float>(); }

// Max over elements of |a - b| / (|b| + 1e-3).
double max_rel(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) fail("weight vectors differ in size");
  double worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double d = std::abs(double(a[i]) - double(b[i])) / (std::abs(double(b[i])) + 1e-3);
    if (std::isnan(d)) return INFINITY;
    worst = std::max(worst, d);
  }
  return worst;
}

FitOptions quiet(int epochs) {
  FitOptions o;
  o.epochs = epochs;
  o.verbose = 0;
  o.stop_on_sigint = false;
  return o;
}

// Every rank must hold rank 0's weights, bit for bit.
void check_same_on_every_rank(TrainableModel& m, Communicator& comm) {
  Tensor mine = m.parameters().values();
  Tensor zero = Tensor::empty(mine.shape(), mine.dtype(), mine.device());
  zero.copy_from(mine);
  comm.broadcast(zero, 0);
  const std::vector<float> a = zero.to_vector<float>(), b = mine.to_vector<float>();
  for (std::size_t i = 0; i < a.size(); ++i)
    if (a[i] != b[i]) fail("rank's weights differ from rank 0's at element " + std::to_string(i));
}

int equivalence() {
  const Data d = make_data();
  auto comm = world_communicator(Device::cpu());
  const int epochs = 2;
  const std::vector<float> before = weights(*make_model());
  auto dist = make_model();
  const ArrayBatches src(d.x, d.y, kBatch, true, 5, Device::cpu());
  const History h = fit(*dist, src, quiet(epochs), &src);
  check_same_on_every_rank(*dist, *comm);
  if (comm->rank() == 0) {
    auto one = make_model();
    FitOptions o = quiet(epochs);
    o.distributed = FitOptions::Distributed::Off;
    const History h1 = fit(*one, src, o, &src);
    const double rel = max_rel(weights(*dist), weights(*one));
    const double moved = max_rel(weights(*one), before);
    std::cout << comm->size() << " ranks vs one process, " << epochs * src.size()
              << " steps of batch " << kBatch << ": max relative weight difference " << rel
              << " (weights moved by up to " << moved << ")" << std::endl;
    if (!(moved > 1e-2)) fail("training did not move the weights; the check would prove nothing");
    if (!(rel < 2e-4)) fail("weights differ by more than float32 rounding: " + std::to_string(rel));
    for (std::size_t e = 0; e < h.epochs.size(); ++e)
      for (const char* k : {"loss", "mae", "val_loss", "val_mae"}) {
        const double a = h.epochs[e].at(k), b = h1.epochs[e].at(k);
        if (!(std::abs(a - b) <= 1e-4 * std::abs(b) + 1e-6))
          fail(std::string("epoch ") + std::to_string(e + 1) + " " + k + ": " + std::to_string(a) + " vs " +
               std::to_string(b));
      }
  }
  // A functional model (two branches merged; the hook follows its node
  // order): the same equivalence.
  {
    auto functional = [] {
      NodeRef x = Input({kSteps, kFeatures}, "x");
      NodeRef hidden = call(GRU(8), x);
      NodeRef a = call(std::make_shared<Dense>(8, Activation::Tanh), hidden);
      NodeRef b = call(std::make_shared<Dense>(8, Activation::Tanh), hidden);
      auto m = std::make_unique<Model>(std::vector<NodeRef>{x},
                                       std::vector<NodeRef>{call(std::make_shared<Dense>(1), concatenate({a, b}))});
      m->build(Device::cpu(), DType::f32, 11);
      m->compile({OptimizerConfig::sgd(0.1, 0.9), LossKind::MeanSquaredError, {}});
      return m;
    };
    auto fd = functional();
    fit(*fd, src, quiet(1));
    check_same_on_every_rank(*fd, *comm);
    if (comm->rank() == 0) {
      auto f1 = functional();
      FitOptions o = quiet(1);
      o.distributed = FitOptions::Distributed::Off;
      fit(*f1, src, o);
      const double rel = max_rel(weights(*fd), weights(*f1));
      std::cout << "functional model: max relative weight difference " << rel << std::endl;
      if (!(rel < 2e-4)) fail("functional model: weights differ: " + std::to_string(rel));
    }
  }
  // Small buckets: several, started while backward runs; one step equals the
  // one-process step on the whole batch.
  auto a = make_model();
  std::int64_t total = 0;
  {
    DataParallel dp(*a, comm, 512);
    if (dp.buckets().size() < 3) fail("512-byte buckets: expected several, got " + std::to_string(dp.buckets().size()));
    const Batch b = src.get_shard(0, 0, comm->rank(), comm->size(), &total);
    dp.set_step_rows(b.x.dim(0), total);
    a->train_step({b.x}, b.y, {}, {});
    if (dp.overlapped_buckets() == 0) fail("no bucket started during the backward pass");
    if (comm->rank() == 0)
      std::cout << dp.buckets().size() << " buckets, " << dp.overlapped_buckets()
                << " started during backward" << std::endl;
  }
  if (comm->rank() == 0) {
    auto one = make_model();
    const Batch b = src.get(0, 0);
    one->train_step({b.x}, b.y, {}, {});
    const double rel = max_rel(weights(*a), weights(*one));
    if (!(rel < 2e-5)) fail("one bucketed step differs from one process: " + std::to_string(rel));
  }
  std::cout << "rank " << comm->rank() << ": OK" << std::endl;
  return 0;
}

int resume(const std::string& dir, const std::string& phase) {
  const Data d = make_data();
  const ArrayBatches src(d.x, d.y, kBatch, true, 5, Device::cpu());
  const std::string best = dir + "/best.safetensors", interrupted = dir + "/interrupted.safetensors";
  const int epochs = 3;
  auto model = make_model(true);
  auto ckpt = std::make_shared<ModelCheckpoint>(best, "loss", false, interrupted);
  auto history = std::make_shared<HistoryLogger>(dir + "/history.csv");
  FitOptions o = quiet(epochs);
  if (phase != "a") {
    const CheckpointInfo info = load_checkpoint(*model, interrupted, true);
    o.initial_epoch = info.position.epoch;
    o.initial_step = info.position.step;
    o.resume_state = info.fit_state;
  }
  if (phase == "a" || phase == "b") o.stop_after_steps = 4;  // into the middle of the next epoch
  fit(*model, src, o, &src, {ckpt, history});
  const LaunchInfo l = launch_info();
  if (l.rank == 0 && phase != "c") {
    const CheckpointPosition at = read_checkpoint_info(interrupted).position;
    std::cout << "phase " << phase << " on " << l.size << " rank(s): stopped at epoch " << at.epoch + 1 << ", step "
              << at.step + 1 << std::endl;
  }
  if (phase == "c" && l.rank == 0) {
    auto one = make_model(true);
    FitOptions r = quiet(epochs);
    r.distributed = FitOptions::Distributed::Off;
    auto h1 = std::make_shared<HistoryLogger>(dir + "/reference.csv");
    fit(*one, src, r, &src, {h1});
    const double rel = max_rel(weights(*model), weights(*one));
    std::cout << "resumed across 2 -> 1 -> 2 ranks vs one uninterrupted process: max relative weight difference "
              << rel << std::endl;
    if (!(rel < 5e-4)) fail("resumed weights differ: " + std::to_string(rel));
    const History& a = history->history();
    const History& b = h1->history();
    if (a.epochs.size() != b.epochs.size()) fail("history has " + std::to_string(a.epochs.size()) + " epochs");
    for (std::size_t e = 0; e < a.epochs.size(); ++e) {
      const double x = a.epochs[e].at("loss"), y = b.epochs[e].at("loss");
      if (!(std::abs(x - y) <= 1e-4 * std::abs(y))) fail("epoch " + std::to_string(e + 1) + " loss " +
                                                            std::to_string(x) + " vs " + std::to_string(y));
    }
  }
  return 0;
}

// A BatchSource that runs `fault` when rank 1 reads its share of batch
// `batch` of epoch `epoch`, then reads it as usual.
class FaultySource final : public BatchSource {
 public:
  FaultySource(const ArrayBatches& inner, std::int64_t epoch, std::int64_t batch, std::function<void()> fault)
      : inner_(inner), epoch_(epoch), batch_(batch), fault_(std::move(fault)) {}
  std::int64_t size() const override { return inner_.size(); }
  Batch get(std::int64_t e, std::int64_t i) const override { return inner_.get(e, i); }
  Batch get_shard(std::int64_t e, std::int64_t i, int part, int parts, std::int64_t* rows) const override {
    if (e == epoch_ && i == batch_ && part == 1) fault_();
    return inner_.get_shard(e, i, part, parts, rows);
  }

 private:
  const ArrayBatches& inner_;
  std::int64_t epoch_, batch_;
  std::function<void()> fault_;
};

int stall() {
  const Data d = make_data();
  auto model = make_model();
  const ArrayBatches src(d.x, d.y, kBatch, true, 5, Device::cpu());
  // Rank 1's share of batch 1 of epoch 0 never comes, as from a dead file system.
  const FaultySource stalling(src, 0, 1, [] { std::this_thread::sleep_for(std::chrono::seconds(120)); });
  const auto t0 = std::chrono::steady_clock::now();
  try {
    fit(*model, stalling, quiet(1));
  } catch (const DistributedError& e) {
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::cerr << "caught after " << s << " s: " << e.message() << std::endl;
    abort_job(3);  // what the CLI does
    return 3;
  }
  fail("fit returned although rank 1 never joined");
}

int kill_rank(const std::string& dir) {
  const Data d = make_data();
  auto model = make_model(true);
  const ArrayBatches src(d.x, d.y, kBatch, true, 5, Device::cpu());
  // Rank 1 dies (SIGKILL) when it reads batch 1 of epoch 1.
  const FaultySource killing(src, 1, 1, [] { ::kill(::getpid(), SIGKILL); });
  auto ckpt = std::make_shared<ModelCheckpoint>(dir + "/every.safetensors", "loss", false);
  fit(*model, killing, quiet(3), nullptr, {ckpt});
  fail("fit finished although rank 1 was killed");
}

// The all-reduce's cost per training step (docs/distributed.md): every rank
// times K steps on its share of a batch of 2 x 64 rows without communication,
// then K steps with DataParallel (all ranks at once both times, so that both
// see the same contention). Two models: the forecaster's GRU(32) and a dense
// model with ~430k parameters.
int overhead() {
  auto comm = world_communicator(Device::cpu());
  const std::int64_t per_rank = 64, T = 120, F = 14, warm = 10, steps = 40;
  std::mt19937_64 g(99);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> xs(static_cast<std::size_t>(per_rank * T * F)), ys(static_cast<std::size_t>(per_rank));
  for (float& v : xs) v = u(g);
  for (float& v : ys) v = u(g);
  const Tensor x = Tensor::from_vector(xs, {per_rank, T, F}, Device::cpu());
  const Tensor y = Tensor::from_vector(ys, {per_rank, 1}, Device::cpu());
  for (const std::string kind : {"gru32", "dense256"}) {
    auto m = std::make_unique<Sequential>();
    if (kind == "gru32") {
      RecurrentOptions o;
      o.cell = CellType::GRU;
      o.units = 32;
      m->add(std::make_shared<RNN>(o)).add(std::make_shared<Dense>(1));
    } else {
      m->add(std::make_shared<Flatten>()).add(std::make_shared<Dense>(256)).add(std::make_shared<Dense>(1));
    }
    m->build({T, F}, Device::cpu(), DType::f32, 3);
    m->compile({OptimizerConfig::rmsprop(1e-3), LossKind::MeanSquaredError, {}});
    auto time_steps = [&] {
      for (std::int64_t i = 0; i < warm; ++i) m->train_step({x}, y, {}, {});
      std::vector<double> sync{0};
      comm->all_reduce_sum(sync);  // start together
      const auto t0 = std::chrono::steady_clock::now();
      for (std::int64_t i = 0; i < steps; ++i) m->train_step({x}, y, {}, {});
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / double(steps);
    };
    const double alone = time_steps();
    double with = 0, in_end = 0;
    std::int64_t buckets = 0;
    {
      DataParallel dp(*m, comm);
      dp.set_step_rows(per_rank, per_rank * comm->size());
      with = time_steps();
      in_end = dp.end_seconds() / double(dp.steps());
      buckets = std::int64_t(dp.buckets().size());
    }
    // The all-reduce alone: the model's flat gradient buffer, 50 times.
    Tensor buf = Tensor::full({m->parameters().buffer_numel()}, 1.0, DType::f32, Device::cpu());
    for (int i = 0; i < 5; ++i) comm->all_reduce_sum(buf);
    std::vector<double> sync{0};
    comm->all_reduce_sum(sync);
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 50; ++i) comm->all_reduce_sum(buf);
    const double reduce = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / 50;
    std::vector<double> v{alone, with, in_end, reduce};
    comm->all_reduce_sum(v);
    if (comm->rank() == 0)
      std::cout << kind << ": " << m->count_params() << " parameters (" << buckets << " bucket(s)), batch "
                << per_rank << " per rank on " << comm->size() << " ranks: step " << 1e3 * v[0] / comm->size()
                << " ms alone, " << 1e3 * v[1] / comm->size() << " ms with the all-reduce; in on_backward_end "
                << 1e3 * v[2] / comm->size() << " ms (rank mean, waiting for the slower rank included); "
                << "the all-reduce alone " << 1e3 * v[3] / comm->size() << " ms" << std::endl;
  }
  return 0;
}

int verify(const std::string& file) {
  auto model = make_model(true);
  const CheckpointInfo info = load_checkpoint(*model, file, true);
  std::cout << file << " loads: epoch " << info.position.epoch << ", step " << info.position.step << std::endl;
  if (info.position.epoch != 1) fail("expected the checkpoint of epoch 1");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  g_rank = launch_info().rank;
  int rc = 2;
  try {
    if (mode == "equivalence") rc = equivalence();
    else if (mode == "resume" && argc == 4) rc = resume(argv[2], argv[3]);
    else if (mode == "stall") rc = stall();
    else if (mode == "overhead") rc = overhead();
    else if (mode == "kill" && argc == 3) rc = kill_rank(argv[2]);
    else if (mode == "verify" && argc == 3) rc = verify(argv[2]);
    else std::cerr << "usage: dist_check equivalence | resume DIR a|b|c | stall | kill DIR | verify FILE | overhead\n";
  } catch (const Error& e) {
    fail(e.what());
  }
  finalize_distributed();
  return rc;
}
