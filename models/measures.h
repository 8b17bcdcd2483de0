// What a report says about a segmentation: per-class voxel counts, boxes and centroids in one
// pass, intensity statistics per class, lesions (connected components with volumes and
// diameters), and the coronary calcium score by the Agatston method. CPU tensors, [z, y, x].
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace vitruvian::models {

/// Where a class lies: voxel count, bounding box (inclusive, [z, y, x] indices) and centroid
/// (mean voxel index, [z, y, x]); box and centroid are meaningless when `voxels` is 0.
struct ClassExtent {
  std::int64_t voxels = 0;
  std::array<std::int64_t, 3> box_min{0, 0, 0};
  std::array<std::int64_t, 3> box_max{0, 0, 0};
  std::array<double, 3> centroid{0, 0, 0};
};

/// One pass over `labels` (uint8 or int32 [z, y, x], values in [0, classes)); index 0 is
/// background. InputError for a value outside the range.
std::vector<ClassExtent> class_extents(const at::Tensor& labels, std::int64_t classes);

/// Intensities of one class in one image.
struct IntensitySummary {
  std::int64_t count = 0;
  double mean = 0, std = 0, min = 0, max = 0;
  double p05 = 0, p50 = 0, p95 = 0;  ///< percentiles, linear between order statistics (numpy's default)
};

/// Per class 0..classes−1 of `labels`, the values of `image` (same [z, y, x] shape, any real
/// dtype) in it. Classes without voxels get count 0.
std::vector<IntensitySummary> class_intensities(const at::Tensor& labels, const at::Tensor& image, std::int64_t classes);

/// A connected component of a mask (26-connectivity).
struct Lesion {
  std::int64_t voxels = 0;
  double volume_ml = 0;
  double equivalent_diameter_mm = 0;  ///< of the sphere of the same volume
  double axial_diameter_mm = 0;       ///< longest in-plane distance between voxel centres on its largest axial slice, + one voxel
  std::array<double, 3> centroid{0, 0, 0};  ///< mean voxel index [z, y, x]
};

/// The components of `mask` with at least `min_voxels` voxels, largest first (ties by first
/// voxel). `spacing_zyx` in mm.
std::vector<Lesion> lesions(const at::Tensor& mask, const std::array<double, 3>& spacing_zyx, std::int64_t min_voxels = 1);

/// Agatston's rules, on non-contrast CT in HU.
struct CalciumOptions {
  double threshold_hu = 130;   ///< calcium: voxels at or above
  double min_area_mm2 = 1;     ///< smaller lesions in a slice are noise
  /// A lesion belongs to the nearest artery within this distance (voxel centre to voxel
  /// centre), or within one voxel diagonal where that is longer: touching counts on any grid.
  double assign_mm = 3;
  /// Agatston scored 3 mm slices; on thinner ones every lesion crosses more slices, so each
  /// slice's score is scaled by slice spacing / reference_slice_mm.
  double reference_slice_mm = 3;
  /// The grid Agatston is defined on: slices no thicker than reference_slice_mm and in-plane
  /// pixels no wider than this (clinical calcium scans: about 0.4-0.7 mm). On a coarser grid a
  /// lesion's area and peak are smeared and the score is only an estimate.
  double max_pixel_mm = 1.0;
};

/// Why the grid cannot support an Agatston score (empty when it can): slices thicker than
/// options.reference_slice_mm or pixels wider than options.max_pixel_mm, with the figures.
std::string agatston_grid_limit(const std::array<double, 3>& spacing_zyx, const CalciumOptions& options = {});

struct CalciumScore {
  double agatston = 0;
  double volume_mm3 = 0;  ///< calcified voxels counted (in lesions that passed the area rule)
  std::int64_t lesions = 0;  ///< 3D lesions with at least one slice counted
};

struct CalciumReport {
  CalciumScore total;
  std::map<std::string, CalciumScore> arteries;  ///< every artery named in the input, scored or not
  CalciumScore unassigned;                       ///< lesions in the region but near no artery
};

/// The Agatston score of `hu` (non-contrast CT, [z, y, x]) inside `region` (non-zero voxels:
/// where coronary calcium can be; e.g. the arteries grown by a margin, or the heart's
/// surroundings). Calcium (26-connected voxels ≥ threshold) whose piece lies mostly outside
/// the region is bone reaching in and is left out; the rest counts inside the region. Per axial
/// slice, each 8-connected lesion of voxels ≥ threshold with area ≥
/// min_area scores area (mm²) × the weight of its peak (1: 130–199 HU, 2: 200–299, 3: 300–399,
/// 4: ≥ 400). A lesion (26-connected in 3D) is credited to the artery of `arteries` (name, mask)
/// nearest to it, if within assign_mm or touching it. `spacing_zyx` in mm.
CalciumReport agatston(const at::Tensor& hu, const at::Tensor& region, const std::vector<std::pair<std::string, at::Tensor>>& arteries,
                       const std::array<double, 3>& spacing_zyx, const CalciumOptions& options = {});

/// `mask` grown by `radius_mm`: every voxel whose centre lies within radius_mm (Euclidean, exact
/// distance transform) of a mask voxel's centre; bool [z, y, x].
at::Tensor dilate(const at::Tensor& mask, double radius_mm, const std::array<double, 3>& spacing_zyx);

}  // namespace vitruvian::models
