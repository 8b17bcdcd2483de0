// Tissue classes and triage from the perfusion maps: CSF and vessels left out, the hemispheres
// split at the brain's centroid, core (rCBF) and hypoperfused (Tmax) tissue without small islands,
// volumes, mismatch and the DEFUSE-3 criteria; and the report's `perfusion` section.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "core/components.h"
#include "data/perfusion/perfusion_steps.h"

namespace vitruvian::data::perfusion {

namespace {

/// Patient left–right (LPS x, mm) of each linear voxel index (float64 [n]).
at::Tensor lps_x(const at::Tensor& index, const Volume& series) {
  const at::Tensor voxels = index.to(at::kLong).contiguous();
  const std::int64_t* v = voxels.data_ptr<std::int64_t>();
  at::Tensor x = at::empty({voxels.numel()}, at::kDouble);
  double* out = x.data_ptr<double>();
  const auto shape = series.shape_zyx();
  at::parallel_for(0, voxels.numel(), 1 << 14, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t i = begin; i < end; ++i) out[i] = voxel_lps(series.geometry, shape, v[i])[0];
  });
  return x;
}

at::Tensor scatter_mask(const Volume& series, const at::Tensor& index, const at::Tensor& where) {
  const auto shape = series.shape_zyx();
  at::Tensor m = at::zeros({shape[0] * shape[1] * shape[2]}, at::kByte);
  m.index_put_({index.masked_select(where)}, at::ones({1}, at::kByte));
  return m.view({shape[0], shape[1], shape[2]});
}

}  // namespace

void classify(PerfusionResult& r, const at::Tensor& index, const at::Tensor& cbf, const at::Tensor& cbv,
              const at::Tensor& tmax, const Volume& series, const PerfusionOptions& o) {
  const at::Tensor vessel = (cbv > o.cbv_max).logical_or(cbf > o.cbf_max);
  const at::Tensor late = tmax > o.tmax_threshold_s;
  const at::Tensor valid = (cbv >= o.cbv_min).logical_and(vessel.logical_not());
  // Below the CSF floor, a voxel with a late bolus and some flow is tissue whose volume is too low
  // to read (an ischaemic core with little enhancement, its area lost to the baseline's error or
  // cut off by the acquisition's end): core and hypoperfused, not CSF. CSF shows no late bolus.
  const at::Tensor collapsed =
      o.low_cbv_core ? (cbv < o.cbv_min).logical_and(cbf > 0).logical_and(late).logical_and(vessel.logical_not())
                     : at::zeros_like(valid);
  const at::Tensor x = lps_x(index, series);
  const at::Tensor left = x > x.mean();
  const at::Tensor hypo = valid.logical_and(late).logical_or(collapsed);
  const auto hypo_left = detail::count_set(hypo.logical_and(left));
  const auto hypo_right = detail::count_set(hypo.logical_and(left.logical_not()));
  PerfusionTriage& t = r.triage;
  at::Tensor healthy = valid.logical_and(hypo.logical_not());
  if (hypo_left + hypo_right > 0) {
    t.side = hypo_left > hypo_right ? "left" : "right";
    const at::Tensor other = hypo_left > hypo_right ? left.logical_not() : left;
    if (healthy.logical_and(other).any().item<bool>()) healthy = healthy.logical_and(other);
  }
  t.healthy_cbf = healthy.any().item<bool>() ? cbf.masked_select(healthy).to(at::kDouble).mean().item<double>() : 0.0;
  const at::Tensor core = valid.logical_and(cbf < o.rcbf_threshold * t.healthy_cbf).logical_or(collapsed);

  const double voxel_ml = series.geometry.spacing[0] * series.geometry.spacing[1] * series.geometry.spacing[2] / 1000;
  const auto min_voxels = static_cast<std::int64_t>(std::ceil(o.min_island_ml / voxel_ml));
  at::Tensor core3d = scatter_mask(series, index, core), hypo3d = scatter_mask(series, index, hypo);
  remove_small_components(core3d, min_voxels);
  remove_small_components(hypo3d, min_voxels);
  const at::Tensor penumbra3d = hypo3d.logical_and(core3d.logical_not());
  r.brain = scatter_mask(series, index, valid.logical_or(collapsed));
  r.tissue.type = VoxelType::kUInt8;
  r.tissue.geometry = series.geometry;
  r.tissue.modality = series.modality;
  r.tissue.voxels = (core3d + 2 * penumbra3d.to(at::kByte)).to(at::kByte).contiguous();

  t.core_ml = static_cast<double>(detail::count_set(core3d)) * voxel_ml;
  // Of the core left after island removal, the voxels under the floor: read back at the brain's
  // voxels rather than a second whole-grid mask.
  const at::Tensor core_kept = core3d.view(-1).index_select(0, index.to(at::kLong)).to(at::kBool);
  t.core_below_cbv_min_ml = static_cast<double>(detail::count_set(core_kept.logical_and(collapsed))) * voxel_ml;
  t.hypoperfused_ml = static_cast<double>(detail::count_set(hypo3d)) * voxel_ml;
  t.penumbra_ml = static_cast<double>(detail::count_set(penumbra3d)) * voxel_ml;
  t.decide(o);
}

}  // namespace vitruvian::data::perfusion

namespace vitruvian::data {

void PerfusionTriage::decide(const PerfusionOptions& o) {
  mismatch_ml = std::max(0.0, hypoperfused_ml - core_ml);
  has_core = core_ml > 0;
  mismatch_ratio = has_core ? hypoperfused_ml / core_ml : 0.0;
  core_ok = core_ml < o.defuse3_core_max_ml;
  ratio_ok = !has_core ? hypoperfused_ml > 0 : mismatch_ratio >= o.defuse3_ratio_min;
  mismatch_ok = mismatch_ml >= o.defuse3_mismatch_min_ml;
  eligible = core_ok && ratio_ok && mismatch_ok;
}

namespace {

nlohmann::json curve_json(const PerfusionCurve& c) {
  if (!c.found) return {{"found", false}};
  nlohmann::json hu = nlohmann::json::array();
  for (const double v : c.hu) hu.push_back(std::round(v * 100) / 100);
  return {{"found", true},
          {"manual", c.manual},
          {"voxels", c.voxels},
          {"centre_lps_mm", c.centre_lps_mm},
          {"peak_hu", c.peak_hu},
          {"ttp_s", c.ttp_s},
          {"fwhm_s", c.fwhm_s},
          {"auc_hu_s", c.auc_hu_s},
          {"first_pass_auc_hu_s", c.first_pass_auc_hu_s},
          {"baseline_shift_hu", c.baseline_shift_hu},
          {"noise_hu", c.noise_hu},
          {"curve_hu", hu}};
}

nlohmann::json criterion(double value, const std::string& limit, bool met) {
  return {{"value", value}, {"limit", limit}, {"met", met}};
}

}  // namespace

nlohmann::json PerfusionResult::report(const PerfusionOptions& o) const {
  const PerfusionTriage& t = triage;
  nlohmann::json times = nlohmann::json::array();
  for (const double s : times_s) times.push_back(std::round(s * 1000) / 1000);
  nlohmann::json aif_json = curve_json(aif);
  aif_json["scale"] = aif_scale;
  const nlohmann::json ratio = t.has_core ? nlohmann::json(t.mismatch_ratio) : nlohmann::json(nullptr);
  return {
      {"deconvolution", o.deconvolution},
      {"tmax_deconvolution", o.tmax_method()},
      {"device", device},
      {"model", model},
      {"filter", filter},
      {"frames", times_s.size()},
      {"interval_s", interval_s},
      {"arrival_frame", arrival_frame},
      {"brain_voxels", brain_voxels},
      {"tissue_voxels", brain.defined() ? detail::count_set(brain) : 0},
      {"times_s", times},
      {"arterial_input", aif_json},
      {"venous_output", curve_json(vof)},
      {"healthy_cbf_ml_100g_min", t.healthy_cbf},
      {"side", t.side.empty() ? nlohmann::json(nullptr) : nlohmann::json(t.side)},
      {"thresholds",
       {{"rcbf", o.rcbf_threshold},
        {"tmax_s", o.tmax_threshold_s},
        {"min_island_ml", o.min_island_ml},
        {"cbv_min", o.cbv_min},
        {"low_cbv_core", o.low_cbv_core}}},
      {"volumes_ml",
       {{"core", t.core_ml},
        {"core_below_cbv_min", t.core_below_cbv_min_ml},
        {"hypoperfused", t.hypoperfused_ml},
        {"penumbra", t.penumbra_ml},
        {"mismatch", t.mismatch_ml}}},
      {"mismatch_ratio", ratio},
      {"defuse3",
       {{"eligible", t.eligible},
        {"core_ml", criterion(t.core_ml, fmt::format("< {:g}", o.defuse3_core_max_ml), t.core_ok)},
        {"mismatch_ratio",
         {{"value", ratio}, {"limit", fmt::format(">= {:g}", o.defuse3_ratio_min)}, {"met", t.ratio_ok}}},
        {"mismatch_ml", criterion(t.mismatch_ml, fmt::format(">= {:g}", o.defuse3_mismatch_min_ml), t.mismatch_ok)}}},
      {"timing", timing}};
}

}  // namespace vitruvian::data
