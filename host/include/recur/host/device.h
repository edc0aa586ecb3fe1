// Devices: where tensors live and ops run. The default device is the first CUDA
// device when recur was built with CUDA and one is present (in a job launched
// by mpirun or srun, the GPU of the rank's local rank, modulo the GPUs), else
// the CPU; RECUR_DEVICE=cpu|cuda|cuda:N or set_default_device() override it.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace recur {

enum class DeviceKind : unsigned char { CPU, CUDA };

struct Device {
  DeviceKind kind = DeviceKind::CPU;
  int index = 0;

  static Device cpu() { return {DeviceKind::CPU, 0}; }
  static Device cuda(int index = 0) { return {DeviceKind::CUDA, index}; }
  // "cpu", "cuda", "cuda:N", "gpu" (= cuda:0). Throws ValueError otherwise.
  static Device parse(std::string_view text);

  bool is_cpu() const { return kind == DeviceKind::CPU; }
  bool is_cuda() const { return kind == DeviceKind::CUDA; }
  std::string str() const;  // "cpu", "cuda:0"

  friend bool operator==(const Device& a, const Device& b) {
    return a.kind == b.kind && (a.kind == DeviceKind::CPU || a.index == b.index);
  }
  friend bool operator!=(const Device& a, const Device& b) { return !(a == b); }
};

// True when this build of recur contains the CUDA backend.
bool cuda_compiled();
// Number of usable CUDA devices (0 without CUDA support, driver or device).
int cuda_device_count();
// Why there are no CUDA devices ("" when there are some).
std::string cuda_unavailable_reason();

// Throws DeviceError, saying why, when `device` cannot be used.
void require_device(Device device);

// The default device (see the top of this file). Reading RECUR_DEVICE happens
// once; a malformed value throws ValueError naming it.
Device default_device();
// Overrides the default for this process; std::nullopt restores automatic choice.
void set_default_device(std::optional<Device> device);

}  // namespace recur
