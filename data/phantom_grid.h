// The perfusion-grid validation phantom: square blocks crossing CBV × MTT × arterial delay in a
// bone frame with an artery and a vein, as a 4D CT series with truth maps (docs/PHANTOMS.md).
// A separate generator behind PhantomKind::kPerfusionGrid, not a rendered scene. Private to data/.
#pragma once

#include <array>
#include <cstdint>
#include <nlohmann/json.hpp>

#include "data/phantom.h"

namespace vitruvian::data::phantom {

/// The grid's voxel spacing x, y, z (mm) and shape [z, y, x]: fixed, whatever the options say.
std::array<double, 3> perfusion_grid_spacing();
std::array<std::int64_t, 3> perfusion_grid_shape();
inline constexpr int kPerfusionGridFrames = 40;

/// Study `index` of the grid: series `perfusion` (int16 [t,z,y,x], HU), `truth_cbf`,
/// `truth_cbv`, `truth_mtt`, `truth_delay` (float32 [z,y,x], 0 outside the blocks) and the
/// label map `blocks`; the ground truth goes into `truth`. Only the noise depends on (seed,
/// index); it is the same for any thread count.
PhantomStudy make_perfusion_grid(const PhantomOptions& options, std::int64_t index, nlohmann::json& truth);
/// Label id (block index + 1) → "block_001", ...
LabelTable perfusion_grid_labels();
PhantomKindDescription describe_perfusion_grid();

}  // namespace vitruvian::data::phantom
