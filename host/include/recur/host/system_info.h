// What recur finds on this machine: CPU threads and BLAS, each GPU, the CUDA
// driver/runtime and cuDNN versions. Powers `recur devices`.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "recur/kernels/persistent_plan.h"

namespace recur {

struct GpuInfo {
  int index = 0;
  std::string name;
  std::size_t total_memory = 0, free_memory = 0;
  int sm_count = 0, cc_major = 0, cc_minor = 0;
  std::size_t l2_bytes = 0;
  std::size_t shared_memory_per_sm = 0;
  kernels::DeviceLimits limits;  // what the persistent-RNN planner plans with
};

struct SystemInfo {
  std::string recur_version;
  int cpu_threads = 0;
  std::string blas;
  bool cuda_compiled = false;
  int cuda_runtime_version = 0;  // e.g. 13000
  int cuda_driver_version = 0;   // 0: no driver
  int cudnn_version = 0;         // 0: not built in
  std::string cuda_status;       // why no GPU, when there is none
  std::vector<GpuInfo> gpus;
  std::string default_device;
  std::string mpi, nccl;  // distributed training: versions, or why not built in
};

SystemInfo system_info();
std::string format_system_info(const SystemInfo& info);

}  // namespace recur
