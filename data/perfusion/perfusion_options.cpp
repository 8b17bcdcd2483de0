// The perfusion analysis's keys (a route's `perfusion` section) and their checks.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>

#include "core/errors.h"
#include "data/perfusion/perfusion.h"

namespace vitruvian::data {

void PerfusionOptions::visit(ConfigVisitor& v) {
  v.field("min_frames", min_frames, "fewer frames than this: the study fails");
  v.field("max_interval_deviation", max_interval_deviation, "largest |frame interval - median| / median");
  v.field("min_enhancement_hu", min_enhancement_hu, "the brain's mean enhancement must reach this (HU)");
  v.field("bone_hu", bone_hu, "pre-contrast bone (the skull) above this (HU)");
  v.field("brain_hu", brain_hu, "pre-contrast brain window [low, high] on the smoothed baseline (HU)");
  v.field("smoothing_mm", smoothing_mm, "in-plane Gaussian sigma applied to every frame (mm; 0: none)");
  v.field("slab_mm", slab_mm,
          "through-plane: each slice's curves averaged with its neighbours' over a slab this thick, centred on it, "
          "as a thick-slab reconstruction would (mm; the odd number of slices nearest it; 0: none)");
  v.field("spatial_filter", spatial_filter,
          "gaussian (smoothing_mm), or tips: curves pooled with neighbours whose smoothed curves are alike "
          "(edge-preserving)");
  v.field("tips_sigma_mm", tips_sigma_mm, "tips: in-plane sigma of the spatial weight (mm; neighbours up to 2 sigma)");
  v.field("tips_similarity", tips_similarity, "tips: profile distance scale, in units of the smoothed curves' noise");
  v.field("temporal_smoothing", temporal_smoothing, "smooth each curve by [1 2 1]/4 along time");
  v.field("aif_voxels", aif_voxels,
          "voxels averaged into the arterial input; more where the frames are noisy (its noise per frame at most 1 % "
          "of its peak)");
  v.field("vof_voxels", vof_voxels,
          "voxels averaged into the venous output; more where the frames are noisy (its noise per frame at most 1 % "
          "of its peak)");
  v.field("aif_lps_mm", aif_lps_mm, "[x, y, z] patient LPS mm: the arterial input's voxel instead of the search");
  v.field("vof_lps_mm", vof_lps_mm, "[x, y, z] patient LPS mm: the venous output's voxel instead of the search");
  v.field("deconvolution", deconvolution,
          "osvd (block-circulant, delay-insensitive), svd (plain, the reference) or model (fit of a residue family)");
  v.field("tmax_deconvolution", tmax_deconvolution,
          "the Tmax map and the hypoperfused tissue from this deconvolution of the same curves (osvd, svd or model); "
          "empty: deconvolution's");
  v.field("max_oscillation", max_oscillation, "oSVD: oscillation-index limit");
  v.field("osvd_min_threshold", osvd_min_threshold, "oSVD: smallest singular value kept, as a fraction of the largest");
  v.field("svd_threshold", svd_threshold, "plain SVD: singular values kept, as a fraction of the largest");
  v.field("model_orders", model_orders, "model: Erlang orders of the transit-time distribution (1: exponential residue)");
  v.field("model_mtt_s", model_mtt_s, "model: [low, high] MTT range (s), log-spaced levels at most 20 % apart");
  v.field("model_delay_s", model_delay_s, "model: [low, high] arterial delay range (s), levels at most 0.75 s apart");
  v.field("model_mixture", model_mixture,
          "model: a curve may also be a share of healthy tissue's plus one entry (partial volume at the lesion's "
          "edge), where that fits clearly better");
  v.field("hematocrit_ratio", hematocrit_ratio, "k_H = (1 - Hct of large vessels) / (1 - Hct of capillaries)");
  v.field("density", density, "brain tissue density (g/mL)");
  v.field("cbv_min", cbv_min, "CBV below this is CSF, left out (mL/100 g)");
  v.field("low_cbv_core", low_cbv_core,
          "CBV below cbv_min with Tmax above the threshold (a late bolus, some flow) is core, not CSF");
  v.field("cbv_max", cbv_max, "CBV above this is a vessel, left out (mL/100 g)");
  v.field("cbf_max", cbf_max, "CBF above this is a vessel, left out (mL/100 g/min)");
  v.field("rcbf_threshold", rcbf_threshold, "core: CBF below this fraction of the healthy hemisphere's mean");
  v.field("tmax_threshold_s", tmax_threshold_s, "hypoperfused: Tmax above this (s)");
  v.field("min_island_ml", min_island_ml, "core and hypoperfused components smaller than this are dropped (mL)");
  v.field("defuse3_core_max_ml", defuse3_core_max_ml, "DEFUSE-3: core volume below this (mL)");
  v.field("defuse3_ratio_min", defuse3_ratio_min, "DEFUSE-3: mismatch ratio at least this");
  v.field("defuse3_mismatch_min_ml", defuse3_mismatch_min_ml, "DEFUSE-3: mismatch volume at least this (mL)");
}

void PerfusionOptions::validate(const std::string& where) const {
  const auto bad = [&](const std::string& key, const std::string& expected, double value) {
    throw ConfigError(where, fmt::format("perfusion.{} = {}; expected {}", key, value, expected));
  };
  const auto positive = [&](const std::string& key, double value) {
    if (!(value > 0 && std::isfinite(value))) bad(key, "a positive number", value);
  };
  if (min_frames < 4) bad("min_frames", "at least 4", static_cast<double>(min_frames));
  if (!(max_interval_deviation >= 0 && max_interval_deviation < 1))
    bad("max_interval_deviation", "0 to 1", max_interval_deviation);
  positive("min_enhancement_hu", min_enhancement_hu);
  if (brain_hu.size() != 2 || !(brain_hu[0] < brain_hu[1])) {
    throw ConfigError(where, fmt::format("perfusion.brain_hu = [{}]; expected [low, high] with low < high",
                                         fmt::join(brain_hu, ", ")));
  }
  if (!(bone_hu > brain_hu[1])) bad("bone_hu", "above the brain window's top", bone_hu);
  if (!(smoothing_mm >= 0 && smoothing_mm <= 20)) bad("smoothing_mm", "0 to 20", smoothing_mm);
  if (!(slab_mm >= 0 && slab_mm <= 20)) bad("slab_mm", "0 to 20", slab_mm);
  if (spatial_filter != "gaussian" && spatial_filter != "tips") {
    throw ConfigError(where, fmt::format("perfusion.spatial_filter = {}; expected gaussian or tips", spatial_filter));
  }
  if (!(tips_sigma_mm > 0 && tips_sigma_mm <= 30)) bad("tips_sigma_mm", "above 0, at most 30", tips_sigma_mm);
  if (!(tips_similarity >= 0.01 && tips_similarity <= 100)) bad("tips_similarity", "0.01 to 100", tips_similarity);
  if (aif_voxels < 1 || aif_voxels > 1000) bad("aif_voxels", "1 to 1000", static_cast<double>(aif_voxels));
  if (vof_voxels < 1 || vof_voxels > 1000) bad("vof_voxels", "1 to 1000", static_cast<double>(vof_voxels));
  for (const auto* point : {&aif_lps_mm, &vof_lps_mm}) {
    if (!point->empty() && point->size() != 3) {
      throw ConfigError(where, fmt::format("perfusion.{} has {} values; expected [x, y, z] in mm",
                                           point == &aif_lps_mm ? "aif_lps_mm" : "vof_lps_mm", point->size()));
    }
  }
  if (deconvolution != "osvd" && deconvolution != "svd" && deconvolution != "model") {
    throw ConfigError(where, fmt::format("perfusion.deconvolution = {}; expected osvd, svd or model", deconvolution));
  }
  if (!tmax_deconvolution.empty() && tmax_deconvolution != "osvd" && tmax_deconvolution != "svd" &&
      tmax_deconvolution != "model") {
    throw ConfigError(where, fmt::format("perfusion.tmax_deconvolution = {}; expected osvd, svd, model or empty (the "
                                         "deconvolution's own)",
                                         tmax_deconvolution));
  }
  if (model_orders.empty() || model_orders.size() > 8 ||
      std::any_of(model_orders.begin(), model_orders.end(), [](std::int64_t k) { return k < 1 || k > 16; })) {
    throw ConfigError(where, fmt::format("perfusion.model_orders = [{}]; expected 1 to 8 Erlang orders, each 1 to 16",
                                         fmt::join(model_orders, ", ")));
  }
  if (model_mtt_s.size() != 2 || !(model_mtt_s[0] > 0 && model_mtt_s[0] < model_mtt_s[1] && model_mtt_s[1] <= 120)) {
    throw ConfigError(where, fmt::format("perfusion.model_mtt_s = [{}]; expected [low, high] s with 0 < low < high <= 120",
                                         fmt::join(model_mtt_s, ", ")));
  }
  if (model_delay_s.size() != 2 ||
      !(model_delay_s[0] >= -30 && model_delay_s[0] < model_delay_s[1] && model_delay_s[1] <= 60)) {
    throw ConfigError(where, fmt::format("perfusion.model_delay_s = [{}]; expected [low, high] s with -30 <= low < high "
                                         "<= 60", fmt::join(model_delay_s, ", ")));
  }
  positive("max_oscillation", max_oscillation);
  if (!(osvd_min_threshold > 0 && osvd_min_threshold < 1))
    bad("osvd_min_threshold", "between 0 and 1", osvd_min_threshold);
  if (!(svd_threshold > 0 && svd_threshold < 1)) bad("svd_threshold", "between 0 and 1", svd_threshold);
  positive("hematocrit_ratio", hematocrit_ratio);
  positive("density", density);
  if (!(cbv_min >= 0 && cbv_min < cbv_max)) bad("cbv_min", "at least 0 and below cbv_max", cbv_min);
  positive("cbf_max", cbf_max);
  if (!(rcbf_threshold > 0 && rcbf_threshold < 1)) bad("rcbf_threshold", "between 0 and 1", rcbf_threshold);
  positive("tmax_threshold_s", tmax_threshold_s);
  if (!(min_island_ml >= 0 && std::isfinite(min_island_ml))) bad("min_island_ml", "0 or more", min_island_ml);
  positive("defuse3_core_max_ml", defuse3_core_max_ml);
  positive("defuse3_ratio_min", defuse3_ratio_min);
  if (!(defuse3_mismatch_min_ml >= 0)) bad("defuse3_mismatch_min_ml", "0 or more", defuse3_mismatch_min_ml);
}

}  // namespace vitruvian::data
