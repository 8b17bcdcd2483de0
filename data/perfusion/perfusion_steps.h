// The steps of the perfusion analysis (data/perfusion/perfusion.h), shared by its files:
// series checks, z-slab curves, the brain mask, reference curves and the deconvolution basis.
#pragma once

#include <ATen/core/Tensor.h>

#include <nlohmann/json.hpp>

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "data/perfusion/perfusion.h"
#include "data/perfusion/perfusion_smoothing.h"
#include "data/tensor_helpers.h"

namespace vitruvian::data::perfusion {

/// Frame times from the first frame and the median interval Δt; InputError naming `what` for a
/// 3D series, too few frames, frames out of order or unevenly spaced.
struct FrameTiming {
  std::vector<double> times_s;
  double interval_s = 0;
};
FrameTiming check_series(const Volume& series, const PerfusionOptions& options, const std::string& what);

using detail::for_voxel_type;

/// Gaussian taps of σ = `sigma_voxels` over ±3σ, summing to 1 ({1} when σ is 0).
std::vector<float> gaussian_taps(double sigma_voxels);
/// The odd number of slices of `spacing_mm` nearest `slab_mm`, ties to the fewer, at most 101: 1
/// for a slab of 0 and for slices at least half the slab thick.
std::int64_t slab_slices(double slab_mm, double spacing_mm);

/// The brain: intracranial (per axial slice, inside the bone) soft tissue in the window of
/// `image` smoothed in plane over what is not bone (normalised), its largest 6-connected
/// component (uint8 [z, y, x]).
at::Tensor brain_mask(const at::Tensor& image, const Geometry& geometry, const PerfusionOptions& options);

/// The pre-contrast baseline image (float32 [z, y, x]) and the arrival frame.
struct Baseline {
  at::Tensor image;
  std::int64_t arrival = 0;
  std::int64_t frames = 1;  ///< pre-contrast frames averaged
  std::vector<double> brain_curve_hu;  ///< the first mask's mean per frame
  double peak_hu = 0;                  ///< its largest rise over the pre-contrast level (the median of frames 1–3)
};
/// InputError naming `what` when no contrast arrives or no brain is found. `first_brain`: the
/// first frame's brain mask when known (uint8 [z, y, x] of the series), else found here.
Baseline find_baseline(const Volume& series, const PerfusionOptions& options, const std::string& what,
                       const at::Tensor& first_brain);

/// Concentration curves of the brain's voxels, one z-slab at a time: body(curves [n, T] float32
/// contiguous, their linear voxel indices int64 [n]). Curves: S − baseline, averaged through the
/// plane over the brain's voxels of a slab (`slab_mm`) when asked, smoothed in plane over the
/// brain alone (normalised by the smoothed mask; and in time when asked). Only the
/// brain's bounding box (widened by the smoothing's reach) is read; the curves are kept for the
/// next pass while they fit a fixed budget (1 GiB).
class CurveSlabs {
 public:
  CurveSlabs(const Volume& series, const at::Tensor& baseline, const at::Tensor& brain,
             const PerfusionOptions& options);
  void for_each(const std::function<void(const at::Tensor& curves, const at::Tensor& voxels)>& body) const;
  /// As for_each(), with `own` (float32 [n]): the weight each voxel's own curve, as at_voxels()
  /// gives it, has in its curve; the rest is its neighbours'. The Gaussian's centre tap over the
  /// brain's share of the taps (1 unsmoothed; at the image's border the repeated edge pixels count
  /// as neighbours), TIPS's 1 over its weights' sum; either over the brain's slices in the slab.
  void for_each_with_own(
      const std::function<void(const at::Tensor& curves, const at::Tensor& voxels, const at::Tensor& own)>& body) const;
  /// The curves (float32 [n, T]) of `voxels` (linear indices, anywhere in the series): as
  /// for_each() gives them but not smoothed in plane nor read through the slab: each voxel's own
  /// (the reference curves of vessels a few voxels wide).
  at::Tensor at_voxels(const std::vector<std::int64_t>& voxels) const;
  /// {"spatial": gaussian | tips, "smoothing_mm", "slab_mm", "slab_slices" (the slices averaged
  /// through the plane), "temporal", "frame_noise_hu" (σ per voxel and frame), "smoothed_noise_hu"
  /// (σ per frame of a curve after the slab, the in-plane Gaussian, and the temporal filter when
  /// on, away from the brain's edge; TIPS's own curves vary with the
  /// tissue), "brain_peak_hu" (`brain_peak_hu`: the brain's mean enhancement at its peak),
  /// "contrast_to_noise" (the last two's ratio; null without noise); with tips also
  /// "tips_sigma_mm" and "tips_similarity"}.
  nlohmann::json record(double brain_peak_hu) const;
  /// The own weight of a voxel inside uniform brain in its slice's in-plane filter, whatever the
  /// curves (1 unsmoothed); for_each_with_own() divides it further by the slab's brain slices.
  /// The pixels in plane, not the slab's slices (a vessel's own, through the plane), are what
  /// places a ranking by the voxel's curve beside a vessel.
  double in_plane_own_weight() const;
  /// σ per voxel and frame (HU) of the series' own, unsmoothed curves.
  double frame_noise_hu() const { return frame_noise_hu_; }

 private:
  struct Slab {
    at::Tensor curves, voxels, own;
  };
  /// The curves of slices [z0, z1) at `voxels` (linear indices, all in those slices and in the
  /// brain's box), and their own curves' weights.
  Slab curves_at(std::int64_t z0, std::int64_t z1, const at::Tensor& voxels) const;
  /// The noise σ per voxel and frame (HU), from the difference of the first two frames over the
  /// brain (median absolute deviation; an even sample of 2^20 voxels of a larger brain); both are
  /// pre-contrast when the baseline averages two or more frames.
  static double frame_noise_hu(const Volume& series, const at::Tensor& brain);
  /// The slab's slices around slice `z`, [first, last), clipped to the series.
  std::pair<std::int64_t, std::int64_t> slab_range(std::int64_t z) const;
  /// Over the slab around slice `z`, per pixel of the box: how many of its slices are brain
  /// (`mask`: uint8 [z, y, x] of the series) into `depth`, and the sum of their baselines into
  /// `base_sum` (each [by · bx]; the same for every frame).
  void slab_brain(std::int64_t z, const std::uint8_t* mask, float* depth, float* base_sum) const;
  /// spatial_filter tips, slices in parallel: every frame's plane from `difference` (S − baseline
  /// of plane (slice, frame), 0 outside the brain), the guide (each plane smoothed in plane over
  /// the brain, `share` its smoothed mask, then [1 2 1] / 4 in time), then the filter into the
  /// rows of `curves` that `members` (per slice: row, pixel of the box) name.
  void filter_slices(std::int64_t slices, std::int64_t frames, std::int64_t by, std::int64_t bx,
                     const std::vector<std::vector<std::pair<std::int64_t, std::int64_t>>>& members,
                     const std::vector<float>& keep, const std::vector<float>& share,
                     const std::function<void(std::int64_t, std::int64_t, float*)>& difference, float* curves,
                     float* own) const;

  const Volume& series_;
  at::Tensor baseline_;  ///< float32 [z, y, x]
  const at::Tensor& brain_;
  const PerfusionOptions& options_;
  std::int64_t y0_ = 0, y1_ = 0, x0_ = 0, x1_ = 0;            ///< the box read in plane
  std::vector<float> kx_, ky_;                                ///< Gaussian taps (odd length; {1}: none)
  std::int64_t slab_slices_ = 1;                              ///< slices averaged through the plane (odd)
  std::optional<TipsFilter> tips_;                            ///< spatial_filter: tips
  double frame_noise_hu_ = 0;                                 ///< σ per voxel and frame
  double smoothed_noise_hu_ = 0;                              ///< σ per frame after the Gaussian
  std::vector<std::pair<std::int64_t, std::int64_t>> slabs_;  ///< [z0, z1) holding brain
  mutable std::vector<Slab> cache_;
  bool cache_on_ = false;
};

/// Per-voxel curve statistics: AUC (HU·s), peak (HU), TTP (s from the first frame, refined by
/// a parabola) and FWHM (s: frames above half the peak × Δt); float32 [n] each.
struct CurveStats {
  at::Tensor auc, peak, ttp, fwhm;
};
CurveStats curve_stats(const at::Tensor& curves, const std::vector<double>& times_s, double interval_s);
/// The same for one curve, and the area of its first pass: summed to the first frame after the
/// peak under 20 % of it, and beyond that an exponential tail with the time constant of the fall
/// from 50 % to there, at most the time from the peak to there (no tail where the curve does not
/// fall under 20 % within the acquisition, or falls from 50 % to under 20 % in one frame).
void describe_curve(PerfusionCurve& curve, const std::vector<double>& times_s, double interval_s);
/// The curve less the mean of its own frames before it rises: those before the last frame under
/// 10 % of its peak ahead of the peak (that frame may hold the bolus's start); described again.
/// For the venous output: the sinuses fill seconds after the brain's arrival, so they have more
/// pre-contrast frames than the baseline averaged. The venous choice goes by the largest area, in
/// which the baseline's error counts in every frame: it picks voxels whose baseline came out low.
void own_baseline(PerfusionCurve& curve, const std::vector<double>& times_s, double interval_s);

/// The deconvolution basis (kernel 7's ResidueBasis) for an arterial input.
struct Basis {
  at::Tensor analysis, synthesis;  ///< float32 [K, T], [K, L]
  std::vector<std::int32_t> levels;
  double max_oscillation = 0;
  std::int64_t length = 0;  ///< L
  bool circulant = false;
};
Basis deconvolution_basis(const std::vector<double>& aif_hu, double interval_s, const PerfusionOptions& options);

/// The model fit's dictionary (deconvolution: model): the tissue curve a of 1 mL/100 g/min for
/// every (Erlang order, MTT, delay) of the options' ranges, as M a / √(aᵀ M a) with
/// M = I − 11ᵀ / (T + baseline frames) (the offset profiled out under its prior); entries whose
/// norm is below a quarter of the largest of their (order, MTT) (a bolus arriving after most of
/// the frames) are left out.
struct ModelDictionary {
  /// Throws InputError naming `what` when no entry reaches the frames.
  ModelDictionary(const std::vector<double>& aif_hu, double interval_s, std::int64_t baseline_frames,
                  const PerfusionOptions& o, const std::string& what);
  double shrink() const { return shrink_; }
  at::Tensor atoms;  ///< float32 [K, T]
  at::Tensor scaled;  ///< float32 [2, K]: CBF per unit of score (1 / norm), that × MTT
  at::Tensor plain;   ///< float32 [K]: the delay (s)
  std::vector<double> mtts_s, delays_s;  ///< the grids
  std::vector<std::int64_t> orders;

 private:
  double shrink_ = 0;
};

/// Model-based deconvolution: each curve against every dictionary entry with a free offset (one
/// product [n, T] × [T, K]); CBF, CBV = CBF · MTT / 60 and Tmax (= the delay: these residues
/// peak at arrival) as means over the entries weighted by exp(−ΔRSS / 2σ²) (kernel 8), σ the
/// brain's median residual noise.
class ModelFit {
 public:
  /// The dictionary for `aif_hu` (the arterial input after the venous scaling), σ from a sample
  /// of the curves of `slabs` (`stats` theirs, in for_each order), and with `model_mixture` the
  /// mixtures (step 5b of docs/PERFUSION.md), in the same pass over the curves. `step_hu`: the
  /// series' stored values are whole multiples of it (1 for integer voxels, 0 for float ones).
  ModelFit(const CurveSlabs& slabs, const CurveStats& stats, const std::vector<double>& aif_hu, double interval_s,
           std::int64_t baseline_frames, double step_hu, const PerfusionOptions& o, const std::string& what);
  struct Maps {
    at::Tensor cbf, cbv, tmax;  ///< mL/100 g/min, mL/100 g, s; each [n]
    at::Tensor mixed;           ///< bool [n]: fitted as a mixture
  };
  /// The maps of curves float32 [n, T], on the device the fit is on (to()).
  Maps fit(const at::Tensor& curves) const;
  /// Moves the dictionary and the mixture to `device` (made on the CPU): fit() then takes curves
  /// there and gives its maps there.
  void to(at::Device device);
  /// {"entries", "erlang_orders", "mtt_s": [low, high, levels], "delay_s": [...], "noise_hu",
  /// "mixture": null or {"healthy_voxels", "healthy_cbf", "healthy_cbv", "healthy_tmax_s", "entries"}}.
  nlohmann::json record() const;

 private:
  /// From now on a curve may also be a mixture, α · h + β · one entry (partial volume of healthy
  /// tissue and the lesion at its edge), where that improves its best fit by more than
  /// kMixtureEvidence · σ²; h (double [T]) the mean of `voxels` healthy curves. Nothing for a flat h.
  void add_mixture(const at::Tensor& h, std::int64_t voxels);
  /// RSS of each curve's best entry: cᵀ M c − max(0, max_k score_k)², float32 [n].
  at::Tensor best_residuals(const at::Tensor& curves) const;
  ModelDictionary dictionary_;
  double noise_hu_ = 0;
  /// The mixture's test takes σ² at least this: the variance of rounding to the series' step,
  /// which noise-free frames round alike in every voxel of a uniform region, where the smoothing
  /// then does not average it away and σ does not see it.
  double rounding_variance_ = 0;
  /// The mixture (add_mixture): h the healthy curve, H = M h / |h| (|h| = √(hᵀ M h)); each entry
  /// a kept is fitted by its part orthogonal to h, ã = M (a / |a| − ρ h / |h|) / √(1 − ρ²),
  /// ρ = aᵀ M h / (|a| |h|); per entry, β per unit of score and what α loses per unit of β.
  struct Mixture {
    at::Tensor healthy;                 ///< float32 [T]: H
    double norm = 0;                    ///< |h|
    double cbf = 0, cbv = 0, tmax = 0;  ///< the healthy curve's own fit
    at::Tensor kept;                    ///< int64 [K']: the entries kept (1 − ρ² above kMinIndependence)
    at::Tensor gain, offset;  ///< float32 [K], per dictionary entry: 1 / √(1 − ρ²), ρ / √(1 − ρ²); 0 if not kept
    at::Tensor scaled;      ///< float32 [2, K']: per unit of score, the voxel's CBF and CBF · MTT beyond α's share
    at::Tensor alpha_lost;  ///< float32 [2, K']: per unit of score, what β takes from α = H·c / |h| (both rows)
    at::Tensor plain;       ///< float32 [K']: the entry's delay
    std::int64_t voxels = 0;
  };
  std::optional<Mixture> mixture_;
};

/// Step 7 and 8 on the maps of the brain's voxels (float32 [n] each, at linear `index` of the
/// series' grid): tissue (CSF and vessels left out), side, healthy flow, core and hypoperfused
/// without small islands, volumes and the DEFUSE-3 verdict, into r.brain, r.tissue and r.triage.
void classify(PerfusionResult& r, const at::Tensor& index, const at::Tensor& cbf, const at::Tensor& cbv,
              const at::Tensor& tmax, const Volume& series, const PerfusionOptions& o);

/// Patient LPS mm of a linear voxel index, and the nearest voxel of an LPS point (−1 outside).
std::array<double, 3> voxel_lps(const Geometry& geometry, const std::array<std::int64_t, 3>& zyx_shape,
                                std::int64_t voxel);
std::int64_t nearest_voxel(const Geometry& geometry, const std::array<std::int64_t, 3>& zyx_shape,
                           const std::vector<double>& lps);

}  // namespace vitruvian::data::perfusion
