// <route>.seg.dcm: each route's label map as a DICOM SEG on its DICOM reference series (of a
// perfusion route, the first frame's slices of its 4D series).
#include <fmt/format.h>

#include "data/dicom_seg.h"
#include "launch/campaign/dicom_results.h"
#include "launch/campaign/sink.h"

namespace vitruvian::campaign {

void DicomSegSink::write(FinishedStudy& f, const std::filesystem::path& dir) const {
  for (std::size_t i = 0; i < f.results.size(); ++i) {
    const SegPlan plan = plan_seg(f, i, name());
    if (plan.segments.empty()) continue;  // nothing segmented: no SEG (the report says so)
    const RouteResult& r = f.results[i];
    data::SegDescription d;
    d.source = plan.source;
    d.sop_instance_uid = plan.sop_instance_uid;
    d.series_uid = plan.series_uid;
    d.dimension_organization_uid = derived_uid({plan.sop_instance_uid, "dimension organization"});
    d.series_number = std::to_string(1001 + i);
    d.series_description = fmt::format("Vitruvian {}", r.route->name);
    d.algorithm_version = plan.algorithm_version;
    d.model_name = plan.model_name;
    d.software_version = software_version();
    data::write_dicom_seg(dir / seg_file_name(r), r.labels, plan.segments, d);
  }
}

}  // namespace vitruvian::campaign
