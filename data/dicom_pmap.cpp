// DICOM Parametric Map writing through DCMTK's dcmpmap: float frames, the shared and per-frame
// functional groups, the real-world value mapping, references to the source series.
#include "data/dicom_pmap.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

// clang-format off
#include <dcmtk/config/osconfig.h>  // DCMTK wants its configuration before any of its headers
// clang-format on
#include <dcmtk/dcmdata/dcdatset.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmfg/fgfracon.h>
#include <dcmtk/dcmfg/fgframeanatomy.h>
#include <dcmtk/dcmfg/fgparametricmapframetype.h>
#include <dcmtk/dcmfg/fgpixeltransform.h>
#include <dcmtk/dcmfg/fgrealworldvaluemapping.h>
#include <dcmtk/dcmiod/iodutil.h>
#include <dcmtk/dcmpmap/dpmparametricmapiod.h>
#include <dcmtk/oflog/oflog.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "core/errors.h"
#include "data/dicom_frames.h"

namespace vitruvian::data {
namespace {

namespace fs = std::filesystem;

/// The real-world value mapping: stored value = quantity in units, over the map's range.
std::unique_ptr<FGRealWorldValueMapping> value_mapping(const ParametricMapDescription& d, double low, double high,
                                                       const fs::path& path) {
  auto group = std::make_unique<FGRealWorldValueMapping>();
  auto item = std::make_unique<FGRealWorldValueMapping::RWVMItem>();
  check_dcmtk(item->setRealWorldValueSlope(1.0), path, "setRealWorldValueSlope");
  check_dcmtk(item->setRealWorldValueIntercept(0.0), path, "setRealWorldValueIntercept");
  check_dcmtk(item->setDoubleFloatRealWorldValueFirstValueMapped(low), path,
              "setDoubleFloatRealWorldValueFirstValueMapped");
  check_dcmtk(item->setDoubleFloatRealWorldValueLastValueMapped(high), path,
              "setDoubleFloatRealWorldValueLastValueMapped");
  check_dcmtk(item->setLUTLabel(d.lut_label.substr(0, 16).c_str()), path, "setLUTLabel");
  check_dcmtk(
      item->setLUTExplanation(fmt::format("{} ({})", d.quantity.meaning, d.units.meaning).substr(0, 64).c_str()), path,
      "setLUTExplanation");
  item->getMeasurementUnitsCode() = code_sequence(d.units);
  auto quantity = std::make_unique<ContentItemMacro>();
  check_dcmtk(quantity->setValueType(ContentItemMacro::VT_CODE), path, "setValueType");
  quantity->getEntireConceptNameCodeSequence().push_back(new CodeSequenceMacro("246205007", "SCT", "Quantity"));
  quantity->getEntireConceptCodeSequence().push_back(new CodeSequenceMacro(code_sequence(d.quantity)));
  item->getEntireQuantityDefinitionSequence().push_back(quantity.release());
  group->getRealWorldValueMapping().push_back(item.release());
  return group;
}

/// The groups every frame shares: orientation, pixel measures, anatomy, pixel transformation,
/// frame type and the value mapping.
void add_shared_groups(DPMParametricMapIOD& map, const Volume& volume, const ParametricMapDescription& d, double low,
                       double high, const fs::path& path) {
  check_dcmtk(map.addForAllFrames(*plane_orientation(volume.geometry)), path, "addForAllFrames(PlaneOrientation)");
  check_dcmtk(map.addForAllFrames(*pixel_measures(volume.geometry, path)), path, "addForAllFrames(PixelMeasures)");
  FGFrameAnatomy anatomy;
  check_dcmtk(anatomy.setLaterality(FGFrameAnatomy::LATERALITY_UNPAIRED), path, "setLaterality");
  anatomy.getAnatomy().getAnatomicRegion() = code_sequence(d.anatomy);
  check_dcmtk(map.addForAllFrames(anatomy), path, "addForAllFrames(FrameAnatomy)");
  FGPixelValueTransformation identity;  // rescale 1, 0, US: the stored float is the value
  identity.setUseAsIdentityPixelValueTransformation();
  check_dcmtk(map.addForAllFrames(identity), path, "addForAllFrames(IdentityPixelValueTransformation)");
  FGParametricMapFrameType type;
  check_dcmtk(type.setFrameType("DERIVED\\PRIMARY\\VOLUME\\NONE"), path, "setFrameType");
  check_dcmtk(map.addForAllFrames(type), path, "addForAllFrames(ParametricMapFrameType)");
  check_dcmtk(map.addForAllFrames(*value_mapping(d, low, high, path)), path, "addForAllFrames(RealWorldValueMapping)");
}

/// Refuses what cannot be written: not float32, off the source's slices (of a time series, its
/// first temporal position's), or a value not finite.
void check_map(const fs::path& path, const Volume& map, const ParametricMapDescription& d) {
  check_on_source(path, map, d.source.first_temporal_position(), "map");
  if (map.voxels.scalar_type() != at::kFloat) {
    throw InputError(path.string(),
                     fmt::format("the map holds {} values; expected float32", voxel_type_name(map.type)));
  }
  if (!at::isfinite(map.voxels).all().item<bool>()) {
    throw InputError(path.string(), "the map holds values that are not finite (NaN or infinite); expected numbers");
  }
  if (d.quantity.value.empty() || d.units.value.empty()) {
    throw InputError(path.string(), "no quantity or units named; expected both codes of the mapped values");
  }
}

/// One float frame per slice: placed, indexed by its slice, derived from that slice at every
/// temporal position of the source.
void add_frames(DPMParametricMapIOD& pm, const Volume& map, const ParametricMapDescription& d, const fs::path& path) {
  auto frames_of = pm.getFrames();
  auto* frames = OFget<DPMParametricMapIOD::Frames<Float32>>(&frames_of);
  if (frames == nullptr) throw InternalError(path.string(), "DCMTK's parametric map holds no float frames");
  const auto shape = map.shape_zyx();
  const at::Tensor values = map.voxels.contiguous();
  const std::int64_t pixels = shape[1] * shape[2];
  const std::size_t positions = std::max<std::size_t>(d.source.temporal_positions, 1);
  std::vector<Float32> frame(static_cast<std::size_t>(pixels));
  for (std::int64_t z = 0; z < shape[0]; ++z) {
    const auto position = plane_position(map.geometry, z, path);
    FGFrameContent content;
    check_dcmtk(content.setDimensionIndexValues(static_cast<Uint32>(z + 1), 0), path, "setDimensionIndexValues");
    std::vector<std::size_t> instances;
    for (std::size_t t = 0; t < positions; ++t)
      instances.push_back(t * static_cast<std::size_t>(shape[0]) + static_cast<std::size_t>(z));
    const auto derivation = derived_from(d.source, instances, d.derivation, path);
    const OFVector<FGBase*> groups{position.get(), &content, derivation.get()};
    const float* slice = values.data_ptr<float>() + z * pixels;
    std::copy(slice, slice + pixels, frame.begin());
    check_dcmtk(frames->addFrame(frame.data(), static_cast<std::size_t>(pixels), groups), path, "addFrame");
  }
}

}  // namespace

std::size_t write_dicom_parametric_map(const fs::path& path, const Volume& map, const ParametricMapDescription& d) {
  check_map(path, map, d);
  quiet_dcmiod_warnings();
  const auto shape = map.shape_zyx();
  const double low = map.voxels.min().item<double>(), high = map.voxels.max().item<double>();
  IODEnhGeneralEquipmentModule::EquipmentInfo equipment(
      "Vitruvian", d.model_name.empty() ? "Vitruvian" : d.model_name.substr(0, 64).c_str(), "0",
      d.software_version.empty() ? "unknown" : d.software_version.c_str());
  const std::string description =
      d.algorithm_version.empty() ? d.series_description : d.series_description + " (" + d.algorithm_version + ")";
  ContentIdentificationMacro identification("1", d.content_label.c_str(), description.substr(0, 64).c_str(),
                                            "Vitruvian^");
  auto created = DPMParametricMapIOD::create<IODFloatingPointImagePixelModule>(
      d.source.modality.empty() ? "OT" : d.source.modality.c_str(), d.series_number.c_str(), "1",
      static_cast<Uint16>(shape[1]), static_cast<Uint16>(shape[2]), equipment, identification, "VOLUME", "NONE",
      DPMTypes::CQ_RESEARCH);
  if (const OFCondition* failed = OFget<OFCondition>(&created))
    check_dcmtk(*failed, path, "DPMParametricMapIOD::create");
  DPMParametricMapIOD& pm = *OFget<DPMParametricMapIOD>(&created);
  DcmDataset source_item;
  fill_source_item(source_item, d.source);
  check_dcmtk(pm.importHierarchy(source_item, OFTrue, OFTrue, OFTrue, OFFalse), path, "importHierarchy");
  check_dcmtk(pm.getSeries().setSeriesInstanceUID(d.series_uid.c_str()), path, "setSeriesInstanceUID");
  check_dcmtk(pm.getSeries().setSeriesNumber(d.series_number.c_str()), path, "setSeriesNumber");
  check_dcmtk(pm.getSeries().setSeriesDescription(d.series_description.substr(0, 64).c_str()), path,
              "setSeriesDescription");
  check_dcmtk(pm.getSOPCommon().setSOPInstanceUID(d.sop_instance_uid.c_str()), path, "setSOPInstanceUID");
  check_dcmtk(DcmIODUtil::setContentDateAndTimeNow(pm.getIODMultiFrameFGModule()), path, "setContentDateAndTimeNow");

  const std::string organisation =
      dimension_organization_uid(d.dimension_organization_uid, d.sop_instance_uid, d.series_uid);
  check_dcmtk(pm.getIODMultiframeDimensionModule().addDimensionIndex(DCM_ImagePositionPatient, organisation.c_str(),
                                                                     DCM_PlanePositionSequence, "ImagePositionPatient"),
              path, "addDimensionIndex");
  add_shared_groups(pm, map, d, low, high, path);

  add_frames(pm, map, d, path);

  DcmFileFormat file;
  {
    // dcmpmap writes the multi-frame module before it counts the frames, and dcmiod logs an error
    // for the count it has not yet set (the file then holds it: the test reads it back). Its real
    // failures come back as conditions.
    OFLogger log = OFLog::getLogger("dcmtk.dcmiod");
    const OFLogger::LogLevel level = log.getChainedLogLevel();
    log.setLogLevel(OFLogger::FATAL_LOG_LEVEL);
    const OFCondition written = pm.writeDataset(*file.getDataset());
    log.setLogLevel(level);
    check_dcmtk(written, path, "writeDataset");
  }
  put_source_references(*file.getDataset(), d.source, path);
  save_derived(file, d.source, d.sop_instance_uid, d.series_uid, path);
  return static_cast<std::size_t>(shape[0]);
}

}  // namespace vitruvian::data
