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
#include <dcmtk/dcmfg/fgfracon.h>
#include <dcmtk/dcmiod/cielabutil.h>
#include <dcmtk/dcmseg/segdoc.h>
#include <dcmtk/dcmseg/segment.h>

#include <cmath>
#include <memory>

#include "core/errors.h"
#include "data/dicom_frames.h"

namespace vitruvian::data {
namespace {

namespace fs = std::filesystem;

const CodedConcept kSegmentation{"113076", "DCM", "Segmentation"};

/// The frames of one segment: its mask on each slice it touches, placed and derived.
void add_frames(DcmSegmentation& seg, Uint16 number, const at::Tensor& mask, const std::vector<std::int64_t>& slices,
                const Volume& labels, const SegDescription& d, const fs::path& path) {
  const std::int64_t pixels = mask.size(1) * mask.size(2);
  for (const std::int64_t z : slices) {
    const auto position = plane_position(labels.geometry, z, path);
    FGFrameContent content;
    check_dcmtk(content.setDimensionIndexValues(number, 0), path, "setDimensionIndexValues");
    check_dcmtk(content.setDimensionIndexValues(static_cast<Uint32>(z + 1), 1), path, "setDimensionIndexValues");
    const auto derivation = derived_from(d.source, {static_cast<std::size_t>(z)}, kSegmentation, path);
    const OFVector<FGBase*> groups{position.get(), &content, derivation.get()};
    std::vector<Uint8> frame(static_cast<std::size_t>(pixels));
    const auto* voxels = mask.data_ptr<bool>() + z * pixels;
    for (std::int64_t i = 0; i < pixels; ++i) frame[static_cast<std::size_t>(i)] = voxels[i] ? 1 : 0;
    check_dcmtk(seg.addFrame(frame.data(), number, groups), path, "addFrame");
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
  check_on_source(path, labels, d.source, "label map");
  if (segments.empty()) throw InputError(path.string(), "no segment to write; expected at least one structure");
  quiet_dcmiod_warnings();
  const auto shape = labels.shape_zyx();
  IODGeneralEquipmentModule::EquipmentInfo equipment(
      "Vitruvian", d.model_name.empty() ? "Vitruvian" : d.model_name.substr(0, 64).c_str(), "0",
      d.software_version.empty() ? "unknown" : d.software_version.c_str());
  ContentIdentificationMacro identification("1", d.content_label.c_str(), d.series_description.c_str(), "Vitruvian^");
  DcmSegmentation* created = nullptr;
  check_dcmtk(DcmSegmentation::createBinarySegmentation(created, static_cast<Uint16>(shape[1]),
                                                        static_cast<Uint16>(shape[2]), equipment, identification),
              path, "createBinarySegmentation");
  std::unique_ptr<DcmSegmentation> seg(created);
  DcmDataset source_item;
  fill_source_item(source_item, d.source);
  check_dcmtk(seg->importFromSourceImage(source_item), path, "importFromSourceImage");
  check_dcmtk(seg->getSeries().setSeriesInstanceUID(d.series_uid.c_str()), path, "setSeriesInstanceUID");
  check_dcmtk(seg->getSeries().setSeriesNumber(d.series_number.c_str()), path, "setSeriesNumber");
  check_dcmtk(seg->getSeries().setSeriesDescription(d.series_description.substr(0, 64).c_str()), path,
              "setSeriesDescription");
  check_dcmtk(seg->getSOPCommon().setSOPInstanceUID(d.sop_instance_uid.c_str()), path, "setSOPInstanceUID");

  IODMultiframeDimensionModule& dimensions = seg->getDimensions();
  const std::string organisation =
      dimension_organization_uid(d.dimension_organization_uid, d.sop_instance_uid, d.series_uid);
  check_dcmtk(dimensions.addDimensionIndex(DCM_ReferencedSegmentNumber, organisation.c_str(),
                                           DCM_SegmentIdentificationSequence, "ReferencedSegmentNumber"),
              path, "addDimensionIndex");
  check_dcmtk(dimensions.addDimensionIndex(DCM_ImagePositionPatient, organisation.c_str(), DCM_PlanePositionSequence,
                                           "ImagePositionPatient"),
              path, "addDimensionIndex");
  check_dcmtk(seg->addForAllFrames(*plane_orientation(labels.geometry)), path, "addForAllFrames(PlaneOrientation)");
  check_dcmtk(seg->addForAllFrames(*pixel_measures(labels.geometry, path)), path, "addForAllFrames(PixelMeasures)");

  const at::Tensor v = labels.voxels.to(at::kLong).contiguous();
  const auto frames = seg_frames(labels, segments);
  std::size_t written = 0;
  for (std::size_t i = 0; i < segments.size(); ++i) {
    const SegSegment& s = segments[i];
    DcmSegment* segment = nullptr;
    check_dcmtk(DcmSegment::create(segment, s.label.substr(0, 64).c_str(), code_sequence(s.code.category),
                                   code_sequence(s.code.type), DcmSegTypes::SAT_AUTOMATIC, d.algorithm_name.c_str()),
                path, "DcmSegment::create");
    if (s.code.modifier)
      segment->getSegmentedPropertyTypeModifierCode().push_back(new CodeSequenceMacro(code_sequence(*s.code.modifier)));
    Uint16 number = 0;
    const OFCondition added = seg->addSegment(segment, number);
    if (added.bad()) delete segment;
    check_dcmtk(added, path, "addSegment");
    if (s.colour) {
      double l = 0, a = 0, b = 0;
      IODCIELabUtil::rgb2DicomLab(l, a, b, (*s.colour)[0] / 255.0, (*s.colour)[1] / 255.0, (*s.colour)[2] / 255.0);
      check_dcmtk(segment->setRecommendedDisplayCIELabValue(static_cast<Uint16>(std::lround(l)),
                                                            static_cast<Uint16>(std::lround(a)),
                                                            static_cast<Uint16>(std::lround(b))),
                  path, "setRecommendedDisplayCIELabValue");
    }
    if (!d.algorithm_version.empty())
      check_dcmtk(segment->setSegmentDescription(d.algorithm_version.substr(0, 64).c_str()), path,
                  "setSegmentDescription");
    add_frames(*seg, number, (v == s.value).contiguous(), frames[i], labels, d, path);
    written += frames[i].size();
  }
  if (written == 0) throw InputError(path.string(), "no segment has a voxel; expected at least one structure");

  DcmFileFormat file;
  check_dcmtk(seg->writeDataset(*file.getDataset()), path, "writeDataset");
  put_source_references(*file.getDataset(), d.source, path);
  save_derived(file, d.source, d.sop_instance_uid, d.series_uid, path);
  return written;
}

}  // namespace vitruvian::data
