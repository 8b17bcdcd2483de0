// Functional groups and source references shared by the SEG and parametric map writers.
#include "data/dicom_frames.h"

#include <dcmtk/dcmdata/dcdatset.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcsequen.h>
#include <dcmtk/oflog/oflog.h>
#include <fmt/format.h>

#include <utility>

#include "core/errors.h"
#include "data/dicom_common.h"

namespace vitruvian::data {

namespace fs = std::filesystem;

void check_dcmtk(const OFCondition& status, const fs::path& path, const char* call) {
  if (status.bad()) throw InternalError(path.string(), fmt::format("DCMTK {} failed: {}", call, status.text()));
}

void quiet_dcmiod_warnings() {
  static const bool quiet = [] {
    OFLog::getLogger("dcmtk.dcmiod").setLogLevel(OFLogger::ERROR_LOG_LEVEL);
    return true;
  }();
  (void)quiet;
}

std::string dimension_organization_uid(const std::string& given, const std::string& sop_instance_uid,
                                       const std::string& series_uid) {
  if (!given.empty()) return given;
  const std::string arc = sop_instance_uid + ".1";
  return arc.size() <= 64 ? arc : series_uid;
}

CodeSequenceMacro code_sequence(const CodedConcept& c) {
  return CodeSequenceMacro(c.value.c_str(), c.scheme.c_str(), c.meaning.c_str());
}

void fill_source_item(DcmItem& item, const DicomSeriesIdentity& s) {
  const DicomStudyAttributes& a = s.study;
  const std::pair<DcmTagKey, std::string> values[] = {
      {DCM_PatientName, a.patient_name},
      {DCM_PatientID, a.patient_id},
      {DCM_PatientBirthDate, a.patient_birth_date},
      {DCM_PatientSex, a.patient_sex},
      {DCM_StudyInstanceUID, a.study_uid},
      {DCM_StudyDate, a.study_date},
      {DCM_StudyTime, a.study_time},
      {DCM_StudyID, a.study_id},
      {DCM_AccessionNumber, a.accession_number},
      {DCM_ReferringPhysicianName, a.referring_physician_name},
      {DCM_StudyDescription, a.study_description},
  };
  for (const auto& [tag, value] : values) item.putAndInsertString(tag, value.c_str());
  item.putAndInsertString(DCM_PositionReferenceIndicator, "");
  if (!a.specific_character_set.empty())
    item.putAndInsertString(DCM_SpecificCharacterSet, a.specific_character_set.c_str());
  if (!s.frame_of_reference_uid.empty())
    item.putAndInsertString(DCM_FrameOfReferenceUID, s.frame_of_reference_uid.c_str());
}

std::unique_ptr<FGPlaneOrientationPatient> plane_orientation(const Geometry& g) {
  const auto& m = g.direction;  // column c: the LPS direction of index axis c
  std::unique_ptr<FGPlaneOrientationPatient> group(FGPlaneOrientationPatient::createMinimal(
      decimal_string(m[0]).c_str(), decimal_string(m[3]).c_str(), decimal_string(m[6]).c_str(),
      decimal_string(m[1]).c_str(), decimal_string(m[4]).c_str(), decimal_string(m[7]).c_str()));
  if (!group) throw InternalError("DICOM plane orientation", "DCMTK FGPlaneOrientationPatient::createMinimal failed");
  return group;
}

std::unique_ptr<FGPixelMeasures> pixel_measures(const Geometry& g, const fs::path& path) {
  auto measures = std::make_unique<FGPixelMeasures>();
  check_dcmtk(measures->setPixelSpacing(
                  fmt::format("{}\\{}", decimal_string(g.spacing[1]), decimal_string(g.spacing[0])).c_str()),
              path, "setPixelSpacing");
  check_dcmtk(measures->setSliceThickness(decimal_string(g.spacing[2]).c_str()), path, "setSliceThickness");
  check_dcmtk(measures->setSpacingBetweenSlices(decimal_string(g.spacing[2]).c_str()), path, "setSpacingBetweenSlices");
  return measures;
}

std::unique_ptr<FGPlanePosPatient> plane_position(const Geometry& g, std::int64_t z, const fs::path& path) {
  const auto m = g.index_to_lps();
  auto position = std::make_unique<FGPlanePosPatient>();
  check_dcmtk(position->setImagePositionPatient(decimal_string(m[2] * z + m[3]).c_str(),
                                                decimal_string(m[6] * z + m[7]).c_str(),
                                                decimal_string(m[10] * z + m[11]).c_str()),
              path, "setImagePositionPatient");
  return position;
}

std::unique_ptr<FGDerivationImage> derived_from(const DicomSeriesIdentity& source,
                                                const std::vector<std::size_t>& instances,
                                                const CodedConcept& derivation, const fs::path& path) {
  auto group = std::make_unique<FGDerivationImage>();
  DerivationImageItem* item = nullptr;
  check_dcmtk(group->addDerivationImageItem(code_sequence(derivation), "", item), path, "addDerivationImageItem");
  for (const std::size_t k : instances) {
    DcmDataset image;
    image.putAndInsertString(DCM_SOPClassUID, source.sop_class_uids.at(k).c_str());
    image.putAndInsertString(DCM_SOPInstanceUID, source.sop_instance_uids.at(k).c_str());
    SourceImageItem* source_item = nullptr;
    check_dcmtk(
        item->addSourceImageItem(
            &image, CodeSequenceMacro("121322", "DCM", "Source image for image processing operation"), source_item),
        path, "addSourceImageItem");
  }
  return group;
}

void put_source_references(DcmItem& dataset, const DicomSeriesIdentity& s, const fs::path& path) {
  auto series = std::make_unique<DcmItem>();
  check_dcmtk(series->putAndInsertString(DCM_SeriesInstanceUID, s.series_uid.c_str()), path, "SeriesInstanceUID");
  auto instances = std::make_unique<DcmSequenceOfItems>(DCM_ReferencedInstanceSequence);
  for (std::size_t k = 0; k < s.sop_instance_uids.size(); ++k) {
    auto item = std::make_unique<DcmItem>();
    check_dcmtk(item->putAndInsertString(DCM_ReferencedSOPClassUID, s.sop_class_uids[k].c_str()), path,
                "ReferencedSOPClassUID");
    check_dcmtk(item->putAndInsertString(DCM_ReferencedSOPInstanceUID, s.sop_instance_uids[k].c_str()), path,
                "ReferencedSOPInstanceUID");
    check_dcmtk(instances->append(item.release()), path, "ReferencedInstanceSequence");
  }
  check_dcmtk(series->insert(instances.release(), true), path, "ReferencedInstanceSequence");
  auto sequence = std::make_unique<DcmSequenceOfItems>(DCM_ReferencedSeriesSequence);
  check_dcmtk(sequence->append(series.release()), path, "ReferencedSeriesSequence");
  check_dcmtk(dataset.insert(sequence.release(), true), path, "ReferencedSeriesSequence");
}

void save_derived(DcmFileFormat& file, const DicomSeriesIdentity& source, const std::string& sop_instance_uid,
                  const std::string& series_uid, const fs::path& path) {
  DcmDataset& data = *file.getDataset();
  fill_source_item(data, source);
  data.putAndInsertString(DCM_SOPInstanceUID, sop_instance_uid.c_str());
  data.putAndInsertString(DCM_SeriesInstanceUID, series_uid.c_str());
  series_dated_as_content(data);
  check_dcmtk(file.saveFile(path.c_str(), EXS_LittleEndianExplicit), path, "saveFile");
}

void check_on_source(const fs::path& path, const Volume& volume, const DicomSeriesIdentity& source, const char* what) {
  const auto shape = volume.shape_zyx();
  const auto slices = static_cast<std::int64_t>(source.sop_instance_uids.size());
  if (volume.frames() != 1 || shape[0] != slices || source.sop_class_uids.size() != source.sop_instance_uids.size()) {
    throw InputError(path.string(), fmt::format("the {} has {} slices but its source series {} has {} SOP instances "
                                                "per temporal position; expected a {} on the source series' own slices",
                                                what, shape[0], source.series_uid, slices, what));
  }
  if (shape[1] > 65535 || shape[2] > 65535) throw InputError(path.string(), "slices larger than 65535 pixels");
  if (source.study.study_uid.empty() || source.series_uid.empty()) {
    throw InputError(path.string(), "the source series has no StudyInstanceUID or SeriesInstanceUID");
  }
}

}  // namespace vitruvian::data
