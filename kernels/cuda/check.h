// Checking of CUDA runtime calls and kernel launches. Every cudaXxx call in
// recur goes through RECUR_CUDA_CHECK, and every launch is followed by
// RECUR_CHECK_LAUNCH(); a failure throws recur::CudaError (or
// OutOfMemoryError) naming the call, file and line. Private to recur.
#pragma once

#include <cuda_runtime_api.h>

#include "recur/common/error.h"

namespace recur::cuda_detail {

[[noreturn]] void throw_cuda_error(cudaError_t err, const char* statement, const char* file,
                                   int line);

inline void check_cuda(cudaError_t err, const char* statement, const char* file, int line) {
  if (err != cudaSuccess) throw_cuda_error(err, statement, file, line);
}

}  // namespace recur::cuda_detail

#define RECUR_CUDA_CHECK(stmt) ::recur::cuda_detail::check_cuda((stmt), #stmt, __FILE__, __LINE__)
// After a <<<...>>> launch: catches bad configurations at once; faults inside
// the kernel surface at the next synchronising call, which is checked too.
#define RECUR_CHECK_LAUNCH() \
  ::recur::cuda_detail::check_cuda(cudaGetLastError(), "kernel launch", __FILE__, __LINE__)
