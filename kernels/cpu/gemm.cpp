// CPU GEMM: OpenBLAS (or any CBLAS) does this well, so recur calls it rather
// than writing its own. Batches loop over cblas calls; each call is itself
// multi-threaded by the BLAS.
#include <cblas.h>

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
  for (std::int64_t b = 0; b < batch; ++b)
    gemm_one(trans_a, trans_b, M, N, K, alpha, A + b * stride_a, lda, B + b * stride_b, ldb, beta,
             C + b * stride_c, ldc);
}

template void gemm<float>(bool, bool, std::int64_t, std::int64_t, std::int64_t, float, const float*,
                          std::int64_t, std::int64_t, const float*, std::int64_t, std::int64_t,
                          float, float*, std::int64_t, std::int64_t, std::int64_t);
template void gemm<double>(bool, bool, std::int64_t, std::int64_t, std::int64_t, double,
                           const double*, std::int64_t, std::int64_t, const double*, std::int64_t,
                           std::int64_t, double, double*, std::int64_t, std::int64_t, std::int64_t);

}  // namespace recur::kernels::cpu
