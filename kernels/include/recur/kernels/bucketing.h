// Length bucketing, written once for the CPU twin (kernels/cpu/bucketing.cpp)
// and the CUDA version (kernels/cuda/bucketing.cu, CUB and Thrust):
//
// 1. key[i] = the length of sample order[i], clipped to max_length (the
//    "gather"; -1 marks an index outside [0, N), -2 a negative length);
// 2. each window of `window` consecutive positions (the last may be shorter)
//    is sorted by key, stably, so ties keep their order in `order`: a shuffled
//    order gives ties a random order, and both devices give the same result;
// 3. each sorted window is cut into batches greedily (cut_bucket_window), and
//    the per-window batch counts are scanned (exclusive) into each window's
//    first batch number.
//
// A batch is padded to its longest sample rounded up to pad_multiple (at most
// max_length, at least 1), or to fixed_length when that is set (no bucketing).
// It holds at most capacity(padded) samples: batch_size, and with a token
// budget no more than max_tokens / padded.
#pragma once

#include <cstdint>

#include "recur/common/macros.h"

namespace recur::kernels {

struct BucketCut {
  std::int64_t batch_size = 1;    // most samples in a batch, >= 1
  std::int64_t max_tokens = 0;    // 0: none; else samples * padded length <= max_tokens
  std::int64_t pad_multiple = 1;  // >= 1
  std::int64_t max_length = 0;    // 0: none; lengths are clipped to it
  std::int64_t fixed_length = 0;  // > 0: every batch has this padded length
  // Drops each window's last batch when it holds fewer samples than
  // capacity(its padded length).
  bool drop_remainder = false;
};

RECUR_HD std::int64_t bucket_padded_length(const BucketCut& c, std::int64_t len) {
  if (c.fixed_length > 0) return c.fixed_length;
  std::int64_t p = (len + c.pad_multiple - 1) / c.pad_multiple * c.pad_multiple;
  if (c.max_length > 0 && p > c.max_length) p = c.max_length;
  return p < 1 ? 1 : p;
}

RECUR_HD std::int64_t bucket_capacity(const BucketCut& c, std::int64_t padded) {
  std::int64_t cap = c.batch_size;
  if (c.max_tokens > 0 && c.max_tokens / padded < cap) cap = c.max_tokens / padded;
  return cap < 1 ? 1 : cap;
}

// The sort key of one position: the clipped length, or a negative code for bad input.
RECUR_HD std::int32_t bucket_key(const std::int32_t* lengths, std::int64_t N,
                                 std::int32_t index, std::int64_t max_length) {
  if (index < 0 || index >= N) return -1;
  const std::int32_t len = lengths[index];
  if (len < 0) return -2;
  return max_length > 0 && len > max_length ? std::int32_t(max_length) : len;
}

// Cuts one window of n keys, sorted ascending (or with fixed_length, in any
// order), into batches: a batch grows while the next sample still fits
// capacity(padded length with it). Writes batch j's first position
// (first + offset in the window), size and padded length at index j of the
// arrays when they are non-null; returns the number of batches kept.
RECUR_HD std::int64_t cut_bucket_window(const BucketCut& c, const std::int32_t* keys,
                                        std::int64_t n, std::int64_t first,
                                        std::int32_t* begin, std::int32_t* size,
                                        std::int32_t* padded) {
  std::int64_t kept = 0, start = 0;
  while (start < n) {
    std::int64_t p = bucket_padded_length(c, keys[start]);
    std::int64_t end = start + 1;
    for (; end < n; ++end) {
      std::int64_t q = bucket_padded_length(c, keys[end]);
      if (q < p) q = p;
      if (end + 1 - start > bucket_capacity(c, q)) break;
      p = q;
    }
    const bool short_last = end == n && end - start < bucket_capacity(c, p);
    if (!(c.drop_remainder && short_last)) {
      if (begin) begin[kept] = std::int32_t(first + start);
      if (size) size[kept] = std::int32_t(end - start);
      if (padded) padded[kept] = std::int32_t(p);
      ++kept;
    }
    start = end;
  }
  return kept;
}

// Pointers for one call; all int32, on one device.
struct BucketArgs {
  const std::int32_t* lengths = nullptr;  // [N]
  std::int64_t N = 0;
  const std::int32_t* order = nullptr;    // [n] indices into lengths
  std::int64_t n = 0;
  std::int64_t window = 1;                // positions per window
  bool sort = true;                       // false: keep `order` (no bucketing)
  BucketCut cut;
  std::int32_t* indices = nullptr;        // [n] out: order, each window sorted by key
  std::int32_t* keys = nullptr;           // [n] out: the keys in that order
  std::int32_t* batch_begin = nullptr;    // [n] out: the first num_batches entries written
  std::int32_t* batch_size = nullptr;     // [n] out
  std::int32_t* batch_padded = nullptr;   // [n] out
  // [2] out: the number of batches, and the smallest key (< 0: bad input; the
  // CPU twin throws instead).
  std::int32_t* info = nullptr;
};

}  // namespace recur::kernels
