// DICOM export: synthetic volumes (oblique, 4D, float, unsigned) written with write_dicom_series
// and read back by read_dicom_series with the same voxels, geometry, frame times and UIDs; the
// deterministic UIDs valid, reproducible and distinct; bad input refused with nothing left behind.
#include "data/dicom_writer.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

// clang-format off
#include <dcmtk/config/osconfig.h>  // DCMTK wants its configuration before any of its headers
// clang-format on
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcuid.h>

#include <cmath>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <vector>

#include "core/errors.h"
#include "data/dicom_io.h"
#include "data/dicom_uid.h"
#include "tests/data/scratch_test.h"

namespace vitruvian::data {
namespace {

namespace fs = std::filesystem;

using DicomWriterTest = ScratchTest<41>;

/// A random volume of `type` on an oblique grid ([t, z, y, x] when frames > 1).
Volume random_volume(VoxelType type, std::int64_t frames, const std::string& modality) {
  Volume v;
  v.type = type;
  v.modality = modality;
  std::vector<std::int64_t> shape{5, 6, 7};
  if (frames > 1) shape.insert(shape.begin(), frames);
  if (type == VoxelType::kFloat32) {
    v.voxels = at::rand(shape) * 300.0 - 100.0;
  } else {
    const auto [low, high] = type == VoxelType::kUInt16 ? std::pair{0, 65536} : std::pair{-1024, 3000};
    v.voxels = at::randint(low, high, shape).to(tensor_dtype(type));
  }
  const double c = std::cos(0.3), s = std::sin(0.3);
  v.geometry.spacing = {0.7, 0.9, 2.5};
  v.geometry.origin = {-120.5, 33.25, 40.0};
  v.geometry.direction = {c, 0, s, 0, 1, 0, -s, 0, c};  // rotated about y: right-handed
  if (frames > 1) {
    for (std::int64_t t = 0; t < frames; ++t) v.frame_times_s.push_back(1.5 * static_cast<double>(t));
  }
  return v;
}

DicomStudyAttributes study_attributes() {
  DicomStudyAttributes a = dicom_study_attributes({kDefaultUidRoot, 7, "test study", "CHEST"}, "study_00001");
  a.patient_birth_date = "19700101";
  return a;
}

DicomSeriesAttributes series_attributes(const std::string& name) {
  DicomSeriesAttributes a;
  a.series_uid = uid_from(kDefaultUidRoot, {"series", "7", "study_00001", name});
  a.frame_of_reference_uid = uid_from(kDefaultUidRoot, {"frame-of-reference", "7", "study_00001"});
  a.description = name;
  a.number = 3;
  return a;
}

const DicomSeries& only_series(const DicomScan& scan) {
  for (const auto& r : scan.rejected) ADD_FAILURE() << r.path << ": " << r.reason;
  EXPECT_EQ(scan.series.size(), 1u);
  return scan.series.front();
}

TEST(DicomUid, ValidityFollowsTheStandard) {
  EXPECT_TRUE(is_valid_uid("1.2.840.10008.1.2.1"));
  EXPECT_TRUE(is_valid_uid("0.0"));
  EXPECT_FALSE(is_valid_uid(""));
  EXPECT_FALSE(is_valid_uid("1.02.3"));
  EXPECT_FALSE(is_valid_uid("1..2"));
  EXPECT_FALSE(is_valid_uid("1.2."));
  EXPECT_FALSE(is_valid_uid(".1.2"));
  EXPECT_FALSE(is_valid_uid("1.2a.3"));
  EXPECT_FALSE(is_valid_uid(std::string(65, '1')));
  EXPECT_TRUE(is_valid_uid(std::string(64, '1')));
}

TEST(DicomUid, DeterministicValidAndDistinct) {
  const std::string a = uid_from(kDefaultUidRoot, {"study", "0", "chest_cardiac_00000"});
  EXPECT_EQ(a, uid_from(kDefaultUidRoot, {"study", "0", "chest_cardiac_00000"}));
  EXPECT_EQ(a.rfind(std::string(kDefaultUidRoot) + ".", 0), 0u) << a;
  EXPECT_EQ(a.size(), 64u);
  std::set<std::string> seen;
  for (int seed = 0; seed < 50; ++seed) {
    for (const char* study : {"a", "b", "ab"}) {
      for (const std::string& root : {std::string(kDefaultUidRoot), std::string("2.25"), std::string("1.2.3")}) {
        const std::string uid = uid_from(root, {"study", std::to_string(seed), study});
        EXPECT_TRUE(is_valid_uid(uid)) << uid;
        EXPECT_LE(uid.size(), kMaxUidLength);
        EXPECT_TRUE(seen.insert(uid).second) << uid;
      }
    }
  }
  // Part boundaries count: ("ab", "c") is not ("a", "bc").
  EXPECT_NE(uid_from("1.2.3", {"ab", "c"}), uid_from("1.2.3", {"a", "bc"}));
}

TEST(DicomUid, RootsAreChecked) {
  EXPECT_THROW(check_uid_root("1.2.03", "--uid-root 1.2.03"), InputError);
  EXPECT_THROW(check_uid_root("1.2.", "--uid-root"), InputError);
  EXPECT_THROW(check_uid_root(std::string(44, '1'), "--uid-root"), InputError);  // no room for 20 digits
  EXPECT_NO_THROW(check_uid_root(std::string(43, '1'), "--uid-root"));
  EXPECT_THROW(uid_from("abc", {"x"}), InputError);
}

TEST_F(DicomWriterTest, CtSeriesReadsBackExactly) {
  const Volume v = random_volume(VoxelType::kInt16, 1, "CT");
  const auto study = study_attributes();
  const auto attributes = series_attributes("ct");
  const auto files = write_dicom_series(dir_ / "ct", v, study, attributes);
  ASSERT_EQ(files.size(), 5u);
  EXPECT_EQ(files.front().filename(), "0001.dcm");
  const DicomScan scan_s = read_dicom_series(dir_);
  const DicomSeries& s = only_series(scan_s);
  EXPECT_EQ(s.study_uid, study.study_uid);
  EXPECT_EQ(s.series_uid, attributes.series_uid);
  EXPECT_EQ(s.modality, "CT");
  EXPECT_EQ(s.series_description, "ct");
  EXPECT_EQ(s.series_number, "3");
  EXPECT_EQ(s.patient_id, "study_00001");
  EXPECT_EQ(s.volume.type, VoxelType::kInt16);
  EXPECT_TRUE(at::equal(s.volume.voxels, v.voxels));
  EXPECT_TRUE(s.volume.geometry.matches(v.geometry, 1e-9)) << s.volume.geometry.describe();
  EXPECT_EQ(s.files, files);

  // The identity attributes, and a deterministic, valid SOP Instance UID per file.
  DcmFileFormat file;
  ASSERT_TRUE(file.loadFile(OFFilename(files[1].c_str())).good());
  DcmDataset& d = *file.getDataset();
  OFString value;
  ASSERT_TRUE(d.findAndGetOFString(DCM_SOPClassUID, value).good());
  EXPECT_EQ(value, UID_CTImageStorage);
  ASSERT_TRUE(d.findAndGetOFString(DCM_SOPInstanceUID, value).good());
  EXPECT_EQ(std::string(value.c_str()), uid_from(kDefaultUidRoot, {"instance", attributes.series_uid, "2"}));
  ASSERT_TRUE(d.findAndGetOFString(DCM_FrameOfReferenceUID, value).good());
  EXPECT_EQ(std::string(value.c_str()), attributes.frame_of_reference_uid);
  ASSERT_TRUE(d.findAndGetOFString(DCM_Manufacturer, value).good());
  EXPECT_EQ(value, "Vitruvian");
  ASSERT_TRUE(d.findAndGetOFStringArray(DCM_WindowCenter, value).good());
  EXPECT_EQ(value, "40\\-600\\400");
  ASSERT_TRUE(d.findAndGetOFString(DCM_PatientBirthDate, value).good());
  EXPECT_EQ(value, "19700101");
  ASSERT_TRUE(d.findAndGetOFString(DCM_InstanceNumber, value).good());
  EXPECT_EQ(value, "2");

  // Written again: the same bytes (no time stamps or random UIDs).
  const Volume copy = v;
  write_dicom_series(dir_ / "again", copy, study, attributes);
  for (const auto& f : files) {
    std::ifstream a(f, std::ios::binary), b(dir_ / "again" / f.filename(), std::ios::binary);
    const std::string bytes_a((std::istreambuf_iterator<char>(a)), {}),
        bytes_b((std::istreambuf_iterator<char>(b)), {});
    EXPECT_EQ(bytes_a, bytes_b) << f;
  }
}

/// A time series read back: the written frames, grid and frame times.
void expect_time_series(const Volume& read, const Volume& written) {
  ASSERT_EQ(read.voxels.dim(), 4);
  EXPECT_TRUE(at::equal(read.voxels, written.voxels));
  EXPECT_TRUE(read.geometry.matches(written.geometry, 1e-9));
  ASSERT_EQ(read.frame_times_s.size(), written.frame_times_s.size());
  for (std::size_t t = 0; t < read.frame_times_s.size(); ++t) {
    EXPECT_NEAR(read.frame_times_s[t], written.frame_times_s[t], 1e-6);
  }
}

TEST_F(DicomWriterTest, FourDSeriesKeepsFramesAndTimes) {
  const Volume v = random_volume(VoxelType::kInt16, 4, "CT");
  const auto files = write_dicom_series(dir_ / "perfusion", v, study_attributes(), series_attributes("perfusion"));
  ASSERT_EQ(files.size(), 20u);
  const DicomScan scan_s = read_dicom_series(dir_);
  const DicomSeries& s = only_series(scan_s);
  expect_time_series(s.volume, v);
  EXPECT_EQ(s.files, files);
}

TEST_F(DicomWriterTest, LeftHandedGridComesBackWithZReversed) {
  Volume v = random_volume(VoxelType::kInt16, 1, "CT");
  v.geometry.direction = {1, 0, 0, 0, 1, 0, 0, 0, -1};  // slices run toward the feet
  write_dicom_series(dir_ / "ct", v, study_attributes(), series_attributes("ct"));
  const DicomScan scan = read_dicom_series(dir_);
  const DicomSeries& s = only_series(scan);
  EXPECT_TRUE(at::equal(s.volume.voxels, v.voxels.flip(0)));
  const auto written = v.geometry.index_to_lps(), read = s.volume.geometry.index_to_lps();
  for (int r = 0; r < 3; ++r) {  // voxel (i, j, k) read is voxel (i, j, Z - 1 - k) written: the same place
    EXPECT_NEAR(read[r * 4 + 3], written[r * 4 + 3] + 4 * written[r * 4 + 2], 1e-6);
    EXPECT_NEAR(read[r * 4 + 2], -written[r * 4 + 2], 1e-9);
  }
}

TEST_F(DicomWriterTest, FourDWithAMissingSliceIsRejected) {
  const Volume v = random_volume(VoxelType::kInt16, 3, "CT");
  const auto files = write_dicom_series(dir_ / "perfusion", v, study_attributes(), series_attributes("perfusion"));
  fs::remove(files[7]);  // time point 2, slice 3
  const DicomScan scan = read_dicom_series(dir_);
  EXPECT_TRUE(scan.series.empty());
  ASSERT_EQ(scan.rejected.size(), 1u);
  EXPECT_NE(scan.rejected[0].reason.find("temporal position 2 has 4 images"), std::string::npos)
      << scan.rejected[0].reason;
}

/// `v` written under `dir` as many scanners send perfusion: no TemporalPositionIdentifier (nor
/// NumberOfTemporalPositions), each file then edited by `edit(dataset, t)` for its frame t, and
/// renamed IM<1000 + files − i> for the i-th written, so that the names run backwards (the order
/// must come from the headers).
template <typename Edit>
void write_without_temporal_positions(const fs::path& dir, const Volume& v, Edit edit) {
  const auto files = write_dicom_series(dir, v, study_attributes(), series_attributes(dir.filename().string()));
  const auto slices = static_cast<std::size_t>(v.voxels.size(1));
  for (std::size_t i = 0; i < files.size(); ++i) {
    DcmFileFormat file;
    ASSERT_TRUE(file.loadFile(files[i].c_str()).good()) << files[i];
    DcmDataset& d = *file.getDataset();
    d.findAndDeleteElement(DCM_TemporalPositionIdentifier);
    d.findAndDeleteElement(DCM_NumberOfTemporalPositions);
    edit(d, i / slices);
    const fs::path renamed = files[i].parent_path() / ("IM" + std::to_string(1000 + files.size() - i));
    ASSERT_TRUE(file.saveFile(renamed.c_str()).good()) << renamed;
    fs::remove(files[i]);
  }
}

TEST_F(DicomWriterTest, FourDWithoutTemporalPositionsIsOrderedByAcquisitionTime) {
  const Volume v = random_volume(VoxelType::kInt16, 4, "CT");
  // One AcquisitionNumber for the whole run: the time alone tells the frames apart.
  write_without_temporal_positions(
      dir_ / "perfusion", v, [](DcmDataset& d, std::size_t) { d.putAndInsertString(DCM_AcquisitionNumber, "1"); });
  const DicomScan scan = read_dicom_series(dir_);
  const DicomSeries& s = only_series(scan);
  expect_time_series(s.volume, v);
  EXPECT_EQ(s.identity.temporal_positions, 4u);
  EXPECT_EQ(s.files.front().filename(), "IM1020");  // frame 0, slice 0: written first, named last
}

TEST_F(DicomWriterTest, FourDWithoutTemporalPositionsOrAcquisitionTimeIsOrderedByAcquisitionNumber) {
  const Volume v = random_volume(VoxelType::kInt16, 3, "CT");
  write_without_temporal_positions(dir_ / "perfusion", v,
                                   [](DcmDataset& d, std::size_t) { d.findAndDeleteElement(DCM_AcquisitionTime); });
  const DicomScan scan = read_dicom_series(dir_);
  const DicomSeries& s = only_series(scan);
  ASSERT_EQ(s.volume.voxels.dim(), 4);
  EXPECT_TRUE(at::equal(s.volume.voxels, v.voxels));
  EXPECT_TRUE(s.volume.frame_times_s.empty());  // no times to give
}

TEST_F(DicomWriterTest, RepeatedPositionsThatAreNotATimeSeriesAreRejected) {
  // Two images at every position with the same AcquisitionTime and AcquisitionNumber: two echoes or
  // reconstructions of one acquisition, not frames.
  const Volume v = random_volume(VoxelType::kInt16, 2, "MR");
  write_without_temporal_positions(dir_ / "echoes", v, [](DcmDataset& d, std::size_t) {
    d.putAndInsertString(DCM_AcquisitionNumber, "7");
    d.putAndInsertString(DCM_AcquisitionTime, "101500");
  });
  const DicomScan scan = read_dicom_series(dir_);
  EXPECT_TRUE(scan.series.empty());
  ASSERT_EQ(scan.rejected.size(), 1u);
  const std::string& reason = scan.rejected[0].reason;
  EXPECT_NE(reason.find("holds IM1005 and IM1010 with the same AcquisitionTime (10:15:00.000) and the same "
                        "AcquisitionNumber (7); expected one image per position, or a time series"),
            std::string::npos)
      << reason;
}

TEST_F(DicomWriterTest, RepeatsTiedAtALaterPositionAreNamed) {
  // Frames 0 and 1 of the last slice share their time and number; every other position is fine.
  const Volume v = random_volume(VoxelType::kInt16, 3, "CT");
  write_without_temporal_positions(dir_ / "perfusion", v, [](DcmDataset&, std::size_t) {});
  for (const char* name : {"IM1011", "IM1006"}) {  // slice 4 of frames 0 and 1 (the 5th and 10th written)
    DcmFileFormat file;
    ASSERT_TRUE(file.loadFile((dir_ / "perfusion" / name).c_str()).good());
    file.getDataset()->putAndInsertString(DCM_AcquisitionTime, "235959.5");
    file.getDataset()->putAndInsertString(DCM_AcquisitionNumber, "4");
    ASSERT_TRUE(file.saveFile((dir_ / "perfusion" / name).c_str()).good());
  }
  const DicomScan scan = read_dicom_series(dir_);
  ASSERT_EQ(scan.rejected.size(), 1u);
  const std::string& reason = scan.rejected[0].reason;
  EXPECT_NE(reason.find("with the same AcquisitionTime (23:59:59.500) and the same AcquisitionNumber (4)"),
            std::string::npos)
      << reason;
  EXPECT_TRUE(reason.find("IM1011") != std::string::npos && reason.find("IM1006") != std::string::npos) << reason;
}

TEST_F(DicomWriterTest, RepeatsOrderedByTimeBeforeNumberAndAcrossMidnight) {
  // AcquisitionNumber runs backwards and the run starts 3 s before midnight: the time decides, and
  // the frames after midnight come after those before it.
  const Volume v = random_volume(VoxelType::kInt16, 4, "CT");
  write_without_temporal_positions(dir_ / "perfusion", v, [](DcmDataset& d, std::size_t t) {
    const char* times[] = {"235957", "235958.5", "000000", "000001.5"};
    d.putAndInsertString(DCM_AcquisitionTime, times[t]);
    d.putAndInsertString(DCM_AcquisitionNumber, std::to_string(10 - t).c_str());
  });
  const DicomScan scan = read_dicom_series(dir_);
  expect_time_series(only_series(scan).volume, v);
}

TEST_F(DicomWriterTest, OneNamedTemporalPositionIsReadByRepeats) {
  // Every image names TemporalPositionIdentifier 1: the repeats of each position are the frames.
  const Volume v = random_volume(VoxelType::kInt16, 3, "CT");
  write_without_temporal_positions(dir_ / "perfusion", v, [](DcmDataset& d, std::size_t) {
    d.putAndInsertString(DCM_TemporalPositionIdentifier, "1");
  });
  const DicomScan scan = read_dicom_series(dir_);
  expect_time_series(only_series(scan).volume, v);
}

TEST_F(DicomWriterTest, RepeatsThatAreOtherEchoesOrMosaicsAreRejected) {
  // Two echoes at every position, acquired one after the other: times differ, EchoTime too.
  const Volume v = random_volume(VoxelType::kInt16, 2, "MR");
  write_without_temporal_positions(dir_ / "echoes", v, [](DcmDataset& d, std::size_t t) {
    d.putAndInsertString(DCM_EchoTime, t == 0 ? "12" : "80");
  });
  DicomScan scan = read_dicom_series(dir_);
  ASSERT_EQ(scan.rejected.size(), 1u);
  EXPECT_NE(scan.rejected[0].reason.find("with EchoTime '80' and '12'; expected a time series to repeat one "
                                         "acquisition"),
            std::string::npos)
      << scan.rejected[0].reason;
  // A mosaic (many slices tiled in one image) is refused, whatever its series looks like.
  fs::remove_all(dir_ / "echoes");
  const Volume one = random_volume(VoxelType::kInt16, 1, "MR");
  const auto mosaic = write_dicom_series(dir_ / "dsc", one, study_attributes(), series_attributes("dsc"));
  for (const auto& f : mosaic) {
    DcmFileFormat file;
    ASSERT_TRUE(file.loadFile(f.c_str()).good());
    file.getDataset()->putAndInsertString(DCM_ImageType, "ORIGINAL\\PRIMARY\\M\\ND\\MOSAIC");
    ASSERT_TRUE(file.saveFile(f.c_str()).good());
  }
  scan = read_dicom_series(dir_);
  ASSERT_EQ(scan.rejected.size(), 1u);
  EXPECT_NE(scan.rejected[0].reason.find("is a mosaic (ImageType ORIGINAL\\PRIMARY\\M\\ND\\MOSAIC): several slices "
                                         "tiled in one image; expected one slice per image"),
            std::string::npos)
      << scan.rejected[0].reason;
}

TEST_F(DicomWriterTest, RepeatedPositionsWithAnImageMissingAreRejected) {
  const Volume v = random_volume(VoxelType::kInt16, 3, "CT");
  write_without_temporal_positions(dir_ / "perfusion", v, [](DcmDataset&, std::size_t) {});
  fs::remove(dir_ / "perfusion" / "IM1008");  // frame 1, slice 2 (the 8th written of 15)
  const DicomScan scan = read_dicom_series(dir_);
  EXPECT_TRUE(scan.series.empty());
  ASSERT_EQ(scan.rejected.size(), 1u);
  const std::string& reason = scan.rejected[0].reason;
  EXPECT_NE(reason.find("holds 3 images ("), std::string::npos) << reason;
  EXPECT_NE(reason.find("holds 2 (IM1003)"), std::string::npos) << reason;
  EXPECT_NE(reason.find("expected one image per position, or in a time series the same number"), std::string::npos)
      << reason;
}

TEST_F(DicomWriterTest, MrUnsignedAndFloatSeries) {
  const Volume u = random_volume(VoxelType::kUInt16, 1, "MR");
  write_dicom_series(dir_ / "t2", u, study_attributes(), series_attributes("t2"));
  const DicomScan scan_s = read_dicom_series(dir_ / "t2");
  const DicomSeries& s = only_series(scan_s);
  EXPECT_EQ(s.modality, "MR");
  EXPECT_EQ(s.volume.type, VoxelType::kUInt16);
  EXPECT_TRUE(at::equal(s.volume.voxels, u.voxels));

  // Floats: mapped onto int16 by a rescale, back within half a step.
  const Volume f = random_volume(VoxelType::kFloat32, 1, "MR");
  write_dicom_series(dir_ / "adc", f, study_attributes(), series_attributes("adc"));
  const DicomScan scan_g = read_dicom_series(dir_ / "adc");
  const DicomSeries& g = only_series(scan_g);
  EXPECT_EQ(g.volume.type, VoxelType::kFloat32);
  const double step = (f.voxels.max().item<double>() - f.voxels.min().item<double>()) / 65535.0;
  EXPECT_LE((g.volume.voxels - f.voxels).abs().max().item<double>(), 0.51 * step + 1e-4);

  // An explicit rescale whose grid holds the values: exact.
  Volume exact = f;
  exact.voxels = at::randint(0, 4000, {5, 6, 7}).to(at::kFloat) * 0.5f - 10.25f;
  DicomSeriesAttributes attributes = series_attributes("pv");
  attributes.rescale = DicomRescale{0.5, -10.25};
  write_dicom_series(dir_ / "pv", exact, study_attributes(), attributes);
  const DicomScan scan_p = read_dicom_series(dir_ / "pv");
  const DicomSeries& p = only_series(scan_p);
  EXPECT_TRUE(at::equal(p.volume.voxels, exact.voxels));
}

TEST_F(DicomWriterTest, BadInputLeavesNothing) {
  Volume v = random_volume(VoxelType::kInt16, 1, "US");
  EXPECT_THROW(write_dicom_series(dir_ / "us", v, study_attributes(), series_attributes("us")), InputError);
  v.modality = "CT";
  DicomSeriesAttributes bad_uid = series_attributes("ct");
  bad_uid.series_uid = "1.2.03";
  EXPECT_THROW(write_dicom_series(dir_ / "ct", v, study_attributes(), bad_uid), InputError);
  DicomSeriesAttributes too_small = series_attributes("ct");
  too_small.rescale = DicomRescale{0.01, 0};  // 3000 / 0.01 does not fit in 16 bits
  EXPECT_THROW(write_dicom_series(dir_ / "ct", v, study_attributes(), too_small), InputError);
  EXPECT_TRUE(fs::is_empty(dir_));
}

TEST_F(DicomWriterTest, StudyHasOneStudyUidAndFrameOfReference) {
  const Volume ct = random_volume(VoxelType::kInt16, 1, "CT");
  const Volume perfusion = random_volume(VoxelType::kInt16, 2, "CT");
  const DicomStudyIdentity identity{kDefaultUidRoot, 3, "phantom", ""};
  const auto folders = write_dicom_study(dir_ / "s1", "s1", {{"ct", &ct}, {"perfusion", &perfusion}}, identity);
  ASSERT_EQ(folders.size(), 2u);
  EXPECT_EQ(folders[1], dir_ / "s1" / "perfusion");
  const DicomScan scan = read_dicom_series(dir_);
  ASSERT_EQ(scan.series.size(), 2u);
  EXPECT_EQ(scan.series[0].study_uid, scan.series[1].study_uid);
  EXPECT_EQ(scan.series[0].study_uid, dicom_study_attributes(identity, "s1").study_uid);
  EXPECT_EQ(scan.series[0].series_description, "ct");
  EXPECT_EQ(scan.series[1].series_number, "2");
  EXPECT_NE(scan.series[0].series_uid, scan.series[1].series_uid);
  EXPECT_EQ(scan.series[1].series_uid, uid_from(kDefaultUidRoot, {"series", "3", "s1", "perfusion"}));
}

}  // namespace
}  // namespace vitruvian::data
