// Label-map postprocessing: connected components (6-, 18- or 26-connectivity; on the mask's
// device, numbered on the CPU), the largest component of a class, and hole filling (CPU).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace vitruvian::models {

/// Connected components of a [z, y, x] mask (any dtype; non-zero is foreground).
struct Components {
  at::Tensor labels;                ///< int32 [z, y, x]: 0 background, 1..count in scan order of first voxel
  std::vector<std::int64_t> sizes;  ///< voxels of component i + 1
  std::int64_t count() const { return static_cast<std::int64_t>(sizes.size()); }
};

/// Labels (on the CPU) of the components of `mask` (CPU or CUDA); `connectivity` 6 (faces), 18
/// (faces and edges) or 26 (and corners). InputError for another value or a mask that is not 3D.
Components connected_components(const at::Tensor& mask, int connectivity = 26);

/// In `labels` ([z, y, x] contiguous uint8 or int32, modified in place): voxels of class `cls` outside its
/// largest 26-connected component become background (0). Returns the voxels removed.
std::int64_t keep_largest_component(at::Tensor& labels, std::int64_t cls);

/// In `labels` (modified in place): background voxels enclosed by class `cls` (a 6-connected
/// region of voxels not of `cls` that does not reach the volume's border) become `cls`. Voxels
/// of other classes are left as they are. Returns the voxels filled.
std::int64_t fill_holes(at::Tensor& labels, std::int64_t cls);

}  // namespace vitruvian::models
