// Data-parallel pieces that need no second process: shares of a batch, the
// launch environment, the timeout setting, and sources' shards. (The
// collectives and fit across ranks: dist_check.cpp under mpirun, CTest dist.*.)
#include <gtest/gtest.h>

#include <cstdlib>
#include <random>

#include "recur/engine/data_parallel.h"
#include "recur/recur.h"

namespace recur::test {
namespace {

TEST(Distributed, ShardRowsCoverEveryRowOnceInRankOrder) {
  for (std::int64_t rows : {0, 1, 2, 7, 128, 129}) {
    for (int parts : {1, 2, 3, 8}) {
      std::int64_t next = 0, smallest = rows, largest = 0;
      for (int p = 0; p < parts; ++p) {
        const auto [b, e] = shard_rows(rows, p, parts);
        EXPECT_EQ(b, next) << rows << " rows, part " << p << " of " << parts;
        EXPECT_LE(b, e);
        smallest = std::min(smallest, e - b);
        largest = std::max(largest, e - b);
        next = e;
      }
      EXPECT_EQ(next, rows);
      EXPECT_LE(largest - smallest, 1);
    }
  }
  EXPECT_EQ(shard_rows(128, 1, 2), (std::pair<std::int64_t, std::int64_t>{64, 128}));
  EXPECT_THROW(shard_rows(10, 2, 2), ValueError);
}

// Sets environment variables for one test and restores them.
class Env {
 public:
  void set(const char* name, const char* value) {
    const char* old = std::getenv(name);
    saved_.push_back({name, old ? std::string(old) : std::string(), old != nullptr});
    if (value) ::setenv(name, value, 1);
    else ::unsetenv(name);
  }
  ~Env() {
    for (auto it = saved_.rbegin(); it != saved_.rend(); ++it) {
      if (it->had) ::setenv(it->name.c_str(), it->value.c_str(), 1);
      else ::unsetenv(it->name.c_str());
    }
  }

 private:
  struct Saved {
    std::string name, value;
    bool had;
  };
  std::vector<Saved> saved_;
};

TEST(Distributed, LaunchInfoReadsOpenMpiPmiAndSlurm) {
  Env env;
  for (const char* v : {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
                        "OMPI_COMM_WORLD_LOCAL_SIZE", "PMI_RANK", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALRANKID",
                        "MPI_LOCALNRANKS", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_NTASKS_PER_NODE"})
    env.set(v, nullptr);
  EXPECT_EQ(launch_info().size, 1);
  EXPECT_EQ(launch_info().source, "");
  env.set("SLURM_PROCID", "5");
  env.set("SLURM_NTASKS", "8");
  env.set("SLURM_LOCALID", "1");
  LaunchInfo l = launch_info();
  EXPECT_EQ(l.rank, 5);
  EXPECT_EQ(l.size, 8);
  EXPECT_EQ(l.local_rank, 1);
  EXPECT_EQ(l.source, "SLURM_PROCID");
  env.set("PMI_RANK", "2");
  env.set("PMI_SIZE", "4");
  EXPECT_EQ(launch_info().source, "PMI_RANK");  // MPI's own variables before Slurm's
  env.set("OMPI_COMM_WORLD_RANK", "3");
  env.set("OMPI_COMM_WORLD_SIZE", "4");
  env.set("OMPI_COMM_WORLD_LOCAL_RANK", "1");
  l = launch_info();
  EXPECT_EQ(l.rank, 3);
  EXPECT_EQ(l.local_rank, 1);
  EXPECT_EQ(l.source, "OMPI_COMM_WORLD_RANK");
  env.set("OMPI_COMM_WORLD_RANK", "9");  // not below the size: ignored
  EXPECT_EQ(launch_info().source, "PMI_RANK");
}

TEST(Distributed, TimeoutFromEnvironment) {
  Env env;
  env.set("RECUR_DIST_TIMEOUT", nullptr);
  EXPECT_EQ(collective_timeout_seconds(), 300);
  env.set("RECUR_DIST_TIMEOUT", "2.5");
  EXPECT_EQ(collective_timeout_seconds(), 2.5);
  for (const char* bad : {"0", "-1", "ten", "5s", "nan"}) {
    env.set("RECUR_DIST_TIMEOUT", bad);
    try {
      collective_timeout_seconds();
      ADD_FAILURE() << "accepted RECUR_DIST_TIMEOUT=" << bad;
    } catch (const ValueError& e) {
      EXPECT_NE(std::string(e.message()).find("RECUR_DIST_TIMEOUT"), std::string::npos) << e.message();
    }
  }
}

// A source without get_shard: the default slices get()'s batch.
class Plain final : public BatchSource {
 public:
  explicit Plain(const ArrayBatches& a) : a_(a) {}
  std::int64_t size() const override { return a_.size(); }
  Batch get(std::int64_t e, std::int64_t i) const override { return a_.get(e, i); }

 private:
  const ArrayBatches& a_;
};

TEST(Distributed, ShardsOfABatchAreItsRowsInOrder) {
  std::mt19937 g(3);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> xs(21 * 4), ys(21);
  for (float& v : xs) v = u(g);
  for (float& v : ys) v = u(g);
  const Tensor x = Tensor::from_vector(xs, {21, 2, 2}, Device::cpu()), y = Tensor::from_vector(ys, {21, 1}, Device::cpu());
  const ArrayBatches src(x, y, 8, true, 4, Device::cpu());
  const Plain plain(src);
  for (std::int64_t i = 0; i < src.size(); ++i) {
    const Batch whole = src.get(1, i);
    std::vector<float> joined_x, joined_y;
    for (int p = 0; p < 3; ++p) {
      std::int64_t rows = -1, rows_plain = -1;
      const Batch s = src.get_shard(1, i, p, 3, &rows), t = plain.get_shard(1, i, p, 3, &rows_plain);
      EXPECT_EQ(rows, whole.x.dim(0));
      EXPECT_EQ(rows_plain, rows);
      if (!s.x.defined()) {
        EXPECT_FALSE(t.x.defined());
        continue;
      }
      EXPECT_EQ(s.x.to_vector<float>(), t.x.to_vector<float>());
      for (float v : s.x.to_vector<float>()) joined_x.push_back(v);
      for (float v : s.y.to_vector<float>()) joined_y.push_back(v);
    }
    EXPECT_EQ(joined_x, whole.x.to_vector<float>()) << "batch " << i;
    EXPECT_EQ(joined_y, whole.y.to_vector<float>()) << "batch " << i;
  }
}

#if !defined(RECUR_TEST_HAVE_MPI)
TEST(Distributed, WithoutMpiAskingForItIsAClearError) {
  auto m = std::make_unique<Sequential>();
  m->add(std::make_shared<Dense>(1));
  m->build({3}, Device::cpu(), DType::f32, 1);
  m->compile({OptimizerConfig::sgd(0.1), LossKind::MeanSquaredError, {}});
  const ArrayBatches src(Tensor::full({4, 3}, 0.5, DType::f32, Device::cpu()),
                         Tensor::full({4, 1}, 1.0, DType::f32, Device::cpu()), 2);
  FitOptions o;
  o.verbose = 0;
  o.distributed = FitOptions::Distributed::On;
  try {
    fit(*m, src, o);
    ADD_FAILURE() << "fit ran distributed without MPI";
  } catch (const UnsupportedError& e) {
    EXPECT_NE(std::string(e.message()).find("distributed training is unavailable"), std::string::npos) << e.message();
  }
}
#endif

}  // namespace
}  // namespace recur::test
