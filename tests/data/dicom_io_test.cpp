// DICOM import: series written with DCMTK (dicom_series_writer.h: shuffled, oblique, rescaled,
// compressed) read back exactly, and every kind of bad series rejected on its own with a
// recognisable reason.
#include "data/dicom_io.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "core/errors.h"
#include "data/study_import.h"
#include "data/volume_store.h"
#include "tests/data/dicom_series_writer.h"
#include "tests/tools/scratch_dir.h"

namespace vitruvian::data {
namespace {

namespace fs = std::filesystem;
using dicom_writer::cross;
using dicom_writer::make_series;
using dicom_writer::place;
using dicom_writer::rescaled;
using dicom_writer::Series;
using dicom_writer::Slice;
using dicom_writer::Vec3;
using dicom_writer::write_series;

std::string reasons(const DicomScan& scan) {
  std::string text;
  for (const auto& r : scan.rejected) text += fmt::format("\n  {}: {}", r.path.string(), r.reason);
  return text;
}

void expect_direction(const Geometry& g, const Vec3& row, const Vec3& column) {
  const Vec3 normal = cross(row, column);
  for (std::size_t r = 0; r < 3; ++r) {
    EXPECT_NEAR(g.direction[r * 3 + 0], row[r], 1e-6);
    EXPECT_NEAR(g.direction[r * 3 + 1], column[r], 1e-6);
    EXPECT_NEAR(g.direction[r * 3 + 2], normal[r], 1e-6);
  }
}

TEST(DicomIo, AxialSeriesInShuffledFileOrder) {
  const testing::ScratchDir dir;
  Series s = make_series("3", 7, 6, 5, 11);
  s.intercept = -1024;
  write_series(dir.path(), s);

  const DicomScan scan = read_dicom_series(dir.path());
  ASSERT_EQ(scan.series.size(), 1u) << reasons(scan);
  EXPECT_TRUE(scan.rejected.empty()) << reasons(scan);
  const DicomSeries& got = scan.series[0];
  EXPECT_EQ(got.study_uid, s.study_uid);
  EXPECT_EQ(got.series_uid, s.series_uid);
  EXPECT_EQ(got.modality, "CT");
  EXPECT_EQ(got.series_number, "3");
  EXPECT_EQ(got.series_description, "series 3");
  EXPECT_EQ(got.patient_id, "PAT-0042");
  EXPECT_EQ(got.study_date, "20240131");
  EXPECT_EQ(got.volume.modality, "CT");
  // Integer rescale within int16's range: int16, exact.
  EXPECT_EQ(got.volume.type, VoxelType::kInt16);
  ASSERT_EQ(got.volume.voxels.sizes(), (std::vector<std::int64_t>{7, 6, 5}));
  EXPECT_TRUE(at::equal(got.volume.voxels, rescaled(s, at::kShort)));
  // Files come back in slice order, whatever their names.
  ASSERT_EQ(got.files.size(), 7u);
  for (std::size_t k = 0; k < 7; ++k) EXPECT_EQ(got.files[k].filename(), s.slices[k].file) << k;
  // The DICOM identity: UIDs, patient and study, and each slice's SOP instance in slice order.
  const DicomSeriesIdentity& id = got.identity;
  EXPECT_EQ(id.study.study_uid, s.study_uid);
  EXPECT_EQ(id.series_uid, s.series_uid);
  EXPECT_EQ(id.study.patient_id, "PAT-0042");
  EXPECT_EQ(id.study.study_date, "20240131");
  ASSERT_EQ(id.sop_instance_uids.size(), 7u);
  ASSERT_EQ(id.sop_class_uids.size(), 7u);
  for (std::size_t k = 0; k < 7; ++k) {
    DcmFileFormat file;
    ASSERT_TRUE(file.loadFile(OFFilename(got.files[k].c_str())).good());
    OFString uid;
    file.getDataset()->findAndGetOFString(DCM_SOPInstanceUID, uid);
    EXPECT_EQ(id.sop_instance_uids[k], uid.c_str()) << k;
    EXPECT_EQ(id.sop_class_uids[k], UID_CTImageStorage) << k;
  }
  // PixelSpacing is (row spacing = y, column spacing = x); geometry spacing is (x, y, z).
  const Geometry& g = got.volume.geometry;
  EXPECT_NEAR(g.spacing[0], 0.9, 1e-9);
  EXPECT_NEAR(g.spacing[1], 0.7, 1e-9);
  EXPECT_NEAR(g.spacing[2], 2.5, 1e-9);
  for (std::size_t r = 0; r < 3; ++r) EXPECT_NEAR(g.origin[r], s.slices[0].position[r], 1e-9);
  expect_direction(g, s.row, s.column);
}

TEST(DicomIo, ObliqueSeries) {
  const testing::ScratchDir dir;
  // Rows along R_x(0.2) R_z(0.3) e_x, columns along R_x(0.2) R_z(0.3) e_y.
  const double a = 0.3, b = 0.2;
  const Vec3 row{std::cos(a), std::sin(a) * std::cos(b), std::sin(a) * std::sin(b)};
  const Vec3 column{-std::sin(a), std::cos(a) * std::cos(b), std::cos(a) * std::sin(b)};
  Series s = make_series("4", 6, 4, 7, 12, true, row, column);
  s.gap = 1.25;
  place(s);
  write_series(dir.path(), s);

  const DicomScan scan = read_dicom_series(dir.path());
  ASSERT_EQ(scan.series.size(), 1u) << reasons(scan);
  const DicomSeries& got = scan.series[0];
  EXPECT_EQ(got.volume.type, VoxelType::kInt16);
  EXPECT_TRUE(at::equal(got.volume.voxels, rescaled(s, at::kShort)));
  const Geometry& g = got.volume.geometry;
  EXPECT_NEAR(g.spacing[0], 0.9, 1e-6);
  EXPECT_NEAR(g.spacing[1], 0.7, 1e-6);
  EXPECT_NEAR(g.spacing[2], 1.25, 1e-6);
  for (std::size_t r = 0; r < 3; ++r) EXPECT_NEAR(g.origin[r], s.slices[0].position[r], 1e-6);
  expect_direction(g, row, column);
  // The affine puts voxel (i, j, k) where the slices say it is.
  const auto m = g.index_to_lps();
  const Vec3& p = s.slices[4].position;
  for (std::size_t r = 0; r < 3; ++r) {
    const double at_voxel = m[r * 4 + 0] * 3 + m[r * 4 + 1] * 2 + m[r * 4 + 2] * 4 + m[r * 4 + 3];
    EXPECT_NEAR(at_voxel, p[r] + 3 * 0.9 * row[r] + 2 * 0.7 * column[r], 1e-6);
  }
}

TEST(DicomIo, TwoSeriesOfOneStudyAndNonDicomFilesIgnored) {
  const testing::ScratchDir dir;
  const Series first = make_series("1", 4, 3, 5, 21);
  const Series second = make_series("2", 5, 4, 4, 22);
  write_series(dir.path() / "a" / "deeper", first);
  write_series(dir.path() / "b", second);
  std::ofstream(dir.path() / "README.txt") << "not an image\n";
  std::ofstream binary(dir.path() / "b" / "noise.bin", std::ios::binary);
  for (int i = 0; i < 300; ++i) binary.put(static_cast<char>(i * 37));
  binary.close();

  const DicomScan scan = read_dicom_series(dir.path());
  EXPECT_TRUE(scan.rejected.empty()) << reasons(scan);
  ASSERT_EQ(scan.series.size(), 2u);
  EXPECT_EQ(scan.series[0].series_uid, first.series_uid);
  EXPECT_EQ(scan.series[1].series_uid, second.series_uid);
  EXPECT_EQ(scan.series[0].study_uid, scan.series[1].study_uid);
  EXPECT_TRUE(at::equal(scan.series[0].volume.voxels, rescaled(first, at::kShort)));
  EXPECT_TRUE(at::equal(scan.series[1].volume.voxels, rescaled(second, at::kShort)));

  // The same files as an explicit list.
  std::vector<fs::path> files;
  for (const auto& entry : fs::recursive_directory_iterator(dir.path()))
    if (entry.is_regular_file()) files.push_back(entry.path());
  EXPECT_EQ(read_dicom_files(files).series.size(), 2u);
}

TEST(DicomIo, HalfSlopeGivesExactFloat32) {
  const testing::ScratchDir dir;
  Series s = make_series("5", 3, 4, 6, 31);
  s.slope = 0.5;
  s.intercept = -10.25;
  s.slices[0].pixels[0] = 7;  // at least one odd value: not all rescaled values are integers
  s.stored.data_ptr<std::int32_t>()[0] = 7;
  write_series(dir.path(), s);

  const DicomScan scan = read_dicom_series(dir.path());
  ASSERT_EQ(scan.series.size(), 1u) << reasons(scan);
  EXPECT_EQ(scan.series[0].volume.type, VoxelType::kFloat32);
  EXPECT_TRUE(at::equal(scan.series[0].volume.voxels, rescaled(s, at::kFloat)));
}

TEST(DicomIo, UnsignedWithoutRescaleStaysUInt16) {
  const testing::ScratchDir dir;
  Series s = make_series("6", 3, 5, 5, 41, /*is_signed=*/false);
  s.write_rescale = false;
  s.slices[1].pixels[2] = 65535;
  s.stored.data_ptr<std::int32_t>()[25 + 2] = 65535;
  write_series(dir.path(), s);

  const DicomScan scan = read_dicom_series(dir.path());
  ASSERT_EQ(scan.series.size(), 1u) << reasons(scan);
  EXPECT_EQ(scan.series[0].volume.type, VoxelType::kUInt16);
  EXPECT_EQ(scan.series[0].volume.voxels.scalar_type(), at::kInt);
  EXPECT_TRUE(at::equal(scan.series[0].volume.voxels, s.stored));
}

TEST(DicomIo, SingleSliceTakesSliceThickness) {
  const testing::ScratchDir dir;
  Series s = make_series("7", 1, 4, 4, 51);
  s.gap = 3.0;  // written as SliceThickness
  write_series(dir.path(), s);

  const DicomScan scan = read_dicom_series(dir.path());
  ASSERT_EQ(scan.series.size(), 1u) << reasons(scan);
  EXPECT_EQ(scan.series[0].volume.voxels.sizes(), (std::vector<std::int64_t>{1, 4, 4}));
  EXPECT_NEAR(scan.series[0].volume.geometry.spacing[2], 3.0, 1e-9);
  EXPECT_TRUE(at::equal(scan.series[0].volume.voxels, rescaled(s, at::kShort)));
}

TEST(DicomIo, CompressedSeriesDecodeToTheSameValues) {
  const testing::ScratchDir dir;
  const Series plain = make_series("10", 4, 6, 7, 61);
  write_series(dir.path() / "plain", plain);
  for (const auto& [number, xfer] : {std::pair{"11", EXS_RLELossless}, std::pair{"12", EXS_JPEGProcess14SV1}}) {
    Series compressed = plain;
    compressed.series_uid = "1.2.826.0.1.3680043.2.1125.2." + std::string(number);
    compressed.number = number;
    for (Slice& slice : compressed.slices) {
      slice.xfer = xfer;
      slice.file = std::string(number) + "_" + slice.file;
    }
    write_series(dir.path() / number, compressed);
  }
  const DicomScan scan = read_dicom_series(dir.path());
  EXPECT_TRUE(scan.rejected.empty()) << reasons(scan);
  ASSERT_EQ(scan.series.size(), 3u);
  for (const DicomSeries& series : scan.series) {
    EXPECT_TRUE(at::equal(series.volume.voxels, rescaled(plain, at::kShort))) << series.series_number;
  }
}

TEST(DicomIo, BrokenDicomFileIsRejectedAndTheRestImports) {
  const testing::ScratchDir dir;
  const Series good = make_series("1", 3, 4, 4, 71);
  write_series(dir.path(), good);
  std::ofstream broken(dir.path() / "broken.dcm", std::ios::binary);
  broken << std::string(128, '\0') << "DICM";
  for (int i = 0; i < 200; ++i) broken.put(static_cast<char>(0xff - i));
  broken.close();

  const DicomScan scan = read_dicom_series(dir.path());
  ASSERT_EQ(scan.series.size(), 1u) << reasons(scan);
  EXPECT_EQ(scan.series[0].series_uid, good.series_uid);
  ASSERT_EQ(scan.rejected.size(), 1u) << reasons(scan);
  EXPECT_EQ(scan.rejected[0].path.filename(), "broken.dcm");
}

TEST(DicomIo, ElementLongerThanItsFileIsRejectedBeforeItsValueIsRead) {
  const testing::ScratchDir dir;
  const Series good = make_series("1", 3, 4, 4, 74);
  write_series(dir.path(), good);
  // A copy of one slice whose SOPInstanceUID (0008,0018, explicit VR "UI") declares 65520 bytes.
  std::ifstream in(dir.path() / good.slices[0].file, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string tag("\x08\x00\x18\x00UI", 6);
  const std::size_t at = bytes.find(tag, 132);
  ASSERT_NE(at, std::string::npos);
  bytes[at + 6] = static_cast<char>(0xf0), bytes[at + 7] = static_cast<char>(0xff);
  std::ofstream(dir.path() / "long.dcm", std::ios::binary) << bytes;

  const DicomScan scan = read_dicom_series(dir.path());
  ASSERT_EQ(scan.series.size(), 1u) << reasons(scan);
  ASSERT_EQ(scan.rejected.size(), 1u) << reasons(scan);
  EXPECT_EQ(scan.rejected[0].path.filename(), "long.dcm");
  const std::string& reason = scan.rejected[0].reason;
  EXPECT_NE(reason.find("(0008,0018) declares 65520 bytes, more than the whole file"), std::string::npos) << reason;
  EXPECT_EQ(reason.find('\n'), std::string::npos) << reason;
}

TEST(DicomIo, FileCutShortRejectsItsSeries) {
  const testing::ScratchDir dir;
  const Series good = make_series("1", 3, 4, 4, 72);
  const Series bad = make_series("2", 5, 8, 8, 73);
  write_series(dir.path(), good);
  write_series(dir.path(), bad);
  const fs::path cut = dir.path() / bad.slices[2].file;
  fs::resize_file(cut, fs::file_size(cut) - 40);

  const DicomScan scan = read_dicom_series(dir.path());
  ASSERT_EQ(scan.series.size(), 1u) << reasons(scan);
  EXPECT_EQ(scan.series[0].series_uid, good.series_uid);
  ASSERT_EQ(scan.rejected.size(), 1u) << reasons(scan);
  EXPECT_NE(scan.rejected[0].reason.find(bad.series_uid), std::string::npos) << reasons(scan);
}

TEST(DicomIo, MissingFolderThrows) {
  EXPECT_THROW(read_dicom_series("/nonexistent/vitruvian/dicom"), InputError);
  DicomReadOptions options;
  options.spacing_tolerance = -1;
  const testing::ScratchDir dir;
  EXPECT_THROW(read_dicom_series(dir.path(), options), InputError);
}

// ---- bad series: each is rejected alone, with a recognisable phrase; a good one still imports

// `vitruvian convert DICOM_FOLDER`: a folder holding two studies becomes two studies (the folder's
// name, then _2), series named from their descriptions; a localizer mixed into one series is
// reported and left out while the rest of that study lands.
TEST(DicomImport, FolderSplitsByStudyAndKeepsTheGoodSeries) {
  const testing::ScratchDir dir;
  const fs::path folder = dir.path() / "patient7";
  Series a1 = make_series("1", 4, 3, 5, 31);
  a1.description = "CTA Thorax 0.6mm";
  Series a2 = make_series("2", 4, 3, 5, 32);
  a2.description = "";  // no description: named from the series number
  Series a3 = make_series("3", 4, 3, 5, 33);
  a3.slices[1].orientation = {1, 0, 0, 0, 0, -1};  // a localizer slice mixed in
  Series b1 = make_series("4", 3, 4, 4, 34);
  b1.study_uid = "1.2.826.0.1.3680043.2.1125.1.2";
  b1.description = "Portal venous";
  for (const Series* s : {&a1, &a2, &a3, &b1}) write_series(folder / s->number, *s);

  const auto sources = studies_from_paths({folder}, "image", "");
  ASSERT_EQ(sources.size(), 1u);
  const fs::path out = dir.path() / "d.h5";
  ImportReport report;
  {
    VolumeWriter writer(out);
    report = import_studies(
        sources, [&](const std::string&) -> VolumeWriter& { return writer; }, {}, ImportOptions{});
    writer.commit();
  }
  EXPECT_EQ(report.imported, (std::vector<std::string>{"patient7", "patient7_2"}));
  ASSERT_EQ(report.rejected.size(), 1u);
  EXPECT_NE(report.rejected[0].path.find("s3_img"), std::string::npos) << report.rejected[0].line();
  EXPECT_NE(report.rejected[0].reason.find("orientation"), std::string::npos) << report.rejected[0].line();

  const VolumeStore store(out);
  const StudyInfo& first = store.study("patient7");
  ASSERT_EQ(first.series.size(), 2u);
  EXPECT_EQ(first.series[0].name, "cta_thorax_0_6mm");
  EXPECT_EQ(first.series[1].name, "series_2");
  EXPECT_TRUE(at::equal(store.read_series("patient7", "cta_thorax_0_6mm").voxels, rescaled(a1, at::kShort)));
  EXPECT_NE(first.metadata_json.find(a1.study_uid), std::string::npos);
  const StudyInfo& second = store.study("patient7_2");
  ASSERT_EQ(second.series.size(), 1u);
  EXPECT_EQ(second.series[0].name, "portal_venous");
  EXPECT_TRUE(at::equal(store.read_series("patient7_2", "portal_venous").voxels, rescaled(b1, at::kShort)));
}

struct BadCase {
  std::string name;
  std::function<void(Series&)> spoil;
  std::string phrase;
  std::int64_t max_voxels = std::int64_t{1} << 31;
};

// gtest prints the parameter in test listings and failures: the case name, not its bytes.
void PrintTo(const BadCase& c, std::ostream* os) { *os << c.name; }

class DicomBadSeries : public ::testing::TestWithParam<BadCase> {};

TEST_P(DicomBadSeries, IsRejectedAlone) {
  const BadCase& c = GetParam();
  const testing::ScratchDir dir;
  const Series good = make_series("1", 3, 4, 3, 81);  // 36 voxels
  Series bad = make_series("2", 7, 6, 5, 82);         // 210 voxels
  c.spoil(bad);
  write_series(dir.path(), good);
  write_series(dir.path(), bad);
  std::vector<std::string> bad_files;
  for (const Slice& slice : bad.slices) bad_files.push_back(slice.file);

  DicomReadOptions options;
  options.max_voxels = c.max_voxels;
  const DicomScan scan = read_dicom_series(dir.path(), options);
  ASSERT_EQ(scan.series.size(), 1u) << reasons(scan);
  EXPECT_EQ(scan.series[0].series_uid, good.series_uid);
  EXPECT_TRUE(at::equal(scan.series[0].volume.voxels, rescaled(good, at::kShort)));
  ASSERT_EQ(scan.rejected.size(), 1u) << reasons(scan);
  const DicomRejection& r = scan.rejected[0];
  EXPECT_EQ(r.path.filename(), *std::min_element(bad_files.begin(), bad_files.end()));
  EXPECT_NE(r.reason.find(c.phrase), std::string::npos) << r.reason;
  EXPECT_NE(r.reason.find(bad.series_uid), std::string::npos) << r.reason;
  EXPECT_EQ(r.reason.find('\n'), std::string::npos) << r.reason;
  std::cout << "  " << c.name << ": " << r.reason << "\n";
}

Vec3 normal_of(const Series& s) { return cross(s.row, s.column); }

const BadCase kBadCases[] = {
    {"MissingSlice", [](Series& s) { s.slices.erase(s.slices.begin() + 3); }, "missing slice"},
    {"UnevenSpacing",
     [](Series& s) {
       for (std::size_t r = 0; r < 3; ++r) s.slices[3].position[r] += 0.4 * s.gap * normal_of(s)[r];
     },
     "non-uniform slice spacing"},
    {"DuplicatePosition", [](Series& s) { s.slices[4].position = s.slices[3].position; }, "duplicate slice position"},
    {"LocalizerMixedIn", [](Series& s) { s.slices[2].orientation = {0, 1, 0, 0, 0, -1}; }, "orientation changes"},
    {"GantryTilt",
     [](Series& s) {
       for (std::size_t k = 0; k < s.slices.size(); ++k) s.slices[k].position[1] += 0.3 * s.gap * k;
     },
     "gantry tilt"},
    {"RowsChange",
     [](Series& s) {
       s.slices[5].rows = 7;
       s.slices[5].pixels.resize(7u * s.slices[5].columns, 1);
     },
     "Rows changes"},
    {"PixelRepresentationChange", [](Series& s) { s.slices[1].pixel_representation = 0; },
     "PixelRepresentation changes"},
    {"Colour",
     [](Series& s) {
       for (Slice& slice : s.slices) {
         slice.samples_per_pixel = 3;
         slice.bits_allocated = 8;
         slice.pixels.assign(3u * slice.rows * slice.columns, 9);
       }
     },
     "colour"},
    {"TruncatedPixelData", [](Series& s) { s.slices[4].pixels.resize(s.slices[4].pixels.size() - 7); },
     "truncated pixel data"},
    {"Jpeg2000", [](Series& s) { s.slices[2].fake_jpeg2000 = true; }, "transfer syntax 1.2.840.10008.1.2.4.90"},
    {"MultiFrame",
     [](Series& s) {
       s.slices[0].frames = 2;
       s.slices[0].pixels.resize(2 * s.slices[0].pixels.size(), 1);
     },
     "multi-frame"},
    {"OverMaxVoxels", [](Series&) {}, "max_voxels", 100},
    {"LyingHeader",
     [](Series& s) {
       for (Slice& slice : s.slices) slice.rows = slice.columns = 60000;  // 30 bytes of pixels each
     },
     "too large"},
};

INSTANTIATE_TEST_SUITE_P(Cases, DicomBadSeries, ::testing::ValuesIn(kBadCases),
                         [](const ::testing::TestParamInfo<BadCase>& param_info) { return param_info.param.name; });

}  // namespace
}  // namespace vitruvian::data
