// What the DICOM SEG, parametric map and SR sinks share: UIDs derived from what a result depends
// on (a rerun writes the same UIDs, so a PACS replaces instead of duplicating), where a route's
// result comes from (its source series and what made it), and the plan of each route's SEG (its
// UIDs and segments), which the SR references.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "data/dicom_seg.h"
#include "launch/campaign/sink.h"

namespace vitruvian::campaign {

/// A UID under the project's root hashed from `parts` (data::uid_from): the same for the same
/// parts, another for any change.
std::string derived_uid(const std::vector<std::string>& parts);

/// Where a route's result comes from, as the DICOM objects derived from it name it.
struct ResultOrigin {
  /// The reference series' DICOM identity, whole (of a time series, every temporal position:
  /// what a map derives from; series.first_temporal_position() is the grid the maps and label map
  /// lie on, what a SEG derives from). When the source declares no FrameOfReferenceUID, one
  /// derived from its SeriesInstanceUID: a SEG or map placed in the patient needs one.
  data::DicomSeriesIdentity series;
  /// "<model folder> step <n>", "labels <map>" or "perfusion <deconvolution>[, tmax <tmax_deconvolution>]"
  std::string algorithm_version;
  std::string model_name;
  /// A UID derived from (StudyInstanceUID, route, algorithm version, campaign fingerprint, `what`).
  std::string uid(const std::string& what) const;

  std::vector<std::string> uid_parts;
};

/// The origin of `f.results[i]`. InputError naming the study when its reference series has no
/// DICOM identity (`output` names the output that needs it).
ResultOrigin result_origin(const FinishedStudy& f, std::size_t i, const std::string& output);

/// A route's SEG as the sinks write and reference it.
struct SegPlan {
  const RouteResult* result = nullptr;
  data::DicomSeriesIdentity source;  ///< ResultOrigin::series' first temporal position (its slices)
  std::string sop_instance_uid, series_uid;
  std::vector<data::SegSegment> segments;          ///< the classes with voxels, numbered 1, 2, ...
  std::map<std::string, std::uint16_t> number_of;  ///< class name -> segment number
  std::string algorithm_version, model_name;       ///< as ResultOrigin
};

/// The SEG of `f.results[i]`: UIDs from its origin's parts. InputError naming the study when its
/// reference series has no DICOM identity (`output`: the output asking, for the message).
SegPlan plan_seg(const FinishedStudy& f, std::size_t i, const std::string& output);

/// The file name of a route's SEG: "<route>.seg.dcm".
std::string seg_file_name(const RouteResult& r);

/// The file name of a route's map as a parametric map: "<map>.pm.dcm" ("stroke_cbf.pm.dcm").
std::string pmap_file_name(const RouteMap& m);

/// Vitruvian's version ("0.1.0"), as SEG and SR name it.
std::string software_version();

}  // namespace vitruvian::campaign
