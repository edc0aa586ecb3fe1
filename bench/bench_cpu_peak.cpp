// bench_cpu_peak: the CPU's float32 fused multiply-add peak, measured, so
// that the CPU comparisons can say how much of the machine a row uses (and
// what a target would need). Each thread runs 12 independent chains of FMAs
// on vectors (AVX-512 where the CPU has it, else AVX2 with FMA, else plain
// scalar code), enough to hide the FMA latency; the figure is the best of
// --repeats runs, in GFLOP/s (2 flops per lane per FMA).
//   bench_cpu_peak [--threads N] [--repeats R] [--ms M]
// CSV: isa,threads,gflops (the best run), median_gflops.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define PEAK_X86 1
#else
#define PEAK_X86 0
#endif

namespace {
constexpr int kChains = 12;

#if PEAK_X86
__attribute__((target("avx512f"))) float run_avx512(long iters) {
  __m512 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm512_set1_ps(1.0f + 1e-7f * float(i));
  const __m512 b = _mm512_set1_ps(0.9999999f), c = _mm512_set1_ps(1e-7f);
  for (long k = 0; k < iters; ++k)
#pragma GCC unroll 12
    for (int i = 0; i < kChains; ++i) acc[i] = _mm512_fmadd_ps(acc[i], b, c);
  alignas(64) float v[16];
  float s = 0;
  for (int i = 0; i < kChains; ++i) {
    _mm512_store_ps(v, acc[i]);
    for (float x : v) s += x;
  }
  return s;
}
__attribute__((target("avx2,fma"))) float run_avx2(long iters) {
  __m256 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm256_set1_ps(1.0f + 1e-7f * float(i));
  const __m256 b = _mm256_set1_ps(0.9999999f), c = _mm256_set1_ps(1e-7f);
  for (long k = 0; k < iters; ++k)
#pragma GCC unroll 12
    for (int i = 0; i < kChains; ++i) acc[i] = _mm256_fmadd_ps(acc[i], b, c);
  alignas(32) float v[8];
  float s = 0;
  for (int i = 0; i < kChains; ++i) {
    _mm256_store_ps(v, acc[i]);
    for (float x : v) s += x;
  }
  return s;
}
#endif
float run_scalar(long iters) {
  float acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = 1.0f + 1e-7f * float(i);
  for (long k = 0; k < iters; ++k)
    for (int i = 0; i < kChains; ++i) acc[i] = acc[i] * 0.9999999f + 1e-7f;
  float s = 0;
  for (float x : acc) s += x;
  return s;
}

struct Isa {
  const char* name;
  int lanes;
  float (*run)(long);
};

Isa pick() {
#if PEAK_X86
  if (__builtin_cpu_supports("avx512f")) return {"avx512f", 16, run_avx512};
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return {"avx2+fma", 8, run_avx2};
#endif
  return {"scalar", 1, run_scalar};
}

// GFLOP/s of n threads each running `iters` iterations.
double measure(const Isa& isa, int n, long iters, volatile float* sink) {
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> team;
  std::vector<float> out(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) team.emplace_back([&, i] { out[std::size_t(i)] = isa.run(iters); });
  for (auto& t : team) t.join();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (float v : out) *sink += v;
  return double(n) * double(iters) * kChains * isa.lanes * 2.0 / s / 1e9;
}
}  // namespace

int main(int argc, char** argv) {
  int threads = int(std::max(1u, std::thread::hardware_concurrency())), repeats = 5, ms = 300;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) threads = std::max(1, std::atoi(argv[++i]));
    else if (!std::strcmp(argv[i], "--repeats") && i + 1 < argc) repeats = std::max(1, std::atoi(argv[++i]));
    else if (!std::strcmp(argv[i], "--ms") && i + 1 < argc) ms = std::max(1, std::atoi(argv[++i]));
    else {
      std::fprintf(stderr, "usage: bench_cpu_peak [--threads N] [--repeats R] [--ms M]\n");
      return 2;
    }
  }
  const Isa isa = pick();
  volatile float sink = 0;
  // Size the run to about --ms milliseconds from a short calibration.
  long iters = 1 << 16;
  for (;;) {
    const auto t0 = std::chrono::steady_clock::now();
    measure(isa, 1, iters, &sink);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (s > 0.02 || iters > (1L << 40)) {
      iters = std::max(1L, long(double(iters) * (ms / 1000.0) / s));
      break;
    }
    iters *= 4;
  }
  std::printf("isa,threads,gflops,median_gflops\n");
  std::vector<double> g;
  for (int r = 0; r < repeats; ++r) g.push_back(measure(isa, threads, iters, &sink));
  std::sort(g.begin(), g.end());
  std::printf("%s,%d,%.1f,%.1f\n", isa.name, threads, g.back(), g[g.size() / 2]);
  return 0;
}
