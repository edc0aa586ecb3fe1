// Length bucketing for datasets of variable-length sequences: batches of
// similar lengths, so little of each [B, T] batch is padding, sized so that
// a recurrent step's working set suits the device. See docs/bucketing.md.
//
// Each epoch (a pure function of seed and epoch number):
//   1. shuffle all sample indices;
//   2. cut the shuffled order into windows of `window` samples and sort each
//      window by length, stably (ties keep their shuffled order), so batches
//      are homogeneous yet each epoch's are different;
//   3. cut each sorted window into batches greedily: a batch grows while the
//      next sample fits, i.e. while samples <= batch cap and, with a token
//      budget, samples * padded length <= max_tokens (short batches hold more
//      samples: the memory-aware part); a batch is padded to its longest
//      sample rounded up to pad_multiple (never above max_length);
//   4. shuffle the order of the batches.
// Steps 2-3 run on options.device: the CPU twin or CUB on a GPU
// (ops::length_buckets), with identical results.
// Without bucketing (bucket = false): the shuffled order cut into batches of
// the cap, every batch padded to one_length() (max_length, or the longest
// sample), as Keras's pad_sequences does for a whole dataset.
//
// Truncation and padding: a sample longer than max_length keeps max_length
// tokens, its last ones with Truncation::Pre (Keras pad_sequences' default
// truncating='pre') or its first ones with Post. recur pads at the end
// (Keras's padding='post'; its default is 'pre'): lengths_to_mask() and
// cuDNN's packed layouts want right padding, and with a mask the side of the
// padding does not change a masked recurrent layer's result.
#pragma once

#include <cstdint>
#include <vector>

#include "recur/host/device.h"
#include "recur/host/tensor.h"

namespace recur {

enum class Truncation : unsigned char { Pre, Post };

// An H100's L2 cache (cudaDeviceProp::l2CacheSize of the SXM part: 50 MiB).
inline constexpr std::int64_t kDefaultL2Bytes = std::int64_t(50) << 20;

// The working set of one recurrent step, in bytes:
//   dtype_bytes * (G*H*H + batch * (G*H + 2*H))
// W_hh [G*H, H], read by every step's GEMM; the gate pre-activations
// [batch, G*H] the GEMM writes and the pointwise kernel reads; and two
// [batch, H] states carried to the next step (LSTM: h and c; GRU and
// SimpleRNN: h_{t-1} and h_t). The input projection's slice for the step is
// read once and left out. gates: 4 (LSTM), 3 (GRU), 1 (SimpleRNN).
std::int64_t step_working_set_bytes(std::int64_t hidden, std::int64_t gates, std::int64_t batch,
                                    std::int64_t dtype_bytes = 4);
// The largest batch whose step working set fits in cache_bytes; 0 when the
// weights alone do not fit (then no batch keeps the step in cache, and a
// larger batch only amortises the weights' trip from memory better).
std::int64_t max_batch_in_cache(std::int64_t hidden, std::int64_t gates,
                                std::int64_t dtype_bytes = 4,
                                std::int64_t cache_bytes = kDefaultL2Bytes);
// The L2 size of a CUDA device as the driver reports it; kDefaultL2Bytes for
// the CPU or when it is unknown.
std::int64_t l2_cache_bytes(Device device);

struct BucketingOptions {
  bool bucket = true;            // false: plain shuffled batches of one length
  std::int64_t batch_size = 32;  // samples per batch; with max_tokens, the most
  std::int64_t max_tokens = 0;   // 0: none; else samples * padded length <= max_tokens
  std::int64_t window = 0;       // samples per sorted window; 0: 100 * batch_size
  std::int64_t max_length = 0;   // 0: none; longer samples are truncated (Keras maxlen)
  Truncation truncating = Truncation::Pre;
  // Padded lengths are rounded up to a multiple of this. Not for GEMM
  // alignment (T is no dimension of the step GEMM): it bounds the number of
  // distinct batch shapes, so cached allocations and per-shape plans are
  // reused; it costs a few padded steps (docs/bucketing.md gives numbers).
  std::int64_t pad_multiple = 8;
  // Drops each window's last batch when it holds fewer samples than its
  // padded length allows (without bucketing: the epoch's last batch when short).
  bool drop_remainder = false;
  std::uint64_t seed = 0;
  // With hidden > 0, the batch cap is also max_batch_in_cache(hidden, gates,
  // dtype_bytes, cache_bytes) when that is not 0.
  std::int64_t hidden = 0, gates = 4, dtype_bytes = 4, cache_bytes = kDefaultL2Bytes;
  Device device = Device::cpu();  // where windows are sorted and cut
};

struct BucketBatch {
  std::vector<std::int64_t> samples;  // sample indices
  std::vector<std::int64_t> lengths;  // their lengths after truncation
  std::int64_t padded_length = 0;     // T of the batch
  std::int64_t size() const { return std::int64_t(samples.size()); }
  std::int64_t real_steps() const;    // sum of lengths
  std::int64_t padded_steps() const;  // size() * padded_length - real_steps()
};

struct PaddingStats {
  std::int64_t samples = 0, batches = 0;
  std::int64_t real_steps = 0;    // sum of the samples' lengths
  std::int64_t padded_steps = 0;  // padding in the batches
  std::int64_t one_length = 0;    // the single length of padding everything alike
  std::int64_t one_length_padded_steps = 0;  // samples * one_length - real_steps
  // Padded steps over all steps, [0, 1).
  double padded_fraction() const;
  double one_length_padded_fraction() const;
  // one_length_padded_steps / padded_steps: how many times less padding
  // (infinite when the batches hold none).
  double reduction() const;
};

class LengthBucketSampler {
 public:
  // lengths: tokens per sample (>= 0, below 2^31). Throws ValueError for
  // options out of range, naming them, and for a token budget below the
  // padded length of the longest sample.
  LengthBucketSampler(std::vector<std::int64_t> lengths, BucketingOptions options);

  const BucketingOptions& options() const { return o_; }
  std::int64_t num_samples() const { return std::int64_t(lengths_.size()); }
  // A sample's length after truncation, and the position of its first kept token.
  std::int64_t length(std::int64_t sample) const;
  std::int64_t first_token(std::int64_t sample) const;
  std::int64_t one_length() const { return one_length_; }
  std::int64_t batch_cap() const { return cap_; }  // batch_size, capped by the cache
  std::int64_t window() const { return window_; }

  // The batches of an epoch; every sample appears once (minus those in
  // batches drop_remainder drops).
  std::vector<BucketBatch> epoch(std::int64_t epoch) const;
  PaddingStats stats(const std::vector<BucketBatch>& batches) const;

  // int32 [size, padded_length] ids of a batch from each sample's token ids
  // (tokens[s].size() must be the length the sampler was given), truncated
  // as the options say and padded with 0 at the end.
  Tensor pad_batch(const std::vector<std::vector<std::int32_t>>& tokens, const BucketBatch& batch,
                   Device device = Device::cpu()) const;

 private:
  std::vector<std::int64_t> lengths_;
  BucketingOptions o_;
  std::int64_t cap_ = 0, window_ = 0, one_length_ = 0;
  Tensor device_lengths_;  // int32 [N] on o_.device
};

}  // namespace recur
