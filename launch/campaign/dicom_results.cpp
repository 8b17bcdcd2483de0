// Derived UIDs, a result's origin and the plan of a route's SEG, shared by the DICOM sinks.
#include "launch/campaign/dicom_results.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>

#include "core/errors.h"
#include "core/version.h"
#include "data/dicom_uid.h"

namespace vitruvian::campaign {

std::string derived_uid(const std::vector<std::string>& parts) { return data::uid_from(data::kDefaultUidRoot, parts); }

std::string seg_file_name(const RouteResult& r) { return r.route->name + ".seg.dcm"; }

std::string pmap_file_name(const RouteMap& m) { return m.name + ".pm.dcm"; }

std::string software_version() { return VITRUVIAN_VERSION; }

std::string ResultOrigin::uid(const std::string& what) const {
  auto parts = uid_parts;
  parts.push_back(what);
  return derived_uid(parts);
}

ResultOrigin result_origin(const FinishedStudy& f, std::size_t i, const std::string& output) {
  const RouteResult& r = f.results[i];
  const data::DicomSeriesIdentity* source = f.study.dicom_identity(r.reference);
  if (source == nullptr) {
    throw InputError(f.study.input(), fmt::format("study {}: series '{}' (route {}) did not come from DICOM; the '{}' "
                                                  "output needs DICOM input",
                                                  f.study.id(), r.reference, r.route->name, output));
  }
  ResultOrigin o;
  o.series = *source;
  if (o.series.frame_of_reference_uid.empty())
    o.series.frame_of_reference_uid = derived_uid({o.series.series_uid, "frame of reference"});
  if (!r.route->analysis.empty()) {
    o.model_name = r.route->analysis;
    const auto& section = r.sections.value(r.route->analysis, nlohmann::json::object());
    const std::string deconvolution = section.value("deconvolution", std::string()),
                      tmax_from = section.value("tmax_deconvolution", deconvolution);
    o.algorithm_version = fmt::format("{} {}{}", r.route->analysis, deconvolution,
                                      tmax_from == deconvolution ? "" : fmt::format(", tmax {}", tmax_from));
  } else if (r.from_model) {
    std::filesystem::path model = r.route->model.lexically_normal();
    if (model.filename().empty()) model = model.parent_path();
    o.model_name = model.filename().string();
    o.algorithm_version = fmt::format("{} step {}", o.model_name, r.report.value("model_step", 0));
  } else {
    o.model_name = "labels " + r.route->labels;
    o.algorithm_version = o.model_name;
  }
  o.uid_parts = {o.series.study.study_uid, r.route->name, o.algorithm_version,
                 f.report.value("campaign_fingerprint", "")};
  return o;
}

SegPlan plan_seg(const FinishedStudy& f, std::size_t i, const std::string& output) {
  const RouteResult& r = f.results[i];
  ResultOrigin origin = result_origin(f, i, output);
  SegPlan plan;
  plan.result = &r;
  plan.source = origin.series.first_temporal_position();
  plan.model_name = origin.model_name;
  plan.algorithm_version = origin.algorithm_version;
  plan.sop_instance_uid = origin.uid("seg instance");
  plan.series_uid = origin.uid("seg series");
  const std::int64_t classes = static_cast<std::int64_t>(r.classes.names.size());
  const at::Tensor counts = at::bincount(r.labels.voxels.flatten().to(at::kLong), {}, classes);
  for (std::int64_t c = 1; c < classes; ++c) {
    if (counts[c].item<std::int64_t>() == 0) continue;
    const std::string& name = r.classes.names[static_cast<std::size_t>(c)];
    const auto colour = r.colours.find(name);
    plan.segments.push_back(
        {c, name, data::anatomy_code(name), colour == r.colours.end() ? std::nullopt : std::optional(colour->second)});
    plan.number_of[name] = static_cast<std::uint16_t>(plan.segments.size());
  }
  return plan;
}

}  // namespace vitruvian::campaign
