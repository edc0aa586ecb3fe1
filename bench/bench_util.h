// Timing shared by recur's benchmarks: median wall time of repeats after one
// warm-up run, with the device synchronised around each run; median() for
// benchmarks that take their own samples; and, for the benchmarks against
// cuDNN, a CUDA-event timer (cuda_median_us). That one is declared only where
// <cuda_runtime_api.h> was included before this header (CUDART_VERSION), so
// that the CPU-only benchmarks need no CUDA headers.
#pragma once

#include <algorithm>
#include <chrono>
#include <functional>
#include <utility>
#include <vector>

#include "recur/host/backend.h"

namespace recur::bench {

// Median of the samples (the upper one of the middle two for an even count).
inline double median(std::vector<double> t) {
  if (t.empty()) return 0;
  std::nth_element(t.begin(), t.begin() + t.size() / 2, t.end());
  return t[t.size() / 2];
}

inline double median_seconds(Device dev, int repeats, const std::function<void()>& f) {
  f();
  backend(dev).synchronize();
  std::vector<double> t;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    backend(dev).synchronize();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return median(std::move(t));
}

#ifdef CUDART_VERSION
#define RECUR_BENCH_CUDA_CHECK(call)                                                  \
  do {                                                                                \
    const cudaError_t e_ = (call);                                                    \
    if (e_ != cudaSuccess) RECUR_THROW(Cuda, #call, ": ", cudaGetErrorString(e_));    \
  } while (0)

// A start and an end event, destroyed with the object.
struct CudaEvents {
  cudaEvent_t a{}, b{};
  CudaEvents() {
    RECUR_BENCH_CUDA_CHECK(cudaEventCreate(&a));
    RECUR_BENCH_CUDA_CHECK(cudaEventCreate(&b));
  }
  ~CudaEvents() {
    cudaEventDestroy(a);
    cudaEventDestroy(b);
  }
  CudaEvents(const CudaEvents&) = delete;
  CudaEvents& operator=(const CudaEvents&) = delete;
};

// Median microseconds of `repeats` runs of f(r) on `stream`, timed with CUDA
// events, after `warmups` untimed runs f(0), f(1), ...; r counts the runs from
// 0 across warm-ups and timed runs, for callers that rotate their inputs.
// before(r), when given, runs before each timed run's start event (outside the
// timing): an L2 flush, say. The stream is synchronised after the warm-ups, and
// each timed run waits for its end event, so runs never overlap.
inline double cuda_median_us(cudaStream_t stream, int warmups, int repeats, const std::function<void(int)>& f,
                             const std::function<void(int)>& before = {}) {
  int r = 0;
  for (int w = 0; w < warmups; ++w) f(r++);
  RECUR_BENCH_CUDA_CHECK(cudaStreamSynchronize(stream));
  CudaEvents ev;
  std::vector<double> t;
  for (int k = 0; k < repeats; ++k, ++r) {
    if (before) before(r);
    RECUR_BENCH_CUDA_CHECK(cudaEventRecord(ev.a, stream));
    f(r);
    RECUR_BENCH_CUDA_CHECK(cudaEventRecord(ev.b, stream));
    RECUR_BENCH_CUDA_CHECK(cudaEventSynchronize(ev.b));
    float ms = 0;
    RECUR_BENCH_CUDA_CHECK(cudaEventElapsedTime(&ms, ev.a, ev.b));
    t.push_back(1000.0 * ms);
  }
  return median(std::move(t));
}
#endif  // CUDART_VERSION

}  // namespace recur::bench
