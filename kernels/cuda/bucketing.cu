// Length bucketing on the GPU with CUB (CPU twin: kernels/cpu/bucketing.cpp;
// the shared rules: recur/kernels/bucketing.h):
//   DeviceTransform          gathers the keys, lengths[order[i]] clipped;
//   DeviceSegmentedRadixSort sorts each window by key, carrying the indices
//                            (LSD radix sort is stable: ties keep their order,
//                            exactly as the CPU's std::stable_sort);
//   DeviceReduce::Min        finds the smallest key (negative: bad input);
//   DeviceFor::Bulk          cuts each window, one thread per window (the
//                            greedy cut is sequential inside a window; there
//                            are n / window of them, a few dozen per epoch);
//   DeviceScan::ExclusiveSum turns the per-window batch counts into each
//                            window's first batch number, so a second
//                            Bulk pass writes every batch in place.
// Nothing here synchronises; every CUB call's status is checked.
#include <cub/device/device_for.cuh>
#include <cub/device/device_reduce.cuh>
#include <cub/device/device_scan.cuh>
#include <cub/device/device_segmented_radix_sort.cuh>
#include <cub/device/device_transform.cuh>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/iterator/transform_iterator.h>

#include <algorithm>
#include <climits>

#include "check.h"
#include "launch.h"

namespace recur::kernels::cuda {
namespace {

struct KeyOf {
  const std::int32_t* lengths;
  std::int64_t N, max_length;
  __device__ std::int32_t operator()(std::int32_t index) const {
    return bucket_key(lengths, N, index, max_length);
  }
};

struct WindowBegin {
  std::int64_t window;
  __host__ __device__ int operator()(int w) const { return int(std::int64_t(w) * window); }
};
struct WindowEnd {
  std::int64_t window, n;
  __host__ __device__ int operator()(int w) const {
    const std::int64_t e = (std::int64_t(w) + 1) * window;
    return int(e < n ? e : n);
  }
};

// Thread w < nw counts window w's batches; thread nw writes the 0 that makes
// the exclusive scan's last element the total.
struct CountWindow {
  BucketArgs a;
  std::int32_t* counts;
  std::int64_t nw;
  __device__ void operator()(std::int64_t w) const {
    if (w == nw) {
      counts[w] = 0;
      return;
    }
    const std::int64_t w0 = w * a.window;
    const std::int64_t m = a.n - w0 < a.window ? a.n - w0 : a.window;
    counts[w] = std::int32_t(cut_bucket_window(a.cut, a.keys + w0, m, w0, nullptr, nullptr, nullptr));
  }
};

struct WriteWindow {
  BucketArgs a;
  const std::int32_t* bases;
  std::int64_t nw;
  __device__ void operator()(std::int64_t w) const {
    if (w == nw) {
      a.info[0] = bases[nw];
      return;
    }
    const std::int64_t w0 = w * a.window;
    const std::int64_t m = a.n - w0 < a.window ? a.n - w0 : a.window;
    const std::int32_t b = bases[w];
    cut_bucket_window(a.cut, a.keys + w0, m, w0, a.batch_begin + b, a.batch_size + b,
                      a.batch_padded + b);
  }
};

constexpr std::size_t kAlign = 256;
std::size_t aligned(std::size_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

struct Layout {
  std::size_t keys_in = 0, counts = 0, bases = 0, temp = 0;  // offsets
  std::size_t temp_bytes = 0, total = 0;
};

auto begin_offsets(std::int64_t window) {
  return thrust::make_transform_iterator(thrust::make_counting_iterator<int>(0), WindowBegin{window});
}
auto end_offsets(std::int64_t window, std::int64_t n) {
  return thrust::make_transform_iterator(thrust::make_counting_iterator<int>(0), WindowEnd{window, n});
}

// The temporary storage CUB asks for (size queries launch nothing).
Layout layout(std::int64_t n, std::int64_t window, bool sort) {
  const std::int64_t nw = (n + window - 1) / window;
  std::size_t sort_bytes = 0, min_bytes = 0, scan_bytes = 0;
  if (sort)
    RECUR_CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortPairs(
        nullptr, sort_bytes, static_cast<const std::int32_t*>(nullptr),
        static_cast<std::int32_t*>(nullptr), static_cast<const std::int32_t*>(nullptr),
        static_cast<std::int32_t*>(nullptr), int(n), int(nw), begin_offsets(window),
        end_offsets(window, n)));
  RECUR_CUDA_CHECK(cub::DeviceReduce::Min(nullptr, min_bytes, static_cast<const std::int32_t*>(nullptr),
                                          static_cast<std::int32_t*>(nullptr), int(n)));
  RECUR_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(nullptr, scan_bytes,
                                                 static_cast<const std::int32_t*>(nullptr),
                                                 static_cast<std::int32_t*>(nullptr), int(nw + 1)));
  Layout l;
  l.keys_in = 0;
  l.counts = l.keys_in + aligned(sizeof(std::int32_t) * std::size_t(n));
  l.bases = l.counts + aligned(sizeof(std::int32_t) * std::size_t(nw + 1));
  l.temp = l.bases + aligned(sizeof(std::int32_t) * std::size_t(nw + 1));
  l.temp_bytes = std::max({sort_bytes, min_bytes, scan_bytes, std::size_t(1)});
  l.total = l.temp + aligned(l.temp_bytes);
  return l;
}

}  // namespace

std::size_t length_buckets_workspace(std::int64_t n, std::int64_t window, bool sort) {
  return layout(n, window, sort).total;
}

void length_buckets(const BucketArgs& a, void* workspace, std::size_t workspace_bytes,
                    cudaStream_t s) {
  const std::int64_t nw = (a.n + a.window - 1) / a.window;
  const Layout l = layout(a.n, a.window, a.sort);
  RECUR_CHECK(workspace_bytes >= l.total, Internal, "length_buckets: workspace of ",
              workspace_bytes, " bytes, need ", l.total);
  char* ws = static_cast<char*>(workspace);
  auto* keys_in = reinterpret_cast<std::int32_t*>(ws + l.keys_in);
  auto* counts = reinterpret_cast<std::int32_t*>(ws + l.counts);
  auto* bases = reinterpret_cast<std::int32_t*>(ws + l.bases);
  void* temp = ws + l.temp;
  std::size_t temp_bytes = l.temp_bytes;

  const int n = int(a.n);
  if (a.sort) {
    RECUR_CUDA_CHECK(cub::DeviceTransform::Transform(a.order, keys_in, n,
                                                     KeyOf{a.lengths, a.N, a.cut.max_length}, s));
    RECUR_CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortPairs(
        temp, temp_bytes, static_cast<const std::int32_t*>(keys_in), a.keys, a.order, a.indices,
        n, int(nw), begin_offsets(a.window), end_offsets(a.window, a.n), 0,
        int(sizeof(std::int32_t) * CHAR_BIT), s));
  } else {
    RECUR_CUDA_CHECK(cub::DeviceTransform::Transform(a.order, a.keys, n,
                                                     KeyOf{a.lengths, a.N, a.cut.max_length}, s));
    RECUR_CUDA_CHECK(cudaMemcpyAsync(a.indices, a.order, sizeof(std::int32_t) * std::size_t(n),
                                     cudaMemcpyDeviceToDevice, s));
  }
  temp_bytes = l.temp_bytes;
  RECUR_CUDA_CHECK(cub::DeviceReduce::Min(temp, temp_bytes, a.keys, a.info + 1, n, s));
  RECUR_CUDA_CHECK(cub::DeviceFor::Bulk(nw + 1, CountWindow{a, counts, nw}, s));
  temp_bytes = l.temp_bytes;
  RECUR_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(temp, temp_bytes, counts, bases, int(nw + 1), s));
  RECUR_CUDA_CHECK(cub::DeviceFor::Bulk(nw + 1, WriteWindow{a, bases, nw}, s));
}

}  // namespace recur::kernels::cuda
