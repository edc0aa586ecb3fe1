// Step arenas (allocator.h): the liveness planner, the allocator's record and
// replay of a region, its refusal to hand out memory still in use when a
// region diverges from its plan, and whole training steps served from an arena
// giving the same losses, bit for bit, as steps served from the cache.
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "recur/engine/functional.h"
#include "recur/engine/layers.h"
#include "recur/host/allocator.h"
#include "test_util.h"

namespace recur::test {
namespace {

// Requests alive at the same tick never share a byte; offsets are aligned; the
// arena is at least the live peak and at most the sum of the sizes.
TEST(ArenaPlan, NoTwoLiveBlocksShareBytes) {
  std::mt19937_64 g(test_seed());
  for (int trial = 0; trial < 50; ++trial) {
    const std::size_t n = 1 + g() % 200;
    std::vector<ArenaRequest> r(n);
    std::size_t sum = 0;
    for (auto& q : r) {
      q.bytes = 1 + g() % 5000;
      q.begin = g() % 1000;
      q.end = q.begin + 1 + g() % 300;
      sum += (q.bytes + 255) / 256 * 256;
    }
    const ArenaPlan p = plan_arena(r, 256);
    ASSERT_EQ(p.offsets.size(), n);
    EXPECT_GE(p.bytes, p.live_peak);
    EXPECT_LE(p.bytes, sum);
    for (std::size_t i = 0; i < n; ++i) {
      EXPECT_EQ(p.offsets[i] % 256, 0u);
      EXPECT_LE(p.offsets[i] + r[i].bytes, p.bytes);
      for (std::size_t j = i + 1; j < n; ++j) {
        const bool together = r[i].begin < r[j].end && r[j].begin < r[i].end;
        const bool share = p.offsets[i] < p.offsets[j] + r[j].bytes && p.offsets[j] < p.offsets[i] + r[i].bytes;
        ASSERT_FALSE(together && share) << "trial " << trial << ": requests " << i << " and " << j;
      }
    }
  }
}

// Blocks that live one after another reuse the same bytes: a chain needs only
// its largest block; blocks all alive at once need their sum.
TEST(ArenaPlan, ReusesBytesAcrossLifetimes) {
  std::vector<ArenaRequest> chain;
  for (std::uint64_t t = 0; t < 10; ++t) chain.push_back({1024 * (t + 1), 2 * t, 2 * t + 1});
  const ArenaPlan c = plan_arena(chain, 256);
  EXPECT_EQ(c.bytes, 10u * 1024);
  EXPECT_EQ(c.live_peak, 10u * 1024);
  std::vector<ArenaRequest> all;
  for (std::uint64_t t = 0; t < 10; ++t) all.push_back({1000, t, 100});
  const ArenaPlan a = plan_arena(all, 256);
  EXPECT_EQ(a.bytes, 10u * 1024);  // each rounded up to 1024
  EXPECT_EQ(a.live_peak, a.bytes);
  expect_error([] { plan_arena({{64, 5, 5}}, 256); }, "ends (5) before it begins (5)");
  expect_error([] { plan_arena({}, 100); }, "alignment must be a power of two, got 100");
}

// A host allocator that counts what it hands out.
class CountingRaw final : public RawAllocator {
 public:
  void* allocate(std::size_t bytes) noexcept override {
    ++calls;
    return ::operator new(bytes, std::align_val_t(64), std::nothrow);
  }
  void deallocate(void* p, std::size_t) noexcept override { ::operator delete(p, std::align_val_t(64)); }
  bool host_memory() const override { return true; }
  int calls = 0;
};

struct Block {
  void* p = nullptr;
  std::size_t bytes = 0;
};

// The same region twice more after recording: the replays are served from one
// arena, at the same addresses, with no new raw allocation.
TEST(StepArena, ReplaysARecordedRegionAtStableAddresses) {
  auto raw = std::make_unique<CountingRaw>();
  CountingRaw& counts = *raw;
  CachingAllocator a("test", std::move(raw));
  if (!a.arenas_enabled()) GTEST_SKIP() << "RECUR_STEP_ARENA=0 in the environment";
  const std::uint64_t owner = CachingAllocator::new_region_owner();
  std::vector<void*> first;
  auto step = [&](std::vector<void*>& seen) {
    a.begin_region(owner, 7);
    Block x, y, z;
    x.p = a.allocate(4000, x.bytes);
    y.p = a.allocate(9000, y.bytes);
    std::memset(x.p, 1, 4000);
    std::memset(y.p, 2, 9000);
    a.release(x.p, x.bytes);  // x's bytes are free again before z
    z.p = a.allocate(3000, z.bytes);
    std::memset(z.p, 3, 3000);
    EXPECT_EQ(static_cast<unsigned char*>(y.p)[8999], 2);  // z did not land on y
    seen = {x.p, y.p, z.p};
    a.release(y.p, y.bytes);
    a.release(z.p, z.bytes);
    a.end_region();
  };
  std::vector<void*> rec, r1, r2;
  step(rec);
  EXPECT_EQ(a.arena_stats().regions_recorded, 1u);
  EXPECT_EQ(a.arena_stats().regions_replayed, 0u);
  step(r1);
  const int raw_after_first_replay = counts.calls;
  step(r2);
  EXPECT_EQ(counts.calls, raw_after_first_replay);  // nothing new from the raw allocator
  EXPECT_EQ(r1, r2);
  const ArenaStats s = a.arena_stats();
  EXPECT_EQ(s.regions_replayed, 2u);
  EXPECT_EQ(s.last_requests, 3u);
  EXPECT_GE(s.last_arena, s.last_live_peak);
  EXPECT_EQ(s.reserved, s.last_arena);
  // x and z never live together: the plan may overlap them; y never overlaps either.
  auto* y0 = static_cast<char*>(r1[1]);
  for (int k : {0, 2}) {
    auto* b = static_cast<char*>(r1[std::size_t(k)]);
    EXPECT_TRUE(b + 3000 <= y0 || y0 + 9000 <= b) << "block " << k << " overlaps y";
  }
  EXPECT_EQ(a.stats().in_use, 0u);
  a.drop_arenas(owner);
  EXPECT_EQ(a.arena_stats().reserved, 0u);
}

// A replay that keeps a block alive past the point where the plan frees it
// must not see that block's bytes handed to a later request; the plan goes
// stale and is recorded again; a key that keeps diverging stops being planned.
TEST(StepArena, DivergingRegionNeverGetsMemoryInUse) {
  CachingAllocator a("test", std::make_unique<CountingRaw>());
  if (!a.arenas_enabled()) GTEST_SKIP() << "RECUR_STEP_ARENA=0 in the environment";
  const std::uint64_t owner = CachingAllocator::new_region_owner();
  auto plain = [&] {
    a.begin_region(owner, 1);
    Block x, y;
    x.p = a.allocate(4096, x.bytes);
    a.release(x.p, x.bytes);
    y.p = a.allocate(4096, y.bytes);  // planned on x's bytes
    a.release(y.p, y.bytes);
    a.end_region();
  };
  plain();  // recorded
  plain();  // replayed
  ASSERT_EQ(a.arena_stats().regions_replayed, 1u);
  // Now x outlives its planned end.
  a.begin_region(owner, 1);
  Block x, y;
  x.p = a.allocate(4096, x.bytes);
  std::memset(x.p, 0x5a, 4096);
  y.p = a.allocate(4096, y.bytes);
  EXPECT_NE(x.p, y.p);
  std::memset(y.p, 0x11, 4096);
  EXPECT_EQ(static_cast<unsigned char*>(x.p)[100], 0x5a);
  a.release(x.p, x.bytes);
  a.release(y.p, y.bytes);
  a.end_region();
  EXPECT_EQ(a.arena_stats().stale, 1u);
  EXPECT_EQ(a.arena_stats().regions_replayed, 1u);
  plain();  // recorded again
  plain();  // replayed again
  EXPECT_EQ(a.arena_stats().regions_replayed, 2u);
  // A different size at the same position also diverges, and is served.
  for (int k = 0; k < 3; ++k) {
    a.begin_region(owner, 1);
    Block big;
    big.p = a.allocate(1 << 20, big.bytes);
    std::memset(big.p, 0, 1 << 20);
    a.release(big.p, big.bytes);
    a.end_region();
    plain();
  }
  // Three divergences: the key is no longer planned, and still works.
  const std::uint64_t replayed = a.arena_stats().regions_replayed;
  plain();
  plain();
  EXPECT_EQ(a.arena_stats().regions_replayed, replayed);
  EXPECT_EQ(a.stats().in_use, 0u);
}

// Blocks that outlive the recorded region (a loss the caller reads) are left
// to the cache, and nested regions are part of the outer one.
TEST(StepArena, EscapingBlocksStayWithTheCache) {
  CachingAllocator a("test", std::make_unique<CountingRaw>());
  if (!a.arenas_enabled()) GTEST_SKIP() << "RECUR_STEP_ARENA=0 in the environment";
  const std::uint64_t owner = CachingAllocator::new_region_owner();
  std::vector<Block> kept;
  for (int step = 0; step < 3; ++step) {
    a.begin_region(owner, 9);
    a.begin_region(owner, 10);  // nested: ignored
    Block t, out;
    t.p = a.allocate(2048, t.bytes);
    out.p = a.allocate(64, out.bytes);
    a.end_region();
    a.release(t.p, t.bytes);
    a.end_region();
    kept.push_back(out);  // lives on after the region
  }
  const ArenaStats s = a.arena_stats();
  EXPECT_EQ(s.regions_recorded, 1u);
  EXPECT_EQ(s.regions_replayed, 2u);
  EXPECT_EQ(s.last_requests, 1u);  // only t is planned
  EXPECT_NE(kept[1].p, kept[2].p);
  for (const Block& b : kept) a.release(b.p, b.bytes);
  EXPECT_EQ(a.stats().in_use, 0u);
}

// An owner whose keys keep changing (variable-length batches) stops being
// planned once kPlansPerOwner plans in a row were dropped unused: its regions
// then come from the cache, which is no longer emptied by each new recording,
// and its kept plans still replay. Another owner is planned as before.
TEST(StepArena, OwnerWithEverNewKeysStopsRecording) {
  auto raw = std::make_unique<CountingRaw>();
  CountingRaw& counts = *raw;
  CachingAllocator a("test", std::move(raw));
  if (!a.arenas_enabled()) GTEST_SKIP() << "RECUR_STEP_ARENA=0 in the environment";
  const std::uint64_t owner = CachingAllocator::new_region_owner();
  auto step = [&](std::uint64_t o, std::uint64_t key) {
    a.begin_region(o, key);
    Block x;
    x.p = a.allocate(std::size_t(key) * 1000, x.bytes);
    std::memset(x.p, 1, std::size_t(key) * 1000);
    a.release(x.p, x.bytes);
    a.end_region();
  };
  const std::uint64_t n = CachingAllocator::kPlansPerOwner;
  for (std::uint64_t key = 1; key <= 2 * n; ++key) step(owner, key);
  // Keys 1..n recorded; n + 1 .. 2n - 1 each dropped an unused plan and were
  // recorded; key 2n found n unused drops in a row and ran from the cache.
  EXPECT_EQ(a.arena_stats().regions_recorded, 2 * n - 1);
  const int raw_calls = counts.calls;
  for (int k = 0; k < 3; ++k) step(owner, 2 * n);  // unplanned: key 2n's block from the cache
  EXPECT_EQ(a.arena_stats().regions_recorded, 2 * n - 1);
  // (Sanitizer builds and RECUR_ALLOCATOR_CACHE=0 have no cache: every block is a raw call.)
  if (a.caching()) {
    EXPECT_EQ(counts.calls, raw_calls);
  }
  const std::uint64_t replayed = a.arena_stats().regions_replayed;
  step(owner, 2 * n - 1);  // still planned
  EXPECT_EQ(a.arena_stats().regions_replayed, replayed + 1);
  const std::uint64_t other = CachingAllocator::new_region_owner();
  step(other, 3);
  step(other, 3);
  EXPECT_EQ(a.arena_stats().regions_recorded, 2 * n);
  EXPECT_EQ(a.arena_stats().regions_replayed, replayed + 2);
  a.drop_arenas(owner);
  a.drop_arenas(other);
  EXPECT_EQ(a.arena_stats().reserved, 0u);
  EXPECT_EQ(a.stats().in_use, 0u);
}

std::unique_ptr<Sequential> gru_model(std::uint64_t seed) {
  auto m = std::make_unique<Sequential>("arena_gru");
  RecurrentOptions o;
  o.cell = CellType::GRU;
  o.units = 16;
  o.dropout = 0.2;
  m->add(std::make_shared<Conv1D>(Conv1DOptions{8, 3}))
      .add(std::make_shared<RNN>(o))
      .add(std::make_shared<Dropout>(0.1))
      .add(std::make_shared<Dense>(1));
  m->build({kAnyDim, 3}, Device::cpu(), DType::f32, seed);
  m->compile({OptimizerConfig::rmsprop(0.01), LossKind::MeanAbsoluteError, {LossKind::MeanSquaredError}});
  return m;
}

// Training steps served from an arena give the same losses, bit for bit, as
// the same steps served from the cache; the arena is reported and reused.
TEST(StepArena, TrainingFromTheArenaMatchesTheCache) {
  CachingAllocator& a = backend(Device::cpu()).allocator();
  if (!a.arenas_enabled()) GTEST_SKIP() << "RECUR_STEP_ARENA=0 in the environment";
  std::mt19937_64 g(test_seed());
  std::normal_distribution<float> n(0, 1);
  std::vector<Tensor> xs, ys;
  for (int k = 0; k < 8; ++k) {
    std::vector<float> x(32 * 20 * 3), y(32);
    for (float& v : x) v = n(g);
    for (float& v : y) v = n(g);
    xs.push_back(Tensor::from_vector(x, {32, 20, 3}, Device::cpu()));
    ys.push_back(Tensor::from_vector(y, {32, 1}, Device::cpu()));
  }
  auto run = [&](bool arenas, std::vector<double>& losses, std::vector<TrainableModel::StepMemory>& mem) {
    a.set_arenas_enabled(arenas);
    auto m = gru_model(3);
    for (std::size_t k = 0; k < xs.size(); ++k) {
      losses.push_back(m->train_on_batch(xs[k], ys[k]).loss);
      mem.push_back(m->last_step_memory());
    }
    losses.push_back(m->test_on_batch(xs[0], ys[0]).loss);
    losses.push_back(m->test_on_batch(xs[1], ys[1]).loss);
    mem.push_back(m->last_step_memory());
    a.set_arenas_enabled(true);
  };
  std::vector<double> with, without;
  std::vector<TrainableModel::StepMemory> mw, mo;
  const std::uint64_t replayed = a.arena_stats().regions_replayed;
  run(true, with, mw);
  run(false, without, mo);
  ASSERT_EQ(with.size(), without.size());
  for (std::size_t k = 0; k < with.size(); ++k) {
    EXPECT_TRUE(std::isfinite(with[k]));
    EXPECT_EQ(with[k], without[k]) << "batch " << k;
  }
  // The first steps record (the optimizer's state appears in the first);
  // the last ones replay from an arena no smaller than their live peak.
  EXPECT_EQ(mw.front().arena, 0u);
  EXPECT_GT(mw[xs.size() - 1].arena, 0u);
  EXPECT_GE(mw[xs.size() - 1].arena, mw[xs.size() - 1].live);
  EXPECT_GT(mw.back().arena, 0u);  // the second test batch replays the first's plan
  EXPECT_GE(a.arena_stats().regions_replayed, replayed + xs.size() - 3);
  for (const auto& m : mo) EXPECT_EQ(m.arena, 0u);
  // The model's arenas go with it.
  EXPECT_EQ(a.arena_stats().reserved, 0u);
}

// A functional model (two inputs, a merge) replays from an arena too.
TEST(StepArena, FunctionalModelReplays) {
  CachingAllocator& a = backend(Device::cpu()).allocator();
  if (!a.arenas_enabled()) GTEST_SKIP() << "RECUR_STEP_ARENA=0 in the environment";
  auto in1 = Input({kAnyDim, 3}, "a");
  auto in2 = Input({kAnyDim, 3}, "b");
  RecurrentOptions o;
  o.cell = CellType::LSTM;
  o.units = 4;
  auto h1 = call(std::make_shared<RNN>(o), in1);
  auto h2 = call(std::make_shared<RNN>(o), in2);
  auto out = call(std::make_shared<Dense>(1), concatenate({h1, h2}));
  Model m({in1, in2}, {out}, "two");
  m.build(Device::cpu(), DType::f32, 5);
  m.compile({OptimizerConfig::adam(0.01), LossKind::MeanSquaredError, {}});
  std::mt19937_64 g(test_seed());
  std::normal_distribution<float> n(0, 1);
  std::vector<float> x(8 * 6 * 3), y(8);
  for (float& v : x) v = n(g);
  for (float& v : y) v = n(g);
  const Tensor xa = Tensor::from_vector(x, {8, 6, 3}, Device::cpu());
  const Tensor ya = Tensor::from_vector(y, {8, 1}, Device::cpu());
  double first = 0, last = 0;
  for (int k = 0; k < 6; ++k) {
    const double l = m.train_on_batch({xa, xa}, ya).loss;
    if (k == 0) first = l;
    last = l;
  }
  EXPECT_LT(last, first);
  EXPECT_GT(m.last_step_memory().arena, 0u);
}

}  // namespace
}  // namespace recur::test
