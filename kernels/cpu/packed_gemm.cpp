// The recurrent product of the CPU sequence kernels (cpu.h's PackedWeight):
// c[M, N] = a[M, K] op(w) (+ c) with op(w) packed once per pass.
//
// Why not the BLAS: a recurrent pass multiplies the same W_hh by a few state
// rows at every step (one to a few dozen rows per thread). OpenBLAS 0.3.21
// copies ("packs") the whole weight into its panel layout on every call, so at
// [32 rows, 256] x [256, 1024] per step the copy moves as many bytes as the
// product reads, and perf showed its copy routines at 12-15% of an LSTM
// H256 B64 training pass. Here the weight is packed once per pass into
// panels of 32 columns ([K][32] each, contiguous, zero-padded), and an
// AVX-512 kernel keeps a block of C (up to 8 rows x 32 columns, or 1-3 rows x
// 128 columns for the batch-1 products) in registers over all of K.
//
// Each element of C is one sum over k in order with fused multiply-adds, so
// the result does not depend on how rows are split over threads; it differs
// from the BLAS's only in the last bits (its own blocking and FMAs), as the
// BLAS differs between machines. Where the CPU (or the compiler) has no
// AVX-512F, packed_weight() says so and the callers keep using gemm().
#include <algorithm>
#include <cstring>

#include "recur/common/error.h"
#include "recur/kernels/cpu.h"

#if defined(__x86_64__) && defined(__GNUC__) && (!defined(__clang__) || __clang_major__ >= 10)
#define RECUR_PACKED_AVX512 1
#include <immintrin.h>
#else
#define RECUR_PACKED_AVX512 0
#endif

namespace recur::kernels::cpu {

namespace {
constexpr std::int64_t kPanel = PackedWeight::kPanel;

#if RECUR_PACKED_AVX512
bool have_avx512() {
  static const bool yes = __builtin_cpu_supports("avx512f");
  return yes;
}

#define RECUR_AVX512 __attribute__((target("avx512f")))

// Rows [0, MR) x panels [0, NP) of C over all of K; ncols: the valid columns
// of those panels (the last panel of a weight may be partly padding).
template <int MR, int NP>
RECUR_AVX512 void block(std::int64_t K, const float* a, std::int64_t lda, const float* p,
                        std::int64_t panel_stride, bool accumulate, float* c, std::int64_t ldc,
                        std::int64_t ncols) {
  constexpr int V = 2 * NP;  // 16-float vectors per row of the block
  __m512 acc[MR][V];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < V; ++v) acc[r][v] = _mm512_setzero_ps();
  for (std::int64_t k = 0; k < K; ++k) {
    __m512 w[V];
#pragma GCC unroll 8
    for (int q = 0; q < NP; ++q) {
      w[2 * q] = _mm512_loadu_ps(p + q * panel_stride + k * kPanel);
      w[2 * q + 1] = _mm512_loadu_ps(p + q * panel_stride + k * kPanel + 16);
    }
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m512 x = _mm512_set1_ps(a[r * lda + k]);
#pragma GCC unroll 8
      for (int v = 0; v < V; ++v) acc[r][v] = _mm512_fmadd_ps(x, w[v], acc[r][v]);
    }
  }
#pragma GCC unroll 8
  for (int v = 0; v < V; ++v) {
    const std::int64_t col = v * 16;
    if (col >= ncols) break;
    const __mmask16 m = ncols - col >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (ncols - col)) - 1u);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      float* dst = c + r * ldc + col;
      __m512 y = acc[r][v];
      if (accumulate) y = _mm512_add_ps(_mm512_maskz_loadu_ps(m, dst), y);
      _mm512_mask_storeu_ps(dst, m, y);
    }
  }
}

// All panels for rows [0, MR): groups of NP panels, then the rest one by one.
template <int MR, int NP>
RECUR_AVX512 void rows(std::int64_t K, std::int64_t N, const float* a, std::int64_t lda,
                       const float* packed, bool accumulate, float* c, std::int64_t ldc) {
  const std::int64_t panels = (N + kPanel - 1) / kPanel, stride = K * kPanel;
  std::int64_t q = 0;
  for (; q + NP <= panels; q += NP)
    block<MR, NP>(K, a, lda, packed + q * stride, stride, accumulate, c + q * kPanel, ldc,
                  N - q * kPanel);
  for (; q < panels; ++q)
    block<MR, 1>(K, a, lda, packed + q * stride, stride, accumulate, c + q * kPanel, ldc,
                 N - q * kPanel);
}

RECUR_AVX512 void product_avx512(std::int64_t M, std::int64_t K, std::int64_t N, const float* a,
                                 std::int64_t lda, const float* packed, bool accumulate, float* c,
                                 std::int64_t ldc) {
  std::int64_t m = 0;
  for (; m + 8 <= M; m += 8) rows<8, 1>(K, N, a + m * lda, lda, packed, accumulate, c + m * ldc, ldc);
  const float* ar = a + m * lda;
  float* cr = c + m * ldc;
  switch (M - m) {
    case 7: return rows<7, 1>(K, N, ar, lda, packed, accumulate, cr, ldc);
    case 6: return rows<6, 1>(K, N, ar, lda, packed, accumulate, cr, ldc);
    case 5: return rows<5, 1>(K, N, ar, lda, packed, accumulate, cr, ldc);
    case 4: return rows<4, 2>(K, N, ar, lda, packed, accumulate, cr, ldc);
    case 3: return rows<3, 2>(K, N, ar, lda, packed, accumulate, cr, ldc);
    case 2: return rows<2, 4>(K, N, ar, lda, packed, accumulate, cr, ldc);
    case 1: return rows<1, 4>(K, N, ar, lda, packed, accumulate, cr, ldc);
    default: return;
  }
}
#endif
}  // namespace

bool packed_product_available() {
#if RECUR_PACKED_AVX512
  return have_avx512();
#else
  return false;
#endif
}

bool pack_weight(const float* w, bool trans, std::int64_t K, std::int64_t N, PackedWeight& p) {
  p.K = p.N = 0;
  if (!packed_product_available() || K <= 0 || N <= 0) return false;
  const std::int64_t panels = (N + kPanel - 1) / kPanel;
  const std::size_t size = std::size_t(panels * K * kPanel);
  if (p.data.size() < size) p.data.resize(size);
  float* d = p.data.data();
  for (std::int64_t q = 0; q < panels; ++q) {
    const std::int64_t n0 = q * kPanel, nn = std::min(kPanel, N - n0);
    float* panel = d + q * K * kPanel;
    for (std::int64_t k = 0; k < K; ++k) {
      float* row = panel + k * kPanel;
      if (trans)  // op(w)[k, n] = w[n, k], w [N, K]
        for (std::int64_t j = 0; j < nn; ++j) row[j] = w[(n0 + j) * K + k];
      else  // w [K, N]
        std::memcpy(row, w + k * N + n0, std::size_t(nn) * sizeof(float));
      for (std::int64_t j = nn; j < kPanel; ++j) row[j] = 0.0f;
    }
  }
  p.K = K;
  p.N = N;
  return true;
}

void packed_product(std::int64_t M, const float* a, std::int64_t lda, const PackedWeight& p,
                    bool accumulate, float* c, std::int64_t ldc) {
  RECUR_CHECK(p.K > 0 && p.N > 0, Value, "packed_product: the weight is not packed");
  if (M <= 0) return;
#if RECUR_PACKED_AVX512
  product_avx512(M, p.K, p.N, a, lda, p.data.data(), accumulate, c, ldc);
#else
  (void)a, (void)lda, (void)accumulate, (void)c, (void)ldc;
  RECUR_THROW(Unsupported, "packed_product: not built for this CPU");
#endif
}

}  // namespace recur::kernels::cpu
