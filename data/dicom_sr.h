// DICOM Structured Reports (through DCMTK's dcmsr and its TID 1500 classes, kept out of this
// header): a study's measurements as an Imaging Measurement Report, one measurement group per
// structure, lesion or calcium score, each referencing its DICOM SEG segment.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "data/anatomy_codes.h"
#include "data/dicom_io.h"

namespace vitruvian::data {

/// One numeric measurement: `value` is written with the shortest decimal text that reads back
/// as the same double.
struct SrMeasurement {
  CodedConcept concept_name;  ///< what is measured (Volume, Mean attenuation coefficient, ...)
  double value = 0;
  CodedConcept unit;                       ///< UCUM
  std::optional<CodedConcept> derivation;  ///< e.g. Mean
  std::optional<CodedConcept> method;      ///< e.g. Agatston scoring method
};

/// One measurement group: TID 1411 (volumetric, referencing a SEG segment) when `segment` > 0,
/// else TID 1501 (a measurement of no segmented region, such as a study's total calcium score).
struct SrGroup {
  std::string tracking_id;   ///< human-readable: "organs liver", "organs lung_nodule lesion 1"
  std::string tracking_uid;  ///< stable across reruns
  CodedConcept finding;      ///< what the group is about (the structure's type code)
  std::optional<CodedConcept> finding_site;
  std::string segmentation_uid;   ///< SOP Instance UID of the SEG holding the segment
  std::uint16_t segment = 0;      ///< segment number in that SEG (0: none)
  std::string source_series_uid;  ///< the series that was segmented
  std::string algorithm_version;  ///< of what measured it ("0.1.0 organs step 300"), when known
  std::vector<SrMeasurement> measurements;
  /// Qualitative evaluations in text (TID 1411 row 17, TID 1501 row 12), e.g. why a score is
  /// only an estimate on this grid.
  std::vector<std::string> evaluations;
};

struct SrDescription {
  DicomSeriesIdentity source;  ///< patient and study of the report (one series of the study)
  std::string sop_instance_uid, series_uid;
  std::string series_number = "1000";
  std::string series_description = "Vitruvian measurements";
  std::string device_uid;  ///< the device observer (Vitruvian)
  std::string software_version;
  /// SEG instances the groups reference (series UID, SOP instance UID), listed as evidence.
  std::vector<std::pair<std::string, std::string>> segmentations;
};

/// Writes an Enhanced SR Imaging Measurement Report (TID 1500) to `path`. InternalError (naming
/// `path`) when DCMTK refuses a value or the document is not valid.
void write_dicom_sr(const std::filesystem::path& path, const SrDescription& description,
                    const std::vector<SrGroup>& groups);

}  // namespace vitruvian::data
