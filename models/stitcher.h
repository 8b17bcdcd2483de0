// Sliding-window prediction straight to labels with bounded memory: windows run in z-y-x order
// and their weighted logits are added into a band one window deep that slides down the volume;
// rows no later window touches are divided by their weights, turned into labels by argmax and
// dropped. The result equals the whole-volume blend (sliding_window_logits(...).argmax(0))
// voxel for voxel with fp32 accumulation, whatever the volume's depth.
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>
#include <functional>

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

/// Labels [D, H, W] (uint8 when classes ≤ 256, else int32) of `image` [C, D, H, W] from the
/// Gaussian-weighted blend of `forward` over windows (options as sliding_window_logits).
at::Tensor sliding_window_labels(const at::Tensor& image, std::int64_t classes, const WindowForward& forward,
                                 const SlidingWindowOptions& options, Accumulation accumulation = Accumulation::kFloat32,
                                 const WindowProgress& progress = {});

}  // namespace vitruvian::models
