// What the DICOM SEG and SR sinks share: UIDs derived from what a result depends on (a rerun
// writes the same UIDs, so a PACS replaces instead of duplicating), and the plan of each
// route's SEG (its UIDs, source series and segments), which the SR references.
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

/// A route's SEG as the sinks write and reference it.
struct SegPlan {
  const RouteResult* result = nullptr;
  const data::DicomSeriesIdentity* source = nullptr;  ///< the reference series' DICOM identity
  std::string sop_instance_uid, series_uid;
  std::vector<data::SegSegment> segments;          ///< the classes with voxels, numbered 1, 2, ...
  std::map<std::string, std::uint16_t> number_of;  ///< class name -> segment number
  std::string algorithm_version;                   ///< "<model folder> step <n>" or "labels <map>"
  std::string model_name;
};

/// The SEG of `f.results[i]`: UIDs from (StudyInstanceUID, route, model, campaign fingerprint).
/// InputError naming the study when its reference series has no DICOM identity.
SegPlan plan_seg(const FinishedStudy& f, std::size_t i);

/// The file name of a route's SEG: "<route>.seg.dcm".
std::string seg_file_name(const RouteResult& r);

/// Vitruvian's version ("0.1.0"), as SEG and SR name it.
std::string software_version();

}  // namespace vitruvian::campaign
