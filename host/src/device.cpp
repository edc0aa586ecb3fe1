// Device parsing, CUDA availability and the default device.
#include "recur/host/device.h"

#include "recur/host/communicator.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <mutex>

#include "cuda_api.h"
#include "recur/common/error.h"

namespace recur {

Device Device::parse(std::string_view text) {
  std::string s(text);
  s.erase(0, s.find_first_not_of(" \t"));
  s.erase(s.find_last_not_of(" \t") + 1);
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char ch) { return std::tolower(ch); });
  if (s == "cpu") return cpu();
  if (s == "cuda" || s == "gpu") return cuda(0);
  if (s.rfind("cuda:", 0) == 0 && s.size() > 5 && s.size() <= 8 &&
      std::all_of(s.begin() + 5, s.end(), [](unsigned char ch) { return std::isdigit(ch); }))
    return cuda(std::stoi(s.substr(5)));
  RECUR_THROW(Value, "unknown device '", text, "': expected cpu, cuda or cuda:N");
}

std::string Device::str() const {
  return is_cpu() ? std::string("cpu") : "cuda:" + std::to_string(index);
}

bool cuda_compiled() {
#if defined(RECUR_HAVE_CUDA)
  return true;
#else
  return false;
#endif
}

namespace {
struct CudaAvailability {
  int count = 0;
  std::string reason;
};

const CudaAvailability& cuda_availability() {
  static const CudaAvailability a = [] {
    CudaAvailability r;
#if defined(RECUR_HAVE_CUDA)
    r.count = cuda_host::device_count(&r.reason);
#else
    r.reason = "this recur was built without CUDA (RECUR_CUDA=OFF, or no CUDA toolkit was found "
               "when it was configured)";
#endif
    return r;
  }();
  return a;
}

std::mutex default_mutex;
std::optional<Device> default_override;
}  // namespace

int cuda_device_count() { return cuda_availability().count; }
std::string cuda_unavailable_reason() { return cuda_availability().reason; }

void require_device(Device device) {
  if (device.is_cpu()) return;
  RECUR_CHECK(device.index >= 0, Value, "device index ", device.index, " is negative");
  const auto& a = cuda_availability();
  RECUR_CHECK(a.count > 0, Device, device.str(), " requested, but no CUDA device can be used: ",
              a.reason);
  RECUR_CHECK(device.index < a.count, Device, device.str(), " requested, but there ",
              a.count == 1 ? "is 1 CUDA device (cuda:0)"
                           : "are " + std::to_string(a.count) + " CUDA devices (cuda:0..cuda:" +
                                 std::to_string(a.count - 1) + ")");
}

Device default_device() {
  std::lock_guard<std::mutex> lock(default_mutex);
  if (default_override) return *default_override;
  if (const char* env = std::getenv("RECUR_DEVICE"); env && *env) {
    Device d;
    try {
      d = Device::parse(env);
      require_device(d);
    } catch (const Error& e) {
      RECUR_THROW(Device, "RECUR_DEVICE=", env, ": ", e.message());
    }
    return d;
  }
  const int gpus = cuda_device_count();
  if (gpus == 0) return Device::cpu();
  // One GPU per rank of a job on this machine (mpirun, srun: communicator.h).
  return Device::cuda(launch_info().local_rank % gpus);
}

void set_default_device(std::optional<Device> device) {
  if (device) require_device(*device);
  std::lock_guard<std::mutex> lock(default_mutex);
  default_override = device;
}

}  // namespace recur
