// The perfusion route: a study's 4D CT perfusion series through data/perfusion, its maps beside
// the core/penumbra label map, and the triage in the report's `perfusion` section.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <chrono>

#include "core/errors.h"
#include "core/stopwatch.h"
#include "data/perfusion/perfusion.h"
#include "data/perfusion/perfusion_pictures.h"
#include "launch/campaign/route.h"

namespace vitruvian::campaign {

namespace {

/// The series the route analyses: its first `series`, else the study's first 4D CT series ("").
std::string perfusion_series(const RouteConfig& route, const Study& study) {
  if (!route.series.empty())
    return study.info().find_series(route.series.front()) != nullptr ? route.series.front() : "";
  for (const auto& s : study.info().series) {
    if (s.shape.size() == 4 && (s.modality == "CT" || s.modality.empty())) return s.name;
  }
  return "";
}

/// The study's series as "name (modality, shape)", for a note naming what was found instead.
std::string series_list(const Study& study) {
  std::vector<std::string> items;
  for (const auto& s : study.info().series) {
    items.push_back(fmt::format("{} ({}{}D {})", s.name, s.modality.empty() ? "" : s.modality + ", ", s.shape.size(),
                                fmt::join(s.shape, " × ")));
  }
  return items.empty() ? "no series" : fmt::format("{}", fmt::join(items, ", "));
}

/// Core and penumbra, with the ids the study's label table gives them (Dice against its truth).
models::ClassMap tissue_classes(const Study& study) {
  models::ClassMap classes;
  classes.names = {"background", "ischemic_core", "ischemic_penumbra"};
  classes.label_ids = {{0}, {}, {}};
  for (const auto& [id, name] : study.label_table()) {
    for (std::size_t c = 1; c < classes.names.size(); ++c) {
      if (name == classes.names[c]) classes.label_ids[c].push_back(id);
    }
  }
  return classes;
}

}  // namespace

std::optional<RouteResult> PerfusionRoute::run(Study& study, nlohmann::json& notes) const {
  const RouteConfig& route = config();
  const std::string name = perfusion_series(route, study);
  if (name.empty()) {
    notes.push_back(fmt::format(
        "route {}: the study has {}; expected a 4D perfusion series [t, z, y, x] (it has: {})", route.name,
        route.series.empty() ? "no 4D CT series" : "no series '" + route.series.front() + "'", series_list(study)));
    return std::nullopt;
  }
  const auto start = std::chrono::steady_clock::now();
  // Only the part of the series around the brain is read and analysed (the neck, the air around
  // the head and the slices beyond the brain are not): its box from the first frame.
  const std::string what = fmt::format("study {}, series {}", study.id(), name);
  const std::vector<std::int64_t>& shape = study.info().find_series(name)->shape;
  if (shape.size() != 4) {
    throw InputError(what, fmt::format("a {}D series; expected a 4D perfusion series [t, z, y, x]", shape.size()));
  }
  const data::Volume first = study.series_part(name, 0, 1, {{0, 0, 0}, {shape[1], shape[2], shape[3]}});
  const data::PerfusionRegion region = data::perfusion_region(first, route.perfusion);
  const data::Box& box = region.box;
  const double region_s = seconds_since(start);
  const double read_before = study.read_seconds();
  const data::Volume series = study.series_part(name, 0, -1, box);
  const double read_s = study.read_seconds() - read_before;
  // Maps, tissue and brain built on the whole series' grid, zero outside the part.
  data::PerfusionResult p =
      data::analyse_perfusion(series, route.perfusion, what, region.first_brain, {&first, box}, device_);
  RouteResult r;
  r.route = &route;
  r.reference = name;
  r.labels = p.tissue;
  r.classes = tissue_classes(study);
  r.from_model = true;  // class indices, written in the ids of the study's table
  if (route.truth != "none") {
    const bool has_truth = !r.classes.label_ids[1].empty() && !r.classes.label_ids[2].empty();
    if (!route.truth.empty()) {
      r.truth = route.truth;
    } else if (has_truth && !study.info().labels.empty()) {
      r.truth = study.info().labels.front().name;
    }
  }
  // Units as DICOM's tracer kinetic model parameters give them (PS3.16, UCUM).
  const data::CodedConcept ml_per_100g_min{"ml/(100.g)/min", "UCUM", "milliliter per 100 gram per minute"};
  const data::CodedConcept ml_per_100g{"ml/(100.g)", "UCUM", "milliliter per 100 gram"};
  const data::CodedConcept seconds{"s", "UCUM", "second"};
  const struct {
    const char* suffix;
    const data::Volume* map;
    data::CodedConcept quantity, units;
    const char* label;
  } maps[] = {
      {"cbf", &p.cbf, {"126390", "DCM", "Absolute Regional Blood Flow"}, ml_per_100g_min, "CBF"},
      {"cbv", &p.cbv, {"126391", "DCM", "Absolute Regional Blood Volume"}, ml_per_100g, "CBV"},
      {"mtt", &p.mtt, {"113052", "DCM", "Mean Transit Time"}, seconds, "MTT"},
      {"tmax", &p.tmax, {"113084", "DCM", "Tmax"}, seconds, "Tmax"},
      {"ttp", &p.ttp, {"113069", "DCM", "Time To Peak"}, seconds, "TTP"},
  };
  nlohmann::json names = nlohmann::json::object();  // the report's `maps`: key -> series name
  for (const auto& m : maps) {
    data::Volume v = *m.map;  // shares the tensor
    v.modality.clear();
    r.maps.push_back({route.name + "_" + m.suffix, std::move(v), m.quantity, m.units, m.label});
    names[m.suffix] = r.maps.back().name;
  }
  r.colours = {{"ischemic_core", data::kCoreColour}, {"ischemic_penumbra", data::kHypoperfusedColour}};
  nlohmann::json section = p.report(route.perfusion);
  section["route"] = route.name;
  section["series"] = name;
  section["maps"] = names;
  r.report = {{"analysis", "perfusion"}, {"series", {name}}};
  r.sections = {{"perfusion", section}};
  r.timing = p.timing;
  r.timing["region_s"] = region_s;  // the first frame read, its brain mask and the box
  r.timing["read_s"] = read_s;      // the box, every frame
  r.timing["seconds"] = seconds_since(start);
  const std::int64_t voxels = first.voxels.numel() * shape[0];
  r.timing["voxels"] = voxels;
  r.timing["voxels_read"] = study.reads_parts() ? series.voxels.numel() : voxels;
  return r;
}

}  // namespace vitruvian::campaign
