// CT perfusion analysis on one 4D series ([t, z, y, x], HU): checks, brain mask, concentration
// curves, arterial input and venous output, delay-insensitive deconvolution (block-circulant oSVD,
// plain SVD as the reference, or the model fit), CBF / CBV / MTT / Tmax / TTP maps, ischaemic core
// and hypoperfused tissue, and the stroke triage figures (volumes, mismatch, DEFUSE-3). The
// method, step by step with its defaults, is docs/PERFUSION.md; the per-voxel work is kernel 7
// (the SVDs) or kernel 8 (the model fit's weighted means).
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/config.h"
#include "data/preprocess.h"
#include "data/volume.h"

namespace vitruvian::data {

/// Every threshold of the analysis, with the literature's defaults (docs/PERFUSION.md).
struct PerfusionOptions {
  std::int64_t min_frames = 10;          ///< fewer frames: the study fails
  double max_interval_deviation = 0.1;   ///< largest |interval − median| / median
  double min_enhancement_hu = 2;         ///< the brain's mean enhancement must reach this
  double bone_hu = 200;                  ///< pre-contrast bone (the skull) above this
  std::vector<double> brain_hu{15, 60};  ///< pre-contrast brain window (smoothed), HU
  double smoothing_mm = 3;               ///< in-plane Gaussian σ of every frame (0: none)
  /// Through-plane: each slice's curves the mean of the brain's over the odd number of slices
  /// nearest this thickness, centred on it (a thick-slab reading of thin slices; 0: none)
  double slab_mm = 0;
  std::string spatial_filter = "gaussian";  ///< gaussian | tips (the Gaussian's curves guide a bilateral filter)
  double tips_sigma_mm = 7;                 ///< tips: in-plane σ of its spatial weight (reach 2σ)
  double tips_similarity = 1;               ///< tips: h, the profile distance's scale in units of its noise
  bool temporal_smoothing = false;       ///< [1 2 1] / 4 along time
  std::int64_t aif_voxels = 8;           ///< voxels averaged into the arterial input (at least)
  std::int64_t vof_voxels = 8;           ///< voxels averaged into the venous output (at least)
  std::vector<double> aif_lps_mm;        ///< [x, y, z]: the arterial input's voxel, instead of the search
  std::vector<double> vof_lps_mm;        ///< [x, y, z]: the venous output's voxel, instead of the search
  std::string deconvolution = "osvd";    ///< osvd (block-circulant, delay-insensitive) | svd (plain) | model
  /// The Tmax map (and with it the hypoperfused tissue) from another deconvolution of the same curves
  /// (osvd | svd | model); empty: `deconvolution`'s own.
  std::string tmax_deconvolution;
  double max_oscillation = 0.095;        ///< oSVD oscillation-index limit
  double osvd_min_threshold = 0.02;      ///< oSVD: smallest singular value kept, × the largest
  double svd_threshold = 0.2;            ///< plain SVD: singular values kept, × the largest
  std::vector<std::int64_t> model_orders{1, 2, 4};  ///< model: Erlang orders of the transit times (1: exponential)
  std::vector<double> model_mtt_s{1, 40};           ///< model: MTT range, s (log-spaced, at most 20 % apart)
  std::vector<double> model_delay_s{-3, 15};        ///< model: delay range, s (at most 0.75 s apart)
  bool model_mixture = true;  ///< model: a curve may also be healthy tissue's plus one entry (partial volume)
  double hematocrit_ratio = 0.73;        ///< k_H: (1 − Hct large vessels) / (1 − Hct capillaries)
  double density = 1.04;                 ///< brain tissue, g/mL
  double cbv_min = 0.4;                  ///< mL/100 g: below is CSF (left out) …
  bool low_cbv_core = true;              ///< … unless its Tmax is above the threshold (and CBF > 0): then core
  double cbv_max = 8;                    ///< mL/100 g: above is a vessel (left out)
  double cbf_max = 150;                  ///< mL/100 g/min: above is a vessel (left out)
  double rcbf_threshold = 0.3;           ///< core: CBF below this fraction of healthy tissue's
  double tmax_threshold_s = 6;           ///< hypoperfused: Tmax above this
  double min_island_ml = 1;              ///< core and hypoperfused components smaller are dropped
  double defuse3_core_max_ml = 70;       ///< DEFUSE-3: core below
  double defuse3_ratio_min = 1.8;        ///< DEFUSE-3: mismatch ratio at least
  double defuse3_mismatch_min_ml = 15;   ///< DEFUSE-3: mismatch volume at least

  /// The deconvolution the Tmax map comes from: tmax_deconvolution, or deconvolution where that is empty.
  const std::string& tmax_method() const { return tmax_deconvolution.empty() ? deconvolution : tmax_deconvolution; }

  void visit(ConfigVisitor& v);
  /// ConfigError naming `where` and the key of the first bad value.
  void validate(const std::string& where) const;
};

/// A reference curve (arterial input or venous output) and where it came from.
struct PerfusionCurve {
  std::vector<double> hu;   ///< enhancement per frame, HU above baseline
  std::int64_t voxels = 0;  ///< averaged (1 for a manual choice)
  std::array<double, 3> centre_lps_mm{0, 0, 0};
  double peak_hu = 0, ttp_s = 0, fwhm_s = 0, auc_hu_s = 0;
  double first_pass_auc_hu_s = 0;  ///< to where it falls under 20 % of its peak, with an exponential tail beyond
  double baseline_shift_hu = 0;    ///< taken off by its own frames before it rises (the venous output)
  double noise_hu = 0;             ///< its noise per frame: the voxels' own σ over √voxels
  bool manual = false;
  bool found = false;  ///< false: no venous output (the AIF stays unscaled)
};

/// Volumes and the DEFUSE-3 verdict.
struct PerfusionTriage {
  double core_ml = 0, hypoperfused_ml = 0, penumbra_ml = 0, mismatch_ml = 0;
  double core_below_cbv_min_ml = 0;  ///< of core_ml, the voxels under cbv_min (low_cbv_core)
  double mismatch_ratio = 0;  ///< hypoperfused / core; meaningless when !has_core
  bool has_core = false;
  bool core_ok = false, ratio_ok = false, mismatch_ok = false, eligible = false;
  std::string side;        ///< "left" / "right" (patient) of the lesion; "" when none
  double healthy_cbf = 0;  ///< mL/100 g/min, the reference for rCBF

  /// From core_ml and hypoperfused_ml: the mismatch volume (hypoperfused − core, 0 when the core
  /// is the larger: no tissue at risk beyond it), the ratio and the DEFUSE-3 criteria of `o`.
  void decide(const PerfusionOptions& o);
};

/// What the analysis gives for one series.
struct PerfusionResult {
  /// 3D float32 maps on the series' grid (0 outside brain tissue): CBF mL/100 g/min, CBV
  /// mL/100 g, MTT s, Tmax s, TTP s.
  Volume cbf, cbv, mtt, tmax, ttp;
  /// uint8 on the series' grid: 1 core, 2 penumbra (hypoperfused, not core).
  Volume tissue;
  at::Tensor brain;             ///< uint8 [z, y, x]: 1 brain tissue (CSF and vessels left out)
  std::vector<double> times_s;  ///< frame times from the first frame
  double interval_s = 0;
  std::int64_t arrival_frame = 0;  ///< first frame of the bolus; frames 0 … arrival − 2 (at least one) are the baseline
  std::int64_t brain_voxels = 0;   ///< in the brain mask (before CSF and vessels are left out)
  PerfusionCurve aif, vof;
  double aif_scale = 1;        ///< the first passes' areas, VOF / AIF, when above 1, else 1
  std::string device = "cpu";  ///< where the deconvolution ran ("cpu", "cuda:0")
  /// Where the model fit ran (deconvolution or tmax_deconvolution: model): its dictionary and noise
  /// (ModelFit::record); else null.
  nlohmann::json model;
  nlohmann::json filter;  ///< the curves' filtering (CurveSlabs::record)
  PerfusionTriage triage;
  nlohmann::json timing = nlohmann::json::object();  ///< seconds per step

  /// The report's `perfusion` section (method, curves, volumes, mismatch, DEFUSE-3).
  nlohmann::json report(const PerfusionOptions& options) const;
};

/// The part of a perfusion series the analysis needs, and the first frame's brain mask on it.
struct PerfusionRegion {
  Box box;
  at::Tensor first_brain;  ///< uint8 [z, y, x] of the box; undefined when the first frame shows no brain
};
/// From the series' first frame (`first`, [1, z, y, x] or [z, y, x], HU): the slices holding
/// brain in the first frame's brain mask, two more on each side; across them, the box of the
/// skull (bone above `bone_hu`) and of the brain, grown by the in-plane smoothing's reach plus
/// three voxels, and any voxel `aif_lps_mm` / `vof_lps_mm` place with its neighbours. The skull
/// stays whole inside, so the brain masks of the part are those of the whole series. The whole
/// grid when the first frame shows no brain (the analysis of the whole then says why).
PerfusionRegion perfusion_region(const Volume& first, const PerfusionOptions& options);

/// Where an analysed series was cut from: `volume`, a volume of the whole series' grid (e.g. its
/// first frame), and the box the series is at. Null `volume`: the series is the whole.
struct WholeGrid {
  const Volume* volume = nullptr;
  Box box;
};

/// Analyses `series` (4D, HU); `what` names it in errors ("study s1, series perfusion").
/// `first_brain`, when given, is the brain mask of the series' first frame (step 2's first mask,
/// perfusion_region's on the part it read), so it is not found again. With `whole`, the maps,
/// tissue and brain are built on the whole series' grid (zero outside the box), not the part's.
/// The deconvolution (step 5, the per-voxel work) runs on `device`: each slab's curves go there
/// and its values come back; the other steps run on the CPU. oSVD gives the same maps on either
/// (kernel 7 is bit-exact); the model fit's products may differ in the last bits.
/// InputError (one line naming `what`) for a 3D series, too few frames, frames out of order or
/// unevenly spaced, no brain found, no contrast arrival, no arterial input.
PerfusionResult analyse_perfusion(const Volume& series, const PerfusionOptions& options, const std::string& what,
                                  const at::Tensor& first_brain = {}, const WholeGrid& whole = {},
                                  at::Device device = at::kCPU);

}  // namespace vitruvian::data
