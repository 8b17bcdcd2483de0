// Device selection.
#include "core/device.h"

#include <torch/cuda.h>

#include "core/errors.h"

#ifdef VITRUVIAN_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace vitruvian {

DeviceChoice parse_device_choice(const std::string& text) {
  if (text == "auto") return DeviceChoice::kAuto;
  if (text == "cpu") return DeviceChoice::kCpu;
  if (text == "cuda") return DeviceChoice::kCuda;
  throw InputError("device", "'" + text + "' is not a device choice; expected auto, cpu or cuda");
}

const char* to_string(DeviceChoice choice) {
  switch (choice) {
    case DeviceChoice::kAuto: return "auto";
    case DeviceChoice::kCpu: return "cpu";
    case DeviceChoice::kCuda: return "cuda";
  }
  return "?";
}

int cuda_device_count() { return static_cast<int>(torch::cuda::device_count()); }

#ifdef VITRUVIAN_WITH_CUDA
namespace {
std::string cuda_version_text(int version) {
  if (version <= 0) return "";
  return std::to_string(version / 1000) + "." + std::to_string(version % 1000 / 10);
}
}  // namespace
#endif

std::string cuda_runtime_version() {
#ifdef VITRUVIAN_WITH_CUDA
  int version = 0;
  if (cudaRuntimeGetVersion(&version) != cudaSuccess) return "";
  return cuda_version_text(version);
#else
  return "";
#endif
}

std::string cuda_driver_version() {
#ifdef VITRUVIAN_WITH_CUDA
  int version = 0;
  if (cudaDriverGetVersion(&version) != cudaSuccess) return "";
  return cuda_version_text(version);
#else
  return "";
#endif
}

c10::Device select_device(DeviceChoice choice, int local_rank) {
  const int count = choice == DeviceChoice::kCpu ? 0 : cuda_device_count();
  if (choice == DeviceChoice::kCpu || (choice == DeviceChoice::kAuto && count == 0)) return c10::Device(c10::kCPU);
  if (count == 0) {
    throw InputError("device", "'cuda' was asked for but LibTorch sees no CUDA device (CPU-only LibTorch, no GPU, "
                               "or CUDA_VISIBLE_DEVICES empty); use --device cpu or auto");
  }
  return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(local_rank % count));
}

}  // namespace vitruvian
