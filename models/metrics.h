// Segmentation metrics on label maps: per-class Dice (with the counts to reduce it across
// ranks) and the 95th-percentile Hausdorff distance in millimetres.
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <vector>

namespace vitruvian::models {

/// Per class c = 1..classes−1 of integer label maps of one shape: [intersection, |pred|, |truth|]
/// as float64 [classes − 1, 3]. Sum these over studies or ranks before dice_from_counts. With
/// `truth_classes`, truth values are dataset label ids, truth_classes[id] their class (ids
/// beyond it count nowhere). One pass over the maps as stored, without widened copies; values
/// outside 1..classes−1 count nowhere.
at::Tensor dice_counts(const at::Tensor& prediction, const at::Tensor& truth, std::int64_t classes,
                       const std::vector<std::int64_t>* truth_classes = nullptr);
/// 2·I / (|P| + |T|) per row of `counts`; NaN where both are empty.
std::vector<double> dice_from_counts(const at::Tensor& counts);

/// Symmetric 95th-percentile Hausdorff distance (mm) per class 1..classes−1 between the
/// surfaces of two [z, y, x] label maps (the larger of the two directed 95th percentiles, as
/// MONAI computes it); NaN where either map lacks the class. `spacing_zyx` in mm.
std::vector<double> hausdorff95(const at::Tensor& prediction, const at::Tensor& truth, std::int64_t classes,
                                const std::array<double, 3>& spacing_zyx);

/// Exact Euclidean distance (mm) from every voxel of a [z, y, x] grid to the nearest true voxel
/// of `mask` (separable squared-distance transform); +inf everywhere when `mask` is empty.
at::Tensor distance_transform(const at::Tensor& mask, const std::array<double, 3>& spacing_zyx);

}  // namespace vitruvian::models
