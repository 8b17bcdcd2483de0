// <map>.pm.dcm: each map a route computed (a perfusion route's CBF, CBV, MTT, Tmax and TTP) as a
// DICOM Parametric Map on the slices of its DICOM reference series (a 4D series' first frame),
// each frame derived from its slice at every temporal position.
#include <fmt/format.h>

#include <cctype>

#include "data/dicom_pmap.h"
#include "launch/campaign/dicom_results.h"
#include "launch/campaign/sink.h"

namespace vitruvian::campaign {

void DicomParametricMapSink::write(FinishedStudy& f, const std::filesystem::path& dir) const {
  int number = 0;  // series numbers 1101, 1102, ... over the study's maps
  for (std::size_t i = 0; i < f.results.size(); ++i) {
    const RouteResult& r = f.results[i];
    if (r.maps.empty()) continue;
    const ResultOrigin origin = result_origin(f, i, name());
    for (const RouteMap& m : r.maps) {
      data::ParametricMapDescription d;
      d.source = origin.series;
      d.sop_instance_uid = origin.uid(m.name + " map instance");
      d.series_uid = origin.uid(m.name + " map series");
      d.dimension_organization_uid = origin.uid(m.name + " dimension organization");
      d.series_number = std::to_string(1101 + number++);
      d.series_description = fmt::format("Vitruvian {} {}", r.route->name, m.label);
      d.content_label = m.label;
      for (char& c : d.content_label) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      d.quantity = m.quantity;
      d.units = m.units;
      d.lut_label = m.label;
      d.model_name = origin.model_name;
      d.algorithm_version = origin.algorithm_version;
      d.software_version = software_version();
      data::write_dicom_parametric_map(dir / pmap_file_name(m), m.volume, d);
    }
  }
}

}  // namespace vitruvian::campaign
