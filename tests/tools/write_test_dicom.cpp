// Writes DICOM test data for the `vitruvian convert DICOM_DIR` CLI test (tests/launch/dicom_cli.sh):
// the good series with the production writer (data/dicom_writer.h), the spoilt one slice by slice
// (tests/data/dicom_series_writer.h).
// Usage: write_test_dicom DICOM_DIR [EXPECTED_DIR]
//   DICOM_DIR/ct/           study 1, series 1 "CT Abdomen 1.0mm": signed, rescale intercept -1024 (int16)
//   DICOM_DIR/t2/           study 1, series 2 "T2 FSE cor": unsigned, no rescale, coronal (uint16)
//   DICOM_DIR/scout_mixed/  study 1, series 3 "CT Abdomen 5mm": a localizer slice spoils it (rejected)
//   DICOM_DIR/followup/     study 2, series 4 "Portal venous": slope 0.5, intercept -10.25 (float32)
//   EXPECTED_DIR/<series number>.npy: the voxels [z, y, x] the importer should produce, in its type.
// Prints nothing on success; exits 1 with a message when writing fails, 2 on bad usage.
#include <ATen/ATen.h>

#include <cstdint>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "data/dicom_uid.h"
#include "data/dicom_writer.h"
#include "tests/data/dicom_series_writer.h"

namespace {

namespace fs = std::filesystem;
using namespace vitruvian::dicom_writer;

/// `values` (double, any shape) as a NumPy .npy file of element type T, described by `descr` ("<i2").
template <typename T>
void write_npy(const fs::path& path, const at::Tensor& values, const std::string& descr) {
  const at::Tensor v = values.to(at::kDouble).contiguous();
  std::string shape;
  for (const auto n : v.sizes()) shape += std::to_string(n) + ", ";
  std::string header = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': (" + shape + "), }";
  header.append(64 - (10 + header.size() + 1) % 64, ' ');  // magic, version and length take 10 bytes
  header += '\n';
  std::ofstream out(path, std::ios::binary);
  out.write("\x93NUMPY\x01\x00", 8);
  const auto length = static_cast<std::uint16_t>(header.size());
  const char length_bytes[2] = {static_cast<char>(length & 0xff), static_cast<char>(length >> 8)};
  out.write(length_bytes, 2);
  out << header;
  const double* data = v.data_ptr<double>();
  for (std::int64_t i = 0; i < v.numel(); ++i) {
    const T x = static_cast<T>(data[i]);  // little-endian host, as the descr says
    out.write(reinterpret_cast<const char*>(&x), sizeof x);
  }
  if (!out.flush()) throw std::runtime_error("cannot write " + path.string());
}

/// The volume `s` describes: its rescaled values of `type` on its grid.
vitruvian::data::Volume volume_of(const Series& s, vitruvian::data::VoxelType type) {
  vitruvian::data::Volume v;
  v.type = type;
  v.modality = "CT";
  v.voxels = rescaled(s, vitruvian::data::tensor_dtype(type));
  const Vec3 normal = cross(s.row, s.column);
  v.geometry.spacing = {s.pixel_spacing[1], s.pixel_spacing[0], s.gap};
  v.geometry.origin = s.origin;
  for (std::size_t r = 0; r < 3; ++r) {
    v.geometry.direction[r * 3 + 0] = s.row[r];
    v.geometry.direction[r * 3 + 1] = s.column[r];
    v.geometry.direction[r * 3 + 2] = normal[r];
  }
  return v;
}

/// Writes `s` with the production writer (rescale as `s` has it when it is not the identity).
void write_good_series(const fs::path& folder, const Series& s, vitruvian::data::VoxelType type) {
  using namespace vitruvian::data;
  DicomStudyAttributes study;
  study.study_uid = s.study_uid;
  study.patient_id = "PAT-0042";
  study.study_date = "20240131";
  DicomSeriesAttributes series;
  series.series_uid = s.series_uid;
  series.frame_of_reference_uid = uid_from(kDefaultUidRoot, {"frame-of-reference", s.study_uid});
  series.description = s.description;
  series.number = std::stoi(s.number);
  if (s.slope != 1.0 || s.intercept != 0.0) series.rescale = DicomRescale{s.slope, s.intercept};
  write_dicom_series(folder, volume_of(s, type), study, series);
}

void write_all(const fs::path& dicom, const fs::path& expected) {
  // Study 1: a CT-like signed series with a rescale to HU.
  Series ct = make_series("1", 6, 8, 7, 101);
  ct.description = "CT Abdomen 1.0mm";
  ct.intercept = -1024;
  // A second series of the same study on its own coronal grid: unsigned, no rescale.
  Series t2 = make_series("2", 4, 5, 6, 102, /*is_signed=*/false, {1, 0, 0}, {0, 0, -1});
  t2.description = "T2 FSE cor";
  t2.write_rescale = false;
  t2.pixel_spacing = {1.25, 1.5};
  t2.gap = 4.0;
  t2.origin = {-100, 20, 80};
  place(t2);
  t2.slices[0].pixels[0] = 65535;  // well above uint8, at the top of uint16
  t2.stored.data_ptr<std::int32_t>()[0] = 65535;
  // A third series of the same study spoilt by a localizer slice mixed in: rejected alone.
  Series mixed = make_series("3", 5, 4, 4, 103);
  mixed.description = "CT Abdomen 5mm";
  mixed.slices[2].orientation = {0, 1, 0, 0, 0, -1};
  // Study 2: one series whose rescale gives non-integer values.
  Series pv = make_series("4", 3, 4, 5, 104);
  pv.study_uid = "1.2.826.0.1.3680043.2.1125.1.2";
  pv.description = "Portal venous";
  pv.pixel_spacing = {0.8, 0.6};
  pv.gap = 1.5;
  place(pv);
  pv.slope = 0.5;
  pv.intercept = -10.25;
  pv.slices[0].pixels[0] = 7;  // an odd stored value: not every rescaled value is an integer
  pv.stored.data_ptr<std::int32_t>()[0] = 7;

  using vitruvian::data::VoxelType;
  fs::create_directories(dicom);
  write_good_series(dicom / "ct", ct, VoxelType::kInt16);
  write_good_series(dicom / "t2", t2, VoxelType::kUInt16);
  write_series(dicom / "scout_mixed", mixed);
  write_good_series(dicom / "followup", pv, VoxelType::kFloat32);
  if (expected.empty()) return;
  fs::create_directories(expected);
  write_npy<std::int16_t>(expected / "1.npy", rescaled(ct, at::kDouble), "<i2");
  write_npy<std::uint16_t>(expected / "2.npy", rescaled(t2, at::kDouble), "<u2");
  write_npy<float>(expected / "4.npy", rescaled(pv, at::kDouble), "<f4");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3 || std::strcmp(argv[1], "--help") == 0) {
    std::cerr << "usage: write_test_dicom DICOM_DIR [EXPECTED_DIR]\n";
    return 2;
  }
  try {
    write_all(argv[1], argc == 3 ? fs::path(argv[2]) : fs::path());
  } catch (const std::exception& e) {
    std::cerr << "write_test_dicom: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
