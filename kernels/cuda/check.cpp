#include "check.h"

#include <string>

namespace recur::cuda_detail {

void throw_cuda_error(cudaError_t err, const char* statement, const char* file, int line) {
  // Clear the sticky per-thread error so later, unrelated calls are not blamed.
  (void)cudaGetLastError();
  std::string msg = std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err);
  ErrorKind kind = ErrorKind::Cuda;
  if (err == cudaErrorMemoryAllocation) kind = ErrorKind::OutOfMemory;
  if (err == cudaErrorNoDevice || err == cudaErrorInsufficientDriver || err == cudaErrorStubLibrary)
    kind = ErrorKind::Device;
  detail::throw_error(kind, msg, statement, file, line);
}

}  // namespace recur::cuda_detail
