// Sliding-window prediction straight to labels with bounded memory: windows run in z-y-x order
// and their weighted logits are added into a band one window deep that slides down the volume;
// rows no later window touches are divided by their weights, turned into labels by argmax and
// dropped. On a GPU the band and the windows stay on the device. The result equals the
// whole-volume blend (sliding_window_logits(...).argmax(0)) voxel for voxel with fp32
// accumulation, whatever the volume's depth.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <array>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>

#include "models/sliding_window.h"

namespace vitruvian::models {

enum class Accumulation { kFloat32, kFloat16 };

/// "fp32" / "fp16", and back (ConfigError naming `key` for anything else).
const char* accumulation_name(Accumulation a);
Accumulation accumulation_from_name(const std::string& name, const std::string& key);

/// Bytes the band holds for an image of spatial size `shape_zyx` (after padding to the window):
/// the class accumulator and the weight map, one window deep.
std::int64_t band_bytes(const std::array<std::int64_t, 3>& shape_zyx, std::int64_t classes,
                        const std::array<std::int64_t, 3>& window, Accumulation accumulation);

/// Called after each batch of windows: windows done, windows in all.
using WindowProgress = std::function<void(std::int64_t, std::int64_t)>;

/// Labels [D, H, W] on the CPU (uint8 when classes ≤ 256, else int32) of `image` [C, D, H, W]
/// from the Gaussian-weighted blend of `forward` over windows (options as
/// sliding_window_logits). The band, the padded image and the windows live on `device` (the
/// network's GPU, or the CPU); `forward` may return logits on any device.
at::Tensor sliding_window_labels(const at::Tensor& image, std::int64_t classes, const WindowForward& forward,
                                 const SlidingWindowOptions& options, Accumulation accumulation = Accumulation::kFloat32,
                                 const WindowProgress& progress = {}, const c10::Device& device = c10::kCPU);

/// Where a study's band lives when the network runs on a GPU: on the GPU, unless a study at
/// least as large has run out of device memory there, then in host memory (the windows still
/// run on the GPU). The campaign records each out-of-memory and asks before each study.
class BandPlacement {
 public:
  explicit BandPlacement(c10::Device device) : device_(device) {}
  /// The device for a study of `voxels` (after resampling).
  c10::Device choose(std::int64_t voxels) const { return voxels >= smallest_failed_ ? c10::Device(c10::kCPU) : device_; }
  /// A study of `voxels` ran out of device memory with its band on the GPU.
  void record_out_of_memory(std::int64_t voxels) { smallest_failed_ = std::min(smallest_failed_, voxels); }
  std::int64_t smallest_failed() const { return smallest_failed_; }

 private:
  c10::Device device_;
  std::int64_t smallest_failed_ = std::numeric_limits<std::int64_t>::max();
};

}  // namespace vitruvian::models
