// Preprocessing shared by training and inference, on CPU tensors: resampling to a spacing or onto
// another series' grid, intensity normalisation (CT percentile clipping, MR z-score), crop to the body.
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "data/geometry.h"
#include "data/volume.h"

namespace vitruvian::data {

/// How a resampled voxel takes its value from the source grid.
enum class Interpolation {
  kLinear,   ///< trilinear; the result is float32 (images)
  kNearest,  ///< the nearest source voxel; the result keeps the source's type (label maps)
};

/// Resamples `volume` to `spacing_xyz` (mm along the index axes i, j, k = x, y, z), keeping the
/// physical box it covers: new size = max(1, round(old_size * old_spacing / new_spacing)) per axis.
/// Convention: the new grid has exactly the requested spacing, the old direction, and is centred
/// on the old one (the centre of the box of voxels stays in place). When old_size * old_spacing
/// is a whole number of new voxels the outer voxel faces of both grids coincide, which is the
/// half-voxel convention of skimage's resize used by nnU-Net; otherwise the boxes differ by less
/// than one new voxel, split evenly between both ends. Every new voxel centre lies inside the old
/// box; points between the outermost old voxel centres and the box faces take the edge value.
/// 4D volumes: every frame is resampled the same way; frame times and modality are kept.
/// kLinear returns a kFloat32 volume, kNearest keeps the voxel type.
/// Throws InputError for an invalid volume or a spacing that is not a positive finite number.
Volume resample_to_spacing(const Volume& volume, std::array<double, 3> spacing_xyz, Interpolation interpolation);

/// Resamples `source` onto the grid `reference` of size `shape_zyx` ([z, y, x] voxels), through
/// the physical LPS position of each reference voxel centre (reference index → LPS → source
/// continuous index), so the grids may differ in spacing, origin and direction (oblique too).
/// Points inside the source's box of voxels (within half a voxel of its outermost centres) are
/// interpolated, with the edge value beyond the outermost centres, as ITK does; points outside
/// it get `fill`. With kNearest on an integer volume `fill` must be a whole number the voxel type
/// holds (e.g. 0..255 for uint8). 4D volumes are resampled frame by frame.
/// The result carries `reference` as its geometry. Throws InputError for invalid inputs.
Volume resample_onto(const Volume& source, const Geometry& reference, std::array<std::int64_t, 3> shape_zyx,
                     Interpolation interpolation, double fill = 0.0);

/// Foreground intensity statistics, in the image's units (HU for CT).
struct IntensityStats {
  double mean = 0.0;
  double std = 1.0;        ///< population standard deviation
  double lower = 0.0;      ///< 0.5th percentile (linear interpolation between order statistics, as numpy)
  double upper = 0.0;      ///< 99.5th percentile
  std::int64_t count = 0;  ///< number of intensities the statistics were computed from (merge weight)
};

/// Up to `max_samples` (> 0) intensities of `image` where `mask` is non-zero, drawn without
/// replacement with `rng` (all of them, in scan order, when there are no more than that).
/// `image` and `mask` are CPU tensors of the same shape, any real dtype. Empty when the mask is.
std::vector<double> sample_foreground_intensities(const at::Tensor& image, const at::Tensor& mask,
                                                  std::int64_t max_samples, std::mt19937_64& rng);

/// Mean, std, 0.5 and 99.5 percentiles of `values`. Throws InputError when empty or non-finite.
IntensityStats intensity_stats(std::vector<double> values);

/// intensity_stats(sample_foreground_intensities(...)): statistics of the voxels of `image` where
/// `label_or_mask` is non-zero (nnU-Net's CT scheme). Throws InputError when there are none.
IntensityStats foreground_intensity_stats(const at::Tensor& image, const at::Tensor& label_or_mask,
                                          std::int64_t max_samples, std::mt19937_64& rng);

/// Combines statistics of disjoint sets of intensities, weighted by `count`: mean and std are
/// exactly those of the union; lower and upper are the count-weighted means of the parts'
/// percentiles, an approximation (pool the samples and call intensity_stats for exact ones).
/// Throws InputError when `parts` is empty or the counts do not add up to more than 0.
IntensityStats merge(const std::vector<IntensityStats>& parts);

/// Smallest standard deviation divided by: a constant image normalises to zeros, not to NaN.
inline constexpr double kMinNormalizationStd = 1e-8;

/// CT normalisation: clip to [stats.lower, stats.upper], then (x - mean) / max(std, 1e-8).
/// `image`: CPU tensor of any shape and real dtype; returns float32 of the same shape.
/// Throws InputError for non-finite stats, std < 0 or lower > upper.
at::Tensor normalize_ct(const at::Tensor& image, const IntensityStats& stats);

/// Per-volume z-score (MR): (x - mean) / max(std, 1e-8), mean and population std taken over the
/// voxels where `*mask` is non-zero (same shape as `image`), or over all voxels when `mask` is
/// null; every voxel is normalised with them. Returns float32 of `image`'s shape.
/// Throws InputError for a shape mismatch or an empty mask.
at::Tensor normalize_zscore(const at::Tensor& image, const at::Tensor* mask = nullptr);

/// A box of voxels: start and size along [z, y, x].
struct Box {
  std::array<std::int64_t, 3> start_zyx{0, 0, 0};
  std::array<std::int64_t, 3> size_zyx{0, 0, 0};
};

/// Bounding box of the body in `image` ([z,y,x] or [C,z,y,x]): the largest 6-connected part of
/// the voxels above `threshold` in any channel (a table, a detached arm or an object in the air
/// around the patient are not the body), grown by `margin` (>= 0) voxels on every side and
/// clamped to the volume; the whole volume when no voxel is above the threshold.
Box body_box(const at::Tensor& image, double threshold, std::int64_t margin);
/// The same with a margin of its own per axis [z, y, x] (each >= 0 voxels).
Box body_box(const at::Tensor& image, double threshold, const std::array<std::int64_t, 3>& margin_zyx);

/// The box of `tensor`'s last three dimensions ([z, y, x]), as a view (no copy).
at::Tensor box_view(const at::Tensor& tensor, const Box& box);

/// CT body threshold (HU): above air and lung, below soft tissue.
inline constexpr double kCtBodyThreshold = -500.0;
/// The intensity above which a voxel of `reference` counts as body for body_box: kCtBodyThreshold
/// for CT; else (MR) a tenth of the way from the lowest value to the 99th percentile, above the
/// background's Rician noise.
double body_threshold(const Volume& reference);

/// The voxels of `box` (every frame of a 4D volume), copied, with the origin moved to the box's
/// first voxel: origin + direction * diag(spacing) * start_xyz. Throws InputError when the box
/// is empty or leaves the volume.
Volume crop(const Volume& volume, const Box& box);
/// InternalError naming `where` unless a part of shape `part` fits `box` exactly and `box` lies
/// inside a grid of shape `shape` (all [z, y, x]).
void check_part_fits(const std::array<std::int64_t, 3>& part, const Box& box, const std::array<std::int64_t, 3>& shape,
                     const std::string& where);
/// The inverse of crop for a 3D `part` (on the grid of crop(reference, box)): `part` in a
/// zero-filled volume of `reference`'s grid (its shape and geometry; 3D), of `part`'s voxel
/// type. InternalError when `part` does not fit `box` or `box` leaves the grid.
Volume uncrop(const Volume& part, const Volume& reference, const Box& box);

}  // namespace vitruvian::data
