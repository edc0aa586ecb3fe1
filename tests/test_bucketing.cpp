// Length bucketing (recur/data/bucketing.h, ops::length_buckets) and the
// IMDB reader (recur/data/text_data.h): hand examples, the sampler's
// invariants on random lengths, the padding it saves on the committed IMDB
// lengths, the same per-sample loss bucketed or not, and the CUB path
// against the CPU twin.
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>

#include "test_util.h"

namespace recur::test {
namespace {

template <class F>
void expect_error(F f, ErrorKind kind, const std::string& what) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one mentioning '" << what << "'";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
  }
}

std::vector<std::int32_t> i32(const Tensor& t) { return t.to_vector<std::int32_t>(); }

Tensor ivec(const std::vector<std::int32_t>& v, Device d = Device::cpu()) {
  return Tensor::from_vector(v, {std::int64_t(v.size())}, d);
}

std::vector<std::int64_t> random_lengths(std::int64_t n, std::int64_t lo, std::int64_t hi,
                                         std::mt19937_64& g) {
  std::uniform_int_distribution<std::int64_t> d(lo, hi);
  std::vector<std::int64_t> v(static_cast<std::size_t>(n));
  for (auto& x : v) x = d(g);
  return v;
}

std::vector<std::int64_t> imdb_lengths() {
  return read_int_lines(std::string(RECUR_DATA_DIR) + "/imdb_train_lengths.txt.gz");
}

// ---- ops::length_buckets: hand examples ----------------------------------------
TEST(BucketOps, SortsWindowsStablyAndCutsByBatchSize) {
  // Two windows of 4: [5 3 9 3 | 1 7]; ties (the two 3s) keep their order.
  const Tensor lengths = ivec({5, 3, 9, 3, 1, 7});
  const Tensor order = ivec({0, 3, 2, 1, 5, 4});
  kernels::BucketCut cut;
  cut.batch_size = 2;
  const auto r = ops::length_buckets(lengths, order, 4, cut);
  EXPECT_EQ(i32(r.indices), (std::vector<std::int32_t>{3, 1, 0, 2, 4, 5}));
  EXPECT_EQ(i32(r.lengths), (std::vector<std::int32_t>{3, 3, 5, 9, 1, 7}));
  ASSERT_EQ(r.num_batches, 3);
  EXPECT_EQ(i32(r.batch_begin), (std::vector<std::int32_t>{0, 2, 4}));
  EXPECT_EQ(i32(r.batch_size), (std::vector<std::int32_t>{2, 2, 2}));
  EXPECT_EQ(i32(r.batch_padded), (std::vector<std::int32_t>{3, 9, 7}));
}

TEST(BucketOps, TokenBudgetGivesShortBatchesMoreSamples) {
  // Sorted: 1 2 3 5 7 9. Budget 10 tokens, at most 4 samples, padding to a
  // multiple of 1: [1 2 3] (3 x 3 = 9; adding 5 would need 4 x 5), [5], [7], [9].
  const Tensor lengths = ivec({5, 3, 9, 1, 7, 2});
  kernels::BucketCut cut;
  cut.batch_size = 4;
  cut.max_tokens = 10;
  const auto r = ops::length_buckets(lengths, ivec({0, 1, 2, 3, 4, 5}), 6, cut);
  EXPECT_EQ(i32(r.indices), (std::vector<std::int32_t>{3, 5, 1, 0, 4, 2}));
  EXPECT_EQ(i32(r.batch_size), (std::vector<std::int32_t>{3, 1, 1, 1}));
  EXPECT_EQ(i32(r.batch_padded), (std::vector<std::int32_t>{3, 5, 7, 9}));
  // Padding to multiples of 4 and clipping at max_length 8: keys 1 2 3 5 7 8,
  // padded lengths 4 4 4 8 8 8; budget 16: [1 2 3] (12), [5 7] (16), [8].
  cut.pad_multiple = 4;
  cut.max_length = 8;
  cut.max_tokens = 16;
  const auto q = ops::length_buckets(lengths, ivec({0, 1, 2, 3, 4, 5}), 6, cut);
  EXPECT_EQ(i32(q.lengths), (std::vector<std::int32_t>{1, 2, 3, 5, 7, 8}));
  EXPECT_EQ(i32(q.batch_size), (std::vector<std::int32_t>{3, 2, 1}));
  EXPECT_EQ(i32(q.batch_padded), (std::vector<std::int32_t>{4, 8, 8}));
}

TEST(BucketOps, FixedLengthKeepsOrderAndDropRemainderDropsShortBatches) {
  const Tensor lengths = ivec({5, 3, 9, 1, 7});
  kernels::BucketCut cut;
  cut.batch_size = 2;
  cut.fixed_length = 12;
  auto r = ops::length_buckets(lengths, ivec({4, 3, 2, 1, 0}), 5, cut, /*sort=*/false);
  EXPECT_EQ(i32(r.indices), (std::vector<std::int32_t>{4, 3, 2, 1, 0}));
  EXPECT_EQ(i32(r.batch_size), (std::vector<std::int32_t>{2, 2, 1}));
  EXPECT_EQ(i32(r.batch_padded), (std::vector<std::int32_t>{12, 12, 12}));
  cut.drop_remainder = true;
  r = ops::length_buckets(lengths, ivec({4, 3, 2, 1, 0}), 5, cut, false);
  EXPECT_EQ(i32(r.batch_size), (std::vector<std::int32_t>{2, 2}));
}

TEST(BucketOps, RejectsBadInputNamingIt) {
  kernels::BucketCut cut;
  expect_error([&] { ops::length_buckets(ivec({1, 2}), ivec({0, 7}), 2, cut); }, ErrorKind::Value,
               "order[1] = 7 is outside [0, 2)");
  expect_error([&] { ops::length_buckets(ivec({1, -4}), ivec({0, 1}), 2, cut); }, ErrorKind::Value,
               "lengths[1] = -4 is negative");
  expect_error([&] { ops::length_buckets(ivec({1, 2}), ivec({0, 1}), 0, cut); }, ErrorKind::Value,
               "window = 0");
  cut.batch_size = 0;
  expect_error([&] { ops::length_buckets(ivec({1, 2}), ivec({0, 1}), 2, cut); }, ErrorKind::Value,
               "batch_size = 0");
  cut.batch_size = 1;
  expect_error(
      [&] {
        ops::length_buckets(Tensor::zeros({2}, DType::f32, Device::cpu()), ivec({0, 1}), 2, cut);
      },
      ErrorKind::DType, "'lengths' is float32, expected int32");
}

// ---- the working-set cap ----------------------------------------------------------
TEST(BucketSampler, StepWorkingSetFormula) {
  // LSTM, H = 1024, float32: W_hh 4*1024*1024*4 B = 16 MiB; each row adds
  // 4 * (4096 + 2048) = 24576 B; 50 MiB leaves room for 1450 rows.
  EXPECT_EQ(step_working_set_bytes(1024, 4, 0), std::int64_t(16) << 20);
  EXPECT_EQ(step_working_set_bytes(1024, 4, 10), (std::int64_t(16) << 20) + 10 * 24576);
  EXPECT_EQ(max_batch_in_cache(1024, 4), ((std::int64_t(50) << 20) - (std::int64_t(16) << 20)) / 24576);
  EXPECT_EQ(max_batch_in_cache(1024, 4), 1450);
  // H = 2048: 64 MiB of weights do not fit in 50 MiB.
  EXPECT_EQ(max_batch_in_cache(2048, 4), 0);
  EXPECT_EQ(l2_cache_bytes(Device::cpu()), kDefaultL2Bytes);
}

// ---- the sampler --------------------------------------------------------------------
struct Config {
  const char* name;
  BucketingOptions o;
};

std::vector<Config> configs() {
  std::vector<Config> c;
  BucketingOptions o;
  o.batch_size = 16;
  o.window = 160;
  o.seed = 11;
  c.push_back({"bucketed", o});
  o.max_tokens = 16 * 300;
  o.batch_size = 64;
  c.push_back({"token budget", o});
  o.max_length = 200;
  o.truncating = Truncation::Post;
  o.pad_multiple = 1;
  c.push_back({"budget + max_length", o});
  o = BucketingOptions{};
  o.bucket = false;
  o.batch_size = 24;
  c.push_back({"one length", o});
  o.max_length = 250;
  c.push_back({"one length + max_length", o});
  return c;
}

TEST(BucketSampler, EverySampleOncePerEpochAndBatchesConsistent) {
  Random rng;
  SCOPED_TRACE("seed " + std::to_string(rng.seed()) + " (RECUR_TEST_SEED)");
  const auto lengths = random_lengths(1013, 0, 600, rng.gen());
  for (const Config& c : configs()) {
    SCOPED_TRACE(c.name);
    const LengthBucketSampler s(lengths, c.o);
    for (std::int64_t e = 0; e < 3; ++e) {
      const auto batches = s.epoch(e);
      std::vector<int> seen(lengths.size(), 0);
      for (const BucketBatch& b : batches) {
        ASSERT_GE(b.size(), 1);
        ASSERT_EQ(b.lengths.size(), b.samples.size());
        EXPECT_LE(b.size(), s.batch_cap());
        if (c.o.max_tokens > 0) {
          EXPECT_LE(b.size() * b.padded_length, c.o.max_tokens);
        }
        if (c.o.max_length > 0) {
          EXPECT_LE(b.padded_length, c.o.max_length);
        }
        if (!c.o.bucket) {
          EXPECT_EQ(b.padded_length, s.one_length());
        }
        std::int64_t longest = 0;
        for (std::size_t j = 0; j < b.samples.size(); ++j) {
          const std::int64_t i = b.samples[j];
          ++seen[std::size_t(i)];
          EXPECT_EQ(b.lengths[j], s.length(i));
          longest = std::max(longest, b.lengths[j]);
        }
        EXPECT_GE(b.padded_length, longest);
        if (c.o.bucket) {  // the longest sample rounded up, clipped at max_length
          EXPECT_EQ(b.padded_length,
                    std::max<std::int64_t>(1, std::min((longest + c.o.pad_multiple - 1) /
                                                           c.o.pad_multiple * c.o.pad_multiple,
                                                       c.o.max_length ? c.o.max_length : INT64_MAX)));
        }
      }
      for (std::size_t i = 0; i < seen.size(); ++i) ASSERT_EQ(seen[i], 1) << "sample " << i;
    }
  }
}

TEST(BucketSampler, DeterministicPerSeedAndEpochDifferentAcross) {
  std::mt19937_64 g(5);
  const auto lengths = random_lengths(800, 1, 500, g);
  BucketingOptions o;
  o.batch_size = 8;
  o.window = 64;
  o.seed = 3;
  const LengthBucketSampler a(lengths, o), b(lengths, o);
  auto same = [](const std::vector<BucketBatch>& x, const std::vector<BucketBatch>& y) {
    if (x.size() != y.size()) return false;
    for (std::size_t i = 0; i < x.size(); ++i)
      if (x[i].samples != y[i].samples || x[i].padded_length != y[i].padded_length) return false;
    return true;
  };
  EXPECT_TRUE(same(a.epoch(0), b.epoch(0)));
  EXPECT_TRUE(same(a.epoch(7), b.epoch(7)));
  EXPECT_FALSE(same(a.epoch(0), a.epoch(1)));
  o.seed = 4;
  EXPECT_FALSE(same(a.epoch(0), LengthBucketSampler(lengths, o).epoch(0)));
  // Batches differ in content between epochs, not only in order.
  std::set<std::vector<std::int64_t>> e0, e1;
  for (const BucketBatch& x : a.epoch(0)) e0.insert(x.samples);
  for (const BucketBatch& x : a.epoch(1)) e1.insert(x.samples);
  EXPECT_NE(e0, e1);
}

TEST(BucketSampler, TokenBudgetAndCacheCapBoundBatches) {
  std::mt19937_64 g(9);
  const auto lengths = random_lengths(2000, 5, 400, g);
  BucketingOptions o;
  o.batch_size = 256;
  o.max_tokens = 8192;
  const LengthBucketSampler s(lengths, o);
  std::int64_t short_max = 0, long_max = 0;
  for (const BucketBatch& b : s.epoch(0)) {
    EXPECT_LE(b.size() * b.padded_length, o.max_tokens);
    EXPECT_LE(b.size(), 256);
    if (b.padded_length <= 48) short_max = std::max(short_max, b.size());
    if (b.padded_length >= 360) long_max = std::max(long_max, b.size());
  }
  EXPECT_GT(short_max, 4 * long_max) << "short batches should hold many more samples";
  // A cache that fits W_hh (4*64*64*4 = 64 KiB) plus 10 rows of 4*(256+128) B.
  o.hidden = 64;
  o.gates = 4;
  o.cache_bytes = 65536 + 10 * 1536 + 100;
  const LengthBucketSampler c(lengths, o);
  EXPECT_EQ(c.batch_cap(), 10);
  for (const BucketBatch& b : c.epoch(0)) EXPECT_LE(b.size(), 10);
  // Weights larger than the cache: no cap from it.
  o.cache_bytes = 1000;
  EXPECT_EQ(LengthBucketSampler(lengths, o).batch_cap(), 256);
}

TEST(BucketSampler, PaddedFractionOnAHandExample) {
  // Lengths 2 3 4 10; one window; batches of 2, no rounding: [2 3] padded 3
  // (1 pad step), [4 10] padded 10 (6): 7 padded of 19 + 7 = 26 steps. One
  // length (10): 4 * 10 - 19 = 21 padded: 3x less with bucketing.
  BucketingOptions o;
  o.batch_size = 2;
  o.pad_multiple = 1;
  const LengthBucketSampler s({10, 2, 4, 3}, o);
  const PaddingStats st = s.stats(s.epoch(0));
  EXPECT_EQ(st.samples, 4);
  EXPECT_EQ(st.batches, 2);
  EXPECT_EQ(st.real_steps, 19);
  EXPECT_EQ(st.padded_steps, 7);
  EXPECT_EQ(st.one_length, 10);
  EXPECT_EQ(st.one_length_padded_steps, 21);
  EXPECT_DOUBLE_EQ(st.padded_fraction(), 7.0 / 26.0);
  EXPECT_DOUBLE_EQ(st.one_length_padded_fraction(), 21.0 / 40.0);
  EXPECT_DOUBLE_EQ(st.reduction(), 3.0);
  // Without bucketing the padding is the one-length padding.
  o.bucket = false;
  const LengthBucketSampler u({10, 2, 4, 3}, o);
  const PaddingStats su = u.stats(u.epoch(0));
  EXPECT_EQ(su.padded_steps, 21);
  EXPECT_DOUBLE_EQ(su.reduction(), 1.0);
}

TEST(BucketSampler, DropRemainder) {
  std::vector<std::int64_t> lengths(100);
  for (std::size_t i = 0; i < lengths.size(); ++i) lengths[i] = std::int64_t(i % 37) + 1;
  BucketingOptions o;
  o.bucket = false;
  o.batch_size = 32;
  o.drop_remainder = true;
  const LengthBucketSampler u(lengths, o);
  const auto ub = u.epoch(0);
  ASSERT_EQ(ub.size(), 3u);
  for (const BucketBatch& b : ub) EXPECT_EQ(b.size(), 32);
  // Bucketed, windows of 40: each window's short last batch goes.
  o.bucket = true;
  o.batch_size = 16;
  o.window = 40;
  const LengthBucketSampler s(lengths, o);
  std::int64_t kept = 0;
  for (const BucketBatch& b : s.epoch(0)) {
    EXPECT_EQ(b.size(), 16);
    kept += b.size();
  }
  EXPECT_EQ(kept, 16 * 5);  // windows of 40, 40, 20: 2 + 2 + 1 full batches
}

TEST(BucketSampler, TruncationAndPadBatch) {
  const std::vector<std::vector<std::int32_t>> tokens{{11, 12, 13}, {21, 22, 23, 24, 25, 26}};
  BucketingOptions o;
  o.batch_size = 2;
  o.max_length = 4;
  o.pad_multiple = 1;
  const LengthBucketSampler pre({3, 6}, o);
  EXPECT_EQ(pre.length(1), 4);
  EXPECT_EQ(pre.first_token(1), 2);
  const auto batches = pre.epoch(0);
  ASSERT_EQ(batches.size(), 1u);
  BucketBatch b = batches[0];
  ASSERT_EQ(b.padded_length, 4);
  b.samples = {0, 1};
  b.lengths = {3, 4};
  EXPECT_EQ(i32(pre.pad_batch(tokens, b)), (std::vector<std::int32_t>{11, 12, 13, 0, 23, 24, 25, 26}));
  o.truncating = Truncation::Post;
  const LengthBucketSampler post({3, 6}, o);
  EXPECT_EQ(post.first_token(1), 0);
  EXPECT_EQ(i32(post.pad_batch(tokens, b)), (std::vector<std::int32_t>{11, 12, 13, 0, 21, 22, 23, 24}));
  expect_error([&] { post.pad_batch({{1}, {2}}, b); }, ErrorKind::Value,
               "sample 0 has 1 tokens, but the sampler was given length 3");
}

TEST(BucketSampler, RejectsBadOptions) {
  BucketingOptions o;
  o.max_tokens = 100;
  o.pad_multiple = 8;
  expect_error([&] { LengthBucketSampler({5, 120}, o); }, ErrorKind::Value,
               "max_tokens = 100 cannot hold the longest sample, padded to 120 steps");
  o.max_tokens = 0;
  expect_error([&] { LengthBucketSampler({5, -1}, o); }, ErrorKind::Value,
               "length -1 of sample 1");
  o.batch_size = 0;
  expect_error([&] { LengthBucketSampler({5}, o); }, ErrorKind::Value, "batch_size = 0");
  expect_error([&] { LengthBucketSampler({}, BucketingOptions{}); }, ErrorKind::Value, "no samples");
}

// ---- IMDB: padding --------------------------------------------------------------------
TEST(BucketImdb, CutsPaddedStepsAtLeast3x) {
  const auto lengths = imdb_lengths();
  ASSERT_EQ(lengths.size(), 20000u);
  std::printf("IMDB train (20,000 reviews), epoch 0, seed 1\n");
  std::printf("%-8s %-6s %-10s %-6s | %12s %8s | %12s %8s | %s\n", "maxlen", "batch",
              "max_tokens", "round", "real steps", "batches", "padded", "frac", "one length: padded, frac, bucketing's cut");
  struct Row {
    std::int64_t maxlen, batch, max_tokens, round;
  };
  for (const Row& r : {Row{0, 32, 0, 8}, Row{0, 64, 0, 8}, Row{500, 32, 0, 8}, Row{500, 64, 0, 8},
                       Row{500, 64, 0, 1}, Row{500, 512, 64 * 500, 8}, Row{200, 64, 0, 8}}) {
    BucketingOptions o;
    o.seed = 1;
    o.batch_size = r.batch;
    o.max_length = r.maxlen;
    o.max_tokens = r.max_tokens;
    o.pad_multiple = r.round;
    o.window = 100 * std::min<std::int64_t>(r.batch, 64);
    const LengthBucketSampler s(lengths, o);
    const PaddingStats st = s.stats(s.epoch(0));
    o.bucket = false;
    o.batch_size = r.max_tokens ? r.max_tokens / s.one_length() : r.batch;
    o.max_tokens = 0;
    const LengthBucketSampler u(lengths, o);
    const PaddingStats su = u.stats(u.epoch(0));
    std::printf("%-8s %-6lld %-10lld %-6lld | %12lld %8lld | %12lld %7.2f%% | %lld (%lld batches), %.2f%%, %.1fx\n",
                r.maxlen ? std::to_string(r.maxlen).c_str() : "none", (long long)r.batch,
                (long long)r.max_tokens, (long long)r.round, (long long)st.real_steps,
                (long long)st.batches, (long long)st.padded_steps, 100 * st.padded_fraction(),
                (long long)su.padded_steps, (long long)su.batches,
                100 * su.padded_fraction(), st.reduction());
    EXPECT_EQ(st.samples, 20000);
    // The unbucketed run pads exactly as the one-length baseline says.
    EXPECT_EQ(su.padded_steps, st.one_length_padded_steps);
    EXPECT_EQ(su.real_steps, st.real_steps);
    EXPECT_GE(st.reduction(), 3.0) << "maxlen " << r.maxlen << ", batch " << r.batch;
  }
}

// ---- IMDB: the same loss per sample, bucketed or padded to one length ------------------
// An LSTM reads a deterministic input per (sample, token position) under a
// right-padding mask; the loss of a sample is binary cross-entropy of a fixed
// readout of its final h. The mask makes padding invisible, so the loss of a
// sample cannot depend on the batch it lands in or its padded length.
TEST(BucketImdb, SameLossPerSampleAsOneLength) {
  auto lengths = imdb_lengths();
  lengths.resize(320);
  constexpr std::int64_t I = 3, H = 8;
  RecurrentOptions ro;
  ro.cell = CellType::LSTM;
  ro.input_size = I;
  ro.units = H;
  ro.return_state = true;
  Recurrent lstm(ro, Device::cpu(), 42);
  std::vector<double> readout(H);
  for (std::int64_t j = 0; j < H; ++j) readout[std::size_t(j)] = std::cos(0.7 * double(j) + 0.1);

  auto run = [&](const LengthBucketSampler& s) {
    std::vector<double> loss(lengths.size(), std::nan(""));
    for (const BucketBatch& b : s.epoch(0)) {
      const std::int64_t B = b.size(), T = b.padded_length;
      std::vector<float> x(std::size_t(B * T * I), 0.f);
      for (std::int64_t r = 0; r < B; ++r) {
        const std::int64_t sample = b.samples[std::size_t(r)], first = s.first_token(sample);
        for (std::int64_t t = 0; t < b.lengths[std::size_t(r)]; ++t)
          for (std::int64_t k = 0; k < I; ++k)
            x[std::size_t((r * T + t) * I + k)] =
                float(std::sin(0.013 * double(sample) + 0.29 * double(first + t) + 1.1 * double(k)));
      }
      const auto out = lstm.forward(Tensor::from_vector(x, {B, T, I}, Device::cpu()),
                                    lengths_to_mask(b.lengths, T, DType::f32, Device::cpu()));
      const auto h = out.states[0].to_vector<float>();
      for (std::int64_t r = 0; r < B; ++r) {
        double z = 0;
        for (std::int64_t j = 0; j < H; ++j) z += readout[std::size_t(j)] * h[std::size_t(r * H + j)];
        const std::int64_t sample = b.samples[std::size_t(r)];
        const double y = double(sample % 2);
        // BCE from logits: softplus(z) - y z.
        loss[std::size_t(sample)] = std::max(z, 0.0) + std::log1p(std::exp(-std::abs(z))) - y * z;
      }
    }
    return loss;
  };
  BucketingOptions o;
  o.batch_size = 32;
  o.max_length = 200;
  o.seed = 2;
  const LengthBucketSampler bucketed(lengths, o);
  o.bucket = false;
  const LengthBucketSampler one(lengths, o);
  const PaddingStats sb = bucketed.stats(bucketed.epoch(0)), so = one.stats(one.epoch(0));
  std::printf("320 IMDB reviews, maxlen 200, batch 32: padded steps %lld bucketed, %lld at one length\n",
              (long long)sb.padded_steps, (long long)so.padded_steps);
  const auto a = run(bucketed), b = run(one);
  double mean_a = 0, mean_b = 0, worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    ASSERT_TRUE(std::isfinite(a[i]) && std::isfinite(b[i])) << "sample " << i;
    worst = std::max(worst, std::abs(a[i] - b[i]) / std::abs(b[i]));
    EXPECT_NEAR(a[i], b[i], 1e-5 * std::abs(b[i])) << "sample " << i;
    mean_a += a[i] / double(a.size());
    mean_b += b[i] / double(b.size());
  }
  std::printf("mean loss %.9f bucketed, %.9f at one length; worst relative difference %.2e\n",
              mean_a, mean_b, worst);
}

// ---- IMDB reader -------------------------------------------------------------------------
// Per process, so concurrent runs of the suite do not share files.
std::string temp_path(const std::string& name) {
  return ::testing::TempDir() + "recur_" + std::to_string(::getpid()) + "_" + name;
}

void write_gz(const std::string& path, const std::string& text) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, text.data(), unsigned(text.size())), int(text.size()));
  ASSERT_EQ(gzclose(f), Z_OK);
}

const char* kTsv =
    "label\tid\trating\ttext\n"
    "1\t0\t9\tGreat film! <br /><br />Loved it.\n"
    "0\t7\t2\tDon't   watch... it's BAD, bad, bad\n"
    "1\t12\t10\t\"Wow\" -- a must-see.\n";

TEST(Imdb, TokenizesAsKerasDefaultStandardization) {
  EXPECT_EQ(tokenize("Great film! <br /><br />Loved it."),
            (std::vector<std::string>{"great", "film", "br", "br", "loved", "it"}));
  EXPECT_EQ(tokenize("  Don't -- STOP\tnow\n"), (std::vector<std::string>{"dont", "stop", "now"}));
  EXPECT_EQ(count_tokens("  Don't -- STOP\tnow\n"), 3);
  EXPECT_EQ(count_tokens("a <br /> b"), 3);
  EXPECT_EQ(count_tokens(""), 0);
  EXPECT_EQ(count_tokens("... !!"), 0);
}

TEST(Imdb, ReadsGzipAndPlainTsv) {
  const std::string gz = temp_path("imdb.tsv.gz"), plain = temp_path("imdb.tsv");
  write_gz(gz, kTsv);
  std::ofstream(plain) << kTsv;
  for (const std::string& path : {gz, plain}) {
    SCOPED_TRACE(path);
    const ImdbData d = read_imdb_tsv(path, /*keep_text=*/true);
    ASSERT_EQ(d.size(), 3);
    EXPECT_EQ(d.labels, (std::vector<std::int32_t>{1, 0, 1}));
    EXPECT_EQ(d.ids, (std::vector<std::int64_t>{0, 7, 12}));
    EXPECT_EQ(d.ratings, (std::vector<std::int32_t>{9, 2, 10}));
    EXPECT_EQ(d.lengths, (std::vector<std::int64_t>{6, 6, 3}));
    EXPECT_EQ(d.texts[2], "\"Wow\" -- a must-see.");
    EXPECT_TRUE(read_imdb_tsv(path).texts.empty());
  }
  std::remove(gz.c_str());
  std::remove(plain.c_str());
}

TEST(Imdb, BadFilesSayWhatAndWhere) {
  expect_error([] { read_imdb_tsv(temp_path("no_such_file.tsv.gz")); }, ErrorKind::IO,
               "cannot open '" + temp_path("no_such_file.tsv.gz") + "'");
  const std::string path = temp_path("bad.tsv.gz");
  write_gz(path, "label\tid\trating\ttext\n1\t0\t9\tfine\n0\t1\t2\tone\ttab too many\n");
  expect_error([&] { read_imdb_tsv(path); }, ErrorKind::IO,
               "line 3: 5 tab-separated columns, expected 4");
  write_gz(path, "label\tid\trating\ttext\n1\t0\t9\n");
  expect_error([&] { read_imdb_tsv(path); }, ErrorKind::IO, "line 2: 3 tab-separated columns");
  write_gz(path, "label\tid\trating\ttext\n2\t0\t9\tx\n");
  expect_error([&] { read_imdb_tsv(path); }, ErrorKind::IO, "line 2: label '2' is not 0 or 1");
  write_gz(path, "text\tlabel\n");
  expect_error([&] { read_imdb_tsv(path); }, ErrorKind::IO, "line 1: expected the header");
  // A gzip stream cut short.
  write_gz(path, std::string(kTsv) + std::string(20000, 'x') + "\n");
  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes.substr(0, bytes.size() / 2);
  expect_error([&] { read_imdb_tsv(path); }, ErrorKind::IO, path);
  std::remove(path.c_str());
  const std::string ints = temp_path("ints.txt");
  std::ofstream(ints) << "3\n4\nfive\n";
  expect_error([&] { read_int_lines(ints); }, ErrorKind::IO, "line 3: 'five' is not an integer");
  std::remove(ints.c_str());
}

TEST(Imdb, VocabularyIsKerasStyle) {
  const std::vector<std::string> texts{"b a b c", "a b d", "C!"};
  const Vocabulary all = Vocabulary::build(texts);
  // b: 3, a: 2, c: 2, d: 1; ties by byte order.
  ASSERT_EQ(all.size(), 6);
  EXPECT_EQ(all.token(0), "");
  EXPECT_EQ(all.token(1), "[UNK]");
  EXPECT_EQ(all.token(2), "b");
  EXPECT_EQ(all.token(3), "a");
  EXPECT_EQ(all.token(4), "c");
  EXPECT_EQ(all.token(5), "d");
  const Vocabulary top = Vocabulary::build(texts, 4);  // padding, OOV, b, a
  ASSERT_EQ(top.size(), 4);
  EXPECT_EQ(top.encode("A c B zebra"), (std::vector<std::int32_t>{3, 1, 2, 1}));
  expect_error([&] { Vocabulary::build(texts, 1); }, ErrorKind::Value, "max_size = 1");
}

// The committed lengths are what read_imdb_tsv() counts on the shared file.
TEST(Imdb, SharedTrainFileMatchesCommittedLengths) {
  const char* dir = std::getenv("RECUR_DATASETS");
  const std::string path =
      std::string(dir ? dir : "/work/shared/datasets") + "/imdb_train.tsv.gz";
  if (!std::ifstream(path))
    GTEST_SKIP() << path << " is absent (set RECUR_DATASETS to the shared datasets' folder)";
  const ImdbData d = read_imdb_tsv(path);
  ASSERT_EQ(d.size(), 20000);
  EXPECT_EQ(d.lengths, imdb_lengths());
  const auto pos = std::count(d.labels.begin(), d.labels.end(), 1);
  EXPECT_GT(pos, 9000);
  EXPECT_LT(pos, 11000);
}

// ---- the GPU path against the CPU twin ---------------------------------------------------
TEST(BucketCUDA, MatchesCpuOnRandomLengths) {
  const Device gpu = Device::cuda(0);
  RECUR_SKIP_IF_UNAVAILABLE(gpu);
  Random rng;
  SCOPED_TRACE("seed " + std::to_string(rng.seed()) + " (RECUR_TEST_SEED)");
  struct Case {
    std::int64_t N, window, batch, max_tokens, pad_multiple, max_length;
    bool sort, drop;
  };
  for (const Case& c : {Case{1, 1, 1, 0, 1, 0, true, false}, Case{1000, 100, 16, 0, 8, 0, true, false},
                        Case{5000, 3200, 64, 20000, 8, 300, true, false},
                        Case{4099, 257, 33, 0, 1, 50, true, true},
                        Case{3000, 3000, 40, 0, 1, 0, false, false}}) {
    SCOPED_TRACE("N " + std::to_string(c.N) + ", window " + std::to_string(c.window));
    // Few distinct lengths, so ties are common and stability is tested.
    std::uniform_int_distribution<std::int32_t> len(0, c.N > 100 ? 400 : 5);
    std::vector<std::int32_t> lengths(std::size_t(c.N)), order(std::size_t(c.N));
    for (auto& l : lengths) l = len(rng.gen());
    for (std::int64_t i = 0; i < c.N; ++i) order[std::size_t(i)] = std::int32_t(i);
    std::shuffle(order.begin(), order.end(), rng.gen());
    kernels::BucketCut cut;
    cut.batch_size = c.batch;
    cut.max_tokens = c.max_tokens;
    cut.pad_multiple = c.pad_multiple;
    cut.max_length = c.max_length;
    cut.drop_remainder = c.drop;
    if (!c.sort) cut.fixed_length = 400;
    const auto want = ops::length_buckets(ivec(lengths), ivec(order), c.window, cut, c.sort);
    const auto got = ops::length_buckets(ivec(lengths, gpu), ivec(order, gpu), c.window, cut, c.sort);
    EXPECT_EQ(got.indices.device(), gpu);
    ASSERT_EQ(got.num_batches, want.num_batches);
    EXPECT_EQ(i32(got.indices), i32(want.indices));
    EXPECT_EQ(i32(got.lengths), i32(want.lengths));
    EXPECT_EQ(i32(got.batch_begin), i32(want.batch_begin));
    EXPECT_EQ(i32(got.batch_size), i32(want.batch_size));
    EXPECT_EQ(i32(got.batch_padded), i32(want.batch_padded));
  }
  // Bad input is flagged on the GPU and named by the CPU twin.
  kernels::BucketCut cut;
  expect_error([&] { ops::length_buckets(ivec({1, 2}, gpu), ivec({0, 9}, gpu), 2, cut); },
               ErrorKind::Value, "order[1] = 9 is outside [0, 2)");
  expect_error([&] { ops::length_buckets(ivec({1, -3}, gpu), ivec({1, 0}, gpu), 2, cut); },
               ErrorKind::Value, "lengths[1] = -3 is negative");
}

TEST(BucketCUDA, SamplerEpochsMatchCpu) {
  const Device gpu = Device::cuda(0);
  RECUR_SKIP_IF_UNAVAILABLE(gpu);
  const auto lengths = imdb_lengths();
  BucketingOptions o;
  o.batch_size = 256;
  o.max_tokens = 64 * 512;
  o.max_length = 500;
  o.seed = 17;
  const LengthBucketSampler cpu(lengths, o);
  o.device = gpu;
  const LengthBucketSampler cuda(lengths, o);
  for (std::int64_t e = 0; e < 2; ++e) {
    const auto a = cpu.epoch(e), b = cuda.epoch(e);
    ASSERT_EQ(a.size(), b.size());
    for (std::size_t i = 0; i < a.size(); ++i) {
      EXPECT_EQ(a[i].samples, b[i].samples) << "batch " << i;
      EXPECT_EQ(a[i].padded_length, b[i].padded_length) << "batch " << i;
    }
  }
}

}  // namespace
}  // namespace recur::test
