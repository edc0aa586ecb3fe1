// cuBLAS and cuDNN status checks, routed to the same recur::Error family as
// RECUR_CUDA_CHECK (kernels/cuda/check.h).
#pragma once

#include <cublas_v2.h>

#include "kernels/cuda/check.h"

#if defined(RECUR_HAVE_CUDNN)
#include <cudnn.h>
#endif

namespace recur::cuda_detail {

const char* cublas_status_name(cublasStatus_t s);

inline void check_cublas(cublasStatus_t s, const char* statement, const char* file, int line) {
  if (s == CUBLAS_STATUS_SUCCESS) return;
  detail::throw_error(s == CUBLAS_STATUS_ALLOC_FAILED ? ErrorKind::OutOfMemory : ErrorKind::Cublas,
                      cublas_status_name(s), statement, file, line);
}

#if defined(RECUR_HAVE_CUDNN)
inline void check_cudnn(cudnnStatus_t s, const char* statement, const char* file, int line) {
  if (s == CUDNN_STATUS_SUCCESS) return;
  detail::throw_error(ErrorKind::Cudnn, cudnnGetErrorString(s), statement, file, line);
}
#endif

}  // namespace recur::cuda_detail

#define RECUR_CUBLAS_CHECK(stmt) \
  ::recur::cuda_detail::check_cublas((stmt), #stmt, __FILE__, __LINE__)
#define RECUR_CUDNN_CHECK(stmt) \
  ::recur::cuda_detail::check_cudnn((stmt), #stmt, __FILE__, __LINE__)
