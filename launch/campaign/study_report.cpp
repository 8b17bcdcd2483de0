// Measures, lesions, Dice and calcium into a study's report.
#include "launch/campaign/study_report.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <map>
#include <optional>

#include "core/stopwatch.h"
#include "data/preprocess.h"
#include "models/measures.h"
#include "models/metrics.h"

namespace vitruvian::campaign {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

/// Lesions listed per structure in a report (largest first); `count` gives them all.
constexpr std::size_t kLesionsListed = 100;

std::array<double, 3> lps_of(const data::Geometry& g, const std::array<double, 3>& zyx) {
  const auto m = g.index_to_lps();
  const double i = zyx[2], j = zyx[1], k = zyx[0];
  return {m[0] * i + m[1] * j + m[2] * k + m[3], m[4] * i + m[5] * j + m[6] * k + m[7], m[8] * i + m[9] * j + m[10] * k + m[11]};
}

json lps_point(const data::Geometry& g, const std::array<double, 3>& zyx) {
  const auto p = lps_of(g, zyx);
  return {rounded(p[0], 4), rounded(p[1], 4), rounded(p[2], 4)};
}

std::array<double, 3> spacing_zyx(const data::Geometry& g) { return {g.spacing[2], g.spacing[1], g.spacing[0]}; }

/// The LPS box holding all eight corners of a voxel box (any direction cosines).
json lps_box(const data::Geometry& g, const models::ClassExtent& e) {
  std::array<double, 3> lo{1e300, 1e300, 1e300}, hi{-1e300, -1e300, -1e300};
  for (int corner = 0; corner < 8; ++corner) {
    std::array<double, 3> zyx{};
    for (int a = 0; a < 3; ++a) zyx[a] = static_cast<double>((corner >> a) & 1 ? e.box_max[a] : e.box_min[a]);
    const auto p = lps_of(g, zyx);
    for (int a = 0; a < 3; ++a) lo[a] = std::min(lo[a], rounded(p[a], 4)), hi[a] = std::max(hi[a], rounded(p[a], 4));
  }
  return {{"min", lo}, {"max", hi}};
}

json intensity_json(const models::IntensitySummary& i) {
  return {{"mean", rounded(i.mean, 4)}, {"std", rounded(i.std, 4)}, {"min", i.min}, {"max", i.max},
          {"p05", rounded(i.p05, 4)},   {"p50", rounded(i.p50, 4)}, {"p95", rounded(i.p95, 4)}};
}

json lesions_json(const at::Tensor& mask, const data::Geometry& g) {
  json items = json::array();
  const auto found = models::lesions(mask, spacing_zyx(g));
  for (const auto& l : found) {
    if (items.size() >= kLesionsListed) break;  // the largest; the count covers them all
    items.push_back({{"voxels", l.voxels},
                     {"volume_ml", rounded(l.volume_ml, 6)},
                     {"equivalent_diameter_mm", rounded(l.equivalent_diameter_mm, 4)},
                     {"axial_diameter_mm", rounded(l.axial_diameter_mm, 4)},
                     {"centroid_lps_mm", lps_point(g, l.centroid)}});
  }
  return {{"count", found.size()}, {"items", items}};
}

/// Intensity summaries per class in every 3D series of the study on the label map's grid.
std::map<std::string, std::vector<models::IntensitySummary>> intensities_on_grid(Study& study, const RouteResult& r,
                                                                                 std::int64_t classes) {
  std::map<std::string, std::vector<models::IntensitySummary>> out;
  const auto shape = r.labels.shape_zyx();
  for (const auto& s : study.info().series) {
    if (s.shape != std::vector<std::int64_t>(shape.begin(), shape.end()) || !s.geometry.matches(r.labels.geometry)) continue;
    out[s.name] = models::class_intensities(r.labels.voxels, study.series(s.name).voxels, classes);
  }
  return out;
}

}  // namespace

double rounded(double v, int decimals) {
  const double scale = std::pow(10.0, decimals);
  return std::round(v * scale) / scale;
}

json StudyReport::structures(Study& study, const RouteResult& r) {
  const std::int64_t classes = r.classes.size();
  const at::Tensor& labels = r.labels.voxels;
  const auto extents = models::class_extents(labels, classes);
  const data::Geometry& g = r.labels.geometry;
  const double voxel_ml = g.spacing[0] * g.spacing[1] * g.spacing[2] / 1000.0;
  const auto intensities = intensities_on_grid(study, r, classes);
  const auto& names = r.classes.names;
  const auto lesion_classes = selected_classes(r.route->lesions, names, "lesions", *r.route);
  json out = json::object();
  for (std::int64_t c = 1; c < classes; ++c) {
    const auto& e = extents[static_cast<std::size_t>(c)];
    if (e.voxels == 0 && !r.from_model) continue;  // label ids of the table the study does not use
    json s = {{"voxels", e.voxels}, {"volume_ml", rounded(static_cast<double>(e.voxels) * voxel_ml, 6)}};
    if (e.voxels > 0) {
      s["box_voxels_zyx"] = {{"min", e.box_min}, {"max", e.box_max}};
      s["box_lps_mm"] = lps_box(g, e);
      s["centroid_lps_mm"] = lps_point(g, e.centroid);
      json in = json::object();
      for (const auto& [series, stats] : intensities) in[series] = intensity_json(stats[static_cast<std::size_t>(c)]);
      s["intensity"] = in;
    }
    if (lesion_classes.count(c) != 0) s["lesions"] = lesions_json(labels == c, g);
    out[names[static_cast<std::size_t>(c)]] = s;
  }
  return out;
}

json StudyReport::dice(Study& study, const RouteResult& r) {
  if (r.truth.empty() || study.info().find_label(r.truth) == nullptr) return nullptr;
  data::Volume truth = study.label(r.truth);
  if (!data::same_grid(truth, r.labels)) {
    truth = data::resample_onto(truth, r.labels.geometry, r.labels.shape_zyx(), data::Interpolation::kNearest);
  }
  const std::vector<std::int64_t> lookup = r.classes.lookup_ids();  // dataset label id -> class
  const std::int64_t classes = r.classes.size();
  const auto dice = models::dice_from_counts(models::dice_counts(r.labels.voxels, truth.voxels, classes, &lookup));
  json d = json::object();
  for (std::int64_t c = 1; c < classes; ++c) {
    const double v = dice[static_cast<std::size_t>(c - 1)];
    d[r.classes.names[static_cast<std::size_t>(c)]] = std::isnan(v) ? json(nullptr) : json(rounded(v, 6));
  }
  return d;
}

json StudyReport::calcium(const std::vector<RouteResult>& results, const data::Volume& ct, json& notes) const {
  const CalciumConfig& cc = calcium_;
  if (ct.frames() != 1) {
    notes.push_back("calcium: series '" + cc.series + "' is not 3D; no score");
    return nullptr;
  }
  // A structure's mask on the CT's grid, from the first route that has it.
  const auto mask_of = [&](const std::string& name) -> std::optional<at::Tensor> {
    for (const auto& r : results) {
      const auto& names = r.classes.names;
      const auto it = std::find(names.begin() + 1, names.end(), name);
      if (it == names.end()) continue;
      data::Volume mask = r.labels;
      if (!data::same_grid(mask, ct)) mask = data::resample_onto(mask, ct.geometry, ct.shape_zyx(), data::Interpolation::kNearest);
      return mask.voxels == (it - names.begin());
    }
    return std::nullopt;
  };
  std::vector<std::pair<std::string, at::Tensor>> arteries;
  at::Tensor any = at::zeros(ct.voxels.sizes(), at::kBool);
  for (const auto& a : cc.arteries) {
    if (auto m = mask_of(a)) {
      arteries.emplace_back(a, *m);
      any |= *m;
    }
  }
  const auto sp = spacing_zyx(ct.geometry);
  at::Tensor region;
  std::string basis;
  if (any.any().item<bool>()) {
    region = models::dilate(any, cc.artery_margin_mm, sp);
    basis = fmt::format("within {} mm of the segmented arteries", cc.artery_margin_mm);
  } else if (auto m = mask_of(cc.region); m && m->any().item<bool>()) {
    region = models::dilate(*m, cc.region_margin_mm, sp);
    basis = fmt::format("within {} mm of {} (no artery segmented)", cc.region_margin_mm, cc.region);
  } else {
    notes.push_back("calcium: neither the arteries nor '" + cc.region + "' were segmented; no score");
    return nullptr;
  }
  models::CalciumOptions options;
  options.assign_mm = cc.artery_margin_mm;
  const auto result = models::agatston(ct.voxels, region, arteries, sp, options);
  const auto score = [](const models::CalciumScore& s) {
    return json{{"agatston", rounded(s.agatston, 4)}, {"volume_mm3", rounded(s.volume_mm3, 4)}, {"lesions", s.lesions}};
  };
  json per_artery = json::object();
  for (const auto& [name, s] : result.arteries) per_artery[name] = score(s);
  const std::string limit = models::agatston_grid_limit(sp, options);
  if (!limit.empty()) notes.push_back("calcium: the score is an estimate: " + limit);
  return {{"method", "Agatston (130 HU, 1 mm², peak weights 1-4, scaled by slice spacing / 3 mm)"},
          {"series", cc.series},
          {"region", basis},
          {"estimate", !limit.empty()},
          {"estimate_why", limit.empty() ? json(nullptr) : json(limit)},
          {"total", score(result.total)},
          {"arteries", per_artery},
          {"unassigned", score(result.unassigned)}};
}

json StudyReport::build(Study& study, const std::vector<RouteResult>& results, json notes, const std::string& fingerprint) const {
  json report = {{"study", study.id()}, {"input", study.input()}, {"task", study.task()}, {"campaign_fingerprint", fingerprint}};
  json series = json::object();
  for (const auto& s : study.info().series) {
    series[s.name] = {{"modality", s.modality}, {"shape", s.shape}, {"spacing_mm", s.geometry.spacing}, {"type", data::voxel_type_name(s.type)}};
  }
  report["series"] = series;
  json routes = json::object();
  json timing = {{"read_s", 0.0}, {"routes", json::object()}};
  const auto measure_start = Clock::now();
  for (const auto& r : results) {
    json part = r.report;
    part["structures"] = structures(study, r);
    if (const json d = dice(study, r); !d.is_null()) {
      part["dice"] = d;
      part["truth"] = r.truth;
    }
    routes[r.route->name] = part;
    timing["routes"][r.route->name] = r.timing;
    for (const auto& [key, value] : r.sections.items()) report[key] = value;
  }
  report["routes"] = routes;
  timing["measure_s"] = seconds_since(measure_start);
  if (!calcium_.series.empty() && study.info().find_series(calcium_.series) != nullptr) {
    const auto calcium_start = Clock::now();
    report["calcium"] = calcium(results, study.series(calcium_.series), notes);
    timing["calcium_s"] = seconds_since(calcium_start);
  }
  if (results.empty()) notes.push_back("no route applies to this study (its task matches none of the routes')");
  report["notes"] = notes;
  report["timing"] = timing;
  return report;
}

}  // namespace vitruvian::campaign
