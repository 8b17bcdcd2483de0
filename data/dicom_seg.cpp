// DICOM SEG writing through DCMTK's dcmseg: segments, shared and per-frame functional groups,
// references to the source series.
#include "data/dicom_seg.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

// clang-format off
#include <dcmtk/config/osconfig.h>  // DCMTK wants its configuration before any of its headers
// clang-format on
#include <dcmtk/dcmdata/dcdatset.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmfg/fgderimg.h>
#include <dcmtk/dcmfg/fgfracon.h>
#include <dcmtk/dcmfg/fgpixmsr.h>
#include <dcmtk/dcmfg/fgplanor.h>
#include <dcmtk/dcmfg/fgplanpo.h>
#include <dcmtk/dcmiod/iodreferences.h>
#include <dcmtk/dcmseg/segdoc.h>
#include <dcmtk/dcmseg/segment.h>
#include <dcmtk/oflog/oflog.h>

#include <cmath>
#include <memory>

#include "core/errors.h"
#include "data/dicom_common.h"

namespace vitruvian::data {
namespace {

namespace fs = std::filesystem;

/// Throws InternalError naming `path` and the DCMTK call when `status` is bad.
void check(const OFCondition& status, const fs::path& path, const char* call) {
  if (status.bad()) throw InternalError(path.string(), fmt::format("DCMTK {} failed: {}", call, status.text()));
}

CodeSequenceMacro code_of(const CodedConcept& c) {
  return CodeSequenceMacro(c.value.c_str(), c.scheme.c_str(), c.meaning.c_str());
}

/// The patient, study and frame-of-reference attributes dcmseg imports from a source image.
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

/// Refuses a label map that does not lie on the source's slices.
void check_inputs(const fs::path& path, const Volume& labels, const std::vector<SegSegment>& segments,
                  const SegDescription& d) {
  const auto shape = labels.shape_zyx();
  const auto slices = static_cast<std::int64_t>(d.source.sop_instance_uids.size());
  if (labels.frames() != 1 || shape[0] != slices ||
      d.source.sop_class_uids.size() != d.source.sop_instance_uids.size()) {
    throw InputError(path.string(),
                     fmt::format("the label map has {} slices but its source series {} has {} SOP instances; "
                                 "expected a label map on the source series' own slices",
                                 shape[0], d.source.series_uid, slices));
  }
  if (shape[1] > 65535 || shape[2] > 65535) throw InputError(path.string(), "slices larger than 65535 pixels");
  if (d.source.study.study_uid.empty() || d.source.series_uid.empty()) {
    throw InputError(path.string(), "the source series has no StudyInstanceUID or SeriesInstanceUID");
  }
  if (segments.empty()) throw InputError(path.string(), "no segment to write; expected at least one structure");
}

/// Shared functional groups: plane orientation and pixel measures.
void add_shared_groups(DcmSegmentation& seg, const Geometry& g, const fs::path& path) {
  const auto& m = g.direction;  // column c: the LPS direction of index axis c
  std::unique_ptr<FGPlaneOrientationPatient> orientation(FGPlaneOrientationPatient::createMinimal(
      decimal_string(m[0]).c_str(), decimal_string(m[3]).c_str(), decimal_string(m[6]).c_str(),
      decimal_string(m[1]).c_str(), decimal_string(m[4]).c_str(), decimal_string(m[7]).c_str()));
  check(seg.addForAllFrames(*orientation), path, "addForAllFrames(PlaneOrientation)");
  FGPixelMeasures measures;
  check(measures.setPixelSpacing(
            fmt::format("{}\\{}", decimal_string(g.spacing[1]), decimal_string(g.spacing[0])).c_str()),
        path, "setPixelSpacing");
  check(measures.setSliceThickness(decimal_string(g.spacing[2]).c_str()), path, "setSliceThickness");
  check(measures.setSpacingBetweenSlices(decimal_string(g.spacing[2]).c_str()), path, "setSpacingBetweenSlices");
  check(seg.addForAllFrames(measures), path, "addForAllFrames(PixelMeasures)");
}

/// The frames of one segment: its mask on each slice it touches, placed and derived.
void add_frames(DcmSegmentation& seg, Uint16 number, const at::Tensor& mask, const std::vector<std::int64_t>& slices,
                const Volume& labels, const SegDescription& d, const fs::path& path) {
  const auto m = labels.geometry.index_to_lps();
  const std::int64_t pixels = mask.size(1) * mask.size(2);
  for (const std::int64_t z : slices) {
    FGPlanePosPatient position;
    check(position.setImagePositionPatient(decimal_string(m[2] * z + m[3]).c_str(),
                                           decimal_string(m[6] * z + m[7]).c_str(),
                                           decimal_string(m[10] * z + m[11]).c_str()),
          path, "setImagePositionPatient");
    FGFrameContent content;
    check(content.setDimensionIndexValues(number, 0), path, "setDimensionIndexValues");
    check(content.setDimensionIndexValues(static_cast<Uint32>(z + 1), 1), path, "setDimensionIndexValues");
    FGDerivationImage derivation;
    DerivationImageItem* item = nullptr;
    check(derivation.addDerivationImageItem(CodeSequenceMacro("113076", "DCM", "Segmentation"), "", item), path,
          "addDerivationImageItem");
    DcmDataset source;
    source.putAndInsertString(DCM_SOPClassUID, d.source.sop_class_uids[static_cast<std::size_t>(z)].c_str());
    source.putAndInsertString(DCM_SOPInstanceUID, d.source.sop_instance_uids[static_cast<std::size_t>(z)].c_str());
    SourceImageItem* source_item = nullptr;
    check(item->addSourceImageItem(
              &source, CodeSequenceMacro("121322", "DCM", "Source image for image processing operation"), source_item),
          path, "addSourceImageItem");
    const OFVector<FGBase*> groups{&position, &content, &derivation};
    std::vector<Uint8> frame(static_cast<std::size_t>(pixels));
    const auto* voxels = mask.data_ptr<bool>() + z * pixels;
    for (std::int64_t i = 0; i < pixels; ++i) frame[static_cast<std::size_t>(i)] = voxels[i] ? 1 : 0;
    check(seg.addFrame(frame.data(), number, groups), path, "addFrame");
  }
}

}  // namespace

std::vector<std::vector<std::int64_t>> seg_frames(const Volume& labels, const std::vector<SegSegment>& segments) {
  const at::Tensor v = labels.voxels.to(at::kLong).contiguous();
  std::vector<std::vector<std::int64_t>> frames;
  for (const SegSegment& s : segments) {
    const at::Tensor touched = (v == s.value).flatten(1).any(1);
    std::vector<std::int64_t> slices;
    const auto* t = touched.data_ptr<bool>();
    for (std::int64_t z = 0; z < touched.numel(); ++z) {
      if (t[z]) slices.push_back(z);
    }
    frames.push_back(std::move(slices));
  }
  return frames;
}

std::size_t write_dicom_seg(const fs::path& path, const Volume& labels, const std::vector<SegSegment>& segments,
                            const SegDescription& d) {
  check_inputs(path, labels, segments, d);
  // dcmiod warns while it builds the object (before any frame is added) that it cannot yet check
  // the dimensions; its errors still come back as conditions.
  static const bool quiet = [] {
    OFLog::getLogger("dcmtk.dcmiod").setLogLevel(OFLogger::ERROR_LOG_LEVEL);
    return true;
  }();
  (void)quiet;
  const auto shape = labels.shape_zyx();
  IODGeneralEquipmentModule::EquipmentInfo equipment(
      "Vitruvian", d.model_name.empty() ? "Vitruvian" : d.model_name.substr(0, 64).c_str(), "0",
      d.software_version.empty() ? "unknown" : d.software_version.c_str());
  ContentIdentificationMacro identification("1", d.content_label.c_str(), d.series_description.c_str(), "Vitruvian^");
  DcmSegmentation* created = nullptr;
  check(DcmSegmentation::createBinarySegmentation(created, static_cast<Uint16>(shape[1]), static_cast<Uint16>(shape[2]),
                                                  equipment, identification),
        path, "createBinarySegmentation");
  std::unique_ptr<DcmSegmentation> seg(created);
  DcmDataset source_item;
  fill_source_item(source_item, d.source);
  check(seg->importFromSourceImage(source_item), path, "importFromSourceImage");
  check(seg->getSeries().setSeriesInstanceUID(d.series_uid.c_str()), path, "setSeriesInstanceUID");
  check(seg->getSeries().setSeriesNumber(d.series_number.c_str()), path, "setSeriesNumber");
  check(seg->getSeries().setSeriesDescription(d.series_description.substr(0, 64).c_str()), path,
        "setSeriesDescription");
  check(seg->getSOPCommon().setSOPInstanceUID(d.sop_instance_uid.c_str()), path, "setSOPInstanceUID");

  IODMultiframeDimensionModule& dimensions = seg->getDimensions();
  // The dimension organisation: given, else a sub-arc of the SEG's own UID (at most 64 characters).
  std::string organisation = d.dimension_organization_uid;
  if (organisation.empty())
    organisation = (d.sop_instance_uid + ".1").size() <= 64 ? d.sop_instance_uid + ".1" : d.series_uid;
  check(dimensions.addDimensionIndex(DCM_ReferencedSegmentNumber, organisation.c_str(),
                                     DCM_SegmentIdentificationSequence, "ReferencedSegmentNumber"),
        path, "addDimensionIndex");
  check(dimensions.addDimensionIndex(DCM_ImagePositionPatient, organisation.c_str(), DCM_PlanePositionSequence,
                                     "ImagePositionPatient"),
        path, "addDimensionIndex");
  add_shared_groups(*seg, labels.geometry, path);

  const at::Tensor v = labels.voxels.to(at::kLong).contiguous();
  const auto frames = seg_frames(labels, segments);
  std::size_t written = 0;
  for (std::size_t i = 0; i < segments.size(); ++i) {
    const SegSegment& s = segments[i];
    DcmSegment* segment = nullptr;
    check(DcmSegment::create(segment, s.label.substr(0, 64).c_str(), code_of(s.code.category), code_of(s.code.type),
                             DcmSegTypes::SAT_AUTOMATIC, d.algorithm_name.c_str()),
          path, "DcmSegment::create");
    if (s.code.modifier)
      segment->getSegmentedPropertyTypeModifierCode().push_back(new CodeSequenceMacro(code_of(*s.code.modifier)));
    Uint16 number = 0;
    const OFCondition added = seg->addSegment(segment, number);
    if (added.bad()) delete segment;
    check(added, path, "addSegment");
    if (!d.algorithm_version.empty())
      check(segment->setSegmentDescription(d.algorithm_version.substr(0, 64).c_str()), path, "setSegmentDescription");
    add_frames(*seg, number, (v == s.value).contiguous(), frames[i], labels, d, path);
    written += frames[i].size();
  }
  if (written == 0) throw InputError(path.string(), "no segment has a voxel; expected at least one structure");

  IODReferences references;
  for (std::size_t z = 0; z < d.source.sop_instance_uids.size(); ++z) {
    references.add(new IODImageReference(d.source.study.patient_id.c_str(), d.source.study.study_uid.c_str(),
                                         d.source.series_uid.c_str(), d.source.sop_instance_uids[z].c_str(),
                                         d.source.sop_class_uids[z].c_str()));
  }
  seg->getCommonInstanceReference().addReferences(references, d.source.study.study_uid.c_str());

  DcmFileFormat file;
  check(seg->writeDataset(*file.getDataset()), path, "writeDataset");
  DcmDataset& data = *file.getDataset();
  fill_source_item(data, d.source);  // the source's own values, also where dcmseg left one empty
  data.putAndInsertString(DCM_SOPInstanceUID, d.sop_instance_uid.c_str());
  data.putAndInsertString(DCM_SeriesInstanceUID, d.series_uid.c_str());
  series_dated_as_content(data);
  check(file.saveFile(path.c_str(), EXS_LittleEndianExplicit), path, "saveFile");
  return written;
}

}  // namespace vitruvian::data
