// LengthBucketSampler: the epoch's shuffles on the host (std::mt19937_64,
// whose output the standard fixes, and recur's own bounded draw, so a seed
// gives the same epochs in every build), the window sorts and cuts on the
// options' device through ops::length_buckets.
#include "recur/data/bucketing.h"

#include <algorithm>
#include <climits>
#include <limits>
#include <random>

#include "recur/host/ops.h"
#include "recur/host/system_info.h"

namespace recur {
namespace {

// Uniform in [0, bound) without modulo bias.
std::uint64_t draw_below(std::mt19937_64& g, std::uint64_t bound) {
  const std::uint64_t limit = std::numeric_limits<std::uint64_t>::max() -
                              std::numeric_limits<std::uint64_t>::max() % bound;
  std::uint64_t x = g();
  while (x >= limit) x = g();
  return x % bound;
}

template <class T>
void shuffle(std::vector<T>& v, std::mt19937_64& g) {
  for (std::size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[draw_below(g, i)]);
}

std::mt19937_64 epoch_rng(std::uint64_t seed, std::int64_t epoch) {
  const auto e = std::uint64_t(epoch);
  std::seed_seq seq{std::uint32_t(seed), std::uint32_t(seed >> 32), std::uint32_t(e),
                    std::uint32_t(e >> 32), std::uint32_t(0x6275636b)};  // "buck"
  return std::mt19937_64(seq);
}

}  // namespace

std::int64_t step_working_set_bytes(std::int64_t hidden, std::int64_t gates, std::int64_t batch,
                                    std::int64_t dtype_bytes) {
  RECUR_CHECK(hidden >= 1 && gates >= 1 && batch >= 0 && dtype_bytes >= 1, Value,
              "step_working_set_bytes: hidden = ", hidden, ", gates = ", gates, ", batch = ", batch,
              ", dtype_bytes = ", dtype_bytes, "; hidden, gates and dtype_bytes must be >= 1");
  const std::int64_t GH = gates * hidden;
  return dtype_bytes * (GH * hidden + batch * (GH + 2 * hidden));
}

std::int64_t max_batch_in_cache(std::int64_t hidden, std::int64_t gates, std::int64_t dtype_bytes,
                                std::int64_t cache_bytes) {
  RECUR_CHECK(cache_bytes >= 0, Value, "max_batch_in_cache: cache_bytes = ", cache_bytes,
              " is negative");
  const std::int64_t weights = step_working_set_bytes(hidden, gates, 0, dtype_bytes);
  if (weights >= cache_bytes) return 0;
  const std::int64_t per_row = dtype_bytes * (gates * hidden + 2 * hidden);
  return (cache_bytes - weights) / per_row;
}

std::int64_t l2_cache_bytes(Device device) {
  if (device.is_cuda()) {
    const SystemInfo info = system_info();
    for (const GpuInfo& g : info.gpus)
      if (g.index == device.index && g.l2_bytes > 0) return std::int64_t(g.l2_bytes);
  }
  return kDefaultL2Bytes;
}

std::int64_t BucketBatch::real_steps() const {
  std::int64_t s = 0;
  for (std::int64_t l : lengths) s += l;
  return s;
}

std::int64_t BucketBatch::padded_steps() const { return size() * padded_length - real_steps(); }

double PaddingStats::padded_fraction() const {
  const std::int64_t all = real_steps + padded_steps;
  return all ? double(padded_steps) / double(all) : 0.0;
}

double PaddingStats::one_length_padded_fraction() const {
  const std::int64_t all = real_steps + one_length_padded_steps;
  return all ? double(one_length_padded_steps) / double(all) : 0.0;
}

double PaddingStats::reduction() const {
  if (padded_steps == 0)
    return one_length_padded_steps ? std::numeric_limits<double>::infinity() : 1.0;
  return double(one_length_padded_steps) / double(padded_steps);
}

LengthBucketSampler::LengthBucketSampler(std::vector<std::int64_t> lengths,
                                         BucketingOptions options)
    : lengths_(std::move(lengths)), o_(options) {
  const char* who = "LengthBucketSampler";
  RECUR_CHECK(!lengths_.empty(), Value, who, ": no samples (empty lengths)");
  RECUR_CHECK(lengths_.size() <= std::size_t(INT_MAX), Value, who, ": ", lengths_.size(),
              " samples; at most 2^31-1 are supported");
  for (std::size_t i = 0; i < lengths_.size(); ++i)
    RECUR_CHECK(lengths_[i] >= 0 && lengths_[i] <= INT_MAX, Value, who, ": length ", lengths_[i],
                " of sample ", i, " is outside [0, 2^31-1]");
  RECUR_CHECK(o_.batch_size >= 1, Value, who, ": batch_size = ", o_.batch_size,
              "; it must be >= 1");
  RECUR_CHECK(o_.max_tokens >= 0, Value, who, ": max_tokens = ", o_.max_tokens,
              " is negative (0: no token budget)");
  RECUR_CHECK(o_.window >= 0, Value, who, ": window = ", o_.window,
              " is negative (0: 100 * batch_size)");
  RECUR_CHECK(o_.max_length >= 0 && o_.max_length <= INT_MAX, Value, who, ": max_length = ",
              o_.max_length, " is outside [0, 2^31-1] (0: no truncation)");
  RECUR_CHECK(o_.pad_multiple >= 1 && o_.pad_multiple <= INT_MAX, Value, who,
              ": pad_multiple = ", o_.pad_multiple, "; it must be >= 1");
  RECUR_CHECK(o_.hidden >= 0, Value, who, ": hidden = ", o_.hidden,
              " is negative (0: no cache cap)");

  cap_ = o_.batch_size;
  if (o_.hidden > 0) {
    const std::int64_t fit = max_batch_in_cache(o_.hidden, o_.gates, o_.dtype_bytes, o_.cache_bytes);
    if (fit > 0) cap_ = std::min(cap_, fit);
  }
  window_ = o_.window > 0 ? o_.window : 100 * o_.batch_size;
  std::int64_t longest = 0;
  for (std::size_t i = 0; i < lengths_.size(); ++i) longest = std::max(longest, length(std::int64_t(i)));
  one_length_ = std::max<std::int64_t>(o_.max_length > 0 ? o_.max_length : longest, 1);
  if (o_.max_tokens > 0) {
    kernels::BucketCut cut;
    cut.pad_multiple = o_.pad_multiple;
    cut.max_length = o_.max_length;
    const std::int64_t need = o_.bucket ? kernels::bucket_padded_length(cut, longest) : one_length_;
    RECUR_CHECK(o_.max_tokens >= need, Value, who, ": max_tokens = ", o_.max_tokens,
                " cannot hold the longest sample, padded to ", need,
                " steps; raise max_tokens or set max_length");
  }
  std::vector<std::int32_t> l32(lengths_.begin(), lengths_.end());
  device_lengths_ = Tensor::from_vector(l32, {std::int64_t(l32.size())}, o_.device);
}

std::int64_t LengthBucketSampler::length(std::int64_t sample) const {
  const std::int64_t l = lengths_.at(std::size_t(sample));
  return o_.max_length > 0 ? std::min(l, o_.max_length) : l;
}

std::int64_t LengthBucketSampler::first_token(std::int64_t sample) const {
  return o_.truncating == Truncation::Pre ? lengths_.at(std::size_t(sample)) - length(sample) : 0;
}

std::vector<BucketBatch> LengthBucketSampler::epoch(std::int64_t epoch) const {
  std::mt19937_64 rng = epoch_rng(o_.seed, epoch);
  const std::int64_t N = num_samples();
  std::vector<std::int32_t> order(static_cast<std::size_t>(N));
  for (std::int64_t i = 0; i < N; ++i) order[std::size_t(i)] = std::int32_t(i);
  shuffle(order, rng);

  kernels::BucketCut cut;
  cut.batch_size = cap_;
  cut.max_tokens = o_.max_tokens;
  cut.pad_multiple = o_.pad_multiple;
  cut.max_length = o_.max_length;
  cut.fixed_length = o_.bucket ? 0 : one_length_;
  cut.drop_remainder = o_.drop_remainder;
  const ops::LengthBuckets r =
      ops::length_buckets(device_lengths_, Tensor::from_vector(order, {N}, o_.device),
                          o_.bucket ? window_ : N, cut, o_.bucket);
  const auto indices = r.indices.to_vector<std::int32_t>();
  const auto keys = r.lengths.to_vector<std::int32_t>();
  const auto begin = r.batch_begin.to_vector<std::int32_t>();
  const auto size = r.batch_size.to_vector<std::int32_t>();
  const auto padded = r.batch_padded.to_vector<std::int32_t>();

  std::vector<BucketBatch> batches(static_cast<std::size_t>(r.num_batches));
  for (std::size_t b = 0; b < batches.size(); ++b) {
    BucketBatch& batch = batches[b];
    batch.padded_length = padded[b];
    for (std::int32_t j = begin[b]; j < begin[b] + size[b]; ++j) {
      batch.samples.push_back(indices[std::size_t(j)]);
      batch.lengths.push_back(keys[std::size_t(j)]);
    }
  }
  if (o_.bucket) shuffle(batches, rng);
  return batches;
}

PaddingStats LengthBucketSampler::stats(const std::vector<BucketBatch>& batches) const {
  PaddingStats s;
  s.batches = std::int64_t(batches.size());
  s.one_length = one_length_;
  for (const BucketBatch& b : batches) {
    s.samples += b.size();
    s.real_steps += b.real_steps();
    s.padded_steps += b.padded_steps();
  }
  s.one_length_padded_steps = s.samples * one_length_ - s.real_steps;
  return s;
}

Tensor LengthBucketSampler::pad_batch(const std::vector<std::vector<std::int32_t>>& tokens,
                                      const BucketBatch& batch, Device device) const {
  RECUR_CHECK(std::int64_t(tokens.size()) == num_samples(), Value,
              "pad_batch: tokens holds ", tokens.size(), " samples, the sampler ", num_samples());
  const std::int64_t T = batch.padded_length;
  std::vector<std::int32_t> ids(std::size_t(batch.size() * T), 0);
  for (std::int64_t b = 0; b < batch.size(); ++b) {
    const std::int64_t s = batch.samples[std::size_t(b)];
    RECUR_CHECK(s >= 0 && s < num_samples(), Value, "pad_batch: sample ", s, " is outside [0, ",
                num_samples(), ")");
    const auto& seq = tokens[std::size_t(s)];
    RECUR_CHECK(std::int64_t(seq.size()) == lengths_[std::size_t(s)], Value, "pad_batch: sample ",
                s, " has ", seq.size(), " tokens, but the sampler was given length ",
                lengths_[std::size_t(s)]);
    const std::int64_t len = length(s), first = first_token(s);
    RECUR_CHECK(len <= T, Value, "pad_batch: sample ", s, " (", len,
                " tokens after truncation) is longer than the batch's padded length ", T);
    std::copy(seq.begin() + first, seq.begin() + first + len, ids.begin() + b * T);
  }
  return Tensor::from_vector(ids, {batch.size(), T}, device);
}

}  // namespace recur
