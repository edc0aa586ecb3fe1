// `recur devices`: what recur finds on this machine.
#include "recur/host/system_info.h"

#include <sstream>
#include <thread>

#include "cuda_api.h"
#include "recur/common/error.h"
#include "recur/host/communicator.h"
#include "recur/host/allocator.h"
#include "recur/host/device.h"
#include "recur/kernels/cpu.h"
#include "recur/version.h"

namespace recur {

SystemInfo system_info() {
  SystemInfo info;
  info.recur_version = RECUR_VERSION_STRING;
  info.cpu_threads = kernels::cpu::num_threads();
  info.blas = kernels::cpu::blas_info();
  info.cuda_compiled = cuda_compiled();
#if defined(RECUR_HAVE_CUDA)
  cuda_host::fill_system_info(info);
#endif
  if (cuda_device_count() == 0) info.cuda_status = cuda_unavailable_reason();
  info.mpi = mpi_version();
  info.nccl = nccl_version();
  try {
    info.default_device = default_device().str();
  } catch (const Error& e) {
    info.default_device = std::string("(invalid: ") + e.message() + ")";
  }
  return info;
}

namespace {
std::string version_str(int v) {  // 12040 -> 12.4
  return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}
std::string cudnn_str(int v) {  // 90100 -> 9.1.0
  return std::to_string(v / 10000) + "." + std::to_string((v % 10000) / 100) + "." +
         std::to_string(v % 100);
}
}  // namespace

std::string format_system_info(const SystemInfo& info) {
  std::ostringstream os;
  os << "recur " << info.recur_version << "\n";
  os << "CPU: " << info.cpu_threads << " threads (OpenMP; " << std::thread::hardware_concurrency()
     << " hardware threads), BLAS: " << info.blas << "\n";
  if (!info.cuda_compiled) {
    os << "CUDA: not built in (" << info.cuda_status << ")\n";
  } else {
    os << "CUDA: runtime " << version_str(info.cuda_runtime_version) << ", driver "
       << (info.cuda_driver_version ? version_str(info.cuda_driver_version) : "none")
       << ", cuDNN " << (info.cudnn_version ? cudnn_str(info.cudnn_version) : "not built in")
       << "\n";
    if (info.gpus.empty()) os << "GPU: none found: " << info.cuda_status << "\n";
    for (const GpuInfo& g : info.gpus)
      os << "GPU cuda:" << g.index << ": " << g.name << ", " << format_bytes(g.total_memory)
         << " (" << format_bytes(g.free_memory) << " free), " << g.sm_count
         << " SMs, compute capability " << g.cc_major << "." << g.cc_minor << ", L2 "
         << format_bytes(g.l2_bytes) << ", shared memory " << format_bytes(g.shared_memory_per_sm)
         << " per SM\n";
  }
  os << "distributed: " << info.mpi << "; " << info.nccl << "\n";
  os << "default device: " << info.default_device << "\n";
  return os.str();
}

}  // namespace recur
