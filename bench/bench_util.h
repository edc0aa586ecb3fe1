// Timing shared by recur's benchmarks: median wall time of repeats after one
// warm-up run, with the device synchronised around each run.
#pragma once

#include <algorithm>
#include <chrono>
#include <functional>
#include <vector>

#include "recur/host/backend.h"

namespace recur::bench {

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
  std::nth_element(t.begin(), t.begin() + t.size() / 2, t.end());
  return t[t.size() / 2];
}

}  // namespace recur::bench
