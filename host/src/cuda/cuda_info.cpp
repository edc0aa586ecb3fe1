// CUDA device discovery and the GPU part of `recur devices`.
#include <cuda_runtime_api.h>

#include "../cuda_api.h"
#include "library_check.h"
#include "recur/host/device.h"
#include "recur/host/system_info.h"

namespace recur::cuda_host {

int device_count(std::string* reason) {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err == cudaSuccess && count > 0) return count;
  (void)cudaGetLastError();
  if (reason) {
    if (err == cudaErrorInsufficientDriver || err == cudaErrorStubLibrary)
      *reason = "no usable NVIDIA driver (libcuda) on this machine";
    else if (err == cudaErrorNoDevice || (err == cudaSuccess && count == 0))
      *reason = "the NVIDIA driver reports no CUDA device";
    else
      *reason = std::string("cudaGetDeviceCount failed: ") + cudaGetErrorName(err) + ": " +
                cudaGetErrorString(err);
  }
  return 0;
}

void fill_system_info(SystemInfo& info) {
  int v = 0;
  if (cudaRuntimeGetVersion(&v) == cudaSuccess) info.cuda_runtime_version = v;
  v = 0;
  if (cudaDriverGetVersion(&v) == cudaSuccess) info.cuda_driver_version = v;
#if defined(RECUR_HAVE_CUDNN)
  info.cudnn_version = int(cudnnGetVersion());
#endif
  const int n = cuda_device_count();
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp p{};
    RECUR_CUDA_CHECK(cudaGetDeviceProperties(&p, i));
    GpuInfo g;
    g.index = i;
    g.name = p.name;
    g.total_memory = p.totalGlobalMem;
    g.sm_count = p.multiProcessorCount;
    g.cc_major = p.major;
    g.cc_minor = p.minor;
    g.l2_bytes = std::size_t(p.l2CacheSize);
    g.shared_memory_per_sm = p.sharedMemPerMultiprocessor;
    // Free memory needs a context on that GPU; an exclusive or prohibited GPU
    // refuses one, which must not stop the report.
    int previous = 0;
    std::size_t free = 0, total = 0;
    if (cudaGetDevice(&previous) == cudaSuccess && cudaSetDevice(i) == cudaSuccess &&
        cudaMemGetInfo(&free, &total) == cudaSuccess)
      g.free_memory = free;
    (void)cudaSetDevice(previous);
    (void)cudaGetLastError();
    info.gpus.push_back(g);
  }
}

}  // namespace recur::cuda_host
