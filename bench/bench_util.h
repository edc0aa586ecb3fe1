// Timing shared by recur's benchmarks: median wall time of repeats after one
// warm-up run, with the device synchronised around each run; median() for
// benchmarks that take their own samples (CUDA events in bench_conv_cudnn).
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

}  // namespace recur::bench
