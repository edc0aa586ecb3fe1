// CPU GEMM: OpenBLAS (or any CBLAS) does this well, so recur calls it rather
// than writing its own. recur threads it, not the BLAS: a GEMM of 2^23
// multiply-adds or more is cut into one block of rows (or columns) of C per
// thread, each a single-threaded BLAS call inside one OpenMP region (a BLAS
// runs one thread inside an active region); a smaller one runs on one thread.
// OpenBLAS's own threading synchronises its threads many times per call,
// spinning in sched_yield; with other processes on the machine that made a
// [96, 30720] x [30720, 32] weight gradient take 300 ms on 2 threads against
// 10 ms on one. Each element of C is still one BLAS dot product over all of
// K; as with OpenBLAS's own threading, its last bits can depend on the
// thread count (the BLAS's kernels differ at block edges), never on the run.
// One exception to calling the BLAS: tall float32 products go to the packed
// kernel of the recurrent passes (packed_tall below says which and why).
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <string>

#include "recur/kernels/cpu.h"

namespace recur::kernels::cpu {

std::string blas_info() {
#if defined(RECUR_HAVE_OPENBLAS)
  std::string s;
  s += openblas_get_config();
  s += ", " + std::to_string(openblas_get_num_threads()) + " threads";
  return s;
#else
  return "CBLAS (vendor unknown)";
#endif
}

namespace {
// Multiply-adds below which a GEMM runs as one single-threaded BLAS call:
// about half a millisecond of work (cpu.h's kParallelThreshold says why).
constexpr double kGemmSplitWork = 1 << 23;

inline CBLAS_TRANSPOSE tr(bool t) { return t ? CblasTrans : CblasNoTrans; }

void gemm_one(bool ta, bool tb, std::int64_t M, std::int64_t N, std::int64_t K, float alpha,
              const float* A, std::int64_t lda, const float* B, std::int64_t ldb, float beta,
              float* C, std::int64_t ldc) {
  cblas_sgemm(CblasRowMajor, tr(ta), tr(tb), int(M), int(N), int(K), alpha, A, int(lda), B,
              int(ldb), beta, C, int(ldc));
}
void gemm_one(bool ta, bool tb, std::int64_t M, std::int64_t N, std::int64_t K, double alpha,
              const double* A, std::int64_t lda, const double* B, std::int64_t ldb, double beta,
              double* C, std::int64_t ldc) {
  cblas_dgemm(CblasRowMajor, tr(ta), tr(tb), int(M), int(N), int(K), alpha, A, int(lda), B,
              int(ldb), beta, C, int(ldc));
}

// Tall float32 products, c = a op(b) (+ c) with a [M, K] row-major, M at
// least 4 max(N, K), K in 64..512 and N >= 64: a recurrent layer's input
// projection over all steps ([T B, I] x [I, G]) or a Dense layer over time
// steps. The recurrent product's kernel (packed_gemm.cpp) runs these faster
// than single-threaded OpenBLAS calls per thread (alternated runs of
// bench_rnn: an LSTM H128 B32 forward about 7 % faster, H256 B64 3-7 %);
// OpenBLAS also writes C twice for beta 0 (a memset, then the product). op(b) is packed once, on the calling thread,
// and the rows are split over threads in blocks of 8. Alpha 1, beta 0 or 1,
// one batch entry, b dense. RECUR_PACKED_GEMM=0 keeps the BLAS.
bool packed_tall(bool trans_a, std::int64_t M, std::int64_t N, std::int64_t K, float alpha, float beta,
                 std::int64_t batch) {
  if (trans_a || batch != 1 || alpha != 1.0f || (beta != 0.0f && beta != 1.0f)) return false;
  if (K < 64 || K > 512 || N < 64 || M < 4 * std::max(N, K)) return false;
  static const bool off = [] {
    const char* e = std::getenv("RECUR_PACKED_GEMM");
    return e && *e == '0';
  }();
  return !off && packed_product_available();
}

bool packed_tall(bool, std::int64_t, std::int64_t, std::int64_t, double, double, std::int64_t) {
  return false;
}

void run_packed_tall(bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K, const float* A,
                     std::int64_t lda, const float* B, float beta, float* C, std::int64_t ldc) {
  // The calling thread's buffer, kept between calls; the team reads it
  // through this reference (a thread_local named inside the region would be
  // each thread's own).
  thread_local PackedWeight buffer;
  const PackedWeight& packed = buffer;
  pack_weight(B, trans_b, K, N, buffer);
  const std::int64_t nt = omp_in_parallel() ? 1 : num_threads();
  // Blocks of 8 rows (the kernel's), as even as that allows.
  const std::int64_t blocks = (M + 7) / 8, pieces = std::min(nt, blocks);
#pragma omp parallel for schedule(static) num_threads(int(pieces)) if (pieces > 1)
  for (std::int64_t p = 0; p < pieces; ++p) {
    const std::int64_t lo = std::min(M, blocks * p / pieces * 8);
    const std::int64_t hi = std::min(M, blocks * (p + 1) / pieces * 8);
    packed_product(hi - lo, A + lo * lda, lda, packed, beta != 0.0f, C + lo * ldc, ldc);
  }
}
void run_packed_tall(bool, std::int64_t, std::int64_t, std::int64_t, const double*, std::int64_t,
                     const double*, double, double*, std::int64_t) {}
}  // namespace

template <class T>
void gemm(bool trans_a, bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K, T alpha,
          const T* A, std::int64_t lda, std::int64_t stride_a, const T* B, std::int64_t ldb,
          std::int64_t stride_b, T beta, T* C, std::int64_t ldc, std::int64_t stride_c,
          std::int64_t batch) {
  if (M == 0 || N == 0) return;
  if (K == 0) {
    // BLAS leaves C untouched when K == 0 only if beta == 1; make it exact.
    for (std::int64_t b = 0; b < batch; ++b)
      for (std::int64_t i = 0; i < M; ++i)
        for (std::int64_t j = 0; j < N; ++j) {
          T& c = C[b * stride_c + i * ldc + j];
          c = beta == T(0) ? T(0) : beta * c;
        }
    return;
  }
  if (packed_tall(trans_a, M, N, K, alpha, beta, batch) && ldb == (trans_b ? K : N))
    return run_packed_tall(trans_b, M, N, K, A, lda, B, beta, C, ldc);
  const std::int64_t nt = num_threads();
  const double work = double(M) * double(N) * double(K) * double(batch);
  if (nt < 2 || omp_in_parallel() || work < kGemmSplitWork) {
    // One thread. Outside a parallel region OpenBLAS would thread a GEMM of
    // 2^18 multiply-adds or more itself; the thread-count ICV of this thread
    // set to 1 for the call stops it.
    const bool limit = nt > 1 && !omp_in_parallel();
    if (limit) omp_set_num_threads(1);
    for (std::int64_t b = 0; b < batch; ++b)
      gemm_one(trans_a, trans_b, M, N, K, alpha, A + b * stride_a, lda, B + b * stride_b, ldb, beta,
               C + b * stride_c, ldc);
    if (limit) omp_set_num_threads(int(nt));
    return;
  }
  // Tasks: whole batch entries when there are enough, else blocks of the
  // longer of C's two sides.
  const bool by_rows = M >= N;
  const std::int64_t side = by_rows ? M : N;
  const std::int64_t pieces = batch >= nt ? 1 : std::min(nt, side);
  const std::int64_t tasks = batch * pieces;
#pragma omp parallel for schedule(static) num_threads(int(std::min(nt, tasks)))
  for (std::int64_t task = 0; task < tasks; ++task) {
    const std::int64_t b = task / pieces, p = task % pieces;
    const std::int64_t lo = side * p / pieces, hi = side * (p + 1) / pieces;
    const T* a = A + b * stride_a;
    const T* bm = B + b * stride_b;
    T* c = C + b * stride_c;
    if (by_rows)  // rows [lo, hi) of op(A) and C
      gemm_one(trans_a, trans_b, hi - lo, N, K, alpha, trans_a ? a + lo : a + lo * lda, lda, bm, ldb,
               beta, c + lo * ldc, ldc);
    else  // columns [lo, hi) of op(B) and C
      gemm_one(trans_a, trans_b, M, hi - lo, K, alpha, a, lda, trans_b ? bm + lo * ldb : bm + lo, ldb,
               beta, c + lo, ldc);
  }
}

template void gemm<float>(bool, bool, std::int64_t, std::int64_t, std::int64_t, float, const float*,
                          std::int64_t, std::int64_t, const float*, std::int64_t, std::int64_t,
                          float, float*, std::int64_t, std::int64_t, std::int64_t);
template void gemm<double>(bool, bool, std::int64_t, std::int64_t, std::int64_t, double,
                           const double*, std::int64_t, std::int64_t, const double*, std::int64_t,
                           std::int64_t, double, double*, std::int64_t, std::int64_t, std::int64_t);

}  // namespace recur::kernels::cpu
