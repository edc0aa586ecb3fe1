// CPU twin of kernels/cuda/bucketing.cu: gather the keys, stable-sort each
// window, cut it (recur/kernels/bucketing.h). Sequential: the work is O(n log
// window) on a few thousand samples per epoch.
#include <algorithm>
#include <numeric>
#include <vector>

#include "recur/common/error.h"
#include "recur/kernels/cpu.h"

namespace recur::kernels::cpu {

void length_buckets(const BucketArgs& a) {
  std::int32_t min_key = 0;
  for (std::int64_t i = 0; i < a.n; ++i) {
    const std::int32_t key = bucket_key(a.lengths, a.N, a.order[i], a.cut.max_length);
    RECUR_CHECK(key != -1, Value, "length_buckets: order[", i, "] = ", a.order[i],
                " is outside [0, ", a.N, ") (the number of lengths)");
    RECUR_CHECK(key != -2, Value, "length_buckets: lengths[", a.order[i], "] = ",
                a.lengths[a.order[i]], " is negative");
    a.keys[i] = key;
    a.indices[i] = a.order[i];
    min_key = i == 0 ? key : std::min(min_key, key);
  }
  std::vector<std::int64_t> perm;
  std::vector<std::int32_t> tmp;
  std::int64_t batches = 0;
  for (std::int64_t w0 = 0; w0 < a.n; w0 += a.window) {
    const std::int64_t m = std::min(a.window, a.n - w0);
    std::int32_t* keys = a.keys + w0;
    std::int32_t* idx = a.indices + w0;
    if (a.sort) {
      perm.resize(std::size_t(m));
      std::iota(perm.begin(), perm.end(), std::int64_t(0));
      std::stable_sort(perm.begin(), perm.end(),
                       [&](std::int64_t x, std::int64_t y) { return keys[x] < keys[y]; });
      tmp.resize(std::size_t(2 * m));
      for (std::int64_t j = 0; j < m; ++j) {
        tmp[std::size_t(j)] = keys[perm[std::size_t(j)]];
        tmp[std::size_t(m + j)] = idx[perm[std::size_t(j)]];
      }
      std::copy(tmp.begin(), tmp.begin() + m, keys);
      std::copy(tmp.begin() + m, tmp.end(), idx);
    }
    batches += cut_bucket_window(a.cut, keys, m, w0, a.batch_begin + batches,
                                 a.batch_size + batches, a.batch_padded + batches);
  }
  a.info[0] = std::int32_t(batches);
  a.info[1] = min_key;
}

}  // namespace recur::kernels::cpu
