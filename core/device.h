// Device choice for a rank: --device auto|cpu|cuda; a CUDA rank takes device local_rank mod
// the number of visible devices.
#pragma once

#include <c10/core/Device.h>

#include <string>

namespace vitruvian {

enum class DeviceChoice { kAuto, kCpu, kCuda };

/// Parses "auto", "cpu" or "cuda"; throws InputError otherwise.
DeviceChoice parse_device_choice(const std::string& text);
const char* to_string(DeviceChoice choice);

/// CUDA devices LibTorch can see (0 with a CPU-only LibTorch).
int cuda_device_count();

/// CUDA runtime and driver versions ("13.0"), or "" in a build without the CUDA side / no driver.
std::string cuda_runtime_version();
std::string cuda_driver_version();

/// The device this rank computes on. kAuto picks CUDA when a device is visible, else CPU.
/// kCuda without a visible device throws InputError.
c10::Device select_device(DeviceChoice choice, int local_rank);

}  // namespace vitruvian
