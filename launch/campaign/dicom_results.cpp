// Derived UIDs and the plan of a route's SEG, shared by the DICOM SEG and SR sinks.
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

std::string software_version() { return VITRUVIAN_VERSION; }

SegPlan plan_seg(const FinishedStudy& f, std::size_t i) {
  const RouteResult& r = f.results[i];
  SegPlan plan;
  plan.result = &r;
  plan.source = f.study.dicom_identity(r.reference);
  if (plan.source == nullptr) {
    throw InputError(f.study.input(),
                     fmt::format("study {}: series '{}' (route {}) did not come from DICOM; DICOM SEG and "
                                 "SR outputs need DICOM input",
                                 f.study.id(), r.reference, r.route->name));
  }
  if (r.from_model) {
    std::filesystem::path model = r.route->model.lexically_normal();
    if (model.filename().empty()) model = model.parent_path();
    plan.model_name = model.filename().string();
    plan.algorithm_version = fmt::format("{} step {}", plan.model_name, r.report.value("model_step", 0));
  } else {
    plan.model_name = "labels " + r.route->labels;
    plan.algorithm_version = plan.model_name;
  }
  const std::string fingerprint = f.report.value("campaign_fingerprint", "");
  const std::vector<std::string> parts{plan.source->study.study_uid, r.route->name, plan.algorithm_version, fingerprint};
  auto with = [&](const char* what) {
    auto p = parts;
    p.emplace_back(what);
    return p;
  };
  plan.sop_instance_uid = derived_uid(with("seg instance"));
  plan.series_uid = derived_uid(with("seg series"));
  const std::int64_t classes = static_cast<std::int64_t>(r.classes.names.size());
  const at::Tensor counts = at::bincount(r.labels.voxels.flatten().to(at::kLong), {}, classes);
  for (std::int64_t c = 1; c < classes; ++c) {
    if (counts[c].item<std::int64_t>() == 0) continue;
    const std::string& name = r.classes.names[static_cast<std::size_t>(c)];
    plan.segments.push_back({c, name, data::anatomy_code(name)});
    plan.number_of[name] = static_cast<std::uint16_t>(plan.segments.size());
  }
  return plan;
}

}  // namespace vitruvian::campaign
