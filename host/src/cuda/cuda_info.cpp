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

namespace {
kernels::DeviceLimits limits_of(const cudaDeviceProp& prop) {
  kernels::DeviceLimits d;
  d.sm_count = prop.multiProcessorCount;
  d.regs_per_sm = prop.regsPerMultiprocessor;
  d.regs_per_block = prop.regsPerBlock;
  d.max_threads_per_block = prop.maxThreadsPerBlock;
  d.max_threads_per_sm = prop.maxThreadsPerMultiProcessor;
  d.max_blocks_per_sm = prop.maxBlocksPerMultiProcessor;
  d.smem_per_sm = std::int64_t(prop.sharedMemPerMultiprocessor);
  d.smem_per_block_optin = std::int64_t(prop.sharedMemPerBlockOptin);
  d.smem_reserved_per_block = std::int64_t(prop.reservedSharedMemPerBlock);
  d.cooperative_launch = prop.cooperativeLaunch != 0;
  // Hopper: 8 blocks portably, 16 with the non-portable attribute.
  d.max_cluster_size = prop.clusterLaunch ? 16 : 1;
  return d;
}
}  // namespace

kernels::DeviceLimits device_limits(int index) {
  cudaDeviceProp prop{};
  RECUR_CUDA_CHECK(cudaGetDeviceProperties(&prop, index));
  return limits_of(prop);
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
    g.limits = limits_of(p);
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
