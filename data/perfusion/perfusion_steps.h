// The steps of the perfusion analysis (data/perfusion/perfusion.h), shared by its files:
// series checks, z-slab curves, the brain mask, reference curves and the deconvolution basis.
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "data/perfusion/perfusion.h"

namespace vitruvian::data::perfusion {

/// Frame times from the first frame and the median interval Δt; InputError naming `what` for a
/// 3D series, too few frames, frames out of order or unevenly spaced.
struct FrameTiming {
  std::vector<double> times_s;
  double interval_s = 0;
};
FrameTiming check_series(const Volume& series, const PerfusionOptions& options, const std::string& what);

/// Frames [t, z0 … z1) of a 4D series as float32 [T, z1 − z0, y, x].
at::Tensor frames_slab(const Volume& series, std::int64_t z0, std::int64_t z1);
/// Slices per slab so that a float32 slab of every frame stays within a fixed budget (256 MiB).
std::int64_t slab_slices(const Volume& series);
/// `images` ([N, y, x] float32) smoothed in plane by a Gaussian of σ mm (spacing x, y in mm);
/// unchanged when σ is 0.
at::Tensor smooth_in_plane(const at::Tensor& images, double sigma_mm, double spacing_x, double spacing_y);

/// The brain: intracranial (per axial slice, inside the bone) soft tissue in the window of
/// `image` smoothed in plane, its largest 6-connected component (uint8 [z, y, x]).
at::Tensor brain_mask(const at::Tensor& image, const Geometry& geometry, const PerfusionOptions& options);

/// The pre-contrast baseline image (float32 [z, y, x]) and the arrival frame.
struct Baseline {
  at::Tensor image;
  std::int64_t arrival = 0;
  std::vector<double> brain_curve_hu;  ///< the first mask's mean per frame
};
/// InputError naming `what` when no contrast arrives or no brain is found.
Baseline find_baseline(const Volume& series, const PerfusionOptions& options, const std::string& what);

/// Concentration curves of the brain's voxels, one z-slab at a time: body(curves [n, T] float32
/// contiguous, their linear voxel indices int64 [n]). Curves: S − baseline, smoothed in plane
/// (and in time when asked).
class CurveSlabs {
 public:
  CurveSlabs(const Volume& series, const at::Tensor& baseline, const at::Tensor& brain, const PerfusionOptions& options);
  void for_each(const std::function<void(const at::Tensor& curves, const at::Tensor& voxels)>& body) const;
  /// The curves of a few voxels (linear indices), each [T], as for_each() gives them.
  std::vector<std::vector<double>> at_voxels(const std::vector<std::int64_t>& voxels) const;

 private:
  at::Tensor slab_curves(std::int64_t z0, std::int64_t z1) const;  ///< float32 [T, z1 − z0, y, x]

  const Volume& series_;
  const at::Tensor& baseline_;
  const at::Tensor& brain_;
  const PerfusionOptions& options_;
};

/// Per-voxel curve statistics: AUC (HU·s), peak (HU), TTP (s from the first frame, refined by
/// a parabola) and FWHM (s: frames above half the peak × Δt); float32 [n] each.
struct CurveStats {
  at::Tensor auc, peak, ttp, fwhm;
};
CurveStats curve_stats(const at::Tensor& curves, const std::vector<double>& times_s, double interval_s);
/// The same for one curve.
void describe_curve(PerfusionCurve& curve, const std::vector<double>& times_s, double interval_s);

/// The deconvolution basis (kernel 7's ResidueBasis) for an arterial input.
struct Basis {
  at::Tensor analysis, synthesis;  ///< float32 [K, T], [K, L]
  std::vector<std::int32_t> levels;
  double max_oscillation = 0;
  std::int64_t length = 0;  ///< L
  bool circulant = false;
};
Basis deconvolution_basis(const std::vector<double>& aif_hu, double interval_s, const PerfusionOptions& options);

/// Patient LPS mm of a linear voxel index, and the nearest voxel of an LPS point (−1 outside).
std::array<double, 3> voxel_lps(const Geometry& geometry, const std::array<std::int64_t, 3>& zyx_shape, std::int64_t voxel);
std::int64_t nearest_voxel(const Geometry& geometry, const std::array<std::int64_t, 3>& zyx_shape, const std::vector<double>& lps);

}  // namespace vitruvian::data::perfusion
