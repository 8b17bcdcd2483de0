// Connected components of a mask through the connected-components kernel (6-, 18- or
// 26-connectivity; on the mask's device, numbered on the CPU in order of each component's first
// voxel, so results do not depend on threads or devices).
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>
#include <vector>

namespace vitruvian {

/// The box [lo, hi) along (z, y, x) holding every non-zero voxel of a mask; empty() when none is.
struct MaskBox {
  std::array<std::int64_t, 3> lo{}, hi{};
  bool empty() const { return hi[0] <= lo[0]; }
};

/// The MaskBox of a C-order uint8 mask of nz × ny × nx voxels (one pass, rows scanned from both
/// ends).
MaskBox mask_box(const std::uint8_t* mask, std::int64_t nz, std::int64_t ny, std::int64_t nx);

/// Connected components of a [z, y, x] mask (any dtype; non-zero is foreground).
struct Components {
  at::Tensor labels;                ///< int32 [z, y, x]: 0 background, 1..count in scan order of first voxel
  std::vector<std::int64_t> sizes;  ///< voxels of component i + 1
  std::int64_t count() const { return static_cast<std::int64_t>(sizes.size()); }
};

/// Labels (on the CPU) of the components of `mask` (CPU or CUDA); `connectivity` 6 (faces), 18
/// (faces and edges) or 26 (and corners). InputError for another value or a mask that is not 3D.
Components connected_components(const at::Tensor& mask, int connectivity = 26);

/// `mask` (uint8 [z, y, x], contiguous, modified in place) without its components of fewer than
/// `min_voxels` voxels (26-connected). Returns the voxels removed.
std::int64_t remove_small_components(at::Tensor& mask, std::int64_t min_voxels);

/// uint8 [z, y, x]: 1 on the largest 6-connected component of `mask` (all zero when it is empty).
at::Tensor largest_component(const at::Tensor& mask);

}  // namespace vitruvian
