// Direct 1D convolution on the CPU (no im2col), for the narrow layers of the
// book's models: few channels, short kernels, 32 filters. im2col + GEMM
// copies every input step K times and then runs a GEMM whose inner
// dimension is only C*K (30 for the Jena conv model's first layer), where
// OpenBLAS spends much of its time packing. Here each block of kRowBlock
// output steps x one vector width of output channels keeps its sums in
// registers while the taps and input channels stream past: the input is read
// in place and the packed weights stay in L1.
//
// The same loop computes the input gradient (a convolution of dy with the
// weights transposed, its windows found by inverting the forward's index
// map, so strides, dilation and padding need no special cases).
//
// The float32 loops are cloned per instruction set as in rnn_rows_f32.cpp;
// no FMA contraction (CMakeLists.txt), so the clones round alike. The sum
// order (taps outer, channels inner, bias first) differs from the GEMM's, so
// results agree with the im2col path to rounding, not bit for bit.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "recur/kernels/cpu.h"

#include "cpu_clones.h"

namespace recur::kernels::cpu {
namespace {

constexpr std::int64_t kRowBlock = 8;

// Output channels per block: two cache lines, 32 float32 (the book's models'
// filter count: one block, each input value broadcast once for all of them).
// 8 x 32 float32 sums are 16 AVX-512 registers.
template <class T>
constexpr std::int64_t kLanes = 128 / sizeof(T);

template <class T>
struct DirectArgs {
  const T* in = nullptr;  // [B, T_in, C_in]
  std::int64_t T_in = 0, C_in = 0;
  const T* wp = nullptr;  // packed [K, C_in, Fp], Fp = F_out rounded up to kLanes, zero padded
  std::int64_t K = 0, Fp = 0, F_out = 0;
  const T* bias = nullptr;  // [F_out] or null
  T* out = nullptr;         // [B, rows, F_out]
  std::int64_t rows = 0;
  const T* zeros = nullptr;  // C_in zeros: the input row of a tap outside the sequence
  // Forward: input row of (output row r, tap k) = r*stride - pad + k*dilation.
  // Transposed (the input gradient): r + pad - k*dilation = t*stride for a
  // forward output step t < T_in, else no row.
  bool transposed = false;
  std::int64_t stride = 1, dilation = 1, pad = 0;
};

template <class T>
inline std::int64_t input_row(const DirectArgs<T>& a, std::int64_t r, std::int64_t k) {
  if (a.stride == 1) {  // no division: the common case
    const std::int64_t p = a.transposed ? r + a.pad - k * a.dilation : r - a.pad + k * a.dilation;
    return p >= 0 && p < a.T_in ? p : -1;
  }
  if (!a.transposed) {
    const std::int64_t p = r * a.stride - a.pad + k * a.dilation;
    return p >= 0 && p < a.T_in ? p : -1;
  }
  const std::int64_t num = r + a.pad - k * a.dilation;
  if (num < 0 || num % a.stride != 0) return -1;
  const std::int64_t t = num / a.stride;
  return t < a.T_in ? t : -1;
}

// Blocks [blk0, blk1) of the B * ceil(rows / kRowBlock) row blocks.
template <class T>
__attribute__((always_inline)) inline void direct_blocks(const DirectArgs<T>& a, std::int64_t blk0,
                                                         std::int64_t blk1) {
  constexpr std::int64_t L = kLanes<T>;
  const std::int64_t nb = (a.rows + kRowBlock - 1) / kRowBlock;
  for (std::int64_t blk = blk0; blk < blk1; ++blk) {
    const std::int64_t b = blk / nb, r0 = (blk % nb) * kRowBlock;
    const std::int64_t nr = std::min(kRowBlock, a.rows - r0);
    const T* in = a.in + b * a.T_in * a.C_in;
    T* out = a.out + (b * a.rows + r0) * a.F_out;
    for (std::int64_t f0 = 0; f0 < a.Fp; f0 += L) {
      T acc[kRowBlock][L];
      for (std::int64_t r = 0; r < kRowBlock; ++r)
        for (std::int64_t j = 0; j < L; ++j)
          acc[r][j] = a.bias && f0 + j < a.F_out ? a.bias[f0 + j] : T(0);
      // A full block of the forward with stride 1 whose taps all lie inside
      // the sequence: row r of tap k is input row r0 - pad + k * dilation + r,
      // so the rows are C_in apart and need no per-tap lookup. The same
      // products and sums in the same order as the general loop below.
      const std::int64_t first = r0 - a.pad, last = r0 + kRowBlock - 1 - a.pad + (a.K - 1) * a.dilation;
      if (!a.transposed && a.stride == 1 && nr == kRowBlock && first >= 0 && last < a.T_in) {
        for (std::int64_t k = 0; k < a.K; ++k) {
          const T* x0 = in + (first + k * a.dilation) * a.C_in;
          const T* wk = a.wp + k * a.C_in * a.Fp + f0;
          for (std::int64_t c = 0; c < a.C_in; ++c) {
            const T* w = wk + c * a.Fp;
            for (std::int64_t r = 0; r < kRowBlock; ++r) {
              const T v = x0[r * a.C_in + c];
#pragma omp simd
              for (std::int64_t j = 0; j < L; ++j) acc[r][j] += v * w[j];
            }
          }
        }
      } else {
        for (std::int64_t k = 0; k < a.K; ++k) {
          const T* xr[kRowBlock];
          for (std::int64_t r = 0; r < kRowBlock; ++r) {
            const std::int64_t p = r < nr ? input_row(a, r0 + r, k) : -1;
            xr[r] = p >= 0 ? in + p * a.C_in : a.zeros;
          }
          const T* wk = a.wp + k * a.C_in * a.Fp + f0;
          for (std::int64_t c = 0; c < a.C_in; ++c) {
            const T* w = wk + c * a.Fp;
            for (std::int64_t r = 0; r < kRowBlock; ++r) {
              const T v = xr[r][c];
#pragma omp simd
              for (std::int64_t j = 0; j < L; ++j) acc[r][j] += v * w[j];
            }
          }
        }
      }
      const std::int64_t nf = std::min(L, a.F_out - f0);
      for (std::int64_t r = 0; r < nr; ++r)
        for (std::int64_t j = 0; j < nf; ++j) out[r * a.F_out + f0 + j] = acc[r][j];
    }
  }
}

RECUR_CPU_CLONES
void direct_blocks_f32(const DirectArgs<float>& a, std::int64_t blk0, std::int64_t blk1) {
  direct_blocks(a, blk0, blk1);
}

void run_blocks(const DirectArgs<float>& a, std::int64_t blk0, std::int64_t blk1) {
  direct_blocks_f32(a, blk0, blk1);
}
void run_blocks(const DirectArgs<double>& a, std::int64_t blk0, std::int64_t blk1) {
  direct_blocks(a, blk0, blk1);
}

template <class T>
void run(const DirectArgs<T>& a, std::int64_t B) {
  const std::int64_t blocks = B * ((a.rows + kRowBlock - 1) / kRowBlock);
  const std::int64_t work = B * a.rows * a.F_out * a.C_in * a.K;
#pragma omp parallel if (work >= kParallelThreshold)
  {
#ifdef _OPENMP
    const std::int64_t n = omp_get_num_threads(), i = omp_get_thread_num();
#else
    const std::int64_t n = 1, i = 0;
#endif
    run_blocks(a, blocks * i / n, blocks * (i + 1) / n);
  }
}

// The weight gradient: dwp[k, c, f] (packed as the forward's weights) =
// sum over b, t of x[b, t*stride - pad + k*dilation, c] * dy[b, t, f], over
// batches [b0, b1), accumulated into acc. Tiles of kTapBlock (k, c) pairs by
// one block of output channels keep their sums in registers while the rows
// of dy stream past.
constexpr std::int64_t kTapBlock = 8;

template <class T>
struct DwArgs {
  const T* x = nullptr;   // [B, T, C]
  const T* dy = nullptr;  // [B, T_out, F]
  std::int64_t T_in = 0, C = 0, T_out = 0, F = 0, K = 0, Fp = 0;
  std::int64_t stride = 1, dilation = 1, pad = 0;
};

template <class T>
__attribute__((always_inline)) inline void dw_batches(const DwArgs<T>& a, std::int64_t b0, std::int64_t b1,
                                                      T* acc) {
  constexpr std::int64_t L = kLanes<T>;
  const std::int64_t taps = a.K * a.C;
  const T zero = T(0);
  for (std::int64_t b = b0; b < b1; ++b) {
    const T* xb = a.x + b * a.T_in * a.C;
    const T* dyb = a.dy + b * a.T_out * a.F;
    for (std::int64_t j0 = 0; j0 < taps; j0 += kTapBlock) {
      std::int64_t kj[kTapBlock], cj[kTapBlock];
      for (std::int64_t j = 0; j < kTapBlock; ++j) {
        const std::int64_t kc = std::min(j0 + j, taps - 1);  // a repeated tap past the end, not stored
        kj[j] = kc / a.C;
        cj[j] = kc % a.C;
      }
      const std::int64_t nj = std::min(kTapBlock, taps - j0);
      for (std::int64_t f0 = 0; f0 < a.Fp; f0 += L) {
        const std::int64_t nf = std::min(L, a.F - f0);
        T s[kTapBlock][L];
        for (std::int64_t j = 0; j < kTapBlock; ++j)
          for (std::int64_t l = 0; l < L; ++l) s[j][l] = T(0);
        // Steps whose taps all lie inside the sequence, with a full block of
        // channels: no bounds tests in the loop.
        std::int64_t t_lo = a.T_out, t_hi = a.T_out;
        if (nf == L) {
          const std::int64_t kmin = kj[0], kmax = kj[kTapBlock - 1];  // kj is non-decreasing
          const std::int64_t lo_num = a.pad - kmin * a.dilation;
          t_lo = lo_num <= 0 ? 0 : (lo_num + a.stride - 1) / a.stride;
          const std::int64_t hi_num = a.T_in - 1 + a.pad - kmax * a.dilation;
          t_hi = hi_num < 0 ? 0 : std::min(a.T_out, hi_num / a.stride + 1);
          if (t_hi < t_lo) t_lo = t_hi = a.T_out;
          const T* xp[kTapBlock];
          for (std::int64_t j = 0; j < kTapBlock; ++j)
            xp[j] = xb + (kj[j] * a.dilation - a.pad) * a.C + cj[j];
          const std::int64_t step = a.stride * a.C;
          for (std::int64_t t = t_lo; t < t_hi; ++t) {
            const T* dyr = dyb + t * a.F + f0;
            for (std::int64_t j = 0; j < kTapBlock; ++j) {
              const T v = xp[j][t * step];
#pragma omp simd
              for (std::int64_t l = 0; l < L; ++l) s[j][l] += v * dyr[l];
            }
          }
        }
        for (std::int64_t t = 0; t < a.T_out; ++t) {
          if (t == t_lo) t = t_hi;
          if (t >= a.T_out) break;
          T d[L];
          const T* dyr = dyb + t * a.F + f0;
          for (std::int64_t l = 0; l < L; ++l) d[l] = l < nf ? dyr[l] : T(0);
          for (std::int64_t j = 0; j < kTapBlock; ++j) {
            const std::int64_t p = t * a.stride - a.pad + kj[j] * a.dilation;
            const T v = p >= 0 && p < a.T_in ? xb[p * a.C + cj[j]] : zero;
#pragma omp simd
            for (std::int64_t l = 0; l < L; ++l) s[j][l] += v * d[l];
          }
        }
        for (std::int64_t j = 0; j < nj; ++j) {
          T* o = acc + (kj[j] * a.C + cj[j]) * a.Fp + f0;
          for (std::int64_t l = 0; l < L; ++l) o[l] += s[j][l];
        }
      }
    }
  }
}

RECUR_CPU_CLONES
void dw_batches_f32(const DwArgs<float>& a, std::int64_t b0, std::int64_t b1, float* acc) {
  dw_batches(a, b0, b1, acc);
}
void run_dw(const DwArgs<float>& a, std::int64_t b0, std::int64_t b1, float* acc) {
  dw_batches_f32(a, b0, b1, acc);
}
void run_dw(const DwArgs<double>& a, std::int64_t b0, std::int64_t b1, double* acc) {
  dw_batches(a, b0, b1, acc);
}

std::atomic<int>& path_setting() {
  static std::atomic<int> p{[] {
    const char* e = std::getenv("RECUR_CONV1D");
    if (e && std::strcmp(e, "direct") == 0) return int(Conv1dPath::Direct);
    if (e && std::strcmp(e, "im2col") == 0) return int(Conv1dPath::Im2col);
    return int(Conv1dPath::Auto);
  }()};
  return p;
}

}  // namespace

double conv1d_direct_lane_use(std::int64_t outputs, bool f64) {
  const std::int64_t L = f64 ? kLanes<double> : kLanes<float>;
  return outputs <= 0 ? 0.0 : double(outputs) / double((outputs + L - 1) / L * L);
}

Conv1dPath conv1d_path() { return Conv1dPath(path_setting().load(std::memory_order_relaxed)); }
void set_conv1d_path(Conv1dPath p) { path_setting().store(int(p), std::memory_order_relaxed); }

template <class T>
void conv1d_direct_forward(const Conv1dGeometry& g, const T* x, const T* w, const T* bias, T* y,
                           std::int64_t F) {
  constexpr std::int64_t L = kLanes<T>;
  const std::int64_t C = g.C, K = g.K, Fp = (F + L - 1) / L * L;
  // w [F, C, K] -> wp [K, C, Fp]
  std::vector<T> wp(static_cast<std::size_t>(K * C * Fp), T(0)), zeros(static_cast<std::size_t>(C), T(0));
  for (std::int64_t f = 0; f < F; ++f)
    for (std::int64_t c = 0; c < C; ++c)
      for (std::int64_t k = 0; k < K; ++k) wp[std::size_t((k * C + c) * Fp + f)] = w[(f * C + c) * K + k];
  DirectArgs<T> a;
  a.in = x;
  a.T_in = g.T;
  a.C_in = C;
  a.wp = wp.data();
  a.K = K;
  a.Fp = Fp;
  a.F_out = F;
  a.bias = bias;
  a.out = y;
  a.rows = g.T_out;
  a.zeros = zeros.data();
  a.stride = g.stride;
  a.dilation = g.dilation;
  a.pad = g.pad_left;
  run(a, g.B);
}

template <class T>
void conv1d_direct_backward_data(const Conv1dGeometry& g, const T* dy, const T* w, T* dx, std::int64_t F) {
  constexpr std::int64_t L = kLanes<T>;
  const std::int64_t C = g.C, K = g.K, Cp = (C + L - 1) / L * L;
  // w [F, C, K] -> wq [K, F, Cp]
  std::vector<T> wq(static_cast<std::size_t>(K * F * Cp), T(0)), zeros(static_cast<std::size_t>(F), T(0));
  for (std::int64_t f = 0; f < F; ++f)
    for (std::int64_t c = 0; c < C; ++c)
      for (std::int64_t k = 0; k < K; ++k) wq[std::size_t((k * F + f) * Cp + c)] = w[(f * C + c) * K + k];
  DirectArgs<T> a;
  a.in = dy;
  a.T_in = g.T_out;
  a.C_in = F;
  a.wp = wq.data();
  a.K = K;
  a.Fp = Cp;
  a.F_out = C;
  a.out = dx;
  a.rows = g.T;
  a.zeros = zeros.data();
  a.transposed = true;
  a.stride = g.stride;
  a.dilation = g.dilation;
  a.pad = g.pad_left;
  run(a, g.B);
}

template <class T>
void conv1d_direct_backward_weights(const Conv1dGeometry& g, const T* x, const T* dy, T* dw, std::int64_t F) {
  constexpr std::int64_t L = kLanes<T>;
  DwArgs<T> a;
  a.x = x;
  a.dy = dy;
  a.T_in = g.T;
  a.C = g.C;
  a.T_out = g.T_out;
  a.F = F;
  a.K = g.K;
  a.Fp = (F + L - 1) / L * L;
  a.stride = g.stride;
  a.dilation = g.dilation;
  a.pad = g.pad_left;
  const std::int64_t n_acc = g.K * g.C * a.Fp;
  // One partial sum per thread over a fixed share of the batch, added in
  // thread order: the same result run to run for a given thread count.
#ifdef _OPENMP
  const bool par = g.B * g.T_out * F * g.C * g.K >= kParallelThreshold && g.B > 1;
  const std::int64_t nt = par ? std::min<std::int64_t>(omp_get_max_threads(), g.B) : 1;
#else
  const std::int64_t nt = 1;
#endif
  std::vector<T> part(static_cast<std::size_t>(nt * n_acc), T(0));
#pragma omp parallel num_threads(int(nt)) if (nt > 1)
  {
#ifdef _OPENMP
    const std::int64_t i = omp_get_thread_num(), n = omp_get_num_threads();
#else
    const std::int64_t i = 0, n = 1;
#endif
    run_dw(a, g.B * i / n, g.B * (i + 1) / n, part.data() + i * n_acc);
  }
  for (std::int64_t f = 0; f < F; ++f)
    for (std::int64_t c = 0; c < g.C; ++c)
      for (std::int64_t k = 0; k < g.K; ++k) {
        T s = T(0);
        for (std::int64_t i = 0; i < nt; ++i) s += part[std::size_t(i * n_acc + (k * g.C + c) * a.Fp + f)];
        dw[(f * g.C + c) * g.K + k] = s;
      }
}

template void conv1d_direct_backward_weights<float>(const Conv1dGeometry&, const float*, const float*, float*,
                                                    std::int64_t);
template void conv1d_direct_backward_weights<double>(const Conv1dGeometry&, const double*, const double*,
                                                     double*, std::int64_t);
template void conv1d_direct_forward<float>(const Conv1dGeometry&, const float*, const float*, const float*,
                                           float*, std::int64_t);
template void conv1d_direct_forward<double>(const Conv1dGeometry&, const double*, const double*,
                                            const double*, double*, std::int64_t);
template void conv1d_direct_backward_data<float>(const Conv1dGeometry&, const float*, const float*, float*,
                                                 std::int64_t);
template void conv1d_direct_backward_data<double>(const Conv1dGeometry&, const double*, const double*,
                                                  double*, std::int64_t);

}  // namespace recur::kernels::cpu
