// The structure code table, the SEG frame selection against a plain loop on a random label map,
// and the SEG, parametric map and SR writers on a small synthetic study (read back with DCMTK).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

// clang-format off
#include <dcmtk/config/osconfig.h>
// clang-format on
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmiod/cielabutil.h>
#include <dcmtk/dcmpmap/dpmparametricmapiod.h>
#include <dcmtk/dcmsr/dsrdoc.h>

#include <cctype>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <vector>

#include "core/errors.h"
#include "data/anatomy_codes.h"
#include "data/dicom_common.h"
#include "data/dicom_pmap.h"
#include "data/dicom_seg.h"
#include "data/dicom_sr.h"
#include "data/phantom_kinds.h"
#include "tests/data/scratch_test.h"

namespace vitruvian::data {
namespace {

using DicomResults = ScratchTest<23>;

bool is_sct_code(const std::string& v) {
  return !v.empty() && v.size() <= 18 && v[0] != '0' &&
         std::all_of(v.begin(), v.end(), [](char c) { return std::isdigit(c) != 0; });
}

TEST(AnatomyCodes, EveryPhantomLabelHasASnomedCode) {
  for (const auto& [id, name] : phantom::all_labels()) {
    bool known = false;
    const AnatomyCode code = anatomy_code(name, &known);
    EXPECT_TRUE(known) << name;
    EXPECT_EQ(code.type.scheme, "SCT") << name;
    EXPECT_TRUE(is_sct_code(code.type.value)) << name << " " << code.type.value;
    EXPECT_TRUE(code.category.value == "91723000" || code.category.value == "49755003") << name;
  }
  // Classes the example configurations group.
  for (const char* name : {"heart", "lung", "kidney"}) EXPECT_EQ(anatomy_code(name).type.scheme, "SCT") << name;
  EXPECT_EQ(anatomy_code("liver").type.value, "10200004");
  EXPECT_EQ(anatomy_code("lung_nodule").category.meaning, "Morphologically Altered Structure");
  bool known = true;
  const AnatomyCode other = anatomy_code("label_7", &known);
  EXPECT_FALSE(known);
  EXPECT_EQ(other.type.value, "91723000");
}

/// A label map [z, y, x] of values 0..3 on an oblique grid, with slice 2 free of value 3.
Volume random_labels() {
  Volume v;
  v.voxels = at::randint(0, 4, {5, 6, 7}, at::kByte);
  v.voxels[2].masked_fill_(v.voxels[2] == 3, 1);
  v.type = VoxelType::kUInt8;
  v.geometry.spacing = {0.8, 0.9, 2.5};
  v.geometry.origin = {-10, 20, 30};
  v.geometry.direction = {0, 0, 1, 1, 0, 0, 0, 1, 0};  // index x along P, y along S, z along L
  return v;
}

TEST_F(DicomResults, FramesAreTheSlicesASegmentTouches) {
  const Volume labels = random_labels();
  const std::vector<SegSegment> segments{{3, "c", anatomy_code("heart"), std::nullopt},
                                         {1, "a", anatomy_code("liver"), std::nullopt}};
  const auto frames = seg_frames(labels, segments);
  ASSERT_EQ(frames.size(), 2u);
  const auto* v = labels.voxels.data_ptr<std::uint8_t>();
  for (std::size_t s = 0; s < segments.size(); ++s) {
    std::vector<std::int64_t> expected;
    for (std::int64_t z = 0; z < 5; ++z) {
      bool touched = false;
      for (std::int64_t i = 0; i < 6 * 7; ++i) touched = touched || v[z * 42 + i] == segments[s].value;
      if (touched) expected.push_back(z);
    }
    EXPECT_EQ(frames[s], expected) << s;
  }
  EXPECT_EQ(std::count(frames[0].begin(), frames[0].end(), 2), 0);
}

/// The CodeValue of the first item of `sequence` in `item`; "" when there is none.
std::string code_value(DcmItem& item, const DcmTagKey& sequence) {
  DcmItem* code = nullptr;
  OFString value;
  if (item.findAndGetSequenceItem(sequence, code).good()) code->findAndGetOFString(DCM_CodeValue, value);
  return value.c_str();
}

/// The text dciodvfy (dicom3tools) prints for `path`.
std::string validator_report(const std::filesystem::path& path) {
  const auto report = path.string() + ".vfy";
  std::system(("/usr/bin/dciodvfy " + path.string() + " > " + report + " 2>&1").c_str());
  std::ifstream in(report);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

DicomSeriesIdentity identity(std::size_t slices) {
  DicomSeriesIdentity id;
  id.series_uid = "1.2.826.0.1.3680043.8.498.2";
  id.frame_of_reference_uid = "1.2.826.0.1.3680043.8.498.3";
  id.modality = "CT";
  id.study = {"1.2.826.0.1.3680043.8.498.1", "Doe^Jane", "P1", "19800101", "F", "20260101", "120000", "7", "A1",
              "", "chest", ""};
  for (std::size_t k = 0; k < slices; ++k) {
    id.sop_instance_uids.push_back("1.2.826.0.1.3680043.8.498.4." + std::to_string(k + 1));
    id.sop_class_uids.push_back(UID_CTImageStorage);
  }
  return id;
}

TEST(DicomSeriesIdentity, FirstTemporalPositionKeepsTheFirstFramesSlices) {
  DicomSeriesIdentity id = identity(6);  // 3 slices at 2 temporal positions
  id.temporal_positions = 2;
  const DicomSeriesIdentity first = id.first_temporal_position();
  EXPECT_EQ(first.sop_instance_uids,
            std::vector<std::string>(id.sop_instance_uids.begin(), id.sop_instance_uids.begin() + 3));
  EXPECT_EQ(first.sop_class_uids.size(), 3u);
  EXPECT_EQ(first.temporal_positions, 1u);
  EXPECT_EQ(first.series_uid, id.series_uid);
  // A 3D series is its own first temporal position.
  EXPECT_EQ(identity(4).first_temporal_position().sop_instance_uids, identity(4).sop_instance_uids);
}

TEST_F(DicomResults, SegHoldsOneFramePerTouchedSliceAndTheSource) {
  const Volume labels = random_labels();
  const std::vector<SegSegment> segments{{1, "liver", anatomy_code("liver"), std::array<std::uint8_t, 3>{230, 40, 200}},
                                         {3, "femur_left", anatomy_code("femur_left"), std::nullopt}};
  SegDescription d;
  d.source = identity(5);
  d.sop_instance_uid = "2.25.1234";
  d.series_uid = "2.25.5678";
  d.algorithm_version = "model step 1";
  const auto path = dir_ / "x.seg.dcm";
  const std::size_t frames = write_dicom_seg(path, labels, segments, d);
  const auto expected = seg_frames(labels, segments);
  EXPECT_EQ(frames, expected[0].size() + expected[1].size());
  DcmFileFormat file;
  ASSERT_TRUE(file.loadFile(OFFilename(path.c_str())).good());
  DcmDataset& data = *file.getDataset();
  OFString text;
  data.findAndGetOFString(DCM_NumberOfFrames, text);
  EXPECT_EQ(std::stoul(text.c_str()), frames);
  data.findAndGetOFString(DCM_SOPInstanceUID, text);
  EXPECT_EQ(text, "2.25.1234");
  data.findAndGetOFString(DCM_FrameOfReferenceUID, text);
  EXPECT_EQ(text, d.source.frame_of_reference_uid.c_str());
  data.findAndGetOFString(DCM_PatientName, text);
  EXPECT_EQ(text, "Doe^Jane");
  data.findAndGetOFString(DCM_SegmentLabel, text, 0, OFTrue);
  EXPECT_EQ(text, "liver");
  // A segment with a colour recommends it to viewers (as CIELab, back to the same sRGB); one
  // without recommends none.
  DcmItem* first = nullptr;
  ASSERT_TRUE(data.findAndGetSequenceItem(DCM_SegmentSequence, first, 0).good());
  Uint16 lab[3] = {0, 0, 0};
  for (unsigned long k = 0; k < 3; ++k)
    ASSERT_TRUE(first->findAndGetUint16(DCM_RecommendedDisplayCIELabValue, lab[k], k).good()) << k;
  double rgb[3] = {0, 0, 0};
  IODCIELabUtil::dicomLab2RGB(rgb[0], rgb[1], rgb[2], lab[0], lab[1], lab[2]);
  EXPECT_NEAR(rgb[0] * 255, 230, 1.0);
  EXPECT_NEAR(rgb[1] * 255, 40, 1.0);
  EXPECT_NEAR(rgb[2] * 255, 200, 1.0);
  // The laterality of a sided structure is a modifier of its type.
  DcmItem* second = nullptr;
  ASSERT_TRUE(data.findAndGetSequenceItem(DCM_SegmentSequence, second, 1).good());
  EXPECT_FALSE(second->tagExists(DCM_RecommendedDisplayCIELabValue));
  DcmItem* type = nullptr;
  ASSERT_TRUE(second->findAndGetSequenceItem(DCM_SegmentedPropertyTypeCodeSequence, type).good());
  EXPECT_EQ(code_value(*type, DCM_SegmentedPropertyTypeModifierCodeSequence), "7771000");
  // dicom3tools' validator finds nothing wrong.
  const std::string found = validator_report(path);
  EXPECT_NE(found.find("Segmentation"), std::string::npos) << found;
  EXPECT_EQ(found.find("Error"), std::string::npos) << found;

  // A label map that is not on the source's slices is refused, naming the file.
  d.source = identity(4);
  EXPECT_THROW(write_dicom_seg(dir_ / "y.seg.dcm", labels, segments, d), InputError);
}

TEST_F(DicomResults, ParametricMapHoldsEverySliceAsFloatsWithItsQuantity) {
  Volume map = random_labels();
  map.voxels = at::rand({5, 6, 7}, at::kFloat) * 80 - 0.5;
  map.type = VoxelType::kFloat32;
  ParametricMapDescription d;
  d.source = identity(10);  // a time series: the map's 5 slices at 2 temporal positions
  d.source.temporal_positions = 2;
  d.sop_instance_uid = "2.25.4321";
  d.series_uid = "2.25.8765";
  d.series_description = "Vitruvian stroke CBF";
  d.content_label = "CBF";
  d.quantity = {"126390", "DCM", "Absolute Regional Blood Flow"};
  d.units = {"ml/(100.g)/min", "UCUM", "milliliter per 100 gram per minute"};
  d.lut_label = "CBF";
  d.model_name = "perfusion";
  d.software_version = "0.1.0";
  const auto path = dir_ / "cbf.pm.dcm";
  EXPECT_EQ(write_dicom_parametric_map(path, map, d), 5u);

  // DCMTK reads it back: the same floats frame by frame, each frame where its slice is.
  auto loaded = DPMParametricMapIOD::loadFile(path.c_str());
  ASSERT_EQ(OFget<OFCondition>(&loaded), nullptr);
  std::unique_ptr<DPMParametricMapIOD> pm(*OFget<DPMParametricMapIOD*>(&loaded));
  auto frames_of = pm->getFrames();
  auto* frames = OFget<DPMParametricMapIOD::Frames<Float32>>(&frames_of);
  ASSERT_NE(frames, nullptr);
  ASSERT_EQ(pm->getFunctionalGroups().getNumberOfFrames(), 5u);
  const auto m = map.geometry.index_to_lps();
  for (std::size_t z = 0; z < 5; ++z) {
    const at::Tensor got = at::from_blob(frames->getFrame(z), {6, 7}, at::kFloat);
    EXPECT_TRUE(at::equal(got, map.voxels[static_cast<std::int64_t>(z)])) << z;
    bool per_frame = false;
    auto* position = dynamic_cast<FGPlanePosPatient*>(
        pm->getFunctionalGroups().get(static_cast<Uint32>(z), DcmFGTypes::EFG_PLANEPOSPATIENT, per_frame));
    ASSERT_NE(position, nullptr);
    Float64 x = 0, y = 0, w = 0;
    position->getImagePositionPatient(x, y, w);
    EXPECT_NEAR(x, m[2] * static_cast<double>(z) + m[3], 1e-9);
    EXPECT_NEAR(w, m[10] * static_cast<double>(z) + m[11], 1e-9);
  }
  // The mapping names the quantity and its units over the map's range.
  DcmFileFormat file;
  ASSERT_TRUE(file.loadFile(OFFilename(path.c_str())).good());
  DcmDataset& data = *file.getDataset();
  DcmItem* shared = nullptr;
  ASSERT_TRUE(data.findAndGetSequenceItem(DCM_SharedFunctionalGroupsSequence, shared).good());
  DcmItem* mapping = nullptr;
  ASSERT_TRUE(shared->findAndGetSequenceItem(DCM_RealWorldValueMappingSequence, mapping).good());
  OFString text;
  EXPECT_EQ(code_value(*mapping, DCM_MeasurementUnitsCodeSequence), "ml/(100.g)/min");
  Float64 low = 0, high = 0;
  mapping->findAndGetFloat64(DCM_DoubleFloatRealWorldValueFirstValueMapped, low);
  mapping->findAndGetFloat64(DCM_DoubleFloatRealWorldValueLastValueMapped, high);
  EXPECT_FLOAT_EQ(low, map.voxels.min().item<float>());
  EXPECT_FLOAT_EQ(high, map.voxels.max().item<float>());
  DcmItem* quantity = nullptr;
  ASSERT_TRUE(mapping->findAndGetSequenceItem(DCM_QuantityDefinitionSequence, quantity).good());
  EXPECT_EQ(code_value(*quantity, DCM_ConceptCodeSequence), "126390");
  data.findAndGetOFString(DCM_PatientName, text);
  EXPECT_EQ(text, "Doe^Jane");
  data.findAndGetOFString(DCM_FrameOfReferenceUID, text);
  EXPECT_EQ(text, d.source.frame_of_reference_uid.c_str());
  data.findAndGetOFStringArray(DCM_ImageType, text);
  EXPECT_EQ(text, "DERIVED\\PRIMARY\\VOLUME\\NONE");
  // Each frame derives from its slice at both temporal positions (instances z and 5 + z); every
  // instance of the series is referenced.
  DcmItem* third = nullptr;
  ASSERT_TRUE(data.findAndGetSequenceItem(DCM_PerFrameFunctionalGroupsSequence, third, 2).good());
  DcmItem* derivation = nullptr;
  ASSERT_TRUE(third->findAndGetSequenceItem(DCM_DerivationImageSequence, derivation).good());
  std::vector<std::string> sources;
  for (unsigned long k = 0;; ++k) {
    DcmItem* image = nullptr;
    if (derivation->findAndGetSequenceItem(DCM_SourceImageSequence, image, static_cast<int>(k)).bad()) break;
    image->findAndGetOFString(DCM_ReferencedSOPInstanceUID, text);
    sources.emplace_back(text.c_str());
  }
  EXPECT_EQ(sources, (std::vector<std::string>{d.source.sop_instance_uids[2], d.source.sop_instance_uids[7]}));
  DcmItem* series = nullptr;
  ASSERT_TRUE(data.findAndGetSequenceItem(DCM_ReferencedSeriesSequence, series).good());
  DcmSequenceOfItems* instances = nullptr;
  ASSERT_TRUE(series->findAndGetSequence(DCM_ReferencedInstanceSequence, instances).good());
  EXPECT_EQ(instances->card(), 10u);
  // dicom3tools' validator finds nothing wrong.
  const std::string found = validator_report(path);
  EXPECT_NE(found.find("ParametricMap"), std::string::npos) << found;
  EXPECT_EQ(found.find("Error"), std::string::npos) << found;

  // Refused, naming the file: off the source's slices, not float, a value that is not finite.
  d.source = identity(4);
  EXPECT_THROW(write_dicom_parametric_map(dir_ / "a.pm.dcm", map, d), InputError);
  d.source = identity(5);
  d.source.temporal_positions = 1;
  Volume ints = map;
  ints.voxels = map.voxels.to(at::kShort);
  ints.type = VoxelType::kInt16;
  EXPECT_THROW(write_dicom_parametric_map(dir_ / "b.pm.dcm", ints, d), InputError);
  map.voxels[1][2][3] = std::numeric_limits<float>::quiet_NaN();
  try {
    write_dicom_parametric_map(dir_ / "c.pm.dcm", map, d);
    ADD_FAILURE() << "a NaN was written";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("c.pm.dcm"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("not finite"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(dir_ / "c.pm.dcm"));
}

TEST_F(DicomResults, SrIsAValidMeasurementReport) {
  SrDescription d;
  d.source = identity(5);
  d.sop_instance_uid = "2.25.99";
  d.series_uid = "2.25.98";
  d.device_uid = "2.25.97";
  d.software_version = "0.1.0";
  d.segmentations = {{"2.25.5678", "2.25.1234"}};
  SrGroup g;
  g.tracking_id = "organs liver";
  g.tracking_uid = "2.25.96";
  g.finding = anatomy_code("liver").type;
  g.segmentation_uid = "2.25.1234";
  g.segment = 1;
  g.source_series_uid = d.source.series_uid;
  g.measurements.push_back(
      {{"118565006", "SCT", "Volume"}, 1.234567, {"ml", "UCUM", "milliliter"}, std::nullopt, std::nullopt});
  SrGroup total;
  total.tracking_id = "calcium total";
  total.tracking_uid = "2.25.95";
  total.finding = {"112145", "DCM", "Calcium"};
  total.measurements.push_back({{"112058", "DCM", "Calcium score"},
                                12.5,
                                {"1", "UCUM", "no units"},
                                std::nullopt,
                                CodedConcept{"112055", "DCM", "Agatston scoring method"}});
  const auto path = dir_ / "report.sr.dcm";
  write_dicom_sr(path, d, {g, total});
  DcmFileFormat file;
  ASSERT_TRUE(file.loadFile(OFFilename(path.c_str())).good());
  DSRDocument doc;
  ASSERT_TRUE(doc.read(*file.getDataset()).good());
  EXPECT_TRUE(doc.isValid());
  OFString uid;
  doc.getSOPInstanceUID(uid);
  EXPECT_EQ(uid, "2.25.99");
  doc.getStudyInstanceUID(uid);
  EXPECT_EQ(uid, d.source.study.study_uid.c_str());
  EXPECT_EQ(decimal_string(1.234567), "1.234567");
  EXPECT_EQ(decimal_string(275.390625), "275.390625");
  EXPECT_EQ(decimal_string(-468.1135), "-468.1135");
  EXPECT_LE(decimal_string(-123456.7890123456).size(), 16u);
}

}  // namespace
}  // namespace vitruvian::data
