// Label-map postprocessing: the largest component of a class and hole filling (CPU), on the
// connected components of core/components.h.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "core/components.h"

namespace vitruvian::models {

/// Connected components (core/components.h), used here under their old names.
using vitruvian::Components;
using vitruvian::connected_components;

/// In `labels` ([z, y, x] contiguous uint8 or int32, modified in place): voxels of class `cls` outside its
/// largest 26-connected component become background (0). Returns the voxels removed.
std::int64_t keep_largest_component(at::Tensor& labels, std::int64_t cls);

/// In `labels` (modified in place): background voxels enclosed by class `cls` (a 6-connected
/// region of voxels not of `cls` that does not reach the volume's border) become `cls`. Voxels
/// of other classes are left as they are. Returns the voxels filled.
std::int64_t fill_holes(at::Tensor& labels, std::int64_t cls);

}  // namespace vitruvian::models
