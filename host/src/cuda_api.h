// What the CUDA half of host/ (host/src/cuda/, compiled only with CUDA) offers
// the rest of host/. Keeps CUDA headers out of everything else.
#pragma once

#include <memory>
#include <string>

#include "recur/kernels/persistent_plan.h"

namespace recur {
class Backend;
struct SystemInfo;

namespace cuda_host {
// Usable CUDA devices; sets *reason when there are none.
int device_count(std::string* reason);
std::unique_ptr<Backend> make_backend(int index);
// Fills the CUDA/cuDNN versions and the GPUs.
void fill_system_info(SystemInfo& info);
// The limits the persistent-RNN planner needs, from cudaDeviceProp.
kernels::DeviceLimits device_limits(int index);
}  // namespace cuda_host
}  // namespace recur
